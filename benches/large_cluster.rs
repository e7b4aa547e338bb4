//! A large cluster: 30,000 pods over 100 kwok nodes (10 namespaces of 3,000), against a kubegql
//! server process (release build) and, side by side in the same run, direct kube-rs calls.
//!
//! - first page of 50 and of 500 pods, all namespaces and one namespace, whole objects;
//! - a metadata-only page of 500;
//! - a full paged walk (pages of 500), with the server's peak memory during it;
//! - a watch of all pods with the initial state: server RSS with 1 and 100 subscribers of one
//!   query, 10 distinct label-selector queries, and 10 impersonated identities.
//!
//! Needs the control plane: `tests/cluster/up`, then `cargo bench --bench large_cluster`.
//! `BENCH_PODS` (default 30000) sets the number of pods; `BENCH_ROUNDS` the rounds per page
//! figure (default 20); `BENCH_KEEP=1` keeps the pods and nodes for the next run (otherwise
//! they are deleted at the end).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

const NAMESPACES: usize = 10;
const NODES: usize = 100;
const TOKEN: &str = "kgq_bench-large-admin-token-000000";

fn namespace(i: usize) -> String {
    format!("kubegql-bench-large-{i}")
}

fn pod(ns: usize, j: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": format!("p-{j:05}"), "namespace": namespace(ns),
                      "labels": { "bench": "large", "app": format!("a{}", j % 10) } },
        "spec": {
            "nodeName": format!("kwok-bench-{}", (ns * 7 + j) % NODES),
            "containers": [{ "name": "app", "image": "registry.invalid/bench/app:1.0",
                             "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } } }],
            "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }]
        }
    }))
    .unwrap()
}

