//! Server-side apply, patches, delete, scale and dry runs against the real control plane, through
//! GraphQL and through `POST /api/v1/clusters/{id}/apply`.

use crate::common;

use std::time::Duration;

use common::control_plane::{ControlPlane, project_dir, ready_namespace, unique_namespace};
use common::{Backend, TestDb, TestServer, first_error};
use serde_json::{Value, json};

async fn setup() -> (ControlPlane, TestDb, TestServer, String) {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = server.control_plane_cluster(&cp, "apply", json!({})).await;
    (cp, db, server, id)
}

const APPLY: &str = "mutation($id: ID!, $m: String!, $ns: String, $dry: Boolean, $force: Boolean, $fm: String, $onError: OnError) {
  apply(clusterId: $id, manifest: $m, namespace: $ns, dryRun: $dry, force: $force, fieldManager: $fm, onError: $onError) {
    dryRun succeeded failed
    documents { index kind namespace name action warnings diff error { code message } object { metadata { resourceVersion } spec } } } }";

async fn apply(server: &TestServer, id: &str, manifest: &str, extra: Value) -> Value {
    let mut vars = json!({ "id": id, "m": manifest });
    vars.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    server.gql(APPLY, vars).await
}

fn actions(body: &Value) -> Vec<String> {
    body["data"]["apply"]["documents"]
        .as_array()
        .unwrap_or_else(|| panic!("no documents: {body}"))
        .iter()
        .map(|d| {
            format!(
                "{}/{}:{}",
                d["kind"].as_str().unwrap(),
                d["name"].as_str().unwrap(),
                d["action"].as_str().unwrap_or("FAILED")
            )
        })
        .collect()
}

async fn get(server: &TestServer, id: &str, group: &str, kind: &str, ns: &str, name: &str) -> Value {
    server
        .gql(
            "query($id: ID!, $g: String, $k: String!, $ns: String, $n: String!) { cluster(id: $id) { resource(group: $g, kind: $k, namespace: $ns, name: $n) { metadata { resourceVersion labels { key value } } spec json } } }",
            json!({ "id": id, "g": group, "k": kind, "ns": ns, "n": name }),
        )
        .await
}

