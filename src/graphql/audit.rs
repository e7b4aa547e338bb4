//! The audit extension: every root mutation field is recorded before it runs and completed after
//! it, whatever the outcome. If the record cannot be written, the field does not run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::connection::Connection;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest, NextResolve,
    ResolveInfo,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::registry::MetaType;
use async_graphql::{
    Context, ErrorExtensions, ID, InputObject, Name, Object, Request, Response, ServerError, ServerResult, Value,
    Variables,
};
use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::RoleGuard;
use super::data;
use crate::access::Caller;
use crate::audit::{Actor, AuditEntry, AuditOutcome, AuditRecorder};
use crate::auth::Role;
use crate::authz::{AuditScope, audit_scope};
use crate::error::ApiError;
use crate::pagination::PageRequest;
use crate::resources::write::{Manifest, read_manifest, unreadable_manifest_summary};
use crate::settings::ApiLimits;
use crate::store::Database;
use crate::store::StoreError;
use crate::store::audit::{AuditFilter, AuditRow};
use crate::store::utc;

/// The HTTP verb each mutation sends to a cluster; mutations absent here change only kubegql's
/// own store.
fn cluster_verb(field: &str, args: &Json) -> Option<&'static str> {
    match field {
        "apply" | "patch" | "scale" | "rollback" | "rolloutRestart" => Some("PATCH"),
        "deleteResource" => Some("DELETE"),
        "createResource" => Some("POST"),
        "replaceResource" => Some("PUT"),
        _ if args.get("clusterId").is_some() => Some("POST"),
        _ => None,
    }
}

fn text(args: &Json, key: &str) -> Option<String> {
    args.get(key).and_then(Json::as_str).map(str::to_owned)
}

/// The fields of a record that can be read from a mutation's arguments.
fn entry_of(field: &str, operation: Option<String>, args: Json) -> AuditEntry {
    // Cluster mutations name their cluster `id`; Kubernetes mutations name it `clusterId`.
    let cluster_id = text(&args, "clusterId")
        .or_else(|| matches!(field, "updateCluster" | "deleteCluster").then(|| text(&args, "id")).flatten());
    AuditEntry {
        operation,
        field: field.to_owned(),
        verb: cluster_verb(field, &args).map(str::to_owned),
        cluster_id,
        api_group: text(&args, "group"),
        api_version: text(&args, "version"),
        kind: text(&args, "kind"),
        namespace: text(&args, "namespace"),
        name: text(&args, "name"),
        dry_run: args.get("dryRun").and_then(Json::as_bool).unwrap_or(false),
        arguments: args,
    }
}

pub struct Audit;

impl ExtensionFactory for Audit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AuditExtension::default())
    }
}

#[derive(Default)]
struct AuditExtension {
    variables: Mutex<Variables>,
    operation: Mutex<Option<String>>,
    /// The variables' default values, per operation of the document.
    defaults: Mutex<Vec<OperationDefaults>>,
}

/// An operation's name, and the default values its variables declare.
type OperationDefaults = (Option<String>, Vec<(Name, Value)>);

/// The manifests of a request's mutations, parsed once: by the audit extension, which keeps their
/// summary in the record, for the `apply` resolver, which reads the documents. Keyed by the
/// response key of the root field.
#[derive(Default)]
pub struct ParsedManifests(Mutex<HashMap<String, Result<Arc<Manifest>, String>>>);

impl ParsedManifests {
    /// The manifest parsed for the root field at `key`, taken (each is read once).
    pub fn take(&self, key: &str) -> Option<Result<Arc<Manifest>, String>> {
        self.0.lock().ok()?.remove(key)
    }

    fn put(&self, key: String, manifest: Result<Arc<Manifest>, String>) {
        if let Ok(mut kept) = self.0.lock() {
            kept.insert(key, manifest);
        }
    }
}

/// A field's default value as the registry keeps it (GraphQL text), read as a value.
fn parse_default(text: &str) -> Option<Value> {
    let document = async_graphql::parser::parse_query(format!("query($v: Int = {text}) {{ __typename }}")).ok()?;
    let (_, operation) = document.operations.iter().next()?;
    operation.node.variable_definitions.first()?.node.default_value.as_ref().map(|v| v.node.clone())
}

