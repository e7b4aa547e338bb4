//! Followed logs: N subscribers (1 and 100) follow the same pod over SSE (`logStream`) while the
//! pod's container writes 1,000 lines a second for 10 seconds, against a kubegql server process
//! and the test control plane (kwok serves the pod's log from a file this benchmark writes). Reports
//! the upstream log streams the server opened, lines delivered, delivery latency from just before
//! a line is written to the client's receipt (p50/p99), the server's CPU and its peak resident
//! memory; and, side by side, the same for `kubectl logs -f` processes on the same pod.
//!
//! Needs the control plane: `tests/cluster/up`, then `cargo bench --bench log_follow`.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

const NAMESPACE: &str = "kubegql-bench-logs";
const RATE: u64 = 1000;
const SECONDS: u64 = 10;

type Sent = Arc<Mutex<HashMap<u64, Instant>>>;

/// Records a line's receipt if it is one this run wrote (`seq N`).
fn received(text: &str, now: Instant, sent: &Sent, latencies: &Mutex<Vec<f64>>) {
    let seq = text.trim().rsplit_once("seq ").and_then(|(_, n)| n.parse::<u64>().ok());
    if let Some(at) = seq.and_then(|s| sent.lock().unwrap().get(&s).copied()) {
        latencies.lock().unwrap().push(now.duration_since(at).as_secs_f64() * 1000.0);
    }
}

/// A pod whose log kwok reads from `file` (created empty first).
async fn pod_with_log(client: &kube::Client, name: &str, file: &std::path::Path) {
    std::fs::write(file, "").unwrap();
    let gvk = GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Logs");
    let rules: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), NAMESPACE, &ApiResource::from_gvk_with_plural(&gvk, "logs"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let _ = rules.delete(name, &DeleteParams::default()).await;
    let _ = pods.delete(name, &DeleteParams::default().grace_period(0)).await;
    while pods.get_opt(name).await.unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rule: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs", "metadata": { "name": name },
        "spec": { "logs": [{ "logsFile": file.display().to_string(), "follow": true }] }
    }))
    .unwrap();
    rules.create(&PostParams::default(), &rule).await.unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "main", "image": "registry.invalid/talker:1" }] }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // Running, and its log is this file's (a marker line comes back).
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    writeln!(f, "{} stdout F ready", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)).unwrap();
    for _ in 0..600 {
        if pods.logs(name, &Default::default()).await.is_ok_and(|t| t.contains("ready")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name}'s log was never served");
}

/// Writes `RATE` lines a second for `SECONDS` (10 lines every 10 ms), recording when each was
/// written.
async fn write_lines(file: &std::path::Path, sent: &Sent) {
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = RATE / 100;
    for batch in 0..(SECONDS * 100) {
        tick.tick().await;
        let mut text = String::new();
        let now = Instant::now();
        for i in 0..per_tick {
            let seq = batch * per_tick + i;
            sent.lock().unwrap().insert(seq, now);
            let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            text.push_str(&format!("{at} stdout F line of the benchmark, seq {seq}\n"));
        }
        f.write_all(text.as_bytes()).unwrap();
        f.flush().unwrap();
    }
}

