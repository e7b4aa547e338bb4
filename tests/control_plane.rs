//! The test control plane itself: a real API server with controllers, a scheduler and kwok nodes.

use crate::common;

use std::time::Duration;

use common::control_plane::{ControlPlane, unique_namespace};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn create_namespace(client: &kube::Client, name: &str) {
    common::control_plane::ready_namespace(client, name).await;
}

async fn delete_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::background()).await;
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "containers": [{ "name": "main", "image": "registry.invalid/echo:1", "ports": [{ "containerPort": 8080 }] }],
                    "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }]
                }
            }
        }
    }))
    .unwrap()
}

fn pod_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Polls `probe` every 250 ms until it returns Some, for at most `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_gets_a_replica_set_and_ready_pods_on_kwok_nodes() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("cp-deploy");
    create_namespace(&client, &ns).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments.create(&PostParams::default(), &deployment("web", 2)).await.unwrap();

    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let rs = eventually(Duration::from_secs(60), "the controller-manager's ReplicaSet", || async {
        let list = replica_sets.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|rs| {
            rs.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| o.kind == "Deployment" && o.name == "web"))
        })
    })
    .await;
    assert_eq!(rs.spec.replicas, Some(2));

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let ready = eventually(Duration::from_secs(90), "2 Running and Ready pods", || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
        let ready: Vec<Pod> = list.items.into_iter().filter(pod_ready).collect();
        (ready.len() == 2).then_some(ready)
    })
    .await;
    for pod in &ready {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).expect("scheduled");
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        let node = nodes.get(&node).await.unwrap();
        let annotations = node.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations.get("kwok.x-k8s.io/node").map(String::as_str), Some("fake"), "a kwok node");
    }
    let available = eventually(Duration::from_secs(60), "Deployment available", || async {
        let d = deployments.get("web").await.ok()?;
        let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
        (available == 2).then_some(available)
    })
    .await;
    assert_eq!(available, 2);
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_limited_user_is_refused_where_rbac_says_so() {
    let cp = ControlPlane::get();
    let limited = cp.client("limited").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(limited.clone(), "default");
    configmaps.list(&ListParams::default()).await.expect("the limited user may list configmaps in default");
    let cm: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "not-allowed" } })).unwrap();
    match configmaps.create(&PostParams::default(), &cm).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403, got {other:?}"),
    }
    let namespaces: Api<Namespace> = Api::all(limited);
    match namespaces.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_through_the_api_server_reaches_the_echo_server() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("cp-pf");
    create_namespace(&client, &ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "echo" },
        "spec": {
            "containers": [{ "name": "main", "image": "registry.invalid/echo:1", "ports": [{ "containerPort": 8080 }] }],
            "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually(Duration::from_secs(60), "the echo pod Running", || async {
        pods.get("echo").await.ok().filter(pod_ready).map(|_| ())
    })
    .await;

    let mut forwarder = pods.portforward("echo", &[8080]).await.expect("port-forward opens");
    let mut stream = forwarder.take_stream(8080).expect("stream for port 8080");
    stream.write_all(b"kubegql says hello\n").await.unwrap();
    let mut echoed = vec![0u8; 19];
    tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut echoed)).await.expect("echo in time").unwrap();
    assert_eq!(&echoed, b"kubegql says hello\n");
    drop(stream);
    forwarder.abort();
    delete_namespace(&client, &ns).await;
}
