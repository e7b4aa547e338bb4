//! `kubectl exec` over a WebSocket through kubegql to a kwok pod. kwok runs an exec's command on
//! the test machine (its `ClusterExec` rule, set up by tests/cluster/up), with a real terminal
//! when one is asked for, so output, stdin, resizes and exit codes are real.

use crate::common;

use std::time::Duration;

use common::control_plane::{ControlPlane, ready_namespace, running_pod, unique_namespace};
use common::{Backend, TestDb, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Setup {
    _db: TestDb,
    server: TestServer,
    id: String,
    ns: String,
}

async fn setup(change: impl FnOnce(&mut kubegql::settings::ServeSettings)) -> Setup {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = common::settings_for(&db);
    change(&mut settings);
    let server = TestServer::start_with(settings).await;
    let id = server.control_plane_cluster(&cp, "exec", json!({})).await;
    let ns = unique_namespace("exec");
    ready_namespace(&client, &ns).await;
    let pod = json!({
        "metadata": { "name": "shell" },
        "spec": { "containers": [{ "name": "main", "image": "registry.invalid/shell:1" }] }
    });
    running_pod(&client, &ns, pod).await;
    Setup { _db: db, server, id, ns }
}

fn request(s: &Setup, query: &str, token: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url =
        format!("ws://{}/api/v1/clusters/{}/namespaces/{}/pods/shell/exec?{query}", s.server.server.addr, s.id, s.ns);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    request.headers_mut().insert("Sec-WebSocket-Protocol", "v1.exec.kubegql".parse().unwrap());
    request
}

/// What came back on each channel until the status (channel 3) and the close.
#[derive(Debug, Default)]
struct Output {
    stdout: String,
    stderr: String,
    status: Value,
}

async fn read_to_end(socket: &mut Socket) -> Output {
    let mut out = Output::default();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next()).await.expect("output in time");
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                let (channel, data) = bytes.split_first().expect("a channel byte");
                match channel {
                    1 => out.stdout.push_str(&String::from_utf8_lossy(data)),
                    2 => out.stderr.push_str(&String::from_utf8_lossy(data)),
                    3 => out.status = serde_json::from_slice(data).expect("a status"),
                    other => panic!("unexpected channel {other}"),
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return out,
            Some(Ok(_)) => {}
        }
    }
}