fn stack(ns: &str, group: &str, data_value: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: main
        image: registry.invalid/web:1
      - name: sidecar
        image: registry.invalid/side:1
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {ns}
data:
  mode: {data_value}
---
apiVersion: {group}/v1
kind: Gadget
metadata:
  name: g1
  namespace: {ns}
spec:
  size: 2
---
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{group}
spec:
  group: {group}
  names: {{kind: Gadget, plural: gadgets, singular: gadget, listKind: GadgetList}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer}}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_document_manifest_is_created_then_unchanged_then_configured() {
    let (_cp, _db, server, id) = setup().await;
    let ns = unique_namespace("apply");
    let group = format!("g{}.kubegql.test", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let first = apply(&server, &id, &stack(&ns, &group, "one"), json!({})).await;
    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(
        actions(&first),
        vec![
            "Deployment/web:CREATED".to_owned(),
            "ConfigMap/settings:CREATED".to_owned(),
            "Gadget/g1:CREATED".to_owned(),
            format!("Namespace/{ns}:CREATED"),
            format!("CustomResourceDefinition/gadgets.{group}:CREATED"),
        ]
    );
    assert_eq!(first["data"]["apply"]["failed"], 0);
    let again = apply(&server, &id, &stack(&ns, &group, "one"), json!({})).await;
    assert!(actions(&again).iter().all(|a| a.ends_with(":UNCHANGED")), "{:?}", actions(&again));
    let changed = apply(&server, &id, &stack(&ns, &group, "two"), json!({})).await;
    let acts = actions(&changed);
    assert_eq!(acts[1], "ConfigMap/settings:CONFIGURED");
    assert_eq!(acts.iter().filter(|a| a.ends_with(":UNCHANGED")).count(), 4, "{acts:?}");
    let cm = get(&server, &id, "", "ConfigMap", &ns, "settings").await;
    assert_eq!(cm["data"]["cluster"]["resource"]["json"]["data"]["mode"], "two");
    let gadget = get(&server, &id, &group, "Gadget", &ns, "g1").await;
    assert_eq!(gadget["data"]["cluster"]["resource"]["spec"], json!({ "size": 2 }));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_change_nothing() {
    let (_cp, _db, server, id) = setup().await;
    let ns = unique_namespace("dry");
    let base = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: keep, namespace: {ns}}}\ndata: {{k: v}}\n"
    );
    apply(&server, &id, &base, json!({})).await;
    let before = get(&server, &id, "", "ConfigMap", &ns, "keep").await;
    let rv = before["data"]["cluster"]["resource"]["metadata"]["resourceVersion"].clone();

    let new_one =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ghost, namespace: {ns}}}\ndata: {{k: v}}\n");
    let dry = apply(&server, &id, &new_one, json!({ "dry": true })).await;
    assert_eq!(dry["data"]["apply"]["dryRun"], true);
    assert_eq!(actions(&dry), vec!["ConfigMap/ghost:CREATED"]);
    assert_eq!(
        first_error(&get(&server, &id, "", "ConfigMap", &ns, "ghost").await).0,
        "NOT_FOUND",
        "a dry-run create stores nothing"
    );

    let changed = base.replace("{k: v}", "{k: changed}");
    let dry = apply(&server, &id, &changed, json!({ "dry": true })).await;
    assert_eq!(actions(&dry)[1], "ConfigMap/keep:CONFIGURED");
    let unchanged = apply(&server, &id, &base, json!({ "dry": true })).await;
    assert_eq!(actions(&unchanged)[1], "ConfigMap/keep:UNCHANGED");

    let patch = server
        .gql("mutation($id: ID!, $ns: String) { patch(clusterId: $id, kind: \"ConfigMap\", namespace: $ns, name: \"keep\", type: MERGE, patch: {data: {k: \"patched\"}}, dryRun: true) { object { json } } }", json!({ "id": id, "ns": ns }))
        .await;
    assert_eq!(
        patch["data"]["patch"]["object"]["json"]["data"]["k"], "patched",
        "the answer shows what would be stored: {patch}"
    );
    let delete = server
        .gql("mutation($id: ID!, $ns: String) { deleteResource(clusterId: $id, kind: \"ConfigMap\", namespace: $ns, name: \"keep\", dryRun: true) { object { metadata { name } } } }", json!({ "id": id, "ns": ns }))
        .await;
    assert!(delete.get("errors").is_none(), "{delete}");

    let after = get(&server, &id, "", "ConfigMap", &ns, "keep").await;
    assert_eq!(after["data"]["cluster"]["resource"]["metadata"]["resourceVersion"], rv, "nothing was stored");
    assert_eq!(after["data"]["cluster"]["resource"]["json"]["data"]["k"], "v");
}

