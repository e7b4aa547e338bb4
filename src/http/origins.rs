//! Browsers on other origins: CORS for the operator's allowlist of origins (none by default,
//! never a wildcard), and the same list for WebSocket upgrades, whose `Origin` a browser always
//! sends and CORS does not cover. Clients that are not browsers send no `Origin` and are not
//! affected; a page kubegql serves itself is of its own origin and always allowed.

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::*;

/// Origins allowed to call kubegql from a browser.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OriginSettings {
    /// Origins (`https://dash.example.com`, `http://127.0.0.1:5173`) whose pages may call kubegql
    /// from a browser: CORS on every route, and WebSocket upgrades. Comma-separated; none by
    /// default; `*` is refused.
    #[arg(long = "cors-allow-origin", env = "KUBEGQL_CORS_ALLOW_ORIGINS", value_delimiter = ',')]
    pub cors_allow_origins: Vec<String>,
}

impl OriginSettings {
    /// The allowlist, each origin checked: a scheme, a host and perhaps a port, nothing more.
    pub fn allowed(&self) -> Result<Vec<HeaderValue>, String> {
        self.cors_allow_origins
            .iter()
            .map(|origin| origin.trim())
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                let refuse = |why: &str| format!("--cors-allow-origin {origin:?}: {why}");
                if origin == "*" {
                    return Err(refuse("a wildcard is not allowed; list the origins"));
                }
                let uri: axum::http::Uri =
                    origin.parse().map_err(|e: axum::http::uri::InvalidUri| refuse(&e.to_string()))?;
                let bare = matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some_and(|a| !a.as_str().contains('@'))
                    && uri.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
                    && !origin.ends_with('/');
                if !bare {
                    return Err(refuse("an origin is a scheme, a host and an optional port, with no path"));
                }
                HeaderValue::from_str(origin).map_err(|e| refuse(&e.to_string()))
            })
            .collect()
    }
}

/// CORS for the allowlist: the methods and headers kubegql's routes take, `X-Request-Id`
/// exposed, no credentials (tokens travel in `Authorization`, never in cookies).
pub(super) fn cors(allowed: Vec<HeaderValue>) -> CorsLayer {
    let headers = [
        "authorization",
        "content-type",
        "accept",
        "x-request-id",
        "impersonate-user",
        "impersonate-group",
        "impersonate-uid",
    ]
    .map(HeaderName::from_static);
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(headers)
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(600))
}

/// Whether a WebSocket upgrade may go on: no `Origin` (not a browser), the server's own origin,
/// or one of the allowlist.
pub(super) fn upgrade_allowed(headers: &HeaderMap, allowed: &[HeaderValue]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    if allowed.contains(origin) {
        return true;
    }
    let (Ok(origin), Some(host)) = (origin.to_str(), headers.get(header::HOST).and_then(|h| h.to_str().ok())) else {
        return false;
    };
    origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
}

/// The answer to a WebSocket upgrade from an origin not allowed.
pub(super) fn origin_refused() -> Response {
    error_response(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        "this origin may not open WebSockets here (see --cors-allow-origin)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        let settings =
            |list: &[&str]| OriginSettings { cors_allow_origins: list.iter().map(|s| s.to_string()).collect() };
        assert_eq!(settings(&["https://dash.example.com", "http://127.0.0.1:5173"]).allowed().unwrap().len(), 2);
        for bad in
            ["*", "https://dash.example.com/", "https://dash.example.com/app", "dash.example.com", "ftp://x.example"]
        {
            assert!(settings(&[bad]).allowed().is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn upgrades_from_listed_own_or_no_origin_only() {
        let allowed = vec![HeaderValue::from_static("http://127.0.0.1:5173")];
        let headers = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
            }
            h
        };
        assert!(upgrade_allowed(&headers(None), &allowed), "not a browser");
        assert!(upgrade_allowed(&headers(Some("http://127.0.0.1:8080")), &allowed), "its own origin");
        assert!(upgrade_allowed(&headers(Some("http://127.0.0.1:5173")), &allowed), "listed");
        assert!(!upgrade_allowed(&headers(Some("http://127.0.0.1:5174")), &allowed), "not listed");
        assert!(!upgrade_allowed(&headers(Some("https://evil.example")), &[]), "none listed");
    }
}
