//! The GraphQL schema: built in one place, resolvers kept thin over the domain services.

mod access;
mod across;
mod audit;
mod clusters;
mod cost;
mod fields;
mod logs;
mod object;
mod page;
mod principals;
pub mod raw;
mod resources;
mod rollout;
mod table;
mod watch;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema, SchemaBuilder};

use crate::access::Caller;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorCode};
use crate::settings::ApiLimits;

pub use clusters::Cluster;
pub use resources::DEFAULT_FIELD_MANAGER;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    clusters::ClusterQuery,
    resources::ResourceQuery,
    across::AcrossQuery,
    principals::PrincipalQuery,
    audit::AuditQuery,
    ViewerQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    clusters::ClusterMutation,
    resources::ResourceMutation,
    rollout::RolloutMutation,
    principals::PrincipalMutation,
);

#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(
    clusters::ClusterSubscription,
    watch::WatchSubscription,
    across::AcrossSubscription,
    rollout::RolloutSubscription,
    logs::LogSubscription,
);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema with its limits and the audit extension; the server adds the services as data.
pub fn schema_builder(limits: &ApiLimits) -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    read_schema_builder(limits).extension(audit::Audit)
}

/// The same schema without the audit extension, for documents that hold no mutation. An
/// extension wraps the resolution of every field of every request (3,000 fields for a page of
/// 500 objects), and reads have nothing to audit; the HTTP layer sends anything else, including
/// a document that does not parse, to the audited schema.
pub fn read_schema_builder(limits: &ApiLimits) -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    cost::serve_pages_of(limits.max_page_size);
    cost::serve_spans_of(limits.max_clusters_per_query);
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot::default())
        .limit_depth(limits.max_query_depth)
        .limit_complexity(limits.max_query_complexity)
        .data(limits.clone())
}

/// True when a request's document holds no mutation, so it may run on the read schema.
pub fn reads_only(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::OperationType;
    match request.parsed_query() {
        Ok(document) => document.operations.iter().all(|(_, op)| op.node.ty != OperationType::Mutation),
        Err(_) => false,
    }
}

/// The SDL that `kubegql schema` prints and `schema.graphql` holds.
pub fn sdl() -> String {
    schema_builder(&ApiLimits::default()).finish().sdl()
}

/// The authenticated caller of this request.
pub(crate) fn caller<'a>(ctx: &Context<'a>) -> Result<&'a Caller, ApiError> {
    ctx.data_opt::<Caller>()
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "this request is not authenticated"))
}

/// The authenticated principal of this request.
pub(crate) fn principal<'a>(ctx: &Context<'a>) -> Result<&'a Principal, ApiError> {
    caller(ctx).map(|c| &c.principal)
}

/// A GraphQL field guard: the caller must hold at least this role. Runs inside the field's
/// resolution, so the audit extension records a refused mutation as DENIED.
pub struct RoleGuard(pub Role);

impl async_graphql::Guard for RoleGuard {
    async fn check(&self, ctx: &async_graphql::Context<'_>) -> async_graphql::Result<()> {
        let caller = ctx
            .data_opt::<Caller>()
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "this request is not authenticated"))?;
        crate::authz::require(&caller.principal, self.0).map_err(|denied| ApiError::from(denied).into())
    }
}

pub(crate) fn data<'a, T: Send + Sync + 'static>(ctx: &Context<'a>) -> Result<&'a T, ApiError> {
    ctx.data_opt::<T>().ok_or_else(|| ApiError::internal("schema data missing"))
}

/// The caller as the API sees it.
#[derive(async_graphql::SimpleObject)]
pub struct Viewer {
    pub id: async_graphql::ID,
    pub name: String,
    pub kind: crate::auth::PrincipalKind,
    pub role: Role,
    pub tenant: String,
}

#[derive(Default)]
pub struct ViewerQuery;

#[async_graphql::Object]
impl ViewerQuery {
    /// The principal this request authenticated as.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        let who = principal(ctx)?;
        Ok(Viewer {
            id: who.id.clone().into(),
            name: who.name.clone(),
            kind: who.kind,
            role: who.role,
            tenant: who.tenant.clone(),
        })
    }
}
