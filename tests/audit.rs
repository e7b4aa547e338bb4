//! The audit trail: every mutation leaves one record whatever its outcome, the chain detects
//! edits and deletions, an unwritable trail refuses the action, and secrets stay out of it.

use crate::common;

use std::process::Command;

use common::{Backend, TestDb, TestServer, first_error, settings_for};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::{Value, json};

const EVENTS: &str = "query($f: AuditFilterInput, $first: Int, $after: String) { auditEvents(filter: $f, first: $first, after: $after) {
    edges { node { seq field outcome errorCode principalName tenant impersonated clusterId verb dryRun arguments requestId durationMs } }
    pageInfo { hasNextPage endCursor } } }";

async fn events(server: &TestServer) -> Vec<Value> {
    let data = server.gql_ok(EVENTS, json!({ "first": 500 })).await;
    data["auditEvents"]["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()).collect()
}

/// Creates `count` IN_CLUSTER clusters named `prefix0`, `prefix1`, ...: one audited mutation each.
async fn create_clusters(server: &TestServer, count: usize, prefix: &str) {
    for i in 0..count {
        server
            .gql_ok(
                "mutation($n: String!) { createCluster(input: { name: $n, mode: IN_CLUSTER }) { id } }",
                json!({ "n": format!("{prefix}{i}") }),
            )
            .await;
    }
}

fn verify(db: &TestDb) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubegql"))
        .args(["audit", "verify", "--database-url", &db.url])
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_outcome_is_recorded_with_secrets_masked() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let token = "audit-me-not-0a1b2c";
    let create = "mutation($input: CreateClusterInput!) { createCluster(input: $input) { id } }";
    let input = json!({ "name": "a", "mode": "DIRECT", "apiServerUrl": "https://127.0.0.1:1", "bearerToken": token });
    let id = server.gql_ok(create, json!({ "input": input })).await["createCluster"]["id"].as_str().unwrap().to_owned();
    let failed = server.gql(create, json!({ "input": input })).await;
    assert_eq!(first_error(&failed).0, "CONFLICT");
    let (_, viewer) = server.principal("vic", "VIEWER").await;
    let denied =
        server.gql_as(&viewer, &[], "mutation($id: ID!) { deleteCluster(id: $id) { id } }", json!({ "id": id })).await;
    assert_eq!(first_error(&denied).0, "FORBIDDEN");

    let all = events(&server).await;
    // Newest first: the denied delete, the two principal mutations, the conflict, the create.
    let fields: Vec<(&str, &str)> =
        all.iter().map(|e| (e["field"].as_str().unwrap(), e["outcome"].as_str().unwrap())).collect();
    assert_eq!(
        fields,
        vec![
            ("deleteCluster", "DENIED"),
            ("createApiToken", "SUCCESS"),
            ("createPrincipal", "SUCCESS"),
            ("createCluster", "ERROR"),
            ("createCluster", "SUCCESS"),
        ]
    );
    assert_eq!(all[0]["principalName"], "vic");
    assert_eq!(all[0]["errorCode"], "FORBIDDEN");
    assert_eq!(all[0]["clusterId"], id.as_str(), "the cluster a cluster mutation acts on");
    assert_eq!(all[3]["errorCode"], "CONFLICT");
    assert_eq!(all[4]["arguments"]["input"]["bearerToken"], "***");
    assert_eq!(all[4]["arguments"]["input"]["apiServerUrl"], "https://127.0.0.1:1");
    assert!(all[4]["requestId"].as_str().unwrap().len() >= 8 && all[4]["durationMs"].is_i64());
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![5, 4, 3, 2, 1]);
    // The new token returned by createApiToken is not in the record of it.
    assert!(!all.iter().any(|e| e.to_string().contains("kgq_")));

    // Nothing in the database holds the secret.
    server.server.stop().await.unwrap();
    let file = db.sqlite_file.clone().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend(std::fs::read(format!("{}-wal", file.display())).unwrap_or_default());
    assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    let (ok, report) = verify(&db);
    assert!(ok, "{report}");
    assert!(report.contains("checked 5"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_cannot_read_the_trail_and_operators_see_their_own() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let (_, viewer) = server.principal("v", "VIEWER").await;
    let (_, operator) = server.principal("o", "OPERATOR").await;
    server
        .gql_as(
            &operator,
            &[],
            "mutation { deleteCluster(id: \"00000000-0000-4000-8000-000000000000\") { id } }",
            json!({}),
        )
        .await;
    let body = server.gql_as(&viewer, &[], EVENTS, json!({})).await;
    assert_eq!(first_error(&body).0, "FORBIDDEN");
    let own = server.gql_as(&operator, &[], EVENTS, json!({})).await;
    let edges = own["data"]["auditEvents"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{own}");
    assert_eq!(edges[0]["node"]["principalName"], "o");
    let admin_view = events(&server).await;
    assert_eq!(admin_view.len(), 5);
    let filtered = server.gql_ok(EVENTS, json!({ "f": { "outcome": "DENIED" } })).await;
    assert_eq!(filtered["auditEvents"]["edges"].as_array().unwrap().len(), 1);
    // Pages follow the same rules as every list.
    let page = server.gql_ok(EVENTS, json!({ "first": 2 })).await;
    assert_eq!(page["auditEvents"]["pageInfo"]["hasNextPage"], true);
    let next =
        server.gql_ok(EVENTS, json!({ "first": 2, "after": page["auditEvents"]["pageInfo"]["endCursor"] })).await;
    assert_eq!(next["auditEvents"]["edges"][0]["node"]["seq"], 3);
    let bad = server.gql(EVENTS, json!({ "first": 501 })).await;
    assert_eq!(first_error(&bad).0, "BAD_USER_INPUT");
}

/// Sample arguments for a field, built from its introspected types, so that every mutation can
/// be called whatever arguments it takes.
fn sample(ty: &Value, types: &[Value]) -> Value {
    match ty["kind"].as_str().unwrap() {
        "NON_NULL" => sample(&ty["ofType"], types),
        "LIST" => json!([]),
        "SCALAR" => match ty["name"].as_str().unwrap() {
            "Int" => json!(1),
            "Boolean" => json!(false),
            "ID" => json!("00000000-0000-4000-8000-000000000000"),
            _ => json!("x"),
        },
        "ENUM" => {
            let def = types.iter().find(|t| t["name"] == ty["name"]).unwrap();
            def["enumValues"][0]["name"].clone()
        }
        "INPUT_OBJECT" => {
            let def = types.iter().find(|t| t["name"] == ty["name"]).unwrap();
            let mut object = serde_json::Map::new();
            for field in def["inputFields"].as_array().unwrap() {
                if field["type"]["kind"] == "NON_NULL" {
                    object.insert(field["name"].as_str().unwrap().to_owned(), sample(&field["type"], types));
                }
            }
            Value::Object(object)
        }
        other => panic!("unexpected input kind {other}"),
    }
}

fn type_ref(ty: &Value) -> String {
    match ty["kind"].as_str().unwrap() {
        "NON_NULL" => format!("{}!", type_ref(&ty["ofType"])),
        "LIST" => format!("[{}]", type_ref(&ty["ofType"])),
        _ => ty["name"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_mutation_escapes_the_audit() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let schema = server
        .gql_ok(
            "{ __schema { mutationType { fields { name args { name type { ...T } } type { ...T } } }
               types { name kind enumValues { name } inputFields { name type { ...T } } fields { name type { ...T } } } } }
             fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }",
            json!({}),
        )
        .await;
    let types = schema["__schema"]["types"].as_array().unwrap().clone();
    let fields = schema["__schema"]["mutationType"]["fields"].as_array().unwrap().clone();
    assert!(fields.len() >= 7, "the walk sees the mutations");
    for field in &fields {
        let name = field["name"].as_str().unwrap();
        let mut params = Vec::new();
        let mut args = Vec::new();
        let mut vars = serde_json::Map::new();
        for arg in field["args"].as_array().unwrap() {
            let arg_name = arg["name"].as_str().unwrap();
            params.push(format!("${arg_name}: {}", type_ref(&arg["type"])));
            args.push(format!("{arg_name}: ${arg_name}"));
            vars.insert(arg_name.to_owned(), sample(&arg["type"], &types));
        }
        // Select __typename so the query is valid whatever the field returns.
        let params = if params.is_empty() { String::new() } else { format!("({})", params.join(", ")) };
        let args = if args.is_empty() { String::new() } else { format!("({})", args.join(", ")) };
        let query = format!("mutation Walk{params} {{ {name}{args} {{ __typename }} }}");
        let before = server.server.db.count_audit().await.unwrap();
        let body = server.gql(&query, Value::Object(vars)).await;
        assert!(
            body["errors"].as_array().is_none_or(|e| e.iter().all(|e| e.get("path").is_some())),
            "{name} ran: {body}"
        );
        let after = server.server.db.count_audit().await.unwrap();
        assert_eq!(after, before + 1, "{name} left exactly one audit record: {body}");
        let last = &events(&server).await[0];
        assert_eq!(last["field"], name);
    }
}

/// Reads run on a schema without the audit extension; whatever carries a mutation must still be
/// audited: a batch mixing a query and a mutation, a document holding both with the mutation
/// chosen by name, and a mutation over SSE. Reads leave no record.
#[tokio::test(flavor = "multi_thread")]
async fn every_way_of_sending_a_mutation_is_audited() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let count = || async { server.server.db.count_audit().await.unwrap() };
    let create = |name: &str| {
        format!("mutation {{ createCluster(input: {{ name: \"{name}\", mode: IN_CLUSTER }}) {{ name }} }}")
    };

    let before = count().await;
    server.gql_ok("{ clusters { edges { node { id } } } viewer { name } }", json!({})).await;
    assert_eq!(count().await, before, "a read leaves no record");

    let batch =
        server.post_json("/graphql", json!([{ "query": "{ viewer { name } }" }, { "query": create("batched") }])).await;
    assert_eq!(batch[1]["data"]["createCluster"]["name"], "batched", "{batch}");
    assert_eq!(count().await, before + 1, "the batched mutation is recorded");

    let document =
        format!("query Look {{ viewer {{ name }} }} {}", create("named").replacen("mutation", "mutation Make", 1));
    let named = server.post_json("/graphql", json!({ "query": document, "operationName": "Make" })).await;
    assert_eq!(named["data"]["createCluster"]["name"], "named", "{named}");
    assert_eq!(count().await, before + 2, "the chosen mutation is recorded");

    let sse = server
        .client
        .post(server.url("/graphql/stream"))
        .bearer_auth(&server.token)
        .json(&json!({ "query": create("streamed") }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sse.contains("streamed"), "{sse}");
    assert_eq!(count().await, before + 3, "the mutation over SSE is recorded");
    let fields: Vec<Value> = events(&server).await.iter().take(3).map(|e| e["field"].clone()).collect();
    assert_eq!(fields, vec![json!("createCluster"); 3]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_trail_refuses_the_action() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    // Make every audit insert fail, as a full disk or a broken database would.
    {
        use diesel::Connection;
        let mut conn = diesel::SqliteConnection::establish(&db.url).unwrap();
        use diesel::connection::SimpleConnection;
        conn.batch_execute("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END;").unwrap();
    }
    let body =
        server.gql("mutation { createCluster(input: { name: \"x\", mode: IN_CLUSTER }) { id } }", json!({})).await;
    let (code, message) = first_error(&body);
    assert_eq!(code, "INTERNAL");
    assert!(message.contains("audit record could not be written"), "{message}");
    assert_eq!(server.cluster_count().await, 0, "the mutation did not run");
    // Queries are not actions and still work.
    server.gql_ok("{ clusters { edges { node { id } } } }", json!({})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_detects_an_edited_or_deleted_record() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    create_clusters(&server, 4, "c").await;
    server.server.stop().await.unwrap();
    assert!(verify(&db).0);
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    let mut conn = diesel::SqliteConnection::establish(&db.url).unwrap();
    // The stopped server's connections may still be closing (a WAL checkpoint): wait for them.
    conn.batch_execute("PRAGMA busy_timeout = 5000").unwrap();
    conn.batch_execute("UPDATE audit_events SET arguments = '{}' WHERE seq = 2").unwrap();
    let (ok, report) = verify(&db);
    assert!(!ok && report.contains("record 2 was altered"), "{report}");

    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    create_clusters(&server, 4, "c").await;
    server.server.stop().await.unwrap();
    let mut conn = diesel::SqliteConnection::establish(&db.url).unwrap();
    conn.batch_execute("PRAGMA busy_timeout = 5000").unwrap();
    conn.batch_execute("DELETE FROM audit_events WHERE seq = 3").unwrap();
    let (ok, report) = verify(&db);
    assert!(!ok && report.contains("record 3 is missing"), "{report}");
}

/// Two server processes on one PostgreSQL database append to one chain without forking it.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_keep_one_chain_on_postgres() {
    let db = TestDb::new(Backend::Postgres).await;
    let a = TestServer::start(&db).await;
    let b = TestServer::start_with(settings_for(&db)).await;
    let create = "mutation($n: String!) { createCluster(input: { name: $n, mode: IN_CLUSTER }) { id } }";
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (server, name) = (if i % 2 == 0 { &a } else { &b }, format!("r{i}"));
        tasks.push(server.gql_ok(create, json!({ "n": name })));
    }
    futures_util::future::join_all(tasks).await;
    let (ok, report) = verify(&db);
    assert!(ok, "{report}");
    assert!(report.contains("checked 40"), "{report}");
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    conn.batch_execute("UPDATE audit_events SET outcome = 'ERROR' WHERE seq = 17").await.unwrap();
    let (ok, report) = verify(&db);
    assert!(!ok && report.contains("record 17"), "{report}");
}

/// The server's own log carries audit lines, and never a secret.
#[tokio::test(flavor = "multi_thread")]
async fn logs_carry_audit_lines_but_no_secrets() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let secret = "log-leak-check-9f8e7d";
    let admin = "kgq_log-test-admin-token-0123456789";
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubegql"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("KUBEGQL_LOG", "debug")
        .env("KUBEGQL_BOOTSTRAP_ADMIN_TOKEN", admin)
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    stdout.read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("kubegql listening on ").unwrap().to_owned();
    let client = reqwest::Client::new();
    let input =
        json!({ "name": "logged", "mode": "DIRECT", "apiServerUrl": "https://127.0.0.1:1", "bearerToken": secret });
    let body: Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(admin)
        .json(&json!({ "query": "mutation($i: CreateClusterInput!) { createCluster(input: $i) { id } }", "variables": { "i": input } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    child.kill().unwrap();
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    child.wait().unwrap();
    assert!(logs.contains("audit") && logs.contains("createCluster"), "an audit line: {logs}");
    assert!(!logs.contains(secret), "the secret leaked into the log");
    assert!(!logs.contains(admin), "the API token leaked into the log");
}

/// Records name what the mutation ran with: a variable's default, not only what was sent.
#[tokio::test(flavor = "multi_thread")]
async fn records_hold_the_arguments_the_mutation_ran_with() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let hidden = "mutation($n: String! = \"db\", $k: String! = \"ConfigMap\", $dry: Boolean = true) {
        deleteResource(clusterId: \"00000000-0000-4000-8000-000000000000\", kind: $k, namespace: \"prod\", name: $n, dryRun: $dry) { warnings } }";
    let body = server.gql(hidden, json!({})).await;
    assert_eq!(first_error(&body).0, "NOT_FOUND", "{body}");
    // An operation chosen by name among several takes its own defaults.
    let named =
        "mutation A($n: String! = \"from-a\") { deleteResource(clusterId: \"00000000-0000-4000-8000-000000000000\", kind: \"Pod\", name: $n) { warnings } }
        mutation B($n: String! = \"from-b\") { deleteResource(clusterId: \"00000000-0000-4000-8000-000000000000\", kind: \"Pod\", name: $n) { warnings } }";
    let response = server.post_json("/graphql", json!({ "query": named, "operationName": "B", "variables": {} })).await;
    assert_eq!(first_error(&response).0, "NOT_FOUND", "{response}");
    // A variable sent as null stays null (the default applies only to one left out).
    let null = server.gql("mutation($g: Int = 5) { deleteResource(clusterId: \"00000000-0000-4000-8000-000000000000\", kind: \"Pod\", name: \"p\", gracePeriodSeconds: $g) { warnings } }", json!({ "g": null })).await;
    assert_eq!(first_error(&null).0, "NOT_FOUND", "{null}");

    let all = events(&server).await;
    let by_seq = |seq: i64| all.iter().find(|e| e["seq"] == seq).unwrap();
    let first = by_seq(1);
    assert_eq!(first["arguments"]["name"], "db", "{first}");
    assert_eq!(first["arguments"]["kind"], "ConfigMap");
    assert_eq!(first["dryRun"], true, "the dry run came from a default");
    let recorded = db_row(&db, 1).await;
    assert_eq!(
        (recorded.0.as_deref(), recorded.1.as_deref()),
        (Some("db"), Some("ConfigMap")),
        "the record's own columns"
    );
    assert_eq!(by_seq(2)["arguments"]["name"], "from-b");
    assert_eq!(by_seq(3)["arguments"]["gracePeriodSeconds"], Value::Null, "{}", by_seq(3));
    assert!(by_seq(3)["arguments"].as_object().unwrap().contains_key("gracePeriodSeconds"));
}

/// The name and kind columns of a record, read from the database.
async fn db_row(db: &TestDb, seq: i64) -> (Option<String>, Option<String>) {
    use diesel::prelude::*;
    let mut conn = diesel::SqliteConnection::establish(&db.url).unwrap();
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        name: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        kind: Option<String>,
    }
    let row: Row = diesel::sql_query(format!("SELECT name, kind FROM audit_events WHERE seq = {seq}"))
        .get_result(&mut conn)
        .unwrap();
    (row.name, row.kind)
}

/// A change to a Secret is recorded as the paths it writes, whatever the kind's spelling and the
/// patch's type; the values never reach the record.
#[tokio::test(flavor = "multi_thread")]
async fn changes_to_secrets_record_paths_not_values() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let patch = "mutation($k: String!, $t: PatchType!, $p: JSON!) {
        patch(clusterId: \"00000000-0000-4000-8000-000000000000\", kind: $k, namespace: \"ns\", name: \"creds\", type: $t, patch: $p) { object { kind } } }";
    let cases = [
        ("Secret", "MERGE", json!({ "stringData": { "password": "hunter2-merge" } })),
        (
            "secrets",
            "STRATEGIC",
            json!({ "data": { "key": "aHVudGVyMi1zdHJhdA==" }, "metadata": { "annotations": { "a": "hunter2-annotation" } } }),
        ),
        (
            "SECRET",
            "JSON",
            json!([{ "op": "add", "path": "/data/token", "value": "aHVudGVyMi1qc29u" },
                                  { "op": "replace", "path": "/data", "value": { "k": "hunter2-json-object" } }]),
        ),
    ];
    for (kind, ty, body) in &cases {
        let answer = server.gql(patch, json!({ "k": kind, "t": ty, "p": body })).await;
        assert_eq!(first_error(&answer).0, "NOT_FOUND", "{answer}");
    }
    // A ConfigMap's patch is recorded as sent.
    let plain = server.gql(patch, json!({ "k": "ConfigMap", "t": "MERGE", "p": { "data": { "shown": "yes" } } })).await;
    assert_eq!(first_error(&plain).0, "NOT_FOUND");

    let all = events(&server).await;
    let text = serde_json::to_string(&all).unwrap();
    for secret in ["hunter2", "aHVudGVy"] {
        assert!(!text.contains(secret), "{secret} reached the trail: {text}");
    }
    let by_seq = |seq: i64| all.iter().find(|e| e["seq"] == seq).unwrap()["arguments"]["patch"].clone();
    assert_eq!(by_seq(1)["paths"], json!(["/stringData/password"]));
    assert_eq!(by_seq(2)["paths"], json!(["/data/key", "/metadata/annotations/a"]));
    assert_eq!(
        by_seq(3)["paths"],
        json!([{ "op": "add", "path": "/data/token" }, { "op": "replace", "path": "/data" }])
    );
    assert_eq!(by_seq(4), json!({ "data": { "shown": "yes" } }));
    // Nor the database file.
    server.server.stop().await.unwrap();
    let file = db.sqlite_file.clone().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend(std::fs::read(format!("{}-wal", file.display())).unwrap_or_default());
    assert!(!bytes.windows(7).any(|w| w == b"hunter2"));
}

/// 50 concurrent mutations, each recorded and completed: the chain is whole, nothing pending,
/// on both backends.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_mutations_leave_no_record_unfinished() {
    use common::control_plane::{ControlPlane, unique_namespace};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("audit-load");
    common::control_plane::ready_namespace(&client, &ns).await;
    let cm: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "load" }, "data": { "k": "v" } })).unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &ns).create(&PostParams::default(), &cm).await.unwrap();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await;
        let server = TestServer::start(&db).await;
        let id = server.control_plane_cluster(&cp, "local", json!({})).await;
        let patch = "mutation($id: ID!, $ns: String!, $v: String!) {
            patch(clusterId: $id, kind: \"ConfigMap\", namespace: $ns, name: \"load\", type: MERGE,
                  patch: { data: { k: $v } }, dryRun: true) { object { metadata { name } } } }";
        let calls = (0..50).map(|i| server.gql(patch, json!({ "id": id, "ns": ns, "v": format!("v{i}") })));
        let answers = futures_util::future::join_all(calls).await;
        for answer in &answers {
            assert!(answer.get("errors").is_none(), "{answer}");
        }
        server.server.stop().await.unwrap();
        let (ok, report) = verify(&db);
        assert!(ok, "{backend:?}: {report}");
        // The cluster's creation, then the 50 patches.
        assert!(report.contains("checked 51 audit record(s) (0 keyed); 0 unfinished"), "{backend:?}: {report}");
    }
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&ns, &kube::api::DeleteParams::background())
        .await;
}

