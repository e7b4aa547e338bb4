//! Kubernetes objects in the schema: one `Resource` type for every kind (built-in or CRD), lists
//! as Relay connections cut by the API server, events, and pod logs.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Json, Object, SimpleObject};
use k8s_openapi::api::core::v1::Event;
use kube::discovery::Scope;

use super::RoleGuard;
pub use super::object::Resource;
use super::object::{Meta, ObjectMeta, Origin, WholeObject, to_chrono};
use super::{caller, data};
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::pagination::{PageRequest, encode_cursor};
use crate::resources::{ListPage, ListQuery, ResourceError, ResourceService, Target};
use crate::settings::ApiLimits;

pub use super::page::{ListInfo, ResourceConnection};

/// A cursor scope binds a continue token to the exact query it belongs to. SHA-256, not the
/// standard library's hasher, whose output may change between Rust releases: a cursor must stay
/// valid on a replica built by another release during a rolling upgrade.
fn scope_of(parts: &[&str]) -> String {
    let digest = crate::digest::sha256_hex(parts.join("\0").as_bytes());
    format!("k8s:{}", &digest[..16])
}

/// Builds a connection from a page. The API server pages by continue token, not by item, so every
/// edge of a page carries the same cursor: the one that continues after the page's last item
/// (`pageInfo.endCursor`). Continuing from a middle edge is not possible with Kubernetes lists.
fn connection<K, N>(
    page: ListPage<K>,
    scope: &str,
    had_cursor: bool,
    node: impl Fn(K) -> N,
) -> Connection<String, N, ListInfo>
where
    N: async_graphql::OutputType,
{
    let next = page.continue_token.clone();
    let mut conn = Connection::with_additional_fields(
        had_cursor,
        next.is_some(),
        ListInfo { remaining_item_count: page.remaining_item_count, resource_version: page.resource_version },
    );
    let cursor = encode_cursor(scope, next.as_deref().unwrap_or(""));
    conn.edges.extend(page.items.into_iter().map(|item| Edge::new(cursor.clone(), node(item))));
    conn
}

/// What a resource list needs from the arguments.
pub struct ListArgs {
    pub group: String,
    pub version: Option<String>,
    pub kind: String,
    /// Absent: all namespaces.
    pub namespace: Option<String>,
    pub query: ListQuery,
    pub first: Option<i32>,
    pub after: Option<String>,
}

pub async fn list_resources(
    ctx: &Context<'_>,
    cluster_id: &str,
    args: ListArgs,
) -> async_graphql::Result<ResourceConnection> {
    let limits = data::<ApiLimits>(ctx)?;
    let query = args.query;
    let target =
        resolve_kind(ctx, cluster_id, &args.group, args.version.as_deref(), &args.kind, args.namespace).await?;
    let resource = &target.resource;
    let scope = list_scope(cluster_id, &target, &query);
    let page = PageRequest::parse(args.first, args.after.as_deref(), &scope, limits)?;
    if page.after.as_deref() == Some("") {
        // The cursor of a last page: nothing follows it.
        return Ok(ResourceConnection::empty(true));
    }
    let list =
        target.list(&query, page.size, page.after.clone(), reads_metadata_only(ctx)).await.map_err(ApiError::from)?;
    let origin = Origin::new(&resource.api_version, &resource.kind, cluster_id);
    let info = ListInfo { remaining_item_count: list.remaining_item_count, resource_version: list.resource_version };
    let has_next = list.continue_token.is_some();
    let cursor = encode_cursor(&scope, list.continue_token.as_deref().unwrap_or(""));
    let items = list.items.into_iter().map(|raw| Resource::raw(raw, Arc::clone(&origin))).collect();
    Ok(ResourceConnection::new(page.after.is_some(), has_next, cursor, items, info))
}

/// The scope of a list's cursors: the cluster, the kind, the namespace and the selectors. A
/// table of the same list has the same scope, as the API server's continue tokens are the same
/// whichever way the items are rendered.
pub(super) fn list_scope(cluster_id: &str, target: &Target, query: &ListQuery) -> String {
    let resource = &target.resource;
    scope_of(&[
        cluster_id,
        &resource.group,
        &resource.version,
        &resource.kind,
        target.namespace().unwrap_or("\0all"),
        query.label_selector.as_deref().unwrap_or(""),
        query.field_selector.as_deref().unwrap_or(""),
    ])
}

