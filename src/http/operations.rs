//! Operations endpoints: `/metrics` and `/readyz` (`/healthz` answers in the router).

use super::*;

/// Prometheus text format. Counts only: nothing here names a cluster, a principal or a secret.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let hub = &state.watch_hub;
    let cache = state.resources.connections().clients();
    let stats = &cache.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    metric("kubegql_watch_upstreams", "gauge", "Upstream Kubernetes watches running.", hub.upstream_count() as u64);
    metric(
        "kubegql_watch_upstream_starts_total",
        "counter",
        "Upstream Kubernetes watches started.",
        hub.upstream_starts(),
    );
    metric("kubegql_watch_subscriptions", "gauge", "Live resource subscriptions.", hub.subscription_count() as u64);
    metric("kubegql_client_cache_entries", "gauge", "Cached Kubernetes clients.", cache.len() as u64);
    metric("kubegql_client_cache_hits_total", "counter", "Client cache hits.", stats.hits.load(Relaxed));
    metric("kubegql_client_cache_misses_total", "counter", "Client cache misses.", stats.misses.load(Relaxed));
    metric("kubegql_client_cache_builds_total", "counter", "Kubernetes clients built.", stats.builds.load(Relaxed));
    metric("kubegql_client_cache_evictions_total", "counter", "Cached clients evicted.", stats.evictions.load(Relaxed));
    metric("kubegql_db_queries_total", "counter", "Database queries run.", state.db.query_count());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}
