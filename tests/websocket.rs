//! Subscriptions over `/graphql/ws`, in both subprotocols, with authentication at connection_init.

use crate::common;

use std::time::Duration;

use common::{Backend, TestDb, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &TestServer, protocol: &str) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", server.server.addr).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.unwrap();
}

/// The next text message, skipping keep-alives; None when the server closed the socket.
async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("message in time")?;
        match message.ok()? {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "ka" || value["type"] == "ping" {
                    continue;
                }
                return Some(value);
            }
            Message::Close(frame) => {
                return Some(json!({
                    "closed": frame.as_ref().map(|f| u16::from(f.code)),
                    "reason": frame.map(|f| f.reason.to_string()),
                }));
            }
            _ => continue,
        }
    }
}

/// Creates clusters until the subscriber has seen one (the subscription may start a moment
/// after the subscribe message is sent), and returns that event.
async fn drive_until_event(server: &TestServer, socket: &mut Socket) -> Value {
    for i in 0..50 {
        let input = json!({ "name": format!("ws-{i}"), "mode": "IN_CLUSTER" });
        server
            .gql_ok(
                "mutation($input: CreateClusterInput!) { createCluster(input: $input) { id } }",
                json!({ "input": input }),
            )
            .await;
        if let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(200), next_json(socket)).await {
            return message;
        }
    }
    panic!("no subscription event arrived");
}

const SUBSCRIPTION: &str = "subscription { clusterChanges { kind name clusterId } }";

#[tokio::test(flavor = "multi_thread")]
async fn graphql_transport_ws_delivers_cluster_changes() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let mut socket = connect(&server, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", server.token) } }),
    )
    .await;
    assert_eq!(next_json(&mut socket).await.unwrap()["type"], "connection_ack");
    send(&mut socket, json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIPTION } })).await;
    let event = drive_until_event(&server, &mut socket).await;
    assert_eq!(event["type"], "next", "{event}");
    assert_eq!(event["id"], "1");
    let change = &event["payload"]["data"]["clusterChanges"];
    assert_eq!(change["kind"], "CREATED");
    assert!(change["name"].as_str().unwrap().starts_with("ws-"));
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_graphql_ws_delivers_cluster_changes() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let mut socket = connect(&server, "graphql-ws").await;
    send(&mut socket, json!({ "type": "connection_init", "payload": { "token": server.token } })).await;
    assert_eq!(next_json(&mut socket).await.unwrap()["type"], "connection_ack");
    send(&mut socket, json!({ "id": "7", "type": "start", "payload": { "query": SUBSCRIPTION } })).await;
    let event = drive_until_event(&server, &mut socket).await;
    assert_eq!(event["type"], "data", "{event}");
    assert_eq!(event["payload"]["data"]["clusterChanges"]["kind"], "CREATED");
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_init_without_a_valid_token_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;

    let mut socket = connect(&server, "graphql-transport-ws").await;
    send(&mut socket, json!({ "type": "connection_init", "payload": { "Authorization": "Bearer kgq_wrong" } })).await;
    let reply = next_json(&mut socket).await.unwrap_or(json!({ "closed": null }));
    // async-graphql closes a refused graphql-transport-ws init with 1002 and the reason.
    assert_eq!(reply["closed"], 1002, "{reply}");
    assert!(reply["reason"].as_str().unwrap().contains("token is not valid"), "{reply}");

    let mut socket = connect(&server, "graphql-ws").await;
    send(&mut socket, json!({ "type": "connection_init", "payload": {} })).await;
    let reply = next_json(&mut socket).await.unwrap();
    assert_eq!(reply["type"], "connection_error", "{reply}");
}
