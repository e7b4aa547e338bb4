//! Followed logs (`logStream`) against the control plane. kwok serves a pod's log from a file
//! that its `Logs` rule names (CRI format, as a kubelet's are), so the tests write the lines the
//! containers "print", and follow them through the API server and kubegql.

use crate::common;

use std::io::Write;
use std::time::Duration;

use common::control_plane::{ControlPlane, ready_namespace, unique_namespace};
use common::{Backend, TestDb, TestServer};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

const STREAM: &str = "subscription($id: ID!, $ns: String!, $pod: String, $workload: LogWorkloadInput, $labels: String,
    $contains: String, $regex: String, $resume: [String!], $lines: Int, $tail: Int) {
  logStream(clusterId: $id, namespace: $ns, pod: $pod, workload: $workload, labelSelector: $labels, contains: $contains,
            regex: $regex, resumeFrom: $resume, maxLinesPerSecond: $lines, tailLines: $tail) {
    type pod container timestamp line truncated dropped message cursor } }";

struct Setup {
    cp: ControlPlane,
    _db: TestDb,
    server: TestServer,
    id: String,
    ns: String,
    client: kube::Client,
    files: tempfile::TempDir,
}

async fn setup() -> Setup {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = server.control_plane_cluster(&cp, "logs", json!({})).await;
    let ns = unique_namespace("logs");
    ready_namespace(&client, &ns).await;
    Setup { cp, _db: db, server, id, ns, client, files: tempfile::tempdir().unwrap() }
}

impl Setup {
    fn path(&self, pod: &str) -> std::path::PathBuf {
        self.files.path().join(format!("{pod}.log"))
    }

    /// Appends lines to a pod's log file, in the container runtime's format, each with its own
    /// time (a microsecond apart, so that times are distinct and in order).
    fn write(&self, pod: &str, lines: &[&str]) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(self.path(pod)).unwrap();
        for line in lines {
            let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            writeln!(file, "{at} stdout F {line}").unwrap();
            std::thread::sleep(Duration::from_micros(2));
        }
    }

    /// Points kwok at `pod`'s file (before the pod exists, so that no other log is served), then
    /// creates the pod with `labels` and waits until the API server serves the file's first line.
    async fn pod(&self, pod: &str, labels: Value, first_line: &str) {
        let gvk = GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Logs");
        let rules: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns, &ApiResource::from_gvk_with_plural(&gvk, "logs"));
        let rule: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
            "metadata": { "name": pod },
            "spec": { "logs": [{ "logsFile": self.path(pod).display().to_string(), "follow": true }] }
        }))
        .unwrap();
        rules.create(&PostParams::default(), &rule).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let object: Pod = serde_json::from_value(json!({
            "metadata": { "name": pod, "labels": labels },
            "spec": { "containers": [{ "name": "main", "image": "registry.invalid/app:1" }] }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &object).await.unwrap();
        common::eventually(&format!("{pod}'s log served"), Duration::from_secs(60), || async {
            pods.logs(pod, &Default::default()).await.is_ok_and(|text| text.contains(first_line))
        })
        .await;
    }

    async fn done(&self) {
        let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone());
        let _ = namespaces.delete(&self.ns, &DeleteParams::background()).await;
    }

    async fn follow(&self, variables: Value) -> UnboundedReceiver<Value> {
        let mut variables = variables;
        variables["id"] = json!(self.id);
        variables["ns"] = json!(self.ns);
        self.server.subscribe_sse(&self.server.token, STREAM, variables).await.expect("subscribed")
    }
}

/// The next event, or a failure after 20 s.
async fn next(rx: &mut UnboundedReceiver<Value>) -> Value {
    let payload = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("an event in time")
        .expect("the stream is open");
    assert!(payload.get("errors").is_none(), "{payload}");
    payload["data"]["logStream"].clone()
}

/// The next events until `count` lines have come; returns the lines' events.
async fn lines(rx: &mut UnboundedReceiver<Value>, count: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let event = next(rx).await;
        if event["type"] == "LINE" {
            seen.push(event);
        }
    }
    seen
}

