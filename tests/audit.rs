//! The audit trail: every mutation leaves one record whatever its outcome, the chain detects
//! edits and deletions, an unwritable trail refuses the action, and secrets stay out of it.

mod common;

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
    for i in 0..4 {
        server
            .gql_ok(
                "mutation($n: String!) { createCluster(input: { name: $n, mode: IN_CLUSTER }) { id } }",
                json!({ "n": format!("c{i}") }),
            )
            .await;
    }
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
    for i in 0..4 {
        server
            .gql_ok(
                "mutation($n: String!) { createCluster(input: { name: $n, mode: IN_CLUSTER }) { id } }",
                json!({ "n": format!("c{i}") }),
            )
            .await;
    }
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
