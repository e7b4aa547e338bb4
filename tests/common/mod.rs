//! Shared test support: real databases (a SQLite file, or a fresh PostgreSQL database per test)
//! and the real server started in process on a free port.
#![allow(dead_code)]

use std::path::PathBuf;

use base64::Engine;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use kubegql::clients::ClientSettings;
use kubegql::clients::connections::UpkeepSettings;
use kubegql::clusters::policy::ConnectionPolicySettings;
use kubegql::server::{RunningServer, start};
use kubegql::settings::{ApiLimits, KeySettings, ServeSettings, StoreSettings};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "kgq_test-admin-token-0123456789abcdef";

/// A database for one test. Holds the temp dir alive for SQLite.
pub struct TestDb {
    pub url: String,
    pub sqlite_file: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let file = dir.path().join("kubegql.db");
                TestDb { url: file.display().to_string(), sqlite_file: Some(file), _dir: Some(dir) }
            }
            Backend::Postgres => TestDb { url: fresh_postgres_database().await, sqlite_file: None, _dir: None },
        }
    }

    /// A fresh database on the PostgreSQL server of its own that a test may stop and start
    /// (`scripts/postgres-ctl faults stop|start`).
    pub async fn on_stoppable_postgres() -> TestDb {
        let admin = std::env::var("KUBEGQL_TEST_POSTGRES_FAULTS_URL").unwrap_or_else(|_| {
            panic!(
                "KUBEGQL_TEST_POSTGRES_FAULTS_URL is not set: run the suite with scripts/test, which starts \
                 it (scripts/postgres-up faults)"
            )
        });
        TestDb { url: fresh_database_on(&admin).await, sqlite_file: None, _dir: None }
    }
}

/// The admin URL of the test PostgreSQL server. The README's test command sets it; running the
/// PostgreSQL tests without it is a setup error, not a reason to skip them.
pub fn postgres_admin_url() -> String {
    std::env::var("KUBEGQL_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "KUBEGQL_TEST_POSTGRES_URL is not set: run the suite with scripts/test, which starts \
             PostgreSQL, or point it at a role that may CREATE DATABASE"
        )
    })
}

/// Creates an empty database for one test and returns its URL.
pub async fn fresh_postgres_database() -> String {
    fresh_database_on(&postgres_admin_url()).await
}

/// Creates an empty database on the server of `admin` (a role that may create databases).
pub async fn fresh_database_on(admin: &str) -> String {
    let name = format!("kubegql_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = AsyncPgConnection::establish(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}"));
    conn.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    let (base, _) = admin.rsplit_once('/').expect("URL with a database name");
    format!("{base}/{name}")
}

pub fn test_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([42u8; 32])
}

pub fn settings_for(db: &TestDb) -> ServeSettings {
    ServeSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreSettings { database_url: db.url.clone(), db_pool_size: 4, outage_grace_secs: 300 },
        keys: KeySettings { master_key: Some(test_key()), master_key_file: None, previous_master_keys: vec![] },
        audit: Default::default(),
        tunnels: Default::default(),
        origins: Default::default(),
        bootstrap_admin_token: Some(ADMIN_TOKEN.into()),
        oidc_config: None,
        limits: ApiLimits::default(),
        clients: ClientSettings::default(),
        // The tests' tenant may use the in-cluster identity (a test-set host, never a real pod's).
        connection_policy: ConnectionPolicySettings {
            in_cluster_tenants: vec!["default".into()],
            ..Default::default()
        },
        upkeep: UpkeepSettings::default(),
        watch: kubegql::watch::WatchSettings::default(),
        logs: Default::default(),
    }
}

/// Settings for a server that runs "in a pod" of the test control plane: its IN_CLUSTER clusters
/// reach the control plane with the CA and the service-account token in `token_file`.
pub fn in_cluster_settings(
    db: &TestDb,
    cp: &control_plane::ControlPlane,
    token_file: &std::path::Path,
) -> ServeSettings {
    let rest = cp.api_url.strip_prefix("https://").expect("an https URL");
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':').expect("host:port");
    let mut settings = settings_for(db);
    settings.clients.in_cluster_host = Some(host.to_owned());
    settings.clients.in_cluster_port = port.to_owned();
    settings.clients.in_cluster_token_file = token_file.to_owned();
    settings.clients.in_cluster_ca_file = cp.ca_file.clone();
    settings
}

pub struct TestServer {
    pub server: RunningServer,
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
}

impl TestServer {
    pub async fn start(db: &TestDb) -> TestServer {
        Self::start_with(settings_for(db)).await
    }

