//! `ClusterConnections`: the one way the rest of kubegql gets a `kube::Client` for a cluster, and
//! the cluster's connection status. Also runs the background upkeep: refreshing the cluster
//! directory, checking the health of cached clients, and dropping expired ones.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use kube::Client;

use super::cache::{CacheKey, ClientCache};
use super::{ClientFactory, ClusterStatus, ConnectError, check};
use crate::access::{Caller, Impersonation, ImpersonationError};
use crate::clusters::{ClusterError, ClusterService, ClusterSpec, validate};
use crate::store::clusters::ClusterRow;

/// Why a client could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cluster {cluster}: {error}")]
    Connect { cluster: String, error: ConnectError },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
}

/// How often the background upkeep runs.
#[derive(clap::Args, Debug, Clone)]
pub struct UpkeepSettings {
    /// How long a built client is reused before it is built again.
    #[arg(long, env = "KUBEGQL_CLIENT_TTL_SECS", default_value_t = 600)]
    pub client_ttl_secs: u64,

    /// Most clients kept (one per cluster and impersonated identity); past it the least recently
    /// used is dropped.
    #[arg(long, env = "KUBEGQL_CLIENT_CACHE_CAPACITY", default_value_t = 1024)]
    pub client_cache_capacity: usize,

    /// How often cached clients are health-checked; a failing cluster's clients are evicted.
    #[arg(long, env = "KUBEGQL_HEALTH_CHECK_INTERVAL_SECS", default_value_t = 30)]
    pub health_check_interval_secs: u64,

    /// Clusters health-checked at once in a round: a round over many clusters, some of them
    /// unreachable, takes about (clusters / this) timeouts instead of one per cluster.
    #[arg(long, env = "KUBEGQL_HEALTH_CHECK_CONCURRENCY", default_value_t = 16)]
    pub health_check_concurrency: usize,

    /// How often the in-memory cluster directory is reloaded from the database.
    #[arg(long, env = "KUBEGQL_CLUSTER_REFRESH_SECS", default_value_t = 60)]
    pub cluster_refresh_secs: u64,
}

impl Default for UpkeepSettings {
    fn default() -> Self {
        Self {
            client_ttl_secs: 600,
            client_cache_capacity: 1024,
            health_check_interval_secs: 30,
            health_check_concurrency: 16,
            cluster_refresh_secs: 60,
        }
    }
}

#[derive(Clone)]
pub struct ClusterConnections {
    clusters: ClusterService,
    factory: ClientFactory,
    clients: Arc<ClientCache<Client>>,
    statuses: Arc<DashMap<String, ClusterStatus>>,
    health: Arc<HealthRounds>,
}

/// What the health rounds have done, for `/metrics`.
#[derive(Debug, Default)]
pub struct HealthRounds {
    pub rounds: std::sync::atomic::AtomicU64,
    pub last_round_ms: std::sync::atomic::AtomicU64,
    pub last_checked: std::sync::atomic::AtomicU64,
    pub last_unreachable: std::sync::atomic::AtomicU64,
}

impl ClusterConnections {
    /// The connections to `clusters`' clusters, kept in `clients`, which is told of every
    /// change to a cluster record.
    pub fn new(clusters: ClusterService, factory: ClientFactory, clients: Arc<ClientCache<Client>>) -> Self {
        clusters.listen(Arc::clone(&clients) as Arc<dyn crate::clusters::ClusterListener>);
        Self { clusters, factory, clients, statuses: Arc::new(DashMap::new()), health: Arc::default() }
    }

    pub fn clients(&self) -> &Arc<ClientCache<Client>> {
        &self.clients
    }

    pub fn clusters(&self) -> &ClusterService {
        &self.clusters
    }

    pub fn health_rounds(&self) -> &HealthRounds {
        &self.health
    }

    /// The cluster's own client (any tenant; for kubegql's own use): from the cache, or built
    /// once from its record.
    pub async fn client(&self, cluster_id: &str) -> Result<Client, AccessError> {
        let row = self.clusters.get_any(cluster_id).await?;
        self.cached_client(&row, None).await
    }

    /// The client a caller uses on a cluster of its tenant, acting as the identity the caller
    /// may use there (see `Caller::cluster_identity`). Refused before anything is sent when the
    /// caller may not impersonate.
    pub async fn client_for(
        &self,
        caller: &Caller,
        cluster_id: &str,
    ) -> Result<(Arc<ClusterRow>, Client), AccessError> {
        let row = self.clusters.get(cluster_id, caller.tenant()).await?;
        let identity = caller.cluster_identity(row.impersonate_caller).map_err(|e| match e {
            ImpersonationError::NotAllowed(_) => AccessError::Forbidden(e.to_string()),
            ImpersonationError::Invalid(_) => AccessError::Invalid(e.to_string()),
        })?;
        let client = self.cached_client(&row, identity).await?;
        Ok((row, client))
    }

