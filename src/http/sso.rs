//! Browser sign-in with the configured OpenID Connect issuer: the authorization code flow with
//! PKCE, with the issuer's tokens kept on the server.
//!
//! - `GET /auth/login?return=/ui` sends the browser to the issuer, with a fresh state, nonce and
//!   PKCE challenge; the state also goes into an HttpOnly cookie of this browser.
//! - `GET /auth/callback` takes the issuer's answer back: the state must be the cookie's and a
//!   login under way; the code is exchanged (with the PKCE verifier, on the server) and the ID
//!   token verified with its nonce and mapped by the rules. The browser gets a session cookie
//!   (HttpOnly, SameSite=Strict) and is sent back to its page. No token is ever in a URL.
//! - `POST /auth/session` gives the page of a signed-in browser its ID token, to send as a
//!   bearer token like any other; when the token is about to expire, it is refreshed first.
//! - `POST /auth/logout` ends the session: its ID tokens are refused from then on, and the answer
//!   names the issuer's end-session URL for the page to visit.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, LogoutRequest, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::oidc::sessions::{Tokens, safe_return_path};
use crate::oidc::{Oidc, OidcError};

/// The value of a step, or the answer to send at once when it failed.
macro_rules! or_answer {
    ($step:expr) => {
        match $step {
            Ok(value) => value,
            Err(response) => return response,
        }
    };
}

const LOGIN_COOKIE: &str = "kubegql_login";
const SESSION_COOKIE: &str = "kubegql_session";

/// A page's token is refreshed when it has less than this left.
const REFRESH_BEFORE: chrono::Duration = chrono::Duration::seconds(60);

type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

fn not_configured() -> Response {
    error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "single sign-on is not configured on this server")
}

fn provider_unavailable() -> Response {
    crate::error::ApiError::from(&AuthError::Oidc(OidcError::Unavailable)).into_response()
}

/// The issuer and kubegql's redirect URL, when browser sign-in is configured.
#[allow(clippy::result_large_err)]
fn sign_in(state: &AppState) -> Result<(&std::sync::Arc<Oidc>, RedirectUrl), Response> {
    let oidc = state.auth.oidc().ok_or_else(not_configured)?;
    let redirect = oidc.config().redirect_url.clone().ok_or_else(not_configured)?;
    let redirect = RedirectUrl::new(redirect).map_err(|_| not_configured())?;
    Ok((oidc, redirect))
}

async fn client(oidc: &Oidc, redirect: RedirectUrl) -> Result<Client, Response> {
    let metadata = oidc.metadata().await.map_err(|_| provider_unavailable())?;
    let client_id = ClientId::new(oidc.config().client_id.clone());
    Ok(CoreClient::from_provider_metadata(metadata, client_id, oidc.client_secret().cloned())
        .set_redirect_uri(redirect))
}

/// Cookies on the issuer's side of a secure redirect URL are marked Secure.
fn secure(oidc: &Oidc) -> &'static str {
    if oidc.config().redirect_url.as_deref().is_some_and(|u| u.starts_with("https://")) { "; Secure" } else { "" }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn with_cookie(mut response: Response, cookie: String) -> Response {
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = header::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

/// A sign-in that cannot go on: a short text for the person at the browser.
fn sign_in_failed(status: StatusCode, message: &str) -> Response {
    let body = format!("Sign-in failed: {message}\n\nStart again at /auth/login.\n");
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], body)
        .into_response()
}

#[derive(serde::Deserialize)]
pub(super) struct LoginQuery {
    #[serde(rename = "return")]
    return_to: Option<String>,
}

pub(super) async fn login(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = or_answer!(query_params(query));
    let (oidc, redirect) = or_answer!(sign_in(&state));
    let client = or_answer!(client(oidc, redirect).await);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let scopes = oidc.config().scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone()));
    let (url, csrf, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scopes(scopes)
        .set_pkce_challenge(challenge)
        .url();
    state.auth.sessions().begin(
        csrf.secret(),
        verifier.secret().clone(),
        nonce.secret().clone(),
        safe_return_path(query.return_to.as_deref()),
    );
    let max_age = crate::oidc::sessions::LOGIN_TIMEOUT.as_secs();
    with_cookie(
        see_other(url.as_str()),
        format!(
            "{LOGIN_COOKIE}={}; Path=/auth; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            csrf.secret(),
            secure(oidc)
        ),
    )
}