    pub async fn start_with(settings: ServeSettings) -> TestServer {
        let server = start(&settings).await.expect("server starts");
        let token = settings
            .bootstrap_admin_token
            .clone()
            .or_else(|| server.generated_admin_token.as_ref().map(|t| t.expose_secret().to_owned()))
            .unwrap();
        TestServer { base: format!("http://{}", server.addr), server, client: reqwest::Client::new(), token }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a GraphQL request with the admin token and returns the JSON body.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        let response = self
            .client
            .post(self.url("/graphql"))
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "GraphQL over HTTP answers 200 for executed requests");
        response.json().await.expect("JSON body")
    }

    /// POSTs any JSON body (a batch, a request with an operation name) to `path` with the admin
    /// token and returns the JSON answer.
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let response =
            self.client.post(self.url(path)).bearer_auth(&self.token).json(&body).send().await.expect("request");
        response.json().await.expect("JSON body")
    }

    /// POSTs a GraphQL request with another token and extra headers; returns the JSON body.
    pub async fn gql_as(&self, token: &str, headers: &[(&str, &str)], query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        response.json().await.expect("JSON body")
    }

    /// Creates a principal in the admin's tenant and returns (id, token).
    pub async fn principal(&self, name: &str, role: &str) -> (String, String) {
        let data = self
            .gql_ok(
                "mutation($name: String!, $role: Role!) { createPrincipal(input: { name: $name, role: $role }) { id } }",
                json!({ "name": name, "role": role }),
            )
            .await;
        let id = data["createPrincipal"]["id"].as_str().unwrap().to_owned();
        let data = self
            .gql_ok(
                "mutation($id: ID!) { createApiToken(principalId: $id, name: \"test\") { token } }",
                json!({ "id": id }),
            )
            .await;
        (id, data["createApiToken"]["token"].as_str().unwrap().to_owned())
    }

    /// Subscribes over Server-Sent Events (`POST /graphql/stream`): each `next` payload arrives on
    /// the channel; dropping the receiver closes the connection. A refused request gives its
    /// HTTP status and body.
    pub async fn subscribe_sse(
        &self,
        token: &str,
        query: &str,
        variables: Value,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<Value>, (u16, Value)> {
        use futures_util::StreamExt;
        let response = self
            .client
            .post(self.url("/graphql/stream"))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request");
        if response.status() != 200 {
            let status = response.status().as_u16();
            return Err((status, response.json().await.unwrap_or(Value::Null)));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut body = response.bytes_stream();
        tokio::spawn(async move {
            let mut buffer = String::new();
            // Stop reading (and so close the connection) once the receiver is dropped.
            while let Some(Ok(chunk)) = tokio::select! { chunk = body.next() => chunk, _ = tx.closed() => None } {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let mut event = "";
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(e) = line.strip_prefix("event:") {
                            event = e.trim();
                        } else if let Some(d) = line.strip_prefix("data:") {
                            data.push_str(d.trim_start());
                        }
                    }
                    if event == "next" && tx.send(serde_json::from_str(&data).unwrap_or(Value::Null)).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// Like `gql`, but asserts success and returns `data`.
    pub async fn gql_ok(&self, query: &str, variables: Value) -> Value {
        let body = self.gql(query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Registers the test control plane as a DIRECT cluster (its admin token and CA) with any
    /// extra input fields, and returns the cluster's id.
    pub async fn control_plane_cluster(&self, cp: &control_plane::ControlPlane, name: &str, extra: Value) -> String {
        let mut input = json!({ "name": name, "mode": "DIRECT", "apiServerUrl": cp.api_url,
                                "bearerToken": cp.admin_token, "caData": cp.ca_pem() });
        if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
            input.extend(extra.clone());
        }
        let data = self
            .gql_ok("mutation($i: CreateClusterInput!) { createCluster(input: $i) { id } }", json!({ "i": input }))
            .await;
        data["createCluster"]["id"].as_str().expect("a cluster id").to_owned()
    }

    pub async fn cluster_count(&self) -> i64 {
        self.server.db.count_clusters().await.unwrap()
    }
}

/// Polls `condition` until it holds; fails naming `what` once `within` has passed.
pub async fn eventually<F, Fut>(what: &str, within: std::time::Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Creates a principal in any tenant with the CLI, as the server's operator would, and returns
/// its first token.
pub fn cli_principal(db: &TestDb, tenant: &str, name: &str, role: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubegql"))
        .args(["principal", "create", "--name", name, "--role", role, "--tenant", tenant, "--database-url", &db.url])
        .env("KUBEGQL_MASTER_KEY", test_key())
        .output()
        .expect("kubegql principal create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().lines().last().unwrap_or_default().trim().to_owned();
    assert!(token.starts_with("kgq_"), "{token}");
    token
}

/// The `extensions.code` of the first error, with its message for assertion output.
pub fn first_error(body: &Value) -> (String, String) {
    let err = &body["errors"][0];
    assert!(!err.is_null(), "expected an error, got {body}");
    (
        err["extensions"]["code"].as_str().unwrap_or("<none>").to_owned(),
        err["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A real self-signed CA certificate (PEM), made for the tests.
pub const TEST_CA_PEM: &str = include_str!("../fixtures/test-ca.pem");
pub mod browser;
pub mod control_plane;
pub mod oidc;

/// Sends raw bytes (a request head, say) and reads the first answer, without sending a body: a
/// refusal by declared length arrives before the body would.
pub async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("the server answers before the body is sent")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
