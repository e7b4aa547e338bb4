//! Rollout status, history, rollback and restart of Deployments, StatefulSets and DaemonSets
//! against the real control plane (the controllers run; kwok runs the pods).

use crate::common;

use std::time::Duration;

use common::control_plane::{ControlPlane, ready_namespace, unique_namespace};
use common::{Backend, TestDb, TestServer, first_error};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

async fn setup() -> (TestDb, TestServer, String, kube::Client) {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = server.control_plane_cluster(&cp, "rollouts", json!({})).await;
    (db, server, id, cp.client("admin").await)
}

const ROLLOUT: &str = "query($id: ID!, $k: String!, $ns: String!, $n: String!) { cluster(id: $id) { rollout(kind: $k, namespace: $ns, name: $n) {
    kind status { done failed message } history { revision name changeCause current template } } } }";

async fn rollout(server: &TestServer, id: &str, kind: &str, ns: &str, name: &str) -> Value {
    server.gql(ROLLOUT, json!({ "id": id, "k": kind, "ns": ns, "n": name })).await
}

/// Polls until the rollout is done; returns the last answer.
async fn until_done(server: &TestServer, id: &str, kind: &str, ns: &str, name: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..240 {
        last = rollout(server, id, kind, ns, name).await;
        if last["data"]["cluster"]["rollout"]["status"]["done"] == true {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the {kind} rollout did not finish in 60 s: {last}");
}

fn image(template: &Value) -> &str {
    template["spec"]["containers"][0]["image"].as_str().unwrap_or_else(|| panic!("no image in {template}"))
}

fn revisions(body: &Value) -> Vec<(i64, bool)> {
    body["data"]["cluster"]["rollout"]["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history: {body}"))
        .iter()
        .map(|r| (r["revision"].as_i64().unwrap(), r["current"].as_bool().unwrap()))
        .collect()
}

const ROLLBACK: &str = "mutation($id: ID!, $k: String!, $ns: String!, $n: String!, $to: Int, $dry: Boolean) {
    rollback(clusterId: $id, kind: $k, namespace: $ns, name: $n, toRevision: $to, dryRun: $dry) { revision skipped object { json } } }";

fn pod_template(image: &str, app: &str) -> Value {
    json!({ "metadata": { "labels": { "app": app } }, "spec": { "containers": [{ "name": "main", "image": image }] } })
}

