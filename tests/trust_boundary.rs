//! The trust boundary of SECURITY.md, tried as an attacker would: an API caller, ADMIN of its
//! tenant included, gets no power over the server. Each test is one attack against the real
//! control plane and the real server; each fails on a server without the rule it names.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::control_plane::{ControlPlane, ready_namespace, unique_namespace};
use common::{Backend, TestDb, TestServer, cli_principal, first_error, in_cluster_settings, settings_for};
use serde_json::json;

const TEST: &str =
    "mutation($i: CreateClusterInput!) { testClusterConnection(input: $i) { reachable error errorKind } }";
const CREATE: &str = "mutation($i: CreateClusterInput!) { createCluster(input: $i) { id } }";
const NAMESPACES: &str =
    "query($id: ID!) { cluster(id: $id) { namespaces(first: 5) { edges { node { metadata { name } } } } } }";

/// The control plane's kubeconfig with its CA as data (a kubeconfig sent through the API may
/// name no file of the server), for `user` as given.
fn inline_kubeconfig(cp: &ControlPlane, user: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(cp.ca_pem());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\n\
         users:\n- name: u\n  user:\n{user}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        cp.api_url
    )
}

fn exec_user(script: &str) -> String {
    format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: sh\n      args: [\"-c\", {}]\n      interactiveMode: Never\n",
        serde_json::to_string(script).unwrap()
    )
}

/// SECURITY.md, "Cluster configurations sent through the API": data only, refused before any
/// client is built, so a command in one never runs and no server file is read into an answer.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_kubeconfig_cannot_run_commands_or_read_server_files() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let blue = cli_principal(&db, "blue", "mallory", "ADMIN");
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().join("ran");
    let secret_file = work.path().join("server-secret");
    std::fs::write(&secret_file, "SERVER-SECRET-BYTES").unwrap();

    let script = format!("id > {}; cat {}; exit 1", marker.display(), secret_file.display());
    let file = secret_file.display().to_string();
    let attacks: Vec<(&str, String, &str)> = vec![
        ("exec plugin", exec_user(&script), "exec"),
        (
            "auth-provider",
            "    auth-provider: {name: gcp, config: {cmd-path: /bin/sh, cmd-args: \"-c id\"}}\n".into(),
            "auth-provider",
        ),
        ("token file", format!("    tokenFile: {file}\n"), "tokenFile"),
        (
            "client certificate file",
            format!("    client-certificate: {file}\n    client-key: {file}\n"),
            "client-certificate",
        ),
    ];
    for (what, user, field) in attacks {
        let kubeconfig = inline_kubeconfig(&cp, &user);
        for mutation in [TEST, CREATE] {
            let input = json!({ "name": "evil", "mode": "KUBECONFIG", "kubeconfig": kubeconfig });
            let body = server.gql_as(&blue, &[], mutation, json!({ "i": input })).await;
            let (code, message) = first_error(&body);
            assert_eq!(code, "BAD_USER_INPUT", "{what}: {body}");
            assert_eq!(body["errors"][0]["extensions"]["field"], "kubeconfig", "{what}: {body}");
            assert!(message.contains(field), "{what}: {message}");
            assert!(!body.to_string().contains("SERVER-SECRET-BYTES"), "{what}: a server file leaked");
        }
    }
    // Files named by the cluster entry, plain HTTP and proxies are refused the same way.
    let ca_path = inline_kubeconfig(&cp, "    token: t\n").replace(
        &format!("certificate-authority-data: {}", base64::engine::general_purpose::STANDARD.encode(cp.ca_pem())),
        &format!("certificate-authority: {file}"),
    );
    let http = inline_kubeconfig(&cp, "    token: t\n").replace("https://", "http://");
    for (what, kubeconfig, needle) in [("CA file", ca_path, "certificate-authority"), ("plain http", http, "https")] {
        let body = server
            .gql_as(
                &blue,
                &[],
                TEST,
                json!({ "i": { "name": "evil", "mode": "KUBECONFIG", "kubeconfig": kubeconfig } }),
            )
            .await;
        assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "{what}: {body}");
        assert!(first_error(&body).1.contains(needle), "{what}: {body}");
    }
    // Cloud metadata and link-local addresses are refused before a connection is tried.
    for url in ["https://169.254.169.254", "https://[fd00:ec2::254]:443", "https://[::ffff:169.254.169.254]"] {
        let input = json!({ "name": "meta", "mode": "DIRECT", "apiServerUrl": url, "bearerToken": "t" });
        let body = server.gql_as(&blue, &[], TEST, json!({ "i": input })).await;
        assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "{url}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "apiServerUrl", "{url}: {body}");
    }
    assert!(!marker.exists(), "a command of an API kubeconfig ran on the server");
    assert_eq!(server.cluster_count().await, 0, "nothing was stored");

    // The same kubeconfig with a token, as data, connects.
    let good = inline_kubeconfig(&cp, &format!("    token: {}\n", cp.admin_token));
    let body = server
        .gql_as(&blue, &[], TEST, json!({ "i": { "name": "fine", "mode": "KUBECONFIG", "kubeconfig": good } }))
        .await;
    assert_eq!(body["data"]["testClusterConnection"]["reachable"], true, "{body}");
}