#[tokio::test(flavor = "multi_thread")]
async fn strategic_merge_json_patch_and_merge_patch() {
    let (_cp, _db, server, id) = setup().await;
    let ns = unique_namespace("patch");
    let group = format!("g{}.kubegql.test", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let applied = apply(&server, &id, &stack(&ns, &group, "one"), json!({})).await;
    assert_eq!(applied["data"]["apply"]["failed"], 0, "{applied}");
    let patch = "mutation($id: ID!, $ns: String, $g: String, $k: String!, $n: String!, $t: PatchType!, $p: JSON!) {
        patch(clusterId: $id, group: $g, kind: $k, namespace: $ns, name: $n, type: $t, patch: $p) { object { json } warnings } }";

    // Strategic merge: the container list merges by name.
    let body = server
        .gql(patch, json!({ "id": id, "ns": ns, "g": "apps", "k": "Deployment", "n": "web", "t": "STRATEGIC",
            "p": { "spec": { "template": { "spec": { "containers": [{ "name": "main", "env": [{ "name": "MODE", "value": "fast" }] }] } } } } }))
        .await;
    let containers = body["data"]["patch"]["object"]["json"]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .clone();
    assert_eq!(containers.len(), 2, "merged, not replaced");
    assert_eq!(containers[0]["env"][0]["value"], "fast");
    assert_eq!(containers[1]["name"], "sidecar");
    // A merge patch replaces lists instead.
    let body = server
        .gql(patch, json!({ "id": id, "ns": ns, "g": "apps", "k": "Deployment", "n": "web", "t": "MERGE",
            "p": { "spec": { "template": { "spec": { "containers": [{ "name": "only", "image": "registry.invalid/only:1" }] } } } } }))
        .await;
    assert_eq!(
        body["data"]["patch"]["object"]["json"]["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(),
        1
    );

    // JSON patch on a ConfigMap: add, test, remove.
    let ops = json!([
        { "op": "add", "path": "/data/extra", "value": "1" },
        { "op": "test", "path": "/data/mode", "value": "one" },
        { "op": "remove", "path": "/data/mode" }
    ]);
    let body = server
        .gql(patch, json!({ "id": id, "ns": ns, "k": "ConfigMap", "n": "settings", "t": "JSON", "p": ops }))
        .await;
    assert_eq!(body["data"]["patch"]["object"]["json"]["data"], json!({ "extra": "1" }), "{body}");
    let failing_test = json!([{ "op": "test", "path": "/data/extra", "value": "nope" }]);
    let body = server
        .gql(patch, json!({ "id": id, "ns": ns, "k": "ConfigMap", "n": "settings", "t": "JSON", "p": failing_test }))
        .await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "a failing test op: {body}");
    let bad_op = json!([{ "op": "frobnicate", "path": "/data/x" }]);
    let body = server
        .gql(patch, json!({ "id": id, "ns": ns, "k": "ConfigMap", "n": "settings", "t": "JSON", "p": bad_op }))
        .await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT");
    let bad_path = json!([{ "op": "add", "path": "data/x", "value": "1" }]);
    let body = server
        .gql(patch, json!({ "id": id, "ns": ns, "k": "ConfigMap", "n": "settings", "t": "JSON", "p": bad_path }))
        .await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "{body}");
    let missing = json!([{ "op": "remove", "path": "/data/absent" }]);
    let body = server
        .gql(patch, json!({ "id": id, "ns": ns, "k": "ConfigMap", "n": "settings", "t": "JSON", "p": missing }))
        .await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "removing a missing path fails: {body}");

    // Strategic merge is refused for custom resources.
    let body = server.gql(patch, json!({ "id": id, "ns": ns, "g": group, "k": "Gadget", "n": "g1", "t": "STRATEGIC", "p": { "spec": { "size": 3 } } })).await;
    let (code, message) = first_error(&body);
    assert_eq!(code, "BAD_USER_INPUT", "{body}");
    assert!(message.contains("strategic"), "{message}");
    let body = server.gql(patch, json!({ "id": id, "ns": ns, "g": group, "k": "Gadget", "n": "g1", "t": "MERGE", "p": { "spec": { "size": 3 } } })).await;
    assert_eq!(body["data"]["patch"]["object"]["json"]["spec"]["size"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicts_name_the_other_manager_and_force_takes_over() {
    let (_cp, _db, server, id) = setup().await;
    let ns = unique_namespace("conflict");
    let manifest = |value: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: owned, namespace: {ns}}}\ndata: {{k: {value}}}\n"
        )
    };
    let first = apply(&server, &id, &manifest("theirs"), json!({ "fm": "other-team" })).await;
    assert_eq!(first["data"]["apply"]["failed"], 0, "{first}");
    let clash = apply(&server, &id, &manifest("ours"), json!({})).await;
    let doc = &clash["data"]["apply"]["documents"][1];
    assert_eq!(doc["error"]["code"], "CONFLICT", "{clash}");
    assert!(doc["error"]["message"].as_str().unwrap().contains("other-team"), "{doc}");
    let forced = apply(&server, &id, &manifest("ours"), json!({ "force": true })).await;
    assert_eq!(actions(&forced)[1], "ConfigMap/owned:CONFIGURED");
    let cm = get(&server, &id, "", "ConfigMap", &ns, "owned").await;
    assert_eq!(cm["data"]["cluster"]["resource"]["json"]["data"]["k"], "ours");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_manifests_are_refused_whole() {
    let (_cp, _db, server, id) = setup().await;
    let ns = unique_namespace("bad");
    let ns_doc = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
    let cases = [
        (format!("{ns_doc}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n"), "document 1: line"),
        (format!("{ns_doc}---\napiVersion: v1\nmetadata: {{name: x}}\n"), "no kind"),
        (format!("{ns_doc}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{labels: {{a: b}}}}\n"), "no metadata.name"),
        (format!("{ns_doc}---\napiVersion: v1\nkind: Gizmo\nmetadata: {{name: x}}\n"), "Gizmo"),
        (format!("{ns_doc}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n"), "namespaced"),
        ("".to_owned(), "no object"),
        ("# nothing\n".to_owned(), "no object"),
    ];
    for (manifest, needle) in cases {
        let body = apply(&server, &id, &manifest, json!({})).await;
        let (code, message) = first_error(&body);
        assert_eq!(code, "BAD_USER_INPUT", "{body}");
        assert!(message.contains(needle), "{message:?} should mention {needle:?}");
    }
    // Nothing was applied: the Namespace of every case is still absent.
    let body = get(&server, &id, "", "Namespace", "", &ns).await;
    assert_eq!(first_error(&body).0, "NOT_FOUND");

    // A document the API server rejects fails alone (CONTINUE, the default), or stops the rest.
    let mixed = format!(
        "{ns_doc}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bad, namespace: {ns}}}\ndata: {{k: v}}\nunknownField: 1\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: good, namespace: {ns}}}\n"
    );
    let body = apply(&server, &id, &mixed, json!({})).await;
    let docs = body["data"]["apply"]["documents"].as_array().unwrap();
    assert_eq!(docs[1]["error"]["code"], "BAD_USER_INPUT", "strict field validation: {body}");
    assert_eq!(docs[2]["action"], "CREATED");
    let stop = mixed.replace("name: good", "name: good2").replace("name: bad", "name: bad2");
    let body = apply(&server, &id, &stop, json!({ "onError": "STOP" })).await;
    assert_eq!(body["data"]["apply"]["documents"].as_array().unwrap().len(), 2, "stopped after the failure: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apply_endpoint_gives_the_same_result() {
    let (_cp, _db, server, id) = setup().await;
    let ns = unique_namespace("curl");
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: {ns}}}\ndata: {{k: v}}\n"
    );
    let post = |query: &'static str, body: String| {
        server
            .client
            .post(server.url(&format!("/api/v1/clusters/{id}/apply{query}")))
            .bearer_auth(&server.token)
            .header("content-type", "application/yaml")
            .body(body)
            .send()
    };
    let response = post("", manifest.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let acts: Vec<&str> = body["documents"].as_array().unwrap().iter().map(|d| d["action"].as_str().unwrap()).collect();
    assert_eq!(acts, vec!["CREATED", "CREATED"]);
    assert_eq!(body["documents"][1]["namespace"], ns.as_str());
    let graphql = apply(&server, &id, &manifest, json!({})).await;
    assert_eq!(actions(&graphql), vec![format!("Namespace/{ns}:UNCHANGED"), "ConfigMap/c:UNCHANGED".to_owned()]);
    let dry: Value = post("?dryRun=true", manifest.replace("{k: v}", "{k: w}")).await.unwrap().json().await.unwrap();
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["documents"][1]["action"], "CONFIGURED");

    let bad = post("", "kind: [".to_owned()).await.unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    let unknown_param = post("?dryrun=true", manifest.clone()).await.unwrap();
    assert_eq!(unknown_param.status(), 400, "a misspelt parameter is refused, not ignored");
    let unauthenticated = server
        .client
        .post(server.url(&format!("/api/v1/clusters/{id}/apply")))
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    // One byte over maxManifestBytes is refused from its declared length (sending it all could race
    // the server closing the connection).
    let max = kubegql::settings::ApiLimits::default().max_manifest_bytes;
    let head = format!(
        "POST /api/v1/clusters/{id}/apply HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        server.server.addr,
        server.token,
        max + 1
    );
    let answer = common::raw_exchange(server.server.addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "over maxManifestBytes: {answer}");
    let (_, viewer) = server.principal("viv", "VIEWER").await;
    let denied = server
        .client
        .post(server.url(&format!("/api/v1/clusters/{id}/apply")))
        .bearer_auth(&viewer)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);

    // Audited like the mutation, with the manifest summarised.
    let events = server
        .gql_ok("{ auditEvents(first: 20) { edges { node { field verb outcome arguments } } } }", json!({}))
        .await;
    let applies: Vec<&Value> = events["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .filter(|n| n["field"] == "apply")
        .collect();
    assert!(applies.iter().any(|n| n["outcome"] == "DENIED"));
    assert!(applies.iter().all(|n| n["verb"] == "PATCH"));
    assert!(
        applies.iter().any(|n| n["arguments"]["manifest"]["objects"]
            == json!([format!("Namespace/{ns}"), format!("ConfigMap/{ns}/c")]))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_and_delete() {
    let (_cp, _db, server, id) = setup().await;
    let ns = unique_namespace("scale");
    let group = format!("g{}.kubegql.test", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    apply(&server, &id, &stack(&ns, &group, "one"), json!({})).await;
    let scale = "mutation($id: ID!, $ns: String, $r: Int!, $dry: Boolean) { scale(clusterId: $id, kind: \"Deployment\", namespace: $ns, name: \"web\", replicas: $r, dryRun: $dry) { replicas } }";
    let body = server.gql(scale, json!({ "id": id, "ns": ns, "r": 3, "dry": true })).await;
    assert_eq!(body["data"]["scale"]["replicas"], 3, "{body}");
    let deployment = get(&server, &id, "apps", "Deployment", &ns, "web").await;
    assert_eq!(deployment["data"]["cluster"]["resource"]["spec"]["replicas"], 1, "a dry-run scale stores nothing");
    server.gql_ok(scale, json!({ "id": id, "ns": ns, "r": 3 })).await;
    let deployment = get(&server, &id, "apps", "Deployment", &ns, "web").await;
    assert_eq!(deployment["data"]["cluster"]["resource"]["spec"]["replicas"], 3);
    let body = server.gql(scale, json!({ "id": id, "ns": ns, "r": -1 })).await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT");
    let body = server
        .gql("mutation($id: ID!, $ns: String) { scale(clusterId: $id, group: \"\", kind: \"ConfigMap\", namespace: $ns, name: \"settings\", replicas: 2) { replicas } }", json!({ "id": id, "ns": ns }))
        .await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "a ConfigMap cannot be scaled");

    let delete = "mutation($id: ID!, $ns: String) { deleteResource(clusterId: $id, group: \"apps\", kind: \"Deployment\", namespace: $ns, name: \"web\", propagationPolicy: BACKGROUND) { object { metadata { name } } } }";
    let body = server.gql(delete, json!({ "id": id, "ns": ns })).await;
    assert!(body.get("errors").is_none(), "{body}");
    let mut gone = false;
    for _ in 0..40 {
        if first_error(&get(&server, &id, "apps", "Deployment", &ns, "web").await).0 == "NOT_FOUND" {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(gone, "the Deployment was deleted");
    let again = server.gql(delete, json!({ "id": id, "ns": ns })).await;
    assert_eq!(first_error(&again).0, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ingress_nginx_install_manifest_applies_and_reapplies_unchanged() {
    let (_cp, _db, server, id) = setup().await;
    let manifest = std::fs::read_to_string(project_dir().join("tests/fixtures/ingress-nginx-v1.5.2.yaml")).unwrap();
    let first = apply(&server, &id, &manifest, json!({})).await;
    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(first["data"]["apply"]["failed"], 0, "{first}");
    assert_eq!(first["data"]["apply"]["documents"].as_array().unwrap().len(), 19);
    let again = apply(&server, &id, &manifest, json!({})).await;
    assert!(actions(&again).iter().all(|a| a.ends_with(":UNCHANGED")), "{:?}", actions(&again));
    let dry = apply(&server, &id, &manifest, json!({ "dry": true })).await;
    assert!(actions(&dry).iter().all(|a| a.ends_with(":UNCHANGED")), "{:?}", actions(&dry));
}

/// kubegql's apply stores what `kubectl apply --server-side` stores for the same manifest.
#[tokio::test(flavor = "multi_thread")]
async fn same_objects_as_kubectl_server_side_apply() {
    let (cp, _db, server, id) = setup().await;
    let ours = unique_namespace("same-kg");
    let theirs = unique_namespace("same-kc");
    let manifest = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\n  namespace: {ns}\n  labels: {{tier: web}}\ndata: {{a: '1', b: two}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - {{name: main, image: registry.invalid/web:1, ports: [{{containerPort: 80}}]}}\n"
        )
    };
    let body = apply(&server, &id, &manifest(&ours), json!({})).await;
    assert_eq!(body["data"]["apply"]["failed"], 0, "{body}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest(&theirs)).unwrap();
    let out = std::process::Command::new(&cp.kubectl)
        .args([
            "--kubeconfig",
            cp.kubeconfig.to_str().unwrap(),
            "--context",
            "admin",
            "apply",
            "--server-side",
            "-f",
            file.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (group, kind, name) in [("", "ConfigMap", "conf"), ("apps", "Deployment", "web")] {
        let normalise = |value: &Value, ns: &str| {
            let mut v = value["data"]["cluster"]["resource"]["json"].clone();
            let meta = v["metadata"].as_object_mut().unwrap();
            for key in ["managedFields", "resourceVersion", "uid", "creationTimestamp", "namespace", "generation"] {
                meta.remove(key);
            }
            // The Deployment controller adds its revision annotation when it gets to it.
            if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove("deployment.kubernetes.io/revision");
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
            v.as_object_mut().unwrap().remove("status");
            let _ = ns;
            v
        };
        let a = get(&server, &id, group, kind, &ours, name).await;
        let b = get(&server, &id, group, kind, &theirs, name).await;
        assert_eq!(normalise(&a, &ours), normalise(&b, &theirs), "{kind} differs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_servers_warnings_reach_the_caller() {
    let (_cp, _db, server, id) = setup().await;
    let ns = unique_namespace("warn");
    // The API server warns about Deployment names that are not DNS labels.
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web.v2, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: w}}}}\n  template:\n    metadata: {{labels: {{app: w}}}}\n    spec: {{containers: [{{name: main, image: registry.invalid/w:1}}]}}\n"
    );
    let body = apply(&server, &id, &manifest, json!({})).await;
    let warnings =
        body["data"]["apply"]["documents"][1]["warnings"].as_array().unwrap_or_else(|| panic!("{body}")).clone();
    assert!(!warnings.is_empty(), "{body}");
    assert!(warnings[0].as_str().unwrap().contains("DNS"), "{warnings:?}");
}

/// A CRD whose OpenAPI schema nests `depth` levels of objects, `width` properties each, with
/// descriptions as long as real ones: about 800 KB of YAML at depth 6, width 3.
fn big_crd(group: &str, kind: &str, depth: usize, width: usize) -> Value {
    fn schema(depth: usize, width: usize, path: &str) -> Value {
        let description = format!(
            "{path}: what this field sets, when it applies, and what happens when it is left out; as long as the \
             descriptions that controller-gen copies from Go comments into published CRDs. More: the defaults \
             the controller picks, how the field interacts with its siblings, which versions of the operator \
             honour it, and a pointer to the documentation page that explains it with examples and caveats."
        );
        if depth == 0 {
            return json!({ "type": "string", "description": description, "maxLength": 253 });
        }
        let properties: serde_json::Map<String, Value> = (0..width)
            .map(|i| {
                let name = format!("field{i}Level{depth}");
                let value = schema(depth - 1, width, &format!("{path}.{name}"));
                (name, value)
            })
            .collect();
        json!({ "type": "object", "description": description, "properties": properties })
    }
    let plural = format!("{}s", kind.to_lowercase());
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.{group}") },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": { "kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List") },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "properties": { "spec": schema(depth, width, "spec") } } }
            }]
        }
    })
}

