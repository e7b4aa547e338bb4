//! Per-cluster API discovery, cached. A kind that is not in the cached discovery triggers one
//! refresh (at most every few seconds per cluster), so a CRD created a moment ago is found without
//! re-running discovery on every request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use kube::Client;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery};
use tokio::sync::Mutex;

/// The least time between two refreshes of one cluster's discovery triggered by unknown kinds.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// The longest a discovery result is trusted at all.
const MAX_AGE: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Unknown(String),
}

struct Entry {
    discovery: Arc<Discovery>,
    at: Instant,
}

/// One served resource, as `apiResources` lists it.
#[derive(Debug, Clone)]
pub struct ServedResource {
    pub resource: ApiResource,
    pub capabilities: ApiCapabilities,
    pub preferred: bool,
}

#[derive(Default)]
pub struct DiscoveryCache {
    entries: DashMap<String, Entry>,
    // Serialises refreshes per cluster so concurrent misses run discovery once.
    locks: DashMap<String, Arc<Mutex<()>>>,
}

impl DiscoveryCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn invalidate(&self, cluster_id: &str) {
        self.entries.remove(cluster_id);
    }

    pub fn clear(&self) {
        self.entries.clear();
    }

    async fn run(client: &Client) -> Result<Discovery, kube::Error> {
        // Aggregated discovery is two requests; fall back to per-group discovery on old servers.
        match Discovery::new(client.clone()).run_aggregated().await {
            Ok(discovery) => Ok(discovery),
            Err(_) => Discovery::new(client.clone()).run().await,
        }
    }

    /// The cluster's discovery; refreshed when older than `max_age` (or absent).
    async fn current(
        &self,
        cluster_id: &str,
        client: &Client,
        max_age: Duration,
    ) -> Result<Arc<Discovery>, kube::Error> {
        if let Some(entry) = self.entries.get(cluster_id)
            && entry.at.elapsed() < max_age
        {
            return Ok(Arc::clone(&entry.discovery));
        }
        let lock = Arc::clone(&self.locks.entry(cluster_id.to_owned()).or_default());
        let _guard = lock.lock().await;
        // Someone else may have refreshed while this task waited.
        if let Some(entry) = self.entries.get(cluster_id)
            && entry.at.elapsed() < max_age
        {
            return Ok(Arc::clone(&entry.discovery));
        }
        let discovery = Arc::new(Self::run(client).await?);
        self.entries.insert(cluster_id.to_owned(), Entry { discovery: Arc::clone(&discovery), at: Instant::now() });
        Ok(discovery)
    }

    /// Every resource the cluster serves (all versions), kubectl's group order.
    pub async fn resources(&self, cluster_id: &str, client: &Client) -> Result<Vec<ServedResource>, kube::Error> {
        let discovery = self.current(cluster_id, client, MAX_AGE).await?;
        let mut out = Vec::new();
        for group in discovery.groups_alphabetical() {
            let preferred = group.preferred_version_or_latest().to_owned();
            for version in group.versions() {
                for (resource, capabilities) in group.versioned_resources(version) {
                    out.push(ServedResource { resource, capabilities, preferred: version == preferred });
                }
            }
        }
        Ok(out)
    }

    /// Finds a kind (by kind name, or plural) in a group; version defaults to the preferred one.
    pub async fn resolve(
        &self,
        cluster_id: &str,
        client: &Client,
        group: &str,
        version: Option<&str>,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), DiscoveryError> {
        let discovery = self.current(cluster_id, client, MAX_AGE).await?;
        if let Some(found) = find(&discovery, group, version, kind) {
            return Ok(found);
        }
        // Not known: maybe new (a CRD just created). Refresh once, unless that just happened.
        let discovery = self.current(cluster_id, client, MIN_REFRESH_INTERVAL).await?;
        find(&discovery, group, version, kind).ok_or_else(|| {
            let gv = match version {
                Some(v) if group.is_empty() => v.to_owned(),
                Some(v) => format!("{group}/{v}"),
                None if group.is_empty() => "the core group".to_owned(),
                None => group.to_owned(),
            };
            DiscoveryError::Unknown(format!("the cluster does not serve kind {kind:?} in {gv}"))
        })
    }
}

fn find(
    discovery: &Discovery,
    group: &str,
    version: Option<&str>,
    kind: &str,
) -> Option<(ApiResource, ApiCapabilities)> {
    let api_group = discovery.get(group)?;
    let version = version.unwrap_or_else(|| api_group.preferred_version_or_latest());
    api_group.versioned_resources(version).into_iter().find(|(r, _)| r.kind == kind || r.plural == kind)
}
