//! kubegql's PostgreSQL stopped and started during traffic. While it is down, reads of known
//! clusters and of their Kubernetes resources go on from memory with recently verified tokens, a
//! live subscription keeps delivering, and every change (an audited action, a new cluster, a
//! token nobody verified yet) is refused at once with `STORE_UNAVAILABLE`, nothing half-done in
//! the cluster. After the restart everything works again without restarting kubegql, the
//! change-notice (LISTEN) connection included. On a PostgreSQL server of its own
//! (`scripts/postgres-ctl`), so that no other test loses its database.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, project_dir, ready_namespace, unique_namespace};
use common::{TestDb, TestServer, first_error, settings_for};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

fn postgres(action: &str) {
    let out = std::process::Command::new(project_dir().join("scripts/postgres-ctl"))
        .args(["faults", action])
        .output()
        .expect("scripts/postgres-ctl runs");
    assert!(out.status.success(), "postgres {action}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts the database again when the test ends, also when it fails.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        postgres("start");
    }
}

const LIST: &str = "query($id: ID!, $ns: String) { cluster(id: $id) { name resources(kind: \"ConfigMap\", namespace: $ns, labelSelector: \"t=o\") { edges { node { metadata { name } } } } } }";
const APPLY: &str =
    "mutation($id: ID!, $m: String!) { apply(clusterId: $id, manifest: $m) { documents { name action } } }";

/// One request with a bound on its wait: the pool's own timeout (10 s) would exceed it, so a read
/// that waited for the database fails here.
async fn post(server: &TestServer, token: &str, query: &str, variables: Value) -> Result<(u16, Value), String> {
    let response = server
        .client
        .post(server.url("/graphql"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.map_err(|e| e.to_string())?))
}

