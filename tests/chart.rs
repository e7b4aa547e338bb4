//! The Helm chart in `deploy/helm/kubegql` and the plain manifest rendered from it: `helm lint`
//! and `helm template` (helm built from its Go module by `tests/cluster/build`), what the
//! templates promise (no token unless in-cluster, non-root, read-only root, probes, secrets by
//! reference), and on the control plane: the manifest applied with a server-side dry run and
//! then for real, and kubegql acting as the chart's ServiceAccount (a TokenRequest token, the
//! cluster's CA) doing every kind of work the chart grants, and refused what it does not.

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::control_plane::{ControlPlane, project_dir, ready_namespace, unique_namespace};
use common::{Backend, TestDb, TestServer, eventually, in_cluster_settings};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn chart() -> PathBuf {
    project_dir().join("deploy/helm/kubegql")
}

fn helm(args: &[&str]) -> Result<String, String> {
    let helm = project_dir().join("tests/cluster/.bin/helm");
    let out = Command::new(&helm)
        .args(args)
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("kubegql-helm-cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("kubegql-helm-config"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("kubegql-helm-data"))
        .output()
        .unwrap_or_else(|e| panic!("{} runs (tests/cluster/build helm): {e}", helm.display()));
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `helm template` of the chart as `release` in `namespace`, with `--set` values.
fn render(release: &str, namespace: &str, set: &[&str]) -> Result<String, String> {
    let chart = chart();
    let mut args = vec!["template", release, chart.to_str().unwrap(), "--namespace", namespace];
    for value in set {
        args.extend(["--set", value]);
    }
    helm(&args)
}

/// The documents of a rendered manifest, by kind.
fn documents(manifest: &str) -> Vec<Value> {
    manifest
        .split("\n---")
        .map(|d| d.trim())
        .filter(|d| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("a YAML document: {e}\n{d}")))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn env(deployment: &Value) -> Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().cloned().unwrap_or_default()
}

fn env_named<'a>(env: &'a [Value], name: &str) -> Option<&'a Value> {
    env.iter().find(|e| e["name"] == name)
}

#[test]
fn the_chart_lints_and_the_checked_in_manifest_is_its_rendering() {
    helm(&["lint", "--strict", chart().to_str().unwrap()]).expect("helm lint --strict passes");
    let rendered = render("kubegql", "kubegql", &[]).expect("the defaults render");
    let checked_in = std::fs::read_to_string(project_dir().join("deploy/kubegql.yaml")).unwrap();
    let body = checked_in.split_once("\n---\n").map(|(_, rest)| format!("---\n{rest}")).unwrap_or_default();
    assert!(
        body == rendered,
        "deploy/kubegql.yaml is not the chart's rendering: run scripts/render-manifest and commit it"
    );
}

#[test]
fn the_defaults_run_unprivileged_without_a_token_and_with_secrets_by_reference() {
    let docs = documents(&render("kubegql", "kubegql", &[]).unwrap());
    assert!(of_kind(&docs, "ClusterRole").is_empty() && of_kind(&docs, "ClusterRoleBinding").is_empty());
    let sa = of_kind(&docs, "ServiceAccount")[0];
    assert_eq!(sa["automountServiceAccountToken"], false);
    let deployment = of_kind(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false, "no API token in the pod unless in-cluster");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        container["resources"]["requests"]["cpu"].is_string()
            && container["resources"]["requests"]["memory"].is_string()
    );
    // SQLite on a claimed volume, one replica replaced (not rolled) on change.
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(of_kind(&docs, "PersistentVolumeClaim").len(), 1);
    let env = env(deployment);
    assert_eq!(env_named(&env, "DATABASE_URL").unwrap()["value"], "/var/lib/kubegql/kubegql.db");
    // The master key is a mounted file of a Secret, never a value in the manifest.
    assert_eq!(env_named(&env, "KUBEGQL_MASTER_KEY_FILE").unwrap()["value"], "/etc/kubegql/master-key/master-key");
    assert!(env_named(&env, "KUBEGQL_MASTER_KEY").is_none());
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["secret"]["secretName"] == "kubegql-master-key"));
    assert!(of_kind(&docs, "Secret").is_empty(), "the chart makes no Secret");
}

