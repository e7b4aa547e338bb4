//! Who is calling: the `Authenticated` extractor (bearer token, impersonation headers, request
//! id) that every plain HTTP route takes, and the failures it answers with.

use super::*;

pub(super) fn auth_failure(err: AuthError) -> Response {
    match err {
        AuthError::Store(store) => {
            tracing::error!(error = %store, "token lookup failed");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StoreUnavailable,
                crate::error::STORE_UNAVAILABLE,
            )
        }
        other => crate::error::ApiError::from(&other).into_response(),
    }
}

/// The request's id, as the router's request-id layers set it.
pub(super) fn request_id(headers: &HeaderMap) -> String {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned).unwrap_or_default()
}

/// The `Impersonate-*` headers of a request, as Kubernetes itself reads them (`kubectl --as`,
/// `--as-group`, `--as-uid`, and `Impersonate-Extra-<key>`). Whether the caller may use them is
/// decided where a cluster is reached, so that an attempted mutation is still audited.
// The error is the HTTP answer itself, returned at once by the handler; it is not carried around.
#[allow(clippy::result_large_err)]
pub(super) fn impersonation_headers(headers: &HeaderMap) -> Result<Option<Impersonation>, Response> {
    // A value that is not plain text is refused, never skipped: dropping an `Impersonate-User`
    // would run the request as the caller itself, with more rights than it asked to use.
    let unreadable = |name: &str| {
        error_response(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, format!("the {name} header is not plain text"))
    };
    let text = |name: &str| -> Result<Vec<String>, Response> {
        headers.get_all(name).iter().map(|v| v.to_str().map(str::to_owned).map_err(|_| unreadable(name))).collect()
    };
    let user = text("impersonate-user")?.into_iter().next();
    let groups = text("impersonate-group")?;
    let uid = text("impersonate-uid")?.into_iter().next();
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            let value = value.to_str().map_err(|_| unreadable(name.as_str()))?;
            extra.entry(key.to_owned()).or_default().push(value.to_owned());
        }
    }
    match user {
        Some(user) => Ok(Some(Impersonation { user, groups, uid, extra })),
        None if groups.is_empty() && uid.is_none() && extra.is_empty() => Ok(None),
        None => Err(error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadUserInput,
            "Impersonate-Group, Impersonate-Uid and Impersonate-Extra-* need Impersonate-User",
        )),
    }
}

/// The authenticated caller of a plain HTTP request, as an extractor: the bearer token of the
/// `Authorization` header or, on a WebSocket upgrade (a browser cannot set headers there), of
/// the Kubernetes bearer subprotocol; with the `Impersonate-*` headers and the request id. What
/// the caller may then do is asked of `authz`. A refusal is the HTTP answer to send (401, or 400
/// for malformed impersonation headers), before any other work.
pub struct Authenticated(pub Caller);

impl axum::extract::FromRequestParts<AppState> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Response> {
        let upgrade = parts
            .headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let protocol_token = if upgrade { token_from_protocols(&parts.headers) } else { None };
        let address = client_address(&parts.extensions);
        state.auth_failures.check(address)?;
        let caller = authenticate_with(state, &parts.headers, protocol_token.as_deref()).await;
        // Only a token that does not hold counts as a failure: a request without one (a page
        // loading before its user signed in) is not a guess.
        let presented = protocol_token.is_some() || parts.headers.contains_key(header::AUTHORIZATION);
        if presented && caller.as_ref().is_err_and(|r| r.status() == StatusCode::UNAUTHORIZED) {
            state.auth_failures.failed(address)?;
        }
        caller.map(Authenticated)
    }
}

/// The caller named by the `Authorization` header, or by `other_token` when there is none.
pub(super) async fn authenticate_with(
    state: &AppState,
    headers: &HeaderMap,
    other_token: Option<&str>,
) -> Result<Caller, Response> {
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token).or(other_token);
    let principal = state.auth.authenticate(token).await.map_err(auth_failure)?;
    let impersonation = impersonation_headers(headers)?;
    Ok(Caller { principal, impersonation, request_id: request_id(headers) })
}

/// Browsers cannot set headers on a WebSocket; as with the Kubernetes API server, they may send
/// the token as a subprotocol: `base64url.bearer.authorization.k8s.io.<base64url(token)>`.
pub(super) const TOKEN_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