/// The HTTP answer of a refused upgrade: status and `extensions.code`.
async fn refused(request: tokio_tungstenite::tungstenite::handshake::client::Request) -> (u16, String) {
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: Value = response.body().as_ref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
            (
                response.status().as_u16(),
                body["errors"][0]["extensions"]["code"].as_str().unwrap_or_default().to_owned(),
            )
        }
        Ok(_) => panic!("the upgrade was accepted"),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut bytes = vec![channel];
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_runs_a_command_with_its_output_stdin_exit_code_and_a_resized_terminal() {
    let s = setup(|_| {}).await;
    let (_, operator) = s.server.principal("olga", "OPERATOR").await;

    // `echo`: its words, as a list (no shell splits them).
    let (mut socket, response) =
        tokio_tungstenite::connect_async(request(&s, "command=echo&command=hello%20there&command=%24HOME", &operator))
            .await
            .expect("the exec starts");
    assert_eq!(response.headers()["sec-websocket-protocol"], "v1.exec.kubegql");
    let out = read_to_end(&mut socket).await;
    assert_eq!(out.stdout, "hello there $HOME\n", "{out:?}");
    assert_eq!(out.status["status"], "Success", "{out:?}");

    // stdin in, stdout and stderr apart, and a failing exit code in the status.
    let script = "read line; echo got:$line; echo oops >&2; exit 3";
    let query = format!("command=sh&command=-c&command={}&stdin=true", urlencode(script));
    let (mut socket, _) = tokio_tungstenite::connect_async(request(&s, &query, &operator)).await.unwrap();
    socket.send(framed(0, b"abc\n")).await.unwrap();
    let out = read_to_end(&mut socket).await;
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("got:abc\n", "oops\n"), "{out:?}");
    assert_eq!(out.status["status"], "Failure", "{out:?}");
    // The API server's status, as it sent it (kwok words the exit code as "exit status 3").
    assert!(out.status["message"].as_str().unwrap_or_default().contains("exit status 3"), "{}", out.status);

    // A terminal, resized: `stty size` answers each line with the size the terminal has now.
    let script = "while read x; do stty size; done";
    let query = format!("command=sh&command=-c&command={}&stdin=true&tty=true", urlencode(script));
    let (mut socket, _) = tokio_tungstenite::connect_async(request(&s, &query, &operator)).await.unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("45 123") {
        assert!(tokio::time::Instant::now() < deadline, "the terminal was never resized: {seen:?}");
        socket.send(framed(4, br#"{"Width":123,"Height":45}"#)).await.unwrap();
        socket.send(framed(0, b"size\n")).await.unwrap();
        if let Ok(Some(Ok(Message::Binary(bytes)))) =
            tokio::time::timeout(Duration::from_millis(500), socket.next()).await
        {
            assert_eq!(bytes[0], 1, "a terminal has stdout only");
            seen.push_str(&String::from_utf8_lossy(&bytes[1..]));
        }
    }
    socket.close(None).await.unwrap();

    // The audit record names the command, never what went to stdin.
    let audit = s
        .server
        .gql_ok("{ auditEvents(first: 50) { edges { node { field outcome principalName arguments } } } }", json!({}))
        .await;
    let execs: Vec<&Value> =
        audit["auditEvents"]["edges"].as_array().unwrap().iter().filter(|e| e["node"]["field"] == "exec").collect();
    assert_eq!(execs.len(), 3, "{audit}");
    for exec in &execs {
        assert_eq!(exec["node"]["outcome"], "SUCCESS");
        assert_eq!(exec["node"]["principalName"], "olga");
        let arguments = exec["node"]["arguments"].to_string();
        assert!(!arguments.contains("abc") && !arguments.contains("size\\n"), "no stdin bytes: {arguments}");
    }
    let commands: Vec<Value> = execs.iter().map(|e| e["node"]["arguments"]["command"].clone()).collect();
    assert!(commands.contains(&json!(["echo", "hello there", "$HOME"])), "{commands:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_is_refused_to_viewers_to_bad_commands_and_where_the_operator_turned_it_off() {
    let s = setup(|settings| settings.tunnels.exec_disabled_tenants = vec!["closed".into()]).await;
    let (_, viewer) = s.server.principal("vera", "VIEWER").await;
    assert_eq!(refused(request(&s, "command=id", &viewer)).await, (403, "FORBIDDEN".to_owned()));
    for bad in ["", "container=main", "command=ls&colour=red", "command=ls&tty=maybe"] {
        assert_eq!(refused(request(&s, bad, &s.server.token)).await, (400, "BAD_USER_INPUT".to_owned()), "{bad:?}");
    }
    let missing = request(&s, "command=id", &s.server.token);
    let url = missing.uri().to_string().replace("/pods/shell/", "/pods/nobody/");
    let mut missing = url.into_client_request().unwrap();
    missing.headers_mut().insert("Authorization", format!("Bearer {}", s.server.token).parse().unwrap());
    assert_eq!(refused(missing).await, (404, "NOT_FOUND".to_owned()));

    // A tenant whose exec the operator turned off: its ADMIN is refused, and that is recorded.
    let closed_admin = common::cli_principal(&s._db, "closed", "cleo", "ADMIN");
    assert_eq!(refused(request(&s, "command=id", &closed_admin)).await, (403, "FORBIDDEN".to_owned()));
    let audit = s
        .server
        .gql_as(
            &closed_admin,
            &[],
            "{ auditEvents(first: 10) { edges { node { field outcome errorCode } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        audit["data"]["auditEvents"]["edges"][0]["node"],
        json!({ "field": "exec", "outcome": "DENIED", "errorCode": "FORBIDDEN" }),
        "{audit}"
    );
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
