//! A page of 500 objects merged from two clusters (`resourcesAcrossClusters`, 250 on each)
//! through kubegql's GraphQL endpoint, versus the two direct kube-rs lists made concurrently
//! and merged by the client, against the same two API servers, interleaved in one run.
//!
//! Needs both test control planes: `tests/cluster/up && tests/cluster/up --second`, then
//! `cargo bench --bench across_page`.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use serde_json::json;

const NAMESPACE: &str = "kubegql-bench";
const PER_CLUSTER: usize = 250;

#[derive(Deserialize)]
struct Response {
    data: Data,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    resources_across_clusters: Page,
}
#[derive(Deserialize)]
struct Page {
    edges: Vec<Edge>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct Edge {
    cluster_name: String,
    node: Node,
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct Node {
    metadata: Meta,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct Meta {
    name: String,
    namespace: String,
    creation_timestamp: String,
}

#[tokio::main]
async fn main() {
    let (vars_one, vars_two) = (support::control_plane_env(), support::second_control_plane_env());
    let one = support::admin_client_with_namespace(&vars_one, NAMESPACE).await;
    let two = support::admin_client_with_namespace(&vars_two, NAMESPACE).await;
    support::configmaps(&one, NAMESPACE, "across", "across-one", PER_CLUSTER).await;
    support::configmaps(&two, NAMESPACE, "across", "across-two", PER_CLUSTER).await;
    let token = "kgq_bench-admin-token-0123456789";
    let (mut server, _dir, base, id_one) = support::server_with_cluster(&vars_one, token, &[]).await;
    let id_two = support::register_cluster(&base, token, &vars_two, "bench-two").await;
    let http = reqwest::Client::new();
    let url = format!("{base}/graphql");
    let body = json!({
        "query": "query($ids: [ID!], $ns: String) { resourcesAcrossClusters(clusterIds: $ids, kind: \"ConfigMap\",
            namespace: $ns, labelSelector: \"bench=across\", first: 500) {
            edges { clusterName node { metadata { name namespace creationTimestamp } } } } }",
        "variables": { "ids": [id_one, id_two], "ns": NAMESPACE }
    });
    let params = ListParams::default().labels("bench=across").limit(500);
    let (api_one, api_two): (Api<ConfigMap>, Api<ConfigMap>) =
        (Api::namespaced(one.clone(), NAMESPACE), Api::namespaced(two.clone(), NAMESPACE));

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..support::rounds() + 3 {
        let t = Instant::now();
        let response = http.post(&url).bearer_auth(token).json(&body).send().await.unwrap();
        let page: Response = response.json().await.expect("a page");
        let took = t.elapsed();
        assert_eq!(page.data.resources_across_clusters.edges.len(), 2 * PER_CLUSTER);
        // The direct client: both lists at once (metadata only, as kubegql asks for this
        // selection), merged by namespace and name.
        let t = Instant::now();
        let (a, b) = tokio::join!(api_one.list_metadata(&params), api_two.list_metadata(&params));
        let mut merged: Vec<_> = a.unwrap().items.into_iter().chain(b.unwrap().items).collect();
        merged
            .sort_by(|x, y| (&x.metadata.namespace, &x.metadata.name).cmp(&(&y.metadata.namespace, &y.metadata.name)));
        let direct_took = t.elapsed();
        assert_eq!(merged.len(), 2 * PER_CLUSTER);
        if round >= 3 {
            ours.push(took);
            theirs.push(direct_took);
        }
    }
    let per_round = support::median_ratio(&ours, &theirs);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (a, b) = (support::median(ours), support::median(theirs));
    println!("500 ConfigMaps, 250 on each of 2 clusters, median of {} interleaved rounds", support::rounds());
    println!("{:<58} {:>8.2} ms", "kubegql resourcesAcrossClusters (first: 500)", ms(a));
    println!("{:<58} {:>8.2} ms", "direct kube-rs list_metadata x2, concurrent, merged", ms(b));
    println!("{:<58} {:.2} (median per-round ratio {:.2})", "kubegql / direct", ms(a) / ms(b), per_round);
    let _ = server.kill();
}
