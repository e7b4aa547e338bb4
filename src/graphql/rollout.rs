//! Rollouts in the schema: `cluster { rollout(kind, namespace, name) { status history } }`, and
//! the `rollback` and `rolloutRestart` mutations, as `kubectl rollout` offers them.

use std::sync::Arc;

use async_graphql::{Context, ID, Json, Object, SimpleObject, Subscription};
use futures_util::{Stream, StreamExt};
use kube::api::DynamicObject;

use super::RoleGuard;
use super::object::Resource;
use super::{caller, data, principal};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::resources::ResourceService;
use crate::resources::rollout::{Revision, Workload, WorkloadRef, status_of};
use crate::watch::coalesce::WatchEventType;
use crate::watch::{SubscribeOptions, WatchHub, WatchKey};

/// The most revisions one `history` returns.
const MAX_HISTORY: i32 = 500;

/// A workload's rollout.
pub struct Rollout {
    cluster_id: String,
    workload: Workload,
    namespace: String,
    name: String,
}

impl Rollout {
    pub fn new(cluster_id: &str, kind: &str, namespace: String, name: String) -> Result<Self, ApiError> {
        let workload = Workload::parse(kind).map_err(ApiError::from)?;
        Ok(Self { cluster_id: cluster_id.to_owned(), workload, namespace, name })
    }

    fn target(&self) -> WorkloadRef<'_> {
        WorkloadRef {
            cluster_id: &self.cluster_id,
            workload: self.workload,
            namespace: &self.namespace,
            name: &self.name,
        }
    }
}

/// Where a rollout stands (`kubectl rollout status`, read once).
#[derive(SimpleObject)]
pub struct RolloutStatusOutput {
    /// Every replica runs the current template and is available.
    pub done: bool,
    /// The rollout will not finish on its own (a Deployment past its progress deadline).
    pub failed: bool,
    /// kubectl's words for the state.
    pub message: String,
}

/// One revision of a workload's pod template.
#[derive(SimpleObject)]
pub struct RolloutRevision {
    pub revision: i64,
    /// The ReplicaSet (Deployments) or ControllerRevision (StatefulSets, DaemonSets) holding it.
    pub name: String,
    /// The `kubernetes.io/change-cause` annotation.
    pub change_cause: Option<String>,
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The pod template of this revision.
    pub template: Json<serde_json::Value>,
    /// The revision the workload runs now.
    pub current: bool,
}

impl From<Revision> for RolloutRevision {
    fn from(r: Revision) -> Self {
        RolloutRevision {
            revision: r.revision,
            name: r.name,
            change_cause: r.change_cause,
            created_at: r.created.map(|t| super::object::to_chrono(&t.0)),
            template: Json(r.template),
            current: r.current,
        }
    }
}

#[Object]
impl Rollout {
    async fn kind(&self) -> &str {
        self.workload.kind()
    }
    async fn namespace(&self) -> &str {
        &self.namespace
    }
    async fn name(&self) -> &str {
        &self.name
    }
    /// `kubectl rollout status`, read once; subscribe to `resourceEvents` for changes.
    #[graphql(complexity = "super::cost::cluster_call(child_complexity)")]
    async fn status(&self, ctx: &Context<'_>) -> async_graphql::Result<RolloutStatusOutput> {
        let status =
            data::<ResourceService>(ctx)?.rollout_status(caller(ctx)?, self.target()).await.map_err(ApiError::from)?;
        Ok(RolloutStatusOutput { done: status.done, failed: status.failed, message: status.message })
    }
    /// `kubectl rollout history`, newest first: at most `first` revisions (default 50, at most 500).
    #[graphql(complexity = "super::cost::cluster_page(first, child_complexity)")]
    async fn history(&self, ctx: &Context<'_>, first: Option<i32>) -> async_graphql::Result<Vec<RolloutRevision>> {
        let first = first.unwrap_or(50);
        if !(1..=MAX_HISTORY).contains(&first) {
            return Err(
                ApiError::new(ErrorCode::BadUserInput, format!("first must be between 1 and {MAX_HISTORY}")).into()
            );
        }
        let history =
            data::<ResourceService>(ctx)?.rollout_history(caller(ctx)?, self.target()).await.map_err(ApiError::from)?;
        Ok(history.into_iter().rev().take(first as usize).map(RolloutRevision::from).collect())
    }
}

/// The workload's rollout, for `Cluster.rollout`.
pub fn rollout(
    ctx: &Context<'_>,
    cluster_id: &str,
    kind: &str,
    namespace: String,
    name: String,
) -> async_graphql::Result<Rollout> {
    principal(ctx)?;
    Ok(Rollout::new(cluster_id, kind, namespace, name)?)
}

/// What a rollback did.
pub struct RollbackOutput {
    revision: i64,
    skipped: bool,
    object: Resource,
}

#[Object]
impl RollbackOutput {
    /// The revision rolled back to.
    async fn revision(&self) -> i64 {
        self.revision
    }
    /// The workload already ran that revision's template; nothing was changed.
    async fn skipped(&self) -> bool {
        self.skipped
    }
    /// The workload after the rollback (as it would be, in a dry run).
    async fn object(&self) -> &Resource {
        &self.object
    }
}