#[derive(serde::Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub(super) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = or_answer!(query_params(query));
    let (oidc, redirect) = or_answer!(sign_in(&state));
    let clear_login = format!("{LOGIN_COOKIE}=; Path=/auth; Max-Age=0; HttpOnly; SameSite=Lax{}", secure(oidc));
    let fail = |status, message: &str| with_cookie(sign_in_failed(status, message), clear_login.clone());
    if let Some(error) = query.error {
        // The issuer's words, shown as text, cut short.
        let described = query.error_description.unwrap_or_default();
        let message: String = format!("the identity provider said {error}: {described}").chars().take(300).collect();
        return fail(StatusCode::FORBIDDEN, &message);
    }
    let (Some(code), Some(returned_state)) = (query.code, query.state) else {
        return fail(StatusCode::BAD_REQUEST, "the identity provider's answer has no code or state");
    };
    // The state must be the one this browser was given: a callback started elsewhere (a link
    // someone sent) is refused.
    let browser_state = cookie(&headers, LOGIN_COOKIE);
    let same = browser_state.as_deref().is_some_and(|mine| {
        crate::digest::sha256_hex(mine.as_bytes()) == crate::digest::sha256_hex(returned_state.as_bytes())
    });
    if !same {
        return fail(StatusCode::BAD_REQUEST, "this sign-in was not started in this browser");
    }
    let Some(pending) = state.auth.sessions().finish(&returned_state) else {
        return fail(StatusCode::BAD_REQUEST, "this sign-in expired or was already used");
    };
    let client = or_answer!(client(oidc, redirect).await);
    let exchange = match client.exchange_code(AuthorizationCode::new(code)) {
        Ok(request) => request.set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier)),
        Err(_) => return fail(StatusCode::BAD_GATEWAY, "the identity provider has no token endpoint"),
    };
    let answer = match exchange.request_async(oidc.http()).await {
        Ok(answer) => answer,
        Err(err) => {
            tracing::warn!(error = %err, "the OIDC code exchange failed");
            return fail(StatusCode::BAD_GATEWAY, "the identity provider did not exchange the code");
        }
    };
    let Some(id_token) = answer.id_token().map(|t| t.to_string()) else {
        return fail(StatusCode::BAD_GATEWAY, "the identity provider returned no ID token");
    };
    let nonce = Nonce::new(pending.nonce);
    let verified = match oidc.verified_claims(&id_token, Some(&nonce)).await.and_then(|c| oidc.principal(&c)) {
        Ok(verified) => verified,
        Err(OidcError::NoAccess) => return fail(StatusCode::FORBIDDEN, "no sign-in rule grants this identity access"),
        Err(err) => return fail(StatusCode::UNAUTHORIZED, &err.to_string()),
    };
    tracing::info!(principal = %verified.principal.id, tenant = %verified.principal.tenant, "signed in with OIDC");
    let session = state.auth.sessions().create(Tokens {
        id_token: SecretString::from(id_token),
        refresh_token: answer.refresh_token().map(|t| SecretString::from(t.secret().clone())),
        expires_at: verified.expires_at,
    });
    let response = with_cookie(see_other(&pending.return_to), clear_login.clone());
    with_cookie(response, format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict{}", secure(oidc)))
}

fn session_ended(oidc: &Oidc, message: &str) -> Response {
    let response = error_response(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, message);
    with_cookie(response, format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}", secure(oidc)))
}

