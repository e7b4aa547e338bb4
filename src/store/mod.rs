//! The database: one diesel DSL over SQLite (embedded default) and PostgreSQL (production).
//!
//! `Database` is an enum of two connection pools; the `with_conn!` macro runs the same query
//! text on whichever backend is live, so each query is written once. Migrations are embedded per
//! backend (`migrations/sqlite`, `migrations/postgres`) and run at start-up.

pub mod audit;
pub mod clusters;
pub mod health;
pub mod notify;
pub mod principals;
pub mod schema;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::SqliteConnection;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database unavailable: {0}")]
    Pool(String),
    /// The database was found unavailable a moment ago; nothing was tried.
    #[error("the database is unavailable")]
    Unavailable,
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    pub(crate) fn pool(err: impl std::fmt::Display) -> Self {
        StoreError::Pool(err.to_string())
    }

    /// True when the database could not be reached (as opposed to a query it refused).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Pool(_) | StoreError::Unavailable)
    }
}

/// Which backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// The SQLite file behind a URL (`sqlite://path`, `file:path` or a bare path).
pub fn sqlite_path(url: &str) -> PathBuf {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("file:")).unwrap_or(url);
    PathBuf::from(path)
}

#[derive(Clone)]
pub enum Pools {
    Sqlite(Pool<SqliteConn>),
    Postgres(Pool<AsyncPgConnection>),
}

/// The database: the live backend's pool, and a count of the queries run through it (so tests
/// and metrics can prove that a cached path does not touch it).
#[derive(Clone)]
pub struct Database {
    pub(crate) pools: Pools,
    queries: Arc<AtomicU64>,
    /// This process's name in change notices to other replicas.
    origin: Arc<str>,
    availability: Arc<health::Availability>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: name the backend only.
        write!(f, "Database({:?})", self.backend())
    }
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend is live.
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:expr) => {{
        let db: &$crate::store::Database = $db;
        db.count_query();
        match &db.pools {
            $crate::store::Pools::Sqlite(pool) => {
                let mut pooled = db.checkout(pool.get()).await?;
                let $conn = &mut *pooled;
                $body
            }
            $crate::store::Pools::Postgres(pool) => {
                let mut pooled = db.checkout(pool.get()).await?;
                let $conn = &mut *pooled;
                $body
            }
        }
    }};
}
pub(crate) use with_conn;

impl Database {
    /// Opens the pool for `url` (creating the SQLite file and its directory when needed).
    pub async fn connect(url: &str, pool_size: u32) -> Result<Database, StoreError> {
        let availability = Arc::new(health::Availability::default());
        match Backend::of_url(url) {
            Backend::Postgres => {
                // Only a server can go away: an embedded SQLite file's connection errors (a lock
                // held a moment too long while a connection is set up) are waited out instead.
                let sink = Box::new(health::TripOnConnectError(Arc::clone(&availability)));
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
                let pool = Pool::builder()
                    .max_size(pool_size)
                    .connection_timeout(Duration::from_secs(10))
                    .error_sink(sink)
                    .build(manager)
                    .await
                    .map_err(StoreError::pool)?;
                Ok(Database::new(Pools::Postgres(pool), availability))
            }
            Backend::Sqlite => {
                let path = sqlite_path(url);
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(StoreError::pool)?;
                }
                let mut config = ManagerConfig::<SqliteConn>::default();
                config.custom_setup = Box::new(|url| {
                    async move {
                        let mut conn = SqliteConn::establish(url).await?;
                        // WAL lets readers run beside the single writer; the busy timeout makes
                        // concurrent writers wait instead of failing with SQLITE_BUSY.
                        conn.batch_execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                        )
                        .await
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager =
                    AsyncDieselConnectionManager::<SqliteConn>::new_with_config(path.to_string_lossy(), config);
                let pool = Pool::builder()
                    .max_size(pool_size.max(1))
                    .connection_timeout(Duration::from_secs(10))
                    .build(manager)
                    .await
                    .map_err(StoreError::pool)?;
                Ok(Database::new(Pools::Sqlite(pool), availability))
            }
        }
    }

    fn new(pools: Pools, availability: Arc<health::Availability>) -> Database {
        Database {
            pools,
            queries: Arc::new(AtomicU64::new(0)),
            origin: uuid::Uuid::new_v4().to_string().into(),
            availability,
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn count_query(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    /// How many queries this database handle (and its clones) has run.
    pub fn query_count(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Applies pending migrations; returns the versions applied now.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        fn names(v: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
            v.into_iter().map(|m| m.to_string()).collect()
        }
        let err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
        match &self.pools {
            Pools::Sqlite(pool) => {
                let conn = pool.get_owned().await.map_err(StoreError::pool)?;
                let mut harness = AsyncMigrationHarness::new(conn);
                harness.run_pending_migrations(SQLITE_MIGRATIONS).map(names).map_err(err)
            }
            Pools::Postgres(pool) => {
                let conn = pool.get_owned().await.map_err(StoreError::pool)?;
                let mut harness = AsyncMigrationHarness::new(conn);
                harness.run_pending_migrations(POSTGRES_MIGRATIONS).map(names).map_err(err)
            }
        }
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_conn!(self, |conn| conn.batch_execute("SELECT 1").await.map_err(StoreError::from))
    }
}

/// The SQLite file of a URL, when the URL names SQLite.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    (Backend::of_url(url) == Backend::Sqlite).then(|| sqlite_path(url))
}

/// True when a diesel error is a unique-constraint violation.
pub(crate) fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(err, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}

/// Now, in UTC, truncated to microseconds so a value reads back equal on both backends.
/// A stored time (UTC, without zone) as the API shows it.
pub fn utc(at: chrono::NaiveDateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_naive_utc_and_offset(at, chrono::Utc)
}

pub(crate) fn now() -> chrono::NaiveDateTime {
    use chrono::SubsecRound;
    chrono::Utc::now().naive_utc().trunc_subsecs(6)
}
