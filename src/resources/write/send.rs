//! Requests sent with `Client::send`, so that the API server's `Warning` headers reach the caller
//! along with the answer, read whole.

use http_body_util::BodyExt;
use kube::Client;
use kube::api::DynamicObject;

/// An answer from the API server, read whole.
pub(super) struct Sent {
    pub(super) status: u16,
    pub(super) warnings: Vec<String>,
    pub(super) body: Vec<u8>,
}

pub(super) async fn send(client: &Client, request: http::Request<Vec<u8>>) -> Result<Sent, kube::Error> {
    let response = client.send(request.map(kube::client::Body::from)).await?;
    let status = response.status().as_u16();
    let warnings =
        response.headers().get_all("warning").iter().filter_map(|v| v.to_str().ok()).map(warning_text).collect();
    let body = response.into_body().collect().await.map_err(|e| kube::Error::Service(Box::new(e)))?.to_bytes().to_vec();
    Ok(Sent { status, warnings, body })
}

/// `299 - "text with \"quotes\""` (RFC 7234 warn-text) → `text with "quotes"`.
fn warning_text(header: &str) -> String {
    let (Some(start), Some(end)) = (header.find('"'), header.rfind('"')) else {
        return header.to_owned();
    };
    if end <= start {
        return header.to_owned();
    }
    let mut text = String::new();
    let mut chars = header[start + 1..end].chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                text.push(next);
            }
        } else {
            text.push(c);
        }
    }
    text
}

impl Sent {
    pub(super) fn into_object(self) -> Result<(DynamicObject, Vec<String>), kube::Error> {
        if (200..300).contains(&self.status) {
            let object = serde_json::from_slice(&self.body).map_err(kube::Error::SerdeError)?;
            Ok((object, self.warnings))
        } else {
            Err(self.into_error())
        }
    }

    pub(super) fn into_error(self) -> kube::Error {
        let status = serde_json::from_slice::<kube::core::Status>(&self.body)
            .unwrap_or_else(|_| kube::core::Status::failure(&String::from_utf8_lossy(&self.body), "Unknown"));
        let mut status = status;
        status.code = self.status;
        kube::Error::Api(Box::new(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_headers() {
        assert_eq!(warning_text(r#"299 - "unknown field \"spec.x\"""#), r#"unknown field "spec.x""#);
        assert_eq!(warning_text("299 - \"plain\""), "plain");
    }
}
