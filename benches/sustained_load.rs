//! Sustained load: 1,000 live subscriptions (10 WebSockets of 100 operations, over 10 distinct
//! queries) while ConfigMaps change 20 times a second, plus 200 mixed queries a second (open loop)
//! for 60 s, against a kubegql server process and the test control plane. Reports errors (the
//! run fails on any), p50/p99 per operation with a direct kube-rs list in the same mix, the events
//! delivered, and the server's RSS every 5 s.
//!
//! Needs the control plane: `tests/cluster/up`, then `cargo bench --bench sustained_load`.
//! `BENCH_SECONDS` (60) sets the length.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "kgq_bench-load-admin-token-0000000";
const NAMESPACE: &str = "kubegql-bench-load";
const QUERIES_PER_SECOND: u64 = 200;

type Latencies = Arc<Mutex<BTreeMap<&'static str, Vec<f64>>>>;

/// Opens one WebSocket and `subscriptions` subscriptions on it; counts the events received.
async fn socket(
    base: &str,
    id: &str,
    first: usize,
    subscriptions: usize,
    events: Arc<AtomicUsize>,
    errors: Arc<AtomicUsize>,
) {
    let url = format!("{}/graphql/ws", base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {TOKEN}") } });
    ws.send(Message::Text(init.to_string().into())).await.unwrap();
    let ack = ws.next().await.unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack:?}");
    for n in first..first + subscriptions {
        let query = "subscription($id: ID!, $ns: String, $labels: String) { resourceEvents(clusterId: $id, kind: \"ConfigMap\", namespace: $ns, labelSelector: $labels, maxEventsPerSecond: 200) { type resource { metadata { name resourceVersion } } } }";
        let subscribe = json!({ "type": "subscribe", "id": n.to_string(),
            "payload": { "query": query, "variables": { "id": id, "ns": NAMESPACE, "labels": format!("group=g{}", n % 10) } } });
        ws.send(Message::Text(subscribe.to_string().into())).await.unwrap();
    }
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Text(text) = message {
            if text.contains("\"type\":\"next\"") {
                if text.contains("\"errors\"") {
                    errors.fetch_add(1, Ordering::Relaxed);
                } else {
                    events.fetch_add(1, Ordering::Relaxed);
                }
            } else if text.contains("\"type\":\"error\"") {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One request of the mix, by its number: its name and how long it took (an error fails the
/// run's count).
async fn one(
    n: u64,
    http: &reqwest::Client,
    base: &str,
    id: &str,
    direct: &Api<ConfigMap>,
) -> (&'static str, Result<Duration, String>) {
    let (name, query, variables) = match n % 8 {
        0 | 1 => (
            "resources page (50 ConfigMaps)",
            "query($id: ID!, $ns: String) { cluster(id: $id) { resources(kind: \"ConfigMap\", namespace: $ns, first: 50) { edges { node { metadata { name labels { key value } } } } pageInfo { endCursor } } } }",
            json!({ "id": id, "ns": NAMESPACE }),
        ),
        2 => (
            "table page (50 rows)",
            "query($id: ID!, $ns: String) { cluster(id: $id) { table(kind: \"ConfigMap\", namespace: $ns, first: 50) { columns { name } rows { text } } } }",
            json!({ "id": id, "ns": NAMESPACE }),
        ),
        3 => (
            "one object",
            "query($id: ID!, $ns: String) { cluster(id: $id) { resource(kind: \"ConfigMap\", namespace: $ns, name: \"cm-007\") { metadata { resourceVersion } json } } }",
            json!({ "id": id, "ns": NAMESPACE }),
        ),
        4 => ("clusters list", "{ clusters { edges { node { id name } } } }", json!({})),
        5 => (
            "cluster status",
            "query($id: ID!) { cluster(id: $id) { status { reachable serverVersion } } }",
            json!({ "id": id }),
        ),
        6 => (
            "namespaces",
            "query($id: ID!) { cluster(id: $id) { namespaces { edges { node { metadata { name } } } } } }",
            json!({ "id": id }),
        ),
        _ if n % 16 == 7 => {
            let t = Instant::now();
            let listed = direct.list(&ListParams::default().limit(50)).await;
            return ("direct kube-rs list (50 ConfigMaps)", listed.map(|_| t.elapsed()).map_err(|e| e.to_string()));
        }
        _ => {
            let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(direct.clone().into_client());
            let t = Instant::now();
            let listed = namespaces.list(&ListParams::default()).await;
            return ("direct kube-rs namespaces", listed.map(|_| t.elapsed()).map_err(|e| e.to_string()));
        }
    };
    let t = Instant::now();
    let answer = http
        .post(format!("{base}/graphql"))
        .bearer_auth(TOKEN)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await;
    let result = match answer {
        Ok(response) => match response.json::<Value>().await {
            Ok(body) if body.get("errors").is_none() => Ok(t.elapsed()),
            Ok(body) => Err(body["errors"].to_string()),
            Err(err) => Err(err.to_string()),
        },
        Err(err) => Err(err.to_string()),
    };
    (name, result)
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let vars = support::control_plane_env();
    let client = support::admin_client_with_namespace(&vars, NAMESPACE).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    // 100 ConfigMaps in 10 groups of 10 (the subscriptions' label selectors).
    for i in 0..100 {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("cm-{i:03}"), "labels": { "group": format!("g{}", i % 10) } },
            "data": { "n": "0" } });
        configmaps
            .patch(&format!("cm-{i:03}"), &PatchParams::apply("bench").force(), &Patch::Apply(&cm))
            .await
            .unwrap();
    }
    let env = [
        ("KUBEGQL_WATCH_MAX_SUBSCRIPTIONS_PER_PRINCIPAL", "5000"),
        ("KUBEGQL_WATCH_PRINCIPAL_EVENTS_PER_SECOND", "1000000"),
        ("KUBEGQL_AUTH_FAILURES_PER_MINUTE", "1000000"),
    ];
    let (mut server, _dir, base, id) = support::server_with_cluster(&vars, TOKEN, &env).await;
    let pid = server.id();
    let http = reqwest::Client::new();

    let events = Arc::new(AtomicUsize::new(0));
    let stream_errors = Arc::new(AtomicUsize::new(0));
    let mut sockets = Vec::new();
    for s in 0..10 {
        let (base, id, events, errors) = (base.clone(), id.clone(), Arc::clone(&events), Arc::clone(&stream_errors));
        sockets.push(tokio::spawn(async move { socket(&base, &id, s * 100, 100, events, errors).await }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        if support::metric(&metrics, "kubegql_watch_subscriptions") == Some(1000.0) {
            break;
        }
        assert!(Instant::now() < deadline, "1,000 subscriptions did not open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // ConfigMaps change 20 times a second: each change reaches the 100 subscriptions of its group.
    let stop = Arc::new(AtomicBool::new(false));
    let changes = {
        let (stop, configmaps) = (Arc::clone(&stop), configmaps.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let patch = json!({ "data": { "n": n.to_string() } });
                configmaps
                    .patch(&format!("cm-{:03}", n % 100), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    };

    // 200 queries a second, open loop: each starts on time whatever the others are doing.
    let latencies: Latencies = Arc::default();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let direct: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / QUERIES_PER_SECOND));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0u64;
    let mut next_sample = Duration::ZERO;
    let mut inflight = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        if started.elapsed() >= next_sample {
            samples.push((started.elapsed().as_secs(), support::usage(pid).1, support::rss(pid).0));
            next_sample += Duration::from_secs(5);
        }
        let (http, base, id, direct, latencies, failures) =
            (http.clone(), base.clone(), id.clone(), direct.clone(), Arc::clone(&latencies), Arc::clone(&failures));
        inflight.push(tokio::spawn(async move {
            let (name, result) = one(n, &http, &base, &id, &direct).await;
            match result {
                Ok(took) => latencies.lock().unwrap().entry(name).or_default().push(took.as_secs_f64() * 1000.0),
                Err(err) => failures.lock().unwrap().push(format!("{name}: {err}")),
            }
        }));
        n += 1;
    }
    for task in inflight {
        let _ = task.await;
    }
    let wall = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let changed = changes.await.unwrap();
    samples.push((started.elapsed().as_secs(), support::usage(pid).1, support::rss(pid).0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for socket in sockets {
        socket.abort();
    }

    let failures = failures.lock().unwrap().clone();
    println!(
        "{n} queries in {wall:.0} s ({:.0}/s), {changed} changes, {} events to 1,000 subscriptions, errors: {} queries, {} streams",
        n as f64 / wall,
        events.load(Ordering::Relaxed),
        failures.len(),
        stream_errors.load(Ordering::Relaxed)
    );
    for (name, mut l) in latencies.lock().unwrap().clone() {
        l.sort_by(f64::total_cmp);
        println!(
            "  {name:<40} {:>6} requests  p50 {:>7.2} ms  p99 {:>7.2} ms",
            l.len(),
            support::percentile(&l, 0.5),
            support::percentile(&l, 0.99)
        );
    }
    println!(
        "server RSS (s: MiB): {}",
        samples.iter().map(|(s, _, r)| format!("{s}: {r:.0}")).collect::<Vec<_>>().join(", ")
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(failures.is_empty(), "failed queries: {:?}", &failures[..failures.len().min(5)]);
    assert_eq!(stream_errors.load(Ordering::Relaxed), 0, "subscription errors");
}