/// True when the list's nodes read nothing beyond their type and metadata: then the API server
/// is asked for metadata only, as `kubectl get` asks for tables rather than whole objects.
fn reads_metadata_only(ctx: &Context<'_>) -> bool {
    let look = ctx.look_ahead();
    selects_only_metadata([look.field("edges").field("node"), look.field("nodes")])
}

/// True when the objects at these places of the query read nothing beyond their type and
/// metadata.
pub(super) fn selects_only_metadata<'a>(objects: impl IntoIterator<Item = async_graphql::Lookahead<'a>>) -> bool {
    const METADATA_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "events", "__typename"];
    objects
        .into_iter()
        .flat_map(|objects| objects.selection_fields())
        .all(|object| object.selection_set().all(|field| METADATA_FIELDS.contains(&field.name())))
}

/// A kind of a cluster bound for the caller (see `resources::Target`).
pub(super) async fn resolve_kind(
    ctx: &Context<'_>,
    cluster_id: &str,
    group: &str,
    version: Option<&str>,
    kind: &str,
    namespace: Option<String>,
) -> Result<Target, ApiError> {
    Ok(data::<ResourceService>(ctx)?.target(caller(ctx)?, cluster_id, group, version, kind, namespace).await?)
}

pub async fn get_resource(
    ctx: &Context<'_>,
    cluster_id: &str,
    group: &str,
    version: Option<&str>,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> async_graphql::Result<Resource> {
    let target = resolve_kind(ctx, cluster_id, group, version, kind, namespace.map(str::to_owned)).await?;
    let object = target.get(name).await.map_err(ApiError::from)?;
    let object = object.ok_or_else(|| {
        let place = target.namespace().map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
        ApiError::new(ErrorCode::NotFound, format!("{} {name:?} not found{place}", target.resource.kind))
    })?;
    Ok(Resource::raw(object, Origin::new(&target.resource.api_version, &target.resource.kind, cluster_id)))
}

// Serial, as `ObjectMeta`: only `events` waits on the network, and one object's fields gain
// nothing from running concurrently (the objects of a page still do).
#[Object(serial)]
impl Resource {
    async fn api_version(&self) -> &str {
        &self.origin().api_version
    }
    async fn kind(&self) -> &str {
        &self.origin().kind
    }
    async fn metadata(&self) -> Result<ObjectMeta<'_>, ApiError> {
        Ok(ObjectMeta(self.meta()?))
    }
    /// `.spec`, as JSON (null for kinds without one).
    async fn spec(&self) -> Result<Json<serde_json::Value>, ApiError> {
        self.part("spec").map(Json).map_err(ApiError::internal)
    }
    /// `.status`, as JSON.
    async fn status(&self) -> Result<Json<serde_json::Value>, ApiError> {
        self.part("status").map(Json).map_err(ApiError::internal)
    }
    /// The whole object as JSON, as `kubectl get -o json` shows it: without
    /// `metadata.managedFields` unless `managedFields` is true.
    async fn json(&self, #[graphql(default = false)] managed_fields: bool) -> WholeObject<'_> {
        WholeObject { resource: self, managed_fields }
    }
    /// The whole object as YAML, as `kubectl get -o yaml` shows it: without
    /// `metadata.managedFields` unless `managedFields` is true.
    async fn yaml(&self, #[graphql(default = false)] managed_fields: bool) -> async_graphql::Result<String> {
        let value = self.whole(managed_fields).map_err(ApiError::internal)?;
        Ok(serde_saphyr::to_string(&value).map_err(ApiError::internal)?)
    }
    /// Events about this object, newest pages first as the API server returns them.
    #[graphql(complexity = "super::cost::cluster_page(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, EventNode, ListInfo>> {
        let meta = self.meta()?;
        let uid = meta.uid().unwrap_or_default();
        let cluster_id = &self.origin().cluster_id;
        let scope = scope_of(&[cluster_id, "events", uid]);
        let limits = data::<ApiLimits>(ctx)?;
        let page = PageRequest::parse(first, after.as_deref(), &scope, limits)?;
        if page.after.as_deref() == Some("") {
            return Ok(Connection::with_additional_fields(true, false, ListInfo::default()));
        }
        let reader = data::<ResourceService>(ctx)?;
        let list = reader
            .events(caller(ctx)?, cluster_id, meta.namespace(), uid, page.size, page.after.clone())
            .await
            .map_err(ApiError::from)?;
        Ok(connection(list, &scope, page.after.is_some(), EventNode::new))
    }
}

