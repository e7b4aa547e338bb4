//! The GraphQL API over HTTP, through the real server: clusters, pagination, authentication,
//! limits, and every kind of bad input the API must refuse cleanly.

use crate::common;

use common::{Backend, TEST_CA_PEM, TestDb, TestServer, first_error, settings_for};
use serde_json::{Value, json};

const CREATE: &str = "mutation($input: CreateClusterInput!) { createCluster(input: $input) {
    id name mode apiServerUrl hasBearerToken hasCaData caFingerprintSha256 insecureSkipTlsVerify
    defaultNamespace labels { key value } credentialKeyId createdAt updatedAt } }";

fn direct_input(name: &str) -> Value {
    json!({
        "name": name,
        "mode": "DIRECT",
        "apiServerUrl": "https://127.0.0.1:6443",
        "bearerToken": "api-suite-token-c0ffee",
        "caData": TEST_CA_PEM,
        "labels": [{ "key": "env", "value": "dev" }],
    })
}

async fn server() -> (TestDb, TestServer) {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    (db, server)
}

async fn create(server: &TestServer, input: Value) -> Value {
    server.gql(CREATE, json!({ "input": input })).await
}

/// Asserts the request failed with `code`, mentions `needle`, and changed no cluster.
async fn assert_refused(server: &TestServer, body: &Value, code: &str, needle: &str, clusters_before: i64) {
    let (found, message) = first_error(body);
    assert_eq!(found, code, "{body}");
    assert!(message.contains(needle), "message {message:?} should mention {needle:?}");
    assert_eq!(server.cluster_count().await, clusters_before, "nothing was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_list_and_read_a_cluster() {
    let (_db, server) = server().await;
    let data = server.gql_ok(CREATE, json!({ "input": direct_input("prod") })).await;
    let cluster = &data["createCluster"];
    assert_eq!(cluster["name"], "prod");
    assert_eq!(cluster["mode"], "DIRECT");
    assert_eq!(cluster["hasBearerToken"], true);
    assert_eq!(cluster["hasCaData"], true);
    assert_eq!(cluster["insecureSkipTlsVerify"], false);
    assert_eq!(cluster["labels"], json!([{ "key": "env", "value": "dev" }]));
    assert!(cluster["caFingerprintSha256"].as_str().unwrap().starts_with("A9:41:0A"));
    let text = data.to_string();
    assert!(!text.contains("api-suite-token-c0ffee") && !text.contains("BEGIN CERTIFICATE"));

    let id = cluster["id"].as_str().unwrap();
    let one = server.gql_ok("query($id: ID!) { cluster(id: $id) { name } }", json!({ "id": id })).await;
    assert_eq!(one["cluster"]["name"], "prod");
    let list = server.gql_ok("{ clusters { edges { node { id } } pageInfo { hasNextPage } } }", json!({})).await;
    assert_eq!(list["clusters"]["edges"][0]["node"]["id"], id);
    assert_eq!(list["clusters"]["pageInfo"]["hasNextPage"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_keeps_absent_fields_and_clears_nulls() {
    let (_db, server) = server().await;
    let data = server.gql_ok(CREATE, json!({ "input": direct_input("edit-me") })).await;
    let id = data["createCluster"]["id"].as_str().unwrap().to_owned();
    let update = "mutation($id: ID!, $input: UpdateClusterInput!) { updateCluster(id: $id, input: $input) {
        name hasBearerToken hasCaData caFingerprintSha256 defaultNamespace } }";
    let data = server
        .gql_ok(update, json!({ "id": id, "input": { "name": "edited", "caData": null, "defaultNamespace": "apps" } }))
        .await;
    assert_eq!(
        data["updateCluster"],
        json!({ "name": "edited", "hasBearerToken": true, "hasCaData": false,
                "caFingerprintSha256": null, "defaultNamespace": "apps" })
    );
    // Removing the only credential of a DIRECT cluster is refused as a whole.
    let body = server.gql(update, json!({ "id": id, "input": { "bearerToken": null, "name": "x" } })).await;
    assert_eq!(first_error(&body).0, "BAD_USER_INPUT");
    let still =
        server.gql_ok("query($id: ID!) { cluster(id: $id) { name hasBearerToken } }", json!({ "id": id })).await;
    assert_eq!(still["cluster"], json!({ "name": "edited", "hasBearerToken": true }));

    let deleted = server.gql_ok("mutation($id: ID!) { deleteCluster(id: $id) { id } }", json!({ "id": id })).await;
    assert_eq!(deleted["deleteCluster"]["id"], id.as_str());
    assert_eq!(server.cluster_count().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_follow_cursors_to_the_end() {
    let (_db, server) = server().await;
    for i in 0..7 {
        server.gql_ok(CREATE, json!({ "input": direct_input(&format!("c{i}")) })).await;
    }
    let query = "query($after: String) { clusters(first: 3, after: $after) {
        edges { cursor node { name } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
    let mut names = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let data = server.gql_ok(query, json!({ "after": after })).await;
        let conn = &data["clusters"];
        pages += 1;
        names.extend(conn["edges"].as_array().unwrap().iter().map(|e| e["node"]["name"].as_str().unwrap().to_owned()));
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], pages > 1);
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_cluster_input_is_refused_and_writes_nothing() {
    let dir = TestDb::new(Backend::Sqlite).await;
    // The operator gives the tenant a directory of kubeconfig files (SECURITY.md).
    let kubeconfig_dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(&dir);
    settings.connection_policy.kubeconfig_dirs = vec![format!("default={}", kubeconfig_dir.path().display())];
    let server = TestServer::start_with(settings).await;
    server.gql_ok(CREATE, json!({ "input": direct_input("taken") })).await;
    let kubeconfig = kubeconfig_dir.path().join("kubeconfig.yaml");
    std::fs::write(&kubeconfig, KUBECONFIG).unwrap();
    let kubeconfig = kubeconfig.display().to_string();

    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("duplicate name", direct_input("taken"), "CONFLICT", "already exists"),
        ("invalid name", direct_input("not a name!"), "BAD_USER_INPUT", "not a valid cluster name"),
        (
            "DIRECT without URL",
            json!({ "name": "a", "mode": "DIRECT", "bearerToken": "t" }),
            "BAD_USER_INPUT",
            "apiServerUrl",
        ),
        (
            "http URL",
            json!({ "name": "a", "mode": "DIRECT", "apiServerUrl": "http://127.0.0.1:6443", "bearerToken": "t" }),
            "BAD_USER_INPUT",
            "https",
        ),
        (
            "DIRECT without credentials",
            json!({ "name": "a", "mode": "DIRECT", "apiServerUrl": "https://k8s.example:6443" }),
            "BAD_USER_INPUT",
            "bearerToken",
        ),
        (
            "CA not PEM",
            json!({ "name": "a", "mode": "DIRECT", "apiServerUrl": "https://k8s.example", "bearerToken": "t", "caData": "not a certificate" }),
            "BAD_USER_INPUT",
            "PEM",
        ),
        (
            "CA with insecure flag",
            json!({ "name": "a", "mode": "DIRECT", "apiServerUrl": "https://k8s.example", "bearerToken": "t", "caData": TEST_CA_PEM, "insecureSkipTlsVerify": true }),
            "BAD_USER_INPUT",
            "caData",
        ),
        (
            "unreadable kubeconfig",
            json!({ "name": "a", "mode": "KUBECONFIG", "kubeconfigPath": "/nonexistent/kubeconfig" }),
            "BAD_USER_INPUT",
            "not allowed for this tenant",
        ),
        (
            "unknown context",
            json!({ "name": "a", "mode": "KUBECONFIG", "kubeconfigPath": kubeconfig, "kubeconfigContext": "nope" }),
            "BAD_USER_INPUT",
            "context \"nope\"",
        ),
        (
            "garbage inline kubeconfig",
            json!({ "name": "a", "mode": "KUBECONFIG", "kubeconfig": "{{{: nope" }),
            "BAD_USER_INPUT",
            "not a valid kubeconfig",
        ),
        (
            "field of another mode",
            json!({ "name": "a", "mode": "IN_CLUSTER", "bearerToken": "t" }),
            "BAD_USER_INPUT",
            "IN_CLUSTER",
        ),
        (
            "duplicate label",
            json!({ "name": "a", "mode": "IN_CLUSTER", "labels": [{"key": "k", "value": "1"}, {"key": "k", "value": "2"}] }),
            "BAD_USER_INPUT",
            "twice",
        ),
        ("unknown mode", json!({ "name": "a", "mode": "SSH" }), "BAD_USER_INPUT", "SSH"),
    ];
    for (what, input, code, needle) in cases {
        let body = create(&server, input).await;
        let (found, message) = first_error(&body);
        assert_eq!(found, code, "{what}: {body}");
        assert!(message.contains(needle), "{what}: {message:?} should mention {needle:?}");
        assert!(!body.to_string().contains("secret-in-kubeconfig"), "{what}: kubeconfig content leaked");
        assert_eq!(server.cluster_count().await, 1, "{what}: nothing written");
    }

    // The good kubeconfig with a real context is accepted.
    let ok = create(
        &server,
        json!({ "name": "kc", "mode": "KUBECONFIG", "kubeconfigPath": kubeconfig, "kubeconfigContext": "admin" }),
    )
    .await;
    assert!(ok.get("errors").is_none(), "{ok}");
}

const KUBECONFIG: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
users:
- name: admin
  user:
    token: secret-in-kubeconfig
contexts:
- name: admin
  context:
    cluster: local
    user: admin
current-context: admin
"#;

#[tokio::test(flavor = "multi_thread")]
async fn bad_ids_cursors_and_page_sizes() {
    let (_db, server) = server().await;
    server.gql_ok(CREATE, json!({ "input": direct_input("one") })).await;
    let before = server.cluster_count().await;

    let body = server.gql("{ cluster(id: \"not-a-uuid\") { name } }", json!({})).await;
    assert_refused(&server, &body, "BAD_USER_INPUT", "UUID", before).await;
    let body = server.gql("{ cluster(id: \"00000000-0000-4000-8000-000000000000\") { name } }", json!({})).await;
    assert_refused(&server, &body, "NOT_FOUND", "no cluster", before).await;
    let body =
        server.gql("mutation { deleteCluster(id: \"00000000-0000-4000-8000-000000000000\") { id } }", json!({})).await;
    assert_refused(&server, &body, "NOT_FOUND", "no cluster", before).await;
    let body = server.gql("mutation { updateCluster(id: \"nope\", input: {name: \"x\"}) { id } }", json!({})).await;
    assert_refused(&server, &body, "BAD_USER_INPUT", "UUID", before).await;
    for first in [100000, 501, 0, -5] {
        let body =
            server.gql("query($f: Int) { clusters(first: $f) { edges { cursor } } }", json!({ "f": first })).await;
        assert_refused(&server, &body, "BAD_USER_INPUT", "first must be", before).await;
    }
    let ok = server.gql_ok("{ clusters(first: 500) { edges { cursor } } }", json!({})).await;
    assert_eq!(ok["clusters"]["edges"].as_array().unwrap().len(), 1);
    let body = server.gql("{ clusters(after: \"definitely-not-ours\") { edges { cursor } } }", json!({})).await;
    assert_refused(&server, &body, "BAD_USER_INPUT", "not a cursor", before).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_need_a_valid_token() {
    let (_db, server) = server().await;
    let query = json!({ "query": "{ viewer { name role tenant } }" });
    let no_token = server.client.post(server.url("/graphql")).json(&query).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    assert_eq!(no_token.headers()["www-authenticate"], "Bearer");
    let body: Value = no_token.json().await.unwrap();
    assert_eq!(first_error(&body).0, "UNAUTHENTICATED");

    let wrong = server.client.post(server.url("/graphql")).bearer_auth("kgq_wrong").json(&query).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let get = server.client.get(server.url("/graphql?query=%7Bviewer%7Bname%7D%7D")).send().await.unwrap();
    assert_eq!(get.status(), 401);

    let ok = server.gql_ok("{ viewer { name role tenant } }", json!({})).await;
    assert_eq!(ok["viewer"], json!({ "name": "admin", "role": "ADMIN", "tenant": "default" }));
}

#[tokio::test(flavor = "multi_thread")]
async fn get_serves_queries_but_not_mutations() {
    let (_db, server) = server().await;
    let ok = server
        .client
        .get(server.url("/graphql?query=%7Bviewer%7Bname%7D%7D"))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["data"]["viewer"]["name"], "admin");

    let mutation = "mutation{deleteCluster(id:\"00000000-0000-4000-8000-000000000000\"){id}}";
    let refused = server
        .client
        .get(server.url("/graphql"))
        .query(&[("query", mutation)])
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_and_body_limits() {
    let (_db, server) = server().await;
    // Nesting through introspection is the deepest a client can go in this schema.
    let mut deep = String::from("name");
    for _ in 0..20 {
        deep = format!("ofType {{ {deep} }}");
    }
    let body = server.gql(&format!("{{ __type(name: \"Cluster\") {{ {deep} }} }}"), json!({})).await;
    let (code, message) = first_error(&body);
    assert_eq!(code, "BAD_USER_INPUT", "{body}");
    assert!(message.to_lowercase().contains("nested too deep"), "{message}");

    // GraphiQL's own introspection query stays within the limit.
    let body = server.gql(INTROSPECTION, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert!(body["data"]["__schema"]["types"].as_array().unwrap().len() > 10);

    // A body over the GraphQL route's limit (room for a document and a manifest) is refused from
    // its Content-Length, before the server reads it: send the head, then read the answer
    // (writing it all could race the server closing the socket).
    let limits = kubegql::settings::ApiLimits::default();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.server.addr,
        server.token,
        limits.max_graphql_request_bytes() + 1
    );
    let answer = common::raw_exchange(server.server.addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("BAD_USER_INPUT"), "{answer}");
    // The document itself is held to maxBodyBytes, however large the body may be: one byte over
    // is refused, the largest accepted document is parsed (and answered on its own merits).
    let padded = |len: usize| format!("{{ __typename }}{}", " ".repeat(len - "{ __typename }".len()));
    let over = server
        .client
        .post(server.url("/graphql"))
        .bearer_auth(&server.token)
        .json(&json!({ "query": padded(limits.max_body_bytes + 1) }))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 413);
    let over: Value = over.json().await.unwrap();
    assert!(over["errors"][0]["message"].as_str().unwrap().contains("maxBodyBytes"), "{over}");
    let at_limit = server.gql(&padded(limits.max_body_bytes), json!({})).await;
    assert_eq!(at_limit["data"]["__typename"], "Query", "{at_limit}");

    let response = server
        .client
        .post(server.url("/graphql"))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(server.cluster_count().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_graphiql() {
    let (_db, server) = server().await;
    let health = server.client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = server.client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let page = server.client.get(server.url("/graphiql")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("graphiql.min.js") && page.contains("/assets/graphiql-page.js"), "{page}");
    // The page's own script wires GraphiQL to both endpoints.
    let script = server.client.get(server.url("/assets/graphiql-page.js")).send().await.unwrap().text().await.unwrap();
    assert!(script.contains("\"/graphql\"") && script.contains("/graphql/ws"), "GraphiQL wired to both endpoints");
}

/// The secret given to createCluster is not in the database bytes, on either backend.
async fn created_secrets_stay_sealed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start_with(settings_for(&db)).await;
    let token = "T-sealed-graphql-token-5e1f";
    let mut input = direct_input("sealed");
    input["bearerToken"] = json!(token);
    server.gql_ok(CREATE, json!({ "input": input })).await;
    let dump = match backend {
        Backend::Sqlite => {
            server.server.stop().await.unwrap();
            let file = db.sqlite_file.clone().unwrap();
            let mut bytes = std::fs::read(&file).unwrap();
            bytes.extend(std::fs::read(format!("{}-wal", file.display())).unwrap_or_default());
            bytes
        }
        Backend::Postgres => {
            let out = std::process::Command::new("pg_dump").arg("--dbname").arg(&db.url).output().unwrap();
            assert!(out.status.success());
            out.stdout
        }
    };
    let has = |needle: &str| dump.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("sealed"));
    assert!(!has(token));
    assert!(!has(TEST_CA_PEM.lines().nth(1).unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn created_secrets_stay_sealed_sqlite() {
    created_secrets_stay_sealed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn created_secrets_stay_sealed_postgres() {
    created_secrets_stay_sealed(Backend::Postgres).await;
}

const INTROSPECTION: &str = r#"query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}"#;

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_carries_the_request_id_the_audit_record_names() {
    let (_db, server) = server().await;
    let post = |id: Option<String>, token: Option<&str>, query: &str| {
        let mut request = server.client.post(server.url("/graphql")).json(&json!({ "query": query }));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let id_of = |response: &reqwest::Response| {
        response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    let mutation = r#"mutation { createCluster(input: { name: "traced", mode: DIRECT, apiServerUrl: "https://127.0.0.1:9", bearerToken: "t" }) { id } }"#;

    // The client's id comes back and names the audit record.
    let response = post(Some("trace-123".into()), Some(&server.token), mutation).await.unwrap();
    assert_eq!(id_of(&response), "trace-123");
    let events = server.gql_ok("{ auditEvents(first: 1) { edges { node { requestId field } } } }", json!({})).await;
    assert_eq!(events["auditEvents"]["edges"][0]["node"]["requestId"], "trace-123", "{events}");

    // An unusable id (too long, or not visible text) is replaced by a new UUID, as is a missing one.
    for sent in [Some("x".repeat(200)), None] {
        let response = post(sent.clone(), Some(&server.token), "{ viewer { name } }").await.unwrap();
        let got = id_of(&response);
        assert!(uuid::Uuid::parse_str(&got).is_ok(), "{sent:?} gave {got:?}");
    }
    // Refusals carry one too.
    let refused = post(Some("trace-401".into()), None, "{ viewer { name } }").await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(id_of(&refused), "trace-401");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_time_each_route_by_its_pattern() {
    let (_db, server) = server().await;
    server.gql_ok("{ viewer { name } }", json!({})).await;
    let unauthenticated = server
        .client
        .post(server.url("/api/v1/clusters/00000000-0000-4000-8000-000000000000/apply"))
        .body("kind: ConfigMap")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let response = server.client.get(server.url("/metrics")).send().await.unwrap();
    assert!(
        response.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().starts_with("application/openmetrics-text"),
    );
    let text = response.text().await.unwrap();
    let count = |labels: &str| -> u64 {
        let line = format!("kubegql_http_request_duration_seconds_count{{{labels}}} ");
        text.lines().find_map(|l| l.strip_prefix(&line)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    assert_eq!(count(r#"route="/graphql",method="POST",status="200""#), 1, "{text}");
    // The route's pattern, not the path with its id.
    assert_eq!(count(r#"route="/api/v1/clusters/{id}/apply",method="POST",status="401""#), 1, "{text}");
    assert!(!text.contains("00000000-0000-4000-8000-000000000000"), "{text}");
    assert!(text.contains("kubegql_http_request_duration_seconds_bucket{"), "{text}");
    // The server's figures are still there, counters with their _total.
    for name in ["kubegql_watch_upstreams 0\n", "kubegql_client_cache_entries 0\n", "kubegql_db_queries_total "] {
        assert!(text.contains(name), "{name:?} missing from {text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// A query's cost is checked before it runs: lists by their `first`, podLogs by its bytes, calls
/// to a cluster by their count, aliases each; at the budget passes, one over is refused, naming
/// the budget.
#[tokio::test(flavor = "multi_thread")]
async fn queries_are_held_to_a_cost_budget() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let cluster = "00000000-0000-4000-8000-000000000000";
    // A thousand aliases of a 1 MiB log, in a 70 KB request.
    let logs: String = (0..1000)
        .map(|i| format!("l{i}: podLogs(clusterId: \"{cluster}\", namespace: \"n\", pod: \"p\") {{ text }} "))
        .collect();
    let body = server.gql(&format!("{{ {logs} }}"), json!({})).await;
    let (code, message) = first_error(&body);
    assert_eq!(code, "BAD_USER_INPUT", "{body}");
    assert!(message.contains("budget of 50000 (maxQueryComplexity)"), "{message}");
    // 500 events of each of 500 objects.
    let events = format!(
        "{{ cluster(id: \"{cluster}\") {{ resources(kind: \"Pod\", first: 500) {{ nodes {{ events(first: 500) {{ nodes {{ reason }} }} }} }} }} }}"
    );
    let (code, message) = first_error(&server.gql(&events, json!({})).await);
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("budget"), "{message}");
    // A page of 500 objects with the fields a dashboard shows is well within it.
    let page = format!(
        "{{ cluster(id: \"{cluster}\") {{ resources(kind: \"Pod\", first: 500) {{ nodes {{ metadata {{ name namespace labels {{ key value }} creationTimestamp }} status }} }} }} }}"
    );
    assert_eq!(first_error(&server.gql(&page, json!({})).await).0, "NOT_FOUND", "it runs (the cluster is absent)");

    // At the budget and one over: `clusters(first: 500) { nodes { id } }` costs 500 x 2 + 1.
    let query = "{ clusters(first: 500) { nodes { id } } }";
    for (budget, passes) in [(1001, true), (1000, false)] {
        let db = TestDb::new(Backend::Sqlite).await;
        let mut settings = settings_for(&db);
        settings.limits.max_query_complexity = budget;
        let server = TestServer::start_with(settings).await;
        let body = server.gql(query, json!({})).await;
        assert_eq!(body.get("errors").is_none(), passes, "budget {budget}: {body}");
    }
}

/// A batched POST holds at most maxBatchSize requests.
#[tokio::test(flavor = "multi_thread")]
async fn batches_are_capped() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let max = kubegql::settings::ApiLimits::default().max_batch_size;
    let batch = |n: usize| vec![json!({ "query": "{ viewer { name } }" }); n];
    let at =
        server.client.post(server.url("/graphql")).bearer_auth(&server.token).json(&batch(max)).send().await.unwrap();
    assert_eq!(at.status(), 200);
    let answers: Vec<Value> = at.json().await.unwrap();
    assert_eq!(answers.len(), max);
    let over = server
        .client
        .post(server.url("/graphql"))
        .bearer_auth(&server.token)
        .json(&batch(max + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 400);
    let over: Value = over.json().await.unwrap();
    assert_eq!(over["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(over["errors"][0]["message"].as_str().unwrap().contains("at most 10 requests (maxBatchSize)"), "{over}");
}

/// Guessing tokens is slowed down: an unknown token costs one database query, not one per
/// request, and past the failures an address may make per minute it is refused at once.
#[tokio::test(flavor = "multi_thread")]
async fn guessing_tokens_is_slowed_down() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.limits.auth_failures_per_minute = 5;
    let server = TestServer::start_with(settings).await;
    let ask = |token: String| {
        let request = server
            .client
            .post(server.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": "{ viewer { name } }" }));
        async move { request.send().await.unwrap() }
    };
    // The same unknown token twice: the second is answered without the database.
    assert_eq!(ask("kgq_guess-0".into()).await.status(), 401);
    let before = server.server.db.query_count();
    assert_eq!(ask("kgq_guess-0".into()).await.status(), 401);
    assert_eq!(server.server.db.query_count(), before, "a known-unknown token costs no query");
    // Five failures per minute from one address are answered; the sixth is refused, and so is
    // anything after it, at once.
    for i in 1..4 {
        assert_eq!(ask(format!("kgq_guess-{i}")).await.status(), 401, "failure {}", i + 2);
    }
    let refused = ask("kgq_guess-5".into()).await;
    assert_eq!(refused.status(), 429, "the sixth failure");
    let before = server.server.db.query_count();
    let refused = ask("kgq_guess-6".into()).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED", "{body}");
    assert_eq!(server.server.db.query_count(), before, "a refused address costs no query");
    // The address waits, whatever token it brings (so a guesser gains nothing by also holding one).
    assert_eq!(ask(server.token.clone()).await.status(), 429);

    // Requests without a token are not guesses: a page loading before its user signs in does not
    // lock its address out.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.limits.auth_failures_per_minute = 2;
    let server = TestServer::start_with(settings).await;
    for _ in 0..5 {
        let bare = server
            .client
            .post(server.url("/graphql"))
            .json(&json!({ "query": "{ viewer { name } }" }))
            .send()
            .await
            .unwrap();
        assert_eq!(bare.status(), 401);
    }
    assert!(server.gql("{ viewer { name } }", json!({})).await.get("errors").is_none(), "the address is not refused");
}
