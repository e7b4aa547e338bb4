//! Tables as `kubectl get` prints them (`Cluster.table`, `resourceEvents(asTable: true)`),
//! compared with `kubectl get -o wide` on the same objects of the control plane: Pods,
//! Deployments, Nodes, Events and a custom resource with printer columns.

use crate::common;

use std::time::Duration;

use common::control_plane::{ControlPlane, ready_namespace, running_pod, unique_namespace};
use common::{Backend, TestDb, TestServer, eventually, first_error};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

const TABLE: &str = "query($id: ID!, $kind: String!, $group: String, $ns: String, $first: Int, $after: String, $labels: String) {
  cluster(id: $id) { table(kind: $kind, group: $group, namespace: $ns, first: $first, after: $after, labelSelector: $labels) {
    columns { name type format description priority }
    rows { cells text completed object { metadata { name namespace uid } } }
    pageInfo { hasNextPage endCursor }
    resourceVersion } } }";

struct Table {
    headers: Vec<String>,
    priorities: Vec<i64>,
    rows: Vec<Vec<String>>,
}

fn table_of(body: &Value) -> Table {
    let table = &body["data"]["cluster"]["table"];
    assert!(table.is_object(), "no table: {body}");
    let columns = table["columns"].as_array().unwrap();
    Table {
        headers: columns.iter().map(|c| c["name"].as_str().unwrap().to_uppercase()).collect(),
        priorities: columns.iter().map(|c| c["priority"].as_i64().unwrap()).collect(),
        rows: table["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["text"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect())
            .collect(),
    }
}

/// kubectl's printed table cut into cells at the headers' positions (the columns are aligned
/// with spaces; a cell may hold spaces, as an event's message does).
fn kubectl_table(printed: &str, headers: &[String]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = printed.lines();
    let header = lines.next().unwrap_or_default();
    let mut starts = Vec::new();
    let mut from = 0;
    for name in headers {
        let at = header[from..].find(name.as_str()).map(|i| i + from);
        let Some(at) = at else { return (vec![header.to_owned()], Vec::new()) };
        starts.push(at);
        from = at + name.len();
    }
    let cut = |line: &str| -> Vec<String> {
        (0..starts.len())
            .map(|i| {
                let end = starts.get(i + 1).copied().unwrap_or(line.len()).min(line.len());
                line.get(starts[i].min(end)..end).unwrap_or_default().trim().to_owned()
            })
            .collect()
    };
    (cut(header), lines.map(cut).collect())
}

/// Our table and kubectl's `get -o wide` of the same objects are the same, cell for cell. The
/// ages in both are computed by the API server when asked, so the two reads are repeated until
/// they fall in the same second.
async fn same_as_kubectl(server: &TestServer, cp: &ControlPlane, vars: Value, kubectl_args: &[&str]) -> Table {
    let mut last = None;
    for _ in 0..20 {
        let body = server.gql(TABLE, vars.clone()).await;
        let ours = table_of(&body);
        let printed = cp.run_kubectl(&[kubectl_args, &["-o", "wide"]].concat());
        let (headers, rows) = kubectl_table(&printed, &ours.headers);
        if headers == ours.headers && rows == ours.rows {
            return ours;
        }
        last = Some((ours.headers, ours.rows, printed));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (headers, rows, printed) = last.unwrap();
    panic!("kubectl {kubectl_args:?} -o wide printed:\n{printed}\nours: {headers:?}\n{rows:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_are_what_kubectl_get_wide_prints_for_pods_deployments_nodes_and_events() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("tables");
    ready_namespace(&client, &ns).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = server.control_plane_cluster(&cp, "local", json!({})).await;

    for name in ["alpha", "beta"] {
        running_pod(
            &client,
            &ns,
            json!({
                "metadata": { "name": name, "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "registry.invalid/app:1" }] }
            }),
        )
        .await;
    }
    cp.run_kubectl(&["-n", &ns, "create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2"]);
    eventually("the deployment's pods exist", Duration::from_secs(60), || async {
        cp.run_kubectl(&["-n", &ns, "get", "pods", "-l", "app=web", "-o", "name"]).lines().count() == 2
    })
    .await;

    let pods =
        same_as_kubectl(&server, &cp, json!({ "id": id, "kind": "Pod", "ns": ns }), &["-n", &ns, "get", "pods"]).await;
    assert_eq!(&pods.headers[..3], ["NAME", "READY", "STATUS"]);
    assert!(
        pods.headers.contains(&"NODE".to_owned()) && pods.priorities.contains(&1),
        "wide columns: {:?}",
        pods.headers
    );
    assert_eq!(pods.rows.len(), 4);
    assert_eq!(pods.rows[0][..3], ["alpha", "1/1", "Running"]);
    // Without -o wide kubectl prints the columns of priority 0.
    let (plain_headers, _) = kubectl_table(&cp.run_kubectl(&["-n", &ns, "get", "pods"]), &pods.headers);
    let first_priority: Vec<String> =
        pods.headers.iter().zip(&pods.priorities).filter(|(_, p)| **p == 0).map(|(h, _)| h.clone()).collect();
    assert_ne!(plain_headers, pods.headers);
    let printed = cp.run_kubectl(&["-n", &ns, "get", "pods"]);
    let (plain, _) = kubectl_table(&printed, &first_priority);
    assert_eq!(plain, first_priority, "{printed}");

    let deployments = same_as_kubectl(
        &server,
        &cp,
        json!({ "id": id, "kind": "Deployment", "group": "apps", "ns": ns }),
        &["-n", &ns, "get", "deployments"],
    )
    .await;
    assert_eq!(
        deployments.headers,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    );
    assert_eq!(deployments.rows[0][0], "web");
    assert_eq!(deployments.rows[0][6], "registry.invalid/web:1");

    let nodes = same_as_kubectl(&server, &cp, json!({ "id": id, "kind": "Node" }), &["get", "nodes"]).await;
    assert!(nodes.headers.contains(&"INTERNAL-IP".to_owned()), "{:?}", nodes.headers);
    assert!(!nodes.rows.is_empty());

    // Events: those the scheduler and the controllers wrote about this namespace's objects.
    eventually("events were recorded", Duration::from_secs(60), || async {
        cp.run_kubectl(&["-n", &ns, "get", "events", "-o", "name"]).lines().count() >= 4
    })
    .await;
    let events =
        same_as_kubectl(&server, &cp, json!({ "id": id, "kind": "Event", "ns": ns }), &["-n", &ns, "get", "events"])
            .await;
    assert!(events.headers.contains(&"MESSAGE".to_owned()), "{:?}", events.headers);
    assert!(events.rows.iter().any(|row| row.iter().any(|cell| cell.contains(' '))), "messages with spaces compared");

    // The rows carry their objects: metadata unless more is read, then the whole object.
    let body = server.gql(TABLE, json!({ "id": id, "kind": "Pod", "ns": ns, "first": 1 })).await;
    let row = &body["data"]["cluster"]["table"]["rows"][0];
    assert_eq!(row["object"]["metadata"]["namespace"], ns.as_str(), "{body}");
    assert!(row["object"]["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert_eq!(row["completed"], false);
    let body = server
        .gql(
            "query($id: ID!, $ns: String!) { cluster(id: $id) { table(kind: \"Pod\", namespace: $ns, first: 1) {
               rows { object { spec } } } } }",
            json!({ "id": id, "ns": ns }),
        )
        .await;
    assert_eq!(
        body["data"]["cluster"]["table"]["rows"][0]["object"]["spec"]["containers"][0]["image"],
        "registry.invalid/app:1",
        "{body}"
    );

    let _ = cp.run_kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_resources_table_has_its_printer_columns_as_kubectl_prints_them() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let group = format!("{}.tables.test", unique_namespace("g"));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": format!("gadgets.{group}") },
        "spec": {
            "group": group,
            "names": { "kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "properties": {
                        "size": { "type": "integer" }, "color": { "type": "string" }, "ratio": { "type": "number" },
                        "enabled": { "type": "boolean" }, "made": { "type": "string", "format": "date-time" },
                        "note": { "type": "string" } } } } } },
                "additionalPrinterColumns": [
                    { "name": "Size", "type": "integer", "jsonPath": ".spec.size" },
                    { "name": "Color", "type": "string", "jsonPath": ".spec.color", "description": "What it looks like" },
                    { "name": "Ratio", "type": "number", "jsonPath": ".spec.ratio" },
                    { "name": "Enabled", "type": "boolean", "jsonPath": ".spec.enabled" },
                    { "name": "Made", "type": "date", "jsonPath": ".spec.made" },
                    { "name": "Note", "type": "string", "jsonPath": ".spec.note", "priority": 1 },
                    { "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp" }
                ]
            }]
        }
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ns = unique_namespace("tables-crd");
    ready_namespace(&client, &ns).await;
    let resource = ApiResource {
        group: group.clone(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let gadgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let specs = [
        (
            "one",
            json!({ "size": 3, "color": "red", "ratio": 0.5, "enabled": true, "made": "2024-01-02T03:04:05Z", "note": "first of all" }),
        ),
        ("two", json!({ "size": 12, "ratio": 2, "enabled": false })),
    ];
    let mut created = false;
    for _ in 0..80 {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{group}/v1"), "kind": "Gadget", "metadata": { "name": specs[0].0 }, "spec": specs[0].1
        }))
        .unwrap();
        if gadgets.create(&PostParams::default(), &object).await.is_ok() {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(created, "the API server serves the new kind");
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Gadget", "metadata": { "name": specs[1].0 }, "spec": specs[1].1
    }))
    .unwrap();
    gadgets.create(&PostParams::default(), &object).await.unwrap();

    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = server.control_plane_cluster(&cp, "local", json!({})).await;
    let vars = json!({ "id": id, "kind": "Gadget", "group": group, "ns": ns });
    let plural = format!("gadgets.{group}");
    let table = same_as_kubectl(&server, &cp, vars.clone(), &["-n", &ns, "get", &plural]).await;
    assert_eq!(table.headers, ["NAME", "SIZE", "COLOR", "RATIO", "ENABLED", "MADE", "NOTE", "AGE"]);
    assert_eq!(table.priorities, [0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(table.rows[0][..5], ["one", "3", "red", "0.5", "true"]);
    assert!(
        table.rows[0][5].ends_with('d') || table.rows[0][5].ends_with('y'),
        "a date is printed as an age: {:?}",
        table.rows[0]
    );
    assert_eq!(table.rows[0][6], "first of all");
    assert_eq!(table.rows[1][..5], ["two", "12", "", "2", "false"], "an absent value prints as nothing");

    // The cells keep their types; the columns their definitions.
    let body = server.gql(TABLE, vars).await;
    let t = &body["data"]["cluster"]["table"];
    assert_eq!(t["rows"][0]["cells"][1], 3, "{body}");
    assert_eq!(t["rows"][0]["cells"][3], 0.5);
    assert_eq!(t["rows"][0]["cells"][4], true);
    assert_eq!(t["rows"][1]["cells"][2], Value::Null);
    assert_eq!(t["columns"][1]["type"], "integer");
    assert_eq!(t["columns"][2]["description"], "What it looks like");
    assert_eq!(t["columns"][0]["format"], "name");

    let _ = cp.run_kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    let _ = crds.delete(&format!("gadgets.{group}"), &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_page_by_the_same_cursors_as_resources_and_follow_changes_row_by_row() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("tables-live");
    ready_namespace(&client, &ns).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = server.control_plane_cluster(&cp, "local", json!({})).await;
    for name in ["a", "b", "c"] {
        cp.run_kubectl(&["-n", &ns, "create", "configmap", name, "--from-literal=k=v"]);
    }
    // The namespace's own kube-root-ca.crt is left out by a label.
    cp.run_kubectl(&["-n", &ns, "label", "configmap", "a", "b", "c", "set=t"]);

    // Pages of two: the second page continues from the first, by a table's cursor or by the
    // cursor of the same list's `resources` page.
    let vars = |after: Option<&str>| json!({ "id": id, "kind": "ConfigMap", "ns": ns, "first": 2, "after": after, "labels": "set=t" });
    let first = server.gql(TABLE, vars(None)).await;
    let page = &first["data"]["cluster"]["table"];
    assert_eq!(table_of(&first).rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["a", "b"], "{first}");
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let second = server.gql(TABLE, vars(page["pageInfo"]["endCursor"].as_str())).await;
    assert_eq!(table_of(&second).rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["c"], "{second}");
    assert_eq!(second["data"]["cluster"]["table"]["pageInfo"]["hasNextPage"], false);
    let listed = server
        .gql_ok(
            "query($id: ID!, $ns: String!) { cluster(id: $id) { resources(kind: \"ConfigMap\", namespace: $ns, first: 2, labelSelector: \"set=t\") {
               pageInfo { endCursor } } } }",
            json!({ "id": id, "ns": ns }),
        )
        .await;
    let cursor = listed["cluster"]["resources"]["pageInfo"]["endCursor"].as_str().unwrap();
    let from_list = server.gql(TABLE, vars(Some(cursor))).await;
    assert_eq!(table_of(&from_list).rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["c"], "{from_list}");
    // A cursor of another list (another namespace) is refused.
    let other =
        json!({ "id": id, "kind": "ConfigMap", "ns": "default", "first": 2, "after": cursor, "labels": "set=t" });
    let (code, _) = first_error(&server.gql(TABLE, other).await);
    assert_eq!(code, "BAD_USER_INPUT");
    let unknown = server.gql(TABLE, json!({ "id": id, "kind": "NoSuchKind", "ns": ns })).await;
    assert_eq!(first_error(&unknown).0, "NOT_FOUND", "{unknown}");

    // Live: each event carries the object's new row; the DATA column follows the object.
    let mut events = server
        .subscribe_sse(
            &server.token,
            "subscription($id: ID!, $ns: String!) { resourceEvents(clusterId: $id, kind: \"ConfigMap\", namespace: $ns,
               labelSelector: \"set=t\", asTable: true, sendInitialState: true) { type columns { name } row { text object { metadata { name uid } } } } }",
            json!({ "id": id, "ns": ns }),
        )
        .await
        .expect("subscribed");
    let mut rows = std::collections::BTreeMap::new();
    let mut next = async || {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv()).await.expect("an event").unwrap();
        event["data"]["resourceEvents"].clone()
    };
    for _ in 0..3 {
        let event = next().await;
        assert_eq!(event["type"], "ADDED", "{event}");
        let names: Vec<&str> =
            event["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "Data", "Age"]);
        rows.insert(event["row"]["text"][0].as_str().unwrap().to_owned(), event["row"]["text"][1].clone());
    }
    assert_eq!(rows.values().collect::<Vec<_>>(), ["1", "1", "1"]);
    cp.run_kubectl(&["-n", &ns, "patch", "configmap", "b", "--type=merge", "-p", r#"{"data":{"k2":"v2","k3":"v3"}}"#]);
    let event = next().await;
    assert_eq!(event["type"], "MODIFIED", "{event}");
    assert_eq!(event["row"]["text"][0], "b");
    assert_eq!(event["row"]["text"][1], "3", "the row changed in place: {event}");
    cp.run_kubectl(&["-n", &ns, "delete", "configmap", "a"]);
    let event = next().await;
    assert_eq!(event["type"], "DELETED", "{event}");
    assert_eq!(event["row"]["object"]["metadata"]["name"], "a");

    let _ = cp.run_kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
