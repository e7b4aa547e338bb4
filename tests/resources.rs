//! Reading resources of every kind through GraphQL, against the real control plane.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::control_plane::{ControlPlane, unique_namespace};
use common::{Backend, TestDb, TestServer, first_error};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

async fn server_with_cluster(cp: &ControlPlane) -> (TestDb, TestServer, String) {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = server.control_plane_cluster(cp, "local", json!({})).await;
    (db, server, id)
}

async fn namespace(client: &kube::Client, name: &str) {
    common::control_plane::ready_namespace(client, name).await;
}

async fn drop_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
}

const LIST: &str = "query($id: ID!, $kind: String!, $group: String, $ns: String, $labels: String, $fields: String, $first: Int, $after: String) {
  cluster(id: $id) { resources(kind: $kind, group: $group, namespace: $ns, labelSelector: $labels, fieldSelector: $fields, first: $first, after: $after) {
    edges { cursor node { apiVersion kind metadata { name namespace uid labels { key value } } } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
    remainingItemCount resourceVersion } } }";

async fn list(server: &TestServer, vars: Value) -> Value {
    server.gql(LIST, vars).await
}

fn names(page: &Value) -> Vec<String> {
    page["data"]["cluster"]["resources"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no edges: {page}"))
        .iter()
        .map(|e| e["node"]["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn twelve_hundred_config_maps_in_three_pages_without_gaps() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("res-page");
    namespace(&client, &ns).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    futures_util::stream::iter(0..1200)
        .map(|i| {
            let configmaps = configmaps.clone();
            async move {
                let batch = if i % 2 == 0 { "even" } else { "odd" };
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": { "name": format!("cm-{i:04}"), "labels": { "batch": batch } },
                    "data": { "i": i.to_string() }
                }))
                .unwrap();
                configmaps.create(&PostParams::default(), &cm).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;

    let (_db, server, id) = server_with_cluster(&cp).await;
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let page =
            list(&server, json!({ "id": id, "kind": "ConfigMap", "ns": ns, "first": 500, "after": after })).await;
        assert!(page.get("errors").is_none(), "{page}");
        let conn = &page["data"]["cluster"]["resources"];
        pages += 1;
        let got = names(&page);
        assert!(got.len() <= 500);
        if pages == 1 {
            assert_eq!(conn["remainingItemCount"].as_i64(), Some(1201 - 500), "the API server's count");
            assert_eq!(conn["pageInfo"]["hasPreviousPage"], false);
        }
        seen.extend(got);
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "no duplicates");
    // 1,200 of ours plus the kube-root-ca.crt the controller-manager puts in every namespace.
    assert_eq!(seen.len(), 1201);
    for i in 0..1200 {
        assert!(distinct.contains(&format!("cm-{i:04}")), "cm-{i:04} missing");
    }

    // Selectors are applied by the API server.
    let page =
        list(&server, json!({ "id": id, "kind": "ConfigMap", "ns": ns, "labels": "batch=odd", "first": 500 })).await;
    let odd = names(&page);
    assert_eq!(odd.len(), 500);
    assert!(odd.iter().all(|n| n[3..].parse::<u32>().unwrap() % 2 == 1));
    let page =
        list(&server, json!({ "id": id, "kind": "configmaps", "ns": ns, "fields": "metadata.name=cm-0042" })).await;
    assert_eq!(names(&page), vec!["cm-0042"]);

    // A cursor is bound to its query: another namespace refuses it; so does a too-large page.
    let first = list(&server, json!({ "id": id, "kind": "ConfigMap", "ns": ns, "first": 10 })).await;
    let cursor = first["data"]["cluster"]["resources"]["pageInfo"]["endCursor"].clone();
    let other =
        list(&server, json!({ "id": id, "kind": "ConfigMap", "ns": "default", "first": 10, "after": cursor })).await;
    assert_eq!(first_error(&other).0, "BAD_USER_INPUT", "{other}");
    let other = list(
        &server,
        json!({ "id": id, "kind": "ConfigMap", "ns": ns, "labels": "batch=odd", "first": 10, "after": cursor }),
    )
    .await;
    assert_eq!(first_error(&other).0, "BAD_USER_INPUT");
    let big = list(&server, json!({ "id": id, "kind": "ConfigMap", "ns": ns, "first": 501 })).await;
    assert_eq!(first_error(&big).0, "BAD_USER_INPUT");
    drop_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_resource_goes_through_the_same_fields() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let group = format!("t{suffix}.kubegql.test");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": format!("widgets.{group}") },
        "spec": {
            "group": group,
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList" },
            "scope": "Namespaced",
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "properties": { "size": { "type": "integer" } } } } } } }]
        }
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ns = unique_namespace("res-crd");
    namespace(&client, &ns).await;
    let (_db, server, id) = server_with_cluster(&cp).await;
    // Discovery learns the new kind (it may take the API server a moment to serve it).
    let mut listed = Value::Null;
    for _ in 0..40 {
        listed = list(&server, json!({ "id": id, "kind": "Widget", "group": group, "ns": ns })).await;
        if listed.get("errors").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(listed.get("errors").is_none(), "{listed}");
    assert!(names(&listed).is_empty());

    let gvk = kube::api::GroupVersionKind::gvk(&group, "v1", "Widget");
    let resource = kube::api::ApiResource::from_gvk(&gvk);
    let widgets: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let widget: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": { "name": "w1", "labels": { "shape": "round" } }, "spec": { "size": 3 }
    }))
    .unwrap();
    widgets.create(&PostParams::default(), &widget).await.unwrap();

    let listed = list(&server, json!({ "id": id, "kind": "Widget", "group": group, "ns": ns })).await;
    let node = &listed["data"]["cluster"]["resources"]["edges"][0]["node"];
    assert_eq!(node["apiVersion"], format!("{group}/v1"));
    assert_eq!(node["kind"], "Widget");
    assert_eq!(node["metadata"]["labels"], json!([{ "key": "shape", "value": "round" }]));

    // Reading the body through a fragment still fetches whole objects (not metadata only).
    let with_fragment = server
        .gql(
            "query($id: ID!, $group: String, $ns: String) { cluster(id: $id) {
                resources(group: $group, kind: \"Widget\", namespace: $ns) { edges { node { ...body } } } } }
             fragment body on Resource { metadata { name } spec }",
            json!({ "id": id, "group": group, "ns": ns }),
        )
        .await;
    assert_eq!(
        with_fragment["data"]["cluster"]["resources"]["edges"][0]["node"]["spec"],
        json!({ "size": 3 }),
        "{with_fragment}"
    );
    let nodes = server
        .gql(
            "query($id: ID!, $group: String, $ns: String) { cluster(id: $id) {
                resources(group: $group, kind: \"Widget\", namespace: $ns) { nodes { metadata { name } json } } } }",
            json!({ "id": id, "group": group, "ns": ns }),
        )
        .await;
    assert_eq!(nodes["data"]["cluster"]["resources"]["nodes"][0]["json"]["spec"]["size"], 3, "{nodes}");

    let one = server
        .gql(
            "query($id: ID!, $group: String!, $ns: String) { cluster(id: $id) {
                resource(group: $group, kind: \"Widget\", namespace: $ns, name: \"w1\") { spec json yaml metadata { name uid } }
                apiResources { group version kind plural namespaced verbs } } }",
            json!({ "id": id, "group": group, "ns": ns }),
        )
        .await;
    assert!(one.get("errors").is_none(), "{one}");
    let res = &one["data"]["cluster"]["resource"];
    assert_eq!(res["spec"], json!({ "size": 3 }));
    assert_eq!(res["json"]["kind"], "Widget");
    assert!(res["yaml"].as_str().unwrap().contains("size: 3"));

    // Whole objects read from a list page (the API server's bytes) and from a single read agree,
    // and leave managedFields out unless asked for, as `kubectl get -o json` does.
    let both = server
        .gql(
            "query($id: ID!, $group: String!, $ns: String) { cluster(id: $id) {
                resources(group: $group, kind: \"Widget\", namespace: $ns) {
                    nodes { json full: json(managedFields: true) yaml fullYaml: yaml(managedFields: true) } }
                resource(group: $group, kind: \"Widget\", namespace: $ns, name: \"w1\") { json full: json(managedFields: true) } } }",
            json!({ "id": id, "group": group, "ns": ns }),
        )
        .await;
    assert!(both.get("errors").is_none(), "{both}");
    let (listed, single) = (&both["data"]["cluster"]["resources"]["nodes"][0], &both["data"]["cluster"]["resource"]);
    assert_eq!(listed["json"], single["json"], "list item and single read give the same object");
    assert_eq!(listed["full"], single["full"]);
    assert_eq!(listed["json"]["metadata"].get("managedFields"), None, "{}", listed["json"]);
    assert_eq!(listed["json"]["metadata"]["name"], "w1");
    assert_eq!(listed["json"]["apiVersion"], format!("{group}/v1"), "list items get their type back");
    let managed = listed["full"]["metadata"]["managedFields"].as_array().expect("asked for managedFields");
    assert!(!managed.is_empty() && managed[0]["manager"].is_string(), "{managed:?}");
    let mut without = listed["full"].clone();
    without["metadata"].as_object_mut().unwrap().remove("managedFields");
    assert_eq!(without, listed["json"], "nothing else differs");
    assert!(!listed["yaml"].as_str().unwrap().contains("managedFields"));
    assert!(listed["fullYaml"].as_str().unwrap().contains("managedFields:"));

    let kinds = one["data"]["cluster"]["apiResources"].as_array().unwrap();
    let widget_kind = kinds.iter().find(|k| k["group"] == group.as_str()).expect("the CRD is discovered");
    assert_eq!(widget_kind["plural"], "widgets");
    assert_eq!(widget_kind["namespaced"], true);
    assert!(widget_kind["verbs"].as_array().unwrap().contains(&json!("list")));
    let deployment = kinds.iter().find(|k| k["group"] == "apps" && k["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["version"], "v1");

    let _ = crds.delete(&format!("widgets.{group}"), &DeleteParams::default()).await;
    drop_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_single_objects_events_and_errors() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("res-one");
    namespace(&client, &ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "p1" },
        "spec": { "containers": [{ "name": "main", "image": "registry.invalid/x:1" }],
                  "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }] }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let (_db, server, id) = server_with_cluster(&cp).await;

    let data = server
        .gql_ok(
            "query($id: ID!) { cluster(id: $id) { namespaces(first: 500) { edges { node { metadata { name } } } } } }",
            json!({ "id": id }),
        )
        .await;
    let all: Vec<&str> = data["cluster"]["namespaces"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(all.contains(&ns.as_str()) && all.contains(&"kube-system"));

    // The scheduler records a Scheduled event for the pod.
    let query =
        "query($id: ID!, $ns: String) { cluster(id: $id) { resource(kind: \"Pod\", namespace: $ns, name: \"p1\") {
        metadata { name } events(first: 50) { edges { node { type reason message } } } } } }";
    let mut reasons = Vec::new();
    for _ in 0..60 {
        let data = server.gql_ok(query, json!({ "id": id, "ns": ns })).await;
        reasons = data["cluster"]["resource"]["events"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["reason"].as_str().unwrap_or("").to_owned())
            .collect();
        if reasons.iter().any(|r| r == "Scheduled") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(reasons.iter().any(|r| r == "Scheduled"), "{reasons:?}");

    let missing = server.gql("query($id: ID!, $ns: String) { cluster(id: $id) { resource(kind: \"Pod\", namespace: $ns, name: \"nope\") { kind } } }", json!({ "id": id, "ns": ns })).await;
    assert_eq!(first_error(&missing).0, "NOT_FOUND");
    let unknown = list(&server, json!({ "id": id, "kind": "Gizmo" })).await;
    let (code, message) = first_error(&unknown);
    assert_eq!(code, "NOT_FOUND");
    assert!(message.contains("Gizmo"));
    let no_ns = server
        .gql(
            "query($id: ID!) { cluster(id: $id) { resource(kind: \"Pod\", name: \"p1\") { kind } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(first_error(&no_ns).0, "BAD_USER_INPUT");
    let bad_selector = list(&server, json!({ "id": id, "kind": "Pod", "labels": "a in (" })).await;
    assert_eq!(first_error(&bad_selector).0, "BAD_USER_INPUT", "{bad_selector}");

    // Across all namespaces when no namespace is given.
    let everywhere =
        list(&server, json!({ "id": id, "kind": "Pod", "fields": format!("metadata.namespace={ns}") })).await;
    assert_eq!(names(&everywhere), vec!["p1"]);
    drop_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_logs_come_back_from_a_kwok_pod() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("res-logs");
    namespace(&client, &ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "talker" },
        "spec": { "containers": [{ "name": "main", "image": "registry.invalid/x:1" }],
                  "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }] }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let (_db, server, id) = server_with_cluster(&cp).await;
    let query = "query($id: ID!, $ns: String!) { podLogs(clusterId: $id, namespace: $ns, pod: \"talker\", tailLines: 5) { text truncated } }";
    let mut body = Value::Null;
    for _ in 0..60 {
        body = server.gql(query, json!({ "id": id, "ns": ns })).await;
        if body.get("errors").is_none() && !body["data"]["podLogs"]["text"].as_str().unwrap_or("").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(body.get("errors").is_none(), "{body}");
    let text = body["data"]["podLogs"]["text"].as_str().unwrap();
    assert!(!text.is_empty(), "{body}");
    assert!(text.lines().count() <= 5, "tailLines is honoured: {text}");
    assert_eq!(body["data"]["podLogs"]["truncated"], false);

    let capped = server
        .gql("query($id: ID!, $ns: String!) { podLogs(clusterId: $id, namespace: $ns, pod: \"talker\", limitBytes: 4) { text truncated } }", json!({ "id": id, "ns": ns }))
        .await;
    assert_eq!(capped["data"]["podLogs"]["text"].as_str().unwrap().len(), 4, "{capped}");
    assert_eq!(capped["data"]["podLogs"]["truncated"], true);
    let missing = server
        .gql(
            "query($id: ID!, $ns: String!) { podLogs(clusterId: $id, namespace: $ns, pod: \"absent\") { text } }",
            json!({ "id": id, "ns": ns }),
        )
        .await;
    assert_eq!(first_error(&missing).0, "NOT_FOUND", "{missing}");
    drop_namespace(&client, &ns).await;
}

/// Pages are resolved in one pass unless a field needs the generic executor (`events`); both
/// ways give the same answer for every field, with aliases, fragments, merged selections, `__typename`
/// and an argument given by a variable.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_resolves_the_same_in_one_pass_as_through_the_executor() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("res-pass");
    namespace(&client, &ns).await;
    let (_db, server, id) = server_with_cluster(&cp).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({ "metadata": { "name": "owner", "labels": { "set": "pass" } }, "data": { "k": "v" } }),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let held: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "held", "labels": { "app": "web", "set": "pass", "tier": "front" }, "annotations": { "note": "x" },
                      "finalizers": ["kubegql.test/hold"],
                      "ownerReferences": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                            "uid": owner.metadata.uid.clone().unwrap(), "controller": true }] },
        "data": { "a": "1" }
    }))
    .unwrap();
    api.create(&PostParams::default(), &held).await.unwrap();
    // A finalizer keeps it after the delete, with a deletionTimestamp.
    api.delete("held", &DeleteParams::default()).await.unwrap();

    // With a field selected twice under one key (merged), and without: over HTTP the first is built
    // as values, the second written as text; over WebSocket both are values; with `events` both go
    // through the generic executor.
    let variants = [
        ("labels { key __typename }", "... on Resource { metadata { labels { value } } }"),
        ("labels { key __typename value }", ""),
    ];
    for (labels, merged) in variants {
        let query = |extra: &str| {
            format!(
                "query($id: ID!, $ns: String, $mf: Boolean!) {{ cluster(id: $id) {{
                  resources(kind: \"ConfigMap\", namespace: $ns, labelSelector: \"set=pass\", first: 50) {{
                    edges {{ cursor __typename node {{ ...Full }} }}
                    nodes {{ ...Full again: metadata {{ n: name labels {{ value }} }} }}
                    pageInfo {{ hasNextPage endCursor }} remainingItemCount resourceVersion }} }} }}
                 fragment Full on Resource {{
                    __typename apiVersion kind
                    metadata {{ __typename name namespace uid resourceVersion generation {labels} annotations {{ key value }}
                        creationTimestamp deletionTimestamp finalizers ownerReferences {{ apiVersion kind name uid controller __typename }} }}
                    {merged}
                    spec status json full: json(managedFields: $mf) yaml {extra} }}"
            )
        };
        let vars = json!({ "id": id, "ns": ns, "mf": true });
        // The collection's resourceVersion is the cluster's current revision: it moves with any
        // change anywhere, so it is checked for presence and left out of the comparisons.
        let without_revision = |mut body: Value| {
            let page = body["data"]["cluster"]["resources"].as_object_mut().expect("a page");
            assert!(
                page.remove("resourceVersion").is_some_and(|v| v.is_string()),
                "the list's resourceVersion is given"
            );
            body
        };
        let one_pass = without_revision(server.gql(&query(""), vars.clone()).await);
        let executor = without_revision(server.gql(&query("events { edges { node { reason } } }"), vars.clone()).await);
        assert!(one_pass.get("errors").is_none(), "{one_pass}");
        assert!(executor.get("errors").is_none(), "{executor}");
        let mut expected = executor["data"].clone();
        let page = &mut expected["cluster"]["resources"];
        for node in page["nodes"].as_array_mut().unwrap() {
            node.as_object_mut().unwrap().remove("events");
        }
        for edge in page["edges"].as_array_mut().unwrap() {
            edge["node"].as_object_mut().unwrap().remove("events");
        }
        assert!(
            one_pass["data"] == expected,
            "merged: {merged:?}: {}",
            first_difference(&one_pass["data"], &expected, "")
        );
        let over_ws = without_revision(ws_query(&server, &query(""), vars).await);
        assert!(
            over_ws["data"] == one_pass["data"],
            "WebSocket and HTTP differ (merged: {merged:?}): {}",
            first_difference(&over_ws["data"], &one_pass["data"], "")
        );

        // And the answer is right, not only the same.
        let nodes = one_pass["data"]["cluster"]["resources"]["nodes"].as_array().unwrap();
        let held = nodes.iter().find(|n| n["metadata"]["name"] == "held").expect("the held object is listed");
        assert_eq!(held["__typename"], "Resource");
        let label_set: HashSet<String> = held["metadata"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| format!("{}={}/{}", l["key"], l["value"], l["__typename"]))
            .collect();
        let expected_labels =
            ["\"app\"=\"web\"/\"Label\"", "\"set\"=\"pass\"/\"Label\"", "\"tier\"=\"front\"/\"Label\""];
        assert_eq!(label_set, HashSet::from(expected_labels.map(str::to_owned)));
        assert_eq!(
            held["again"],
            json!({ "n": "held", "labels": [{ "value": "web" }, { "value": "pass" }, { "value": "front" }] })
        );
        assert_eq!(nodes.len(), 2, "the selector keeps the namespace's own ConfigMaps out");
        assert_eq!(held["metadata"]["annotations"], json!([{ "key": "note", "value": "x" }]));
        assert_eq!(held["metadata"]["finalizers"], json!(["kubegql.test/hold"]));
        assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
        assert_eq!(held["metadata"]["ownerReferences"][0]["name"], "owner");
        assert_eq!(held["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(held["json"]["data"], json!({ "a": "1" }));
        assert!(held["json"]["metadata"].get("managedFields").is_none());
        assert!(held["full"]["metadata"]["managedFields"].is_array(), "managedFields: $mf reaches the one-pass path");
        assert!(held["yaml"].as_str().unwrap().contains("kubegql.test/hold"));
        let edges = one_pass["data"]["cluster"]["resources"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), nodes.len());
        assert!(edges.iter().all(|e| e["__typename"] == "ResourceEdge" && e["cursor"] == edges[0]["cursor"]));
    }

    let patch = kube::api::Patch::Merge(json!({ "metadata": { "finalizers": null } }));
    api.patch("held", &kube::api::PatchParams::default(), &patch).await.unwrap();
    drop_namespace(&client, &ns).await;
}

