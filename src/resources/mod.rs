//! Reading any Kubernetes resource, built-in or custom, through one code path: discovery resolves
//! (group, version, kind) to an `ApiResource`, and `DynamicObject` carries the object.

pub mod access_review;
pub mod across;
pub mod discovery;
mod incoming;
pub mod logs;
pub mod raw;
pub mod rollout;
pub mod table;
mod target;
pub mod write;

pub use raw::RawObject;
pub use target::Target;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DynamicObject, ListParams, ObjectList};
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Client, Resource};

use self::discovery::DiscoveryCache;
use crate::access::Caller;
use crate::clients::ConnectError;
use crate::clients::connections::{AccessError, ClusterConnections};

/// The selectors a list asks the API server to filter by (its namespace is its target's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ListQuery {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

/// A list as the API server sends it, its items left unparsed.
#[derive(serde::Deserialize)]
pub(crate) struct RawList {
    pub(crate) metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta,
    /// `null` in an empty list of custom resources.
    #[serde(default)]
    pub(crate) items: Option<Vec<RawObject>>,
}

/// One page of a Kubernetes list, as the API server cut it.
#[derive(Debug)]
pub struct ListPage<K> {
    pub items: Vec<K>,
    /// The token for the next page; `None` on the last page.
    pub continue_token: Option<String>,
    pub remaining_item_count: Option<i64>,
    pub resource_version: Option<String>,
}

