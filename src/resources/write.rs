//! Changing resources the way `kubectl` does: server-side apply of YAML or JSON manifests (one or
//! many documents, `List`s included), strategic merge, merge and JSON patches, delete and scale,
//! each optionally as the API server's own dry run (`dryRun=All`).
//!
//! Requests are sent with `Client::send` so that the API server's `Warning` headers reach the
//! caller along with the result.

use std::sync::Arc;

use std::collections::HashSet;
use std::time::Duration;

use http_body_util::BodyExt;
use kube::Client;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy, ValidationDirective};
use kube::core::Request;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use super::{ResourceError, ResourceService, require_namespace, url_path};
use crate::access::Caller;

/// A manifest larger than this is refused (the HTTP layer's body limit applies first).
pub const MAX_DOCUMENTS: usize = 1000;

/// One document of a manifest, as parsed.
#[derive(Debug, Clone)]
pub struct Document {
    /// 0-based position in the manifest (items of a `List` count one each).
    pub index: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    pub object: Value,
}

impl Document {
    fn text(&self, pointer: &str) -> Option<&str> {
        self.object.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    pub fn api_version(&self) -> &str {
        self.text("/apiVersion").unwrap_or_default()
    }
    pub fn kind(&self) -> &str {
        self.text("/kind").unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.text("/metadata/name").unwrap_or_default()
    }
    pub fn namespace(&self) -> Option<&str> {
        self.text("/metadata/namespace")
    }
    fn group_version(&self) -> (&str, &str) {
        match self.api_version().split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", self.api_version()),
        }
    }
}

/// Splits a YAML (or JSON) text into documents, flattening `List` kinds, and checks that each
/// names an apiVersion, a kind and a name. Errors give the document index, line and column.
pub fn parse_manifest(text: &str) -> Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    let mut raw_index = 0usize;
    for (start_line, chunk) in split_documents(text) {
        if chunk.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        }) {
            continue;
        }
        let value: Value = serde_saphyr::from_str(&chunk).map_err(|err| {
            let (line, column) = err.location().map(|l| (l.line() as usize, l.column() as usize)).unwrap_or((1, 1));
            let reason = err.to_string().lines().next().unwrap_or("invalid YAML").to_owned();
            format!("document {raw_index}: line {}, column {column}: {reason}", start_line + line.saturating_sub(1))
        })?;
        raw_index += 1;
        let items = match value {
            Value::Null => continue,
            Value::Object(ref map)
                if map.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"))
                    && map.get("items").is_some() =>
            {
                match map.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    _ => return Err(format!("document {}: line {start_line}: items must be a list", raw_index - 1)),
                }
            }
            other => vec![other],
        };
        for object in items {
            let document = Document { index: documents.len(), line: start_line, object };
            check_document(&document)?;
            documents.push(document);
            if documents.len() > MAX_DOCUMENTS {
                return Err(format!("a manifest may hold at most {MAX_DOCUMENTS} objects"));
            }
        }
    }
    if documents.is_empty() {
        return Err("the manifest holds no object".into());
    }
    Ok(documents)
}

fn check_document(doc: &Document) -> Result<(), String> {
    let at = format!("document {} (line {})", doc.index, doc.line);
    if !doc.object.is_object() {
        return Err(format!("{at}: is not a mapping"));
    }
    if doc.api_version().is_empty() {
        return Err(format!("{at}: has no apiVersion"));
    }
    if doc.kind().is_empty() {
        return Err(format!("{at}: has no kind"));
    }
    if doc.name().is_empty() {
        if doc.object.pointer("/metadata/generateName").is_some() {
            return Err(format!(
                "{at}: {} uses generateName, which server-side apply cannot do; give a name",
                doc.kind()
            ));
        }
        return Err(format!("{at}: {} has no metadata.name", doc.kind()));
    }
    Ok(())
}

/// Lines starting a new document (`---`, optionally followed by a comment or content).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 1usize;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            if !current.is_empty() {
                out.push((start, std::mem::take(&mut current)));
            }
            start = i + 2;
            let rest = line[3..].trim_start();
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
            continue;
        }
        if line == "..." {
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.is_empty() {
        out.push((start, current));
    }
    out
}

