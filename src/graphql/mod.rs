//! The GraphQL schema: built in one place, resolvers kept thin over the domain services.

mod audit;
mod clusters;
mod principals;
mod resources;
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
    principals::PrincipalQuery,
    audit::AuditQuery,
    ViewerQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(clusters::ClusterMutation, resources::ResourceMutation, principals::PrincipalMutation);

#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(clusters::ClusterSubscription, watch::WatchSubscription);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema with its limits; the server adds the services as data.
pub fn schema_builder(limits: &ApiLimits) -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot::default())
        .extension(audit::Audit)
        .limit_depth(limits.max_query_depth)
        .limit_complexity(limits.max_query_complexity)
        .data(limits.clone())
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

/// The caller, if it holds at least `role`.
pub(crate) fn require_role<'a>(ctx: &Context<'a>, role: Role) -> Result<&'a Principal, ApiError> {
    let who = principal(ctx)?;
    let rank = |r: Role| match r {
        Role::Viewer => 0,
        Role::Operator => 1,
        Role::Admin => 2,
    };
    if rank(who.role) >= rank(role) {
        Ok(who)
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this needs the {} role; {} has {}", role.as_str(), who.name, who.role.as_str()),
        ))
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

