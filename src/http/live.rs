//! Connections that outlive their request (GraphQL over WebSocket and SSE, pod tunnels) keep
//! checking the credentials they were opened with: a revoked or expired token, or a principal
//! removed or given another role, ends them within the token cache's lifetime plus
//! `RECHECK_EVERY`. A GraphQL WebSocket is also held to an init timeout and a cap on the
//! operations it runs at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};

use super::*;
use crate::auth::Principal;

/// How often a live connection asks again whether its token still holds.
pub(super) const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// The raw token a request authenticated with (the `Authorization` header, or the WebSocket
/// bearer subprotocol), for connections that check it again while they live.
pub(super) struct LiveToken(pub Option<String>);

impl axum::extract::FromRequestParts<AppState> for LiveToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
        Ok(LiveToken(header.map(str::to_owned).or_else(|| token_from_protocols(&parts.headers))))
    }
}

/// Resolves when `token` no longer authenticates `principal` as it did: revoked, expired, the
/// principal removed, or its role or tenant changed. A database that cannot answer is not a
/// revocation: the connection stays until it can.
pub(super) async fn credentials_end(auth: Authenticator, token: Option<String>, principal: Principal) {
    credentials_end_renewable(auth, Arc::new(Mutex::new(token)), principal).await
}

/// As `credentials_end`, with the token read anew at each check: a GraphQL WebSocket may renew it
/// (a `ping` carrying a fresh token for the same principal, see `guard_incoming`).
async fn credentials_end_renewable(auth: Authenticator, token: Arc<Mutex<Option<String>>>, principal: Principal) {
    loop {
        tokio::time::sleep(RECHECK_EVERY).await;
        let current = token.lock().ok().and_then(|t| t.clone());
        match auth.authenticate(current.as_deref()).await {
            Ok(now) if same_principal(&now, &principal) => {}
            Err(AuthError::Store(err)) => tracing::warn!(error = %err, "credentials could not be checked again"),
            Err(AuthError::Oidc(crate::oidc::OidcError::Unavailable)) => {
                tracing::warn!("credentials could not be checked again: the identity provider is unavailable")
            }
            _ => return,
        }
    }
}

fn same_principal(a: &Principal, b: &Principal) -> bool {
    a.id == b.id && a.role == b.role && a.tenant == b.tenant
}

/// The token of a graphql-transport-ws `ping` that renews a connection's credentials:
/// `{"type": "ping", "payload": {"Authorization": "Bearer <token>"}}`.
fn renewal_token(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Ping {
        r#type: String,
        payload: Option<serde_json::Map<String, serde_json::Value>>,
    }
    let ping: Ping = serde_json::from_str(text).ok()?;
    if ping.r#type != "ping" {
        return None;
    }
    let payload = ping.payload?;
    let value = payload.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization"))?.1.as_str()?;
    bearer_token(value).map(str::to_owned)
}

/// Limits of a GraphQL WebSocket.
#[derive(Debug, Clone, Copy)]
pub(super) struct SocketLimits {
    /// `connection_init` must arrive within this.
    pub init_timeout: Duration,
    /// Operations running at once on one connection.
    pub max_operations: usize,
}

/// What a GraphQL WebSocket learns as it runs: who opened it (once `connection_init` is
/// accepted), and which operations run.
#[derive(Default)]
pub(super) struct Session {
    pub opened_by: OnceLock<(Option<String>, Principal)>,
    /// The token the connection's credentials are checked with: the one it opened with, until a
    /// `ping` renews it.
    token: Arc<Mutex<Option<String>>>,
    running: Mutex<HashSet<String>>,
}