async fn set_image<K>(api: &Api<K>, name: &str, image: &str, cause: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "metadata": { "annotations": { "kubernetes.io/change-cause": cause } },
        "spec": { "template": { "spec": { "containers": [{ "name": "main", "image": image }] } } }
    });
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_rolls_out_keeps_its_history_and_rolls_back() {
    let (_db, server, id, client) = setup().await;
    let ns = unique_namespace("rollout-deploy");
    ready_namespace(&client, &ns).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": { "kubernetes.io/change-cause": "first" } },
        "spec": { "replicas": 2, "selector": { "matchLabels": { "app": "web" } }, "template": pod_template("registry.invalid/web:1", "web") }
    }))
    .unwrap();
    api.create(&PostParams::default(), &deployment).await.unwrap();
    let done = until_done(&server, &id, "Deployment", &ns, "web").await;
    assert_eq!(done["data"]["cluster"]["rollout"]["status"]["message"], "deployment \"web\" successfully rolled out");
    set_image(&api, "web", "registry.invalid/web:2", "second").await;
    until_done(&server, &id, "deployments", &ns, "web").await;
    set_image(&api, "web", "registry.invalid/web:3", "third").await;
    let body = until_done(&server, &id, "deploy", &ns, "web").await;
    let history = &body["data"]["cluster"]["rollout"]["history"];
    assert_eq!(revisions(&body), vec![(3, true), (2, false), (1, false)], "newest first: {history}");
    assert_eq!(history[0]["changeCause"], "third");
    assert_eq!(image(&history[1]["template"]), "registry.invalid/web:2");
    assert!(
        history[0]["template"]["metadata"]["labels"].get("pod-template-hash").is_none(),
        "the controller's label is not part of the template"
    );

    // A dry run changes nothing.
    let dry = server.gql(ROLLBACK, json!({ "id": id, "k": "Deployment", "ns": ns, "n": "web", "dry": true })).await;
    assert_eq!(dry["data"]["rollback"]["revision"], 2, "{dry}");
    assert_eq!(image(&dry["data"]["rollback"]["object"]["json"]["spec"]["template"]), "registry.invalid/web:2");
    let stored = api.get("web").await.unwrap();
    assert_eq!(
        stored.spec.template.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("registry.invalid/web:3")
    );

    // Undo goes back to the previous revision, which becomes the newest.
    let undone = server.gql(ROLLBACK, json!({ "id": id, "k": "Deployment", "ns": ns, "n": "web" })).await;
    assert_eq!(undone["data"]["rollback"]["skipped"], false, "{undone}");
    let body = until_done(&server, &id, "Deployment", &ns, "web").await;
    assert_eq!(revisions(&body), vec![(4, true), (3, false), (1, false)]);
    let history = &body["data"]["cluster"]["rollout"]["history"];
    assert_eq!(image(&history[0]["template"]), "registry.invalid/web:2");
    assert_eq!(history[0]["changeCause"], "second", "the revision's own change-cause comes back with it");
    let stored = api.get("web").await.unwrap();
    assert_eq!(
        stored.spec.template.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("registry.invalid/web:2")
    );

    // To a named revision; again to the same one is skipped.
    let to_first = server.gql(ROLLBACK, json!({ "id": id, "k": "Deployment", "ns": ns, "n": "web", "to": 1 })).await;
    assert_eq!(to_first["data"]["rollback"]["revision"], 1, "{to_first}");
    until_done(&server, &id, "Deployment", &ns, "web").await;
    let again = server.gql(ROLLBACK, json!({ "id": id, "k": "Deployment", "ns": ns, "n": "web", "to": 5 })).await;
    assert_eq!(again["data"]["rollback"]["skipped"], true, "{again}");

    // Errors.
    let missing = server.gql(ROLLBACK, json!({ "id": id, "k": "Deployment", "ns": ns, "n": "web", "to": 99 })).await;
    let (code, message) = first_error(&missing);
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("revision 99"), "{message}");
    let not_a_workload = rollout(&server, &id, "Pod", &ns, "web").await;
    assert_eq!(first_error(&not_a_workload).0, "BAD_USER_INPUT");
    let absent = rollout(&server, &id, "Deployment", &ns, "nope").await;
    assert_eq!(first_error(&absent).0, "NOT_FOUND", "{absent}");
    let too_many = server
        .gql("query($id: ID!, $ns: String!) { cluster(id: $id) { rollout(kind: \"Deployment\", namespace: $ns, name: \"web\") { history(first: 501) { revision } } } }", json!({ "id": id, "ns": ns }))
        .await;
    assert_eq!(first_error(&too_many).0, "BAD_USER_INPUT");

    // Restart stamps the template and rolls out a new revision.
    let restarted = server
        .gql(
            "mutation($id: ID!, $ns: String!) { rolloutRestart(clusterId: $id, kind: \"Deployment\", namespace: $ns, name: \"web\") { json } }",
            json!({ "id": id, "ns": ns }),
        )
        .await;
    let stamp = &restarted["data"]["rolloutRestart"]["json"]["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
    assert!(stamp.is_string(), "{restarted}");
    let body = until_done(&server, &id, "Deployment", &ns, "web").await;
    assert_eq!(revisions(&body)[0], (6, true), "{body}");

    // A viewer reads rollouts but changes nothing.
    let (_, viewer) = server.principal("viv", "VIEWER").await;
    let read = server.gql_as(&viewer, &[], ROLLOUT, json!({ "id": id, "k": "Deployment", "ns": ns, "n": "web" })).await;
    assert_eq!(read["data"]["cluster"]["rollout"]["status"]["done"], true, "{read}");
    let refused =
        server.gql_as(&viewer, &[], ROLLBACK, json!({ "id": id, "k": "Deployment", "ns": ns, "n": "web" })).await;
    assert_eq!(first_error(&refused).0, "FORBIDDEN");

    // A paused Deployment is neither rolled back nor restarted.
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "paused": true } }))).await.unwrap();
    let paused = server.gql(ROLLBACK, json!({ "id": id, "k": "Deployment", "ns": ns, "n": "web" })).await;
    let (code, message) = first_error(&paused);
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("paused"), "{message}");

    // Every rollback and restart left an audit record.
    let audit = server
        .gql_ok("{ auditEvents(first: 50) { edges { node { field verb outcome kind name } } } }", json!({}))
        .await;
    let fields: Vec<String> = audit["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields.iter().filter(|f| *f == "rollback").count(), 7, "{fields:?}");
    assert_eq!(fields.iter().filter(|f| *f == "rolloutRestart").count(), 1, "{fields:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateful_set_and_a_daemon_set_roll_back_to_their_controller_revisions() {
    let (_db, server, id, client) = setup().await;
    let ns = unique_namespace("rollout-sts");
    ready_namespace(&client, &ns).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "db" },
        "spec": { "replicas": 1, "serviceName": "db", "selector": { "matchLabels": { "app": "db" } }, "template": pod_template("registry.invalid/db:1", "db") }
    }))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.unwrap();
    until_done(&server, &id, "StatefulSet", &ns, "db").await;
    set_image(&sets, "db", "registry.invalid/db:2", "upgrade").await;
    let body = until_done(&server, &id, "sts", &ns, "db").await;
    // The API server defaults a rolling update's partition to 0, and kubectl then speaks of a
    // partitioned roll out.
    assert_eq!(
        body["data"]["cluster"]["rollout"]["status"]["message"],
        "partitioned roll out complete: 1 new pods have been updated..."
    );
    assert_eq!(revisions(&body), vec![(2, true), (1, false)]);
    let history = &body["data"]["cluster"]["rollout"]["history"];
    assert_eq!(image(&history[1]["template"]), "registry.invalid/db:1");
    assert!(history[0]["template"].get("$patch").is_none(), "{history}");
    assert_eq!(history[0]["changeCause"], "upgrade");
    let undone = server.gql(ROLLBACK, json!({ "id": id, "k": "StatefulSet", "ns": ns, "n": "db" })).await;
    assert_eq!(undone["data"]["rollback"]["revision"], 1, "{undone}");
    let stored = sets.get("db").await.unwrap();
    assert_eq!(
        stored.spec.template.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("registry.invalid/db:1")
    );
    let body = until_done(&server, &id, "StatefulSet", &ns, "db").await;
    assert_eq!(revisions(&body)[0], (3, true), "the old revision comes back as the newest: {body}");

    let daemons: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    let daemon: DaemonSet = serde_json::from_value(json!({
        "metadata": { "name": "agent" },
        "spec": { "selector": { "matchLabels": { "app": "agent" } }, "template": pod_template("registry.invalid/agent:1", "agent") }
    }))
    .unwrap();
    daemons.create(&PostParams::default(), &daemon).await.unwrap();
    let body = until_done(&server, &id, "DaemonSet", &ns, "agent").await;
    assert_eq!(body["data"]["cluster"]["rollout"]["status"]["message"], "daemon set \"agent\" successfully rolled out");
    set_image(&daemons, "agent", "registry.invalid/agent:2", "upgrade").await;
    until_done(&server, &id, "ds", &ns, "agent").await;
    let undone = server.gql(ROLLBACK, json!({ "id": id, "k": "DaemonSet", "ns": ns, "n": "agent", "to": 1 })).await;
    assert_eq!(undone["data"]["rollback"]["skipped"], false, "{undone}");
    let stored = daemons.get("agent").await.unwrap();
    assert_eq!(
        stored.spec.template.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("registry.invalid/agent:1")
    );
}

