//! Rollouts of Deployments, StatefulSets and DaemonSets, as `kubectl rollout` handles them:
//! status, history, undo (rollback) and restart.
//!
//! A Deployment's history is its ReplicaSets (revision in the `deployment.kubernetes.io/revision`
//! annotation); a StatefulSet's or DaemonSet's is its ControllerRevisions. Undoing a Deployment
//! puts an old ReplicaSet's pod template back with a JSON patch; undoing the others applies the
//! ControllerRevision's stored patch, as kubectl does.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::{ResourceError, ResourceService};
use crate::access::Caller;

const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Annotations of a Deployment that a rollback keeps rather than taking from the ReplicaSet.
const KEPT_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The kinds with rollouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Workload {
    /// The kind by name or plural, in any case, as kubectl takes it.
    pub fn parse(kind: &str) -> Result<Self, ResourceError> {
        match kind.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => Ok(Self::Deployment),
            "statefulset" | "statefulsets" | "sts" => Ok(Self::StatefulSet),
            "daemonset" | "daemonsets" | "ds" => Ok(Self::DaemonSet),
            _ => Err(ResourceError::Invalid(format!(
                "{kind} has no rollouts: give a Deployment, StatefulSet or DaemonSet"
            ))),
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutStatus {
    /// The rollout finished: every replica runs the current template and is available.
    pub done: bool,
    /// The rollout will not finish on its own (a Deployment past its progress deadline).
    pub failed: bool,
    /// kubectl's words for the state.
    pub message: String,
}

/// One revision of a workload's pod template.
#[derive(Debug, Clone)]
pub struct Revision {
    pub revision: i64,
    /// The ReplicaSet or ControllerRevision holding it.
    pub name: String,
    pub change_cause: Option<String>,
    pub created: Option<Time>,
    /// The pod template (a ControllerRevision's stored patch for StatefulSets and DaemonSets).
    pub template: Value,
    /// The revision the workload runs now (the highest).
    pub current: bool,
}

/// What a rollback did.
#[derive(Debug, Clone)]
pub struct Rollback {
    /// The revision rolled back to.
    pub revision: i64,
    /// The workload already ran that template; nothing was changed.
    pub skipped: bool,
    /// The workload after the rollback (as it would be, in a dry run).
    pub object: Value,
}

/// A workload's label selector as the API server reads it in `labelSelector`.
pub(crate) fn selector_text(selector: &LabelSelector) -> Result<String, ResourceError> {
    kube::core::Selector::try_from(selector.clone())
        .map(|s| s.to_string())
        .map_err(|e| ResourceError::Invalid(format!("the workload's selector cannot be read: {e}")))
}

fn owned_by(meta: &ObjectMeta, uid: &Option<String>) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}

fn annotation(meta: &ObjectMeta, key: &str) -> Option<String> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).cloned()
}

/// The pod template without the label the Deployment controller adds to its ReplicaSets.
fn template_without_hash(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove("pod-template-hash");
    }
    template
}

fn deployment_status(d: &Deployment) -> RolloutStatus {
    let name = d.metadata.name.clone().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let waiting = |message: String| RolloutStatus { done: false, failed: false, message };
    if d.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return waiting("Waiting for deployment spec update to be observed...".into());
    }
    let deadline =
        status.conditions.iter().flatten().any(|c| {
            c.type_.as_deref() == Some("Progressing") && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        });
    if deadline {
        return RolloutStatus {
            done: false,
            failed: true,
            message: format!("deployment {name:?} exceeded its progress deadline"),
        };
    }
    let (updated, replicas, available) =
        (status.updated_replicas.unwrap_or(0), status.replicas.unwrap_or(0), status.available_replicas.unwrap_or(0));
    let wanted = d.spec.replicas.unwrap_or(1);
    if updated < wanted {
        return waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    RolloutStatus { done: true, failed: false, message: format!("deployment {name:?} successfully rolled out") }
}

