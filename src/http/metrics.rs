//! `/metrics` in the OpenMetrics text format (prometheus-client): how long each route takes to
//! answer, as histograms labelled by route, method and status, and the server's figures (watches,
//! subscriptions, the client cache, database queries) read at each scrape. Counts only: nothing
//! here names a cluster, a principal or a secret.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use axum::extract::MatchedPath;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::*;
use crate::clients::cache::ClientCache;
use crate::watch::WatchHub;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route's pattern (`/api/v1/clusters/{id}/apply`), never the path with its ids.
    route: String,
    method: String,
    status: u16,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(
        watch_hub: Arc<WatchHub>,
        clients: Arc<ClientCache<kube::Client>>,
        db: Database,
        tunnels: Arc<crate::tunnel::OpenTunnels>,
        log_hub: Arc<crate::logs::LogHub>,
        connections: crate::clients::connections::ClusterConnections,
    ) -> Metrics {
        let mut registry = Registry::default();
        // 1 ms to about 33 s.
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "kubegql_http_request_duration_seconds",
            "Time to answer an HTTP request, until its response starts (a stream's life is not counted).",
            requests.clone(),
        );
        registry.register_collector(Box::new(ServerFigures { watch_hub, clients, db, tunnels, log_hub, connections }));
        Metrics { registry, requests }
    }

    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels = RequestLabels { route: route.to_owned(), method: method.to_owned(), status };
        self.requests.get_or_create(&labels).observe(seconds);
    }

    fn text(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Times every routed request.
pub(super) async fn record_request(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe(&route, &method, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.text() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(err) => crate::error::ApiError::internal(err).into_response(),
    }
}

/// Figures kept elsewhere, read when scraped.
struct ServerFigures {
    watch_hub: Arc<WatchHub>,
    clients: Arc<ClientCache<kube::Client>>,
    db: Database,
    tunnels: Arc<crate::tunnel::OpenTunnels>,
    log_hub: Arc<crate::logs::LogHub>,
    connections: crate::clients::connections::ClusterConnections,
}

impl std::fmt::Debug for ServerFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerFigures").finish_non_exhaustive()
    }
}

impl Collector for ServerFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let hub = &self.watch_hub;
        let stats = &self.clients.stats;
        let health = self.connections.health_rounds();
        let gauges = [
            ("kubegql_watch_upstreams", "Upstream Kubernetes watches running.", hub.upstream_count() as i64),
            ("kubegql_watch_subscriptions", "Live subscriptions.", hub.subscription_count() as i64),
            ("kubegql_client_cache_entries", "Cached Kubernetes clients.", self.clients.len() as i64),
            ("kubegql_tunnels_open", "Port-forward, attach and exec tunnels open.", self.tunnels.total() as i64),
            // Per principal without naming any (this route needs no token): how many hold
            // tunnels, and the most one holds.
            ("kubegql_tunnels_principals", "Principals holding at least one tunnel.", self.tunnels.principals() as i64),
            (
                "kubegql_tunnels_open_per_principal_max",
                "The most tunnels one principal holds open.",
                self.tunnels.most_of_one() as i64,
            ),
            (
                "kubegql_log_upstreams",
                "Upstream log streams open (followed logs).",
                self.log_hub.upstream_count() as i64,
            ),
            ("kubegql_clusters", "Cluster records known.", self.connections.clusters().directory().len() as i64),
            (
                "kubegql_health_check_last_round_ms",
                "How long the last health round took.",
                health.last_round_ms.load(Relaxed) as i64,
            ),
            (
                "kubegql_health_check_last_round_clusters",
                "Clusters the last health round checked.",
                health.last_checked.load(Relaxed) as i64,
            ),
            (
                "kubegql_health_check_last_round_unreachable",
                "Clusters the last health round found unreachable.",
                health.last_unreachable.load(Relaxed) as i64,
            ),
            (
                "kubegql_store_unavailable",
                "1 while the database is unavailable (changes refused, reads from memory), else 0.",
                i64::from(self.db.unavailable()),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        // Counter names get their `_total` when written.
        let counters = [
            ("kubegql_watch_upstream_starts", "Upstream Kubernetes watches started.", hub.upstream_starts()),
            (
                "kubegql_watch_upstream_interruptions",
                "Upstream watch requests that failed rather than ended.",
                hub.interruptions(),
            ),
            ("kubegql_log_upstream_starts", "Upstream log streams opened.", self.log_hub.upstream_starts()),
            ("kubegql_client_cache_hits", "Client cache hits.", stats.hits.load(Relaxed)),
            ("kubegql_client_cache_misses", "Client cache misses.", stats.misses.load(Relaxed)),
            ("kubegql_client_cache_builds", "Kubernetes clients built.", stats.builds.load(Relaxed)),
            ("kubegql_client_cache_evictions", "Cached clients evicted.", stats.evictions.load(Relaxed)),
            ("kubegql_db_queries", "Database queries run.", self.db.query_count()),
            ("kubegql_health_check_rounds", "Health rounds run.", health.rounds.load(Relaxed)),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}
