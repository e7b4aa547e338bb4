//! What the benchmarks that need the test control plane share: its coordinates, an admin
//! client, and a namespace to work in.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The `env` file that `tests/cluster/up` writes.
pub fn control_plane_env() -> HashMap<String, String> {
    let dir = std::env::var("KUBEGQL_CLUSTER_STATE").unwrap_or_else(|_| {
        format!("{}/tests/cluster/.state", std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()))
    });
    let text = std::fs::read_to_string(format!("{dir}/env")).expect("the control plane is up (tests/cluster/up)");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches(['"', '\'']).to_owned()))
        .collect()
}

/// A kube-rs client as the control plane's admin, and the namespace `name`, created if absent.
pub async fn admin_client_with_namespace(vars: &HashMap<String, String>, name: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(&vars["KUBE_TEST_KUBECONFIG"]).unwrap();
    let options = KubeConfigOptions { context: Some("admin".into()), ..Default::default() };
    let client =
        kube::Client::try_from(kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap()).unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await.unwrap().is_none() {
        let ns = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
    }
    client
}