impl AuditExtension {
    /// The arguments `field` runs with, as its resolver reads them: each argument given, with
    /// its variables replaced by the request's values or else the operation's defaults, and each
    /// argument left out that has a default in the schema.
    fn arguments(&self, ctx: &ExtensionContext<'_>, info: &ResolveInfo<'_>) -> Json {
        let variables = self.variables.lock().map(|v| v.clone()).unwrap_or_default();
        let mut args = serde_json::Map::new();
        for (name, value) in &info.field.arguments {
            let resolved = value
                .node
                .clone()
                .into_const_with(|var| {
                    Ok::<_, std::convert::Infallible>(variables.get(&var).cloned().unwrap_or(Value::Null))
                })
                .ok()
                .and_then(|v| v.into_json().ok())
                .unwrap_or(Json::Null);
            args.insert(name.node.to_string(), resolved);
        }
        let schema_args = match ctx.schema_env.registry.types.get(info.parent_type) {
            Some(MetaType::Object { fields, .. }) => fields.get(info.name).map(|f| &f.args),
            _ => None,
        };
        for (name, arg) in schema_args.into_iter().flatten() {
            if !args.contains_key(name)
                && let Some(default) = arg.default_value.as_deref().and_then(parse_default)
            {
                args.insert(name.clone(), default.into_json().unwrap_or(Json::Null));
            }
        }
        Json::Object(args)
    }
}

fn refused(cause: Option<&StoreError>) -> ServerError {
    let (message, code) = crate::audit::refusal(cause);
    let err = async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code.as_str()));
    err.into_server_error(async_graphql::Pos::default())
}

#[async_trait::async_trait]
impl Extension for AuditExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let defaults = document
            .operations
            .iter()
            .map(|(name, operation)| {
                let defaults = operation
                    .node
                    .variable_definitions
                    .iter()
                    .filter_map(|d| d.node.default_value.as_ref().map(|v| (d.node.name.node.clone(), v.node.clone())))
                    .collect();
                (name.map(|n| n.to_string()), defaults)
            })
            .collect();
        if let Ok(mut kept) = self.defaults.lock() {
            *kept = defaults;
        }
        Ok(document)
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut vars) = self.variables.lock() {
            *vars = request.variables.clone();
        }
        next.run(ctx, request.data(ParsedManifests::default())).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Ok(mut op) = self.operation.lock() {
            *op = operation_name.map(str::to_owned);
        }
        // The variables the operation runs with: those sent, then the defaults it declares.
        if let (Ok(defaults), Ok(mut variables)) = (self.defaults.lock(), self.variables.lock()) {
            let chosen = match operation_name {
                Some(name) => defaults.iter().find(|(n, _)| n.as_deref() == Some(name)),
                None if defaults.len() == 1 => defaults.first(),
                None => None,
            };
            for (name, value) in chosen.map(|(_, d)| d.as_slice()).unwrap_or_default() {
                if !variables.contains_key(name) {
                    variables.insert(name.clone(), value.clone());
                }
            }
        }
        next.run(ctx, operation_name).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let is_root_mutation = info.path_node.parent.is_none()
            && ctx.schema_env.registry.mutation_type.as_deref() == Some(info.parent_type);
        if !is_root_mutation {
            return next.run(ctx, info).await;
        }
        let Some(recorder) = ctx.data_opt::<AuditRecorder>() else {
            tracing::error!("no audit recorder configured; refusing mutation");
            return Err(refused(None));
        };
        let mut args = self.arguments(ctx, &info);
        if let Some(Json::String(text)) = args.get_mut("manifest").map(std::mem::take) {
            // Parsed here, once: the record keeps the summary, `apply` reads the documents.
            let max =
                ctx.data_opt::<ApiLimits>().map_or(ApiLimits::default().max_manifest_bytes, |l| l.max_manifest_bytes);
            let parsed = read_manifest(text.clone(), max).await.map(Arc::new).map_err(|e| e.to_string());
            args["manifest"] = match &parsed {
                Ok(manifest) => manifest.summary(),
                Err(reason) => unreadable_manifest_summary(&text, reason),
            };
            if let Some(slot) = ctx.data_opt::<ParsedManifests>() {
                slot.put(info.alias.unwrap_or(info.name).to_owned(), parsed);
            }
        }
        let operation = self.operation.lock().ok().and_then(|o| o.clone());
        let entry = entry_of(info.name, operation, args);
        let actor = ctx.data_opt::<Caller>().map_or(Actor::Anonymous, Actor::Caller);
        let pending = match recorder.begin(actor, entry).await {
            Ok(pending) => pending,
            Err(err) => {
                tracing::error!(error = %err, field = info.name, "audit record could not be written; refusing mutation");
                return Err(refused(Some(&err)));
            }
        };
        let result = next.run(ctx, info).await;
        let (outcome, code) = match &result {
            Ok(_) => (AuditOutcome::Success, None),
            Err(err) => {
                let code = err
                    .extensions
                    .as_ref()
                    .and_then(|ext| ext.get("code"))
                    .and_then(|v| if let Value::String(s) = v { Some(s.clone()) } else { None });
                (AuditOutcome::of_error_code(code.as_deref()), code)
            }
        };
        // A failure is logged by the recorder; the action ran, and its answer stands.
        let _ = pending.finish(outcome, code.as_deref()).await;
        result
    }
}