pub(super) fn token_from_protocols(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let offered = headers.get(header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    let encoded = offered.split(',').map(str::trim).find_map(|p| p.strip_prefix(TOKEN_PROTOCOL_PREFIX))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).ok()?;
    String::from_utf8(bytes).ok()
}

/// Failed authentications per client address: past `--auth-failures-per-minute` an address is
/// answered `429 RATE_LIMITED` at once, without a token lookup, until its budget refills. Behind a
/// reverse proxy every client shares the proxy's address; size the budget for that.
pub struct AuthFailures {
    limiter: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    blocked: dashmap::DashMap<std::net::IpAddr, std::time::Instant>,
}

impl AuthFailures {
    pub fn new(per_minute: u32) -> Self {
        let per_minute = std::num::NonZeroU32::new(per_minute.max(1)).expect("at least one");
        Self {
            limiter: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
            blocked: Default::default(),
        }
    }

    /// Refuses an address that failed too often, before any work.
    #[allow(clippy::result_large_err)]
    pub(super) fn check(&self, address: Option<std::net::IpAddr>) -> Result<(), Response> {
        let Some(address) = address else { return Ok(()) };
        let Some(until) = self.blocked.get(&address).map(|u| *u) else { return Ok(()) };
        let now = std::time::Instant::now();
        if now >= until {
            self.blocked.remove(&address);
            return Ok(());
        }
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many failed authentications from this address; try again later",
        );
        let wait = (until - now).as_secs().max(1).to_string();
        if let Ok(value) = header::HeaderValue::from_str(&wait) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        Err(response)
    }

    /// Counts a failed authentication; past the budget the address is refused until it refills,
    /// starting with this request (its answer is then the refusal).
    #[allow(clippy::result_large_err)]
    pub(super) fn failed(&self, address: Option<std::net::IpAddr>) -> Result<(), Response> {
        let Some(address) = address else { return Ok(()) };
        if let Err(not_until) = self.limiter.check_key(&address) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            if self.blocked.len() > 100_000 {
                let now = std::time::Instant::now();
                self.blocked.retain(|_, until| *until > now);
                self.limiter.retain_recent();
            }
            self.blocked.insert(address, std::time::Instant::now() + wait);
            tracing::warn!(%address, "too many failed authentications; refusing the address for a while");
            return self.check(Some(address));
        }
        Ok(())
    }
}

impl std::fmt::Debug for AuthFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthFailures").field("blocked", &self.blocked.len()).finish()
    }
}

/// The address of the client, as the listener saw it.
pub(super) fn client_address(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// The client's address as an extractor (`None` when the listener did not record it).
pub(super) struct ClientAddress(pub Option<std::net::IpAddr>);

impl axum::extract::FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_address(&parts.extensions)))
    }
}

#[cfg(test)]
mod properties {
    use axum::http::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    fn header() -> impl Strategy<Value = (String, Vec<u8>)> {
        (
            prop_oneof![
                Just("impersonate-user".to_owned()),
                Just("impersonate-group".to_owned()),
                Just("impersonate-uid".to_owned()),
                "impersonate-extra-[a-z0-9%.-]{0,10}",
                "x-[a-z]{1,8}",
            ],
            prop::collection::vec(any::<u8>(), 0..24),
        )
    }

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_impersonation_headers_are_read_or_refused_as_bad_input(headers in prop::collection::vec(header(), 0..6)) {
            let mut map = HeaderMap::new();
            for (name, value) in &headers {
                if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
                    map.append(name, value);
                }
            }
            let named = |name: &str| map.keys().any(|k| k.as_str() == name);
            let impersonating: Vec<_> = map.iter().filter(|(k, _)| k.as_str().starts_with("impersonate-")).collect();
            let all_text = impersonating.iter().all(|(_, v)| v.to_str().is_ok());
            match impersonation_headers(&map) {
                Ok(None) => prop_assert!(impersonating.is_empty()),
                Ok(Some(identity)) => {
                    prop_assert!(named("impersonate-user") && all_text);
                    prop_assert_eq!(Some(identity.user.as_str()), map.get("impersonate-user").and_then(|v| v.to_str().ok()));
                }
                Err(response) => {
                    // Refused: a value that is not text, or a group, uid or extra without a user.
                    prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
                    prop_assert!(!all_text || !named("impersonate-user"));
                }
            }
        }
    }
}
