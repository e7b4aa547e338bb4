//! kubegql: a GraphQL API server for managing many Kubernetes clusters.
//!
//! Layers, from the outside in: `http` (routing, authentication, limits), `graphql` (thin
//! resolvers), the domain (`clusters`, `auth`), `store` (diesel over SQLite or PostgreSQL) and
//! `crypto` (sealing of credentials).

pub mod access;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod clients;
pub mod clusters;
pub mod crypto;
pub mod digest;
pub mod error;
pub mod graphql;
pub mod http;
pub mod logs;
pub mod oidc;
pub mod pagination;
pub mod principals;
pub mod resources;
pub mod server;
pub mod settings;
pub mod store;
pub mod tunnel;
pub mod watch;

/// The allocator of every program built on this crate. Serving a page of objects allocates and
/// frees many small values (parsed JSON, response values), which mimalloc does faster than the
/// system allocator (see BENCHMARKS.md, "A 500-object page").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Property tests (every parser of untrusted input has some, beside it) run this many cases each:
/// `PROPTEST_CASES`, or 256 in the test command. A failing case is printed, not written into the
/// checkout.
#[cfg(test)]
pub(crate) fn property_config() -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256);
    proptest::test_runner::Config { cases, failure_persistence: None, ..Default::default() }
}

/// Any JSON value, nested a few levels: what an untrusted body may hold.
#[cfg(test)]
pub(crate) fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        ".{0,24}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-zA-Z/._-]{0,12}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
