//! `kubectl patch`, `delete` and `scale`.

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::core::Request;
use kube::discovery::{ApiCapabilities, ApiResource};
use serde_json::Value;

use super::send::send;
use crate::access::Caller;
use crate::resources::{ResourceError, ResourceService, require_namespace, url_path};

/// The patch types of `kubectl patch --type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum PatchType {
    /// Strategic merge patch: lists merge by their keys (built-in kinds only).
    Strategic,
    /// JSON merge patch (RFC 7386).
    Merge,
    /// JSON patch (RFC 6902): a list of operations.
    Json,
}

impl ResourceService {
    /// `kubectl patch --type strategic|merge|json`.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        caller: &Caller,
        cluster_id: &str,
        (resource, caps): &(ApiResource, ApiCapabilities),
        namespace: Option<&str>,
        name: &str,
        kind: PatchType,
        body: Value,
        dry_run: bool,
        field_manager: &str,
    ) -> Result<(DynamicObject, Vec<String>), ResourceError> {
        require_namespace(resource, caps, namespace)?;
        let patch = match kind {
            PatchType::Strategic => Patch::Strategic(body),
            PatchType::Merge => Patch::Merge(body),
            PatchType::Json => {
                let ops: json_patch::Patch = serde_json::from_value(body)
                    .map_err(|e| ResourceError::Invalid(format!("the JSON patch is not valid: {e}")))?;
                for op in &ops.0 {
                    let path = op_path(op);
                    if !path.is_empty() && !path.starts_with('/') {
                        return Err(ResourceError::Invalid(format!(
                            "the JSON patch path {path:?} must start with '/'"
                        )));
                    }
                }
                Patch::Json::<Value>(ops)
            }
        };
        let (cluster, client) = self.client(caller, cluster_id).await?;
        let mut params = PatchParams { dry_run, ..Default::default() };
        params.field_manager = Some(field_manager.to_owned());
        let request = Request::new(url_path(resource, caps, namespace))
            .patch(name, &params, &patch)
            .map_err(|e| Self::api_error(&cluster, kube::Error::BuildRequest(e)))?;
        let sent = send(&client, request).await.map_err(|e| Self::api_error(&cluster, e))?;
        if sent.status == 415 && kind == PatchType::Strategic {
            return Err(ResourceError::Invalid(format!(
                "{} does not support strategic merge patch (custom resources do not); use MERGE or JSON",
                resource.kind
            )));
        }
        sent.into_object().map_err(|e| Self::api_error(&cluster, e))
    }

    /// `kubectl delete`: returns the object as the API server last reported it (with a deletion
    /// timestamp when finalizers hold it), or None when the API server answered with a status.
    #[allow(clippy::too_many_arguments)]
    pub async fn delete(
        &self,
        caller: &Caller,
        cluster_id: &str,
        (resource, caps): &(ApiResource, ApiCapabilities),
        namespace: Option<&str>,
        name: &str,
        propagation: Option<PropagationPolicy>,
        grace_period_seconds: Option<u32>,
        dry_run: bool,
    ) -> Result<(Option<DynamicObject>, Vec<String>), ResourceError> {
        require_namespace(resource, caps, namespace)?;
        let (cluster, client) = self.client(caller, cluster_id).await?;
        let params =
            DeleteParams { dry_run, grace_period_seconds, propagation_policy: propagation, ..Default::default() };
        let request = Request::new(url_path(resource, caps, namespace))
            .delete(name, &params)
            .map_err(|e| Self::api_error(&cluster, kube::Error::BuildRequest(e)))?;
        let sent = send(&client, request).await.map_err(|e| Self::api_error(&cluster, e))?;
        if !(200..300).contains(&sent.status) {
            return Err(Self::api_error(&cluster, sent.into_error()));
        }
        let warnings = sent.warnings.clone();
        let object = serde_json::from_slice::<DynamicObject>(&sent.body)
            .ok()
            .filter(|o| o.types.as_ref().is_none_or(|t| t.kind != "Status"));
        Ok((object, warnings))
    }

    /// `kubectl scale`: sets `spec.replicas` through the scale subresource.
    #[allow(clippy::too_many_arguments)]
    pub async fn scale(
        &self,
        caller: &Caller,
        cluster_id: &str,
        (resource, caps): &(ApiResource, ApiCapabilities),
        namespace: Option<&str>,
        name: &str,
        replicas: i32,
        dry_run: bool,
    ) -> Result<Value, ResourceError> {
        if !caps.subresources.iter().any(|(r, _)| r.plural == "scale") {
            return Err(ResourceError::Invalid(format!(
                "{} cannot be scaled (it has no scale subresource)",
                resource.kind
            )));
        }
        if replicas < 0 {
            return Err(ResourceError::Invalid("replicas must not be negative".into()));
        }
        require_namespace(resource, caps, namespace)?;
        let (cluster, client) = self.client(caller, cluster_id).await?;
        let params = PatchParams { dry_run, ..Default::default() };
        let patch: Patch<Value> = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
        let request = Request::new(url_path(resource, caps, namespace))
            .patch_subresource("scale", name, &params, &patch)
            .map_err(|e| Self::api_error(&cluster, kube::Error::BuildRequest(e)))?;
        let sent = send(&client, request).await.map_err(|e| Self::api_error(&cluster, e))?;
        if !(200..300).contains(&sent.status) {
            return Err(Self::api_error(&cluster, sent.into_error()));
        }
        serde_json::from_slice(&sent.body).map_err(|e| Self::api_error(&cluster, kube::Error::SerdeError(e)))
    }
}

fn op_path(op: &json_patch::PatchOperation) -> String {
    use json_patch::PatchOperation::*;
    match op {
        Add(o) => o.path.to_string(),
        Remove(o) => o.path.to_string(),
        Replace(o) => o.path.to_string(),
        Move(o) => o.path.to_string(),
        Copy(o) => o.path.to_string(),
        Test(o) => o.path.to_string(),
    }
}
