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
            PatchType::Json => Patch::Json::<Value>(json_patch_operations(body)?),
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

/// A JSON patch (RFC 6902) as the caller sent it, checked: a list of operations whose paths are
/// JSON pointers.
fn json_patch_operations(body: Value) -> Result<json_patch::Patch, ResourceError> {
    let ops: json_patch::Patch = serde_json::from_value(body)
        .map_err(|e| ResourceError::Invalid(format!("the JSON patch is not valid: {e}")))?;
    for op in &ops.0 {
        let path = op_path(op);
        if !path.is_empty() && !path.starts_with('/') {
            return Err(ResourceError::Invalid(format!("the JSON patch path {path:?} must start with '/'")));
        }
    }
    Ok(ops)
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

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Operations that are almost right: real op names, paths with and without the leading '/'.
    fn operation() -> impl Strategy<Value = Value> {
        (
            prop_oneof![
                Just("add".to_owned()),
                Just("remove".to_owned()),
                Just("replace".to_owned()),
                Just("move".to_owned()),
                Just("copy".to_owned()),
                Just("test".to_owned()),
                ".{0,6}",
            ],
            "/?[a-z~01/]{0,12}",
            prop::option::of("/?[a-z~01/]{0,12}"),
            crate::any_json(),
        )
            .prop_map(
                |(op, path, from, value)| serde_json::json!({ "op": op, "path": path, "from": from, "value": value }),
            )
    }

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_body_is_a_json_patch_or_refused_as_invalid(body in crate::any_json()) {
            if let Err(err) = json_patch_operations(body) {
                prop_assert!(matches!(err, ResourceError::Invalid(_)));
            }
        }

        #[test]
        fn near_patches_are_taken_only_with_pointer_paths(ops in prop::collection::vec(operation(), 0..5)) {
            match json_patch_operations(Value::Array(ops)) {
                Ok(patch) => {
                    for op in &patch.0 {
                        let path = op_path(op);
                        prop_assert!(path.is_empty() || path.starts_with('/'), "{}", path);
                    }
                }
                Err(err) => prop_assert!(matches!(err, ResourceError::Invalid(_))),
            }
        }
    }
}
