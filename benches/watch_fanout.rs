//! Watch fan-out: N subscribers (1, 100, 1,000) over SSE on one kind while a ConfigMap changes
//! 10 times a second, against a kubegql server process and the test control plane. Reports the
//! upstream watches the server holds, delivery latency from just before the write to the API
//! server to the client's receipt (p50/p99), the server's CPU and its peak resident memory; and,
//! side by side, the same latency through a direct kube-rs watch.
//!
//! Needs the control plane: `tests/cluster/up`, then `cargo bench --bench watch_fanout`.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

const NAMESPACE: &str = "kubegql-bench-watch";
const RATE: u64 = 10;
const SECONDS: u64 = 10;

type Sent = Arc<Mutex<HashMap<u64, Instant>>>;

/// Changes the ConfigMap `RATE` times a second for `SECONDS`, recording when each value was sent.
async fn drive(configmaps: &Api<ConfigMap>, sent: &Sent, start_seq: u64) -> u64 {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    let count = RATE * SECONDS;
    for i in 0..count {
        tick.tick().await;
        let seq = start_seq + i;
        sent.lock().unwrap().insert(seq, Instant::now());
        let patch = json!({ "data": { "seq": seq.to_string() } });
        configmaps.patch("ticker", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    start_seq + count
}

#[tokio::main]
async fn main() {
    let vars = support::control_plane_env();
    let client = support::admin_client_with_namespace(&vars, NAMESPACE).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    if configmaps.get_opt("ticker").await.unwrap().is_none() {
        let cm = serde_json::from_value(
            json!({ "metadata": { "name": "ticker", "labels": { "bench": "watch" } }, "data": { "seq": "0" } }),
        )
        .unwrap();
        configmaps.create(&PostParams::default(), &cm).await.unwrap();
    }

    let token = "kgq_bench-watch-admin-token-000000";
    let env = [
        ("KUBEGQL_WATCH_MAX_SUBSCRIPTIONS_PER_PRINCIPAL", "5000"),
        ("KUBEGQL_WATCH_PRINCIPAL_EVENTS_PER_SECOND", "1000000"),
    ];
    let (mut server, _dir, base, id) = support::server_with_cluster(&vars, token, &env).await;
    let http = reqwest::Client::new();

    println!("watch fan-out: {RATE} changes/s for {SECONDS}s to one ConfigMap, subscribers over SSE");
    println!(
        "{:>12} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "subscribers", "upstreams", "delivered", "p50 ms", "p99 ms", "server CPU%", "peak RSS MiB"
    );
    let mut seq = 1u64;
    for n in [1usize, 100, 1000] {
        let sent: Sent = Arc::default();
        let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (http, base, id, sent, latencies) =
                (http.clone(), base.clone(), id.clone(), sent.clone(), latencies.clone());
            tasks.push(tokio::spawn(async move {
                let body = json!({ "query": "subscription($id: ID!) { resourceEvents(clusterId: $id, kind: \"ConfigMap\", namespace: \"kubegql-bench-watch\", labelSelector: \"bench=watch\", eventTypes: [MODIFIED], maxEventsPerSecond: 50) { resource { json } } }", "variables": { "id": id } });
                let response = http.post(format!("{base}/graphql/stream")).bearer_auth(token).json(&body).send().await.unwrap();
                let mut stream = response.bytes_stream();
                let mut buffer = String::new();
                while let Some(Ok(chunk)) = stream.next().await {
                    let now = Instant::now();
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buffer.find("\n\n") {
                        let block: String = buffer.drain(..end + 2).collect();
                        let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else { continue };
                        let value: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                        let seq = value["data"]["resourceEvents"]["resource"]["json"]["data"]["seq"].as_str().and_then(|s| s.parse::<u64>().ok());
                        if let Some(at) = seq.and_then(|s| sent.lock().unwrap().get(&s).copied()) {
                            latencies.lock().unwrap().push(now.duration_since(at).as_secs_f64() * 1000.0);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(3 + n as u64 / 200)).await;
        let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        let upstreams =
            metrics.lines().find_map(|l| l.strip_prefix("kubegql_watch_upstreams ")).unwrap_or("?").to_owned();
        let subs =
            metrics.lines().find_map(|l| l.strip_prefix("kubegql_watch_subscriptions ")).unwrap_or("?").to_owned();
        assert_eq!(subs, n.to_string(), "all subscriptions open");
        let (cpu_before, _) = support::usage(server.id());
        let started = Instant::now();
        seq = drive(&configmaps, &sent, seq).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let wall = started.elapsed().as_secs_f64();
        let (cpu_after, peak) = support::usage(server.id());
        for task in tasks {
            task.abort();
        }
        let mut l = latencies.lock().unwrap().clone();
        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let expected = n as u64 * RATE * SECONDS;
        println!(
            "{:>12} {:>10} {:>10} {:>10.1} {:>10.1} {:>12.0} {:>12.0}",
            n,
            upstreams,
            format!("{}/{}", l.len(), expected),
            support::percentile(&l, 0.5),
            support::percentile(&l, 0.99),
            (cpu_after - cpu_before) / wall * 100.0,
            peak
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The same changes through one direct kube-rs watch, for comparison.
    let sent: Sent = Arc::default();
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let watch = {
        let (sent, latencies, configmaps) = (sent.clone(), latencies.clone(), configmaps.clone());
        tokio::spawn(async move {
            let mut stream = watcher(configmaps, watcher::Config::default().labels("bench=watch")).boxed();
            while let Some(Ok(event)) = stream.next().await {
                let now = Instant::now();
                if let watcher::Event::Apply(cm) = event {
                    let seq = cm.data.and_then(|d| d.get("seq").and_then(|s| s.parse::<u64>().ok()));
                    if let Some(at) = seq.and_then(|s| sent.lock().unwrap().get(&s).copied()) {
                        latencies.lock().unwrap().push(now.duration_since(at).as_secs_f64() * 1000.0);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    drive(&configmaps, &sent, seq).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    watch.abort();
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{:>12} {:>10} {:>10} {:>10.1} {:>10.1}   (direct kube-rs watcher, in process)",
        "direct",
        1,
        format!("{}/{}", l.len(), RATE * SECONDS),
        support::percentile(&l, 0.5),
        support::percentile(&l, 0.99)
    );
    let _ = server.kill();
    let _ = server.wait();
}