/// A client that goes away in the middle of a mutation leaves a completed record, ABANDONED.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_goes_away_leaves_an_abandoned_record() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    // An "API server" on loopback that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let create = "mutation($input: CreateClusterInput!) { createCluster(input: $input) { id } }";
    let input = json!({ "name": "silent", "mode": "DIRECT", "apiServerUrl": format!("https://127.0.0.1:{port}"), "bearerToken": "t" });
    let id = server.gql_ok(create, json!({ "input": input })).await["createCluster"]["id"].as_str().unwrap().to_owned();
    // The client sends the mutation, waits a moment, and closes its connection.
    let body = json!({ "query": "mutation($id: ID!) { scale(clusterId: $id, kind: \"Deployment\", namespace: \"ns\", name: \"web\", replicas: 2) { replicas } }", "variables": { "id": id } }).to_string();
    let address = server.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.token,
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut socket, request.as_bytes()).await.unwrap();
    common::eventually("the mutation's record is begun", std::time::Duration::from_secs(10), || async {
        pending_count(&db).await == 1
    })
    .await;
    drop(socket);
    common::eventually("the abandoned mutation's record is completed", std::time::Duration::from_secs(20), || async {
        events(&server).await.iter().any(|e| e["field"] == "scale" && e["outcome"] == "ABANDONED")
    })
    .await;
    held.abort();
    server.server.stop().await.unwrap();
    let (ok, report) = verify(&db);
    assert!(ok && report.contains("0 unfinished"), "{report}");
}