/// Release manifests as projects publish them (six CRDs of about 800 KB, 5 MB in all, empty
/// documents between separators) go through both apply paths: the first creates everything, the
/// second finds everything unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn release_sized_manifests_apply_through_both_paths() {
    let (cp, _db, server, id) = setup().await;
    let client = cp.client("admin").await;
    let ns = unique_namespace("big");
    let group = format!("{ns}.kubegql.test");
    let mut manifest = String::from("# a release bundle\n---\n---\n");
    let mut crd_names = Vec::new();
    for i in 0..6 {
        let crd = big_crd(&group, &format!("Bundle{i}"), 6, 3);
        crd_names.push(crd["metadata"]["name"].as_str().unwrap().to_owned());
        let yaml = serde_saphyr::to_string(&crd).unwrap();
        assert!((650_000..1_000_000).contains(&yaml.len()), "a CRD of about 800 KB: {}", yaml.len());
        manifest.push_str(&yaml);
        manifest.push_str("---\n\n---\n");
    }
    manifest.push_str(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n"));
    for i in 0..40 {
        let data: serde_json::Map<String, Value> =
            (0..40).map(|k| (format!("key{k}"), Value::String("v".repeat(400)))).collect();
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("settings-{i}"), "namespace": ns }, "data": data });
        manifest.push_str(&serde_saphyr::to_string(&cm).unwrap());
        manifest.push_str("---\n");
    }
    assert!((4_500_000..6_000_000).contains(&manifest.len()), "5 MB in all: {}", manifest.len());

    let response = server
        .client
        .post(server.url(&format!("/api/v1/clusters/{id}/apply")))
        .bearer_auth(&server.token)
        .header("content-type", "application/yaml")
        .body(manifest.clone())
        .timeout(Duration::from_secs(180))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{}", &body.to_string()[..2000.min(body.to_string().len())]);
    let created: Vec<&str> =
        body["documents"].as_array().unwrap().iter().map(|d| d["action"].as_str().unwrap_or("-")).collect();
    assert_eq!(created.len(), 47);
    assert!(created.iter().all(|a| *a == "CREATED"), "{created:?} {}", body["documents"]);

    let again = apply(&server, &id, &manifest, json!({})).await;
    let acts = actions(&again);
    assert_eq!(acts.len(), 47);
    assert!(acts.iter().all(|a| a.ends_with(":UNCHANGED")), "{acts:?}");

    // The audit record keeps the manifest's digest and the objects it names, not its text.
    let events = server.gql_ok("{ auditEvents(first: 2) { edges { node { field arguments } } } }", json!({})).await;
    let recorded = &events["auditEvents"]["edges"][0]["node"]["arguments"]["manifest"];
    assert_eq!(recorded["bytes"], manifest.len(), "{recorded}");
    assert_eq!(recorded["objects"].as_array().unwrap().len(), 47);
    assert!(events.to_string().len() < 20_000, "the record holds a summary, not the manifest");

    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for name in crd_names {
        let _ = crds.delete(&name, &Default::default()).await;
    }
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let _ = namespaces.delete(&ns, &kube::api::DeleteParams::background()).await;
}

