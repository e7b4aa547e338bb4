//! Server-side apply of a manifest (`kubectl apply --server-side`): the whole manifest checked
//! first, then each document applied in kubectl's order, each reporting what it did.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::discovery::Scope;
use serde_json::Value;

use super::manifest::{Document, Manifest, apply_rank};
use super::send::{Sent, send};
use crate::access::Caller;
use crate::resources::{ResourceError, ResourceService};

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplyAction {
    Created,
    Configured,
    Unchanged,
}

/// What to do when a document fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, async_graphql::Enum, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnError {
    /// Apply the remaining documents and report every failure, as `kubectl apply` does.
    #[default]
    Continue,
    /// Stop at the first failure; later documents are not applied.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, async_graphql::Enum, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FieldValidation {
    /// Unknown or duplicate fields fail the request (kubectl's default).
    #[default]
    Strict,
    /// They are dropped with a warning.
    Warn,
    /// They are dropped silently.
    Ignore,
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub namespace: Option<String>,
    pub field_manager: String,
    pub force: bool,
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub on_error: OnError,
}

/// The outcome of one document.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentResult {
    pub index: usize,
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub action: Option<ApplyAction>,
    pub warnings: Vec<String>,
    /// Why the document failed; the API edge says it with a code.
    #[serde(skip)]
    pub error: Option<Arc<ResourceError>>,
    /// What the API server stored (or, in a dry run, would store).
    #[serde(skip)]
    pub object: Option<DynamicObject>,
    /// In a dry run: what would change, as `kubectl diff --server-side` shows it.
    pub diff: Option<String>,
}

/// The values at the paths a manifest sets (maps followed key by key, anything else taken
/// whole): what an apply can change. Status, defaults and fields other managers own are left out,
/// so a controller updating the object at the same moment does not make an apply look like a
/// change.
fn at_manifest_paths(applied: &Value, actual: &Value) -> Value {
    match applied {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, wanted)| (key.clone(), at_manifest_paths(wanted, actual.get(key).unwrap_or(&Value::Null))))
                .collect(),
        ),
        _ => actual.clone(),
    }
}

impl ResourceService {
    /// Applies a manifest with server-side apply. The whole manifest is checked first (structure,
    /// kinds, namespaces): if any document is invalid, nothing is applied. Documents are then
    /// applied Namespaces and CRDs first.
    pub async fn apply(
        &self,
        caller: &Caller,
        cluster_id: &str,
        manifest: &Manifest,
        options: &ApplyOptions,
    ) -> Result<Vec<DocumentResult>, ResourceError> {
        let documents = &manifest.documents;
        let (row, _) = self.connections().client_for(caller, cluster_id).await?;
        let default_namespace = options.namespace.clone().or_else(|| row.default_namespace.clone());

        // Kinds the manifest's own CRDs will define cannot be resolved yet.
        let defined_here: HashSet<(String, String)> = documents
            .iter()
            .filter(|d| d.kind() == "CustomResourceDefinition")
            .filter_map(|d| {
                let group = d.object.pointer("/spec/group")?.as_str()?;
                let kind = d.object.pointer("/spec/names/kind")?.as_str()?;
                Some((group.to_owned(), kind.to_owned()))
            })
            .collect();
        for doc in documents {
            let (group, version) = doc.group_version();
            if defined_here.contains(&(group.to_owned(), doc.kind().to_owned())) {
                continue;
            }
            let caps =
                self.target(caller, cluster_id, group, Some(version), doc.kind(), None).await.map(|t| t.caps).map_err(
                    |e| match e {
                        ResourceError::UnknownKind(msg) => {
                            ResourceError::Invalid(format!("document {} (line {}): {msg}", doc.index, doc.line))
                        }
                        other => other,
                    },
                )?;
            if caps.scope == Scope::Namespaced {
                match (doc.namespace(), options.namespace.as_deref()) {
                    (Some(own), Some(asked)) if own != asked => {
                        return Err(ResourceError::Invalid(format!(
                            "document {} (line {}): {} {} is in namespace {own}, not the namespace {asked} asked for",
                            doc.index,
                            doc.line,
                            doc.kind(),
                            doc.name()
                        )));
                    }
                    (None, None) if default_namespace.is_none() => {
                        return Err(ResourceError::Invalid(format!(
                            "document {} (line {}): {} {} is namespaced, and neither it, the request nor the cluster names a namespace",
                            doc.index,
                            doc.line,
                            doc.kind(),
                            doc.name()
                        )));
                    }
                    _ => {}
                }
            }
        }

        let mut order: Vec<&Document> = documents.iter().collect();
        order.sort_by_key(|d| (apply_rank(d.kind()), d.index));
        let mut results = Vec::with_capacity(documents.len());
        let mut stopped = false;
        for doc in order {
            if stopped {
                break;
            }
            let result = self.apply_one(caller, cluster_id, doc, default_namespace.as_deref(), options).await;
            if result.error.is_some() && options.on_error == OnError::Stop {
                stopped = true;
            }
            results.push(result);
        }
        results.sort_by_key(|r| r.index);
        Ok(results)
    }

