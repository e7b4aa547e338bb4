//! Principals, roles, tenants and tokens through the API.

use crate::common;

use common::{Backend, TestDb, TestServer, first_error};
use serde_json::json;

const CREATE_CLUSTER: &str = "mutation($name: String!) { createCluster(input: { name: $name, mode: DIRECT, apiServerUrl: \"https://127.0.0.1:9\", bearerToken: \"t\" }) { id } }";
const CLUSTERS: &str = "{ clusters { edges { node { id name tenant } } } }";

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_who_may_change_what() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let (_, viewer) = server.principal("vera", "VIEWER").await;
    let (_, operator) = server.principal("oscar", "OPERATOR").await;
    server.gql_ok(CREATE_CLUSTER, json!({ "name": "shared" })).await;

    for token in [&viewer, &operator] {
        let body = server.gql_as(token, &[], CLUSTERS, json!({})).await;
        assert_eq!(body["data"]["clusters"]["edges"][0]["node"]["name"], "shared", "{body}");
        let body = server.gql_as(token, &[], CREATE_CLUSTER, json!({ "name": "mine" })).await;
        assert_eq!(first_error(&body).0, "FORBIDDEN", "{body}");
        let body = server.gql_as(token, &[], "{ principals { edges { node { name } } } }", json!({})).await;
        assert_eq!(first_error(&body).0, "FORBIDDEN");
    }
    assert_eq!(server.cluster_count().await, 1);
    let viewer_me = server.gql_as(&viewer, &[], "{ viewer { name role tenant } }", json!({})).await;
    assert_eq!(viewer_me["data"]["viewer"], json!({ "name": "vera", "role": "VIEWER", "tenant": "default" }));

    let listed = server
        .gql_ok(
            "{ principals { edges { node { name role apiTokens { edges { node { name active } } } } } } }",
            json!({}),
        )
        .await;
    let names: Vec<&str> =
        listed["principals"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["admin", "oscar", "vera"]);
    assert!(!listed.to_string().contains("kgq_"), "token values are never listed");

    let bad = server
        .gql("mutation { createPrincipal(input: { name: \"no spaces allowed\", role: VIEWER }) { id } }", json!({}))
        .await;
    assert_eq!(first_error(&bad).0, "BAD_USER_INPUT");
    let dup =
        server.gql("mutation { createPrincipal(input: { name: \"vera\", role: VIEWER }) { id } }", json!({})).await;
    assert_eq!(first_error(&dup).0, "CONFLICT");
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_do_not_see_each_other() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let ours = server.gql_ok(CREATE_CLUSTER, json!({ "name": "prod" })).await["createCluster"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // An admin of another tenant, made with the CLI as an operator of the server would.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubegql"))
        .args([
            "principal",
            "create",
            "--name",
            "rita",
            "--role",
            "ADMIN",
            "--tenant",
            "red",
            "--database-url",
            &db.url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let red = stdout.lines().last().unwrap().trim().to_owned();
    assert!(red.starts_with("kgq_"));

    // Same name in another tenant is fine; each sees only its own.
    let theirs = server.gql_as(&red, &[], CREATE_CLUSTER, json!({ "name": "prod" })).await;
    let theirs = theirs["data"]["createCluster"]["id"].as_str().unwrap().to_owned();
    let mine = server.gql_ok(CLUSTERS, json!({})).await;
    assert_eq!(mine["clusters"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(mine["clusters"]["edges"][0]["node"]["id"], ours.as_str());
    let red_view = server.gql_as(&red, &[], CLUSTERS, json!({})).await;
    assert_eq!(red_view["data"]["clusters"]["edges"][0]["node"]["tenant"], "red");

    // Another tenant's cluster is NOT_FOUND, for reads and for changes.
    for (query, vars) in [
        ("query($id: ID!) { cluster(id: $id) { name } }", json!({ "id": theirs })),
        ("mutation($id: ID!) { deleteCluster(id: $id) { id } }", json!({ "id": theirs })),
        ("mutation($id: ID!) { updateCluster(id: $id, input: { name: \"x\" }) { id } }", json!({ "id": theirs })),
    ] {
        let body = server.gql(query, vars).await;
        assert_eq!(first_error(&body).0, "NOT_FOUND", "{body}");
    }
    assert_eq!(server.cluster_count().await, 2, "nothing was deleted");
    let body = server.gql_as(&red, &[], "{ principals { edges { node { name } } } }", json!({})).await;
    assert_eq!(body["data"]["principals"]["edges"], json!([{ "node": { "name": "rita" } }]));
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_expire_and_can_be_revoked() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let (id, token) = server.principal("temp", "VIEWER").await;
    let ok = server.gql_as(&token, &[], "{ viewer { name } }", json!({})).await;
    assert_eq!(ok["data"]["viewer"]["name"], "temp");

    let short = server
        .gql_ok("mutation($id: ID!) { createApiToken(principalId: $id, name: \"short\", expiresInSeconds: 1) { token apiToken { id expiresAt active } } }", json!({ "id": id }))
        .await;
    let short_token = short["createApiToken"]["token"].as_str().unwrap().to_owned();
    assert_eq!(short["createApiToken"]["apiToken"]["active"], true);
    let ok = server.gql_as(&short_token, &[], "{ viewer { name } }", json!({})).await;
    assert_eq!(ok["data"]["viewer"]["name"], "temp", "valid before it expires");
    common::eventually("the token's expiry", std::time::Duration::from_secs(10), || async {
        let body = server.gql_as(&short_token, &[], "{ viewer { name } }", json!({})).await;
        body["data"].is_null()
    })
    .await;
    let expired = server
        .client
        .post(server.url("/graphql"))
        .bearer_auth(&short_token)
        .json(&json!({ "query": "{ viewer { name } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 401, "an expired token is refused even though it was just used");

    let tokens = server
        .gql_ok("query { principals { edges { node { name apiTokens { edges { node { id name } } } } } } }", json!({}))
        .await;
    let temp = tokens["principals"]["edges"].as_array().unwrap().iter().find(|e| e["node"]["name"] == "temp").unwrap();
    let first_id = temp["node"]["apiTokens"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["name"] == "test")
        .unwrap()["node"]["id"]
        .clone();
    let revoked = server
        .gql_ok("mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt active } }", json!({ "id": first_id }))
        .await;
    assert_eq!(revoked["revokeApiToken"]["active"], false);
    let refused = server
        .client
        .post(server.url("/graphql"))
        .bearer_auth(&token)
        .json(&json!({ "query": "{ viewer { name } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a revoked token is refused at once");

    let bad = server
        .gql(
            "mutation($id: ID!) { createApiToken(principalId: $id, name: \"x\", expiresInSeconds: 0) { token } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(first_error(&bad).0, "BAD_USER_INPUT");
}
