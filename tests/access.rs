//! "May I?" (`Cluster.access`, `Cluster.accessRules`) against the control plane: kubegql's role
//! decides first, then the cluster under the identity kubegql really uses for the caller (its
//! stored credentials, a limited user's token, or the caller impersonated).

use crate::common;

use common::control_plane::{ControlPlane, ready_namespace, unique_namespace};
use common::{Backend, TestDb, TestServer};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

const ACCESS: &str = "query($id: ID!, $checks: [AccessCheckInput!]!) { cluster(id: $id) { access(checks: $checks) {
    verb resource subresource namespace allowed denied decidedBy reason } } }";

fn check(verb: &str, group: &str, resource: &str, namespace: &str) -> Value {
    json!({ "verb": verb, "group": group, "resource": resource, "namespace": namespace })
}

/// (allowed, decidedBy) of each answer.
fn answers(body: &Value) -> Vec<(bool, String)> {
    body["data"]["cluster"]["access"]
        .as_array()
        .unwrap_or_else(|| panic!("no answers: {body}"))
        .iter()
        .map(|a| (a["allowed"].as_bool().unwrap(), a["decidedBy"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubegqls_role_and_the_clusters_answer_are_combined_for_each_identity() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let admin_cluster = server.control_plane_cluster(&cp, "as-admin", json!({})).await;
    let limited_cluster =
        server.control_plane_cluster(&cp, "as-limited", json!({ "bearerToken": cp.limited_token })).await;
    let (_, viewer) = server.principal("vic", "VIEWER").await;

    // The cluster's admin credentials: the ADMIN may patch; a VIEWER may list but never patch,
    // and kubegql says so without asking the cluster.
    let checks = json!([check("patch", "apps", "deployments", "default"), check("list", "", "pods", "default")]);
    let body = server.gql(ACCESS, json!({ "id": admin_cluster, "checks": checks })).await;
    assert_eq!(answers(&body), [(true, "CLUSTER".into()), (true, "CLUSTER".into())], "{body}");
    let body = server.gql_as(&viewer, &[], ACCESS, json!({ "id": admin_cluster, "checks": checks })).await;
    assert_eq!(answers(&body), [(false, "KUBEGQL".into()), (true, "CLUSTER".into())], "{body}");
    let reason = body["data"]["cluster"]["access"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("OPERATOR") && reason.contains("VIEWER"), "{reason}");

    // The limited user's token: the cluster's RBAC (get and list pods and configmaps in default).
    let checks = json!([
        check("list", "", "pods", "default"),
        check("list", "", "pods", "kube-system"),
        check("delete", "", "pods", "default"),
        check("get", "", "secrets", "default"),
    ]);
    let body = server.gql(ACCESS, json!({ "id": limited_cluster, "checks": checks })).await;
    assert_eq!(
        answers(&body),
        [(true, "CLUSTER".into()), (false, "CLUSTER".into()), (false, "CLUSTER".into()), (false, "CLUSTER".into())],
        "{body}"
    );
    // Its rules in default, as `kubectl auth can-i --list` shows them.
    let rules = server
        .gql(
            "query($id: ID!) { cluster(id: $id) { accessRules(namespace: \"default\") { role incomplete resourceRules { verbs apiGroups resources } } } }",
            json!({ "id": limited_cluster }),
        )
        .await;
    let listed = &rules["data"]["cluster"]["accessRules"];
    assert_eq!(listed["role"], "ADMIN", "{rules}");
    let pods = listed["resourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"].as_array().unwrap().contains(&json!("pods")))
        .unwrap_or_else(|| panic!("no rule for pods: {rules}"));
    assert_eq!(pods["verbs"], json!(["get", "list"]), "{rules}");

    // Bad input.
    let many: Vec<Value> = (0..51).map(|_| check("get", "", "pods", "default")).collect();
    let body = server.gql(ACCESS, json!({ "id": admin_cluster, "checks": many })).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_impersonated_caller_is_answered_for_its_own_identity_and_exec_can_be_off_for_its_tenant() {
    let cp = ControlPlane::get();
    let admin = cp.client("admin").await;
    let ns = unique_namespace("access");
    ready_namespace(&admin, &ns).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = common::settings_for(&db);
    settings.tunnels.exec_disabled_tenants = vec!["default".into()];
    let server = TestServer::start_with(settings).await;
    let id = server.control_plane_cluster(&cp, "as-caller", json!({ "impersonateCaller": true })).await;
    let name = format!("ops-{}", &ns[ns.len() - 8..]);
    let (_, operator) = server.principal(&name, "OPERATOR").await;

    // The cluster knows nothing of this principal yet: not allowed.
    let first = json!([check("get", "", "configmaps", &ns)]);
    let body = server.gql_as(&operator, &[], ACCESS, json!({ "id": id, "checks": first })).await;
    assert_eq!(answers(&body), [(false, "CLUSTER".into())], "{body}");

    // Bound to `edit` in the namespace, under the name kubegql impersonates it as.
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &ns);
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "edit-for-ops" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("kubegql:default:{name}") }]
    }))
    .unwrap();
    bindings.create(&PostParams::default(), &binding).await.unwrap();
    let mut exec = check("create", "", "pods", &ns);
    exec["subresource"] = json!("exec");
    let now = json!([check("list", "", "configmaps", &ns), check("delete", "apps", "deployments", &ns), exec]);
    let mut body = Value::Null;
    for _ in 0..40 {
        body = server.gql_as(&operator, &[], ACCESS, json!({ "id": id, "checks": now })).await;
        if answers(&body)[0].0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        answers(&body),
        [(true, "CLUSTER".into()), (true, "CLUSTER".into()), (false, "KUBEGQL".into())],
        "the binding counts for this caller; exec is off for its tenant whatever the cluster says: {body}"
    );
    // Another principal of the same tenant is another identity: the first one's answers are
    // not lent to it.
    let (_, other) = server.principal(&format!("{name}-other"), "OPERATOR").await;
    let body = server
        .gql_as(&other, &[], ACCESS, json!({ "id": id, "checks": json!([check("list", "", "configmaps", &ns)]) }))
        .await;
    assert_eq!(answers(&body), [(false, "CLUSTER".into())], "{body}");
    let _ = bindings.delete("edit-for-ops", &DeleteParams::default()).await;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(admin).delete(&ns, &DeleteParams::background()).await;
}
