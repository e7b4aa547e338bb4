//! Every call to a cluster's API server is bounded: an answer must come, whole, within
//! `--cluster-request-timeout-secs`, and may hold at most `--cluster-max-response-bytes`. A
//! registered API server is not trusted: without these, one that answers slowly, a byte at a
//! time (the read timeout only bounds the pause between reads), or with an endless body would hold
//! a request, and its memory, for as long as it liked. Watches, followed logs and upgraded
//! connections (exec, attach, port-forward) stream by design and get neither bound; their
//! consumers bound what they keep.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{BoxError, Layer, Service};

/// The bounds of one cluster's calls.
#[derive(Debug, Clone, Copy)]
pub struct CallBounds {
    pub timeout: Duration,
    pub max_response_bytes: u64,
}

impl<S> Layer<S> for CallBounds {
    type Service = Bounded<S>;

    fn layer(&self, inner: S) -> Bounded<S> {
        Bounded { inner, bounds: *self }
    }
}

#[derive(Debug, Clone)]
pub struct Bounded<S> {
    inner: S,
    bounds: CallBounds,
}

/// Whether a request streams by design: a watch, a followed log, or an upgrade.
fn streams<B>(request: &Request<B>) -> bool {
    let query = request.uri().query().unwrap_or_default();
    let flag = |name: &str| query.split('&').any(|pair| pair == format!("{name}=true") || pair == format!("{name}=1"));
    flag("watch") || flag("follow") || request.headers().contains_key(http::header::UPGRADE)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Bounded<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<BoundedBody<ResBody>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let bounds = (!streams(&request)).then_some(self.bounds);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let Some(bounds) = bounds else {
                return answer.await.map(|r| r.map(BoundedBody::unbounded)).map_err(Into::into);
            };
            let deadline = tokio::time::Instant::now() + bounds.timeout;
            let response = tokio::time::timeout_at(deadline, answer)
                .await
                .map_err(|_| BoxError::from(TooSlow(bounds.timeout)))?
                .map_err(Into::into)?;
            Ok(response.map(|body| BoundedBody::new(body, deadline, bounds.max_response_bytes)))
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the API server did not answer within {0:?}")]
struct TooSlow(Duration);

#[derive(Debug, thiserror::Error)]
#[error("the API server's answer is larger than {0} bytes")]
struct TooLarge(u64);

/// A response body held to a deadline and a size.
pub struct BoundedBody<B> {
    inner: Pin<Box<B>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    left: Option<u64>,
    max: u64,
}

impl<B> BoundedBody<B> {
    fn new(inner: B, deadline: tokio::time::Instant, max: u64) -> Self {
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        Self {
            inner: Box::pin(inner),
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            timeout,
            left: Some(max),
            max,
        }
    }

    fn unbounded(inner: B) -> Self {
        Self { inner: Box::pin(inner), deadline: None, timeout: Duration::ZERO, left: None, max: 0 }
    }
}

impl<B> Body for BoundedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(TooSlow(this.timeout).into())));
        }
        let frame = match this.inner.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let (Some(left), Some(data)) = (this.left.as_mut(), frame.data_ref()) {
            let len = data.len() as u64;
            if len > *left {
                return Poll::Ready(Some(Err(TooLarge(this.max).into())));
            }
            *left -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn body_of(chunks: Vec<&'static [u8]>, pause: Duration) -> impl Body<Data = Bytes, Error = BoxError> {
        let stream = futures_util::stream::unfold(chunks.into_iter(), move |mut chunks| async move {
            let chunk = chunks.next()?;
            tokio::time::sleep(pause).await;
            Some((Ok::<_, BoxError>(Frame::data(Bytes::from_static(chunk))), chunks))
        });
        StreamBody::new(stream)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_cap_is_read_and_one_byte_more_is_refused() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let at = BoundedBody::new(body_of(vec![b"0123", b"4567"], Duration::ZERO), deadline, 8);
        assert_eq!(at.collect().await.unwrap().to_bytes().len(), 8);
        let over = BoundedBody::new(body_of(vec![b"0123", b"45678"], Duration::ZERO), deadline, 8);
        let err = over.collect().await.expect_err("refused");
        assert!(err.to_string().contains("larger than 8 bytes"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_drip_is_cut_at_the_deadline() {
        // A chunk every 20 s never trips a 30 s read timeout; the whole answer's deadline cuts it.
        let chunks = vec![b"a" as &[u8]; 100];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let drip = BoundedBody::new(body_of(chunks.clone(), Duration::from_secs(20)), deadline, 1 << 20);
        let err = drip.collect().await.expect_err("cut");
        assert!(err.to_string().contains("did not answer within"), "{err}");
        assert!(tokio::time::Instant::now() <= deadline + Duration::from_secs(1));
        // Unbounded (a watch), the same drip runs to its end.
        let stream = BoundedBody::unbounded(body_of(chunks, Duration::from_secs(20)));
        assert_eq!(stream.collect().await.unwrap().to_bytes().len(), 100);
    }

    #[test]
    fn watches_follows_and_upgrades_stream() {
        let request = |uri: &str| Request::builder().uri(uri).body(()).unwrap();
        assert!(streams(&request("/api/v1/namespaces/a/pods?watch=true&resourceVersion=1")));
        assert!(streams(&request("/api/v1/namespaces/a/pods/p/log?follow=true")));
        assert!(!streams(&request("/api/v1/namespaces/a/pods?limit=500")));
        assert!(!streams(&request("/api/v1/namespaces/a/pods?watchx=true")));
        let upgrade =
            Request::builder().uri("/api/v1/namespaces/a/pods/p/exec").header("upgrade", "websocket").body(()).unwrap();
        assert!(streams(&upgrade));
    }
}
