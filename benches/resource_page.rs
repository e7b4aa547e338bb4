//! A 500-object page through kubegql's GraphQL endpoint versus the same list made directly with
//! kube-rs, against the same API server, interleaved in one run.
//!
//! Needs the test control plane: `tests/cluster/up`, then `cargo bench --bench resource_page`.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kubegql::server::start;
use kubegql::settings::{ApiLimits, KeySettings, ServeSettings, StoreSettings};
use serde_json::json;

const NAMESPACE: &str = "kubegql-bench";
const OBJECTS: usize = 500;
const ROUNDS: usize = 30;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    let vars = support::control_plane_env();
    let client = support::admin_client_with_namespace(&vars, NAMESPACE).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let existing = configmaps.list(&ListParams::default().labels("bench=page")).await.unwrap().items.len();
    for i in existing..OBJECTS {
        let cm = serde_json::from_value(json!({
            "metadata": { "name": format!("bench-{i:04}"), "labels": { "bench": "page" } },
            "data": { "index": i.to_string(), "payload": "x".repeat(200) }
        }))
        .unwrap();
        configmaps.create(&PostParams::default(), &cm).await.unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let token = "kgq_bench-admin-token-0123456789";
    let settings = ServeSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreSettings { database_url: dir.path().join("bench.db").display().to_string(), db_pool_size: 4 },
        keys: KeySettings { master_key: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()), ..Default::default() },
        bootstrap_admin_token: Some(token.into()),
        limits: ApiLimits::default(),
        clients: Default::default(),
        upkeep: Default::default(),
        watch: Default::default(),
    };
    let server = start(&settings).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{}/graphql", server.addr);
    let ca = std::fs::read_to_string(&vars["KUBE_TEST_CA_FILE"]).unwrap();
    let created: serde_json::Value = http
        .post(&url)
        .bearer_auth(token)
        .json(&json!({
            "query": "mutation($i: CreateClusterInput!) { createCluster(input: $i) { id } }",
            "variables": { "i": { "name": "bench", "mode": "DIRECT", "apiServerUrl": vars["KUBE_TEST_API_URL"],
                                  "bearerToken": vars["KUBE_TEST_ADMIN_TOKEN"], "caData": ca } }
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["data"]["createCluster"]["id"].as_str().unwrap().to_owned();
    let selection = |fields: &str| {
        json!({
            "query": format!("query($id: ID!, $ns: String) {{ cluster(id: $id) {{ resources(kind: \"ConfigMap\", namespace: $ns,
                labelSelector: \"bench=page\", first: 500) {{ edges {{ node {{ {fields} }} }} pageInfo {{ hasNextPage }} }} }} }}"),
            "variables": { "id": id, "ns": NAMESPACE }
        })
    };
    // A list view reads names and labels; a detail export reads whole objects.
    let list_view = selection("metadata { name namespace labels { key value } creationTimestamp }");
    let full = selection("metadata { name resourceVersion } json");
    let params = ListParams::default().labels("bench=page").limit(500);
    let resource = kube::api::ApiResource::erase::<ConfigMap>(&());
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);

    let gql = |body: serde_json::Value| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let t = Instant::now();
            let body: serde_json::Value = http.post(&url).bearer_auth(token).json(&body).send().await.unwrap().json().await.unwrap();
            let took = t.elapsed();
            let count = body["data"]["cluster"]["resources"]["edges"].as_array().map(Vec::len).unwrap_or(0);
            assert_eq!(count, OBJECTS, "{body}");
            took
        }
    };
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for round in 0..ROUNDS + 3 {
        let view = gql(list_view.clone()).await;
        let whole = gql(full.clone()).await;

        let t = Instant::now();
        let typed = configmaps.list(&params).await.unwrap();
        let typed_time = t.elapsed();
        assert_eq!(typed.items.len(), OBJECTS);

        let t = Instant::now();
        let list = dynamic.list(&params).await.unwrap();
        assert_eq!(list.items.len(), OBJECTS);
        let dynamic_time = t.elapsed();

        if round >= 3 {
            for (slot, sample) in samples.iter_mut().zip([view, whole, typed_time, dynamic_time]) {
                slot.push(sample);
            }
        }
    }
    let [view, whole, typed, dynamic] = samples.map(median);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("500-object page of ConfigMaps, median of {ROUNDS} interleaved rounds");
    println!("kubegql GraphQL, list view (metadata fields)        {:>8.2} ms", ms(view));
    println!("kubegql GraphQL, whole objects (json field)         {:>8.2} ms", ms(whole));
    println!("direct kube-rs list, typed Api<ConfigMap>           {:>8.2} ms", ms(typed));
    println!("direct kube-rs list, Api<DynamicObject>             {:>8.2} ms", ms(dynamic));
    println!("list view / direct typed:      {:.2}", ms(view) / ms(typed));
    println!("whole objects / direct typed:  {:.2}", ms(whole) / ms(typed));
    server.stop().await.unwrap();
}