/// Creates the nodes and the pods that are not there yet, 64 at a time; returns how many were made.
async fn set_up(client: &kube::Client, per_namespace: usize) -> usize {
    let nodes: Api<Node> = Api::all(client.clone());
    let existing: std::collections::HashSet<String> = nodes
        .list_metadata(&ListParams::default().labels("type=kwok-bench"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for i in 0..NODES {
        let name = format!("kwok-bench-{i}");
        if existing.contains(&name) {
            continue;
        }
        let node: Node = serde_json::from_value(json!({ "metadata": { "name": name,
            "annotations": { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" },
            "labels": { "type": "kwok-bench", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" } },
            "spec": { "taints": [{ "key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule" }] } }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let mut made = 0;
    for ns in 0..NAMESPACES {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if namespaces.get_opt(&namespace(ns)).await.unwrap().is_none() {
            let object = serde_json::from_value(json!({ "metadata": { "name": namespace(ns) } })).unwrap();
            namespaces.create(&PostParams::default(), &object).await.unwrap();
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace(ns));
        let have: std::collections::HashSet<String> = pods
            .list_metadata(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        let missing: Vec<usize> = (0..per_namespace).filter(|j| !have.contains(&format!("p-{j:05}"))).collect();
        made += missing.len();
        stream::iter(missing)
            .map(|j| {
                let pods = pods.clone();
                async move {
                    // A freshly made namespace may refuse pods for a moment (no ServiceAccount yet).
                    for _ in 0..100 {
                        match pods.create(&PostParams::default(), &pod(ns, j)).await {
                            Ok(_) => return,
                            Err(kube::Error::Api(s)) if s.code == 409 => return,
                            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                        }
                    }
                    panic!("pod {j} of namespace {ns} could not be made");
                }
            })
            .buffer_unordered(64)
            .collect::<()>()
            .await;
    }
    made
}

/// Pods not yet Running (kwok marks them Running once they are on its nodes).
async fn not_running(client: &kube::Client) -> usize {
    let pods: Api<Pod> = Api::all(client.clone());
    let params = ListParams::default().labels("bench=large").fields("status.phase!=Running").limit(1);
    let list = pods.list_metadata(&params).await.unwrap();
    list.items.len() + list.metadata.remaining_item_count.unwrap_or(0) as usize
}

fn reset_peak(pid: u32) {
    // Writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current one.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("resetting the peak RSS");
}

async fn gql(http: &reqwest::Client, base: &str, body: &Value) -> (Duration, Value) {
    let t = Instant::now();
    let response = http.post(format!("{base}/graphql")).bearer_auth(TOKEN).json(body).send().await.unwrap();
    let value: Value = response.json().await.unwrap();
    (t.elapsed(), value)
}

/// One subscriber over SSE: adds the events it receives to `counted`, and keeps the connection
/// open until its task is aborted.
fn subscriber(request: reqwest::RequestBuilder, counted: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "subscribed");
        let mut body = response.bytes_stream();
        let mut tail = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            // Counts "event: next" lines without parsing the payloads.
            tail.extend_from_slice(&chunk);
            let text = String::from_utf8_lossy(&tail);
            let n = text.matches("event: next").count();
            counted.fetch_add(n, Ordering::Relaxed);
            let keep = text.rfind("event: next").map(|at| at + "event: next".len()).unwrap_or(0);
            tail = tail.split_off(keep.min(tail.len()));
        }
    })
}

const WATCH: &str = "subscription($id: ID!, $labels: String) { resourceEvents(clusterId: $id, kind: \"Pod\", labelSelector: $labels, sendInitialState: true, maxEventsPerSecond: 1000000) { type resource { metadata { name } } } }";

/// Opens `n` subscriptions, each with its own label selector and headers, waits until each has
/// received `each` events (the initial state), and reports the server's memory then.
async fn watch_round(
    what: &str,
    pid: u32,
    base: &str,
    id: &str,
    subscriptions: Vec<(String, Vec<(String, String)>)>,
    each: usize,
) {
    let http = reqwest::Client::new();
    let (before, _) = support::rss(pid);
    reset_peak(pid);
    let counted = Arc::new(AtomicUsize::new(0));
    let n = subscriptions.len();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (labels, headers) in subscriptions {
        let mut request =
            http.post(format!("{base}/graphql/stream")).bearer_auth(TOKEN).header("accept", "text/event-stream").json(
                &json!({ "query": WATCH, "variables": { "id": id, "labels": (!labels.is_empty()).then_some(labels) } }),
            );
        for (name, value) in headers {
            request = request.header(name, value);
        }
        tasks.push(subscriber(request, Arc::clone(&counted)));
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    while counted.load(Ordering::Relaxed) < n * each {
        assert!(Instant::now() < deadline, "{what}: {} of {} events", counted.load(Ordering::Relaxed), n * each);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered = started.elapsed();
    // Settled: what the server holds while the subscribers wait for changes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (now, peak) = support::rss(pid);
    println!(
        "{what:<44} {n:>4} subs {:>9} events in {:>6.1} s   RSS before {before:>6.0} MiB, settled {now:>6.0} MiB, peak {peak:>6.0} MiB",
        n * each,
        delivered.as_secs_f64()
    );
    for task in tasks {
        task.abort();
    }
    // The upstream watches end a grace period (1 s here) after their last subscriber.
    tokio::time::sleep(Duration::from_secs(4)).await;
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("BENCH_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(30_000);
    let per_namespace = total / NAMESPACES;
    let total = per_namespace * NAMESPACES;
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let vars = support::control_plane_env();
    let client = support::admin_client_with_namespace(&vars, "kubegql-bench-large-0").await;

    let started = Instant::now();
    let made = set_up(&client, per_namespace).await;
    let created = started.elapsed();
    while not_running(&client).await > 0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "set-up: {total} pods over {NODES} kwok nodes ({made} created now, 64 at a time, bound to their nodes): created in {:.0} s, all Running after {:.0} s",
        created.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let env = [
        ("KUBEGQL_WATCH_MAX_SUBSCRIPTIONS_PER_PRINCIPAL", "5000"),
        ("KUBEGQL_WATCH_MAX_EVENTS_PER_SECOND", "1000000"),
        ("KUBEGQL_WATCH_PRINCIPAL_EVENTS_PER_SECOND", "1000000000"),
        ("KUBEGQL_WATCH_GRACE_SECS", "1"),
        ("KUBEGQL_WATCH_QUEUE_OBJECTS", "100000"),
    ];
    let (mut server, _dir, base, id) = support::server_with_cluster(&vars, TOKEN, &env).await;
    let pid = server.id();
    let http = reqwest::Client::new();
    let pods_all: Api<Pod> = Api::all(client.clone());
    let pods_one: Api<Pod> = Api::namespaced(client.clone(), &namespace(0));

    // Pages: kubegql (whole objects, `json`, parsed by the client) against kube-rs' typed list.
    println!("\nfirst pages, median of {rounds} interleaved rounds (kubegql over HTTP, parsed; kube-rs typed list)");
    let page_query = |first: usize, ns: Option<String>, fields: &str| {
        json!({ "query": format!("query($id: ID!, $ns: String, $first: Int) {{ cluster(id: $id) {{ resources(kind: \"Pod\", namespace: $ns, first: $first) {{ edges {{ node {{ {fields} }} }} pageInfo {{ hasNextPage endCursor }} }} }} }}"),
                "variables": { "id": id, "ns": ns, "first": first } })
    };
    for (label, first, ns) in [
        ("50 pods, all namespaces", 50, None),
        ("500 pods, all namespaces", 500, None),
        ("50 pods, one namespace of 3,000", 50, Some(namespace(0))),
        ("500 pods, one namespace of 3,000", 500, Some(namespace(0))),
    ] {
        let first = if ns.is_some() { first.min(per_namespace) } else { first };
        let body = page_query(first, ns.clone(), "metadata { name } json");
        let api = if ns.is_some() { &pods_one } else { &pods_all };
        let params = ListParams::default().limit(first as u32);
        let (mut ours, mut direct) = (Vec::new(), Vec::new());
        for round in 0..rounds + 2 {
            let (took, page) = gql(&http, &base, &body).await;
            let edges = page["data"]["cluster"]["resources"]["edges"].as_array().map_or(0, Vec::len);
            assert_eq!(edges, first, "{}", page["errors"]);
            let t = Instant::now();
            let list = api.list(&params).await.unwrap();
            let direct_took = t.elapsed();
            assert_eq!(list.items.len(), first);
            if round >= 2 {
                ours.push(took);
                direct.push(direct_took);
            }
        }
        let ratio = support::median_ratio(&ours, &direct);
        println!(
            "  {label:<36} kubegql {:>8.2} ms   direct {:>8.2} ms   ratio {:.2} (median per-round {ratio:.2})",
            support::median(ours.clone()).as_secs_f64() * 1000.0,
            support::median(direct.clone()).as_secs_f64() * 1000.0,
            support::median(ours).as_secs_f64() / support::median(direct).as_secs_f64()
        );
    }

    // Metadata only: a list view's fields against kube-rs' list_metadata.
    {
        let body = page_query(500, None, "metadata { name namespace labels { key value } creationTimestamp }");
        let params = ListParams::default().limit(500);
        let (mut ours, mut direct) = (Vec::new(), Vec::new());
        for round in 0..rounds + 2 {
            let (took, page) = gql(&http, &base, &body).await;
            assert_eq!(page["data"]["cluster"]["resources"]["edges"].as_array().map_or(0, Vec::len), 500);
            let t = Instant::now();
            assert_eq!(pods_all.list_metadata(&params).await.unwrap().items.len(), 500);
            if round >= 2 {
                ours.push(took);
                direct.push(t.elapsed());
            }
        }
        println!(
            "  {:<36} kubegql {:>8.2} ms   direct {:>8.2} ms   ratio {:.2} (median per-round {:.2})",
            "metadata only, 500 pods",
            support::median(ours.clone()).as_secs_f64() * 1000.0,
            support::median(direct.clone()).as_secs_f64() * 1000.0,
            support::median(ours.clone()).as_secs_f64() / support::median(direct.clone()).as_secs_f64(),
            support::median_ratio(&ours, &direct)
        );
    }

    // A full paged walk, pages of 500: the server's peak memory must not grow with the pages.
    {
        let (before, _) = support::rss(pid);
        reset_peak(pid);
        let t = Instant::now();
        let (mut after, mut seen, mut pages, mut peaks) = (Value::Null, 0usize, 0usize, Vec::new());
        loop {
            let mut body = page_query(500, None, "metadata { name } json");
            body["query"] = Value::String(
                body["query"]
                    .as_str()
                    .unwrap()
                    .replace("first: $first)", "first: $first, after: $after)")
                    .replace("$first: Int)", "$first: Int, $after: String)"),
            );
            body["variables"]["after"] = after.clone();
            let (_, page) = gql(&http, &base, &body).await;
            let conn = &page["data"]["cluster"]["resources"];
            seen += conn["edges"].as_array().map_or(0, Vec::len);
            pages += 1;
            peaks.push(support::rss(pid).1);
            if conn["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = conn["pageInfo"]["endCursor"].clone();
        }
        let ours = t.elapsed();
        let t = Instant::now();
        let direct: usize = {
            let mut n = 0;
            let mut params = ListParams::default().limit(500);
            loop {
                let list = pods_all.list(&params).await.unwrap();
                n += list.items.len();
                match list.metadata.continue_ {
                    Some(token) if !token.is_empty() => params = params.continue_token(&token),
                    _ => break,
                }
            }
            n
        };
        let direct_took = t.elapsed();
        assert!(seen >= total && direct >= total, "walked {seen} and {direct} of {total}");
        let tenth = peaks[pages / 10];
        println!(
            "  full walk, pages of 500: kubegql {pages} pages in {:.1} s, direct {:.1} s; server RSS before {before:.0} MiB, peak after a tenth of the pages {tenth:.0} MiB, after all {:.0} MiB",
            ours.as_secs_f64(),
            direct_took.as_secs_f64(),
            peaks.last().copied().unwrap_or_default()
        );
    }

    // A direct kube-rs reflector of every pod, for comparison: its time to hold them all.
    {
        let t = Instant::now();
        let (reader, writer) = kube::runtime::reflector::store::<Pod>();
        let watch = kube::runtime::reflector(writer, kube::runtime::watcher(pods_all.clone(), Default::default()));
        let task = tokio::spawn(async move {
            let _ = watch.try_for_each(|_| async { Ok(()) }).await;
        });
        reader.wait_until_ready().await.unwrap();
        println!(
            "\nwatches of all {total} pods with their initial state (a direct kube-rs reflector holds them all after {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        task.abort();
    }
    watch_round("1 subscriber", pid, &base, &id, vec![(String::new(), Vec::new())], total).await;
    watch_round("100 subscribers, one query", pid, &base, &id, vec![(String::new(), Vec::new()); 100], total).await;
    let distinct = (0..10).map(|k| (format!("bench=large,app notin (z{k})"), Vec::new())).collect();
    watch_round("10 distinct label-selector queries", pid, &base, &id, distinct, total).await;
    let identities = (0..10)
        .map(|k| {
            (
                String::new(),
                vec![
                    ("Impersonate-User".to_owned(), format!("bench-user-{k}")),
                    ("Impersonate-Group".to_owned(), "system:masters".to_owned()),
                ],
            )
        })
        .collect();
    watch_round("10 impersonated identities, one query", pid, &base, &id, identities, total).await;

    let _ = server.kill();
    let _ = server.wait();
    if std::env::var("BENCH_KEEP").as_deref() != Ok("1") {
        // The pods go at once (no kubelet to wait for: their nodes go too), then their namespaces.
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in 0..NAMESPACES {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace(ns));
            let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::background() };
            let _ = pods.delete_collection(&now, &ListParams::default()).await;
            let _ = namespaces.delete(&namespace(ns), &DeleteParams::background()).await;
        }
        let nodes: Api<Node> = Api::all(client.clone());
        for i in 0..NODES {
            let _ = nodes.delete(&format!("kwok-bench-{i}"), &DeleteParams::background()).await;
        }
    }
}