    async fn apply_one(
        &self,
        caller: &Caller,
        cluster_id: &str,
        doc: &Document,
        default_namespace: Option<&str>,
        options: &ApplyOptions,
    ) -> DocumentResult {
        let (group, version) = doc.group_version();
        let mut result = DocumentResult {
            index: doc.index,
            api_version: doc.api_version().to_owned(),
            kind: doc.kind().to_owned(),
            namespace: None,
            name: doc.name().to_owned(),
            action: None,
            warnings: Vec::new(),
            error: None,
            object: None,
            diff: None,
        };
        let fail = |mut result: DocumentResult, err: ResourceError| {
            result.error = Some(Arc::new(err));
            result
        };
        let namespace = doc.namespace().or(default_namespace).map(str::to_owned);
        let target = match self.target(caller, cluster_id, group, Some(version), doc.kind(), namespace).await {
            Ok(target) => target,
            Err(err) => return fail(result, err),
        };
        let namespace = target.namespace().map(str::to_owned);
        result.namespace = namespace.clone();
        let client = &target.client;
        let mut object = doc.object.clone();
        if let (Some(ns), Some(meta)) = (&namespace, object.get_mut("metadata").and_then(Value::as_object_mut)) {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        let request = target.request();
        let existing =
            match request.get(doc.name(), &kube::api::GetParams::default()).map_err(kube::Error::BuildRequest) {
                Ok(get) => match send(client, get).await {
                    Ok(sent) if sent.status == 404 => None,
                    Ok(sent) => match sent.into_object() {
                        Ok((object, _)) => Some(object),
                        Err(err) => return fail(result, target.error(err)),
                    },
                    Err(err) => return fail(result, target.error(err)),
                },
                Err(err) => return fail(result, target.error(err)),
            };
        let mut params = PatchParams::apply(&options.field_manager);
        params.force = options.force;
        params.dry_run = options.dry_run;
        params.field_validation = Some(match options.field_validation {
            FieldValidation::Strict => ValidationDirective::Strict,
            FieldValidation::Warn => ValidationDirective::Warn,
            FieldValidation::Ignore => ValidationDirective::Ignore,
        });
        let patch = match request.patch(doc.name(), &params, &Patch::Apply(&object)) {
            Ok(patch) => patch,
            Err(err) => return fail(result, target.error(kube::Error::BuildRequest(err))),
        };
        match send(client, patch).await.and_then(Sent::into_object) {
            Ok((stored, warnings)) => {
                result.warnings = warnings;
                // Unchanged means every value the manifest sets was already there: compared at the
                // manifest's own paths, so bookkeeping (managedFields, resourceVersion) and what
                // controllers write meanwhile (status) do not count.
                result.action = Some(match &existing {
                    None => ApplyAction::Created,
                    Some(before) => {
                        let before = serde_json::to_value(before).unwrap_or_default();
                        let after = serde_json::to_value(&stored).unwrap_or_default();
                        if at_manifest_paths(&object, &before) == at_manifest_paths(&object, &after) {
                            ApplyAction::Unchanged
                        } else {
                            ApplyAction::Configured
                        }
                    }
                });
                if options.dry_run {
                    let live = existing.as_ref().and_then(|e| serde_json::to_value(e).ok());
                    let merged = serde_json::to_value(&stored).unwrap_or_default();
                    let name = format!(
                        "{}.{}.{}",
                        doc.api_version().replace('/', "."),
                        doc.kind(),
                        namespace.as_deref().map_or_else(|| doc.name().to_owned(), |ns| format!("{ns}.{}", doc.name()))
                    );
                    result.diff = Some(super::diff::diff(live.as_ref(), &merged, &name));
                }
                if doc.kind() == "CustomResourceDefinition" && !options.dry_run {
                    self.await_crd(client, doc.name()).await;
                    self.await_served(&target.cluster_id, client, &doc.object).await;
                }
                result.object = Some(stored);
                result
            }
            Err(err) => fail(result, target.error(schema_error_is_input(err))),
        }
    }

    /// Waits (briefly) until a CRD is Established, so objects of its kind can follow it.
    async fn await_crd(&self, client: &Client, name: &str) {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        use kube::runtime::wait::{await_condition, conditions};
        let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
        // A definition that never becomes Established leaves its objects to fail on their own.
        let _ = tokio::time::timeout(
            Duration::from_secs(15),
            await_condition(crds, name, conditions::is_crd_established()),
        )
        .await;
    }

    /// Waits (up to 15 s) until discovery serves the kind a CustomResourceDefinition defines: the
    /// API server's discovery can lag a moment behind the Established condition, and the
    /// documents after the definition, or the caller's next request, need to find the kind.
    async fn await_served(&self, cluster_id: &str, client: &Client, crd: &Value) {
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
        let Some(kind) = crd.pointer("/spec/names/kind").and_then(Value::as_str) else { return };
        for _ in 0..60 {
            self.discovery().invalidate(cluster_id);
            if self.discovery().resolve(cluster_id, client, group, None, kind).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The API server answers an apply whose object does not fit the kind's schema (an unknown field)
/// with a 500 "failed to create typed patch object"; that is the caller's input, not a server
/// fault, so it is reported as 422.
fn schema_error_is_input(err: kube::Error) -> kube::Error {
    match err {
        kube::Error::Api(mut status)
            if status.code == 500 && status.message.contains("failed to create typed patch object") =>
        {
            status.code = 422;
            kube::Error::Api(status)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_judged_at_the_manifests_paths() {
        let applied = serde_json::json!({ "metadata": { "name": "a", "labels": { "x": "1" } }, "spec": { "replicas": 2, "ports": [1] } });
        let before = serde_json::json!({ "metadata": { "name": "a", "labels": { "x": "1", "other": "y" }, "resourceVersion": "1" },
                                         "spec": { "replicas": 2, "ports": [1], "defaulted": true }, "status": { "ready": 0 } });
        let mut controller_wrote = before.clone();
        controller_wrote["status"]["ready"] = serde_json::json!(2);
        controller_wrote["metadata"]["resourceVersion"] = serde_json::json!("2");
        controller_wrote["metadata"]["annotations"] = serde_json::json!({ "revision": "1" });
        assert_eq!(at_manifest_paths(&applied, &before), at_manifest_paths(&applied, &controller_wrote));
        let mut changed = before.clone();
        changed["spec"]["ports"] = serde_json::json!([1, 2]);
        assert_ne!(at_manifest_paths(&applied, &before), at_manifest_paths(&applied, &changed));
    }
}
