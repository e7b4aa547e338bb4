//! Fuzzed messages on the GraphQL WebSocket, in both subprotocols: random text, random bytes and
//! protocol messages with random fields, before and after `connection_init`. The server answers
//! each with protocol messages or closes the socket with a code, never panics (a panic anywhere
//! in this test process is counted), and keeps serving. In a binary of its own, so that no other
//! test's panic is counted. Cases: `PROPTEST_CASES` (default 64 connections per subprotocol).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, TestDb, TestServer};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A frame a client might send: protocol messages with random fields, a real subscription, or
/// noise.
fn frame() -> impl Strategy<Value = Message> {
    let kind = prop_oneof![
        Just("connection_init"),
        Just("subscribe"),
        Just("start"),
        Just("stop"),
        Just("complete"),
        Just("ping"),
        Just("pong"),
        Just("connection_terminate"),
        Just("next"),
        Just("error"),
    ];
    prop_oneof![
        4 => (kind, any_json(), any_json()).prop_map(|(kind, id, payload)| {
            Message::Text(json!({ "type": kind, "id": id, "payload": payload }).to_string().into())
        }),
        2 => (prop_oneof![Just("subscribe"), Just("start")], "[0-9]{1,3}").prop_map(|(kind, id)| {
            let payload = json!({ "query": "subscription { clusterChanges { kind } }" });
            Message::Text(json!({ "type": kind, "id": id, "payload": payload }).to_string().into())
        }),
        1 => "(?s).{0,200}".prop_map(|text| Message::Text(text.into())),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|bytes| Message::Binary(bytes.into())),
    ]
}

/// Whether to start with a valid `connection_init`, and the frames that follow.
fn session() -> impl Strategy<Value = (bool, Vec<Message>)> {
    (any::<bool>(), prop::collection::vec(frame(), 1..8))
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &TestServer, protocol: &str) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", server.server.addr).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.expect("upgrade").0
}

/// Reads what the server sends until it goes quiet or closes: every text message must be a
/// protocol message (JSON with a `type`), and a close must carry a code.
async fn answers(socket: &mut Socket) -> Result<Option<u16>, String> {
    loop {
        match tokio::time::timeout(Duration::from_millis(300), socket.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Ok(Some(1006)),
            Ok(Some(Err(_))) => return Ok(Some(1006)),
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(&text).map_err(|_| format!("not JSON: {text}"))?;
                if !value["type"].is_string() {
                    return Err(format!("a message without a type: {text}"));
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map(|f| u16::from(f.code)).ok_or("a close without a code")?;
                return Ok(Some(code));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzzed_websocket_messages_get_protocol_answers_or_a_close_and_never_a_panic() {
    let panics = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&panics);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));

    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64u32);
    // A fixed seed: a failure names its case, and the next run meets the same frames.
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let mut closes = std::collections::BTreeMap::<u16, usize>::new();
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        for case in 0..cases {
            let (init, frames) = session().new_tree(&mut runner).unwrap().current();
            let mut socket = connect(&server, protocol).await;
            if init {
                let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", server.token) } });
                socket.send(Message::Text(init.to_string().into())).await.unwrap();
            }
            let mut closed = None;
            for frame in &frames {
                if socket.send(frame.clone()).await.is_err() {
                    break;
                }
                match answers(&mut socket).await {
                    Ok(None) => {}
                    Ok(Some(code)) => {
                        closed = Some(code);
                        break;
                    }
                    Err(bad) => panic!("{protocol} case {case} ({init}, {frames:?}): {bad}"),
                }
            }
            if let Some(code) = closed {
                assert_ne!(code, 1011, "{protocol} case {case}: the server failed internally on {frames:?}");
                *closes.entry(code).or_default() += 1;
            }
        }
    }
    eprintln!("closes by code: {closes:?}");
    assert!(!closes.is_empty(), "some of the noise was refused with a close");

    // Still serving: a health check and a subscription that works.
    let health = server.client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let mut socket = connect(&server, "graphql-transport-ws").await;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", server.token) } });
    socket.send(Message::Text(init.to_string().into())).await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack:?}");
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a panic happened while serving the fuzzed messages");
}
