//! A 500-object page through kubegql's GraphQL endpoint versus the same list made directly with
//! kube-rs, against the same API server, interleaved in one run.
//!
//! Needs the test control plane: `tests/cluster/up`, then `cargo bench --bench resource_page`.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams};
use kubegql::server::start;
use kubegql::settings::{ApiLimits, KeySettings, ServeSettings, StoreSettings};
use serde::Deserialize;
use serde_json::json;

const NAMESPACE: &str = "kubegql-bench";
const OBJECTS: usize = 500;

#[derive(Deserialize)]
struct Response<N> {
    data: Data<N>,
}
#[derive(Deserialize)]
struct Data<N> {
    cluster: ClusterData<N>,
}
#[derive(Deserialize)]
struct ClusterData<N> {
    resources: Page<N>,
}
#[derive(Deserialize)]
struct Page<N> {
    edges: Vec<Edge<N>>,
}
#[derive(Deserialize)]
struct Edge<N> {
    #[allow(dead_code)]
    node: N,
}
/// A list view's row.
#[derive(Deserialize)]
#[allow(dead_code)]
struct ViewNode {
    metadata: ViewMeta,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ViewMeta {
    name: String,
    namespace: String,
    labels: Vec<Label>,
    creation_timestamp: String,
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct Label {
    key: String,
    value: String,
}
/// A whole object, with the name and version a detail view shows above it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct WholeNode {
    metadata: NameAndVersion,
    json: ConfigMap,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct NameAndVersion {
    name: String,
    resource_version: String,
}

#[tokio::main]
async fn main() {
    let vars = support::control_plane_env();
    let client = support::admin_client_with_namespace(&vars, NAMESPACE).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    support::configmaps(&client, NAMESPACE, "page", "bench", OBJECTS).await;

    let dir = tempfile::tempdir().unwrap();
    let token = "kgq_bench-admin-token-0123456789";
    let settings = ServeSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreSettings {
            database_url: dir.path().join("bench.db").display().to_string(),
            db_pool_size: 4,
            outage_grace_secs: 300,
        },
        keys: KeySettings {
            master_key: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
            ..Default::default()
        },
        audit: Default::default(),
        tunnels: Default::default(),
        origins: Default::default(),
        bootstrap_admin_token: Some(token.into()),
        oidc_config: None,
        limits: ApiLimits::default(),
        clients: Default::default(),
        connection_policy: Default::default(),
        upkeep: Default::default(),
        watch: Default::default(),
        logs: Default::default(),
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
    // A list view reads names and labels; a detail export reads whole objects, as kubectl shows
    // them (no managedFields) or byte for byte as stored.
    let list_view = selection("metadata { name namespace labels { key value } creationTimestamp }");
    let whole = selection("metadata { name resourceVersion } json");
    let whole_managed = selection("metadata { name resourceVersion } json(managedFields: true)");
    let params = ListParams::default().labels("bench=page").limit(500);
    let resource = kube::api::ApiResource::erase::<ConfigMap>(&());
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);

    // Both clients parse into typed values: the direct one into `ConfigMap`s, the GraphQL one into
    // structs of the fields it selected (as a typed GraphQL client such as graphql_client does).
    async fn gql<N: serde::de::DeserializeOwned>(
        http: &reqwest::Client,
        url: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Duration {
        let t = Instant::now();
        let response = http.post(url).bearer_auth(token).json(body).send().await.unwrap();
        let page: Response<N> = response.json().await.expect("a page of the selected fields");
        let took = t.elapsed();
        assert_eq!(page.data.cluster.resources.edges.len(), OBJECTS);
        took
    }
    let timed = |started: Instant, items: usize| {
        assert_eq!(items, OBJECTS);
        started.elapsed()
    };
    const PATHS: [&str; 6] = [
        "kubegql, list view (metadata fields)",
        "kubegql, whole objects (json)",
        "kubegql, whole objects (json(managedFields: true))",
        "direct kube-rs Api<ConfigMap>::list_metadata",
        "direct kube-rs Api<ConfigMap>::list",
        "direct kube-rs Api<DynamicObject>::list",
    ];
    let mut samples: [Vec<Duration>; 6] = Default::default();
    for round in 0..support::rounds() + 3 {
        let view = gql::<ViewNode>(&http, &url, token, &list_view).await;
        let whole_time = gql::<WholeNode>(&http, &url, token, &whole).await;
        let managed_time = gql::<WholeNode>(&http, &url, token, &whole_managed).await;
        let t = Instant::now();
        let metadata_time = timed(t, configmaps.list_metadata(&params).await.unwrap().items.len());
        let t = Instant::now();
        let typed_time = timed(t, configmaps.list(&params).await.unwrap().items.len());
        let t = Instant::now();
        let dynamic_time = timed(t, dynamic.list(&params).await.unwrap().items.len());
        if round >= 3 {
            for (slot, sample) in
                samples.iter_mut().zip([view, whole_time, managed_time, metadata_time, typed_time, dynamic_time])
            {
                slot.push(sample);
            }
        }
    }
    let medians = samples.clone().map(support::median);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("500-object page of ConfigMaps, median of {} interleaved rounds", support::rounds());
    for (path, median) in PATHS.iter().zip(medians) {
        println!("{path:<52} {:>8.2} ms", ms(median));
    }
    // The machine's load drifts during a run; a round's two paths share it, so the median of the
    // per-round ratios is steadier than the ratio of the medians. Both are printed.
    let ratio = |a: usize, b: usize| {
        let mut per_round: Vec<f64> =
            samples[a].iter().zip(&samples[b]).map(|(x, y)| x.as_secs_f64() / y.as_secs_f64()).collect();
        per_round.sort_by(f64::total_cmp);
        (ms(medians[a]) / ms(medians[b]), per_round[per_round.len() / 2])
    };
    for (label, a, b) in [
        ("list view / direct list_metadata (the same API call)", 0, 3),
        ("list view / direct typed list", 0, 4),
        ("whole objects / direct typed list", 1, 4),
        ("whole objects with managedFields / direct typed list", 2, 4),
    ] {
        let (of_medians, per_round) = ratio(a, b);
        println!("{label:<54} {of_medians:.2} (median per-round ratio {per_round:.2})");
    }
    server.stop().await.unwrap();
}