fn in_cluster_for(
    db: &TestDb,
    cp: &ControlPlane,
    token_file: &std::path::Path,
    tenants: &[&str],
) -> kubegql::settings::ServeSettings {
    let mut settings = in_cluster_settings(db, cp, token_file);
    settings.connection_policy.in_cluster_tenants = tenants.iter().map(|t| t.to_string()).collect();
    settings
}

/// SECURITY.md, "The server's own identity": IN_CLUSTER acts as the server's service account, so
/// only tenants the operator names may register it, and a record stored before the operator
/// withdrew a tenant is not served either.
#[tokio::test(flavor = "multi_thread")]
async fn in_cluster_is_the_operators_identity() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &cp.admin_token).unwrap();
    let server = TestServer::start_with(in_cluster_for(&db, &cp, &token_file, &["ops"])).await;
    let blue = cli_principal(&db, "blue", "mallory", "ADMIN");
    let ops = cli_principal(&db, "ops", "olga", "ADMIN");

    let input = json!({ "name": "pod", "mode": "IN_CLUSTER" });
    for mutation in [CREATE, TEST] {
        let body = server.gql_as(&blue, &[], mutation, json!({ "i": input })).await;
        assert_eq!(first_error(&body).0, "FORBIDDEN", "{body}");
        assert!(first_error(&body).1.contains("IN_CLUSTER"), "{body}");
    }
    assert_eq!(server.cluster_count().await, 0);

    let created = server.gql_as(&ops, &[], CREATE, json!({ "i": input })).await;
    let id = created["data"]["createCluster"]["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
    let listed = server.gql_as(&ops, &[], NAMESPACES, json!({ "id": id })).await;
    let edges = listed["data"]["cluster"]["namespaces"]["edges"].as_array().map_or(0, Vec::len);
    assert!(edges > 0, "the named tenant reads the cluster: {listed}");
    server.server.stop().await.unwrap();

    // The operator withdraws the tenant: its stored record no longer gets a client.
    let server = TestServer::start_with(in_cluster_for(&db, &cp, &token_file, &[])).await;
    let listed = server.gql_as(&ops, &[], NAMESPACES, json!({ "id": id })).await;
    assert_eq!(first_error(&listed).0, "FORBIDDEN", "{listed}");
    assert!(first_error(&listed).1.contains("IN_CLUSTER"), "{listed}");
    assert!(listed["data"]["cluster"].is_null(), "{listed}");
}