/// A Kubernetes Event (`core/v1`).
pub struct EventNode(Event, Meta<'static>);

impl EventNode {
    fn new(event: Event) -> Self {
        let meta = Meta::from(&event.metadata);
        Self(event, meta)
    }
}

#[Object(name = "Event")]
impl EventNode {
    async fn r#type(&self) -> Option<&str> {
        self.0.type_.as_deref()
    }
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }
    async fn count(&self) -> Option<i32> {
        self.0.count
    }
    async fn source_component(&self) -> Option<&str> {
        self.0.source.as_ref().and_then(|s| s.component.as_deref())
    }
    async fn first_timestamp(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.first_timestamp.as_ref().map(|t| to_chrono(&t.0))
    }
    async fn last_timestamp(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.last_timestamp.as_ref().map(|t| to_chrono(&t.0))
    }
    async fn metadata(&self) -> ObjectMeta<'_> {
        ObjectMeta(&self.1)
    }
}

/// A kind the cluster serves, from discovery.
#[derive(SimpleObject)]
pub struct ApiResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    /// Whether this is the group's preferred version.
    pub preferred: bool,
    pub subresources: Vec<String>,
}

pub async fn api_resources(ctx: &Context<'_>, cluster_id: &str) -> async_graphql::Result<Vec<ApiResourceInfo>> {
    let reader = data::<ResourceService>(ctx)?;
    let (_, client) = reader.client(caller(ctx)?, cluster_id).await.map_err(ApiError::from)?;
    let served = reader.discovery().resources(cluster_id, &client).await.map_err(|e| {
        ApiError::from(ResourceError::Access(crate::clients::connections::AccessError::Connect {
            cluster: cluster_id.to_owned(),
            error: crate::clients::ConnectError::from_kube(&e, std::time::Duration::from_secs(30)),
        }))
    })?;
    Ok(served
        .into_iter()
        .map(|s| ApiResourceInfo {
            group: s.resource.group,
            version: s.resource.version,
            kind: s.resource.kind,
            plural: s.resource.plural,
            namespaced: s.capabilities.scope == Scope::Namespaced,
            verbs: s.capabilities.operations,
            preferred: s.preferred,
            subresources: s.capabilities.subresources.into_iter().map(|(r, _)| r.plural).collect(),
        })
        .collect())
}

/// A pod's log text, capped in size.
#[derive(SimpleObject)]
pub struct PodLogOutput {
    pub text: String,
    /// True only when lines of what was asked for are left out (the size cap cut the end).
    pub truncated: bool,
    /// Give this as `before` (with `tailLines` as the page size) for the lines just older than
    /// this text; absent when there are none.
    pub older_cursor: Option<String>,
}

#[derive(Default)]
pub struct ResourceQuery;

#[Object]
impl ResourceQuery {
    /// A pod's log (`kubectl logs`), at most 1 MiB. Page back through older lines with
    /// `olderCursor` and `before`.
    #[graphql(complexity = "super::cost::log(limit_bytes, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn pod_logs(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        namespace: String,
        pod: String,
        container: Option<String>,
        tail_lines: Option<i64>,
        since_seconds: Option<i64>,
        #[graphql(default = false)] previous: bool,
        #[graphql(desc = "At most this many bytes (default and maximum 1 MiB).")] limit_bytes: Option<i64>,
        #[graphql(default = false)] timestamps: bool,
        #[graphql(desc = "An `olderCursor`: the page of lines just before it (`tailLines` of them, default 100).")]
        before: Option<String>,
    ) -> async_graphql::Result<PodLogOutput> {
        let caller = caller(ctx)?;
        if tail_lines.is_some_and(|n| n < 0)
            || since_seconds.is_some_and(|n| n < 1)
            || limit_bytes.is_some_and(|n| n < 1)
        {
            return Err(ApiError::new(
                ErrorCode::BadUserInput,
                "tailLines must be >= 0, sinceSeconds and limitBytes >= 1",
            )
            .into());
        }
        let before = before
            .map(|cursor| crate::logs::position::Position::decode(&cursor))
            .transpose()
            .map_err(|e| ApiError::new(ErrorCode::BadUserInput, format!("before: {e}")))?;
        let reader = data::<ResourceService>(ctx)?;
        let request = crate::resources::PodLogRequest {
            before,
            container,
            tail_lines,
            since_seconds,
            previous,
            limit_bytes,
            timestamps,
        };
        let log = reader.pod_logs(caller, &cluster_id, &namespace, &pod, request).await.map_err(ApiError::from)?;
        Ok(PodLogOutput { text: log.text, truncated: log.truncated, older_cursor: log.older.map(|p| p.encode()) })
    }
}

