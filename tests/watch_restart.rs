//! A subscription survives the API server going away and coming back, and converges. In a test
//! binary of its own, since it restarts its control plane's API server (the test command runs it
//! on the fault tests' control plane, beside the other tests).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, project_dir, unique_namespace};
use common::{Backend, TestDb, TestServer};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_subscription_continues_across_an_api_server_restart() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = server.control_plane_cluster(&cp, "restart", json!({})).await;
    let client = cp.client("admin").await;
    let ns = unique_namespace("restart");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap())
        .await
        .unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": { "r": "y" } } })).unwrap()
    };

    // Two subscriptions: one of objects and one of table rows (a watch loop of kubegql's own).
    let query = "subscription($id: ID!, $ns: String, $table: Boolean) { resourceEvents(clusterId: $id, kind: \"ConfigMap\", namespace: $ns, labelSelector: \"r=y\", asTable: $table) { type resource { metadata { name } } row { text } } }";
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    for table in [false, true] {
        let mut payloads = server
            .subscribe_sse(&server.token, query, json!({ "id": id, "ns": ns, "table": table }))
            .await
            .expect("subscribed");
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(value) = payloads.recv().await {
                let event = &value["data"]["resourceEvents"];
                if let Some(kind) = event["type"].as_str() {
                    let name = event["resource"]["metadata"]["name"].as_str().unwrap_or("").to_owned();
                    // Each table event's row names its object (a row is the object's `kubectl get`).
                    let row = event["row"]["text"][0].as_str();
                    let kind = match (table, row) {
                        (false, None) => kind.to_owned(),
                        (true, Some(row)) if row == name => format!("{kind} as a row"),
                        _ => format!("{kind} with a wrong row: {event}"),
                    };
                    if tx.send((kind, name)).is_err() {
                        return;
                    }
                }
            }
        });
    }
    let hub = std::sync::Arc::clone(&server.server.watch_hub);
    common::eventually("the upstream watch has listed", Duration::from_secs(20), || async {
        hub.listed_upstream_count() == 2
    })
    .await;
    configmaps.create(&PostParams::default(), &cm("before")).await.unwrap();
    let mut first = Vec::new();
    for _ in 0..2 {
        first.push(tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap());
    }
    first.sort();
    assert_eq!(first, [("ADDED".to_owned(), "before".to_owned()), ("ADDED as a row".to_owned(), "before".to_owned())]);

    // Stop the API server for 3 seconds and start it again.
    let script = project_dir().join("tests/cluster/restart-apiserver");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(script).args(["--down-for", "3"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let client = cp.client("admin").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    configmaps.create(&PostParams::default(), &cm("after")).await.unwrap();
    configmaps.delete("before", &DeleteParams::default()).await.unwrap();

    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await else { continue };
        *seen.entry(event).or_default() += 1;
        let expected = ["ADDED", "DELETED", "ADDED as a row", "DELETED as a row"];
        if expected
            .iter()
            .zip(["after", "before", "after", "before"])
            .all(|(k, n)| seen.contains_key(&((*k).into(), n.into())))
        {
            break;
        }
    }
    for suffix in ["", " as a row"] {
        let key = |kind: &str, name: &str| (format!("{kind}{suffix}"), name.to_owned());
        assert_eq!(seen.get(&key("ADDED", "after")), Some(&1), "{seen:?}");
        assert_eq!(seen.get(&key("DELETED", "before")), Some(&1), "{seen:?}");
        assert_eq!(seen.get(&key("ADDED", "before")), None, "no duplicate after the relist: {seen:?}");
    }
    assert_eq!(seen.len(), 4, "nothing else: {seen:?}");
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
}