/// SECURITY.md, "Kubeconfig files on the server": only under the directory the operator gave the
/// tenant, regular files only, and one answer for every refused path.
#[tokio::test(flavor = "multi_thread")]
async fn kubeconfig_files_are_the_operators() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let root = tempfile::tempdir().unwrap();
    let (blue_dir, red_dir) = (root.path().join("blue"), root.path().join("red"));
    std::fs::create_dir_all(&blue_dir).unwrap();
    std::fs::create_dir_all(&red_dir).unwrap();
    std::fs::copy(&cp.kubeconfig, blue_dir.join("kubeconfig")).unwrap();
    std::fs::copy(&cp.kubeconfig, red_dir.join("kubeconfig")).unwrap();
    let marker = root.path().join("plugin-ran");
    let plugin =
        inline_kubeconfig(&cp, &exec_user(&format!("touch {}; echo PLUGIN-OUTPUT-SECRET; exit 1", marker.display())));
    std::fs::write(blue_dir.join("plugin.yaml"), &plugin).unwrap();
    std::os::unix::fs::symlink("/dev/zero", blue_dir.join("zero")).unwrap();
    std::os::unix::fs::symlink(red_dir.join("kubeconfig"), blue_dir.join("theirs")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(blue_dir.join("fifo")).status().unwrap().success());

    let dirs = vec![format!("blue={}", blue_dir.display()), format!("red={}", red_dir.display())];
    let mut settings = settings_for(&db);
    settings.connection_policy.kubeconfig_dirs = dirs.clone();
    let server = TestServer::start_with(settings).await;
    let blue = cli_principal(&db, "blue", "mallory", "ADMIN");
    let red = cli_principal(&db, "red", "rita", "ADMIN");
    let test_path = |token: String, path: String| {
        let server = &server;
        async move {
            let input =
                json!({ "name": "kc", "mode": "KUBECONFIG", "kubeconfigPath": path, "kubeconfigContext": "admin" });
            server.gql_as(&token, &[], TEST, json!({ "i": input })).await
        }
    };

    let own = test_path(blue.clone(), "kubeconfig".into()).await;
    assert_eq!(own["data"]["testClusterConnection"]["reachable"], true, "{own}");
    let red_file = red_dir.join("kubeconfig").display().to_string();
    let mut messages = Vec::new();
    for path in [
        red_file.as_str(),
        "../red/kubeconfig",
        "theirs",
        "/etc/passwd",
        "/nonexistent/kubeconfig",
        "zero",
        "/dev/zero",
        "fifo",
        cp.kubeconfig.to_str().unwrap(),
    ] {
        let started = std::time::Instant::now();
        let body = test_path(blue.clone(), path.into()).await;
        assert!(started.elapsed() < Duration::from_secs(10), "{path} held the request");
        let (code, message) = first_error(&body);
        assert_eq!(code, "BAD_USER_INPUT", "{path}: {body}");
        assert!(!body.to_string().contains("kubegql-test"), "{path}: the file's contents leaked: {body}");
        messages.push(message);
    }
    assert!(messages.iter().all(|m| m == &messages[0]), "one answer for every refused path: {messages:?}");
    assert!(messages[0].contains("not allowed for this tenant"), "{}", messages[0]);
    // The red tenant uses its own file; the default tenant has no directory at all.
    let theirs = test_path(red.clone(), "kubeconfig".into()).await;
    assert_eq!(theirs["data"]["testClusterConnection"]["reachable"], true, "{theirs}");
    let none = test_path(server.token.clone(), "kubeconfig".into()).await;
    assert_eq!(first_error(&none).1, messages[0], "{none}");

    // A credential plugin in the tenant's own directory needs the operator's leave.
    let body = test_path(blue.clone(), "plugin.yaml".into()).await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "{body}");
    assert!(first_error(&body).1.contains("--allow-kubeconfig-exec"), "{body}");
    assert!(!marker.exists(), "the plugin ran without the operator's leave");
    server.server.stop().await.unwrap();

    // With it, the plugin runs, and its output still never reaches the answer.
    let mut settings = settings_for(&db);
    settings.connection_policy.kubeconfig_dirs = dirs;
    settings.connection_policy.allow_kubeconfig_exec = true;
    let server = TestServer::start_with(settings).await;
    let input = json!({ "name": "kc", "mode": "KUBECONFIG", "kubeconfigPath": "plugin.yaml" });
    let body = server.gql_as(&blue, &[], TEST, json!({ "i": input })).await;
    assert!(marker.exists(), "the operator allowed the plugin: {body}");
    assert_eq!(body["data"]["testClusterConnection"]["reachable"], false, "{body}");
    assert!(!body.to_string().contains("PLUGIN-OUTPUT-SECRET"), "plugin output reached the answer: {body}");
    assert!(body.to_string().contains("credentials could not be obtained"), "{body}");
}

/// SECURITY.md, "Tenants": live cluster changes reach only the tenant they belong to, and each
/// subscription counts against the subscriber's cap.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_changes_stay_in_their_tenant() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.watch.max_subscriptions_per_principal = 2;
    let server = TestServer::start_with(settings).await;
    let blue = cli_principal(&db, "blue", "mallory", "ADMIN");
    let subscription = "subscription { clusterChanges { kind name clusterId } }";
    let mut events = server.subscribe_sse(&blue, subscription, json!({})).await.expect("subscribed");
    let _second = server.subscribe_sse(&blue, subscription, json!({})).await.expect("second subscription");
    // The slots are taken once the streams are open: poll until the third is refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match server.subscribe_sse(&blue, subscription, json!({})).await {
            Err((_, body)) => {
                assert_eq!(first_error(&body).0, "RATE_LIMITED", "{body}");
                break;
            }
            Ok(mut third) => {
                if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), third.recv()).await {
                    if event["errors"][0]["extensions"]["code"] == "RATE_LIMITED" {
                        break;
                    }
                    panic!("a third subscription past the cap got {event}");
                }
                assert!(std::time::Instant::now() < deadline, "the third subscription was never refused");
            }
        }
    }

    let direct = |name: &str| json!({ "i": { "name": name, "mode": "DIRECT", "apiServerUrl": "https://127.0.0.1:9", "bearerToken": "t" } });
    server.gql_ok(CREATE, direct("default-secret-name")).await;
    let ours = server.gql_as(&blue, &[], CREATE, direct("blue-one")).await;
    assert!(ours.get("errors").is_none(), "{ours}");
    let first = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("an event").expect("open");
    assert_eq!(first["data"]["clusterChanges"]["name"], "blue-one", "another tenant's change was delivered: {first}");
    let next = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
    assert!(next.is_err(), "nothing else is delivered: {next:?}");
}

