//! Single sign-on against a real OpenID provider (Ory Hydra, built from its Go module and started
//! by the test command): ID tokens mapped to tenants and roles by the operator's rules, tokens of
//! another issuer or audience, expired and tampered tokens, key rotation, live connections that
//! end with their token, and the pages' sign-in (authorization code with PKCE), refresh and
//! sign-out.

use crate::common::{self, browser};

use std::time::{Duration, Instant};

use common::oidc::{Provider, browser, expiry, key_id};
use common::{Backend, TestDb, TestServer, settings_for};
use serde_json::{Value, json};

/// A kubegql with single sign-on from `provider` for `client_id`, on `port` (0: any).
async fn sso_server(
    provider: &Provider,
    client_id: &str,
    secret: Option<&str>,
    extra: &str,
    port: u16,
) -> (TestServer, (TestDb, tempfile::TempDir)) {
    let db = TestDb::new(Backend::Sqlite).await;
    let (server, dir) = sso_server_on(&db, provider, client_id, secret, extra, port).await;
    (server, (db, dir))
}

/// As `sso_server`, on a database of the caller's (replicas share one).
async fn sso_server_on(
    db: &TestDb,
    provider: &Provider,
    client_id: &str,
    secret: Option<&str>,
    extra: &str,
    port: u16,
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        "issuer: {}\nclientId: {client_id}\nclockSkewSeconds: 0\nrules:\n\
         - {{group: admins, tenant: default, role: ADMIN}}\n\
         - {{group: devs, tenant: blue, role: VIEWER}}\n\
         - {{emailDomain: ops.example.com, tenant: blue, role: OPERATOR}}\n{extra}",
        provider.issuer
    );
    if let Some(secret) = secret {
        std::fs::write(dir.path().join("secret"), secret).unwrap();
        config.push_str(&format!("clientSecretFile: {}\n", dir.path().join("secret").display()));
    }
    std::fs::write(dir.path().join("oidc.yaml"), config).unwrap();
    let mut settings = settings_for(db);
    settings.listen = format!("127.0.0.1:{port}").parse().unwrap();
    settings.oidc_config = Some(dir.path().join("oidc.yaml"));
    (TestServer::start_with(settings).await, dir)
}

/// A kubegql whose pages sign in at `provider` (a client registered for it, its ID tokens living
/// `lifespan`), with `extra` configuration (`{redirect}` stands for its redirect URL).
async fn sign_in_server(
    provider: &Provider,
    what: &str,
    lifespan: &str,
    extra: &str,
) -> (TestServer, (TestDb, tempfile::TempDir)) {
    let id = client_id(what);
    // kubegql's redirect URL names its port, so the port is chosen first.
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/auth/callback");
    let secret = provider.register_client(&id, &[&redirect]).await;
    provider.set_token_lifespan(&id, lifespan).await;
    let extra = format!("redirectUrl: {redirect}\n{}", extra.replace("{port}", &port.to_string()));
    sso_server(provider, &id, Some(&secret), &extra, port).await
}

/// A free loopback port, for a server whose redirect URL must name its port before it starts.
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// Signs `page` (a browser) in at `server` through its /auth/login and the issuer.
async fn sign_in_page(server: &TestServer, idp: &Provider, page: &reqwest::Client, subject: &str, claims: Value) {
    let response = page.get(server.url("/auth/login")).send().await.unwrap();
    let authorize = response.headers()["location"].to_str().unwrap().to_owned();
    let callback = idp.sign_in(page, &authorize, subject, claims).await;
    let response = page.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 303, "signed in: {:?}", response.text().await);
}

fn client_id(what: &str) -> String {
    format!("kubegql-{what}-{}", uuid::Uuid::new_v4().simple())
}

fn code(body: &Value) -> String {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or("<none>").to_owned()
}

fn message(body: &Value) -> String {
    body["errors"][0]["message"].as_str().unwrap_or("").to_owned()
}