fn stateful_set_status(s: &StatefulSet) -> Result<RolloutStatus, ResourceError> {
    let spec = &s.spec;
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return Err(ResourceError::Invalid("rollout status is only available for the RollingUpdate strategy".into()));
    }
    let status = s.status.clone().unwrap_or_default();
    let waiting = |message: String| Ok(RolloutStatus { done: false, failed: false, message });
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || s.metadata.generation.unwrap_or(0) > observed {
        return waiting("Waiting for statefulset spec update to be observed...".into());
    }
    let wanted = spec.replicas.unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < wanted {
        return waiting(format!("Waiting for {} pods to be ready...", wanted - ready));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if let Some(partition) = strategy.rolling_update.and_then(|r| r.partition) {
        if updated < wanted - partition {
            return waiting(format!(
                "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                wanted - partition
            ));
        }
        return Ok(RolloutStatus {
            done: true,
            failed: false,
            message: format!("partitioned roll out complete: {updated} new pods have been updated..."),
        });
    }
    let update_revision = status.update_revision.clone().unwrap_or_default();
    if status.update_revision != status.current_revision {
        return waiting(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
        ));
    }
    Ok(RolloutStatus {
        done: true,
        failed: false,
        message: format!(
            "statefulset rolling update complete {} pods at revision {update_revision}...",
            status.current_replicas.unwrap_or(0)
        ),
    })
}

fn daemon_set_status(d: &DaemonSet) -> Result<RolloutStatus, ResourceError> {
    let strategy = d.spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return Err(ResourceError::Invalid("rollout status is only available for the RollingUpdate strategy".into()));
    }
    let name = d.metadata.name.clone().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let waiting = |message: String| Ok(RolloutStatus { done: false, failed: false, message });
    if d.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return waiting("Waiting for daemon set spec update to be observed...".into());
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    if updated < desired {
        return waiting(format!(
            "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
        ));
    }
    let available = status.number_available.unwrap_or(0);
    if available < desired {
        return waiting(format!(
            "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
        ));
    }
    Ok(RolloutStatus { done: true, failed: false, message: format!("daemon set {name:?} successfully rolled out") })
}

/// The rollout status of a workload object as a watch delivers it.
pub fn status_of(workload: Workload, object: &kube::api::DynamicObject) -> Result<RolloutStatus, ResourceError> {
    let value = serde_json::to_value(object).map_err(|e| ResourceError::Invalid(e.to_string()))?;
    let unreadable =
        |e: serde_json::Error| ResourceError::Invalid(format!("the {} could not be read: {e}", workload.kind()));
    match workload {
        Workload::Deployment => Ok(deployment_status(&serde_json::from_value(value).map_err(unreadable)?)),
        Workload::StatefulSet => stateful_set_status(&serde_json::from_value(value).map_err(unreadable)?),
        Workload::DaemonSet => daemon_set_status(&serde_json::from_value(value).map_err(unreadable)?),
    }
}

impl Workload {
    /// The workload's kind as a watch needs it.
    pub fn api_resource(self) -> kube::discovery::ApiResource {
        match self {
            Self::Deployment => kube::discovery::ApiResource::erase::<Deployment>(&()),
            Self::StatefulSet => kube::discovery::ApiResource::erase::<StatefulSet>(&()),
            Self::DaemonSet => kube::discovery::ApiResource::erase::<DaemonSet>(&()),
        }
    }
}

