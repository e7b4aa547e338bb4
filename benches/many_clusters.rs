//! Many clusters: 100 registered, 50 of them unreachable (a loopback listener that takes
//! connections and never answers, so every request to them waits out its timeout). Reports the
//! server's start-up time with them all in its database, its memory per cluster, the health
//! rounds (bounded concurrency), and the latency of a query on a healthy cluster while the 50
//! others time out, against the same query without them and a direct kube-rs call.
//!
//! Needs the control plane: `tests/cluster/up`, then `cargo bench --bench many_clusters`.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const TOKEN: &str = "kgq_bench-many-admin-token-0000000";
const HEALTHY: usize = 50;
const SILENT: usize = 50;
const PHASE: Duration = Duration::from_secs(20);

async fn gql(http: &reqwest::Client, base: &str, query: &str, variables: Value) -> Value {
    let response = http
        .post(format!("{base}/graphql"))
        .bearer_auth(TOKEN)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

const PAGE: &str = "query($id: ID!) { cluster(id: $id) { resources(kind: \"ConfigMap\", namespace: \"kube-system\", first: 10) { edges { node { metadata { name } } } } } }";

/// Latencies (ms, sorted) of the page on `id`, one after another for `PHASE`, with a direct
/// kube-rs list of the same page after each.
async fn measure(http: &reqwest::Client, base: &str, id: &str, direct: &Api<ConfigMap>) -> (Vec<f64>, Vec<f64>) {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let params = ListParams::default().limit(10);
    let until = Instant::now() + PHASE;
    while Instant::now() < until {
        let t = Instant::now();
        let page = gql(http, base, PAGE, json!({ "id": id })).await;
        assert!(page.get("errors").is_none(), "{page}");
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        direct.list(&params).await.unwrap();
        theirs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ours.sort_by(f64::total_cmp);
    theirs.sort_by(f64::total_cmp);
    (ours, theirs)
}

#[tokio::main]
async fn main() {
    let vars = support::control_plane_env();
    let client = support::admin_client_with_namespace(&vars, "kube-system").await;
    let direct: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    // The silent API servers: connections are taken and never answered.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("https://{}", silent.local_addr().unwrap());
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = Arc::clone(&held);
        tokio::spawn(async move {
            while let Ok((socket, _)) = silent.accept().await {
                held.lock().unwrap().push(socket);
            }
        });
    }
    let env = [
        ("KUBEGQL_CONNECT_TIMEOUT_SECS", "2"),
        ("KUBEGQL_READ_TIMEOUT_SECS", "5"),
        ("KUBEGQL_HEALTH_CHECK_INTERVAL_SECS", "5"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = support::server_in(dir.path(), TOKEN, &env);
    let http = reqwest::Client::new();
    let ca = std::fs::read_to_string(&vars["KUBE_TEST_CA_FILE"]).unwrap();
    let rss_empty = support::rss(server.id()).0;

    let create = "mutation($i: CreateClusterInput!) { createCluster(input: $i) { id } }";
    let started = Instant::now();
    let (mut healthy, mut unreachable) = (Vec::new(), Vec::new());
    for i in 0..HEALTHY + SILENT {
        let url = if i < HEALTHY { vars["KUBE_TEST_API_URL"].clone() } else { silent_url.clone() };
        let input = json!({ "name": format!("c{i:03}"), "mode": "DIRECT", "apiServerUrl": url,
                            "bearerToken": vars["KUBE_TEST_ADMIN_TOKEN"], "caData": ca, "tlsServerName": "127.0.0.1" });
        let created = gql(&http, &base, create, json!({ "i": input })).await;
        let id = created["data"]["createCluster"]["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
        if i < HEALTHY { healthy.push(id) } else { unreachable.push(id) }
    }
    println!(
        "registered {} clusters ({HEALTHY} healthy, {SILENT} that never answer) in {:.1} s",
        HEALTHY + SILENT,
        started.elapsed().as_secs_f64()
    );

    // Start-up with them all in the database.
    let _ = server.kill();
    let _ = server.wait();
    let started = Instant::now();
    let (restarted, base) = support::server_in(dir.path(), TOKEN, &env);
    server = restarted;
    let listening = started.elapsed();
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(support::metric(&metrics, "kubegql_clusters"), Some(100.0), "all known after the restart");
    println!(
        "start-up with 100 clusters: listening after {:.0} ms, ready after {:.0} ms",
        listening.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64() * 1000.0
    );

    // Baseline: the healthy cluster's page with nothing else going on.
    let pid = server.id();
    let rss_before = support::rss(pid).0;
    let (quiet, quiet_direct) = measure(&http, &base, &healthy[0], &direct).await;

    // Every cluster gets a client; the unreachable ones are asked again and again, each request
    // waiting out its timeout, while the health rounds run.
    for id in &healthy {
        let page = gql(&http, &base, PAGE, json!({ "id": id })).await;
        assert!(page.get("errors").is_none(), "{page}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for id in unreachable.clone() {
        let (http, base, stop, failures) = (http.clone(), base.clone(), Arc::clone(&stop), Arc::clone(&failures));
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let page = gql(&http, &base, PAGE, json!({ "id": id })).await;
                if page.get("errors").is_some() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Let the first requests to the silent clusters get their clients built and cached.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rounds_before = support::metric(
        &http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap(),
        "kubegql_health_check_rounds_total",
    )
    .unwrap_or_default();
    let (busy, busy_direct) = measure(&http, &base, &healthy[0], &direct).await;
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let rss_all = support::rss(pid).0;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let _ = task.await;
    }
    let figure = |name: &str| support::metric(&metrics, name).unwrap_or(f64::NAN);
    println!(
        "health rounds during the load: {} (every 5 s); the last checked {} clusters, {} unreachable, in {:.1} s \
         (16 at a time; the check's timeout is 4 s)",
        figure("kubegql_health_check_rounds_total") - rounds_before,
        figure("kubegql_health_check_last_round_clusters"),
        figure("kubegql_health_check_last_round_unreachable"),
        figure("kubegql_health_check_last_round_ms") / 1000.0
    );
    println!(
        "memory: {rss_empty:.0} MiB with no cluster, {rss_before:.0} MiB with 100 registered, {rss_all:.0} MiB with all 100 in use \
         ({:.2} MiB per cluster in use)",
        (rss_all - rss_empty) / 100.0
    );
    println!(
        "requests to the unreachable clusters that failed (each after its timeout): {}",
        failures.load(Ordering::Relaxed)
    );
    let row = |label: &str, l: &[f64]| {
        println!(
            "  {label:<58} {:>6} requests  p50 {:>7.2} ms  p99 {:>7.2} ms",
            l.len(),
            support::percentile(l, 0.5),
            support::percentile(l, 0.99)
        )
    };
    println!("a page of 10 ConfigMaps on a healthy cluster, one request after another for {} s:", PHASE.as_secs());
    row("kubegql, nothing else going on", &quiet);
    row("direct kube-rs, nothing else going on", &quiet_direct);
    row("kubegql, while 50 clusters time out", &busy);
    row("direct kube-rs, at the same time", &busy_direct);
    let _ = server.kill();
    let _ = server.wait();
}