use crate::resources::write::{
    ApplyAction, ApplyOptions, DeleteRequest, DocumentResult, FieldValidation, OnError, PatchRequest, PatchType,
};

/// A failure of one document.
#[derive(SimpleObject)]
pub struct DocumentErrorOutput {
    pub code: String,
    pub message: String,
}

/// What happened to one document of an applied manifest.
pub struct AppliedDocument {
    result: DocumentResult,
    cluster_id: String,
}

#[Object]
impl AppliedDocument {
    /// Position in the manifest (items of a List count one each), from 0.
    async fn index(&self) -> i32 {
        self.result.index as i32
    }
    async fn api_version(&self) -> &str {
        &self.result.api_version
    }
    async fn kind(&self) -> &str {
        &self.result.kind
    }
    async fn namespace(&self) -> Option<&str> {
        self.result.namespace.as_deref()
    }
    async fn name(&self) -> &str {
        &self.result.name
    }
    /// CREATED, CONFIGURED or UNCHANGED; absent when the document failed or was not reached.
    async fn action(&self) -> Option<ApplyAction> {
        self.result.action
    }
    /// The API server's warnings for this document.
    async fn warnings(&self) -> &[String] {
        &self.result.warnings
    }
    /// In a dry run, what would change, as `kubectl diff --server-side` shows it: a unified diff
    /// of the live object (none when it would be created) and the object the API server would
    /// store, both as YAML without managed fields, resource version, generation and status, a
    /// Secret's values masked. Empty when nothing would change; absent outside a dry run.
    async fn diff(&self) -> Option<&str> {
        self.result.diff.as_deref()
    }
    async fn error(&self) -> Option<DocumentErrorOutput> {
        self.result.error.as_deref().map(|e| {
            let api = ApiError::from(e);
            DocumentErrorOutput { code: api.code.as_str().to_owned(), message: api.message }
        })
    }
    /// The object as stored (or, in a dry run, as it would be stored).
    async fn object(&self) -> Option<Resource> {
        let object = self.result.object.clone()?;
        Some(Resource::new(object, &self.result.api_version, &self.result.kind, &self.cluster_id))
    }
}

/// The outcome of an apply.
pub struct ApplyOutput {
    dry_run: bool,
    documents: Vec<AppliedDocument>,
}

#[Object]
impl ApplyOutput {
    async fn dry_run(&self) -> bool {
        self.dry_run
    }
    async fn documents(&self) -> &[AppliedDocument] {
        &self.documents
    }
    async fn succeeded(&self) -> i32 {
        self.documents.iter().filter(|d| d.result.action.is_some()).count() as i32
    }
    async fn failed(&self) -> i32 {
        self.documents.iter().filter(|d| d.result.error.is_some()).count() as i32
    }
}

/// An object after a patch.
pub struct ChangedResource {
    object: Resource,
    warnings: Vec<String>,
}