/// One workload of a cluster, as the rollout calls name it.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadRef<'a> {
    pub cluster_id: &'a str,
    pub workload: Workload,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl ResourceService {
    async fn workload_client(&self, caller: &Caller, cluster_id: &str) -> Result<(String, Client), ResourceError> {
        self.client(caller, cluster_id).await
    }

    /// `kubectl rollout status`, read once (the caller polls or subscribes for changes).
    pub async fn rollout_status(
        &self,
        caller: &Caller,
        target: WorkloadRef<'_>,
    ) -> Result<RolloutStatus, ResourceError> {
        let WorkloadRef { cluster_id, workload, namespace, name } = target;
        let (cluster, client) = self.workload_client(caller, cluster_id).await?;
        let err = |e| Self::api_error(&cluster, e);
        match workload {
            Workload::Deployment => {
                Ok(deployment_status(&Api::<Deployment>::namespaced(client, namespace).get(name).await.map_err(err)?))
            }
            Workload::StatefulSet => {
                stateful_set_status(&Api::<StatefulSet>::namespaced(client, namespace).get(name).await.map_err(err)?)
            }
            Workload::DaemonSet => {
                daemon_set_status(&Api::<DaemonSet>::namespaced(client, namespace).get(name).await.map_err(err)?)
            }
        }
    }

    /// `kubectl rollout history`: the revisions still kept, oldest first.
    pub async fn rollout_history(
        &self,
        caller: &Caller,
        target: WorkloadRef<'_>,
    ) -> Result<Vec<Revision>, ResourceError> {
        let WorkloadRef { cluster_id, workload, namespace, name } = target;
        let (cluster, client) = self.workload_client(caller, cluster_id).await?;
        let err = |e| Self::api_error(&cluster, e);
        let mut revisions = Vec::new();
        match workload {
            Workload::Deployment => {
                let d = Api::<Deployment>::namespaced(client.clone(), namespace).get(name).await.map_err(err)?;
                let selector = selector_text(&d.spec.selector)?;
                let sets = Api::<ReplicaSet>::namespaced(client, namespace)
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .map_err(err)?;
                for rs in sets.items.into_iter().filter(|rs| owned_by(&rs.metadata, &d.metadata.uid)) {
                    let Some(revision) = annotation(&rs.metadata, REVISION).and_then(|r| r.parse().ok()) else {
                        continue;
                    };
                    let template = rs
                        .spec
                        .template
                        .as_ref()
                        .map(|t| serde_json::to_value(t).unwrap_or_default())
                        .unwrap_or_default();
                    revisions.push(Revision {
                        revision,
                        name: rs.metadata.name.clone().unwrap_or_default(),
                        change_cause: annotation(&rs.metadata, CHANGE_CAUSE),
                        created: rs.metadata.creation_timestamp.clone(),
                        template: template_without_hash(&template),
                        current: false,
                    });
                }
            }
            Workload::StatefulSet | Workload::DaemonSet => {
                let (uid, selector) = if workload == Workload::StatefulSet {
                    let s = Api::<StatefulSet>::namespaced(client.clone(), namespace).get(name).await.map_err(err)?;
                    (s.metadata.uid.clone(), selector_text(&s.spec.selector)?)
                } else {
                    let d = Api::<DaemonSet>::namespaced(client.clone(), namespace).get(name).await.map_err(err)?;
                    (d.metadata.uid.clone(), selector_text(&d.spec.selector)?)
                };
                let list = Api::<ControllerRevision>::namespaced(client, namespace)
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .map_err(err)?;
                for cr in list.items.into_iter().filter(|cr| owned_by(&cr.metadata, &uid)) {
                    let data = cr.data.0.clone();
                    let mut template = data.pointer("/spec/template").cloned().unwrap_or(data);
                    if let Some(fields) = template.as_object_mut() {
                        // The stored patch replaces the template whole; the marker is not part of it.
                        fields.remove("$patch");
                    }
                    revisions.push(Revision {
                        revision: cr.revision.unwrap_or(0),
                        name: cr.metadata.name.clone().unwrap_or_default(),
                        change_cause: annotation(&cr.metadata, CHANGE_CAUSE),
                        created: cr.metadata.creation_timestamp.clone(),
                        template,
                        current: false,
                    });
                }
            }
        }
        revisions.sort_by_key(|r| r.revision);
        if let Some(last) = revisions.last_mut() {
            last.current = true;
        }
        Ok(revisions)
    }

    /// `kubectl rollout undo [--to-revision]`: back to `to_revision`, or to the one before the
    /// current when absent.
    pub async fn rollback(
        &self,
        caller: &Caller,
        target: WorkloadRef<'_>,
        to_revision: Option<i64>,
        dry_run: bool,
    ) -> Result<Rollback, ResourceError> {
        let WorkloadRef { cluster_id, workload, namespace, name } = target;
        if to_revision.is_some_and(|r| r < 1) {
            return Err(ResourceError::Invalid(
                "toRevision must be 1 or more (leave it out for the previous revision)".into(),
            ));
        }
        let history = self.rollout_history(caller, target).await?;
        let current = history.last().map(|r| r.revision);
        let target = match to_revision {
            Some(wanted) => history.iter().find(|r| r.revision == wanted).ok_or_else(|| {
                let kept: Vec<String> = history.iter().map(|r| r.revision.to_string()).collect();
                ResourceError::Invalid(format!(
                    "revision {wanted} is not in the history of {} {name:?} (kept: {})",
                    workload.kind(),
                    kept.join(", ")
                ))
            })?,
            None => history.iter().rev().nth(1).ok_or_else(|| {
                ResourceError::Invalid(format!("{} {name:?} has no previous revision to roll back to", workload.kind()))
            })?,
        };
        let (cluster, client) = self.workload_client(caller, cluster_id).await?;
        let err = |e| Self::api_error(&cluster, e);
        let params = PatchParams { dry_run, ..Default::default() };
        match workload {
            Workload::Deployment => {
                let api = Api::<Deployment>::namespaced(client.clone(), namespace);
                let d = api.get(name).await.map_err(err)?;
                if d.spec.paused.unwrap_or(false) {
                    return Err(ResourceError::Invalid(format!(
                        "deployment {name:?} is paused: resume it before rolling back"
                    )));
                }
                let running = serde_json::to_value(&d.spec.template).unwrap_or_default();
                if template_without_hash(&running) == target.template {
                    return Ok(Rollback {
                        revision: target.revision,
                        skipped: true,
                        object: serde_json::to_value(&d).unwrap_or_default(),
                    });
                }
                let rs = Api::<ReplicaSet>::namespaced(client, namespace).get(&target.name).await.map_err(err)?;
                let mut annotations: BTreeMap<String, String> = BTreeMap::new();
                for key in KEPT_ANNOTATIONS {
                    if let Some(v) = annotation(&d.metadata, key) {
                        annotations.insert((*key).to_owned(), v);
                    }
                }
                for (k, v) in rs.metadata.annotations.clone().unwrap_or_default() {
                    if !KEPT_ANNOTATIONS.contains(&k.as_str()) {
                        annotations.insert(k, v);
                    }
                }
                let patch = json!([
                    { "op": "replace", "path": "/spec/template", "value": target.template },
                    { "op": "replace", "path": "/metadata/annotations", "value": annotations },
                ]);
                let patch: json_patch::Patch =
                    serde_json::from_value(patch).map_err(|e| ResourceError::Invalid(e.to_string()))?;
                let object = api.patch(name, &params, &Patch::<()>::Json(patch)).await.map_err(err)?;
                Ok(Rollback {
                    revision: target.revision,
                    skipped: false,
                    object: serde_json::to_value(&object).unwrap_or_default(),
                })
            }
            Workload::StatefulSet | Workload::DaemonSet => {
                if Some(target.revision) == current {
                    let object = self.workload_object(&client, workload, namespace, name).await.map_err(err)?;
                    return Ok(Rollback { revision: target.revision, skipped: true, object });
                }
                let cr = Api::<ControllerRevision>::namespaced(client.clone(), namespace)
                    .get(&target.name)
                    .await
                    .map_err(err)?;
                let data = cr.data.0;
                let object = match workload {
                    Workload::StatefulSet => serde_json::to_value(
                        Api::<StatefulSet>::namespaced(client, namespace)
                            .patch(name, &params, &Patch::Strategic(data))
                            .await
                            .map_err(err)?,
                    ),
                    _ => serde_json::to_value(
                        Api::<DaemonSet>::namespaced(client, namespace)
                            .patch(name, &params, &Patch::Strategic(data))
                            .await
                            .map_err(err)?,
                    ),
                }
                .unwrap_or_default();
                Ok(Rollback { revision: target.revision, skipped: false, object })
            }
        }
    }

    async fn workload_object(
        &self,
        client: &Client,
        workload: Workload,
        namespace: &str,
        name: &str,
    ) -> Result<Value, kube::Error> {
        Ok(match workload {
            Workload::Deployment => {
                serde_json::to_value(Api::<Deployment>::namespaced(client.clone(), namespace).get(name).await?)
            }
            Workload::StatefulSet => {
                serde_json::to_value(Api::<StatefulSet>::namespaced(client.clone(), namespace).get(name).await?)
            }
            Workload::DaemonSet => {
                serde_json::to_value(Api::<DaemonSet>::namespaced(client.clone(), namespace).get(name).await?)
            }
        }
        .unwrap_or_default())
    }

    /// `kubectl rollout restart`: stamps the pod template so that every pod is replaced.
    pub async fn rollout_restart(
        &self,
        caller: &Caller,
        target: WorkloadRef<'_>,
        now: chrono::DateTime<chrono::Utc>,
        dry_run: bool,
    ) -> Result<Value, ResourceError> {
        let WorkloadRef { cluster_id, workload, namespace, name } = target;
        let (cluster, client) = self.workload_client(caller, cluster_id).await?;
        let err = |e| Self::api_error(&cluster, e);
        let params = PatchParams { dry_run, ..Default::default() };
        let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let patch = Patch::Strategic(
            json!({ "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: stamp } } } } }),
        );
        let object = match workload {
            Workload::Deployment => {
                let api = Api::<Deployment>::namespaced(client, namespace);
                let d = api.get(name).await.map_err(err)?;
                if d.spec.paused.unwrap_or(false) {
                    return Err(ResourceError::Invalid(format!(
                        "deployment {name:?} is paused: resume it before restarting"
                    )));
                }
                serde_json::to_value(api.patch(name, &params, &patch).await.map_err(err)?)
            }
            Workload::StatefulSet => serde_json::to_value(
                Api::<StatefulSet>::namespaced(client, namespace).patch(name, &params, &patch).await.map_err(err)?,
            ),
            Workload::DaemonSet => serde_json::to_value(
                Api::<DaemonSet>::namespaced(client, namespace).patch(name, &params, &patch).await.map_err(err)?,
            ),
        };
        object.map_err(|e| ResourceError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(value: Value) -> Deployment {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn deployment_status_reads_as_kubectl_says_it() {
        let d = |generation: i64, status: Value| {
            deployment(
                json!({ "metadata": { "name": "web", "generation": generation }, "spec": { "replicas": 3, "selector": {}, "template": {} }, "status": status }),
            )
        };
        let cases = [
            (d(2, json!({ "observedGeneration": 1 })), false, "Waiting for deployment spec update to be observed..."),
            (
                d(2, json!({ "observedGeneration": 2, "updatedReplicas": 1, "replicas": 3 })),
                false,
                "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...",
            ),
            (
                d(2, json!({ "observedGeneration": 2, "updatedReplicas": 3, "replicas": 4 })),
                false,
                "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...",
            ),
            (
                d(2, json!({ "observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2 })),
                false,
                "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...",
            ),
            (
                d(2, json!({ "observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3 })),
                true,
                "deployment \"web\" successfully rolled out",
            ),
        ];
        for (d, done, message) in cases {
            let status = deployment_status(&d);
            assert_eq!((status.done, status.message.as_str()), (done, message));
            assert!(!status.failed);
        }
        let stuck = d(
            2,
            json!({ "observedGeneration": 2, "conditions": [{ "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded" }] }),
        );
        let status = deployment_status(&stuck);
        assert!(status.failed && !status.done, "{status:?}");
    }

    #[test]
    fn stateful_set_and_daemon_set_status_read_as_kubectl_says_them() {
        let sts = |spec: Value, status: Value| -> StatefulSet {
            let mut spec_all = json!({ "replicas": 3, "serviceName": "db", "selector": {}, "template": {} });
            spec_all.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
            serde_json::from_value(
                json!({ "metadata": { "name": "db", "generation": 2 }, "spec": spec_all, "status": status }),
            )
            .unwrap()
        };
        let message = |s: StatefulSet| stateful_set_status(&s).unwrap().message;
        assert_eq!(
            message(sts(json!({}), json!({ "replicas": 3, "observedGeneration": 1 }))),
            "Waiting for statefulset spec update to be observed..."
        );
        assert_eq!(
            message(sts(json!({}), json!({ "replicas": 3, "observedGeneration": 2, "readyReplicas": 1 }))),
            "Waiting for 2 pods to be ready..."
        );
        let partitioned = json!({ "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": 1 } } });
        let status = json!({ "replicas": 3, "observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1 });
        assert_eq!(
            message(sts(partitioned.clone(), status)),
            "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated..."
        );
        let status = json!({ "replicas": 3, "observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 2 });
        assert!(stateful_set_status(&sts(partitioned, status)).unwrap().done);
        let status = json!({ "replicas": 3, "observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1, "currentReplicas": 2,
                             "currentRevision": "db-1", "updateRevision": "db-2" });
        assert_eq!(
            message(sts(json!({}), status)),
            "waiting for statefulset rolling update to complete 1 pods at revision db-2..."
        );
        let on_delete = sts(json!({ "updateStrategy": { "type": "OnDelete" } }), json!({ "replicas": 3 }));
        assert!(matches!(stateful_set_status(&on_delete), Err(ResourceError::Invalid(_))));

        let ds = |status: Value| -> DaemonSet {
            serde_json::from_value(json!({ "metadata": { "name": "agent", "generation": 1 }, "spec": { "selector": {}, "template": {} }, "status": status })).unwrap()
        };
        let counts = |updated: i32, available: i32| {
            json!({ "observedGeneration": 1, "desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberMisscheduled": 0,
                    "numberReady": available, "updatedNumberScheduled": updated, "numberAvailable": available })
        };
        assert_eq!(
            daemon_set_status(&ds(counts(1, 1))).unwrap().message,
            "Waiting for daemon set \"agent\" rollout to finish: 1 out of 2 new pods have been updated..."
        );
        assert_eq!(
            daemon_set_status(&ds(counts(2, 1))).unwrap().message,
            "Waiting for daemon set \"agent\" rollout to finish: 1 of 2 updated pods are available..."
        );
        assert!(daemon_set_status(&ds(counts(2, 2))).unwrap().done);
    }

    #[test]
    fn selectors_are_written_as_the_api_server_reads_them() {
        let selector: LabelSelector = serde_json::from_value(json!({
            "matchLabels": { "app": "web" },
            "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["a", "b"] }, { "key": "gone", "operator": "DoesNotExist" }]
        }))
        .unwrap();
        assert_eq!(selector_text(&selector).unwrap(), "app=web,tier in (a,b),!gone");
    }

    #[test]
    fn only_rollout_kinds_are_taken() {
        assert_eq!(Workload::parse("deployments").unwrap(), Workload::Deployment);
        assert_eq!(Workload::parse("StatefulSet").unwrap(), Workload::StatefulSet);
        assert_eq!(Workload::parse("ds").unwrap(), Workload::DaemonSet);
        assert!(matches!(Workload::parse("Pod"), Err(ResourceError::Invalid(_))));
    }
}
