//! kubegql: a GraphQL API server for managing many Kubernetes clusters.
//!
//! Layers, from the outside in: `http` (routing, authentication, limits), `graphql` (thin
//! resolvers), the domain (`clusters`, `auth`), `store` (diesel over SQLite or PostgreSQL) and
//! `crypto` (sealing of credentials).

pub mod access;
pub mod audit;
pub mod auth;
pub mod clients;
pub mod clusters;
pub mod crypto;
pub mod error;
pub mod graphql;
pub mod http;
pub mod pagination;
pub mod principals;
pub mod resources;
pub mod server;
pub mod settings;
pub mod store;
pub mod watch;