/// Kinds applied before the others, as kubectl and Helm order them: what other objects live in
/// or are defined by comes first.
fn apply_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "PriorityClass" | "StorageClass" | "IngressClass" | "RuntimeClass" => 2,
        "ServiceAccount" | "Secret" | "ConfigMap" => 3,
        "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" => 4,
        "PersistentVolume" | "PersistentVolumeClaim" => 5,
        "Service" => 6,
        _ => 7,
    }
}

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
}

/// An answer from the API server, read whole.
struct Sent {
    status: u16,
    warnings: Vec<String>,
    body: Vec<u8>,
}

async fn send(client: &Client, request: http::Request<Vec<u8>>) -> Result<Sent, kube::Error> {
    let response = client.send(request.map(kube::client::Body::from)).await?;
    let status = response.status().as_u16();
    let warnings =
        response.headers().get_all("warning").iter().filter_map(|v| v.to_str().ok()).map(warning_text).collect();
    let body = response.into_body().collect().await.map_err(|e| kube::Error::Service(Box::new(e)))?.to_bytes().to_vec();
    Ok(Sent { status, warnings, body })
}

/// `299 - "text with \"quotes\""` (RFC 7234 warn-text) → `text with "quotes"`.
fn warning_text(header: &str) -> String {
    let (Some(start), Some(end)) = (header.find('"'), header.rfind('"')) else {
        return header.to_owned();
    };
    if end <= start {
        return header.to_owned();
    }
    let mut text = String::new();
    let mut chars = header[start + 1..end].chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                text.push(next);
            }
        } else {
            text.push(c);
        }
    }
    text
}

impl Sent {
    fn into_object(self) -> Result<(DynamicObject, Vec<String>), kube::Error> {
        if (200..300).contains(&self.status) {
            let object = serde_json::from_slice(&self.body).map_err(kube::Error::SerdeError)?;
            Ok((object, self.warnings))
        } else {
            Err(self.into_error())
        }
    }