/// `viewer` with `token`: the HTTP status and the body.
async fn viewer(server: &TestServer, token: &str) -> (u16, Value) {
    let response = server
        .client
        .post(server.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": "{ viewer { id name role tenant } }" }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_get_the_tenant_and_role_of_the_first_matching_rule() {
    let idp = Provider::get("A");
    let id = client_id("rules");
    let secret = idp.register_client(&id, &[common::oidc::RELYING_PARTY_REDIRECT]).await;
    let (server, _dir) = sso_server(&idp, &id, None, "", 0).await;

    let alice = idp
        .id_token(
            &id,
            &secret,
            "alice",
            json!({ "email": "alice@example.com", "email_verified": true, "groups": ["admins", "devs"] }),
        )
        .await;
    let (status, body) = viewer(&server, &alice).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["viewer"]["role"], "ADMIN", "{body}");
    assert_eq!(body["data"]["viewer"]["tenant"], "default");
    assert_eq!(body["data"]["viewer"]["name"], "alice@example.com");
    assert!(body["data"]["viewer"]["id"].as_str().unwrap().starts_with("oidc:"));
    // ADMIN of its tenant: it may list the tenant's principals.
    let body = server.gql_as(&alice, &[], "{ principals { edges { node { name } } } }", json!({})).await;
    assert!(body["errors"].is_null(), "{body}");

    let bob = idp.id_token(&id, &secret, "bob", json!({ "groups": ["devs"] })).await;
    let (_, body) = viewer(&server, &bob).await;
    assert_eq!(
        (body["data"]["viewer"]["role"].as_str(), body["data"]["viewer"]["tenant"].as_str()),
        (Some("VIEWER"), Some("blue"))
    );
    // No verified email: named by its subject.
    assert_eq!(body["data"]["viewer"]["name"], "bob");
    let body = server
        .gql_as(&bob, &[], "mutation { createPrincipal(input: { name: \"x\", role: VIEWER }) { id } }", json!({}))
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");

    // An email rule holds for a verified email only.
    let carol =
        idp.id_token(&id, &secret, "carol", json!({ "email": "carol@ops.example.com", "email_verified": true })).await;
    let (_, body) = viewer(&server, &carol).await;
    assert_eq!(body["data"]["viewer"]["role"], "OPERATOR", "{body}");
    let unverified = idp
        .id_token(&id, &secret, "mallory", json!({ "email": "mallory@ops.example.com", "email_verified": false }))
        .await;
    let (status, body) = viewer(&server, &unverified).await;
    assert_eq!((status, code(&body).as_str()), (403, "FORBIDDEN"), "{body}");
    assert!(message(&body).contains("no sign-in rule"), "{body}");

    // A claimed name that is no safe name (here with a space and a line break) is not used.
    let odd = idp
        .id_token(
            &id,
            &secret,
            "odd-one",
            json!({ "email": "odd one\n@example.com", "email_verified": true, "groups": ["devs"] }),
        )
        .await;
    let (_, body) = viewer(&server, &odd).await;
    assert_eq!(body["data"]["viewer"]["name"], "odd-one", "{body}");

    // Someone no rule admits is refused, and it is not counted as a guessed token.
    let dave = idp.id_token(&id, &secret, "dave", json!({ "groups": ["visitors"] })).await;
    let (status, body) = viewer(&server, &dave).await;
    assert_eq!((status, code(&body).as_str()), (403, "FORBIDDEN"), "{body}");

    // API tokens keep working beside single sign-on.
    let (status, body) = viewer(&server, common::ADMIN_TOKEN).await;
    assert_eq!((status, body["data"]["viewer"]["name"].as_str()), (200, Some("admin")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_another_issuer_or_audience_or_tampered_are_refused() {
    let idp = Provider::get("A");
    let other_idp = Provider::get("B");
    let id = client_id("refusals");
    let secret = idp.register_client(&id, &[common::oidc::RELYING_PARTY_REDIRECT]).await;
    let (server, _dir) = sso_server(&idp, &id, None, "", 0).await;
    let claims = json!({ "groups": ["admins"] });

    // The same client id at another issuer: a real token, signed by that issuer.
    let other_secret = other_idp.register_client(&id, &[common::oidc::RELYING_PARTY_REDIRECT]).await;
    let foreign = other_idp.id_token(&id, &other_secret, "alice", claims.clone()).await;
    let (status, body) = viewer(&server, &foreign).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"), "{body}");
    assert!(message(&body).contains("another issuer"), "{body}");

    // The right issuer, but a token for another client.
    let other_id = client_id("other-audience");
    let other_client_secret = idp.register_client(&other_id, &[common::oidc::RELYING_PARTY_REDIRECT]).await;
    let elsewhere = idp.id_token(&other_id, &other_client_secret, "alice", claims.clone()).await;
    let (status, body) = viewer(&server, &elsewhere).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"), "{body}");
    assert!(message(&body).contains("another audience"), "{body}");

    // A good token with one claim changed: the signature no longer holds.
    let good = idp.id_token(&id, &secret, "bob", json!({ "groups": ["devs"] })).await;
    assert_eq!(viewer(&server, &good).await.0, 200);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: Value = serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
        payload["groups"] = json!(["admins"]);
        parts[1] = engine.encode(serde_json::to_vec(&payload).unwrap());
    }
    let (status, body) = viewer(&server, &parts.join(".")).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"), "{body}");
    assert!(message(&body).contains("signature"), "{body}");
    // A token with no signature at all.
    let unsigned = format!("{}.{}.", parts[0], parts[1]);
    let (status, body) = viewer(&server, &unsigned).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refused_and_live_connections_end_with_their_token() {
    let idp = Provider::get("A");
    let id = client_id("expiry");
    let secret = idp.register_client(&id, &[common::oidc::RELYING_PARTY_REDIRECT]).await;
    idp.set_token_lifespan(&id, "8s").await;
    let (server, _dir) = sso_server(&idp, &id, None, "", 0).await;
    let token = idp.id_token(&id, &secret, "alice", json!({ "groups": ["admins"] })).await;
    let expires = expiry(&token);
    assert_eq!(viewer(&server, &token).await.0, 200);

    // A subscription over SSE and one over WebSocket, opened with the token.
    let mut sse = server
        .subscribe_sse(&token, "subscription { clusterChanges { clusterId } }", json!({}))
        .await
        .expect("SSE opens");
    let mut ws = ws_subscribe(&server, &token, "subscription { clusterChanges { clusterId } }").await;
    // A third renews its credentials before they expire, with a later token of the same person
    // (a graphql-transport-ws ping carrying it): it lives on until that one expires.
    let mut renewed = ws_subscribe(&server, &token, "subscription { clusterChanges { clusterId } }").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = idp.id_token(&id, &secret, "alice", json!({ "groups": ["admins"] })).await;
    assert!(expiry(&later) > expires, "a later token");
    assert!(chrono::Utc::now().timestamp() < expires, "renewed before the first token expired");
    {
        use futures_util::SinkExt;
        let ping = json!({ "type": "ping", "payload": { "Authorization": format!("Bearer {later}") } });
        renewed.send(tokio_tungstenite::tungstenite::Message::Text(ping.to_string().into())).await.unwrap();
    }

    // Refused once expired (no clock skew is allowed in this configuration).
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = viewer(&server, &token).await;
        if status == 401 {
            break body;
        }
        assert!(Instant::now() < deadline, "the token was still accepted 30 s after it was issued");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(code(&body), "UNAUTHENTICATED");
    assert!(message(&body).contains("expired"), "{body}");
    let now = chrono::Utc::now().timestamp();
    assert!(now >= expires, "refused only once expired (exp {expires}, now {now})");

    // Both live connections end: within the recheck interval of the expiry.
    let ended = tokio::time::timeout(Duration::from_secs(15), async { while sse.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the SSE subscription outlived its token");
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        use futures_util::StreamExt;
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the WebSocket subscription outlived its token");

    // The renewed one ends too, but only once the later token has expired.
    let ended = tokio::time::timeout(Duration::from_secs(30), closed(&mut renewed)).await;
    assert!(ended.is_ok(), "the renewed WebSocket outlived its later token");
    let now = chrono::Utc::now().timestamp();
    assert!(now >= expiry(&later), "the renewed WebSocket ended at {now}, before its later token expired");
}

/// Reads a socket until it closes.
async fn closed(socket: &mut Socket) {
    use futures_util::StreamExt;
    loop {
        match socket.next().await {
            None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => break,
            Some(Ok(_)) => {}
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A subscription over `graphql-transport-ws`, acknowledged.
async fn ws_subscribe(server: &TestServer, token: &str, query: &str) -> Socket {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://{}/graphql/ws", server.server.addr);
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |v: Value| Message::Text(v.to_string().into());
    socket
        .send(send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })))
        .await
        .unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("an answer").unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack:?}");
    socket.send(send(json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }))).await.unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_issuer_rotates_in_are_fetched_without_a_restart() {
    // Issuer B: rotating its keys does not disturb the tests that sign in at A meanwhile.
    let idp = Provider::get("B");
    let id = client_id("rotation");
    let secret = idp.register_client(&id, &[common::oidc::RELYING_PARTY_REDIRECT]).await;
    let (server, _dir) = sso_server(&idp, &id, None, "", 0).await;
    let before = idp.id_token(&id, &secret, "alice", json!({ "groups": ["admins"] })).await;
    assert_eq!(viewer(&server, &before).await.0, 200);

    let kid = idp.rotate_signing_key().await;
    let after = idp.id_token(&id, &secret, "alice", json!({ "groups": ["admins"] })).await;
    assert_eq!(key_id(&after), kid, "the issuer signs with the new key");
    assert_ne!(key_id(&before), kid);
    // kubegql fetches the key set again on the unknown key id (at most once per 10 s, so the
    // first tries may be refused while it holds back).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = viewer(&server, &after).await;
        if status == 200 {
            assert_eq!(body["data"]["viewer"]["role"], "ADMIN");
            break;
        }
        assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
        assert!(Instant::now() < deadline, "a token signed with the rotated-in key was still refused: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The old key is still in the issuer's set, so its tokens still hold.
    assert_eq!(viewer(&server, &before).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_sign_in_with_the_code_flow_refresh_and_sign_out() {
    let idp = Provider::get("A");
    // ID tokens shorter-lived than the refresh margin: every session call refreshes.
    let extra = "postLogoutRedirectUrl: http://127.0.0.1:{port}/ui\n";
    let (server, _dir) = sign_in_server(&idp, "pages", "45s", extra).await;
    let redirect = server.url("/auth/callback");

    // Not signed in yet.
    let page = browser();
    let response = page.post(server.url("/auth/session")).send().await.unwrap();
    assert_eq!(response.status(), 401);

    // The page sends the browser to the issuer: PKCE, state and nonce; no token anywhere.
    let response = page.get(server.url("/auth/login?return=/graphiql")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let set_cookie: Vec<String> =
        response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(set_cookie.iter().any(|c| c.starts_with("kubegql_login=") && c.contains("HttpOnly")), "{set_cookie:?}");
    let authorize = response.headers()["location"].to_str().unwrap().to_owned();
    let url = reqwest::Url::parse(&authorize).unwrap();
    assert!(authorize.starts_with(&format!("{}/oauth2/auth", idp.issuer)), "{authorize}");
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("code_challenge").is_some() && param("state").is_some() && param("nonce").is_some());
    assert_eq!(param("redirect_uri").as_deref(), Some(redirect.as_str()));

    let callback = idp
        .sign_in(&page, &authorize, "erin", json!({ "email": "erin@ops.example.com", "email_verified": true }))
        .await;
    assert!(callback.starts_with(&redirect), "{callback}");
    assert!(!callback.contains("id_token") && !callback.contains("access_token"), "no token in the URL: {callback}");

    // The callback in another browser (a link someone was sent) is refused, and does not use up
    // the login.
    let elsewhere = browser().get(&callback).send().await.unwrap();
    assert_eq!(elsewhere.status(), 400);
    assert!(elsewhere.text().await.unwrap().contains("not started in this browser"));

    let response = page.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    assert_eq!(response.headers()["location"], "/graphiql");
    let set_cookie: Vec<String> =
        response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let session_cookie = set_cookie.iter().find(|c| c.starts_with("kubegql_session=")).expect("a session cookie");
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Strict"), "{session_cookie}");
    // A callback is used once.
    assert_eq!(page.get(&callback).send().await.unwrap().status(), 400);

    // The page asks for its token: an ID token that works as a bearer token.
    let first: Value = page.post(server.url("/auth/session")).send().await.unwrap().json().await.unwrap();
    let token = first["token"].as_str().expect("a token").to_owned();
    assert_eq!(first["viewer"]["role"], "OPERATOR", "{first}");
    assert_eq!(first["viewer"]["name"], "erin@ops.example.com");
    let (status, body) = viewer(&server, &token).await;
    assert_eq!((status, body["data"]["viewer"]["tenant"].as_str()), (200, Some("blue")), "{body}");

    // About to expire, so asked again it is refreshed: a new token that lives longer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second: Value = page.post(server.url("/auth/session")).send().await.unwrap().json().await.unwrap();
    let refreshed = second["token"].as_str().expect("a token").to_owned();
    assert_ne!(refreshed, token, "refreshed");
    assert!(expiry(&refreshed) > expiry(&token), "the refreshed token lives longer");
    assert_eq!(viewer(&server, &refreshed).await.0, 200);
    // Signing out ends the session and refuses the tokens it handed out.
    let out: Value = page.post(server.url("/auth/logout")).send().await.unwrap().json().await.unwrap();
    assert_eq!(out["signedOut"], true);
    let end = out["endSessionUrl"].as_str().expect("the issuer's end-session URL");
    assert!(end.starts_with(&format!("{}/oauth2/sessions/logout", idp.issuer)), "{end}");
    assert_eq!(page.post(server.url("/auth/session")).send().await.unwrap().status(), 401);
    let (status, body) = viewer(&server, &refreshed).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"), "{body}");
    assert!(message(&body).contains("signed out"), "{body}");

    // A person no rule admits gets no session.
    let page = browser();
    let response = page.get(server.url("/auth/login")).send().await.unwrap();
    let authorize = response.headers()["location"].to_str().unwrap().to_owned();
    let callback = idp.sign_in(&page, &authorize, "frank", json!({ "groups": ["visitors"] })).await;
    let response = page.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("kubegql_session="))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_people_reach_clusters_as_themselves_so_cluster_rbac_decides() {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    use kube::api::{Api, DeleteParams, PostParams};
    const NAMESPACES: &str =
        "query($id: ID!) { cluster(id: $id) { namespaces(first: 5) { edges { node { metadata { name } } } } } }";
    let cp = common::control_plane::ControlPlane::get();
    let idp = Provider::get("A");
    let id = client_id("impersonate");
    let secret = idp.register_client(&id, &[common::oidc::RELYING_PARTY_REDIRECT]).await;
    let extra = "impersonate: {usernamePrefix: 'oidc:', groupsPrefix: 'oidc:'}\n";
    let (server, _keep) = sso_server(&idp, &id, None, extra, 0).await;
    let cluster = server.control_plane_cluster(&cp, "as-person", json!({ "impersonateCaller": true })).await;

    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let email = format!("alice-{suffix}@example.com");
    let team = format!("team-{suffix}");
    let token = idp
        .id_token(&id, &secret, "alice", json!({ "email": email, "email_verified": true, "groups": ["admins", team] }))
        .await;
    let before = server.gql_as(&token, &[], NAMESPACES, json!({ "id": cluster })).await;
    assert_eq!(code(&before), "FORBIDDEN", "{before}");
    assert!(message(&before).contains(&format!("oidc:{email}")), "the cluster saw the person: {before}");

    // The cluster binds the person's own group (prefixed): now its RBAC lets them list namespaces.
    let bindings: Api<ClusterRoleBinding> = Api::all(cp.client("admin").await);
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": { "name": format!("kubegql-sso-{suffix}") },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("oidc:{team}") }]
    }))
    .unwrap();
    bindings.create(&PostParams::default(), &binding).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let body = server.gql_as(&token, &[], NAMESPACES, json!({ "id": cluster })).await;
        if body.get("errors").is_none() || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = bindings.delete(&format!("kubegql-sso-{suffix}"), &DeleteParams::default()).await;
    assert!(after.get("errors").is_none(), "{after}");
    assert!(after["data"]["cluster"]["namespaces"]["edges"].as_array().is_some_and(|e| !e.is_empty()), "{after}");
}

/// Waits until the tab asked for a URL holding `name=` (Hydra's redirect to its login or consent
/// screen, which the test plays) and returns that parameter.
async fn challenge_in(page: &browser::Page, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = page.requested_urls().into_iter().rev().find_map(|u| {
            let url = reqwest::Url::parse(&u).ok()?;
            url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
        });
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "the browser never reached the {name}: {:?}", page.requested_urls());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_in_a_real_browser_refreshes_and_signs_out() {
    let idp = Provider::get("A");
    let (server, _keep) = sign_in_server(&idp, "browser", "15s", "").await;
    let chromium = browser::Browser::start().await;
    let page = chromium.page().await;
    let soon = Duration::from_secs(20);

    page.open(&server.url("/ui")).await;
    page.wait_for("the sign-in link", "!(document.querySelector('#sso') || {hidden: true}).hidden", soon).await;
    page.click("#sso").await;

    // Hydra sends the browser to its login and consent screens, which this test plays through
    // its admin API.
    let login = challenge_in(&page, "login_challenge").await;
    let next = idp.accept_login(&login, "erin").await;
    page.call("Page.navigate", json!({ "url": next })).await;
    let consent = challenge_in(&page, "consent_challenge").await;
    let next = idp.accept_consent(&consent, json!({ "email": "erin@ops.example.com", "email_verified": true })).await;
    page.call("Page.navigate", json!({ "url": next })).await;

    // Back on the dashboard, signed in as the person the issuer named.
    page.wait_for(
        "signed in",
        "location.pathname === '/ui' && (document.querySelector('#who') || {}).innerText?.includes('erin@ops.example.com')",
        soon,
    )
    .await;
    assert!(page.text("#who").await.contains("OPERATOR"), "{}", page.text("#who").await);
    assert_eq!(page.eval("document.querySelector('#sso').hidden").await, json!(true));
    let token = page.eval("sessionStorage.getItem('kubegql.token')").await.as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3, "an ID token");
    assert!(page.requested_urls().iter().all(|u| !u.contains(&token) && !u.contains("id_token=")), "no token in a URL");
    // The session cookie is not readable by the page's scripts.
    assert!(!page.eval("document.cookie").await.as_str().unwrap_or("").contains("kubegql_session"));
    page.wait_for("live", "document.querySelector('#live').classList.contains('on')", soon).await;
    page.screenshot("sso-signed-in").await;

    // The page asks for a new token before this one expires, and goes on with it.
    page.wait_for(
        "a refreshed token",
        &format!("sessionStorage.getItem('kubegql.token') !== '{token}'"),
        Duration::from_secs(40),
    )
    .await;
    let refreshed = page.eval("sessionStorage.getItem('kubegql.token')").await.as_str().unwrap().to_owned();
    assert!(expiry(&refreshed) > expiry(&token));
    assert_eq!(viewer(&server, &refreshed).await.0, 200);
    // The WebSocket opened with the first token was renewed with the refreshed one: it is still
    // the one open after the first token expired (and the server's recheck had time to run).
    let wait = expiry(&token) + 5 - chrono::Utc::now().timestamp();
    tokio::time::sleep(Duration::from_secs(wait.max(0) as u64)).await;
    let sockets = page.requested_urls().iter().filter(|u| u.ends_with("/graphql/ws")).count();
    assert_eq!(sockets, 1, "the live connection was not opened again: {:?}", page.requested_urls());
    assert_eq!(page.eval("document.querySelector('#live').classList.contains('on')").await, json!(true));

    // Signing out ends the session: the token is forgotten and refused, and the sign-in link is
    // offered again.
    page.click("#signout").await;
    page.wait_for("the token forgotten", "!sessionStorage.getItem('kubegql.token')", soon).await;
    let deadline = Instant::now() + soon;
    loop {
        let (status, _) = viewer(&server, &refreshed).await;
        if status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "the signed-out token still works");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = chromium.page().await;
    again.open(&server.url("/ui")).await;
    again.wait_for("the sign-in link again", "!(document.querySelector('#sso') || {hidden: true}).hidden", soon).await;
    assert!(page.exceptions().is_empty() && again.exceptions().is_empty(), "{:?}", page.console());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_on_one_replica_refuses_the_token_on_the_others() {
    let idp = Provider::get("A");
    let id = client_id("replicas");
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/auth/callback");
    let secret = idp.register_client(&id, &[&redirect]).await;
    // Two replicas on one PostgreSQL database.
    let db = TestDb::new(Backend::Postgres).await;
    let extra = format!("redirectUrl: {redirect}\n");
    let (one, _one_dir) = sso_server_on(&db, &idp, &id, Some(&secret), &extra, port).await;
    let (other, _other_dir) = sso_server_on(&db, &idp, &id, Some(&secret), &extra, 0).await;

    let page = browser();
    sign_in_page(&one, &idp, &page, "gina", json!({ "groups": ["admins"] })).await;
    let session: Value = page.post(one.url("/auth/session")).send().await.unwrap().json().await.unwrap();
    let token = session["token"].as_str().expect("a token").to_owned();
    assert_eq!(viewer(&other, &token).await.0, 200, "an ID token works on every replica");

    let out = page.post(one.url("/auth/logout")).send().await.unwrap();
    assert_eq!(out.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = viewer(&other, &token).await;
        if status == 401 {
            break body;
        }
        assert!(Instant::now() < deadline, "the other replica still accepts a signed-out token");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(message(&body).contains("signed out"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_is_a_503_and_api_tokens_go_on() {
    // An issuer on a closed loopback port: the server starts, and says what is wrong.
    let unreachable = Provider { issuer: "http://127.0.0.1:1".into(), admin: String::new() };
    let extra = "redirectUrl: http://127.0.0.1:2/auth/callback\n";
    let (server, _keep) = sso_server(&unreachable, "kubegql", None, extra, 0).await;
    // A well-formed ID token (of another issuer: its keys cannot be fetched anyway).
    let idp = Provider::get("A");
    let id = client_id("unreachable");
    let secret = idp.register_client(&id, &[common::oidc::RELYING_PARTY_REDIRECT]).await;
    let token = idp.id_token(&id, &secret, "alice", json!({ "groups": ["admins"] })).await;
    let (status, body) = viewer(&server, &token).await;
    assert_eq!((status, code(&body).as_str()), (503, "IDENTITY_PROVIDER_UNAVAILABLE"), "{body}");
    let login = browser().get(server.url("/auth/login")).send().await.unwrap();
    assert_eq!(login.status(), 503);
    let (status, body) = viewer(&server, common::ADMIN_TOKEN).await;
    assert_eq!((status, body["data"]["viewer"]["name"].as_str()), (200, Some("admin")), "{body}");
}