fn workload_resource(object: serde_json::Value, workload: Workload, cluster_id: &str) -> Result<Resource, ApiError> {
    let object: DynamicObject = serde_json::from_value(object).map_err(ApiError::internal)?;
    Ok(Resource::new(object, "apps/v1", workload.kind(), cluster_id))
}

#[derive(Default)]
pub struct RolloutMutation;

#[Object]
impl RolloutMutation {
    /// `kubectl rollout undo`: back to `toRevision`, or to the revision before the current one.
    /// A paused Deployment is refused. OPERATOR or ADMIN.
    #[allow(clippy::too_many_arguments)]
    #[graphql(guard = "RoleGuard(Role::Operator)", complexity = "super::cost::cluster_call(child_complexity)")]
    async fn rollback(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        #[graphql(desc = "Deployment, StatefulSet or DaemonSet.")] kind: String,
        namespace: String,
        name: String,
        to_revision: Option<i64>,
        #[graphql(desc = "Default false.")] dry_run: Option<bool>,
    ) -> async_graphql::Result<RollbackOutput> {
        let workload = Workload::parse(&kind).map_err(ApiError::from)?;
        let done = data::<ResourceService>(ctx)?
            .rollback(
                caller(ctx)?,
                WorkloadRef { cluster_id: &cluster_id, workload, namespace: &namespace, name: &name },
                to_revision,
                dry_run.unwrap_or(false),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(RollbackOutput {
            revision: done.revision,
            skipped: done.skipped,
            object: workload_resource(done.object, workload, &cluster_id)?,
        })
    }

    /// `kubectl rollout restart`: stamps the pod template (`kubectl.kubernetes.io/restartedAt`)
    /// so that every pod is replaced. A paused Deployment is refused. OPERATOR or ADMIN.
    #[graphql(guard = "RoleGuard(Role::Operator)", complexity = "super::cost::cluster_call(child_complexity)")]
    async fn rollout_restart(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        #[graphql(desc = "Deployment, StatefulSet or DaemonSet.")] kind: String,
        namespace: String,
        name: String,
        #[graphql(desc = "Default false.")] dry_run: Option<bool>,
    ) -> async_graphql::Result<Resource> {
        let workload = Workload::parse(&kind).map_err(ApiError::from)?;
        let object = data::<ResourceService>(ctx)?
            .rollout_restart(
                caller(ctx)?,
                WorkloadRef { cluster_id: &cluster_id, workload, namespace: &namespace, name: &name },
                chrono::Utc::now(),
                dry_run.unwrap_or(false),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(workload_resource(object, workload, &cluster_id)?)
    }
}

#[derive(Default)]
pub struct RolloutSubscription;

#[Subscription]
impl RolloutSubscription {
    /// `kubectl rollout status` (which waits): the status now, then after every change to the
    /// workload, ending with the first `done` (or `failed`) status. Counts against the caller's
    /// subscriptions like `resourceEvents`.
    async fn rollout_status(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        #[graphql(desc = "Deployment, StatefulSet or DaemonSet.")] kind: String,
        namespace: String,
        name: String,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<RolloutStatusOutput>> + use<>> {
        let caller = caller(ctx)?;
        let workload = Workload::parse(&kind).map_err(ApiError::from)?;
        let hub = data::<Arc<WatchHub>>(ctx)?;
        let service = data::<ResourceService>(ctx)?;
        // Read once first: a missing workload or a refusal is an error now, not a silent stream.
        let target = WorkloadRef { cluster_id: &cluster_id, workload, namespace: &namespace, name: &name };
        service.rollout_status(caller, target).await.map_err(ApiError::from)?;
        let (row, client) = service.connections().client_for(caller, &cluster_id).await.map_err(ApiError::from)?;
        let resource = workload.api_resource();
        let key = WatchKey {
            cluster_id: row.id.clone(),
            identity: caller.cluster_identity(row.impersonate_caller).ok().flatten().map(|i| i.canonical()),
            group: resource.group.clone(),
            version: resource.version.clone(),
            kind: resource.kind.clone(),
            namespace: Some(namespace),
            label_selector: None,
            field_selector: Some(format!("metadata.name={name}")),
            table: false,
        };
        let options = SubscribeOptions { event_types: None, send_initial_state: true, events_per_second: None };
        let events =
            hub.subscribe(key, &caller.principal.id, client, resource, options).await.map_err(ApiError::from)?;
        let statuses = events.filter_map(move |event| async move {
            let event = match event {
                Ok(event) => event,
                Err(ended) => return Some(Err(ApiError::from(ended).into())),
            };
            match (event.kind, event.object) {
                (WatchEventType::Deleted, _) => {
                    Some(Err(ApiError::new(ErrorCode::NotFound, format!("the {} was deleted", workload.kind())).into()))
                }
                (_, Some(object)) => Some(
                    status_of(workload, &object.object())
                        .map(|s| RolloutStatusOutput { done: s.done, failed: s.failed, message: s.message })
                        .map_err(|e| ApiError::from(e).into()),
                ),
                // A RESYNC: the current state follows as ADDED.
                (_, None) => None,
            }
        });
        // Ends right after the first final status (or error), as kubectl does.
        Ok(futures_util::stream::unfold((Box::pin(statuses), false), |(mut statuses, finished)| async move {
            if finished {
                return None;
            }
            let item = statuses.next().await?;
            let last = match &item {
                Ok(status) => status.done || status.failed,
                Err(_) => true,
            };
            Some((item, (statuses, last)))
        }))
    }
}