#[Object]
impl ChangedResource {
    async fn object(&self) -> &Resource {
        &self.object
    }
    async fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// The outcome of a delete.
pub struct DeletedResource {
    object: Option<Resource>,
    warnings: Vec<String>,
}

#[Object]
impl DeletedResource {
    /// The object as the API server last reported it: with a deletion timestamp while
    /// finalizers hold it; absent when it is already gone.
    async fn object(&self) -> Option<&Resource> {
        self.object.as_ref()
    }
    async fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// The scale of a workload after `scale`.
#[derive(SimpleObject)]
pub struct ScaleOutput {
    pub replicas: i32,
    /// Replicas the controller reports now (the change may still be rolling out).
    pub status_replicas: Option<i32>,
    pub selector: Option<String>,
    pub scale: Json<serde_json::Value>,
}

#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum DeletePropagation {
    Orphan,
    Background,
    Foreground,
}

/// The field manager kubegql applies and patches as, unless told otherwise.
pub const DEFAULT_FIELD_MANAGER: &str = "kubegql";

fn check_field_manager(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_input("fieldManager", "fieldManager must be 1 to 128 visible characters"));
    }
    Ok(())
}

pub async fn apply_manifest(
    ctx: &Context<'_>,
    cluster_id: &str,
    manifest: &str,
    options: ApplyOptions,
) -> async_graphql::Result<ApplyOutput> {
    check_field_manager(&options.field_manager)?;
    let caller = caller(ctx)?;
    // The audit extension parsed it for the record already; else (no extension) it is parsed here.
    let key = match ctx.path_node.map(|n| n.segment) {
        Some(async_graphql::QueryPathSegment::Name(key)) => key,
        _ => "apply",
    };
    let parsed = match ctx.data_opt::<super::audit::ParsedManifests>().and_then(|p| p.take(key)) {
        Some(parsed) => parsed.map_err(ResourceError::Invalid),
        None => {
            let max = data::<ApiLimits>(ctx)?.max_manifest_bytes;
            crate::resources::write::read_manifest(manifest.to_owned(), max).await.map(Arc::new)
        }
    };
    let manifest = parsed.map_err(ApiError::from)?;
    let results =
        data::<ResourceService>(ctx)?.apply(caller, cluster_id, &manifest, &options).await.map_err(ApiError::from)?;
    Ok(ApplyOutput {
        dry_run: options.dry_run,
        documents: results
            .into_iter()
            .map(|result| AppliedDocument { result, cluster_id: cluster_id.to_owned() })
            .collect(),
    })
}

#[derive(Default)]
pub struct ResourceMutation;

#[Object]
impl ResourceMutation {
    /// Server-side apply of a YAML or JSON manifest (`kubectl apply --server-side`), one or many
    /// documents, `List`s included. The whole manifest is checked before anything is applied;
    /// Namespaces and CRDs go first. OPERATOR or ADMIN.
    #[allow(clippy::too_many_arguments)]
    #[graphql(guard = "RoleGuard(Role::Operator)", complexity = "super::cost::cluster_call(child_complexity)")]
    async fn apply(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        manifest: String,
        #[graphql(desc = "Namespace for namespaced objects that name none (default: the cluster's).")]
        namespace: Option<String>,
        #[graphql(desc = "Default `kubegql`.")] field_manager: Option<String>,
        #[graphql(desc = "Take fields owned by other managers (`--force-conflicts`). Default false.")] force: Option<
            bool,
        >,
        #[graphql(desc = "The API server's dry run: nothing is stored. Default false.")] dry_run: Option<bool>,
        #[graphql(desc = "Default STRICT, as kubectl.")] field_validation: Option<FieldValidation>,
        #[graphql(desc = "CONTINUE (the default, as kubectl) or STOP at the first failing document.")] on_error: Option<
            OnError,
        >,
    ) -> async_graphql::Result<ApplyOutput> {
        let options = ApplyOptions {
            namespace,
            field_manager: field_manager.unwrap_or_else(|| DEFAULT_FIELD_MANAGER.to_owned()),
            force: force.unwrap_or(false),
            dry_run: dry_run.unwrap_or(false),
            field_validation: field_validation.unwrap_or_default(),
            on_error: on_error.unwrap_or_default(),
        };
        apply_manifest(ctx, &cluster_id, &manifest, options).await
    }

