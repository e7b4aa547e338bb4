//! Queries and subscriptions across clusters, against two distinct control planes (the suite's
//! and the second one, `tests/cluster/up --second`), the second stopped in the middle. No other
//! test uses the second control plane, so restarting its API server disturbs none.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, project_dir, unique_namespace};
use common::{Backend, TestDb, TestServer, cli_principal, first_error, settings_for};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

const ACROSS: &str = "query($ids: [ID!], $sel: String, $ns: String, $first: Int, $after: String) {
  resourcesAcrossClusters(clusterIds: $ids, clusterSelector: $sel, kind: \"ConfigMap\", namespace: $ns,
                          labelSelector: \"set=x\", first: $first, after: $after) {
    edges { cursor clusterId clusterName node { metadata { name namespace } } }
    pageInfo { hasNextPage endCursor }
    clusters { clusterId clusterName items done error { code message } } } }";

async fn namespace_with(client: &kube::Client, ns: &str, names: &[&str]) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap())
        .await
        .unwrap();
    for name in names {
        configmap(client, ns, name).await;
    }
}

async fn configmap(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = serde_json::from_value(json!({ "metadata": { "name": name, "labels": { "set": "x" } } })).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
}

/// (cluster name, object name) of each edge.
fn edges(body: &Value) -> Vec<(String, String)> {
    body["data"]["resourcesAcrossClusters"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no page: {body}"))
        .iter()
        .map(|e| {
            (e["clusterName"].as_str().unwrap().to_owned(), e["node"]["metadata"]["name"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn cursor(body: &Value) -> Option<String> {
    let info = &body["data"]["resourcesAcrossClusters"]["pageInfo"];
    info["hasNextPage"].as_bool().unwrap().then(|| info["endCursor"].as_str().unwrap().to_owned())
}

fn pair(cluster: &str, name: &str) -> (String, String) {
    (cluster.to_owned(), name.to_owned())
}

/// Every page from the first, `first` at a time.
async fn all_pages(server: &TestServer, vars: Value) -> Vec<Vec<(String, String)>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut vars = vars.clone();
        vars["after"] = json!(after);
        let body = server.gql(ACROSS, vars).await;
        assert!(body.get("errors").is_none(), "{body}");
        pages.push(edges(&body));
        match cursor(&body) {
            Some(next) => after = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 20, "the pages never end: {pages:?}");
    }
}

/// Stops the second API server for `seconds` and starts it again, in the background.
fn stop_second_for(seconds: u32) -> tokio::task::JoinHandle<std::process::Output> {
    let script = project_dir().join("tests/cluster/restart-apiserver");
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(script).args(["--second", "--down-for", &seconds.to_string()]).output().unwrap()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn one_query_and_one_subscription_span_two_control_planes_one_stopped_midway() {
    let (one, two) = (ControlPlane::get(), ControlPlane::second());
    assert_ne!(one.api_url, two.api_url, "two distinct control planes");
    let (client_one, client_two) = (one.client("admin").await, two.client("admin").await);
    let ns = unique_namespace("across");
    namespace_with(&client_one, &ns, &["a", "c", "e", "g", "same"]).await;
    namespace_with(&client_two, &ns, &["b", "d", "f", "same"]).await;

    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let labels =
        |region: &str| json!({ "labels": [{ "key": "env", "value": "test" }, { "key": "region", "value": region }] });
    let id_one = server.control_plane_cluster(&one, "one", labels("a")).await;
    let two_input = json!({ "bearerToken": two.admin_token, "caData": two.ca_pem(),
                            "labels": [{ "key": "env", "value": "test" }, { "key": "region", "value": "b" }] });
    let mut two_input = two_input;
    two_input["apiServerUrl"] = json!(two.api_url);
    let id_two = server.control_plane_cluster(&one, "two", two_input).await;
    // A third cluster outside the selector.
    server.control_plane_cluster(&one, "other", json!({ "labels": [{ "key": "env", "value": "prod" }] })).await;

    // Merged by namespace and name, then cluster name, two at a time, by selector and by ids alike.
    let expected = vec![
        vec![pair("one", "a"), pair("two", "b")],
        vec![pair("one", "c"), pair("two", "d")],
        vec![pair("one", "e"), pair("two", "f")],
        vec![pair("one", "g"), pair("one", "same")],
        vec![pair("two", "same")],
    ];
    let by_selector = all_pages(&server, json!({ "sel": "env=test, region in (a,b)", "ns": ns, "first": 2 })).await;
    assert_eq!(by_selector, expected);
    let by_ids = all_pages(&server, json!({ "ids": [id_two, id_one], "ns": ns, "first": 2 })).await;
    assert_eq!(by_ids, expected);
    let whole = all_pages(&server, json!({ "ids": [id_one, id_two], "ns": ns, "first": 500 })).await;
    assert_eq!(whole, [expected.concat()]);

    // A page continues the list as it was at the first page: an object created meanwhile is
    // neither shown out of place nor does it shift what follows.
    let first = server.gql(ACROSS, json!({ "ids": [id_one, id_two], "ns": ns, "first": 3 })).await;
    assert_eq!(edges(&first), [pair("one", "a"), pair("two", "b"), pair("one", "c")]);
    configmap(&client_one, &ns, "b0").await;
    configmap(&client_two, &ns, "c0").await;
    let second =
        server.gql(ACROSS, json!({ "ids": [id_one, id_two], "ns": ns, "first": 3, "after": cursor(&first) })).await;
    assert_eq!(edges(&second), [pair("two", "d"), pair("one", "e"), pair("two", "f")], "{second}");
    let parts = &second["data"]["resourcesAcrossClusters"]["clusters"];
    assert_eq!(parts.as_array().unwrap().len(), 2);
    assert!(parts.as_array().unwrap().iter().all(|p| p["error"].is_null() && p["done"] == false), "{parts}");

    // A cursor of one query is refused by another; bad spans are refused.
    let other = server.gql(ACROSS, json!({ "ids": [id_one], "ns": ns, "first": 3, "after": cursor(&first) })).await;
    assert_eq!(first_error(&other).0, "BAD_USER_INPUT");
    for vars in [
        json!({ "ns": ns }),
        json!({ "ids": [id_one], "sel": "env=test" }),
        json!({ "ids": [] }),
        json!({ "sel": "env in prod" }),
    ] {
        let body = server.gql(ACROSS, vars.clone()).await;
        assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "{vars}: {body}");
    }

    // The same tenant rules as a single cluster: another tenant's ids are NOT_FOUND, and its
    // selector finds none of this tenant's clusters.
    let blue = cli_principal(&db, "blue", "blue-admin", "ADMIN");
    let body = server.gql_as(&blue, &[], ACROSS, json!({ "ids": [id_one], "ns": ns })).await;
    assert_eq!(first_error(&body).0, "NOT_FOUND", "{body}");
    let body = server.gql_as(&blue, &[], ACROSS, json!({ "sel": "env=test", "ns": ns })).await;
    assert_eq!(edges(&body), [], "{body}");
    assert_eq!(body["data"]["resourcesAcrossClusters"]["clusters"], json!([]));

    // One subscription over both clusters.
    let mut events = server
        .subscribe_sse(
            &server.token,
            "subscription($sel: String, $ns: String) { resourceEventsAcrossClusters(clusterSelector: $sel, kind: \"ConfigMap\",
               namespace: $ns, labelSelector: \"set=x\", sendInitialState: true) {
               clusterName type resource { metadata { name } } error { code message } } }",
            json!({ "sel": "env=test", "ns": ns }),
        )
        .await
        .expect("subscribed");
    let mut seen = BTreeSet::new();
    let mut next = async |what: &str| -> (String, String, String) {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .unwrap_or_else(|_| panic!("no event while waiting for {what}"))
            .unwrap();
        let event = &event["data"]["resourceEventsAcrossClusters"];
        assert!(event["error"].is_null(), "{event}");
        (
            event["clusterName"].as_str().unwrap().to_owned(),
            event["type"].as_str().unwrap().to_owned(),
            event["resource"]["metadata"]["name"].as_str().unwrap().to_owned(),
        )
    };
    for _ in 0..11 {
        let (cluster, kind, name) = next("the initial state").await;
        assert_eq!(kind, "ADDED");
        seen.insert((cluster, name));
    }
    assert_eq!(seen.iter().filter(|(c, _)| c == "one").count(), 6, "{seen:?}");
    assert_eq!(seen.iter().filter(|(c, _)| c == "two").count(), 5, "{seen:?}");

    // The second control plane stops: its part of a page is an error while the first answers,
    // and the subscription goes on with the first.
    let hub = std::sync::Arc::clone(&server.server.watch_hub);
    assert_eq!(hub.listed_upstream_count(), 2);
    let restart = stop_second_for(6);
    let mut during = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        during = server
            .gql(ACROSS, json!({ "ids": [id_one, id_two], "ns": ns, "first": 3, "after": cursor(&second) }))
            .await;
        let parts = during["data"]["resourcesAcrossClusters"]["clusters"].as_array().cloned().unwrap_or_default();
        if parts.iter().any(|p| p["clusterName"] == "two" && !p["error"].is_null()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let parts = during["data"]["resourcesAcrossClusters"]["clusters"].as_array().cloned().unwrap();
    let two_part = parts.iter().find(|p| p["clusterName"] == "two").unwrap();
    assert_eq!(two_part["error"]["code"], "CLUSTER_UNREACHABLE", "{during}");
    assert!(two_part["error"]["message"].as_str().unwrap().contains("two"), "{during}");
    assert_eq!(edges(&during), [pair("one", "g"), pair("one", "same")], "the first cluster still answers: {during}");
    assert!(cursor(&during).is_some(), "the stopped cluster is still to be read");
    configmap(&client_one, &ns, "h").await;
    assert_eq!(next("a change on the first cluster").await, ("one".into(), "ADDED".into(), "h".into()));

    let out = restart.await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Back: the page after the outage's takes the second cluster up where it was.
    let after =
        server.gql(ACROSS, json!({ "ids": [id_one, id_two], "ns": ns, "first": 10, "after": cursor(&during) })).await;
    assert_eq!(edges(&after), [pair("two", "same")], "{after}");
    assert_eq!(cursor(&after), None);
    // And the subscription receives the second cluster's changes again: its watch resumes (or
    // relists, and sends what it missed).
    let client_two = two.client("admin").await;
    configmap(&client_two, &ns, "i").await;
    assert_eq!(next("a change on the second cluster").await, ("two".into(), "ADDED".into(), "i".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_does_not_answer_in_time_gets_its_own_error_and_the_others_answer() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("across-late");
    namespace_with(&client, &ns, &["a", "b"]).await;
    // An "API server" that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("https://{}", silent.local_addr().unwrap());
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.limits.fanout_deadline_secs = 2;
    let server = TestServer::start_with(settings).await;
    let id = server.control_plane_cluster(&cp, "live", json!({})).await;
    let silent_id = server.control_plane_cluster(&cp, "silent", json!({ "apiServerUrl": silent_url })).await;

    let started = Instant::now();
    let body = server.gql(ACROSS, json!({ "ids": [id, silent_id], "ns": ns, "first": 10 })).await;
    let took = started.elapsed();
    assert_eq!(edges(&body), [pair("live", "a"), pair("live", "b")], "{body}");
    let parts = body["data"]["resourcesAcrossClusters"]["clusters"].as_array().unwrap().clone();
    let late = parts.iter().find(|p| p["clusterName"] == "silent").unwrap();
    assert_eq!(late["error"]["code"], "CLUSTER_UNREACHABLE", "{body}");
    assert!(late["error"]["message"].as_str().unwrap().contains("did not answer within 2s"), "{body}");
    assert!(took < Duration::from_secs(10), "the deadline bounds the query: {took:?}");
    assert!(cursor(&body).is_some(), "the silent cluster is still to be read");
    drop(silent);
}
