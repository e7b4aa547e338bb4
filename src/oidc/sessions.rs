//! Browser sign-in state: logins on their way through the issuer, and the sessions they become.
//!
//! A login waits here (by its `state`, for `LOGIN_TIMEOUT`) with its PKCE verifier and nonce; the
//! browser holds only the state, in an HttpOnly cookie, so that a callback is accepted only in
//! the browser that began it. A session keeps the issuer's tokens on the server (the browser
//! holds a random session id in an HttpOnly, SameSite=Strict cookie) and hands the page an ID
//! token on request, refreshing it with the refresh token first when it is about to expire. The
//! map keys are SHA-256 digests of the cookie values. Both maps are bounded.
//!
//! Sessions live in the memory of the replica that made them: behind several replicas, route a
//! browser to one replica (sticky sessions); API tokens and ID tokens work on every replica.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use dashmap::DashMap;
use secrecy::SecretString;

/// How long a login may take at the issuer.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(600);
/// Most logins under way at once; past it the oldest are dropped.
const MAX_PENDING: usize = 10_000;
/// Most sessions at once; past it the oldest are dropped.
const MAX_SESSIONS: usize = 100_000;

/// A login under way.
pub struct Pending {
    pub pkce_verifier: String,
    pub nonce: String,
    /// The local path to return to once signed in.
    pub return_to: String,
    started: Instant,
}

/// What a session holds.
pub struct Tokens {
    pub id_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

pub struct Session {
    pub tokens: tokio::sync::Mutex<Tokens>,
    created: Instant,
}

impl Session {
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }
}

#[derive(Default)]
pub struct Sessions {
    pending: DashMap<String, Pending>,
    sessions: DashMap<String, Arc<Session>>,
    /// Digests of ID tokens handed out by sessions that were signed out, until they expire: they
    /// are refused even though their signature still holds.
    signed_out: DashMap<String, chrono::DateTime<chrono::Utc>>,
}

/// 32 random bytes, base64url: a login state or a session id.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn key(value: &str) -> String {
    crate::digest::sha256_hex(value.as_bytes())
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("pending", &self.pending.len())
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl Sessions {
    /// Remembers a login under its state.
    pub fn begin(&self, state: &str, pkce_verifier: String, nonce: String, return_to: String) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.retain(|_, p| p.started.elapsed() < LOGIN_TIMEOUT);
            if self.pending.len() >= MAX_PENDING
                && let Some(oldest) = self.pending.iter().min_by_key(|p| p.started).map(|p| p.key().clone())
            {
                self.pending.remove(&oldest);
            }
        }
        self.pending.insert(key(state), Pending { pkce_verifier, nonce, return_to, started: Instant::now() });
    }

    /// The login of `state`, once: a callback cannot be replayed.
    pub fn finish(&self, state: &str) -> Option<Pending> {
        self.pending.remove(&key(state)).map(|(_, p)| p).filter(|p| p.started.elapsed() < LOGIN_TIMEOUT)
    }

    /// Starts a session and returns its id (for the cookie).
    pub fn create(&self, tokens: Tokens) -> String {
        if self.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self.sessions.iter().min_by_key(|s| s.created).map(|s| s.key().clone())
        {
            self.sessions.remove(&oldest);
        }
        let id = random_id();
        self.sessions
            .insert(key(&id), Arc::new(Session { tokens: tokio::sync::Mutex::new(tokens), created: Instant::now() }));
        id
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.get(&key(id)).map(|s| Arc::clone(&s))
    }

    /// Ends a session; the ID token it last handed out is refused from now on. Returns that
    /// token's digest and expiry, for the other replicas.
    pub async fn end(&self, id: &str) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
        let (_, session) = self.sessions.remove(&key(id))?;
        let tokens = session.tokens.lock().await;
        let digest = key(secrecy::ExposeSecret::expose_secret(&tokens.id_token));
        self.sign_out_digest(digest.clone(), tokens.expires_at);
        Some((digest, tokens.expires_at))
    }

    /// Refuses the ID token of this digest (SHA-256, hex) from now until it expires.
    pub fn sign_out_digest(&self, token_digest: String, expires_at: chrono::DateTime<chrono::Utc>) {
        let now = chrono::Utc::now();
        if self.signed_out.len() > MAX_SESSIONS {
            self.signed_out.retain(|_, until| *until > now);
        }
        self.signed_out.insert(token_digest, expires_at);
    }

    /// Whether a token was handed out by a session since signed out (by the digest the
    /// authenticator already computed).
    pub fn is_signed_out(&self, token_digest: &str) -> bool {
        self.signed_out.get(token_digest).is_some_and(|until| *until > chrono::Utc::now() - chrono::Duration::hours(1))
    }

    /// Forgets sessions a refresh could not renew.
    pub fn drop_session(&self, id: &str) {
        self.sessions.remove(&key(id));
    }
}

/// The local path a login may return to: absolute, on this server, no scheme or authority.
pub fn safe_return_path(asked: Option<&str>) -> String {
    match asked {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control)
                && path.len() <= 512 =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(id: &str) -> Tokens {
        Tokens {
            id_token: SecretString::from(id.to_owned()),
            refresh_token: None,
            expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
        }
    }

    #[test]
    fn a_login_finishes_once() {
        let sessions = Sessions::default();
        sessions.begin("state-1", "verifier".into(), "nonce".into(), "/graphiql".into());
        assert!(sessions.finish("state-2").is_none());
        let pending = sessions.finish("state-1").expect("pending");
        assert_eq!((pending.pkce_verifier.as_str(), pending.return_to.as_str()), ("verifier", "/graphiql"));
        assert!(sessions.finish("state-1").is_none(), "a callback cannot be replayed");
    }

    #[tokio::test]
    async fn a_signed_out_session_refuses_its_token() {
        let sessions = Sessions::default();
        let id = sessions.create(tokens("header.payload.signature"));
        assert!(sessions.get(&id).is_some());
        assert!(sessions.get("another").is_none());
        assert!(!sessions.is_signed_out(&key("header.payload.signature")));
        let (digest, _) = sessions.end(&id).await.expect("ended");
        assert_eq!(digest, key("header.payload.signature"));
        assert!(sessions.get(&id).is_none());
        assert!(sessions.is_signed_out(&key("header.payload.signature")));
        assert!(sessions.end(&id).await.is_none());
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_return_path(Some("/graphiql")), "/graphiql");
        assert_eq!(safe_return_path(Some("/ui?x=1")), "/ui?x=1");
        for bad in ["//evil.example", "https://evil.example/", "/\\evil.example", "evil", "/a\nb", ""] {
            assert_eq!(safe_return_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_path(None), "/");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn a_return_path_is_always_local(asked in prop_oneof!["(?s).{0,40}", "/[ -~]{0,40}", "//[a-z.]{0,12}/.{0,8}"]) {
            let path = safe_return_path(Some(&asked));
            prop_assert!(path.starts_with('/') && !path.starts_with("//") && !path.contains('\\'));
            prop_assert!(!path.chars().any(char::is_control));
            prop_assert!(path == asked || path == "/");
        }
    }
}
