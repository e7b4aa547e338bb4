//! What the benchmarks that need the test control plane share: its coordinates, an admin
//! client, a namespace to work in, and the figures they report. (Each benchmark uses some.)
#![allow(dead_code)]

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The `env` file that `tests/cluster/up` writes.
pub fn control_plane_env() -> HashMap<String, String> {
    env_in(&state_dir())
}

/// The `env` file of the second control plane (`tests/cluster/up --second`).
pub fn second_control_plane_env() -> HashMap<String, String> {
    env_in(&format!("{}-second", state_dir()))
}

fn state_dir() -> String {
    std::env::var("KUBEGQL_CLUSTER_STATE").unwrap_or_else(|_| {
        format!("{}/tests/cluster/.state", std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()))
    })
}

fn env_in(dir: &str) -> HashMap<String, String> {
    let text = std::fs::read_to_string(format!("{dir}/env"))
        .unwrap_or_else(|e| panic!("the control plane is up (tests/cluster/up, or up --second): {dir}/env: {e}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches(['"', '\'']).to_owned()))
        .collect()
}

/// A kube-rs client as the control plane's admin, and the namespace `name`, created if absent.
pub async fn admin_client_with_namespace(vars: &HashMap<String, String>, name: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(&vars["KUBE_TEST_KUBECONFIG"]).unwrap();
    let options = KubeConfigOptions { context: Some("admin".into()), ..Default::default() };
    let client =
        kube::Client::try_from(kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap()).unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await.unwrap().is_none() {
        let ns = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
    }
    client
}

/// The value at quantile `p` of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// (user+system CPU seconds, peak RSS in MiB) of a process.
pub fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or_default();
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .unwrap_or_default()
        / 1024.0;
    (cpu, hwm)
}

/// A kubegql server process (the release build) on a free loopback port, with `token` as its
/// admin's and `env` added, and the control plane registered in it as cluster `bench`. Returns
/// the process (kill it when done), its temporary working directory (kept alive by the caller),
/// its base URL and the cluster's id.
pub async fn server_with_cluster(
    vars: &HashMap<String, String>,
    token: &str,
    env: &[(&str, &str)],
) -> (std::process::Child, tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = server_in(dir.path(), token, env);
    let id = register_cluster(&base, token, vars, "bench").await;
    (server, dir, base, id)
}

/// A kubegql server process (the release build) working in `dir` (its SQLite database and key
/// file live there, so a second start finds what the first stored), on a free loopback port, with
/// `token` as its admin's and `env` added. Returns once it has printed its address.
pub fn server_in(dir: &std::path::Path, token: &str, env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kubegql"));
    command
        .current_dir(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("KUBEGQL_BOOTSTRAP_ADMIN_TOKEN", token)
        .env("KUBEGQL_MASTER_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .env("KUBEGQL_LOG", "warn")
        .stdout(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut server = command.spawn().unwrap();
    let mut banner = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    let base = banner.trim().strip_prefix("kubegql listening on ").unwrap().to_owned();
    (server, base)
}

/// (current, peak) resident memory of a process, in MiB.
pub fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .unwrap_or_default()
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A figure of the server's `/metrics` text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Registers the control plane of `vars` in the kubegql server at `base` as cluster `name`
/// (its admin token and CA), and returns the cluster's id.
pub async fn register_cluster(base: &str, token: &str, vars: &HashMap<String, String>, name: &str) -> String {
    let ca = std::fs::read_to_string(&vars["KUBE_TEST_CA_FILE"]).unwrap();
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "query": "mutation($i: CreateClusterInput!) { createCluster(input: $i) { id } }",
            "variables": { "i": { "name": name, "mode": "DIRECT", "apiServerUrl": vars["KUBE_TEST_API_URL"],
                                  "bearerToken": vars["KUBE_TEST_ADMIN_TOKEN"], "caData": ca } } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["data"]["createCluster"]["id"].as_str().unwrap_or_else(|| panic!("registered: {created}")).to_owned()
}

/// Rounds to measure: `BENCH_ROUNDS`, or 60.
pub fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(60)
}

pub fn median(mut samples: Vec<std::time::Duration>) -> std::time::Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median of the per-round ratios of two paths measured in the same rounds: the machine's
/// load drifts during a run and a round's two paths share it, so this is steadier than the ratio
/// of the medians.
pub fn median_ratio(a: &[std::time::Duration], b: &[std::time::Duration]) -> f64 {
    let mut per_round: Vec<f64> = a.iter().zip(b).map(|(x, y)| x.as_secs_f64() / y.as_secs_f64()).collect();
    per_round.sort_by(f64::total_cmp);
    per_round[per_round.len() / 2]
}

/// `count` ConfigMaps named `<prefix>-NNNN` with label `bench=<label>` in `namespace`, about 400
/// bytes each; those already there are kept.
pub async fn configmaps(client: &kube::Client, namespace: &str, label: &str, prefix: &str, count: usize) {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ListParams;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let selector = format!("bench={label}");
    let existing = configmaps.list(&ListParams::default().labels(&selector)).await.unwrap().items.len();
    for i in existing..count {
        let cm = serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("{prefix}-{i:04}"), "labels": { "bench": label } },
            "data": { "index": i.to_string(), "payload": "x".repeat(200) }
        }))
        .unwrap();
        configmaps.create(&PostParams::default(), &cm).await.unwrap();
    }
}