/// The signed-in page's ID token, refreshed first when it is about to expire.
pub(super) async fn session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (oidc, redirect) = or_answer!(sign_in(&state));
    let Some(id) = cookie(&headers, SESSION_COOKIE) else {
        return error_response(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, "not signed in");
    };
    let Some(session) = state.auth.sessions().get(&id) else {
        return session_ended(oidc, "the session has ended; sign in again");
    };
    // One refresh at a time per session: issuers that rotate refresh tokens refuse the second use.
    let mut tokens = session.tokens.lock().await;
    if tokens.expires_at - chrono::Utc::now() < REFRESH_BEFORE {
        let Some(refresh) = tokens.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()) else {
            state.auth.sessions().drop_session(&id);
            return session_ended(oidc, "the session's token expired and cannot be refreshed; sign in again");
        };
        let client = or_answer!(client(oidc, redirect).await);
        let refreshed = match client.exchange_refresh_token(&RefreshToken::new(refresh)) {
            Ok(request) => request.request_async(oidc.http()).await,
            Err(_) => {
                state.auth.sessions().drop_session(&id);
                return session_ended(oidc, "the identity provider has no token endpoint");
            }
        };
        let answer = match refreshed {
            Ok(answer) => answer,
            Err(err) => {
                tracing::info!(error = %err, "an OIDC refresh failed; the session ends");
                state.auth.sessions().drop_session(&id);
                return session_ended(oidc, "the identity provider did not renew the session; sign in again");
            }
        };
        let Some(id_token) = answer.id_token().map(|t| t.to_string()) else {
            state.auth.sessions().drop_session(&id);
            return session_ended(oidc, "the identity provider renewed the session without an ID token");
        };
        // The rules are applied again: a person removed from a group loses its access here.
        let verified = match oidc.verified_claims(&id_token, None).await.and_then(|c| oidc.principal(&c)) {
            Ok(verified) => verified,
            Err(err) => {
                state.auth.sessions().drop_session(&id);
                return session_ended(oidc, &err.to_string());
            }
        };
        tokens.id_token = SecretString::from(id_token);
        if let Some(rotated) = answer.refresh_token() {
            tokens.refresh_token = Some(SecretString::from(rotated.secret().clone()));
        }
        tokens.expires_at = verified.expires_at;
    }
    let token = tokens.id_token.expose_secret().to_owned();
    let expires_at = tokens.expires_at;
    drop(tokens);
    // The principal as any request with this token would see it.
    let principal = match state.auth.authenticate(Some(&token)).await {
        Ok(principal) => principal,
        Err(err) => {
            state.auth.sessions().drop_session(&id);
            return session_ended(oidc, &err.to_string());
        }
    };
    let body = json!({
        "token": token,
        "expiresAt": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "viewer": { "id": principal.id, "name": principal.name, "tenant": principal.tenant, "role": principal.role.as_str() },
    });
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

/// Ends the browser's session.
pub(super) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let oidc = match state.auth.oidc() {
        Some(oidc) => oidc,
        None => return not_configured(),
    };
    let mut end_session = None;
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Some(session) = state.auth.sessions().get(&id)
    {
        let hint = session.tokens.lock().await.id_token.expose_secret().to_owned();
        if let Some((token_digest, until)) = state.auth.sessions().end(&id).await {
            // The other replicas refuse it too (on PostgreSQL; best effort: a replica that misses
            // the notice accepts the token until it expires).
            let change = crate::store::notify::Change::SignedOut { token_digest, until: until.timestamp() };
            if let Err(err) = state.db.announce(&change).await {
                tracing::warn!(error = %err, "could not tell other replicas of a sign-out");
            }
        }
        // Tokens cached as verified must not outlive the session.
        state.auth.forget_all();
        if let Ok(metadata) = oidc.metadata().await
            && let Some(endpoint) = metadata.additional_metadata().end_session_endpoint.clone()
        {
            let mut request =
                LogoutRequest::from(endpoint).set_client_id(ClientId::new(oidc.config().client_id.clone()));
            if let Some(back) = oidc.config().post_logout_redirect_url.clone()
                && let Ok(hinted) = hint.parse::<openidconnect::core::CoreIdToken>()
                && let Ok(back) = openidconnect::PostLogoutRedirectUrl::new(back)
            {
                // The hint is an ID token this server refuses from now on.
                request = request.set_id_token_hint(&hinted).set_post_logout_redirect_uri(back);
            }
            end_session = Some(request.http_get_url().to_string());
        }
    }
    let body = json!({ "signedOut": true, "endSessionUrl": end_session });
    let response = Json(body).into_response();
    with_cookie(response, format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}", secure(oidc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; kubegql_session_x=2; kubegql_session=3".parse().unwrap());
        headers.append(header::COOKIE, "b=4".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("3"));
        assert_eq!(cookie(&headers, "b").as_deref(), Some("4"));
        assert_eq!(cookie(&headers, LOGIN_COOKIE), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_cookie_header_is_read_without_a_panic(value in "[ -~]{0,80}", name in "[a-z_]{1,16}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = header::HeaderValue::from_str(&value) {
                headers.insert(header::COOKIE, value);
            }
            if let Some(found) = cookie(&headers, &name) {
                let pair = format!("{name}={found}");
                prop_assert!(value.split(';').any(|p| p.trim() == pair));
            }
        }
    }
}