const STATUS_SUBSCRIPTION: &str = "subscription($id: ID!, $k: String!, $ns: String!, $n: String!) {
    rolloutStatus(clusterId: $id, kind: $k, namespace: $ns, name: $n) { done failed message } }";

/// `rolloutStatus` waits as `kubectl rollout status` does: the status now, then after each change,
/// ending with the first final one.
#[tokio::test(flavor = "multi_thread")]
async fn a_status_subscription_follows_the_rollout_until_it_is_done() {
    let (_db, server, id, client) = setup().await;
    let ns = unique_namespace("rollout-watch");
    ready_namespace(&client, &ns).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "replicas": 2, "selector": { "matchLabels": { "app": "web" } }, "template": pod_template("registry.invalid/web:1", "web") }
    }))
    .unwrap();
    api.create(&PostParams::default(), &deployment).await.unwrap();
    until_done(&server, &id, "Deployment", &ns, "web").await;
    // Paused, a new template waits; the subscription sees that, then the rollout after resuming.
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "paused": true } }))).await.unwrap();
    set_image(&api, "web", "registry.invalid/web:2", "second").await;
    let vars = json!({ "id": id, "k": "Deployment", "ns": ns, "n": "web" });
    let mut statuses =
        server.subscribe_sse(&server.token, STATUS_SUBSCRIPTION, vars).await.expect("the subscription opens");
    let first =
        tokio::time::timeout(Duration::from_secs(20), statuses.recv()).await.expect("a status in time").expect("open");
    let first = &first["data"]["rolloutStatus"];
    assert_eq!(first["done"], false, "{first}");
    assert!(first["message"].as_str().unwrap().starts_with("Waiting for deployment"), "{first}");
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "paused": false } }))).await.unwrap();
    let mut last = Value::Null;
    while let Some(payload) =
        tokio::time::timeout(Duration::from_secs(60), statuses.recv()).await.expect("the rollout finishes in time")
    {
        last = payload["data"]["rolloutStatus"].clone();
    }
    assert_eq!(
        last,
        json!({ "done": true, "failed": false, "message": "deployment \"web\" successfully rolled out" }),
        "the stream ends on the final status"
    );

    let absent = json!({ "id": id, "k": "Deployment", "ns": ns, "n": "nope" });
    let mut errors =
        server.subscribe_sse(&server.token, STATUS_SUBSCRIPTION, absent).await.expect("errors come inside the stream");
    let payload = tokio::time::timeout(Duration::from_secs(10), errors.recv()).await.unwrap().unwrap();
    assert_eq!(payload["errors"][0]["extensions"]["code"], "NOT_FOUND", "{payload}");
    let pod = json!({ "id": id, "k": "Pod", "ns": ns, "n": "web" });
    let mut errors =
        server.subscribe_sse(&server.token, STATUS_SUBSCRIPTION, pod).await.expect("errors come inside the stream");
    let payload = tokio::time::timeout(Duration::from_secs(10), errors.recv()).await.unwrap().unwrap();
    assert_eq!(payload["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{payload}");
}