/// SECURITY.md, "Tenants": principal names are per tenant, and a cluster that impersonates its
/// callers gives two tenants' principals of one name two different Kubernetes users.
#[tokio::test(flavor = "multi_thread")]
async fn same_names_in_two_tenants_are_two_kubernetes_users() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let (_, ours) = server.principal("vera", "VIEWER").await;
    let theirs = cli_principal(&db, "red", "vera", "VIEWER");
    let red_admin = cli_principal(&db, "red", "rita", "ADMIN");
    let dup =
        server.gql("mutation { createPrincipal(input: { name: \"vera\", role: VIEWER }) { id } }", json!({})).await;
    assert_eq!(first_error(&dup).0, "CONFLICT", "{dup}");

    // Only the default tenant's vera may read ConfigMaps of this namespace.
    let admin = cp.client("admin").await;
    let namespace = unique_namespace("names");
    ready_namespace(&admin, &namespace).await;
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "vera-of-default" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubegql:default:vera" }]
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), &namespace)
        .create(&Default::default(), &binding)
        .await
        .unwrap();

    let cluster = |name: &str| {
        json!({ "i": { "name": name, "mode": "DIRECT", "apiServerUrl": cp.api_url, "bearerToken": cp.admin_token,
                       "caData": cp.ca_pem(), "impersonateCaller": true } })
    };
    let our_cluster =
        server.gql_ok(CREATE, cluster("shared")).await["createCluster"]["id"].as_str().unwrap().to_owned();
    let their_cluster = server.gql_as(&red_admin, &[], CREATE, cluster("shared")).await;
    let their_cluster =
        their_cluster["data"]["createCluster"]["id"].as_str().unwrap_or_else(|| panic!("{their_cluster}")).to_owned();
    let query = "query($id: ID!, $ns: String!) { cluster(id: $id) { resources(kind: \"ConfigMap\", namespace: $ns) { edges { node { metadata { name } } } } } }";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        // RBAC caches settle within moments of the binding's creation.
        let body = server.gql_as(&ours, &[], query, json!({ "id": our_cluster, "ns": namespace })).await;
        if body.get("errors").is_none() {
            assert!(body.to_string().contains("kube-root-ca.crt"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the default tenant's vera was never allowed: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = server.gql_as(&theirs, &[], query, json!({ "id": their_cluster, "ns": namespace })).await;
    assert_eq!(first_error(&body).0, "FORBIDDEN", "red's vera acted as default's vera: {body}");
    assert!(first_error(&body).1.contains("kubegql:red:vera"), "{body}");
}

/// SECURITY.md, "Addresses": a host name is checked when it is resolved, and the client connects
/// to the address that was checked while the name still verifies the certificate.
#[tokio::test(flavor = "multi_thread")]
async fn host_names_are_checked_when_resolved() {
    let cp = ControlPlane::get();
    let by_name = cp.api_url.replace("127.0.0.1", "localhost");
    assert_ne!(by_name, cp.api_url);
    let input = json!({ "i": { "name": "named", "mode": "DIRECT", "apiServerUrl": by_name,
                               "bearerToken": cp.admin_token, "caData": cp.ca_pem() } });

    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let body = server.gql(TEST, input.clone()).await;
    assert_eq!(body["data"]["testClusterConnection"]["reachable"], true, "{body}");

    // The operator closes loopback: the same name is refused once resolved.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.connection_policy.deny_cidrs = vec!["127.0.0.0/8".into(), "::1/128".into()];
    let server = TestServer::start_with(settings).await;
    let body = server.gql(TEST, input).await;
    let status = &body["data"]["testClusterConnection"];
    assert_eq!(status["reachable"], false, "{body}");
    assert_eq!(status["errorKind"], "CONFIG", "{body}");
    assert!(status["error"].as_str().unwrap_or_default().contains("not allowed"), "{body}");
}