fn texts(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["line"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pods_log_is_followed_filtered_shared_and_resumed_without_duplicates() {
    let s = setup().await;
    s.write("one", &["starting", "ERROR first failure", "ready"]);
    s.pod("one", json!({ "app": "one" }), "starting").await;

    let mut all = s.follow(json!({ "pod": "one" })).await;
    let started = next(&mut all).await;
    assert_eq!(
        (started["type"].as_str(), started["pod"].as_str(), started["container"].as_str()),
        (Some("STARTED"), Some("one"), Some("main"))
    );
    let first = lines(&mut all, 3).await;
    assert_eq!(texts(&first), ["starting", "ERROR first failure", "ready"]);
    assert!(
        first.iter().all(|e| e["timestamp"].as_str().is_some_and(|t| t.starts_with("20")) && e["cursor"].is_string()),
        "{first:?}"
    );

    // A second subscriber with a filter shares the upstream stream.
    let mut errors = s.follow(json!({ "pod": "one", "contains": "ERROR" })).await;
    assert_eq!(next(&mut errors).await["type"], "STARTED");
    assert_eq!(texts(&lines(&mut errors, 1).await), ["ERROR first failure"], "the kept lines, filtered");
    let hub = &s.server.server.log_hub;
    assert_eq!((hub.upstream_count(), hub.upstream_starts()), (1, 1), "one upstream stream for both");
    let metrics = s.server.client.get(s.server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("kubegql_log_upstreams 1\n") && metrics.contains("kubegql_log_upstream_starts_total 1\n"),
        "{metrics}"
    );

    // Followed: new lines arrive, to each as it asked.
    s.write("one", &["serving", "ERROR second failure"]);
    assert_eq!(texts(&lines(&mut all, 2).await), ["serving", "ERROR second failure"]);
    assert_eq!(texts(&lines(&mut errors, 1).await), ["ERROR second failure"]);

    // A reconnect with the last cursor goes on after it: nothing repeated, nothing lost.
    let cursor = first[2]["cursor"].as_str().unwrap().to_owned();
    drop(all);
    let mut resumed = s.follow(json!({ "pod": "one", "resume": [cursor] })).await;
    assert_eq!(next(&mut resumed).await["type"], "STARTED");
    assert_eq!(texts(&lines(&mut resumed, 2).await), ["serving", "ERROR second failure"]);
    s.write("one", &["after the reconnect"]);
    assert_eq!(texts(&lines(&mut resumed, 1).await), ["after the reconnect"]);

    // A regular expression, and bad requests refused with their codes.
    let mut matching = s.follow(json!({ "pod": "one", "regex": "^(ready|serving)$" })).await;
    assert_eq!(texts(&lines(&mut matching, 2).await), ["ready", "serving"]);
    for (variables, code) in [
        (json!({ "pod": "nobody" }), "NOT_FOUND"),
        (json!({}), "BAD_USER_INPUT"),
        (json!({ "pod": "one", "labels": "app=one" }), "BAD_USER_INPUT"),
        (json!({ "pod": "one", "regex": "(" }), "BAD_USER_INPUT"),
        (json!({ "pod": "one", "contains": "x".repeat(1025) }), "BAD_USER_INPUT"),
        (json!({ "pod": "one", "resume": ["lp1.forged"] }), "BAD_USER_INPUT"),
        (json!({ "pod": "one", "lines": 0 }), "BAD_USER_INPUT"),
        (json!({ "workload": { "kind": "Service", "name": "x" } }), "BAD_USER_INPUT"),
    ] {
        let mut vars = variables.clone();
        vars["id"] = json!(s.id);
        vars["ns"] = json!(s.ns);
        let refused = match s.server.subscribe_sse(&s.server.token, STREAM, vars).await {
            Err((_, body)) => body,
            Ok(mut rx) => tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap_or_default(),
        };
        assert_eq!(refused["errors"][0]["extensions"]["code"], code, "{variables}: {refused}");
    }
    // Every subscriber gone: the upstream stream closes and the subscriptions are given back.
    drop((errors, resumed, matching));
    common::eventually("the upstream closed", Duration::from_secs(20), || async {
        hub.upstream_count() == 0 && s.server.server.watch_hub.subscription_count() == 0
    })
    .await;
    s.done().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_of_a_selector_join_and_leave_and_a_workloads_pods_are_followed() {
    let s = setup().await;
    s.write("w-1", &["one says hello"]);
    s.write("w-2", &["two says hello"]);
    s.write("w-3", &["three says hello"]);
    s.pod("w-1", json!({ "app": "w" }), "one says").await;
    s.pod("w-2", json!({ "app": "w" }), "two says").await;

    let mut rx = s.follow(json!({ "labels": "app=w" })).await;
    let mut started = Vec::new();
    let mut said = Vec::new();
    while said.len() < 2 {
        let event = next(&mut rx).await;
        match event["type"].as_str().unwrap() {
            "STARTED" => started.push(event["pod"].as_str().unwrap().to_owned()),
            "LINE" => said.push(format!("{}: {}", event["pod"].as_str().unwrap(), event["line"].as_str().unwrap())),
            other => panic!("unexpected {other}: {event}"),
        }
    }
    started.sort();
    said.sort();
    assert_eq!(started, ["w-1", "w-2"]);
    assert_eq!(said, ["w-1: one says hello", "w-2: two says hello"]);

    // A pod that starts later joins, from the beginning of its log.
    s.pod("w-3", json!({ "app": "w" }), "three says").await;
    let mut joined = Vec::new();
    while !joined.iter().any(|e: &Value| e["type"] == "LINE") {
        joined.push(next(&mut rx).await);
    }
    assert_eq!(joined[0]["type"], "STARTED", "{joined:?}");
    assert_eq!(joined[0]["pod"], "w-3");
    assert_eq!(joined.last().unwrap()["line"], "three says hello");

    // A deleted pod leaves.
    Api::<Pod>::namespaced(s.client.clone(), &s.ns)
        .delete("w-1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let ended = loop {
        let event = next(&mut rx).await;
        if event["type"] == "ENDED" {
            break event;
        }
    };
    assert_eq!(ended["pod"], "w-1", "{ended}");

    // A Deployment's pods, by its selector (kwok serves them the harness's ticker log).
    let out = std::process::Command::new(&s.cp.kubectl)
        .args(["--kubeconfig", s.cp.kubeconfig.to_str().unwrap(), "--context", "admin", "-n", &s.ns])
        .args(["create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut web = s.follow(json!({ "workload": { "kind": "Deployment", "name": "web" }, "tail": 1 })).await;
    let mut pods_with_lines = std::collections::BTreeSet::new();
    while pods_with_lines.len() < 2 {
        let event = next(&mut web).await;
        if event["type"] == "LINE" {
            let pod = event["pod"].as_str().unwrap();
            assert!(pod.starts_with("web-"), "{event}");
            assert!(event["line"].as_str().unwrap().contains("tick"), "{event}");
            pods_with_lines.insert(pod.to_owned());
        }
    }
    s.done().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_faster_than_the_budget_is_cut_with_a_count_of_what_was_dropped() {
    let s = setup().await;
    s.write("fast", &["begin"]);
    s.pod("fast", json!({ "app": "fast" }), "begin").await;
    let mut rx = s.follow(json!({ "pod": "fast", "lines": 5 })).await;
    assert_eq!(next(&mut rx).await["type"], "STARTED");
    assert_eq!(texts(&lines(&mut rx, 1).await), ["begin"]);
    let burst: Vec<String> = (0..300).map(|i| format!("line {i}")).collect();
    s.write("fast", &burst.iter().map(String::as_str).collect::<Vec<_>>());
    // Every line of the burst is either delivered or counted as dropped.
    let (mut delivered, mut dropped) = (Vec::new(), 0);
    while delivered.len() as i64 + dropped < 300 {
        let Ok(Some(payload)) = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await else {
            panic!("stalled: {} delivered ({:?}), {dropped} dropped", delivered.len(), delivered);
        };
        let event = payload["data"]["logStream"].clone();
        match event["type"].as_str().unwrap() {
            "LINE" => delivered.push(event["line"].as_str().unwrap().to_owned()),
            "DROPPED" => dropped += event["dropped"].as_i64().unwrap(),
            other => panic!("unexpected {other}: {event}"),
        }
    }
    assert_eq!(delivered.len() as i64 + dropped, 300);
    assert!(dropped > 250, "a budget of 5 lines a second lets few of a burst through: {} delivered", delivered.len());
    assert_eq!(delivered[0], "line 0", "the budget's burst goes first");
    // What waits is bounded: the stream keeps at most its replay lines, whatever the writer does.
    let kept = s.server.server.log_hub.kept_lines();
    assert!(kept <= kubegql::logs::LogSettings::default().log_replay_lines, "{kept}");
    s.done().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_logs_pages_back_through_older_lines_and_is_truncated_only_when_cut() {
    let s = setup().await;
    let written: Vec<String> = (0..250).map(|i| format!("l{i:03}")).collect();
    s.write("pages", &written.iter().map(String::as_str).collect::<Vec<_>>());
    s.pod("pages", json!({ "app": "pages" }), "l000").await;
    let query = "query($id: ID!, $ns: String!, $tail: Int, $before: String, $limit: Int) {
        podLogs(clusterId: $id, namespace: $ns, pod: \"pages\", tailLines: $tail, before: $before, limitBytes: $limit) {
          text truncated olderCursor } }";
    let server = &s.server;
    let page = |tail: Option<i64>, before: Option<String>, limit: Option<usize>| {
        let vars = json!({ "id": s.id, "ns": s.ns, "tail": tail, "before": before, "limit": limit });
        async move {
            let body = server.gql(query, vars).await;
            assert!(body.get("errors").is_none(), "{body}");
            body["data"]["podLogs"].clone()
        }
    };
    let expected = |from: usize, to: usize| written[from..to].iter().map(|l| format!("{l}\n")).collect::<String>();

    // The last 100 lines, then the 100 before them, then the 50 left; then nothing older.
    let newest = page(Some(100), None, None).await;
    assert_eq!(newest["text"], expected(150, 250));
    assert_eq!(newest["truncated"], false);
    let cursor = newest["olderCursor"].as_str().expect("older lines exist").to_owned();
    let middle = page(Some(100), Some(cursor), None).await;
    assert_eq!(middle["text"], expected(50, 150));
    let cursor = middle["olderCursor"].as_str().expect("older lines exist").to_owned();
    let oldest = page(Some(100), Some(cursor), None).await;
    assert_eq!(oldest["text"], expected(0, 50));
    assert_eq!(oldest["olderCursor"], Value::Null, "the log starts here");

    // The whole log is 1,250 bytes: exactly that is not truncated, a byte less is.
    let whole = page(None, None, Some(1250)).await;
    assert_eq!((whole["text"].as_str().unwrap().len(), &whole["truncated"]), (1250, &json!(false)));
    assert_eq!(whole["olderCursor"], Value::Null);
    let cut = page(None, None, Some(1249)).await;
    assert_eq!((cut["text"].as_str().unwrap().len(), &cut["truncated"]), (1249, &json!(true)));

    // A cursor of another pod's log is refused.
    let other = kubegql::logs::position::Position {
        pod: "else".into(),
        container: String::new(),
        at: "2026-11-27T23:00:00Z".into(),
        seen: 1,
    };
    let body = s.server.gql(query, json!({ "id": s.id, "ns": s.ns, "before": other.encode() })).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    s.done().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_cluster_ends_its_log_streams_and_a_new_subscription_reads_afresh() {
    let s = setup().await;
    s.write("moved", &["before the change"]);
    s.pod("moved", json!({ "app": "moved" }), "before the change").await;
    let mut rx = s.follow(json!({ "pod": "moved" })).await;
    assert_eq!(next(&mut rx).await["type"], "STARTED");
    assert_eq!(texts(&lines(&mut rx, 1).await), ["before the change"]);
    s.server
        .gql_ok(
            "mutation($id: ID!) { updateCluster(id: $id, input: { labels: [{ key: \"moved\", value: \"yes\" }] }) { id } }",
            json!({ "id": s.id }),
        )
        .await;
    let ended = next(&mut rx).await;
    assert_eq!(ended["type"], "ENDED", "{ended}");
    assert!(ended["message"].as_str().unwrap().contains("subscribe again"), "{ended}");
    // A new subscription opens a new stream (the ended one is not joined) and reads the log.
    let mut again = s.follow(json!({ "pod": "moved" })).await;
    assert_eq!(next(&mut again).await["type"], "STARTED");
    s.write("moved", &["after the change"]);
    assert_eq!(texts(&lines(&mut again, 2).await), ["before the change", "after the change"]);
    assert_eq!(s.server.server.log_hub.upstream_starts(), 2);
    s.done().await;
}
