//! The client factory and cache against the real control plane: each connection mode connects
//! and lists namespaces; bad credentials, a wrong CA, a stopped server and a deleted cluster each
//! give the right error; a cached cluster costs no database read.

mod common;

use std::time::Duration;

use base64::Engine;

use common::control_plane::ControlPlane;
use common::{Backend, TEST_CA_PEM, TestDb, TestServer, first_error, in_cluster_settings, settings_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const CREATE: &str = "mutation($input: CreateClusterInput!) { createCluster(input: $input) { id } }";
const STATUS: &str = "query($id: ID!) { cluster(id: $id) { status(refresh: true) {
    reachable serverVersion latencyMs checkedAt error errorKind } } }";

async fn create(server: &TestServer, input: Value) -> String {
    let data = server.gql_ok(CREATE, json!({ "input": input })).await;
    data["createCluster"]["id"].as_str().unwrap().to_owned()
}

async fn status(server: &TestServer, id: &str) -> Value {
    server.gql_ok(STATUS, json!({ "id": id })).await["cluster"]["status"].clone()
}

/// Lists namespaces through the client kubegql built for the cluster.
async fn list_namespaces(server: &TestServer, id: &str) -> Vec<String> {
    let client = server.server.connections.client(id).await.expect("client");
    let namespaces: Api<Namespace> = Api::all(client);
    let list = namespaces.list(&ListParams::default()).await.expect("list namespaces");
    list.items.into_iter().filter_map(|n| n.metadata.name).collect()
}

fn direct(cp: &ControlPlane, name: &str) -> Value {
    json!({ "name": name, "mode": "DIRECT", "apiServerUrl": cp.api_url,
            "bearerToken": cp.admin_token, "caData": cp.ca_pem() })
}