/// The apply mutation takes a manifest of exactly maxManifestBytes, and refuses one byte more
/// with BAD_USER_INPUT naming the limit (the GraphQL body has room for both).
#[tokio::test(flavor = "multi_thread")]
async fn the_manifest_limit_takes_the_largest_manifest_and_no_more() {
    let (_cp, _db, server, id) = setup().await;
    let max = kubegql::settings::ApiLimits::default().max_manifest_bytes;
    let ns = unique_namespace("limit");
    let object = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
    let padded = |len: usize| format!("# {}\n{object}", "x".repeat(len - object.len() - 3));
    let at_limit = padded(max);
    assert_eq!(at_limit.len(), max);
    let body = apply(&server, &id, &at_limit, json!({ "dry": true })).await;
    assert_eq!(actions(&body), vec![format!("Namespace/{ns}:CREATED")], "dry run at the limit");
    let body = apply(&server, &id, &padded(max + 1), json!({ "dry": true })).await;
    let (code, message) = first_error(&body);
    assert_eq!(code, "BAD_USER_INPUT", "{message}");
    assert!(message.contains(&format!("at most {max} are accepted")), "{message}");
}

/// The changed lines of a unified diff, each as its sign and its text without indentation (the
/// two YAML writers indent lists differently).
fn changed_lines(diff: &str) -> Vec<String> {
    let mut lines: Vec<String> = diff
        .lines()
        .filter(|l| (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---"))
        .map(|l| format!("{}{}", &l[..1], l[1..].trim()))
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_shows_what_kubectl_diff_server_side_shows() {
    let (cp, _db, server, id) = setup().await;
    let ns = unique_namespace("diff");
    ready_namespace(&cp.client("admin").await, &ns).await;
    let manifest = |image: &str, replicas: u32, labels: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\n  labels: {labels}\n\
             spec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n\
             \x20   spec:\n      containers:\n      - name: web\n        image: {image}\n"
        )
    };
    let first = manifest("registry.invalid/web:1", 1, "{app: web}");
    let body = apply(&server, &id, &first, json!({})).await;
    assert_eq!(actions(&body), ["Deployment/web:CREATED"], "{body}");
    // The Deployment controller writes to the object after it is created (its revision
    // annotation): wait until it has, so that the live object the diff reads stays as it is.
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(cp.client("admin").await, &ns);
    common::eventually("the controller has seen the Deployment", std::time::Duration::from_secs(30), || async {
        deployments.get("web").await.ok().is_some_and(|d| {
            let annotated = d.metadata.annotations.is_some_and(|a| a.contains_key("deployment.kubernetes.io/revision"));
            annotated && d.status.and_then(|s| s.observed_generation) == d.metadata.generation
        })
    })
    .await;

    // The same manifest again: UNCHANGED, and an empty diff.
    let body = apply(&server, &id, &first, json!({ "dry": true })).await;
    assert_eq!(actions(&body), ["Deployment/web:UNCHANGED"], "{body}");
    assert_eq!(body["data"]["apply"]["documents"][0]["diff"], "", "{body}");

    // A changed manifest: kubegql's diff and kubectl's show the same changes (kubectl also shows
    // the generation, which kubegql leaves out).
    let second = manifest("registry.invalid/web:2", 3, "{app: web, tier: front}");
    let body = apply(&server, &id, &second, json!({ "dry": true })).await;
    assert_eq!(actions(&body), ["Deployment/web:CONFIGURED"], "{body}");
    let ours = body["data"]["apply"]["documents"][0]["diff"].as_str().unwrap().to_owned();
    assert!(
        ours.starts_with(&format!("--- live/apps.v1.Deployment.{ns}.web\n+++ merged/apps.v1.Deployment.{ns}.web\n")),
        "{ours}"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &second).unwrap();
    let out = std::process::Command::new(&cp.kubectl)
        .args([
            "--kubeconfig",
            cp.kubeconfig.to_str().unwrap(),
            "--context",
            "admin",
            "diff",
            "--server-side",
            "--force-conflicts",
            "-f",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "kubectl diff found differences: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<String> = changed_lines(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .filter(|l| !l.contains("generation:"))
        .collect();
    assert_eq!(changed_lines(&ours), theirs, "ours:\n{ours}\nkubectl's:\n{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        changed_lines(&ours),
        [
            "+- image: registry.invalid/web:2",
            "+replicas: 3",
            "+tier: front",
            "-- image: registry.invalid/web:1",
            "-replicas: 1"
        ]
    );
    // Nothing was changed by the dry run.
    let body = apply(&server, &id, &first, json!({ "dry": true })).await;
    assert_eq!(actions(&body), ["Deployment/web:UNCHANGED"], "{body}");
    // Outside a dry run there is no diff.
    let body = apply(&server, &id, &second, json!({})).await;
    assert_eq!(body["data"]["apply"]["documents"][0]["diff"], Value::Null, "{body}");
}
