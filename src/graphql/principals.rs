//! Principals and API tokens in the schema (ADMIN, within the caller's tenant).

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;

use super::RoleGuard;
use super::data;
use crate::auth::{PrincipalKind, Role};
use crate::error::ApiError;
use crate::pagination::PageRequest;
use crate::principals::PrincipalService;
use crate::settings::ApiLimits;
use crate::store::principals::{ApiTokenRow, PrincipalRow};
use crate::store::utc;

/// A user or service account of the API.
pub struct Principal(PrincipalRow);

#[Object]
impl Principal {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn kind(&self) -> PrincipalKind {
        if self.0.kind == "SERVICE_ACCOUNT" { PrincipalKind::ServiceAccount } else { PrincipalKind::User }
    }
    async fn role(&self) -> Option<Role> {
        Role::parse(&self.0.role)
    }
    async fn tenant(&self) -> &str {
        &self.0.tenant
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
    /// The principal's tokens (never their values).
    #[graphql(complexity = "super::cost::page(first, child_complexity)")]
    async fn api_tokens(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ApiToken>> {
        let scope = format!("tokens:{}", self.0.id);
        let page = PageRequest::parse(first, after.as_deref(), &scope, data::<ApiLimits>(ctx)?)?;
        let service = data::<PrincipalService>(ctx)?;
        let rows =
            service.tokens(&self.0.id, page.after.as_deref(), page.fetch_limit()).await.map_err(ApiError::from)?;
        Ok(page.connection(&scope, rows, |row| row.id.clone(), ApiToken))
    }
}

/// An API token's record. The token itself is shown once, when it is created.
pub struct ApiToken(ApiTokenRow);

#[Object]
impl ApiToken {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at.map(utc)
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at.map(utc)
    }
    /// Neither revoked nor expired.
    async fn active(&self) -> bool {
        self.0.revoked_at.is_none() && self.0.expires_at.is_none_or(|at| at > crate::store::now())
    }
}

/// A token just created: `token` is shown this once and cannot be read again.
#[derive(SimpleObject)]
pub struct NewApiToken {
    pub token: String,
    pub api_token: ApiToken,
}

#[derive(InputObject)]
pub struct CreatePrincipalInput {
    pub name: String,
    #[graphql(default_with = "PrincipalKind::User")]
    pub kind: PrincipalKind,
    pub role: Role,
}

#[derive(Default)]
pub struct PrincipalQuery;

#[Object]
impl PrincipalQuery {
    /// The principals of the caller's tenant, by name (ADMIN).
    #[graphql(guard = "RoleGuard(Role::Admin)", complexity = "super::cost::page(first, child_complexity)")]
    async fn principals(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Principal>> {
        let admin = super::principal(ctx)?;
        let scope = "principals";
        let page = PageRequest::parse(first, after.as_deref(), scope, data::<ApiLimits>(ctx)?)?;
        let service = data::<PrincipalService>(ctx)?;
        let rows =
            service.page(&admin.tenant, page.after.as_deref(), page.fetch_limit()).await.map_err(ApiError::from)?;
        Ok(page.connection(scope, rows, |row| row.name.clone(), Principal))
    }
}

#[derive(Default)]
pub struct PrincipalMutation;

#[Object]
impl PrincipalMutation {
    /// Creates a principal in the caller's tenant (ADMIN). Give it a token with `createApiToken`.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_principal(
        &self,
        ctx: &Context<'_>,
        input: CreatePrincipalInput,
    ) -> async_graphql::Result<Principal> {
        let admin = super::principal(ctx)?;
        let row = data::<PrincipalService>(ctx)?
            .create(&admin.tenant, &input.name, input.kind, input.role)
            .await
            .map_err(ApiError::from)?;
        Ok(Principal(row))
    }

    /// Issues an API token for a principal of the caller's tenant (ADMIN). The token is in the
    /// answer once; only its digest is kept.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        principal_id: ID,
        name: String,
        #[graphql(desc = "Lifetime in seconds (at most a year); absent means no expiry.")] expires_in_seconds: Option<
            i64,
        >,
    ) -> async_graphql::Result<NewApiToken> {
        let admin = super::principal(ctx)?;
        let (token, row) = data::<PrincipalService>(ctx)?
            .issue_token(&admin.tenant, &principal_id, &name, expires_in_seconds)
            .await
            .map_err(ApiError::from)?;
        Ok(NewApiToken { token: token.expose_secret().to_owned(), api_token: ApiToken(row) })
    }

    /// Revokes an API token of the caller's tenant (ADMIN).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiToken> {
        let admin = super::principal(ctx)?;
        let row = data::<PrincipalService>(ctx)?.revoke_token(&admin.tenant, &id).await.map_err(ApiError::from)?;
        Ok(ApiToken(row))
    }
}
