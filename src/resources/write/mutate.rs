//! `kubectl patch`, `delete` and `scale`, on a bound `Target`.

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use serde_json::Value;

use super::send::send;
use crate::resources::{ResourceError, Target};

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

/// A patch as `kubectl patch` sends it.
#[derive(Debug, Clone)]
pub struct PatchRequest {
    pub kind: PatchType,
    pub body: Value,
    pub dry_run: bool,
    pub field_manager: String,
}

/// A delete as `kubectl delete` sends it.
#[derive(Debug, Clone, Default)]
pub struct DeleteRequest {
    pub propagation: Option<PropagationPolicy>,
    pub grace_period_seconds: Option<u32>,
    pub dry_run: bool,
}

impl Target {
    /// `kubectl patch --type strategic|merge|json`.
    pub async fn patch(
        &self,
        name: &str,
        request: PatchRequest,
    ) -> Result<(DynamicObject, Vec<String>), ResourceError> {
        self.require_namespace()?;
        let PatchRequest { kind, body, dry_run, field_manager } = request;
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
        let params = PatchParams { dry_run, field_manager: Some(field_manager), ..Default::default() };
        let request =
            self.request().patch(name, &params, &patch).map_err(|e| self.error(kube::Error::BuildRequest(e)))?;
        let sent = send(&self.client, request).await.map_err(|e| self.error(e))?;
        if sent.status == 415 && kind == PatchType::Strategic {
            return Err(ResourceError::Invalid(format!(
                "{} does not support strategic merge patch (custom resources do not); use MERGE or JSON",
                self.resource.kind
            )));
        }
        sent.into_object().map_err(|e| self.error(e))
    }

    /// `kubectl delete`: returns the object as the API server last reported it (with a deletion
    /// timestamp when finalizers hold it), or None when the API server answered with a status.
    pub async fn delete(
        &self,
        name: &str,
        request: DeleteRequest,
    ) -> Result<(Option<DynamicObject>, Vec<String>), ResourceError> {
        self.require_namespace()?;
        let params = DeleteParams {
            dry_run: request.dry_run,
            grace_period_seconds: request.grace_period_seconds,
            propagation_policy: request.propagation,
            ..Default::default()
        };
        let request = self.request().delete(name, &params).map_err(|e| self.error(kube::Error::BuildRequest(e)))?;
        let sent = send(&self.client, request).await.map_err(|e| self.error(e))?;
        if !(200..300).contains(&sent.status) {
            return Err(self.error(sent.into_error()));
        }
        let warnings = sent.warnings.clone();
        let object = serde_json::from_slice::<DynamicObject>(&sent.body)
            .ok()
            .filter(|o| o.types.as_ref().is_none_or(|t| t.kind != "Status"));
        Ok((object, warnings))
    }

    /// `kubectl scale`: sets `spec.replicas` through the scale subresource.
    pub async fn scale(&self, name: &str, replicas: i32, dry_run: bool) -> Result<Value, ResourceError> {
        if !self.caps.subresources.iter().any(|(r, _)| r.plural == "scale") {
            return Err(ResourceError::Invalid(format!(
                "{} cannot be scaled (it has no scale subresource)",
                self.resource.kind
            )));
        }
        if replicas < 0 {
            return Err(ResourceError::Invalid("replicas must not be negative".into()));
        }
        self.require_namespace()?;
        let params = PatchParams { dry_run, ..Default::default() };
        let patch: Patch<Value> = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
        let request = self
            .request()
            .patch_subresource("scale", name, &params, &patch)
            .map_err(|e| self.error(kube::Error::BuildRequest(e)))?;
        let sent = send(&self.client, request).await.map_err(|e| self.error(e))?;
        if !(200..300).contains(&sent.status) {
            return Err(self.error(sent.into_error()));
        }
        serde_json::from_slice(&sent.body).map_err(|e| self.error(kube::Error::SerdeError(e)))
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
