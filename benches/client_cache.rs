//! Client cache and cluster directory, side by side in one run:
//! - a cached client lookup vs a cold build (open the sealed credentials + build a kube client,
//!   the same work `kube::Client::try_from(Config)` does when called directly);
//! - a cluster record from the in-memory directory vs the same record read from the database.
//!
//! Run: `cargo bench --bench client_cache` (SQLite in a temp dir; no cluster needed, since
//! building a client does not connect).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use kubegql::clients::cache::{ClientCache, SystemClock};
use kubegql::clients::connections::ClusterConnections;
use kubegql::clients::{ClientFactory, ClientSettings};
use kubegql::clusters::{ClusterService, ClusterSpec, ConnectionMode};
use kubegql::crypto::CredentialCipher;
use kubegql::store::Database;
use secrecy::SecretString;

const CA: &str = include_str!("../tests/fixtures/test-ca.pem");

/// Median time per operation over `rounds` rounds of `per_round` operations.
async fn measure<F, Fut>(rounds: usize, per_round: usize, mut op: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..per_round {
            op().await;
        }
        samples.push(started.elapsed() / per_round as u32);
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn show(name: &str, d: Duration) {
    println!("{name:<58} {:>12.1} ns", d.as_nanos() as f64);
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&dir.path().join("bench.db").display().to_string(), 4).await.unwrap();
    db.migrate().await.unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    let cipher = Arc::new(CredentialCipher::from_base64(&key, &[]).unwrap());
    let cache = Arc::new(ClientCache::new(Duration::from_secs(3600), Arc::new(SystemClock)));
    let clusters = ClusterService::new(db.clone(), cipher, Default::default());
    let spec = ClusterSpec {
        name: "bench".into(),
        mode: ConnectionMode::Direct,
        kubeconfig_path: None,
        kubeconfig_context: None,
        kubeconfig: None,
        api_server_url: Some("https://127.0.0.1:6443".into()),
        bearer_token: Some(SecretString::from("bench-token")),
        ca_data: Some(SecretString::from(CA)),
        client_certificate: None,
        client_key: None,
        tls_server_name: None,
        insecure_skip_tls_verify: false,
        default_namespace: None,
        impersonate_caller: false,
        labels: Default::default(),
    };
    let row = clusters.create("default", spec).await.unwrap();
    let id = row.id.clone();
    clusters.directory().refresh().await.unwrap();
    let factory = ClientFactory::new(ClientSettings::default(), Default::default());
    let connections = ClusterConnections::new(clusters.clone(), factory.clone(), Arc::clone(&cache));
    connections.client(&id).await.unwrap();

    println!("kubegql client cache and cluster directory (median per operation)");
    let queries_before = db.query_count();
    let hit = measure(21, 20_000, || async {
        connections.client(&id).await.unwrap();
    })
    .await;
    let hit_reads = db.query_count() - queries_before;
    let raw_hit = measure(21, 20_000, || async {
        connections.clients().get(&kubegql::clients::cache::CacheKey::cluster(id.clone())).unwrap();
    })
    .await;
    let cold = measure(11, 20, || async {
        let spec = clusters.open(&row).unwrap();
        factory.build("default", &spec).await.unwrap();
    })
    .await;
    let direct_kube = {
        let spec = clusters.open(&row).unwrap();
        let config = factory.config("default", &spec).await.unwrap();
        measure(11, 20, || {
            let config = config.clone();
            async move {
                kube::Client::try_from(config).unwrap();
            }
        })
        .await
    };
    show("cached client lookup (ClusterConnections::client)", hit);
    show("  of which the cache itself (ClientCache::get)", raw_hit);
    show("cold build (decrypt + kube Config + Client)", cold);
    show("direct kube-rs Client::try_from(Config), same config", direct_kube);
    println!("database queries during {} cached lookups: {hit_reads}", 21 * 20_000);
    println!("cold / cached: {:.0}x", cold.as_nanos() as f64 / hit.as_nanos().max(1) as f64);

    let directory = measure(21, 20_000, || async {
        clusters.get(&id, "default").await.unwrap();
    })
    .await;
    let database = measure(11, 500, || async {
        db.cluster(&id).await.unwrap().unwrap();
    })
    .await;
    show("cluster record from the directory (ClusterService::get)", directory);
    show("cluster record from SQLite (Database::cluster)", database);
    println!("database / directory: {:.0}x", database.as_nanos() as f64 / directory.as_nanos().max(1) as f64);
}
