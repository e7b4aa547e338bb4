//! Whether the database answers. On PostgreSQL, the pool's failed connection attempts and
//! timed-out checkouts mark it unavailable at once; from then on every query fails fast with
//! `StoreError::Unavailable` (the caller gets `STORE_UNAVAILABLE`) instead of each waiting out the
//! pool's connection timeout, and one background probe tries a fresh connection every half second
//! until one succeeds. Reads that memory can answer (known clusters, recently verified tokens) go
//! on; writes, and so every audited action, are refused until the database is back.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Database, Pools, StoreError};

/// How often the probe tries to connect while the database is unavailable.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct Availability {
    /// `Some(since)` while the database is unavailable.
    down: watch::Sender<Option<Instant>>,
    probing: AtomicBool,
}

impl Default for Availability {
    fn default() -> Self {
        Self { down: watch::Sender::new(None), probing: AtomicBool::new(false) }
    }
}

impl Availability {
    /// Marks the database unavailable (from the pool's error sink or a failed checkout).
    pub fn trip(&self, reason: &dyn std::fmt::Display) {
        let tripped = self.down.send_if_modified(|down| {
            if down.is_none() {
                *down = Some(Instant::now());
                true
            } else {
                false
            }
        });
        if tripped {
            // The reason comes from the driver (connection refused, timed out): no URL, no password.
            tracing::error!(reason = %reason, "the database is unavailable; writes are refused until it answers again");
        }
    }

    /// Since when the database is unavailable, if it is.
    pub fn down_since(&self) -> Option<Instant> {
        *self.down.borrow()
    }

    pub(crate) fn recovered(&self) {
        let since = self.down.send_replace(None);
        if let Some(since) = since {
            tracing::info!(after_ms = since.elapsed().as_millis() as u64, "the database answers again");
        }
    }
}

/// The pool's error sink: a failed attempt to open a connection means the database is not there.
/// (A pooled connection that fails its check-out test is only discarded: after a restart of the
/// database the old connections fail while new ones work.)
#[derive(Debug, Clone)]
pub(crate) struct TripOnConnectError(pub Arc<Availability>);

impl bb8::ErrorSink<diesel_async::pooled_connection::PoolError> for TripOnConnectError {
    fn sink(&self, error: diesel_async::pooled_connection::PoolError) {
        if let diesel_async::pooled_connection::PoolError::ConnectionError(err) = &error {
            self.0.trip(err);
        }
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<diesel_async::pooled_connection::PoolError>> {
        Box::new(self.clone())
    }
}

impl Database {
    /// Gets a pooled connection through `get`, unless the database is known to be unavailable;
    /// gives up as soon as it becomes so.
    pub(crate) async fn checkout<T, E: std::fmt::Display>(
        &self,
        get: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError> {
        let availability = &self.availability;
        if availability.down_since().is_some() {
            self.probe();
            return Err(StoreError::Unavailable);
        }
        let mut down = availability.down.subscribe();
        tokio::select! {
            got = get => got.map_err(|err| {
                if self.backend() == super::Backend::Postgres {
                    availability.trip(&err);
                    self.probe();
                }
                StoreError::pool(err)
            }),
            _ = down.wait_for(Option::is_some) => {
                self.probe();
                Err(StoreError::Unavailable)
            }
        }
    }

    /// The database answered on a connection of its own (the change-notice listener): the
    /// pool may use it again at once. Without this, the listener's "refresh everything" after a
    /// reconnect could empty the token cache while queries still fail fast, until the probe's
    /// next round.
    pub(crate) fn answered(&self) {
        self.availability.recovered();
    }

    /// Whether the database is known to be unavailable now.
    pub fn unavailable(&self) -> bool {
        self.availability.down_since().is_some()
    }

    /// Starts the probe unless one runs: it tries a fresh connection until one opens.
    fn probe(&self) {
        if self.availability.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let db = self.clone();
        tokio::spawn(async move {
            loop {
                let opened = match &db.pools {
                    Pools::Sqlite(pool) => {
                        tokio::time::timeout(PROBE_TIMEOUT, pool.dedicated_connection()).await.is_ok_and(|c| c.is_ok())
                    }
                    Pools::Postgres(pool) => {
                        tokio::time::timeout(PROBE_TIMEOUT, pool.dedicated_connection()).await.is_ok_and(|c| c.is_ok())
                    }
                };
                if opened {
                    db.availability.recovered();
                    db.availability.probing.store(false, Ordering::SeqCst);
                    // A trip between the connection and now would find `probing` set: look again.
                    if db.availability.down_since().is_none() || db.availability.probing.swap(true, Ordering::SeqCst) {
                        return;
                    }
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PostgreSQL URL whose port on loopback has nothing listening: every connection is refused.
    async fn unreachable() -> Database {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        Database::connect(&format!("postgres://kubegql:s3cr3t-pw@127.0.0.1:{port}/kubegql"), 2).await.unwrap()
    }

    #[tokio::test]
    async fn a_refused_connection_fails_the_query_at_once_and_the_next_without_trying() {
        let db = unreachable().await;
        // The pool's own timeout is 10 s: the error sink ends the wait long before.
        let first = tokio::time::timeout(Duration::from_secs(5), db.ping()).await.expect("no wait for the pool");
        let first = first.unwrap_err();
        assert!(first.is_unavailable(), "{first}");
        assert!(!first.to_string().contains("s3cr3t"), "no password in errors: {first}");
        assert!(db.unavailable());
        let queries = db.query_count();
        let second = db.ping().await.unwrap_err();
        assert!(matches!(second, StoreError::Unavailable), "{second}");
        assert_eq!(db.query_count(), queries + 1, "counted, but nothing was sent");
        let api = crate::error::ApiError::from(&second);
        assert_eq!(api.code.as_str(), "STORE_UNAVAILABLE");
    }

    #[tokio::test]
    async fn a_database_that_answers_again_is_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(&dir.path().join("k.db").display().to_string(), 1).await.unwrap();
        db.availability.trip(&"a test");
        assert!(matches!(db.ping().await, Err(StoreError::Unavailable)));
        // The refused query started the probe, which opens a connection and clears the state.
        let deadline = Instant::now() + Duration::from_secs(10);
        while db.unavailable() {
            assert!(Instant::now() < deadline, "the probe did not find the database");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        db.ping().await.unwrap();
    }
}