/// Runs one query over `/graphql/ws` (graphql-transport-ws) and returns its result.
async fn ws_query(server: &TestServer, query: &str, variables: Value) -> Value {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/graphql/ws", server.server.addr).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    let send = |message: Value| Message::Text(message.to_string().into());
    socket.send(send(json!({ "type": "connection_init", "payload": { "token": server.token } }))).await.unwrap();
    socket
        .send(send(json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } })))
        .await
        .unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer in time")
            .unwrap()
            .unwrap();
        let Message::Text(text) = message else { continue };
        let value: Value = serde_json::from_str(&text).unwrap();
        match value["type"].as_str() {
            Some("next") => return value["payload"].clone(),
            Some("connection_ack" | "ping" | "pong" | "ka") => continue,
            _ => panic!("unexpected message: {value}"),
        }
    }
}

/// Where two JSON values first differ, for a readable failure.
fn first_difference(a: &Value, b: &Value, path: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                if x.get(key) != y.get(key) {
                    return first_difference(
                        x.get(key).unwrap_or(&Value::Null),
                        y.get(key).unwrap_or(&Value::Null),
                        &format!("{path}.{key}"),
                    );
                }
            }
            format!("{path}: equal")
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p != q {
                    return first_difference(p, q, &format!("{path}[{i}]"));
                }
            }
            format!("{path}: equal")
        }
        _ => format!("{path}: {a} vs {b}"),
    }
}