fn assert_reachable(status: &Value) {
    assert_eq!(status["reachable"], true, "{status}");
    assert!(status["serverVersion"].as_str().unwrap().starts_with("v1.3"), "{status}");
    assert!(status["latencyMs"].is_u64());
    assert!(status["error"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn kubeconfig_mode_with_a_context() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    // The operator places the control plane's kubeconfig in the tenant's directory.
    let kubeconfig_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&cp.kubeconfig, kubeconfig_dir.path().join("kubeconfig")).unwrap();
    let mut settings = settings_for(&db);
    settings.connection_policy.kubeconfig_dirs = vec![format!("default={}", kubeconfig_dir.path().display())];
    let server = TestServer::start_with(settings).await;
    let id = create(
        &server,
        json!({ "name": "kc", "mode": "KUBECONFIG",
        "kubeconfigPath": "kubeconfig", "kubeconfigContext": "admin" }),
    )
    .await;
    assert_reachable(&status(&server, &id).await);
    assert!(list_namespaces(&server, &id).await.contains(&"kube-system".to_owned()));

    // The limited context of the same file is a different identity: listing namespaces is denied.
    let limited = create(
        &server,
        json!({ "name": "kc-limited", "mode": "KUBECONFIG",
        "kubeconfigPath": "kubeconfig", "kubeconfigContext": "limited" }),
    )
    .await;
    let client = server.server.connections.client(&limited).await.unwrap();
    let err = Api::<Namespace>::all(client).list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 403), "{err:?}");

    // An inline kubeconfig works the same, with its CA as data (a file path in a kubeconfig
    // sent through the API is refused: the server's files are not the caller's).
    let inline = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    let body = server
        .gql(
            "mutation($i: CreateClusterInput!) { createCluster(input: $i) { id } }",
            json!({ "i": { "name": "kc-path", "mode": "KUBECONFIG", "kubeconfig": inline } }),
        )
        .await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT", "{body}");
    assert!(first_error(&body).1.contains("certificate-authority"), "{body}");
    let ca = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&cp.ca_file).unwrap());
    let inline: String = inline
        .lines()
        .map(|line| match line.trim_start().strip_prefix("certificate-authority: ") {
            Some(_) => format!("    certificate-authority-data: {ca}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    let id = create(&server, json!({ "name": "kc-inline", "mode": "KUBECONFIG", "kubeconfig": inline })).await;
    assert_reachable(&status(&server, &id).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_mode_with_url_token_and_ca() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = create(&server, direct(&cp, "direct")).await;
    assert_reachable(&status(&server, &id).await);
    assert!(list_namespaces(&server, &id).await.contains(&"default".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_mode_connects_without_a_ca_and_says_so() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let secure = create(&server, direct(&cp, "secure")).await;
    let s = status_with_warnings(&server, &secure).await;
    assert_eq!(s["warnings"], json!([]));
    let mut input = direct(&cp, "insecure");
    input["caData"] = Value::Null;
    input["insecureSkipTlsVerify"] = json!(true);
    let id = create(&server, input).await;
    let s = status_with_warnings(&server, &id).await;
    assert_eq!(s["reachable"], true, "{s}");
    assert!(s["warnings"][0].as_str().unwrap().contains("TLS verification is disabled"), "{s}");
    // Without the flag and without a CA, the control plane's private CA is not trusted.
    let mut input = direct(&cp, "no-ca");
    input["caData"] = Value::Null;
    let id = create(&server, input).await;
    assert_eq!(status(&server, &id).await["errorKind"], "TLS");
}

async fn status_with_warnings(server: &TestServer, id: &str) -> Value {
    let query = "query($id: ID!) { cluster(id: $id) { status(refresh: true) { reachable warnings } } }";
    server.gql_ok(query, json!({ "id": id })).await["cluster"]["status"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn in_cluster_mode_with_overridden_paths() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &cp.admin_token).unwrap();
    let server = TestServer::start_with(in_cluster_settings(&db, &cp, &token_file)).await;
    let id = create(&server, json!({ "name": "pod", "mode": "IN_CLUSTER" })).await;
    assert_reachable(&status(&server, &id).await);
    assert!(list_namespaces(&server, &id).await.contains(&"default".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_token_wrong_ca_and_stopped_server_are_told_apart() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.clients.connect_timeout_secs = 2;
    let server = TestServer::start_with(settings).await;

    let mut input = direct(&cp, "wrong-token");
    input["bearerToken"] = json!("not-a-valid-token");
    let id = create(&server, input).await;
    let s = status(&server, &id).await;
    assert_eq!((s["reachable"].clone(), s["errorKind"].clone()), (json!(true), json!("UNAUTHORIZED")), "{s}");
    assert!(s["error"].as_str().unwrap().contains("refused the credentials"));
    assert!(!s.to_string().contains("not-a-valid-token"));

    let mut input = direct(&cp, "wrong-ca");
    input["caData"] = json!(TEST_CA_PEM);
    let id = create(&server, input).await;
    let s = status(&server, &id).await;
    assert_eq!((s["reachable"].clone(), s["errorKind"].clone()), (json!(false), json!("TLS")), "{s}");

    // A port where nothing listens: the server is stopped.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut input = direct(&cp, "stopped");
    input["apiServerUrl"] = json!(format!("https://127.0.0.1:{port}"));
    let id = create(&server, input).await;
    let s = status(&server, &id).await;
    assert_eq!((s["reachable"].clone(), s["errorKind"].clone()), (json!(false), json!("UNREACHABLE")), "{s}");
    let err = server.server.connections.client(&id).await;
    // Building a client does not connect; using it fails with CLUSTER_UNREACHABLE in resolvers.
    assert!(err.is_ok());

    // A server that accepts but never answers: the timeout ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut input = direct(&cp, "silent");
    input["apiServerUrl"] = json!(format!("https://127.0.0.1:{silent_port}"));
    let id = create(&server, input).await;
    let s = tokio::time::timeout(Duration::from_secs(30), status(&server, &id)).await.expect("no hang");
    assert_eq!((s["reachable"].clone(), s["errorKind"].clone()), (json!(false), json!("TIMEOUT")), "{s}");
    hold.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn test_cluster_connection_checks_without_writing() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let query = "mutation($input: CreateClusterInput!) { testClusterConnection(input: $input) {
        reachable serverVersion errorKind } }";
    let data = server.gql_ok(query, json!({ "input": direct(&cp, "probe") })).await;
    assert_eq!(data["testClusterConnection"]["reachable"], true, "{data}");
    let mut bad = direct(&cp, "probe");
    bad["bearerToken"] = json!("nope");
    let data = server.gql_ok(query, json!({ "input": bad })).await;
    assert_eq!(data["testClusterConnection"]["errorKind"], "UNAUTHORIZED");
    let mut invalid = direct(&cp, "probe");
    invalid["apiServerUrl"] = json!("http://insecure");
    let body = server.gql(query, json!({ "input": invalid })).await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT");
    assert_eq!(server.cluster_count().await, 0, "nothing was saved");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_cluster_loses_its_client_at_once() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = create(&server, direct(&cp, "short-lived")).await;
    server.server.connections.client(&id).await.unwrap();
    assert_eq!(server.server.connections.clients().len(), 1);
    server.gql_ok("mutation($id: ID!) { deleteCluster(id: $id) { id } }", json!({ "id": id })).await;
    assert_eq!(server.server.connections.clients().len(), 0, "invalidated on delete");
    let body = server.gql(STATUS, json!({ "id": id })).await;
    assert_eq!(first_error(&body).0, "NOT_FOUND");
    assert!(server.server.connections.client(&id).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_rebuilds_the_client_with_the_new_credentials() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let mut input = direct(&cp, "rotating");
    input["bearerToken"] = json!("stale-token");
    let id = create(&server, input).await;
    assert_eq!(status(&server, &id).await["errorKind"], "UNAUTHORIZED");
    let update =
        "mutation($id: ID!, $token: String!) { updateCluster(id: $id, input: { bearerToken: $token }) { id } }";
    server.gql_ok(update, json!({ "id": id, "token": cp.admin_token })).await;
    assert_reachable(&status(&server, &id).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_cluster_costs_no_database_read() {
    let cp = ControlPlane::get();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await;
        let server = TestServer::start(&db).await;
        let id = create(&server, direct(&cp, "hot")).await;
        // A fresh server prefetches every cluster at start-up.
        server.server.stop().await.unwrap();
        let server = TestServer::start(&db).await;
        let connections = &server.server.connections;
        let before = server.server.db.query_count();
        for _ in 0..100 {
            connections.client(&id).await.unwrap();
        }
        assert_eq!(server.server.db.query_count(), before, "{backend:?}: no query for a cached cluster");
        let cache = &server.server.connections.clients().stats;
        assert_eq!(cache.builds.load(std::sync::atomic::Ordering::Relaxed), 1, "one build, then hits");

        // Through GraphQL too, once the token is verified.
        server.gql_ok("query($id: ID!) { cluster(id: $id) { name } }", json!({ "id": id })).await;
        let before = server.server.db.query_count();
        for _ in 0..20 {
            server.gql_ok("query($id: ID!) { cluster(id: $id) { name mode } }", json!({ "id": id })).await;
        }
        assert_eq!(server.server.db.query_count(), before, "{backend:?}: GraphQL hot path reads nothing");
        let ns = list_namespaces(&server, &id).await;
        assert!(ns.contains(&"default".to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_health_check_evicts_clients_of_a_cluster_that_stops_answering() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.clients.connect_timeout_secs = 1;
    let server = TestServer::start_with(settings).await;
    // A TCP proxy in front of the API server, which the test can stop.
    let upstream = cp.api_url.trim_start_matches("https://").to_owned();
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let tunnels = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let proxy_task = {
        let tunnels = tunnels.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = proxy.accept().await {
                let upstream = upstream.clone();
                tunnels.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        })
    };
    let mut input = direct(&cp, "flaky");
    input["apiServerUrl"] = json!(format!("https://127.0.0.1:{proxy_port}"));
    input["tlsServerName"] = json!("127.0.0.1");
    let id = create(&server, input).await;
    assert_reachable(&status(&server, &id).await);
    server.server.connections.client(&id).await.unwrap();
    server.server.connections.health_check_once(16).await;
    assert_eq!(server.server.connections.clients().len(), 1, "a healthy cluster keeps its client");

    // Stop the proxy: no new connections, and the pooled ones are cut.
    proxy_task.abort();
    let _ = proxy_task.await;
    for tunnel in tunnels.lock().unwrap().drain(..) {
        tunnel.abort();
    }
    server.server.connections.health_check_once(16).await;
    assert_eq!(server.server.connections.clients().len(), 0, "evicted after a failed check");
    let s = server
        .gql_ok("query($id: ID!) { cluster(id: $id) { status { reachable errorKind } } }", json!({ "id": id }))
        .await;
    assert_eq!(s["cluster"]["status"]["reachable"], false, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_health_round_checks_clusters_concurrently_and_no_more_than_its_bound_at_once() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.clients.connect_timeout_secs = 1;
    let server = TestServer::start_with(settings).await;
    // A listener on loopback that takes connections and never answers: each check waits its
    // whole timeout (2 s). It counts the connections it has taken.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (taken, held) = (taken.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = silent.accept().await {
                taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.lock().unwrap().push(socket);
            }
        });
    }
    let mut ids = Vec::new();
    for i in 0..12 {
        let mut input = direct(&cp, &format!("silent-{i}"));
        input["apiServerUrl"] = json!(format!("https://127.0.0.1:{port}"));
        input["tlsServerName"] = json!("127.0.0.1");
        let id = create(&server, input).await;
        server.server.connections.client(&id).await.unwrap();
        ids.push(id);
    }
    assert_eq!(server.server.connections.clients().len(), 12);
    // Building a client may already have tried the address: count from here.
    common::eventually("the builds' connections settle", Duration::from_secs(5), || async {
        let before = taken.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        taken.load(std::sync::atomic::Ordering::SeqCst) == before
    })
    .await;
    let before = taken.load(std::sync::atomic::Ordering::SeqCst);
    let connections = server.server.connections.clone();
    let round = tokio::spawn(async move { connections.health_check_once(4).await });
    // The first four checks connect at once; the fifth waits for one of them to time out (2 s).
    common::eventually("four checks at once", Duration::from_secs(5), || async {
        taken.load(std::sync::atomic::Ordering::SeqCst) - before >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst) - before, 4, "no more than the bound at once");
    round.await.unwrap();
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst) - before, 12, "every cluster was checked");
    assert_eq!(server.server.connections.clients().len(), 0, "each silent cluster lost its client");
    let health = server.server.connections.health_rounds();
    assert_eq!(health.last_checked.load(std::sync::atomic::Ordering::Relaxed), 12);
    assert_eq!(health.last_unreachable.load(std::sync::atomic::Ordering::Relaxed), 12);
}

/// A projected service-account token rotates: the same cached client picks up the new file
/// (kube-rs re-reads it within about a minute), without kubegql rebuilding anything.
#[tokio::test(flavor = "multi_thread")]
async fn in_cluster_mode_follows_a_rotated_token_file() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "expired-token-before-rotation").unwrap();
    let server = TestServer::start_with(in_cluster_settings(&db, &cp, &token_file)).await;
    let id = create(&server, json!({ "name": "rotating-pod", "mode": "IN_CLUSTER" })).await;
    assert_eq!(status(&server, &id).await["errorKind"], "UNAUTHORIZED");

    std::fs::write(&token_file, &cp.admin_token).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut last = Value::Null;
    while std::time::Instant::now() < deadline {
        last = status(&server, &id).await;
        if last["errorKind"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_reachable(&last);
    let builds = server.server.connections.clients().stats.builds.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(builds, 1, "the same client, with the token re-read");
}
