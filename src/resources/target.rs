//! `Target`: one kind of one cluster, bound once for one caller, as `kube::Api` binds a client, a
//! resource and a namespace: the caller's client for the cluster, the kind as the cluster's
//! discovery resolved it, and the namespace scoped to the kind (a namespace given for a
//! cluster-scoped kind is ignored, as kubectl does). Reads and writes take a target and their
//! own arguments.

use kube::Client;
use kube::core::Request;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};

use super::across::ListFrom;
use super::incoming::ListReader;
use super::{
    ListPage, ListQuery, RawList, RawObject, ResourceError, ResourceService, discovery, list_params, url_path,
};
use crate::access::Caller;

pub struct Target {
    pub cluster_id: String,
    /// The cluster's name, for messages.
    pub cluster: String,
    pub client: Client,
    pub resource: ApiResource,
    pub caps: ApiCapabilities,
    namespace: Option<String>,
}

impl ResourceService {
    /// Binds a kind of a cluster of the caller's tenant, resolved through the cluster's
    /// discovery (refreshed once when the kind is new), with `namespace` scoped to it.
    pub async fn target(
        &self,
        caller: &Caller,
        cluster_id: &str,
        group: &str,
        version: Option<&str>,
        kind: &str,
        namespace: Option<String>,
    ) -> Result<Target, ResourceError> {
        let (row, client) = self.connections().client_for(caller, cluster_id).await?;
        let (resource, caps) =
            self.discovery().resolve(&row.id, &client, group, version, kind).await.map_err(|e| match e {
                discovery::DiscoveryError::Api(err) => Self::api_error(&row.name, err),
                discovery::DiscoveryError::Unknown(msg) => ResourceError::UnknownKind(msg),
            })?;
        let namespace = if caps.scope == Scope::Cluster { None } else { namespace };
        Ok(Target { cluster_id: row.id.clone(), cluster: row.name.clone(), client, resource, caps, namespace })
    }
}

impl Target {
    /// The namespace, for a namespaced kind; `None` means all namespaces (or a cluster-scoped kind).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Requests for the target's objects.
    pub(crate) fn request(&self) -> Request {
        Request::new(url_path(&self.resource, &self.caps, self.namespace()))
    }

    /// An error from the cluster, named after it.
    pub(crate) fn error(&self, err: kube::Error) -> ResourceError {
        ResourceService::api_error(&self.cluster, err)
    }

    /// A namespaced kind needs a namespace to name one object.
    pub(crate) fn require_namespace(&self) -> Result<(), ResourceError> {
        if self.caps.scope == Scope::Namespaced && self.namespace.is_none() {
            return Err(ResourceError::Invalid(format!("{} is namespaced: give a namespace", self.resource.kind)));
        }
        Ok(())
    }

    /// One page of the target's objects, cut by the API server (`limit` + `continue`), its items
    /// kept as the bytes the API server sent: a query parses only what it reads of them, and
    /// whole objects go to the response without being converted into typed values first. With
    /// `metadata_only` the API server sends type and metadata only (a PartialObjectMetadataList,
    /// as `kubectl get` asks for tables), which is much less to transfer when the caller reads
    /// nothing else.
    pub async fn list(
        &self,
        query: &ListQuery,
        limit: u32,
        continue_token: Option<String>,
        metadata_only: bool,
    ) -> Result<ListPage<RawObject>, ResourceError> {
        let from = continue_token.map_or(ListFrom::Latest, ListFrom::Continue);
        self.list_from(query, limit, from, metadata_only).await
    }

    /// One page as `list` reads it, from a given start: the latest list, the list at an exact
    /// resourceVersion, or a continue token.
    pub async fn list_from(
        &self,
        query: &ListQuery,
        limit: u32,
        from: ListFrom,
        metadata_only: bool,
    ) -> Result<ListPage<RawObject>, ResourceError> {
        if !self.caps.supports_operation("list") {
            return Err(ResourceError::Invalid(format!("{} cannot be listed", self.resource.kind)));
        }
        let mut params = list_params(query, limit, None);
        match from {
            ListFrom::Latest => {}
            ListFrom::Continue(token) => params.continue_token = Some(token),
            ListFrom::Exact(version) => {
                params.resource_version = Some(version);
                params.version_match = Some(kube::api::VersionMatch::Exact);
            }
        }
        let url = self.request();
        let mut request = if metadata_only { url.list_metadata(&params) } else { url.list(&params) }
            .map_err(|e| ResourceError::Invalid(e.to_string()))?;
        request.extensions_mut().insert("list");
        let list = self.read_list(request).await?;
        Ok(ListPage {
            items: list.items.unwrap_or_default(),
            continue_token: list.metadata.continue_.filter(|c| !c.is_empty()),
            remaining_item_count: list.metadata.remaining_item_count,
            resource_version: list.metadata.resource_version,
        })
    }

    /// Sends a list request and reads the list while it arrives (see `incoming.rs`).
    async fn read_list(&self, request: http::Request<Vec<u8>>) -> Result<RawList, ResourceError> {
        use futures_util::io::AsyncBufReadExt;
        let mut body = Box::pin(self.client.request_stream(request).await.map_err(|e| self.error(e))?);
        let mut reader = ListReader::default();
        loop {
            let chunk = body.fill_buf().await.map_err(|e| self.error(from_body(e)))?;
            if chunk.is_empty() {
                break;
            }
            let read = chunk.len();
            reader.push(chunk).map_err(|e| self.error(kube::Error::SerdeError(e)))?;
            body.consume_unpin(read);
        }
        reader.finish().map_err(|e| self.error(kube::Error::SerdeError(e)))
    }

    /// One object as the API server's bytes, or `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<RawObject>, ResourceError> {
        self.require_namespace()?;
        let mut request = self
            .request()
            .get(name, &kube::api::GetParams::default())
            .map_err(|e| ResourceError::Invalid(e.to_string()))?;
        request.extensions_mut().insert("get");
        match self.client.request::<RawObject>(request).await {
            Ok(object) => Ok(Some(object)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(err) => Err(self.error(err)),
        }
    }
}

/// The client's error behind a body's read error (the stream carries it as an I/O error).
fn from_body(err: std::io::Error) -> kube::Error {
    let kind = err.kind();
    match err.into_inner().map(|inner| inner.downcast::<kube::Error>()) {
        Some(Ok(kube)) => *kube,
        Some(Err(other)) => kube::Error::Service(other),
        None => kube::Error::ReadEvents(kind.into()),
    }
}