/// The `type` and `id` of a GraphQL WebSocket message (either subprotocol).
fn kind_and_id(text: &str) -> Option<(String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        r#type: String,
        id: Option<String>,
    }
    serde_json::from_str::<Envelope>(text).ok().map(|e| (e.r#type, e.id))
}

/// The client's messages, ended (which closes the connection) when `connection_init` does not
/// come in time, when the client starts more operations at once than allowed, or when the
/// credentials the connection was opened with end.
pub(super) fn guard_incoming<S>(
    incoming: S,
    session: Arc<Session>,
    auth: Authenticator,
    limits: SocketLimits,
) -> impl Stream<Item = Result<Message, axum::Error>> + Send + 'static
where
    S: Stream<Item = Result<Message, axum::Error>> + Send + Unpin + 'static,
{
    let watched = Arc::clone(&session);
    let renewing = auth.clone();
    let ended = Box::pin(async move {
        let init = async {
            loop {
                if let Some(opened) = watched.opened_by.get() {
                    return opened.clone();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        match tokio::time::timeout(limits.init_timeout, init).await {
            Err(_) => tracing::debug!("a WebSocket sent no connection_init in time; closing it"),
            Ok((token, principal)) => {
                if let Ok(mut current) = watched.token.lock() {
                    current.get_or_insert(token.unwrap_or_default());
                }
                credentials_end_renewable(auth, Arc::clone(&watched.token), principal).await;
                tracing::info!("the credentials of a WebSocket ended; closing it");
            }
        }
    });
    futures_util::stream::unfold((incoming, ended, session), move |(mut incoming, mut ended, session)| {
        let renewing = renewing.clone();
        async move {
            let message = tokio::select! {
                _ = &mut ended => return None,
                message = incoming.next() => message?,
            };
            if let Ok(Message::Text(text)) = &message
                && let Some(fresh) = renewal_token(text.as_str())
                && let Some((_, principal)) = session.opened_by.get()
            {
                // A renewed token must hold for the same principal; anything else ends the connection.
                match renewing.authenticate(Some(&fresh)).await {
                    Ok(now) if same_principal(&now, principal) => {
                        if let Ok(mut current) = session.token.lock() {
                            *current = Some(fresh);
                        }
                    }
                    _ => {
                        tracing::info!(
                            "a WebSocket renewed its credentials with a token that does not hold; closing it"
                        );
                        return None;
                    }
                }
            }
            if let Ok(Message::Text(text)) = &message
                && let Some((kind, Some(id))) = kind_and_id(text.as_str())
            {
                let mut running = session.running.lock().ok()?;
                match kind.as_str() {
                    "subscribe" | "start" => {
                        running.insert(id);
                        if running.len() > limits.max_operations {
                            tracing::info!(
                                limit = limits.max_operations,
                                "a WebSocket ran too many operations at once; closing it"
                            );
                            return None;
                        }
                    }
                    "complete" | "stop" => {
                        running.remove(&id);
                    }
                    _ => {}
                }
            }
            Some((message, (incoming, ended, session)))
        }
    })
}

/// The server's messages, noting the operations that end (`complete`, `error`) so that they stop
/// counting against the cap.
pub(super) fn watch_outgoing<K>(sink: K, session: Arc<Session>) -> impl Sink<Message, Error = K::Error>
where
    K: Sink<Message>,
{
    sink.with(move |message: Message| {
        // async-graphql closes a subscription sent before `connection_init` with 1011 (an
        // internal error); the graphql-transport-ws protocol says 4401, and it is the client's
        // mistake, not the server's.
        let message = match message {
            Message::Close(Some(frame)) if frame.code == 1011 => Message::Close(Some(CloseFrame {
                code: 4401,
                reason: "Unauthorized: subscribe before connection_init was acknowledged".into(),
            })),
            other => other,
        };
        if let Message::Text(text) = &message
            && let Some((kind, Some(id))) = kind_and_id(text.as_str())
            && matches!(kind.as_str(), "complete" | "error")
            && let Ok(mut running) = session.running.lock()
        {
            running.remove(&id);
        }
        futures_util::future::ready(Ok::<_, K::Error>(message))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_may_carry_a_renewed_token() {
        assert_eq!(
            renewal_token(r#"{"type":"ping","payload":{"Authorization":"Bearer a.b.c"}}"#).as_deref(),
            Some("a.b.c")
        );
        assert_eq!(renewal_token(r#"{"type":"ping"}"#), None);
        assert_eq!(renewal_token(r#"{"type":"pong","payload":{"authorization":"Bearer x"}}"#), None);
        assert_eq!(renewal_token(r#"{"type":"ping","payload":{"authorization":"Basic x"}}"#), None);
        assert_eq!(renewal_token("not json"), None);
    }

    #[test]
    fn messages_of_both_subprotocols_are_read() {
        assert_eq!(
            kind_and_id(r#"{"type":"subscribe","id":"1","payload":{}}"#),
            Some(("subscribe".into(), Some("1".into())))
        );
        assert_eq!(kind_and_id(r#"{"type":"connection_init"}"#), Some(("connection_init".into(), None)));
        assert_eq!(kind_and_id("not json"), None);
    }
}
