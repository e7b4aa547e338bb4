//! What a query costs, checked before it runs (async-graphql's complexity, with these costs on
//! the fields that fetch much or reach a cluster). Every field costs 1 each time it is resolved;
//! a list multiplies what its items select by the items asked for (`first`; absent, the default
//! page of 50); `podLogs` costs 1 per KiB it may return; every field that calls a cluster's API
//! server costs `CLUSTER_CALL` more. A request over its budget (`--max-query-complexity`) is
//! refused before anything runs.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The cost of one call to a cluster's API server, in fields.
pub const CLUSTER_CALL: usize = 100;

/// How many items a list without `first` counts as.
pub const DEFAULT_FIRST: usize = 50;

/// The largest page any schema of this process serves (`--max-page-size`). A larger `first` is
/// refused when the field runs, with a message that says so; priced at this, it reaches that
/// message instead of being refused here for its cost. Only ever raised, so that a price is never
/// below what a page may really hold.
static LARGEST_PAGE: AtomicUsize = AtomicUsize::new(500);

/// Called for each schema built, with its largest page.
pub fn serve_pages_of(max_page_size: u32) {
    LARGEST_PAGE.fetch_max(max_page_size as usize, Ordering::Relaxed);
}

/// The most clusters a query across clusters of any schema of this process may span
/// (`--max-clusters-per-query`); a selector is priced as matching that many.
static WIDEST_SPAN: AtomicUsize = AtomicUsize::new(20);

/// Called for each schema built, with its widest span.
pub fn serve_spans_of(max_clusters: usize) {
    WIDEST_SPAN.fetch_max(max_clusters, Ordering::Relaxed);
}

/// A page read from several clusters: one call to each (ids given, or as many as a selector may
/// match), and the page's items.
pub fn across(cluster_ids: Option<usize>, first: Option<i32>, child: usize) -> usize {
    let clusters = cluster_ids.unwrap_or_else(|| WIDEST_SPAN.load(Ordering::Relaxed)).max(1);
    page(first, child).saturating_add(clusters.saturating_mul(CLUSTER_CALL))
}

fn items(first: Option<i32>) -> usize {
    first.map_or(DEFAULT_FIRST, |n| (n.max(0) as usize).min(LARGEST_PAGE.load(Ordering::Relaxed)))
}

/// A page read from kubegql's store.
pub fn page(first: Option<i32>, child: usize) -> usize {
    items(first).saturating_mul(child).saturating_add(1)
}

/// A page read from a cluster.
pub fn cluster_page(first: Option<i32>, child: usize) -> usize {
    page(first, child).saturating_add(CLUSTER_CALL)
}

/// A field answered by one call to a cluster.
pub fn cluster_call(child: usize) -> usize {
    child.saturating_add(1).saturating_add(CLUSTER_CALL)
}

/// A field answered by up to `calls` calls to a cluster (one per item asked), each item
/// selecting `child`.
pub fn cluster_calls(calls: usize, child: usize) -> usize {
    calls.max(1).saturating_mul(child.saturating_add(CLUSTER_CALL))
}

/// A pod's log, by the bytes it may return (at most 1 MiB).
pub fn log(limit_bytes: Option<i64>, child: usize) -> usize {
    let bytes = limit_bytes.unwrap_or(1 << 20).clamp(1, 1 << 20) as usize;
    bytes.div_ceil(1024).saturating_add(child).saturating_add(CLUSTER_CALL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_multiply_and_calls_add() {
        assert_eq!(page(Some(10), 3), 31);
        assert_eq!(page(None, 3), 151);
        assert_eq!(page(Some(-5), 3), 1);
        assert_eq!(page(Some(100_000), 1), LARGEST_PAGE.load(Ordering::Relaxed) + 1, "past the largest page, its size");
        assert_eq!(cluster_page(Some(500), 4), 2101);
        assert_eq!(log(None, 2), 1024 + 2 + 100);
        assert_eq!(log(Some(1), 0), 101);
        assert_eq!(log(Some(i64::MAX), 0), 1124, "capped at 1 MiB as the field is");
        assert_eq!(across(Some(2), Some(10), 3), 31 + 200);
        assert!(across(None, Some(10), 3) >= 31 + 2000, "a selector is priced at the widest span");
    }
}
