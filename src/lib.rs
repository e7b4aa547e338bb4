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