    fn into_error(self) -> kube::Error {
        let status = serde_json::from_slice::<kube::core::Status>(&self.body)
            .unwrap_or_else(|_| kube::core::Status::failure(&String::from_utf8_lossy(&self.body), "Unknown"));
        let mut status = status;
        status.code = self.status;
        kube::Error::Api(Box::new(status))
    }
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
    /// Applies a manifest with server-side apply. The whole manifest is checked first (structure,
    /// kinds, namespaces): if any document is invalid, nothing is applied. Documents are then
    /// applied Namespaces and CRDs first.
    pub async fn apply(
        &self,
        caller: &Caller,
        cluster_id: &str,
        text: &str,
        options: &ApplyOptions,
    ) -> Result<Vec<DocumentResult>, ResourceError> {
        let documents = parse_manifest(text).map_err(ResourceError::Invalid)?;
        let (row, client) = self.connections().client_for(caller, cluster_id).await?;
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
        for doc in &documents {
            let (group, version) = doc.group_version();
            if defined_here.contains(&(group.to_owned(), doc.kind().to_owned())) {
                continue;
            }
            let (_, caps) =
                self.resolve(caller, cluster_id, group, Some(version), doc.kind()).await.map_err(|e| match e {
                    ResourceError::UnknownKind(msg) => {
                        ResourceError::Invalid(format!("document {} (line {}): {msg}", doc.index, doc.line))
                    }
                    other => other,
                })?;
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
            let result = self
                .apply_one(caller, cluster_id, &client, &row.name, doc, default_namespace.as_deref(), options)
                .await;
            if result.error.is_some() && options.on_error == OnError::Stop {
                stopped = true;
            }
            results.push(result);
        }
        results.sort_by_key(|r| r.index);
        Ok(results)
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_one(
        &self,
        caller: &Caller,
        cluster_id: &str,
        client: &Client,
        cluster_name: &str,
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
        };
        let fail = |mut result: DocumentResult, err: ResourceError| {
            result.error = Some(Arc::new(err));
            result
        };
        let (resource, caps) = match self.resolve(caller, cluster_id, group, Some(version), doc.kind()).await {
            Ok(found) => found,
            Err(err) => return fail(result, err),
        };
        let namespace = match caps.scope {
            Scope::Namespaced => doc.namespace().or(default_namespace).map(str::to_owned),
            Scope::Cluster => None,
        };
        result.namespace = namespace.clone();
        let mut object = doc.object.clone();
        if let (Some(ns), Some(meta)) = (&namespace, object.get_mut("metadata").and_then(Value::as_object_mut)) {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        let path = url_path(&resource, &caps, namespace.as_deref());
        let request = Request::new(path);
        let existing =
            match request.get(doc.name(), &kube::api::GetParams::default()).map_err(kube::Error::BuildRequest) {
                Ok(get) => match send(client, get).await {
                    Ok(sent) if sent.status == 404 => None,
                    Ok(sent) => match sent.into_object() {
                        Ok((object, _)) => Some(object),
                        Err(err) => return fail(result, Self::api_error(cluster_name, err)),
                    },
                    Err(err) => return fail(result, Self::api_error(cluster_name, err)),
                },
                Err(err) => return fail(result, Self::api_error(cluster_name, err)),
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
            Err(err) => return fail(result, Self::api_error(cluster_name, kube::Error::BuildRequest(err))),
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
                if doc.kind() == "CustomResourceDefinition" && !options.dry_run {
                    self.await_crd(client, doc.name()).await;
                    self.await_served(cluster_id, client, &doc.object).await;
                }
                result.object = Some(stored);
                result
            }
            Err(err) => fail(result, Self::api_error(cluster_name, schema_error_is_input(err))),
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
mod tests {
    use super::*;

    #[test]
    fn documents_lists_and_positions() {
        let text = "# leading comment\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n";
        let docs = parse_manifest(text).unwrap();
        let names: Vec<&str> = docs.iter().map(|d| d.name()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        assert_eq!(docs[1].line, 8);
        assert_eq!(docs[2].index, 2);
        let json = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}"#;
        assert_eq!(parse_manifest(json).unwrap()[0].name(), "j");
    }

    #[test]
    fn malformed_yaml_names_document_line_and_column() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n";
        let err = parse_manifest(text).unwrap_err();
        assert!(err.starts_with("document 1: line "), "{err}");
        assert!(err.contains("column"), "{err}");
        let line: usize = err["document 1: line ".len()..].split(',').next().unwrap().parse().unwrap();
        assert!((9..=10).contains(&line), "{err}");
    }

    #[test]
    fn missing_parts_and_empty_manifests() {
        assert!(parse_manifest("").unwrap_err().contains("no object"));
        assert!(parse_manifest("# only a comment\n---\n").unwrap_err().contains("no object"));
        assert!(parse_manifest("apiVersion: v1\nmetadata: {name: x}\n").unwrap_err().contains("no kind"));
        assert!(
            parse_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap_err().contains("no metadata.name")
        );
        assert!(parse_manifest("kind: ConfigMap\nmetadata: {name: x}\n").unwrap_err().contains("no apiVersion"));
        assert!(parse_manifest("- a\n- b\n").unwrap_err().contains("not a mapping"));
    }

    #[test]
    fn kubectl_order() {
        let mut kinds = vec!["Deployment", "ConfigMap", "CustomResourceDefinition", "Namespace", "Widget"];
        kinds.sort_by_key(|k| apply_rank(k));
        assert_eq!(kinds, vec!["Namespace", "CustomResourceDefinition", "ConfigMap", "Deployment", "Widget"]);
    }

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

    #[test]
    fn warning_headers() {
        assert_eq!(warning_text(r#"299 - "unknown field \"spec.x\"""#), r#"unknown field "spec.x""#);
        assert_eq!(warning_text("299 - \"plain\""), "plain");
    }
}