fn names(body: &Value) -> Vec<String> {
    body["data"]["cluster"]["resources"]["edges"]
        .as_array()
        .map(|edges| edges.iter().filter_map(|e| e["node"]["metadata"]["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_go_on_and_changes_are_refused_while_the_database_is_down_and_all_recovers_after() {
    let cp = ControlPlane::get();
    let db = TestDb::on_stoppable_postgres().await;
    // A second replica on the same database, to prove its change notices resume after the
    // restart; its periodic refresh is set far beyond the test so only a notice can explain it.
    let a = TestServer::start(&db).await;
    let mut settings = settings_for(&db);
    settings.upkeep.cluster_refresh_secs = 3600;
    let b = TestServer::start_with(settings).await;

    let id = a.control_plane_cluster(&cp, "outage", json!({})).await;
    let client = cp.client("admin").await;
    let ns = unique_namespace("outage");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    ready_namespace(&client, &ns).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": { "t": "o" } } })).unwrap()
    };
    configmaps.create(&PostParams::default(), &cm("before")).await.unwrap();

    // A viewer whose token is verified now, and one whose token nobody has used yet.
    let (_, viewer) = a.principal("viewer", "VIEWER").await;
    let (_, unused) = a.principal("unused", "VIEWER").await;
    let (status, body) = post(&a, &viewer, LIST, json!({ "id": id, "ns": ns })).await.unwrap();
    assert_eq!((status, names(&body)), (200, vec!["before".to_owned()]), "{body}");

    // A live subscription, opened before the outage.
    let mut events = a
        .subscribe_sse(
            &viewer,
            "subscription($id: ID!, $ns: String) { resourceEvents(clusterId: $id, kind: \"ConfigMap\", namespace: $ns, labelSelector: \"t=o\", sendInitialState: true) { type resource { metadata { name } } } }",
            json!({ "id": id, "ns": ns }),
        )
        .await
        .expect("subscribed");
    let first = tokio::time::timeout(Duration::from_secs(20), events.recv()).await.unwrap().unwrap();
    assert_eq!(first["data"]["resourceEvents"]["resource"]["metadata"]["name"], "before", "{first}");

    // Traffic: the viewer lists the namespace over and over, through the outage and after it.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (stop, reads) = (Arc::clone(&stop), Arc::clone(&reads));
        let (base, viewer, id, ns) = (a.base.clone(), viewer.clone(), id.clone(), ns.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let answer = client
                    .post(format!("{base}/graphql"))
                    .bearer_auth(&viewer)
                    .timeout(Duration::from_secs(5))
                    .json(&json!({ "query": LIST, "variables": { "id": id, "ns": ns } }))
                    .send()
                    .await;
                match answer {
                    Ok(response) => {
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        if body.get("errors").is_some() || body["data"]["cluster"]["name"] != "outage" {
                            failures.push(body.to_string());
                        }
                    }
                    Err(err) => failures.push(format!("no answer: {err}")),
                }
                reads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            failures
        })
    };

    let _restart = StartOnDrop;
    postgres("stop");
    let stopped = Instant::now();
    common::eventually("readiness reports the database down", Duration::from_secs(20), || async {
        a.client.get(a.url("/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) == 503
    })
    .await;

    let metrics = a.client.get(a.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kubegql_store_unavailable 1"), "{metrics}");

    // A change is refused at once, with a code that says why, and nothing reaches the cluster.
    let manifest =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: during\n  namespace: {ns}\n  labels:\n    t: o\n");
    let (status, body) = post(&a, &a.token, APPLY, json!({ "id": id, "m": manifest })).await.unwrap();
    assert_eq!((status, first_error(&body).0.as_str()), (200, "STORE_UNAVAILABLE"), "{body}");
    assert!(configmaps.get_opt("during").await.unwrap().is_none(), "the refused apply wrote nothing");
    let (_, body) =
        post(&a, &a.token, "mutation { createCluster(input: { name: \"new\", mode: IN_CLUSTER }) { id } }", json!({}))
            .await
            .unwrap();
    assert_eq!(first_error(&body).0, "STORE_UNAVAILABLE", "{body}");
    // The same on the plain apply route.
    let response = a
        .client
        .post(a.url(&format!("/api/v1/clusters/{id}/apply")))
        .bearer_auth(&a.token)
        .timeout(Duration::from_secs(5))
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "STORE_UNAVAILABLE", "{body}");

    // A token that was never verified cannot be checked: refused, fail-closed.
    let (status, body) = post(&a, &unused, LIST, json!({ "id": id, "ns": ns })).await.unwrap();
    assert_eq!((status, first_error(&body).0.as_str()), (503, "STORE_UNAVAILABLE"), "{body}");

    // Past the token cache's 10 s, the viewer still reads (the outage grace), the clusters page
    // comes from memory, and the subscription delivers a change made meanwhile.
    configmaps.create(&PostParams::default(), &cm("while-down")).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(20), events.recv()).await.unwrap().unwrap();
    assert_eq!(event["data"]["resourceEvents"]["resource"]["metadata"]["name"], "while-down", "{event}");
    common::eventually("the token cache has expired", Duration::from_secs(30), || async {
        stopped.elapsed() > kubegql::auth::TOKEN_CACHE_TTL + Duration::from_secs(1)
    })
    .await;
    let (status, body) = post(&a, &viewer, LIST, json!({ "id": id, "ns": ns })).await.unwrap();
    assert_eq!((status, names(&body)), (200, vec!["before".to_owned(), "while-down".to_owned()]), "{body}");
    let (_, body) = post(&a, &viewer, "{ clusters { edges { node { id name } } } }", json!({})).await.unwrap();
    assert_eq!(body["data"]["clusters"]["edges"][0]["node"]["id"], id.as_str(), "{body}");
    let during = reads.load(Ordering::SeqCst);

    postgres("start");
    // Changes work again, without restarting kubegql.
    let deadline = Instant::now() + Duration::from_secs(30);
    let applied = loop {
        let answer = post(&a, &a.token, APPLY, json!({ "id": id, "m": manifest })).await;
        match answer {
            Ok((_, body)) if body.get("errors").is_none() => break body,
            other => assert!(Instant::now() < deadline, "no apply succeeded after the restart: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(applied["data"]["apply"]["documents"][0]["action"], "CREATED", "{applied}");
    let (status, body) = post(&a, &unused, LIST, json!({ "id": id, "ns": ns })).await.unwrap();
    assert_eq!(status, 200, "the unused token works now: {body}");
    assert_eq!(names(&body), ["before", "during", "while-down"], "{body}");

    let metrics = a.client.get(a.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kubegql_store_unavailable 0"), "{metrics}");

    // B's change notices resumed: a rename on A reaches B's directory, whose own refresh is an
    // hour away.
    let rename = "mutation($id: ID!) { updateCluster(id: $id, input: { name: \"renamed\" }) { name } }";
    let renamed = a.gql_ok(rename, json!({ "id": id })).await;
    assert_eq!(renamed["updateCluster"]["name"], "renamed");
    common::eventually("the rename reaches the other replica", Duration::from_secs(15), || async {
        let body = b.gql("query($id: ID!) { cluster(id: $id) { name } }", json!({ "id": id })).await;
        body["data"]["cluster"]["name"] == "renamed"
    })
    .await;

    stop.store(true, Ordering::SeqCst);
    let failures = traffic.await.unwrap();
    // Reads named the cluster "outage" until the rename; those after it are not failures.
    let failures: Vec<_> = failures.into_iter().filter(|f| !f.contains("\"renamed\"")).collect();
    assert!(during > 20, "the traffic ran through the outage ({during} reads)");
    assert!(failures.is_empty(), "reads failed during or after the outage: {failures:?}");
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
}