    /// `kubectl patch --type strategic|merge|json`. Strategic merge is refused for custom
    /// resources. OPERATOR or ADMIN.
    #[allow(clippy::too_many_arguments)]
    #[graphql(guard = "RoleGuard(Role::Operator)", complexity = "super::cost::cluster_call(child_complexity)")]
    async fn patch(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        group: Option<String>,
        version: Option<String>,
        kind: String,
        namespace: Option<String>,
        name: String,
        #[graphql(name = "type")] patch_type: PatchType,
        patch: Json<serde_json::Value>,
        #[graphql(desc = "Default false.")] dry_run: Option<bool>,
        #[graphql(desc = "Default `kubegql`.")] field_manager: Option<String>,
    ) -> async_graphql::Result<ChangedResource> {
        let dry_run = dry_run.unwrap_or(false);
        let field_manager = field_manager.unwrap_or_else(|| DEFAULT_FIELD_MANAGER.to_owned());
        check_field_manager(&field_manager)?;
        let target =
            resolve_kind(ctx, &cluster_id, &group.unwrap_or_default(), version.as_deref(), &kind, namespace).await?;
        let request = PatchRequest { kind: patch_type, body: patch.0, dry_run, field_manager };
        let (object, warnings) = target.patch(&name, request).await.map_err(ApiError::from)?;
        Ok(ChangedResource {
            object: Resource::new(object, &target.resource.api_version, &target.resource.kind, &cluster_id),
            warnings,
        })
    }

    /// `kubectl delete`. OPERATOR or ADMIN.
    #[allow(clippy::too_many_arguments)]
    #[graphql(guard = "RoleGuard(Role::Operator)", complexity = "super::cost::cluster_call(child_complexity)")]
    async fn delete_resource(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        group: Option<String>,
        version: Option<String>,
        kind: String,
        namespace: Option<String>,
        name: String,
        propagation_policy: Option<DeletePropagation>,
        grace_period_seconds: Option<i32>,
        #[graphql(desc = "Default false.")] dry_run: Option<bool>,
    ) -> async_graphql::Result<DeletedResource> {
        let dry_run = dry_run.unwrap_or(false);
        let grace = grace_period_seconds
            .map(|g| {
                u32::try_from(g)
                    .map_err(|_| ApiError::bad_input("gracePeriodSeconds", "gracePeriodSeconds must not be negative"))
            })
            .transpose()?;
        let target =
            resolve_kind(ctx, &cluster_id, &group.unwrap_or_default(), version.as_deref(), &kind, namespace).await?;
        let propagation = propagation_policy.map(|p| match p {
            DeletePropagation::Orphan => kube::api::PropagationPolicy::Orphan,
            DeletePropagation::Background => kube::api::PropagationPolicy::Background,
            DeletePropagation::Foreground => kube::api::PropagationPolicy::Foreground,
        });
        let request = DeleteRequest { propagation, grace_period_seconds: grace, dry_run };
        let (object, warnings) = target.delete(&name, request).await.map_err(ApiError::from)?;
        let object = object.map(|o| Resource::new(o, &target.resource.api_version, &target.resource.kind, &cluster_id));
        Ok(DeletedResource { object, warnings })
    }

    /// `kubectl scale`: Deployments, StatefulSets, ReplicaSets and any kind with a scale
    /// subresource. OPERATOR or ADMIN.
    #[allow(clippy::too_many_arguments)]
    #[graphql(guard = "RoleGuard(Role::Operator)", complexity = "super::cost::cluster_call(child_complexity)")]
    async fn scale(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        #[graphql(desc = "Default apps.")] group: Option<String>,
        version: Option<String>,
        kind: String,
        namespace: Option<String>,
        name: String,
        replicas: i32,
        #[graphql(desc = "Default false.")] dry_run: Option<bool>,
    ) -> async_graphql::Result<ScaleOutput> {
        let dry_run = dry_run.unwrap_or(false);
        let group = group.unwrap_or_else(|| "apps".to_owned());
        let target = resolve_kind(ctx, &cluster_id, &group, version.as_deref(), &kind, namespace).await?;
        let scale = target.scale(&name, replicas, dry_run).await.map_err(ApiError::from)?;
        Ok(ScaleOutput {
            replicas: scale.pointer("/spec/replicas").and_then(|v| v.as_i64()).unwrap_or_default() as i32,
            status_replicas: scale.pointer("/status/replicas").and_then(|v| v.as_i64()).map(|v| v as i32),
            selector: scale.pointer("/status/selector").and_then(|v| v.as_str()).map(str::to_owned),
            scale: Json(scale),
        })
    }
}
