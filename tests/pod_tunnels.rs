//! Port-forward and attach over WebSockets through kubegql to a kwok pod: kwok connects the pod's
//! ports to the harness's echo server, and attaches to the file the echo server's ticker writes.

use crate::common;

use std::time::Duration;

use common::control_plane::{ControlPlane, ready_namespace, unique_namespace};
use common::{Backend, TestDb, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn setup() -> (TestDb, TestServer, String, String) {
    setup_with(|_| {}).await
}

async fn setup_with(
    change: impl FnOnce(&mut kubegql::settings::ServeSettings),
) -> (TestDb, TestServer, String, String) {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = common::settings_for(&db);
    change(&mut settings);
    let server = TestServer::start_with(settings).await;
    let id = server.control_plane_cluster(&cp, "pf", json!({})).await;
    let ns = unique_namespace("pf");
    ready_namespace(&client, &ns).await;
    let pod = json!({
        "metadata": { "name": "echo" },
        "spec": { "containers": [{ "name": "main", "image": "registry.invalid/echo:1", "ports": [{ "containerPort": 8080 }] }] }
    });
    common::control_plane::running_pod(&client, &ns, pod).await;
    (db, server, id, ns)
}

fn url(server: &TestServer, id: &str, ns: &str, pod: &str, query: &str) -> String {
    tunnel_url(server, id, ns, pod, "portforward", query)
}

fn tunnel_url(server: &TestServer, id: &str, ns: &str, pod: &str, what: &str, query: &str) -> String {
    format!("ws://{}/api/v1/clusters/{id}/namespaces/{ns}/pods/{pod}/{what}?{query}", server.server.addr)
}

async fn echo_through(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    text: &[u8],
) -> Vec<u8> {
    socket.send(Message::Binary(text.to_vec().into())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < text.len() {
        let message =
            tokio::time::timeout(Duration::from_secs(20), socket.next()).await.expect("echo in time").unwrap().unwrap();
        if let Message::Binary(bytes) = message {
            got.extend_from_slice(&bytes);
        }
    }
    got
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

#[tokio::test(flavor = "multi_thread")]
async fn bytes_reach_the_pod_and_come_back() {
    let (_db, server, id, ns) = setup().await;
    let mut request = url(&server, &id, &ns, "echo", "port=8080").into_client_request().unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {}", server.token).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("the port-forward opens");
    assert_eq!(echo_through(&mut socket, b"kubegql forwards this\n").await, b"kubegql forwards this\n");
    assert_eq!(
        echo_through(&mut socket, b"and this too\n").await,
        b"and this too\n",
        "the same connection carries more"
    );
    socket.close(None).await.unwrap();

    // A browser sends its token as a subprotocol, as to the Kubernetes API server.
    use base64::Engine;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&server.token);
    let mut request = url(&server, &id, &ns, "echo", "port=8080").into_client_request().unwrap();
    let protocols = format!("v1.portforward.kubegql, base64url.bearer.authorization.k8s.io.{encoded}");
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.expect("the port-forward opens");
    assert_eq!(response.headers()["sec-websocket-protocol"], "v1.portforward.kubegql");
    assert_eq!(echo_through(&mut socket, b"from a browser\n").await, b"from a browser\n");
    socket.close(None).await.unwrap();

    // Refusals come before the upgrade, as HTTP errors with their codes.
    let bare = url(&server, &id, &ns, "echo", "port=8080").into_client_request().unwrap();
    assert_eq!(refused(bare).await, (401, "UNAUTHENTICATED".to_owned()));
    let with = |query: &str, pod: &str, token: &str| {
        let mut request = url(&server, &id, &ns, pod, query).into_client_request().unwrap();
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    assert_eq!(refused(with("port=0", "echo", &server.token)).await.1, "BAD_USER_INPUT");
    assert_eq!(refused(with("port=8080&extra=1", "echo", &server.token)).await.1, "BAD_USER_INPUT");
    assert_eq!(refused(with("port=8080", "nope", &server.token)).await.1, "NOT_FOUND");
    let (_, viewer) = server.principal("viv", "VIEWER").await;
    assert_eq!(refused(with("port=8080", "echo", &viewer)).await, (403, "FORBIDDEN".to_owned()));

    // Every attempt is audited, refused ones too.
    let audit = server.gql_ok("{ auditEvents(first: 50) { edges { node { field outcome name } } } }", json!({})).await;
    let outcomes: Vec<String> = audit["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["field"] == "portForward")
        .map(|e| format!("{}:{}", e["node"]["name"].as_str().unwrap(), e["node"]["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, ["echo:DENIED", "nope:ERROR", "echo:SUCCESS", "echo:SUCCESS"], "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_streams_the_containers_output_on_its_channel() {
    let (_db, server, id, ns) = setup().await;
    let request = |query: &str, token: &str| {
        let mut request = tunnel_url(&server, &id, &ns, "echo", "attach", query).into_client_request().unwrap();
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
        request.headers_mut().insert("Sec-WebSocket-Protocol", "v1.attach.kubegql".parse().unwrap());
        request
    };
    let (mut socket, response) =
        tokio_tungstenite::connect_async(request("container=main", &server.token)).await.expect("the attach opens");
    assert_eq!(response.headers()["sec-websocket-protocol"], "v1.attach.kubegql");
    // kwok's attach follows the file the harness's ticker appends a line to every second.
    let mut stdout = Vec::new();
    while !String::from_utf8_lossy(&stdout).contains("tick") {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("output in time")
            .unwrap()
            .unwrap();
        if let Message::Binary(bytes) = message {
            let (channel, data) = bytes.split_first().expect("a channel byte");
            assert!(*channel == 1 || *channel == 2, "output comes on stdout or stderr, not {channel}");
            if *channel == 1 {
                stdout.extend_from_slice(data);
            }
        }
    }
    socket.close(None).await.unwrap();

    assert_eq!(refused(request("colour=red", &server.token)).await.1, "BAD_USER_INPUT");
    let (_, viewer) = server.principal("vera", "VIEWER").await;
    assert_eq!(refused(request("", &viewer)).await, (403, "FORBIDDEN".to_owned()));
    let audit = server.gql_ok("{ auditEvents(first: 50) { edges { node { field outcome } } } }", json!({})).await;
    let outcomes: Vec<&str> = audit["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["field"] == "attach")
        .map(|e| e["node"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["DENIED", "SUCCESS"]);
}

/// A tunnel lives only as long as the credentials it was opened with.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_closes_its_tunnel() {
    let (_db, server, id, ns) = setup().await;
    let created = server
        .gql_ok("mutation { createPrincipal(input: { name: \"tunneller\", role: OPERATOR }) { id } }", json!({}))
        .await;
    let issued = server
        .gql_ok(
            "mutation($id: ID!) { createApiToken(principalId: $id, name: \"t\") { token apiToken { id } } }",
            json!({ "id": created["createPrincipal"]["id"] }),
        )
        .await;
    let token = issued["createApiToken"]["token"].as_str().unwrap();
    let mut request = url(&server, &id, &ns, "echo", "port=8080").into_client_request().unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("the port-forward opens");
    assert_eq!(echo_through(&mut socket, b"before\n").await, b"before\n");
    server
        .gql_ok(
            "mutation($id: ID!) { revokeApiToken(id: $id) { id } }",
            json!({ "id": issued["createApiToken"]["apiToken"]["id"] }),
        )
        .await;
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the tunnel closed after its token was revoked");
}

/// A principal holds at most its tunnels at once (the one over is refused with RATE_LIMITED and
/// audited); a tunnel idle past its timeout closes, keepalive pings notwithstanding; /metrics
/// counts the tunnels open.
#[tokio::test(flavor = "multi_thread")]
async fn tunnels_are_capped_per_principal_and_closed_when_idle() {
    let (_db, server, id, ns) = setup_with(|s| {
        s.tunnels.max_tunnels_per_principal = 1;
        s.tunnels.tunnel_idle_timeout_secs = 3;
        s.tunnels.tunnel_keepalive_secs = 1;
    })
    .await;
    let open = || {
        let mut request = url(&server, &id, &ns, "echo", "port=8080").into_client_request().unwrap();
        request.headers_mut().insert("Authorization", format!("Bearer {}", server.token).parse().unwrap());
        request
    };
    let (mut first, _) = tokio_tungstenite::connect_async(open()).await.expect("the first tunnel opens");
    assert_eq!(echo_through(&mut first, b"one\n").await, b"one\n");
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in
        ["kubegql_tunnels_open 1\n", "kubegql_tunnels_principals 1\n", "kubegql_tunnels_open_per_principal_max 1\n"]
    {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert_eq!(refused(open()).await, (429, "RATE_LIMITED".to_owned()), "one over the cap");

    // Pings come while it idles, and then it closes.
    let mut pinged = false;
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match first.next().await {
                Some(Ok(Message::Ping(_))) => pinged = true,
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle tunnel closed");
    assert!(pinged, "keepalive pings came first");
    // Its place is given back.
    common::eventually("the place is given back", Duration::from_secs(10), || async {
        let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        metrics.contains("kubegql_tunnels_open 0\n") && metrics.contains("kubegql_tunnels_principals 0\n")
    })
    .await;
    let (mut again, _) = tokio_tungstenite::connect_async(open()).await.expect("a new tunnel opens");
    assert_eq!(echo_through(&mut again, b"two\n").await, b"two\n");
}
