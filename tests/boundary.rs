//! The boundary test of SECURITY.md: every Query, Mutation and Subscription field (found by
//! introspection) and every HTTP route (from the router's own list) is called as VIEWER, OPERATOR
//! and ADMIN of tenant `blue` against tenant `default`'s objects. Each call is refused with
//! NOT_FOUND or FORBIDDEN, or answers with the caller's own tenant's data only; afterwards nothing
//! of `default`'s has changed, on the control plane or in the database. A field or route this test
//! does not know fails it, so it cannot go stale.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::control_plane::{ControlPlane, ready_namespace, unique_namespace};
use common::{Backend, TestDb, TestServer, cli_principal};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

/// How a field may answer another tenant's caller.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    /// Only NOT_FOUND or FORBIDDEN.
    Refused,
    /// Refused, or data that names nothing of the other tenant (lists of one's own tenant,
    /// creating in one's own tenant).
    OwnTenant,
}

struct Targets {
    cluster: String,
    namespace: String,
    principal: String,
    token: String,
}

/// Each root field: its kind, a document that aims it at `default`'s objects, and the answer
/// allowed. New fields must be added here.
fn calls(t: &Targets) -> Vec<(&'static str, &'static str, String, Value, Answer)> {
    use Answer::*;
    let c = json!({ "c": t.cluster, "ns": t.namespace });
    vec![
        ("Query", "clusters", "{ clusters { edges { node { id name } } } }".into(), json!({}), OwnTenant),
        ("Query", "cluster", "query($c: ID!) { cluster(id: $c) { id name } }".into(), c.clone(), Refused),
        ("Query", "podLogs", "query($c: ID!, $ns: String!) { podLogs(clusterId: $c, namespace: $ns, pod: \"p\") { text } }".into(), c.clone(), Refused),
        ("Query", "principals", "{ principals { edges { node { id name apiTokens { edges { node { id } } } } } } }".into(), json!({}), OwnTenant),
        ("Query", "auditEvents", "query($c: ID) { auditEvents(filter: { clusterId: $c }) { edges { node { requestId principalId clusterId } } } }".into(), json!({ "c": t.cluster }), OwnTenant),
        ("Query", "resourcesAcrossClusters", "query($c: ID!, $ns: String!) { resourcesAcrossClusters(clusterIds: [$c], kind: \"ConfigMap\", namespace: $ns) { edges { clusterId node { metadata { name } } } clusters { clusterId error { code } } } }".into(), c.clone(), Refused),
        ("Query", "viewer", "{ viewer { id name tenant } }".into(), json!({}), OwnTenant),
        ("Mutation", "createCluster", "mutation { createCluster(input: { name: \"b-own\", mode: DIRECT, apiServerUrl: \"https://127.0.0.1:9\", bearerToken: \"t\" }) { id } }".into(), json!({}), OwnTenant),
        ("Mutation", "updateCluster", "mutation($c: ID!) { updateCluster(id: $c, input: { name: \"stolen\" }) { id } }".into(), c.clone(), Refused),
        ("Mutation", "testClusterConnection", "mutation { testClusterConnection(input: { name: \"t\", mode: DIRECT, apiServerUrl: \"https://127.0.0.1:9\", bearerToken: \"t\" }) { reachable } }".into(), json!({}), OwnTenant),
        ("Mutation", "deleteCluster", "mutation($c: ID!) { deleteCluster(id: $c) { id } }".into(), c.clone(), Refused),
        ("Mutation", "apply", "mutation($c: ID!, $ns: String!) { apply(clusterId: $c, namespace: $ns, manifest: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: victim}\\ndata: {owned: by-blue}\\n\", force: true) { succeeded } }".into(), c.clone(), Refused),
        ("Mutation", "patch", "mutation($c: ID!, $ns: String!) { patch(clusterId: $c, kind: \"ConfigMap\", namespace: $ns, name: \"victim\", type: MERGE, patch: { data: { owned: \"by-blue\" } }) { warnings } }".into(), c.clone(), Refused),
        ("Mutation", "deleteResource", "mutation($c: ID!, $ns: String!) { deleteResource(clusterId: $c, kind: \"ConfigMap\", namespace: $ns, name: \"victim\") { warnings } }".into(), c.clone(), Refused),
        ("Mutation", "scale", "mutation($c: ID!, $ns: String!) { scale(clusterId: $c, kind: \"Deployment\", namespace: $ns, name: \"web\", replicas: 9) { replicas } }".into(), c.clone(), Refused),
        ("Mutation", "rollback", "mutation($c: ID!, $ns: String!) { rollback(clusterId: $c, kind: \"Deployment\", namespace: $ns, name: \"web\") { skipped } }".into(), c.clone(), Refused),
        ("Mutation", "rolloutRestart", "mutation($c: ID!, $ns: String!) { rolloutRestart(clusterId: $c, kind: \"Deployment\", namespace: $ns, name: \"web\") { apiVersion } }".into(), c.clone(), Refused),
        ("Mutation", "createPrincipal", "mutation { createPrincipal(input: { name: \"b-own\", role: VIEWER }) { id } }".into(), json!({}), OwnTenant),
        ("Mutation", "createApiToken", "mutation($p: ID!) { createApiToken(principalId: $p, name: \"stolen\") { token } }".into(), json!({ "p": t.principal }), Refused),
        ("Mutation", "revokeApiToken", "mutation($t: ID!) { revokeApiToken(id: $t) { id } }".into(), json!({ "t": t.token }), Refused),
        ("Subscription", "clusterChanges", "subscription { clusterChanges { clusterId } }".into(), json!({}), OwnTenant),
        ("Subscription", "resourceEvents", "subscription($c: ID!, $ns: String!) { resourceEvents(clusterId: $c, kind: \"ConfigMap\", namespace: $ns, sendInitialState: true) { type } }".into(), c.clone(), Refused),
        ("Subscription", "resourceEventsAcrossClusters", "subscription($c: ID!, $ns: String!) { resourceEventsAcrossClusters(clusterIds: [$c], kind: \"ConfigMap\", namespace: $ns, sendInitialState: true) { clusterId type error { code } } }".into(), c.clone(), Refused),
        ("Subscription", "rolloutStatus", "subscription($c: ID!, $ns: String!) { rolloutStatus(clusterId: $c, kind: \"Deployment\", namespace: $ns, name: \"web\") { done } }".into(), c.clone(), Refused),
        ("Subscription", "logStream", "subscription($c: ID!, $ns: String!) { logStream(clusterId: $c, namespace: $ns, labelSelector: \"app=web\") { line } }".into(), c, Refused),
    ]
}