#[tokio::main]
async fn main() {
    let vars = support::control_plane_env();
    let client = support::admin_client_with_namespace(&vars, NAMESPACE).await;
    let files = tempfile::tempdir().unwrap();

    let token = "kgq_bench-logs-admin-token-0000000";
    let env = [
        ("KUBEGQL_WATCH_MAX_SUBSCRIPTIONS_PER_PRINCIPAL", "5000"),
        ("KUBEGQL_LOG_PRINCIPAL_LINES_PER_SECOND", "1000000"),
        ("KUBEGQL_LOG_PRINCIPAL_BYTES_PER_SECOND", "1000000000"),
    ];
    let (mut server, _dir, base, id) = support::server_with_cluster(&vars, token, &env).await;
    let http = reqwest::Client::new();

    println!("followed logs: one pod writing {RATE} lines/s for {SECONDS}s; followers over SSE, or kubectl logs -f");
    println!(
        "{:>22} {:>10} {:>16} {:>9} {:>9} {:>10} {:>13}",
        "followers", "upstreams", "delivered", "p50 ms", "p99 ms", "CPU%", "peak RSS MiB"
    );
    for n in [1usize, 100] {
        let pod = format!("talker-{n}");
        let file = files.path().join(format!("{pod}.log"));
        pod_with_log(&client, &pod, &file).await;
        let sent: Sent = Arc::default();
        let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (http, base, id, sent, latencies, pod) =
                (http.clone(), base.clone(), id.clone(), sent.clone(), latencies.clone(), pod.clone());
            tasks.push(tokio::spawn(async move {
                let body = json!({ "query": "subscription($id: ID!, $pod: String!) { logStream(clusterId: $id, namespace: \"kubegql-bench-logs\", pod: $pod, maxLinesPerSecond: 2000) { type line } }", "variables": { "id": id, "pod": pod } });
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
                        if let Some(line) = value["data"]["logStream"]["line"].as_str() {
                            received(line, now, &sent, &latencies);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(3 + n as u64 / 50)).await;
        let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        let upstreams =
            metrics.lines().find_map(|l| l.strip_prefix("kubegql_log_upstreams ")).unwrap_or("?").to_owned();
        let (cpu_before, _) = support::usage(server.id());
        let started = Instant::now();
        write_lines(&file, &sent).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let wall = started.elapsed().as_secs_f64();
        let (cpu_after, peak) = support::usage(server.id());
        for task in tasks {
            task.abort();
        }
        let mut l = latencies.lock().unwrap().clone();
        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{:>22} {:>10} {:>16} {:>9.1} {:>9.1} {:>10.0} {:>13.0}",
            format!("{n} x kubegql (SSE)"),
            upstreams,
            format!("{}/{}", l.len(), n as u64 * RATE * SECONDS),
            support::percentile(&l, 0.5),
            support::percentile(&l, 0.99),
            (cpu_after - cpu_before) / wall * 100.0,
            peak
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The same through kubectl logs -f processes, each with its own stream from the API server.
    for n in [1usize, 10] {
        let pod = format!("talker-kubectl-{n}");
        let file = files.path().join(format!("{pod}.log"));
        pod_with_log(&client, &pod, &file).await;
        let sent: Sent = Arc::default();
        let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
        let mut children = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..n {
            let mut child = Command::new(&vars["KUBE_TEST_KUBECTL"])
                .args(["--kubeconfig", &vars["KUBE_TEST_KUBECONFIG"], "--context", "admin", "-n", NAMESPACE])
                .args(["logs", "-f", &pod])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (sent, latencies) = (sent.clone(), latencies.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    received(&line, Instant::now(), &sent, &latencies);
                }
            }));
            children.push(child);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before: Vec<f64> = children.iter().map(|c| support::usage(c.id()).0).collect();
        let started = Instant::now();
        write_lines(&file, &sent).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let wall = started.elapsed().as_secs_f64();
        let after: Vec<(f64, f64)> = children.iter().map(|c| support::usage(c.id())).collect();
        let cpu: f64 = after.iter().zip(&before).map(|((a, _), b)| a - b).sum();
        let peak: f64 = after.iter().map(|(_, p)| p).sum();
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for reader in readers {
            let _ = reader.join();
        }
        let mut l = latencies.lock().unwrap().clone();
        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{:>22} {:>10} {:>16} {:>9.1} {:>9.1} {:>10.0} {:>13.0}",
            format!("{n} x kubectl logs -f"),
            n,
            format!("{}/{}", l.len(), n as u64 * RATE * SECONDS),
            support::percentile(&l, 0.5),
            support::percentile(&l, 0.99),
            cpu / wall * 100.0,
            peak
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}
