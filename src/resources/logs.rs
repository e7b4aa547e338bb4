//! What a followed log reads, checked as the caller before the subscription starts: one pod (and
//! its container), a workload's pods (its selector, as `kubectl logs deployment/web` finds them),
//! or the pods of a label selector. A missing pod or workload, a refused read or a bad selector is
//! an error with its code here, not a subscription that ends at once.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, ListParams};

use super::rollout::selector_text;
use super::{ResourceError, ResourceService};
use crate::access::Caller;

/// What to follow, as asked.
#[derive(Debug, Clone)]
pub enum LogTarget {
    Pod { name: String, container: Option<String> },
    Workload { kind: String, name: String },
    Selector(String),
}

/// The kinds whose pods a log can follow by their selector.
pub const WORKLOAD_KINDS: [&str; 5] = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"];

impl ResourceService {
    /// Checks the target as the caller; returns the client to follow it with, and the pods to
    /// follow: one pod's name, or a label selector.
    pub async fn log_source(
        &self,
        caller: &Caller,
        cluster_id: &str,
        namespace: &str,
        target: LogTarget,
    ) -> Result<(Client, crate::logs::Source), ResourceError> {
        let (cluster, client) = self.client(caller, cluster_id).await?;
        let fail = |e| Self::api_error(&cluster, e);
        let source = match target {
            LogTarget::Pod { name, container } => {
                let pod = Api::<Pod>::namespaced(client.clone(), namespace).get(&name).await.map_err(fail)?;
                let containers: Vec<String> =
                    pod.spec.iter().flat_map(|s| s.containers.iter().map(|c| c.name.clone())).collect();
                if let Some(container) = container
                    && !containers.contains(&container)
                {
                    return Err(ResourceError::Invalid(format!(
                        "pod {name} has no container {container}; it has {}",
                        containers.join(", ")
                    )));
                }
                crate::logs::Source::Pod(name)
            }
            LogTarget::Workload { kind, name } => {
                let selector = match kind.as_str() {
                    "Deployment" => {
                        selector_of::<Deployment>(&client, namespace, &name, |d| Some(&d.spec.selector)).await
                    }
                    "StatefulSet" => {
                        selector_of::<StatefulSet>(&client, namespace, &name, |d| Some(&d.spec.selector)).await
                    }
                    "DaemonSet" => {
                        selector_of::<DaemonSet>(&client, namespace, &name, |d| Some(&d.spec.selector)).await
                    }
                    "ReplicaSet" => {
                        selector_of::<ReplicaSet>(&client, namespace, &name, |d| Some(&d.spec.selector)).await
                    }
                    "Job" => {
                        selector_of::<Job>(&client, namespace, &name, |d| {
                            d.spec.as_ref().and_then(|s| s.selector.as_ref())
                        })
                        .await
                    }
                    other => {
                        return Err(ResourceError::Invalid(format!(
                            "logs follow the pods of a {}, not of a {other}",
                            WORKLOAD_KINDS.join(", ")
                        )));
                    }
                };
                let selector = selector.map_err(fail)?;
                let selector = selector
                    .ok_or_else(|| ResourceError::Invalid(format!("{kind} {name} has no pod selector")))
                    .and_then(|s| selector_text(&s))?;
                if selector.is_empty() {
                    return Err(ResourceError::Invalid(format!(
                        "{kind} {name} selects every pod; refusing to follow them all"
                    )));
                }
                crate::logs::Source::Selector(selector)
            }
            LogTarget::Selector(selector) => {
                if selector.trim().is_empty() {
                    return Err(ResourceError::Invalid("labelSelector must select something".into()));
                }
                // One small list checks the selector and the permission to list pods.
                let params = ListParams::default().labels(&selector).limit(1);
                Api::<Pod>::namespaced(client.clone(), namespace).list_metadata(&params).await.map_err(fail)?;
                crate::logs::Source::Selector(selector)
            }
        };
        Ok((client, source))
    }
}

async fn selector_of<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    selector: impl Fn(&K) -> Option<&LabelSelector>,
) -> Result<Option<LabelSelector>, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let object = Api::<K>::namespaced(client.clone(), namespace).get(name).await?;
    Ok(selector(&object).cloned())
}
