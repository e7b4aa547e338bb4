//! Change notices between replicas sharing one PostgreSQL database: a write that other replicas
//! cache (a cluster record, an API token, a signed-out sign-on session) is announced with `NOTIFY`, and every replica `LISTEN`s
//! so its caches follow within moments. The caches' own refresh intervals stay as the backstop,
//! and SQLite (one process) needs none of this.

use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{Database, Pools, StoreError};

pub const CHANNEL: &str = "kubegql_changes";

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Cluster(String),
    Tokens,
    /// A single sign-on session was signed out: the SHA-256 (hex) of the ID token it handed out,
    /// refused until this time (seconds since the epoch).
    SignedOut {
        token_digest: String,
        until: i64,
    },
    /// Notices may have been missed (the listening connection was re-established): refresh
    /// everything.
    Everything,
}

impl Change {
    /// `<origin>|cluster:<id>` or `<origin>|tokens`: the origin lets a replica skip its own.
    fn payload(&self, origin: &str) -> String {
        match self {
            Change::Cluster(id) => format!("{origin}|cluster:{id}"),
            Change::SignedOut { token_digest, until } => format!("{origin}|signedout:{token_digest}:{until}"),
            Change::Tokens | Change::Everything => format!("{origin}|tokens"),
        }
    }

    /// The change, and the replica it came from.
    fn parse(payload: &str) -> Option<(String, Change)> {
        let (origin, what) = payload.split_once('|')?;
        let change = match what.split_once(':') {
            Some(("cluster", id)) => Change::Cluster(id.to_owned()),
            Some(("signedout", rest)) => {
                let (digest, until) = rest.split_once(':')?;
                let valid = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
                Change::SignedOut { token_digest: valid.then(|| digest.to_owned())?, until: until.parse().ok()? }
            }
            _ if what == "tokens" => Change::Tokens,
            _ => return None,
        };
        Some((origin.to_owned(), change))
    }
}

impl Database {
    /// Tells the other replicas (on PostgreSQL) that something they may cache has changed.
    pub async fn announce(&self, change: &Change) -> Result<(), StoreError> {
        if let Pools::Postgres(pool) = &self.pools {
            self.count_query();
            let mut conn = self.checkout(pool.get()).await?;
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(CHANNEL)
                .bind::<Text, _>(change.payload(self.origin()))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// Listens for other replicas' change notices on PostgreSQL and passes them on; reconnects after
/// a failure. Returns once listening (or after a few seconds of trying, leaving the retries to the
/// background), so that no change made after start-up's bulk load can slip by. None for SQLite.
pub async fn listen(db: &Database, database_url: &str) -> Option<mpsc::UnboundedReceiver<Change>> {
    if db.backend() != super::Backend::Postgres {
        return None;
    }
    let own = db.origin().to_owned();
    let listener_db = db.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let url = database_url.to_owned();
    let (ready_tx, ready) = tokio::sync::oneshot::channel::<()>();
    let mut ready_tx = Some(ready_tx);
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(500);
        loop {
            match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                Ok((client, mut connection)) => {
                    let (notices_tx, mut notices) = mpsc::unbounded_channel();
                    let driver = tokio::spawn(async move {
                        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(message) = messages.next().await {
                            match message {
                                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                    if notices_tx.send(n.payload().to_owned()).is_err() {
                                        break;
                                    }
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                    });
                    if client.batch_execute(&format!("LISTEN {CHANNEL}")).await.is_ok() {
                        delay = Duration::from_millis(500);
                        listener_db.answered();
                        match ready_tx.take() {
                            Some(first) => {
                                let _ = first.send(());
                            }
                            // A reconnect may have missed notices: have everything refreshed.
                            None => {
                                let _ = tx.send(Change::Everything);
                            }
                        }
                        while let Some(payload) = notices.recv().await {
                            if let Some((origin, change)) = Change::parse(&payload) {
                                if origin == own {
                                    continue;
                                }
                                if tx.send(change).is_err() {
                                    driver.abort();
                                    return;
                                }
                            }
                        }
                    }
                    driver.abort();
                    tracing::warn!("the change-notice connection to PostgreSQL closed; reconnecting");
                }
                Err(err) => tracing::warn!(error = %err, "cannot listen for change notices; retrying"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(delay).await;
            // Short enough that notices resume within moments of the database's return.
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    });
    if tokio::time::timeout(Duration::from_secs(5), ready).await.is_err() {
        tracing::warn!("not yet listening for other replicas' changes; caches rely on their refresh until then");
    }
    Some(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let signed_out = Change::SignedOut { token_digest: "ab".repeat(32), until: 1_800_000_000 };
        for change in [Change::Cluster("abc".into()), Change::Tokens, signed_out] {
            assert_eq!(Change::parse(&change.payload("r1")), Some(("r1".to_owned(), change)));
        }
        assert_eq!(Change::parse("other"), None);
        assert_eq!(Change::parse("r1|other"), None);
        assert_eq!(Change::parse("r1|signedout:not-a-digest:1"), None);
        assert_eq!(Change::parse(&format!("r1|signedout:{}:soon", "ab".repeat(32))), None);
    }
}
