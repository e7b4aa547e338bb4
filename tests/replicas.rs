//! Two server processes on one PostgreSQL database: a change made on one reaches the other's
//! caches within moments (LISTEN/NOTIFY), not at the next periodic refresh.

use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, TestDb, TestServer, first_error, settings_for};
use serde_json::{Value, json};

/// Polls `query` on `server` until `done` holds, for at most 5 seconds (the refresh backstops are
/// 60 s for clusters and 10 s for tokens, so passing here proves the notice did it).
async fn within_moments(
    server: &TestServer,
    token: &str,
    query: &str,
    vars: Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = server.gql_as(token, &[], query, vars.clone()).await;
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_changes_and_revocations_reach_the_other_replica() {
    let db = TestDb::new(Backend::Postgres).await;
    let a = TestServer::start(&db).await;
    let b = TestServer::start_with(settings_for(&db)).await;
    let id = a
        .gql_ok("mutation { createCluster(input: { name: \"shared\", mode: IN_CLUSTER }) { id } }", json!({}))
        .await["createCluster"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = "query($id: ID!) { cluster(id: $id) { name defaultNamespace } }";
    let seen = b.gql_ok(read, json!({ "id": id })).await;
    assert_eq!(seen["cluster"]["name"], "shared", "B has it in its directory now");

    a.gql_ok("mutation($id: ID!) { updateCluster(id: $id, input: { name: \"renamed\", defaultNamespace: \"apps\" }) { id } }", json!({ "id": id }))
        .await;
    let body =
        within_moments(&b, &b.token, read, json!({ "id": id }), |b| b["data"]["cluster"]["name"] == "renamed").await;
    assert_eq!(body["data"]["cluster"], json!({ "name": "renamed", "defaultNamespace": "apps" }), "{body}");

    a.gql_ok("mutation($id: ID!) { deleteCluster(id: $id) { id } }", json!({ "id": id })).await;
    let body = within_moments(&b, &b.token, read, json!({ "id": id }), |b| b.get("errors").is_some()).await;
    assert_eq!(first_error(&body).0, "NOT_FOUND");

    // A token revoked on A stops working on B at once, though B had just verified it.
    let (principal, token) = a.principal("roaming", "VIEWER").await;
    let me = b.gql_as(&token, &[], "{ viewer { name } }", json!({})).await;
    assert_eq!(me["data"]["viewer"]["name"], "roaming");
    let tokens =
        a.gql_ok("{ principals { edges { node { id apiTokens { edges { node { id } } } } } } }", json!({})).await;
    let token_id = tokens["principals"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["id"] == principal.as_str())
        .unwrap()["node"]["apiTokens"]["edges"][0]["node"]["id"]
        .clone();
    a.gql_ok("mutation($id: ID!) { revokeApiToken(id: $id) { id } }", json!({ "id": token_id })).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut status = 200;
    while Instant::now() < deadline {
        status = b
            .client
            .post(b.url("/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": "{ viewer { name } }" }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 401, "the revocation reached the other replica");
}