/// One recorded action.
pub struct AuditEvent(AuditRow);

#[Object]
impl AuditEvent {
    async fn seq(&self) -> i64 {
        self.0.seq.unwrap_or_default()
    }
    async fn at(&self) -> DateTime<Utc> {
        utc(self.0.started_at)
    }
    async fn request_id(&self) -> &str {
        &self.0.request_id
    }
    async fn principal_id(&self) -> Option<ID> {
        self.0.principal_id.clone().map(ID)
    }
    async fn principal_name(&self) -> Option<&str> {
        self.0.principal_name.as_deref()
    }
    async fn tenant(&self) -> Option<&str> {
        self.0.tenant.as_deref()
    }
    /// The identity impersonated on the cluster, when one was asked for.
    async fn impersonated(&self) -> Option<&str> {
        self.0.impersonated.as_deref()
    }
    async fn cluster_id(&self) -> Option<ID> {
        self.0.cluster_id.clone().map(ID)
    }
    async fn operation(&self) -> Option<&str> {
        self.0.operation.as_deref()
    }
    /// The mutation field.
    async fn field(&self) -> &str {
        &self.0.field
    }
    /// The HTTP verb sent to the cluster (`POST`, `PUT`, `PATCH`, `DELETE`), if any.
    async fn verb(&self) -> Option<&str> {
        self.0.verb.as_deref()
    }
    async fn group(&self) -> Option<&str> {
        self.0.api_group.as_deref()
    }
    async fn version(&self) -> Option<&str> {
        self.0.api_version.as_deref()
    }
    async fn kind(&self) -> Option<&str> {
        self.0.kind.as_deref()
    }
    async fn namespace(&self) -> Option<&str> {
        self.0.namespace.as_deref()
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    async fn dry_run(&self) -> bool {
        self.0.dry_run
    }
    async fn outcome(&self) -> &str {
        &self.0.outcome
    }
    async fn error_code(&self) -> Option<&str> {
        self.0.error_code.as_deref()
    }
    async fn duration_ms(&self) -> Option<i64> {
        self.0.duration_ms
    }
    /// The arguments, with secrets masked.
    async fn arguments(&self) -> async_graphql::Json<Json> {
        async_graphql::Json(serde_json::from_str(&self.0.arguments).unwrap_or(Json::Null))
    }
}

#[derive(InputObject, Default)]
pub struct AuditFilterInput {
    pub cluster_id: Option<ID>,
    pub principal_id: Option<ID>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub outcome: Option<AuditOutcome>,
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Recorded actions, newest first. ADMIN sees its tenant's; OPERATOR sees its own.
    #[graphql(guard = "RoleGuard(Role::Operator)", complexity = "super::cost::page(first, child_complexity)")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditFilterInput>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, AuditEvent>> {
        let who = super::principal(ctx)?;
        let filter = filter.unwrap_or_default();
        let mut scope_filter = AuditFilter {
            tenant: Some(who.tenant.clone()),
            principal_id: filter.principal_id.map(|id| id.0),
            cluster_id: filter.cluster_id.map(|id| id.0),
            outcome: filter.outcome.map(|o| o.as_str().to_owned()),
            since: filter.since.map(|t| t.naive_utc()),
            until: filter.until.map(|t| t.naive_utc()),
        };
        if audit_scope(who).map_err(ApiError::from)? == AuditScope::Own {
            scope_filter.principal_id = Some(who.id.clone());
        }
        let scope = format!(
            "audit:{:?}:{:?}:{:?}:{:?}:{:?}:{:?}",
            scope_filter.tenant,
            scope_filter.principal_id,
            scope_filter.cluster_id,
            scope_filter.outcome,
            scope_filter.since,
            scope_filter.until
        );
        let page = PageRequest::parse(first, after.as_deref(), &scope, data::<ApiLimits>(ctx)?)?;
        let before = page
            .after
            .as_deref()
            .map(|s| {
                s.parse::<i64>().map_err(|_| ApiError::bad_input("after", "after is not a cursor issued by this list"))
            })
            .transpose()?;
        let db = data::<Database>(ctx)?;
        let rows = db.audit_page(&scope_filter, before, page.fetch_limit()).await.map_err(ApiError::from)?;
        Ok(page.connection(&scope, rows, |row| row.seq.unwrap_or_default().to_string(), AuditEvent))
    }
}
