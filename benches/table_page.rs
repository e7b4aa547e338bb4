//! A 500-row table page (`Cluster.table`) through kubegql's GraphQL endpoint versus the same
//! Table list made directly with kube-rs, against the same API server, interleaved in one run.
//!
//! Needs the test control plane: `tests/cluster/up`, then `cargo bench --bench table_page`.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kube::api::ListParams;
use serde::Deserialize;
use serde_json::{Value, json};

const NAMESPACE: &str = "kubegql-bench";
const OBJECTS: usize = 500;

/// What a table view reads of kubegql's answer: the columns, each row's text and its object's
/// name and uid (to update the row in place).
#[derive(Deserialize)]
struct Response {
    data: Data,
}
#[derive(Deserialize)]
struct Data {
    cluster: ClusterData,
}
#[derive(Deserialize)]
struct ClusterData {
    table: Table<Row>,
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct Table<R> {
    columns: Vec<Column>,
    rows: Vec<R>,
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct Column {
    name: String,
    priority: i64,
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct Row {
    text: Vec<String>,
    object: RowObject,
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct RowObject {
    metadata: Meta,
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct Meta {
    name: String,
    uid: String,
}

/// The API server's Table as a direct client reads it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct DirectTable {
    column_definitions: Vec<Column>,
    rows: Vec<DirectRow>,
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct DirectRow {
    cells: Vec<Value>,
    object: RowObject,
}

#[tokio::main]
async fn main() {
    let vars = support::control_plane_env();
    let client = support::admin_client_with_namespace(&vars, NAMESPACE).await;
    support::configmaps(&client, NAMESPACE, "page", "bench", OBJECTS).await;
    let token = "kgq_bench-admin-token-0123456789";
    let (mut server, _dir, base, id) = support::server_with_cluster(&vars, token, &[]).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/graphql");
    let body = json!({
        "query": "query($id: ID!, $ns: String) { cluster(id: $id) { table(kind: \"ConfigMap\", namespace: $ns,
            labelSelector: \"bench=page\", first: 500) { columns { name priority } rows { text object { metadata { name uid } } } } } }",
        "variables": { "id": id, "ns": NAMESPACE }
    });
    let direct = || {
        let params = ListParams::default().labels("bench=page").limit(500);
        let mut request =
            kube::core::Request::new(format!("/api/v1/namespaces/{NAMESPACE}/configmaps")).list(&params).unwrap();
        request.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io"),
        );
        request
    };

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..support::rounds() + 3 {
        let t = Instant::now();
        let response = http.post(&url).bearer_auth(token).json(&body).send().await.unwrap();
        let page: Response = response.json().await.expect("a table page");
        let took = t.elapsed();
        assert_eq!(page.data.cluster.table.rows.len(), OBJECTS);
        let t = Instant::now();
        let table: DirectTable = client.request(direct()).await.unwrap();
        let direct_took = t.elapsed();
        assert_eq!(table.rows.len(), OBJECTS);
        if round >= 3 {
            ours.push(took);
            theirs.push(direct_took);
        }
    }
    let per_round = support::median_ratio(&ours, &theirs);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (a, b) = (support::median(ours), support::median(theirs));
    println!("500-row table page of ConfigMaps, median of {} interleaved rounds", support::rounds());
    println!("{:<52} {:>8.2} ms", "kubegql, table (text, name, uid)", ms(a));
    println!("{:<52} {:>8.2} ms", "direct kube-rs request, as=Table", ms(b));
    println!("{:<52} {:.2} (median per-round ratio {:.2})", "kubegql / direct", ms(a) / ms(b), per_round);
    let _ = server.kill();
}
