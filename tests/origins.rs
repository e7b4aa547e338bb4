//! Browsers on other origins: CORS for the operator's allowlist only, and WebSocket upgrades
//! held to the same list. (Clients that are not browsers send no Origin and are not affected.)

use crate::common;

use common::{Backend, TestDb, TestServer, settings_for};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const LISTED: &str = "http://127.0.0.1:5173";
const OTHER: &str = "http://127.0.0.1:5174";

async fn server(origins: &[&str]) -> (TestDb, TestServer) {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.origins.cors_allow_origins = origins.iter().map(|o| o.to_string()).collect();
    let server = TestServer::start_with(settings).await;
    (db, server)
}

async fn preflight(server: &TestServer, path: &str, origin: &str) -> reqwest::Response {
    server
        .client
        .request(reqwest::Method::OPTIONS, server.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap()
}

fn allow_origin(response: &reqwest::Response) -> Option<String> {
    response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_origin_gets_cors_and_others_do_not() {
    let (_db, server) = server(&[LISTED]).await;
    for path in ["/graphql", "/graphql/stream", "/api/v1/clusters/x/apply"] {
        let answer = preflight(&server, path, LISTED).await;
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        assert_eq!(allow_origin(&answer).as_deref(), Some(LISTED), "{path}");
        let allowed_headers = answer.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
        assert!(
            allowed_headers.contains("authorization") && allowed_headers.contains("content-type"),
            "{allowed_headers}"
        );
        assert!(answer.headers().get("access-control-allow-credentials").is_none(), "never credentials");
        assert_eq!(allow_origin(&preflight(&server, path, OTHER).await), None, "{path}: an unlisted origin");
    }
    // The request itself carries the header for the listed origin, with the request id exposed.
    let answer = server
        .client
        .post(server.url("/graphql"))
        .header("origin", LISTED)
        .bearer_auth(&server.token)
        .json(&json!({ "query": "{ viewer { name } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(allow_origin(&answer).as_deref(), Some(LISTED));
    assert!(answer.headers()["access-control-expose-headers"].to_str().unwrap().contains("x-request-id"));
    // None listed (the default): no origin gets CORS.
    let (_db, closed) = server_default().await;
    assert_eq!(allow_origin(&preflight(&closed, "/graphql", LISTED).await), None);
}

async fn server_default() -> (TestDb, TestServer) {
    server(&[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrades_are_held_to_the_same_list() {
    let (_db, server) = server(&[LISTED]).await;
    let upgrade = |origin: Option<&str>| {
        let mut request = format!("ws://{}/graphql/ws", server.server.addr).into_client_request().unwrap();
        request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        if let Some(origin) = origin {
            request.headers_mut().insert("Origin", origin.parse().unwrap());
        }
        async move { tokio_tungstenite::connect_async(request).await.map(|_| ()) }
    };
    assert!(upgrade(None).await.is_ok(), "a client that is not a browser");
    assert!(upgrade(Some(LISTED)).await.is_ok(), "a listed origin");
    let own = format!("http://{}", server.server.addr);
    assert!(upgrade(Some(&own)).await.is_ok(), "a page kubegql serves itself");
    match upgrade(Some(OTHER)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("an unlisted origin was not refused: {other:?}"),
    }
}

#[test]
fn a_wildcard_origin_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubegql"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--cors-allow-origin", "*"])
        .env_remove("DATABASE_URL")
        .env_remove("KUBEGQL_CORS_ALLOW_ORIGINS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a wildcard is not allowed"), "{stderr}");
}
