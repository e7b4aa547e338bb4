//! Connections that outlive their request end when their credentials do, and a GraphQL
//! WebSocket is held to its limits (init timeout, operations at once, message size).

use crate::common;

use std::time::Duration;

use common::{Backend, TestDb, TestServer, settings_for};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SUBSCRIPTION: &str = "subscription { clusterChanges { kind name clusterId } }";

/// A principal of the server's tenant and a token of it: (token, token id).
async fn operator(server: &TestServer, name: &str) -> (String, String) {
    let created = server
        .gql_ok(
            "mutation($n: String!) { createPrincipal(input: { name: $n, role: OPERATOR }) { id } }",
            json!({ "n": name }),
        )
        .await;
    let id = created["createPrincipal"]["id"].as_str().unwrap().to_owned();
    let issued = server
        .gql_ok(
            "mutation($id: ID!) { createApiToken(principalId: $id, name: \"live\") { token apiToken { id } } }",
            json!({ "id": id }),
        )
        .await;
    let token = issued["createApiToken"]["token"].as_str().unwrap().to_owned();
    (token, issued["createApiToken"]["apiToken"]["id"].as_str().unwrap().to_owned())
}

async fn revoke(server: &TestServer, token_id: &str) {
    server.gql_ok("mutation($id: ID!) { revokeApiToken(id: $id) { id } }", json!({ "id": token_id })).await;
}

async fn connect(server: &TestServer) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", server.server.addr).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
    tokio_tungstenite::connect_async(request).await.expect("upgrade").0
}

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.unwrap();
}

/// Opens a WebSocket with `token` and waits for `connection_ack`.
async fn open(server: &TestServer, token: &str) -> Socket {
    let mut socket = connect(server).await;
    send(&mut socket, json!({ "type": "connection_init", "payload": { "token": token } })).await;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["type"], "connection_ack", "{value}");
            return socket;
        }
    }
}

/// Reads until the server closes the connection; panics if it is still open after `within`.
async fn closed_within(socket: &mut Socket, within: Duration) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("still open after {within:?}; saw {seen:?}"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return seen,
            Ok(Some(Ok(Message::Text(text)))) => seen.push(serde_json::from_str(&text).unwrap_or(Value::Null)),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// True when the connection answers a query (so is open and under its limits).
async fn answers(socket: &mut Socket, id: &str) -> bool {
    send(socket, json!({ "id": id, "type": "subscribe", "payload": { "query": "{ viewer { name } }" } })).await;
    loop {
        let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await else {
            return false;
        };
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "next" && value["id"] == id {
                    return value["payload"]["data"]["viewer"]["name"].is_string();
                }
            }
            Message::Close(_) => return false,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_ends_its_websocket_and_its_sse_stream() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let (token, token_id) = operator(&server, "watcher").await;
    let (other, _) = operator(&server, "bystander").await;
    let mut socket = open(&server, &token).await;
    send(&mut socket, json!({ "id": "s", "type": "subscribe", "payload": { "query": SUBSCRIPTION } })).await;
    let mut bystander = open(&server, &other).await;
    send(&mut bystander, json!({ "id": "s", "type": "subscribe", "payload": { "query": SUBSCRIPTION } })).await;
    let mut stream = server.subscribe_sse(&token, SUBSCRIPTION, json!({})).await.unwrap();
    assert!(answers(&mut socket, "before").await, "the socket works before the revocation");

    revoke(&server, &token_id).await;
    closed_within(&mut socket, Duration::from_secs(20)).await;
    let last = tokio::time::timeout(Duration::from_secs(20), async {
        let mut last = Value::Null;
        while let Some(event) = stream.recv().await {
            last = event;
        }
        last
    })
    .await
    .expect("the SSE stream ends");
    assert_eq!(last["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{last}");
    // Another principal's connection is untouched.
    assert!(answers(&mut bystander, "after").await, "the bystander's socket still works");
    // And the revoked token opens nothing new.
    let refused = server.subscribe_sse(&token, SUBSCRIPTION, json!({})).await;
    assert_eq!(refused.err().map(|(status, _)| status), Some(401));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_is_held_to_its_limits() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.limits.websocket_init_timeout_secs = 1;
    settings.limits.max_websocket_operations = 3;
    settings.limits.max_body_bytes = 4096;
    settings.limits.max_manifest_bytes = 4096;
    let server = TestServer::start_with(settings).await;

    // No connection_init: closed after the timeout.
    let mut silent = connect(&server).await;
    closed_within(&mut silent, Duration::from_secs(10)).await;

    // Three operations at once are fine (queries that finish stop counting); a fourth closes it.
    let mut socket = open(&server, &server.token).await;
    for i in 0..5 {
        assert!(answers(&mut socket, &format!("q{i}")).await, "finished queries do not count");
    }
    for id in ["s1", "s2"] {
        send(&mut socket, json!({ "id": id, "type": "subscribe", "payload": { "query": SUBSCRIPTION } })).await;
    }
    assert!(answers(&mut socket, "third").await, "two subscriptions and a query: at the cap");
    send(&mut socket, json!({ "id": "s2", "type": "complete" })).await;
    // s1, s3 and s4 run: at the cap, still open; s5 is one over.
    for id in ["s3", "s4"] {
        send(&mut socket, json!({ "id": id, "type": "subscribe", "payload": { "query": SUBSCRIPTION } })).await;
    }
    // Each of the three running subscriptions delivers (a subscription starts a moment after its
    // message, so clusters are created until every one has seen an event).
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut nudges = 0;
    while seen.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the socket at its cap went quiet; saw {seen:?}");
        nudges += 1;
        let name = format!("nudge-{nudges}");
        server
            .gql_ok(
                "mutation($n: String!) { createCluster(input: { name: $n, mode: IN_CLUSTER }) { id } }",
                json!({ "n": name }),
            )
            .await;
        while let Ok(message) = tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
            let Some(Ok(Message::Text(text))) = message else {
                panic!("the socket at its cap closed; saw {seen:?}");
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "next" {
                seen.insert(value["id"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    assert_eq!(seen, ["s1", "s3", "s4"].map(String::from).into_iter().collect(), "the three running subscriptions");
    send(&mut socket, json!({ "id": "s5", "type": "subscribe", "payload": { "query": SUBSCRIPTION } })).await;
    closed_within(&mut socket, Duration::from_secs(10)).await;

    // A message at the limit (maxBodyBytes + maxManifestBytes) is read; one over closes the socket.
    let limit = 8192;
    let message = |len: usize| {
        let padding = " ".repeat(
            len - json!({ "id": "big", "type": "subscribe", "payload": { "query": "{ viewer { name } }" } })
                .to_string()
                .len(),
        );
        let mut text =
            json!({ "id": "big", "type": "subscribe", "payload": { "query": "{ viewer { name } }" } }).to_string();
        text.insert_str(text.len() - 1, &padding);
        assert_eq!(text.len(), len);
        text
    };
    let mut socket = open(&server, &server.token).await;
    socket.send(Message::Text(message(limit).into())).await.unwrap();
    let mut answered = false;
    while let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["type"] == "next" {
            answered = value["payload"]["data"]["viewer"]["name"].is_string();
            break;
        }
    }
    assert!(answered, "a message at the limit is answered");
    socket.send(Message::Text(message(limit + 1).into())).await.unwrap();
    closed_within(&mut socket, Duration::from_secs(10)).await;
}