/// Every HTTP route, with how another tenant's caller is kept out of it. New routes must be added.
const ROUTES: [(&str, &str); 17] = [
    ("/graphql", "every Query and Mutation field, below"),
    ("/graphql/stream", "every Subscription field, below"),
    ("/graphql/ws", "a refused field over WebSocket, below"),
    ("/graphiql", "a static page: no tenant data"),
    ("/ui", "a static page: no tenant data"),
    ("/assets/{*path}", "the page's embedded files: no tenant data"),
    ("/api/v1/clusters/{id}/apply", "another tenant's cluster, below"),
    ("/api/v1/clusters/{id}/namespaces/{namespace}/pods/{pod}/portforward", "another tenant's cluster, below"),
    ("/api/v1/clusters/{id}/namespaces/{namespace}/pods/{pod}/attach", "another tenant's cluster, below"),
    ("/api/v1/clusters/{id}/namespaces/{namespace}/pods/{pod}/exec", "another tenant's cluster, below"),
    ("/auth/login", "single sign-on: sends the browser to the issuer; no tenant data, below"),
    ("/auth/callback", "single sign-on: a session for the person the issuer signed in only (tests/sso.rs)"),
    ("/auth/session", "single sign-on: the session cookie's own token only (tests/sso.rs), below"),
    ("/auth/logout", "single sign-on: ends the cookie's own session only (tests/sso.rs), below"),
    ("/healthz", "no tenant data"),
    ("/readyz", "no tenant data"),
    ("/metrics", "aggregate counts: no tenant data"),
];

fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| errors.iter().map(|e| e["extensions"]["code"].as_str().unwrap_or("<none>").to_owned()).collect())
        .unwrap_or_default()
}

/// A's state that must not move: its records, its ConfigMap on the control plane.
async fn snapshot(server: &TestServer, cp_client: &kube::Client, t: &Targets) -> Value {
    let cluster = server.server.db.cluster(&t.cluster).await.unwrap().map(|r| (r.name, r.updated_at.to_string()));
    let principals = server
        .gql_ok(
            "{ principals { edges { node { id name role apiTokens { edges { node { id active } } } } } } }",
            json!({}),
        )
        .await;
    let configmaps: kube::Api<ConfigMap> = kube::Api::namespaced(cp_client.clone(), &t.namespace);
    let victim = configmaps.get_opt("victim").await.unwrap().map(|c| (c.metadata.resource_version, c.data));
    json!({ "cluster": format!("{cluster:?}"), "principals": principals, "victim": format!("{victim:?}") })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_field_and_route_keeps_other_tenants_out() {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let admin = cp.client("admin").await;
    let namespace = unique_namespace("boundary");
    ready_namespace(&admin, &namespace).await;
    let victim: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "victim" }, "data": { "owned": "by-default" } })).unwrap();
    kube::Api::<ConfigMap>::namespaced(admin.clone(), &namespace).create(&Default::default(), &victim).await.unwrap();

    // Tenant `default`: a cluster on the control plane, a principal with a token.
    let cluster = server.control_plane_cluster(&cp, "a-cluster", json!({})).await;
    let (principal, _) = server.principal("alice", "OPERATOR").await;
    let tokens =
        server.gql_ok("{ principals { edges { node { id apiTokens { edges { node { id } } } } } } }", json!({})).await;
    let token = tokens["principals"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["id"] == principal.as_str())
        .map(|e| e["node"]["apiTokens"]["edges"][0]["node"]["id"].as_str().unwrap().to_owned())
        .unwrap();
    let targets = Targets { cluster, namespace, principal, token };
    let admin_id = server.gql_ok("{ viewer { id } }", json!({})).await["viewer"]["id"].as_str().unwrap().to_owned();
    let markers = [targets.cluster.clone(), targets.principal.clone(), targets.token.clone(), admin_id];
    let before = snapshot(&server, &admin, &targets).await;

    // The schema's fields, by introspection, must all be known here.
    let introspection = server
        .gql_ok("{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { fields { name } } } }", json!({}))
        .await;
    let mut in_schema = BTreeSet::new();
    for (kind, key) in [("Query", "queryType"), ("Mutation", "mutationType"), ("Subscription", "subscriptionType")] {
        for field in introspection["__schema"][key]["fields"].as_array().unwrap() {
            in_schema.insert((kind.to_owned(), field["name"].as_str().unwrap().to_owned()));
        }
    }
    let table = calls(&targets);
    let known: BTreeSet<(String, String)> = table.iter().map(|(k, f, ..)| (k.to_string(), f.to_string())).collect();
    assert_eq!(in_schema, known, "every root field must be in the boundary test's table, and only those");
    let routes: BTreeSet<&str> = ROUTES.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        kubegql::http::route_paths().into_iter().collect::<BTreeSet<_>>(),
        routes,
        "every route must be in the boundary test"
    );

    let blue: Vec<(&str, String)> = ["VIEWER", "OPERATOR", "ADMIN"]
        .into_iter()
        .map(|role| (role, cli_principal(&db, "blue", &format!("b-{}", role.to_lowercase()), role)))
        .collect();
    for (role, token) in &blue {
        for (kind, field, document, variables, answer) in &table {
            let body = if *kind == "Subscription" {
                match server.subscribe_sse(token, document, variables.clone()).await {
                    Err((_, body)) => body,
                    Ok(mut events) => {
                        match tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
                            Ok(Some(event)) => event,
                            // An open feed that sends nothing of the other tenant.
                            _ => json!({ "data": null }),
                        }
                    }
                }
            } else {
                server.gql_as(token, &[], document, variables.clone()).await
            };
            let found = codes(&body);
            // Errors may repeat the id the caller sent, and so may blue's own audit records of
            // its refused attempts (their clusterId is blue's argument); apart from that, data
            // must hold nothing of `default`'s.
            let data = body["data"].to_string();
            let own_words = if *field == "auditEvents" { &markers[1..] } else { &markers[..] };
            let leaked = own_words.iter().any(|m| data.contains(m.as_str()));
            assert!(!leaked, "{role} of blue saw default's objects through {field}: {body}");
            let refused = !found.is_empty() && found.iter().all(|c| c == "NOT_FOUND" || c == "FORBIDDEN");
            match answer {
                Answer::Refused => assert!(refused, "{role} of blue: {field} must be refused, got {body}"),
                Answer::OwnTenant => {
                    assert!(refused || found.is_empty(), "{role} of blue: {field} answered {body}")
                }
            }
        }

        // The plain HTTP routes that name a cluster.
        let apply = server
            .client
            .post(server.url(&format!("/api/v1/clusters/{}/apply?namespace={}", targets.cluster, targets.namespace)))
            .bearer_auth(token)
            .body("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: victim}\ndata: {owned: by-blue}\n")
            .send()
            .await
            .unwrap();
        assert!([403, 404].contains(&apply.status().as_u16()), "{role}: apply answered {}", apply.status());
        for what in ["portforward?port=80", "attach?container=c", "exec?command=id"] {
            let url = format!(
                "ws://{}/api/v1/clusters/{}/namespaces/{}/pods/p/{what}",
                server.server.addr, targets.cluster, targets.namespace
            );
            let mut request =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            match tokio_tungstenite::connect_async(request).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert!(
                        [403, 404].contains(&response.status().as_u16()),
                        "{role}: {what} answered {}",
                        response.status()
                    )
                }
                other => panic!("{role}: {what} was not refused: {:?}", other.map(|_| ())),
            }
        }
        // A refused field over WebSocket.
        let body =
            ws_query(&server, token, "query($c: ID!) { cluster(id: $c) { name } }", json!({ "c": targets.cluster }))
                .await;
        assert_eq!(codes(&body), vec!["NOT_FOUND"], "{role}: over WebSocket {body}");
    }
    // Without single sign-on configured, its routes answer NOT_FOUND to every caller.
    for (method, path) in
        [("GET", "/auth/login"), ("GET", "/auth/callback"), ("POST", "/auth/session"), ("POST", "/auth/logout")]
    {
        let request = server.client.request(method.parse().unwrap(), server.url(path));
        let response = request.bearer_auth(common::ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(codes(&body), vec!["NOT_FOUND"], "{path}: {body}");
    }
    // The routes without tenant data say nothing of `default`'s objects.
    for path in ["/graphiql", "/ui", "/assets/graphiql-page.js", "/assets/ui.js", "/healthz", "/readyz", "/metrics"] {
        let text = server.client.get(server.url(path)).send().await.unwrap().text().await.unwrap();
        assert!(!markers.iter().any(|m| text.contains(m.as_str())), "{path} names default's objects");
    }

    let after = snapshot(&server, &admin, &targets).await;
    assert_eq!(before, after, "nothing of the default tenant changed");
}

/// One query over `graphql-transport-ws`; returns the `next` payload or the `error` payload.
async fn ws_query(server: &TestServer, token: &str, query: &str, variables: Value) -> Value {
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
    socket
        .send(send(json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } })))
        .await
        .unwrap();
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("an answer").unwrap().unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        match frame["type"].as_str() {
            Some("next") => return frame["payload"].clone(),
            Some("error") => return json!({ "errors": frame["payload"] }),
            _ => continue,
        }
    }
}
