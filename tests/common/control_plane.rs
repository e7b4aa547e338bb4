//! The local Kubernetes control plane started by `tests/cluster/up` (the README's test command
//! starts it). Tests read its coordinates from the state folder's `env` file.

use std::collections::HashMap;
use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, Clone)]
pub struct ControlPlane {
    pub api_url: String,
    pub ca_file: PathBuf,
    pub admin_token: String,
    pub limited_user: String,
    pub limited_token: String,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub echo_port: u16,
}

/// The checkout the tests run in. Read at run time: the build directory is shared between
/// checkouts, so a path fixed at compile time could name another one.
pub fn project_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

fn state_dir() -> PathBuf {
    match std::env::var_os("KUBEGQL_CLUSTER_STATE") {
        Some(dir) => PathBuf::from(dir),
        None => project_dir().join("tests/cluster/.state"),
    }
}

/// The control plane's certificates and keys.
pub fn pki_dir() -> PathBuf {
    state_dir().join("pki")
}

impl ControlPlane {
    /// The running control plane. Its absence is a setup error: the suite needs it.
    pub fn get() -> ControlPlane {
        Self::read(state_dir())
    }

    /// The second control plane (`tests/cluster/up --second`): an API server and etcd of their
    /// own, for the tests that span clusters. It has no nodes, controllers or echo server.
    pub fn second() -> ControlPlane {
        let mut dir = state_dir().into_os_string();
        dir.push("-second");
        Self::read(PathBuf::from(dir))
    }

    fn read(state: PathBuf) -> ControlPlane {
        let path = state.join("env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the test control plane is not running ({}: {e}); run the suite with scripts/test, \
                 or start it with tests/cluster/up",
                path.display()
            )
        });
        let vars: HashMap<String, String> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches(['"', '\'']).to_owned()))
            .collect();
        let var = |key: &str| vars.get(key).cloned().unwrap_or_else(|| panic!("{key} missing from {}", path.display()));
        ControlPlane {
            api_url: var("KUBE_TEST_API_URL"),
            ca_file: var("KUBE_TEST_CA_FILE").into(),
            admin_token: var("KUBE_TEST_ADMIN_TOKEN"),
            limited_user: var("KUBE_TEST_LIMITED_USER"),
            limited_token: var("KUBE_TEST_LIMITED_TOKEN"),
            kubeconfig: var("KUBE_TEST_KUBECONFIG").into(),
            kubectl: var("KUBE_TEST_KUBECTL").into(),
            echo_port: var("KUBE_TEST_ECHO_PORT").parse().expect("echo port"),
        }
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.ca_file).expect("CA file")
    }

    /// Runs kubectl against the control plane as its administrator and returns what it printed;
    /// fails the test when kubectl fails.
    pub fn run_kubectl(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(&self.kubectl)
            .args(["--kubeconfig", self.kubeconfig.to_str().unwrap(), "--context", "admin"])
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kube-rs client for a context of the generated kubeconfig (`admin` or `limited`).
    pub async fn client(&self, context: &str) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let options = KubeConfigOptions { context: Some(context.into()), ..Default::default() };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("config");
        kube::Client::try_from(config).expect("client")
    }
}

/// A namespace name unique to one test run.
pub fn unique_namespace(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Creates a namespace and waits until its `default` ServiceAccount exists: until the
/// controller-manager has made it, the API server refuses pods there.
pub async fn ready_namespace(client: &kube::Client, name: &str) {
    namespace_with_account(client, name, std::time::Duration::from_secs(60)).await;
}

/// Waits until the controller-manager makes a new namespace's `default` ServiceAccount again.
/// A test that restarts the shared API server or etcd ends only once the controllers have caught
/// up, so that the next test does not start on a control plane that is still recovering.
#[allow(dead_code)] // used by the tests that restart the control plane
pub async fn controllers_caught_up(client: &kube::Client, within: std::time::Duration) {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, DeleteParams};
    let name = unique_namespace("recovered");
    namespace_with_account(client, &name, within).await;
    let _ = Api::<Namespace>::all(client.clone()).delete(&name, &DeleteParams::background()).await;
}

async fn namespace_with_account(client: &kube::Client, name: &str, within: std::time::Duration) {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use kube::api::{Api, PostParams};
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.expect("namespace created");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if accounts.get_opt("default").await.ok().flatten().is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("the default ServiceAccount of {name} did not appear within {} s", within.as_secs());
}

/// Creates a pod (kwok runs it) from its JSON and waits until it is Running.
pub async fn running_pod(client: &kube::Client, namespace: &str, pod: serde_json::Value) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(pod).expect("a pod");
    let name = pod.metadata.name.clone().expect("a named pod");
    pods.create(&PostParams::default(), &pod).await.expect("pod created");
    for _ in 0..240 {
        if pods.get(&name).await.ok().and_then(|p| p.status?.phase).is_some_and(|phase| phase == "Running") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("pod {namespace}/{name} did not run within 60 s");
}
