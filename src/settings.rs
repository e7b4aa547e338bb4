//! Server settings: one struct, filled from flags and `KUBEGQL_*` environment variables,
//! with defaults that run on a laptop.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Where the data lives and how to unlock it; shared by every sub-command that opens the store.
#[derive(Args, Debug, Clone)]
pub struct StoreSettings {
    /// Database URL: a SQLite file path (default) or `postgres://...`.
    #[arg(long, env = "DATABASE_URL", default_value = "kubegql.db")]
    pub database_url: String,

    /// Maximum connections in the database pool.
    #[arg(long, env = "KUBEGQL_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,

    /// While the database is unavailable, how long (seconds) a token verified before is still
    /// accepted for reads; 0 refuses every request until the database answers again.
    #[arg(long, env = "KUBEGQL_STORE_OUTAGE_GRACE_SECS", default_value_t = 300)]
    pub outage_grace_secs: u64,
}

/// How the master key that seals credentials is found.
#[derive(Args, Debug, Clone, Default)]
pub struct KeySettings {
    /// Master key, base64 of 32 bytes. Prefer the file form on shared machines.
    #[arg(long, env = "KUBEGQL_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,

    /// File holding the base64 master key. Created (mode 0600) beside the database when no
    /// key is configured at all.
    #[arg(long, env = "KUBEGQL_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// Earlier master keys (comma-separated base64), kept only to open envelopes sealed before a
    /// rotation; `kubegql rotate-key` re-seals them under the current key.
    #[arg(long, env = "KUBEGQL_PREVIOUS_MASTER_KEYS", hide_env_values = true, value_delimiter = ',')]
    pub previous_master_keys: Vec<String>,
}

impl KeySettings {
    /// The settings as the crypto layer takes them.
    pub fn key_options(&self) -> crate::crypto::KeyOptions<'_> {
        crate::crypto::KeyOptions {
            master_key: self.master_key.as_deref(),
            master_key_file: self.master_key_file.as_deref(),
            previous_master_keys: &self.previous_master_keys,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServeSettings {
    /// Address the HTTP server listens on.
    #[arg(long, env = "KUBEGQL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub store: StoreSettings,

    #[command(flatten)]
    pub keys: KeySettings,

    #[command(flatten)]
    pub audit: crate::audit::AuditSettings,

    /// Admin API token to create on first start, when the store has no token yet. Without it a
    /// random token is generated and printed once.
    #[arg(long, env = "KUBEGQL_BOOTSTRAP_ADMIN_TOKEN", hide_env_values = true)]
    pub bootstrap_admin_token: Option<String>,

    /// Single sign-on: a YAML file naming an OpenID Connect issuer, kubegql's client there, and
    /// the rules that give signed-in people a tenant and a role (README, "Single sign-on").
    #[arg(long, env = "KUBEGQL_OIDC_CONFIG")]
    pub oidc_config: Option<PathBuf>,

    #[command(flatten)]
    pub limits: ApiLimits,

    #[command(flatten)]
    pub clients: crate::clients::ClientSettings,

    /// What API callers may point kubegql at (see SECURITY.md).
    #[command(flatten)]
    pub connection_policy: crate::clusters::policy::ConnectionPolicySettings,

    #[command(flatten)]
    pub upkeep: crate::clients::connections::UpkeepSettings,

    #[command(flatten)]
    pub watch: crate::watch::WatchSettings,

    #[command(flatten)]
    pub logs: crate::logs::LogSettings,

    #[command(flatten)]
    pub tunnels: crate::tunnel::TunnelSettings,

    #[command(flatten)]
    pub origins: crate::http::origins::OriginSettings,
}

/// Limits that protect the server from expensive or abusive requests.
#[derive(Args, Debug, Clone)]
pub struct ApiLimits {
    /// Page size used when a list is asked for without `first`.
    #[arg(long, env = "KUBEGQL_DEFAULT_PAGE_SIZE", default_value_t = 50)]
    pub default_page_size: u32,

    /// Largest `first` a list accepts; larger values are refused, never clamped.
    #[arg(long, env = "KUBEGQL_MAX_PAGE_SIZE", default_value_t = 500)]
    pub max_page_size: u32,

    /// Deepest selection set a query may nest (GraphiQL's introspection needs 13).
    #[arg(long, env = "KUBEGQL_MAX_QUERY_DEPTH", default_value_t = 15)]
    pub max_query_depth: usize,

    /// The cost budget of one request (see the README's "What a query costs"): 1 per field
    /// resolved, lists times their `first`, `podLogs` 1 per KiB, 100 per call to a cluster.
    #[arg(long, env = "KUBEGQL_MAX_QUERY_COMPLEXITY", default_value_t = 50_000)]
    pub max_query_complexity: usize,

    /// Seconds a GraphQL WebSocket may stay open without `connection_init`.
    #[arg(long, env = "KUBEGQL_WEBSOCKET_INIT_TIMEOUT_SECS", default_value_t = 10)]
    pub websocket_init_timeout_secs: u64,

    /// Operations one GraphQL WebSocket may run at once; one more closes it.
    #[arg(long, env = "KUBEGQL_MAX_WEBSOCKET_OPERATIONS", default_value_t = 100)]
    pub max_websocket_operations: usize,

    /// Failed authentications one client address may make per minute; past that it is answered
    /// 429 at once until its budget refills.
    #[arg(long, env = "KUBEGQL_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,

    /// Most requests one batched POST may hold.
    #[arg(long, env = "KUBEGQL_MAX_BATCH_SIZE", default_value_t = 10)]
    pub max_batch_size: usize,

    /// Largest request body in bytes, and largest GraphQL document (a request's `query` text).
    #[arg(long, env = "KUBEGQL_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest manifest `apply` and `POST /api/v1/clusters/{id}/apply` take, in bytes. A GraphQL
    /// request may then be this much larger than `max_body_bytes` (its manifest variable).
    #[arg(long, env = "KUBEGQL_MAX_MANIFEST_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_manifest_bytes: usize,

    /// Most clusters one query or subscription across clusters may span.
    #[arg(long, env = "KUBEGQL_MAX_CLUSTERS_PER_QUERY", default_value_t = 20)]
    pub max_clusters_per_query: usize,

    /// Clusters a query across clusters reads at once.
    #[arg(long, env = "KUBEGQL_FANOUT_CONCURRENCY", default_value_t = 8)]
    pub fanout_concurrency: usize,

    /// Seconds a query across clusters waits for all of them; a cluster that has not answered
    /// by then gives a CLUSTER_UNREACHABLE entry of its own.
    #[arg(long, env = "KUBEGQL_FANOUT_DEADLINE_SECS", default_value_t = 10)]
    pub fanout_deadline_secs: u64,
}

impl ApiLimits {
    /// The body limit of `POST /graphql` and of a WebSocket message: room for a document and a
    /// manifest beside it.
    pub fn max_graphql_request_bytes(&self) -> usize {
        self.max_body_bytes.saturating_add(self.max_manifest_bytes)
    }
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            default_page_size: 50,
            max_page_size: 500,
            max_query_depth: 15,
            max_query_complexity: 50_000,
            max_batch_size: 10,
            max_clusters_per_query: 20,
            fanout_concurrency: 8,
            fanout_deadline_secs: 10,
            auth_failures_per_minute: 30,
            websocket_init_timeout_secs: 10,
            max_websocket_operations: 100,
            max_body_bytes: 1024 * 1024,
            max_manifest_bytes: 16 * 1024 * 1024,
        }
    }
}
