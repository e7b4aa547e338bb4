//! The `kubegql` binary as a new user runs it: `serve` with no configuration at all, `migrate`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn kubegql(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubegql"));
    command.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("KUBEGQL_") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    command
}

/// Starts `serve` on a free port and reads its banner: (child, base URL, token if printed).
fn serve(dir: &Path) -> (Child, String, Option<String>) {
    let mut child = kubegql(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut base, mut token) = (None, None);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if let Some(rest) = line.strip_prefix("kubegql listening on ") {
            base = Some(rest.trim().to_owned());
        }
        if line.trim().starts_with("kgq_") {
            token = Some(line.trim().to_owned());
        }
        if line.contains("GraphiQL:") && base.is_some() {
            // The token, when printed, follows the URLs within a few lines.
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
                if line.trim().starts_with("kgq_") {
                    token = Some(line.trim().to_owned());
                }
            }
            break;
        }
    }
    (child, base.expect("serve printed its address"), token)
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_with_no_setup_and_keeps_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, token) = serve(dir.path());
    let token = token.expect("first start prints an admin token");
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    let body: serde_json::Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "query": "mutation { createCluster(input: {name: \"local\", mode: DIRECT, apiServerUrl: \"https://127.0.0.1:6443\", bearerToken: \"t\"}) { name } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["createCluster"]["name"], "local", "{body}");
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(dir.path().join("kubegql.db").exists(), "SQLite file in the working directory");
    let key_file = dir.path().join("kubegql.db.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let key = std::fs::read_to_string(&key_file).unwrap();

    // A second start reuses the key and the admin; no new token is printed.
    let (mut child, base, second_token) = serve(dir.path());
    assert_eq!(second_token, None);
    let body: serde_json::Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "query": "{ clusters { edges { node { name } } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["clusters"]["edges"][0]["node"]["name"], "local", "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
}

#[test]
fn migrate_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = kubegql(dir.path()).args(["migrate", "--database-url", "data/k.db"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run().contains("applied 20261126000001"));
    assert!(run().contains("no pending migrations"));
}

#[test]
fn a_bad_master_key_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = kubegql(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("KUBEGQL_MASTER_KEY", "too-short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master key must be base64 of exactly 32 bytes"), "{stderr}");
    assert!(!stderr.contains("too-short"), "the key value is not echoed");
}

/// The operator's writes from the command line leave audit records too, with the operator as
/// the actor, on the same chain.
#[test]
fn the_operators_command_line_writes_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = kubegql(dir.path()).args(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (ok, created) = run(&["principal", "create", "--name", "ci-bot", "--role", "OPERATOR", "--tenant", "team-a"]);
    assert!(ok, "{created}");
    let token_id = created.split("token id ").nth(1).and_then(|s| s.split(';').next()).expect("a token id").to_owned();
    let (ok, text) = run(&["principal", "create", "--name", "ci-bot", "--role", "OPERATOR", "--tenant", "team-a"]);
    assert!(!ok, "a second principal of that name is refused: {text}");
    let (ok, text) = run(&["principal", "revoke-token", "--tenant", "team-a", "--token-id", &token_id]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["rotate-key"]);
    assert!(ok, "{text}");

    let (ok, report) = run(&["audit", "verify"]);
    assert!(ok && report.contains("checked 4 audit record(s) (0 keyed); 0 unfinished"), "{report}");
    use diesel::prelude::*;
    #[derive(QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        field: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        outcome: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        principal_name: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Text)]
        arguments: String,
    }
    let mut conn = diesel::SqliteConnection::establish(dir.path().join("kubegql.db").to_str().unwrap()).unwrap();
    let rows: Vec<Row> =
        diesel::sql_query("SELECT field, outcome, principal_name, arguments FROM audit_events ORDER BY seq")
            .load(&mut conn)
            .unwrap();
    let seen: Vec<(&str, &str)> = rows.iter().map(|r| (r.field.as_str(), r.outcome.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("cli: principal create", "SUCCESS"),
            ("cli: principal create", "ERROR"),
            ("cli: principal revoke-token", "SUCCESS"),
            ("cli: rotate-key", "SUCCESS"),
        ]
    );
    assert!(rows.iter().all(|r| r.principal_name.as_deref() == Some("operator (command line)")), "{rows:?}");
    assert!(rows[0].arguments.contains("\"name\":\"ci-bot\"") && rows[0].arguments.contains("team-a"), "{rows:?}");
    assert!(!rows.iter().any(|r| r.arguments.contains("kgq_")), "no token is recorded");
}