/// Records begun and not yet completed.
async fn pending_count(db: &TestDb) -> usize {
    let store = kubegql::store::Database::connect(&db.url, 1).await.unwrap();
    store.audit_pending().await.unwrap().len()
}

/// With the operator's key, records are HMACs: checking them needs the key, and someone who can
/// write the database but lacks it cannot rewrite a record, even as an unkeyed one.
#[tokio::test(flavor = "multi_thread")]
async fn a_keyed_chain_needs_its_key_and_refuses_rewrites() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("audit.key");
    std::fs::write(&key_file, base64::engine::general_purpose::STANDARD.encode([7u8; 32])).unwrap();
    let wrong_file = dir.path().join("wrong.key");
    std::fs::write(&wrong_file, base64::engine::general_purpose::STANDARD.encode([8u8; 32])).unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.audit.audit_key_file = Some(key_file.clone());
    let server = TestServer::start_with(settings).await;
    create_clusters(&server, 3, "k").await;
    server.server.stop().await.unwrap();
    let verify_with = |key: Option<&std::path::Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kubegql"));
        command.args(["audit", "verify", "--database-url", &db.url]);
        if let Some(key) = key {
            command.arg("--audit-key-file").arg(key);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, report) = verify_with(Some(&key_file));
    assert!(ok && report.contains("checked 3 audit record(s) (3 keyed)"), "{report}");
    let (ok, report) = verify_with(None);
    assert!(!ok && report.contains("record 1 is keyed"), "{report}");
    let (ok, report) = verify_with(Some(&wrong_file));
    assert!(!ok && report.contains("record 1 was altered"), "{report}");

    // Rewrite record 2 and re-chain it as an unkeyed record (what a writer without the key can do).
    {
        use diesel::connection::SimpleConnection;
        use diesel::prelude::*;
        let mut conn = diesel::SqliteConnection::establish(&db.url).unwrap();
        conn.batch_execute("PRAGMA busy_timeout = 5000").unwrap();
        conn.batch_execute("UPDATE audit_events SET outcome = 'ERROR' WHERE seq = 2").unwrap();
        let db_handle = kubegql::store::Database::connect(&db.url, 1).await.unwrap();
        let rows = db_handle.audit_chain(1, 10).await.unwrap();
        let mut row = rows.into_iter().find(|r| r.seq == Some(2)).unwrap();
        row.hash = Some(row.expected_hash());
        conn.batch_execute(&format!("UPDATE audit_events SET hash = '{}' WHERE seq = 2", row.hash.unwrap())).unwrap();
    }
    let (ok, report) = verify_with(Some(&key_file));
    assert!(!ok && report.contains("record 2 is not keyed"), "{report}");
}