impl<K> From<ObjectList<K>> for ListPage<K>
where
    K: Clone,
{
    fn from(list: ObjectList<K>) -> Self {
        ListPage {
            items: list.items,
            continue_token: list.metadata.continue_.filter(|c| !c.is_empty()),
            remaining_item_count: list.metadata.remaining_item_count,
            resource_version: list.metadata.resource_version,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("{0}")]
    UnknownKind(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the list's continue token has expired; start again from the first page")]
    Expired,
}

/// Reads resources of the clusters that `ClusterConnections` reaches.
#[derive(Clone)]
pub struct ResourceService {
    connections: ClusterConnections,
    discovery: Arc<DiscoveryCache>,
}

/// The most bytes of log text one request returns.
pub const MAX_LOG_BYTES: i64 = 1024 * 1024;

impl ResourceService {
    pub fn new(connections: ClusterConnections, discovery: Arc<DiscoveryCache>) -> Self {
        Self { connections, discovery }
    }

    pub fn connections(&self) -> &ClusterConnections {
        &self.connections
    }

    pub fn discovery(&self) -> &DiscoveryCache {
        &self.discovery
    }

    /// The caller's client for a cluster of its tenant, and the cluster's name.
    pub async fn client(&self, caller: &Caller, cluster_id: &str) -> Result<(String, Client), ResourceError> {
        let (row, client) = self.connections.client_for(caller, cluster_id).await?;
        Ok((row.name.clone(), client))
    }

    pub(crate) fn api_error(cluster: &str, err: kube::Error) -> ResourceError {
        if let kube::Error::Api(status) = &err
            && status.code == 410
        {
            return ResourceError::Expired;
        }
        let error = ConnectError::from_kube(&err, Duration::from_secs(30));
        ResourceError::Access(AccessError::Connect { cluster: cluster.to_owned(), error })
    }

    /// Events about one object (by uid), a page at a time.
    pub async fn events(
        &self,
        caller: &Caller,
        cluster_id: &str,
        namespace: Option<&str>,
        uid: &str,
        limit: u32,
        continue_token: Option<String>,
    ) -> Result<ListPage<Event>, ResourceError> {
        let (cluster, client) = self.client(caller, cluster_id).await?;
        let api: Api<Event> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let query = ListQuery { field_selector: Some(format!("involvedObject.uid={uid}")), ..Default::default() };
        let list =
            api.list(&list_params(&query, limit, continue_token)).await.map_err(|e| Self::api_error(&cluster, e))?;
        Ok(list.into())
    }
}

impl ResourceService {
    /// Opens a port-forward to a pod's port through the API server, as the caller.
    pub async fn port_forward(
        &self,
        caller: &Caller,
        cluster_id: &str,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<kube::api::Portforwarder, ResourceError> {
        let (cluster, client) = self.client(caller, cluster_id).await?;
        let api: Api<Pod> = Api::namespaced(client, namespace);
        api.portforward(pod, &[port]).await.map_err(|e| Self::api_error(&cluster, e))
    }

    /// Attaches to a pod's running container through the API server, as the caller.
    pub async fn attach(
        &self,
        caller: &Caller,
        cluster_id: &str,
        namespace: &str,
        pod: &str,
        params: &kube::api::AttachParams,
    ) -> Result<kube::api::AttachedProcess, ResourceError> {
        let (cluster, client) = self.client(caller, cluster_id).await?;
        let api: Api<Pod> = Api::namespaced(client, namespace);
        api.attach(pod, params).await.map_err(|e| Self::api_error(&cluster, e))
    }
}

impl ResourceService {
    /// Runs a command in a pod's container through the API server, as the caller.
    pub async fn exec(
        &self,
        caller: &Caller,
        cluster_id: &str,
        namespace: &str,
        pod: &str,
        command: &[String],
        params: &kube::api::AttachParams,
    ) -> Result<kube::api::AttachedProcess, ResourceError> {
        let (cluster, client) = self.client(caller, cluster_id).await?;
        let api: Api<Pod> = Api::namespaced(client, namespace);
        api.exec(pod, command.iter().cloned(), params).await.map_err(|e| Self::api_error(&cluster, e))
    }
}

#[derive(Debug, Default, Clone)]
pub struct PodLogRequest {
    /// Lines older than this position only (a page further back).
    pub before: Option<crate::logs::position::Position>,
    pub container: Option<String>,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub previous: bool,
    pub limit_bytes: Option<i64>,
    pub timestamps: bool,
}

#[derive(Debug, Clone)]
pub struct PodLog {
    pub text: String,
    pub truncated: bool,
    /// Where the lines before this text start, when there may be some.
    pub older: Option<crate::logs::position::Position>,
}

/// The path of a kind's objects, in a namespace only for a namespaced kind.
pub(crate) fn url_path(resource: &ApiResource, caps: &ApiCapabilities, namespace: Option<&str>) -> String {
    let namespace = if caps.scope == Scope::Namespaced { namespace } else { None };
    DynamicObject::url_path(resource, namespace)
}

pub(crate) fn list_params(query: &ListQuery, limit: u32, continue_token: Option<String>) -> ListParams {
    ListParams {
        label_selector: query.label_selector.clone(),
        field_selector: query.field_selector.clone(),
        limit: Some(limit),
        continue_token,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ApiError, ErrorCode};

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure("from the API server", reason).with_code(code).boxed())
    }

    #[test]
    fn an_expired_continue_token_asks_to_start_again() {
        let err = ResourceService::api_error("prod", api_error(410, "Expired"));
        assert!(matches!(err, ResourceError::Expired));
        let api: ApiError = err.into();
        assert_eq!(api.code, ErrorCode::CursorExpired);
        assert!(api.message.contains("start again"));
    }

    #[test]
    fn api_server_answers_map_to_codes() {
        for (status, code) in [
            (404, ErrorCode::NotFound),
            (403, ErrorCode::Forbidden),
            (409, ErrorCode::Conflict),
            (422, ErrorCode::BadUserInput),
            (400, ErrorCode::BadUserInput),
            (401, ErrorCode::ClusterUnreachable),
            (500, ErrorCode::Internal),
        ] {
            let api: ApiError = ResourceService::api_error("prod", api_error(status, "X")).into();
            assert_eq!(api.code, code, "HTTP {status}");
            assert!(api.message.contains("prod"), "names the cluster: {}", api.message);
        }
    }
}
