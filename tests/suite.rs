//! Most of the integration tests, in one test binary, so that the helpers and the dependencies
//! are compiled and linked once rather than once per file: each file below is a module of it
//! (`cargo test --test suite resources::` runs one file's tests). The tests of every file run
//! side by side. Kept apart, each in a binary of its own: `clients.rs`, `cluster_faults.rs` and
//! `watch_restart.rs` (run by the test command on a control plane of their own, since the last
//! two restart its API server and etcd) and `fuzz_ws.rs` (which counts every panic in its
//! process).

#[path = "common/mod.rs"]
mod common;

#[path = "access.rs"]
mod access;
#[path = "across.rs"]
mod across;
#[path = "api.rs"]
mod api;
#[path = "apply.rs"]
mod apply;
#[path = "audit.rs"]
mod audit;
#[path = "boundary.rs"]
mod boundary;
#[path = "browser.rs"]
mod browser;
#[path = "chart.rs"]
mod chart;
#[path = "cli.rs"]
mod cli;
#[path = "control_plane.rs"]
mod control_plane;
#[path = "exec.rs"]
mod exec;
#[path = "graphiql.rs"]
mod graphiql;
#[path = "hostile.rs"]
mod hostile;
#[path = "impersonation.rs"]
mod impersonation;
#[path = "live.rs"]
mod live;
#[path = "logs.rs"]
mod logs;
#[path = "migrations.rs"]
mod migrations;
#[path = "origins.rs"]
mod origins;
#[path = "pod_tunnels.rs"]
mod pod_tunnels;
#[path = "replicas.rs"]
mod replicas;
#[path = "resources.rs"]
mod resources;
#[path = "rollout.rs"]
mod rollout;
#[path = "schema_sdl.rs"]
mod schema_sdl;
#[path = "sso.rs"]
mod sso;
#[path = "store.rs"]
mod store;
#[path = "store_outage.rs"]
mod store_outage;
#[path = "tables.rs"]
mod tables;
#[path = "tenancy.rs"]
mod tenancy;
#[path = "trust_boundary.rs"]
mod trust_boundary;
#[path = "watch.rs"]
mod watch;
#[path = "websocket.rs"]
mod websocket;