    async fn cached_client(&self, row: &ClusterRow, identity: Option<Impersonation>) -> Result<Client, AccessError> {
        let key = CacheKey { cluster_id: row.id.clone(), identity: identity.as_ref().map(Impersonation::canonical) };
        self.clients
            .get_or_build(&key, || async {
                let connect = |error| AccessError::Connect { cluster: row.name.clone(), error };
                let spec = self.clusters.open(row)?;
                let mut config = self.factory.config(&row.tenant, &spec).await.map_err(connect)?;
                if let Some(identity) = &identity {
                    identity.apply_to(&mut config);
                }
                self.factory.client(config).await.map_err(connect)
            })
            .await
    }

    /// The last known status of a cluster of `tenant`, or a fresh check when there is none, it
    /// is older than `max_age`, or `refresh` asks for one. Checked with the cluster's own identity.
    pub async fn status(
        &self,
        cluster_id: &str,
        tenant: &str,
        max_age: Duration,
        refresh: bool,
    ) -> Result<ClusterStatus, AccessError> {
        let row = self.clusters.get(cluster_id, tenant).await?;
        if !refresh && let Some(known) = self.statuses.get(&row.id) {
            let age = chrono::Utc::now() - known.checked_at;
            if age.to_std().is_ok_and(|age| age < max_age) {
                return Ok(known.clone());
            }
        }
        let status = match self.client(&row.id).await {
            Ok(client) => check(&client, self.factory.connect_timeout() * 2).await,
            Err(AccessError::Connect { error, .. }) => ClusterStatus {
                reachable: false,
                server_version: None,
                latency_ms: None,
                checked_at: chrono::Utc::now(),
                error: Some(error),
            },
            Err(other) => return Err(other),
        };
        self.record(&row.id, status.clone());
        Ok(status)
    }

    fn record(&self, cluster_id: &str, status: ClusterStatus) {
        if !status.reachable {
            self.clients.invalidate_cluster(cluster_id);
        }
        self.statuses.insert(cluster_id.to_owned(), status);
    }

    /// Checks a configuration that is not stored: validates it, connects, asks for the version.
    /// Nothing is written and nothing is cached.
    pub async fn test(&self, tenant: &str, spec: &ClusterSpec) -> Result<ClusterStatus, ClusterError> {
        validate(spec, tenant, self.clusters.policy()).await?;
        Ok(match self.factory.build(tenant, spec).await {
            Ok(client) => check(&client, self.factory.connect_timeout() * 2).await,
            Err(error) => ClusterStatus {
                reachable: false,
                server_version: None,
                latency_ms: None,
                checked_at: chrono::Utc::now(),
                error: Some(error),
            },
        })
    }

    /// One health pass over the cached clients, `concurrency` clusters at a time: a cluster
    /// that does not answer loses its clients and gets its status recorded.
    pub async fn health_check_once(&self, concurrency: usize) {
        use futures_util::StreamExt;
        let timeout = self.factory.connect_timeout() * 2;
        let mut seen = std::collections::HashSet::new();
        let clients: Vec<_> =
            self.clients.entries().into_iter().filter(|(key, _)| seen.insert(key.cluster_id.clone())).collect();
        let started = std::time::Instant::now();
        let checked = clients.len() as u64;
        let unreachable = std::sync::atomic::AtomicU64::new(0);
        futures_util::stream::iter(clients)
            .for_each_concurrent(concurrency.max(1), |(key, client)| {
                let unreachable = &unreachable;
                async move {
                    let status = check(&client, timeout).await;
                    if !status.reachable {
                        unreachable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(cluster = %key.cluster_id, error = ?status.error, "cluster failed its health check; evicting its clients");
                    }
                    self.record(&key.cluster_id, status);
                }
            })
            .await;
        use std::sync::atomic::Ordering::Relaxed;
        self.health.last_round_ms.store(started.elapsed().as_millis() as u64, Relaxed);
        self.health.last_checked.store(checked, Relaxed);
        self.health.last_unreachable.store(unreachable.into_inner(), Relaxed);
        self.health.rounds.fetch_add(1, Relaxed);
    }

    /// Starts the upkeep tasks; they stop when the returned handles are aborted or dropped with
    /// the runtime.
    pub fn spawn_upkeep(&self, settings: &UpkeepSettings) -> Vec<tokio::task::JoinHandle<()>> {
        let this = self.clone();
        let concurrency = settings.health_check_concurrency;
        let health = every(settings.health_check_interval_secs, move || {
            let this = this.clone();
            async move {
                this.clients.purge_expired();
                this.health_check_once(concurrency).await;
            }
        });
        let clusters = self.clusters.clone();
        let refresh = every(settings.cluster_refresh_secs, move || {
            let clusters = clusters.clone();
            async move {
                if let Err(err) = clusters.directory().refresh().await {
                    tracing::warn!(error = %err, "refreshing the cluster directory failed");
                }
            }
        });
        vec![health, refresh]
    }
}

/// Runs `work` every `secs` seconds (at least one), starting one interval from now; a slow run
/// delays the next instead of piling up.
fn every<F, Fut>(secs: u64, mut work: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let period = Duration::from_secs(secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            work().await;
        }
    })
}