#[test]
fn single_sign_on_is_configured_by_a_config_map_and_its_secret_by_reference() {
    let docs = documents(&render("kubegql", "kubegql", &[]).unwrap());
    assert!(env_named(&env(of_kind(&docs, "Deployment")[0]), "KUBEGQL_OIDC_CONFIG").is_none(), "off by default");
    let docs = documents(
        &render(
            "kubegql",
            "kubegql",
            &["oidc.configMapName=kubegql-oidc", "oidc.clientSecret.secretName=kubegql-oidc-client"],
        )
        .unwrap(),
    );
    let deployment = of_kind(&docs, "Deployment")[0];
    let config = env_named(&env(deployment), "KUBEGQL_OIDC_CONFIG").cloned().unwrap();
    assert_eq!(config["value"], "/etc/kubegql/oidc/oidc.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["configMap"]["name"] == "kubegql-oidc"));
    let secret = volumes.iter().find(|v| v["secret"]["secretName"] == "kubegql-oidc-client").expect("the secret");
    // Read-only to its owner, like the master key (`0400`, octal to Kubernetes' YAML reader).
    let key = volumes.iter().find(|v| v["secret"]["secretName"] == "kubegql-master-key").expect("the key");
    assert_eq!(secret["secret"]["defaultMode"], key["secret"]["defaultMode"]);
    assert!(!secret["secret"]["defaultMode"].is_null());
    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    for path in ["/etc/kubegql/oidc", "/etc/kubegql/oidc-secret"] {
        let mount = mounts.iter().find(|m| m["mountPath"] == path).expect(path);
        assert_eq!(mount["readOnly"], true, "{path}");
    }
    assert!(of_kind(&docs, "Secret").is_empty() && of_kind(&docs, "ConfigMap").is_empty(), "made by the operator");
}

#[test]
fn postgres_replicas_in_cluster_and_refused_values() {
    let err = render("kubegql", "kubegql", &["replicaCount=2"]).expect_err("two replicas on SQLite are refused");
    assert!(err.contains("PostgreSQL"), "{err}");
    let docs =
        documents(&render("kubegql", "kubegql", &["replicaCount=3", "database.urlSecretName=kubegql-db"]).unwrap());
    let deployment = of_kind(&docs, "Deployment")[0];
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert!(deployment["spec"]["strategy"].is_null(), "PostgreSQL replicas roll");
    assert!(of_kind(&docs, "PersistentVolumeClaim").is_empty());
    let url = env_named(&env(deployment), "DATABASE_URL").cloned().unwrap();
    assert_eq!(url["valueFrom"]["secretKeyRef"], json!({ "name": "kubegql-db", "key": "url" }));

    let docs =
        documents(&render("kubegql", "ops", &["inCluster.enabled=true", "inCluster.tenants={ops,platform}"]).unwrap());
    let deployment = of_kind(&docs, "Deployment")[0];
    assert_eq!(deployment["spec"]["template"]["spec"]["automountServiceAccountToken"], true);
    assert_eq!(env_named(&env(deployment), "KUBEGQL_IN_CLUSTER_TENANTS").unwrap()["value"], "ops,platform");
    let rules = of_kind(&docs, "ClusterRole")[0]["rules"].as_array().unwrap().clone();
    let verbs: Vec<Value> = rules.iter().flat_map(|r| r["verbs"].as_array().unwrap().clone()).collect();
    assert!(verbs.contains(&json!("list")) && !verbs.contains(&json!("patch")), "read by default: {rules:?}");
    assert!(!verbs.contains(&json!("impersonate")), "no impersonation unless enabled");
    let binding = of_kind(&docs, "ClusterRoleBinding")[0];
    assert_eq!(binding["subjects"][0], json!({ "kind": "ServiceAccount", "name": "kubegql", "namespace": "ops" }));

    let docs = documents(
        &render("kubegql", "ops", &["inCluster.enabled=true", "inCluster.access=none", "inCluster.impersonation=true"])
            .unwrap(),
    );
    let rules = of_kind(&docs, "ClusterRole")[0]["rules"].as_array().unwrap().clone();
    assert_eq!(rules.len(), 2, "access reviews and impersonation only: {rules:?}");
    assert_eq!(rules[1]["verbs"], json!(["impersonate"]));
    let err = render("kubegql", "ops", &["inCluster.enabled=true", "inCluster.access=admin"]).unwrap_err();
    assert!(err.contains("read, write or none"), "{err}");
}

/// Runs kubectl as the control plane's admin with `stdin`, returning stdout, or stderr on failure.
fn kubectl_with_input(cp: &ControlPlane, args: &[&str], stdin: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new(&cp.kubectl)
        .args(["--kubeconfig", cp.kubeconfig.to_str().unwrap(), "--context", "admin"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The chart's cluster-scoped objects are named after the release: removed however the test ends.
struct Installed {
    cp: ControlPlane,
    manifest: String,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ =
            kubectl_with_input(&self.cp, &["delete", "--ignore-not-found", "--wait=false", "-f", "-"], &self.manifest);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn installed_on_the_control_plane_it_does_what_its_rbac_grants_and_no_more() {
    let cp = ControlPlane::get();
    let admin = cp.client("admin").await;
    let ns = unique_namespace("kubegql-chart");
    ready_namespace(&admin, &ns).await;
    // A release named like its namespace, which holds "kubegql": its objects take that name.
    let release = ns.clone();
    let values = ["inCluster.enabled=true", "inCluster.tenants={default}", "inCluster.access=write"];
    let manifest = render(&release, &ns, &values).unwrap();
    let _installed = Installed { cp: ControlPlane::get(), manifest: manifest.clone() };

    // A server-side dry run stores nothing; then the real apply creates every object.
    kubectl_with_input(&cp, &["apply", "--server-side", "--dry-run=server", "-f", "-"], &manifest)
        .expect("the API server accepts the manifest in a dry run");
    let absent = kubectl_with_input(&cp, &["-n", &ns, "get", "serviceaccount", &release], "");
    assert!(absent.unwrap_err().contains("NotFound"), "the dry run created nothing");
    kubectl_with_input(&cp, &["apply", "--server-side", "-f", "-"], &manifest).expect("the manifest applies");
    for (kind, namespaced) in [
        ("serviceaccount", true),
        ("service", true),
        ("deployment", true),
        ("clusterrole", false),
        ("clusterrolebinding", false),
    ] {
        let mut args = vec!["get", kind, &release, "-o", "name"];
        if namespaced {
            args.extend(["-n", &ns]);
        }
        kubectl_with_input(&cp, &args, "").unwrap_or_else(|e| panic!("{kind} {release} exists: {e}"));
    }

    // kubegql "in the pod": the ServiceAccount's token from the TokenRequest API, the cluster's CA.
    let token = cp.run_kubectl(&["-n", &ns, "create", "token", &release, "--duration", "1h"]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token.trim()).unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start_with(in_cluster_settings(&db, &cp, &token_file)).await;
    let created = server
        .gql_ok("mutation { createCluster(input: { name: \"home\", mode: IN_CLUSTER }) { id } }", json!({}))
        .await;
    let id = created["createCluster"]["id"].as_str().unwrap().to_owned();

    // Read: every namespace, and objects in the test's.
    let read = server
        .gql_ok(
            "query($id: ID!) { cluster(id: $id) { resources(kind: \"Namespace\", first: 500) { edges { node { metadata { name } } } } } }",
            json!({ "id": id }),
        )
        .await;
    assert!(read.to_string().contains(&format!("\"{ns}\"")), "{read}");

    // Watch: a subscription sees a ConfigMap that kubegql itself applies.
    let mut events = server
        .subscribe_sse(
            &server.token,
            "subscription($id: ID!, $ns: String!) { resourceEvents(clusterId: $id, kind: \"ConfigMap\", namespace: $ns) { type resource { metadata { name } } } }",
            json!({ "id": id, "ns": ns }),
        )
        .await
        .expect("the subscription opens");
    // Subscribed, and the watch has listed: what exists before that is not a change.
    let hub = &server.server.watch_hub;
    eventually("the subscription joined a listed watch", Duration::from_secs(30), || async {
        hub.subscription_count() == 1 && hub.listed_upstream_count() == 1
    })
    .await;
    let apply = |manifest: String| {
        let server = &server;
        let id = id.clone();
        async move {
            server
                .gql_ok(
                    "mutation($id: ID!, $m: String!) { apply(clusterId: $id, manifest: $m) { documents { action error { code message } } } }",
                    json!({ "id": id, "m": manifest }),
                )
                .await["apply"]["documents"][0]
                .clone()
        }
    };
    let configmap = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: via-chart\n  namespace: {ns}\ndata:\n  a: \"1\"\n"
    );
    let applied = apply(configmap.clone()).await;
    assert_eq!(applied["action"], "CREATED", "{applied}");
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.recv().await {
            if event.to_string().contains("via-chart") {
                return event;
            }
        }
        panic!("the subscription ended");
    })
    .await
    .expect("the watch reports the applied ConfigMap");
    assert!(seen.to_string().contains("ADDED") || seen.to_string().contains("MODIFIED"), "{seen}");

    // Write: a patch, and a Deployment restarted (rollout).
    let patched = server
        .gql_ok(
            "mutation($id: ID!, $ns: String!) { patch(clusterId: $id, kind: \"ConfigMap\", namespace: $ns, name: \"via-chart\", type: MERGE, patch: { data: { b: \"2\" } }) { object { metadata { name } } } }",
            json!({ "id": id, "ns": ns }),
        )
        .await;
    assert_eq!(patched["patch"]["object"]["metadata"]["name"], "via-chart", "{patched}");
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: main\n          image: registry.invalid/web:1\n"
    );
    assert_eq!(apply(deployment).await["action"], "CREATED");
    let restarted = server
        .gql_ok(
            "mutation($id: ID!, $ns: String!) { rolloutRestart(clusterId: $id, kind: \"Deployment\", namespace: $ns, name: \"web\") { metadata { name } } }",
            json!({ "id": id, "ns": ns }),
        )
        .await;
    assert_eq!(restarted["rolloutRestart"]["metadata"]["name"], "web", "{restarted}");

    // Tunnel: a port-forward to a kwok pod reaches the harness's echo server and back.
    let pod = json!({
        "metadata": { "name": "echo" },
        "spec": { "containers": [{ "name": "main", "image": "registry.invalid/echo:1", "ports": [{ "containerPort": 8080 }] }] }
    });
    common::control_plane::running_pod(&admin, &ns, pod).await;
    let url =
        format!("ws://{}/api/v1/clusters/{id}/namespaces/{ns}/pods/echo/portforward?port=8080", server.server.addr);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {}", server.token).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("the port-forward opens");
    socket.send(Message::Binary(b"through the chart's account\n".to_vec().into())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < b"through the chart's account\n".len() {
        let message =
            tokio::time::timeout(Duration::from_secs(20), socket.next()).await.expect("echo in time").unwrap().unwrap();
        if let Message::Binary(bytes) = message {
            got.extend_from_slice(&bytes);
        }
    }
    assert_eq!(got, b"through the chart's account\n");
    socket.close(None).await.unwrap();

    // Not granted: impersonation (off in these values). A cluster set to act as its callers is
    // refused by the API server, and kubegql says so.
    server
        .gql_ok(
            "mutation($id: ID!) { updateCluster(id: $id, input: { impersonateCaller: true }) { id } }",
            json!({ "id": id }),
        )
        .await;
    let refused = server
        .gql(
            "query($id: ID!, $ns: String!) { cluster(id: $id) { resources(kind: \"ConfigMap\", namespace: $ns) { edges { node { metadata { name } } } } } }",
            json!({ "id": id, "ns": ns }),
        )
        .await;
    let (code, message) = common::first_error(&refused);
    assert_eq!(code, "FORBIDDEN", "{refused}");
    assert!(message.contains("impersonate"), "the API server refused the impersonation: {message}");
    server
        .gql_ok(
            "mutation($id: ID!) { updateCluster(id: $id, input: { impersonateCaller: false }) { id } }",
            json!({ "id": id }),
        )
        .await;

    // The same release upgraded to read access: writes are refused, reads still work.
    let read_only = render(&release, &ns, &["inCluster.enabled=true", "inCluster.tenants={default}"]).unwrap();
    kubectl_with_input(&cp, &["apply", "--server-side", "-f", "-"], &read_only).expect("the read-only values apply");
    let changed = configmap.replace("a: \"1\"", "a: \"3\"");
    eventually("a write refused under read access", Duration::from_secs(30), || {
        let apply = &apply;
        let changed = changed.clone();
        async move { apply(changed).await["error"]["code"] == "FORBIDDEN" }
    })
    .await;
    let refused = apply(changed.clone()).await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("system:serviceaccount:{ns}:{release}")),
        "refused for the chart's account: {message}"
    );
    let still = server
        .gql_ok(
            "query($id: ID!, $ns: String!) { cluster(id: $id) { resources(kind: \"ConfigMap\", namespace: $ns, labelSelector: \"\") { edges { node { metadata { name } } } } } }",
            json!({ "id": id, "ns": ns }),
        )
        .await;
    assert!(still.to_string().contains("via-chart"), "reads still work: {still}");

    cp.run_kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
