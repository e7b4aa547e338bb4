//! Impersonation against the real control plane: the cluster's RBAC decides for the identity
//! kubegql acts as.

use crate::common;

use common::control_plane::ControlPlane;
use common::{Backend, TestDb, TestServer, first_error};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

const NAMESPACES: &str =
    "query($id: ID!) { cluster(id: $id) { namespaces(first: 5) { edges { node { metadata { name } } } } } }";

async fn cluster(server: &TestServer, cp: &ControlPlane, name: &str, impersonate_caller: bool) -> String {
    server.control_plane_cluster(cp, name, json!({ "impersonateCaller": impersonate_caller })).await
}

fn ok(body: &Value) -> bool {
    body.get("errors").is_none()
        && body["data"]["cluster"]["namespaces"]["edges"].as_array().is_some_and(|e| !e.is_empty())
}

#[tokio::test(flavor = "multi_thread")]
async fn impersonating_the_limited_user_is_refused_where_its_rbac_says() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = cluster(&server, &cp, "imp", false).await;

    let own = server.gql(NAMESPACES, json!({ "id": id })).await;
    assert!(ok(&own), "as kubegql's own identity: {own}");

    let as_limited =
        server.gql_as(&server.token, &[("Impersonate-User", &cp.limited_user)], NAMESPACES, json!({ "id": id })).await;
    let (code, message) = first_error(&as_limited);
    assert_eq!(code, "FORBIDDEN", "{as_limited}");
    assert!(message.contains(&cp.limited_user), "the API server names the user: {message}");

    // Groups travel too: system:masters may do anything.
    let as_master = server
        .gql_as(
            &server.token,
            &[("Impersonate-User", "someone"), ("Impersonate-Group", "system:masters")],
            NAMESPACES,
            json!({ "id": id }),
        )
        .await;
    assert!(ok(&as_master), "{as_master}");

    // Clients are cached per identity: the cluster's own, the limited user, and someone.
    assert_eq!(server.server.connections.clients().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_admins_impersonate_and_are_refused_before_anything_is_sent() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    // A cluster whose address answers nothing: if a request were sent, the error would say so.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let input = json!({ "name": "dead", "mode": "DIRECT", "apiServerUrl": format!("https://127.0.0.1:{dead}"), "bearerToken": "t" });
    let id = server
        .gql_ok("mutation($i: CreateClusterInput!) { createCluster(input: $i) { id } }", json!({ "i": input }))
        .await["createCluster"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, operator) = server.principal("olga", "OPERATOR").await;
    let body = server.gql_as(&operator, &[("Impersonate-User", "admin")], NAMESPACES, json!({ "id": id })).await;
    let (code, message) = first_error(&body);
    assert_eq!(code, "FORBIDDEN", "{body}");
    assert!(message.contains("only ADMIN"), "{message}");
    assert_eq!(server.server.connections.clients().len(), 0, "no client was even built");

    // Bad blocks are refused with a clear error.
    let too_many: Vec<(String, String)> =
        (0..17).map(|i| (format!("Impersonate-Extra-k{i}"), "v".to_owned())).collect();
    let mut headers: Vec<(&str, &str)> = too_many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    headers.push(("Impersonate-User", "someone"));
    let body = server.gql_as(&server.token, &headers, NAMESPACES, json!({ "id": id })).await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "{body}");
    let body =
        server.gql_as(&server.token, &[("Impersonate-Group", "system:masters")], NAMESPACES, json!({ "id": id })).await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "a group without a user: {body}");

    // An impersonation header smuggled through an argument is only a string to the API server.
    let real = cluster(&server, &cp, "real", false).await;
    let smuggle = "query($id: ID!, $sel: String) { cluster(id: $id) { resources(kind: \"Namespace\", labelSelector: $sel) { edges { node { metadata { name } } } } } }";
    let body = server
        .gql_as(&operator, &[], smuggle, json!({ "id": real, "sel": "a=b\r\nImpersonate-User: system:admin" }))
        .await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "{body}");

    // An attempted mutation with impersonation is audited, naming the identity asked for.
    server
        .gql_as(
            &server.token,
            &[("Impersonate-User", "jane"), ("Impersonate-Group", "ops")],
            "mutation { deleteCluster(id: \"00000000-0000-4000-8000-000000000000\") { id } }",
            json!({}),
        )
        .await;
    let events = server.gql_ok("{ auditEvents(first: 1) { edges { node { field impersonated } } } }", json!({})).await;
    let last = &events["auditEvents"]["edges"][0]["node"];
    assert_eq!(last["field"], "deleteCluster");
    assert_eq!(last["impersonated"], r#"{"extra":{},"groups":["ops"],"uid":null,"user":"jane"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_can_impersonate_its_callers_so_its_rbac_decides() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    // A tenant of this test's own, so that binding its group affects no other test.
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let tenant = format!("t{suffix}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubegql"))
        .args([
            "principal",
            "create",
            "--name",
            &format!("boss-{suffix}"),
            "--role",
            "ADMIN",
            "--tenant",
            &tenant,
            "--database-url",
            &db.url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let boss = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_owned();
    let boss_server = TestServer { token: boss, ..server };
    let id = cluster(&boss_server, &cp, "as-caller", true).await;
    let name = format!("pat-{suffix}");
    let (_, viewer) = boss_server.principal(&name, "VIEWER").await;

    let before = boss_server.gql_as(&viewer, &[], NAMESPACES, json!({ "id": id })).await;
    let (code, message) = first_error(&before);
    assert_eq!(code, "FORBIDDEN", "{before}");
    assert!(message.contains(&name), "the cluster saw the principal's name: {message}");

    // Grant the tenant's group (which kubegql sends for every principal of the tenant) the
    // cluster's `view` role: now the cluster's RBAC lets the viewer list namespaces.
    let admin = cp.client("admin").await;
    let bindings: Api<ClusterRoleBinding> = Api::all(admin);
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": { "name": format!("kubegql-test-{suffix}") },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("kubegql:tenant:{tenant}") }]
    }))
    .unwrap();
    bindings.create(&PostParams::default(), &binding).await.unwrap();
    let mut after = Value::Null;
    for _ in 0..40 {
        after = boss_server.gql_as(&viewer, &[], NAMESPACES, json!({ "id": id })).await;
        if ok(&after) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(ok(&after), "{after}");
    let _ = bindings.delete(&format!("kubegql-test-{suffix}"), &DeleteParams::default()).await;
}
