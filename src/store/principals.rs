//! Principals (who calls the API) and their hashed API tokens.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{api_tokens, principals};
use super::{Database, StoreError, is_unique_violation, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = principals)]
pub struct PrincipalRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub role: String,
    pub tenant: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct ApiTokenRow {
    pub id: String,
    pub principal_id: String,
    pub name: String,
    pub token_sha256: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

impl Database {
    pub async fn count_api_tokens(&self) -> Result<i64, StoreError> {
        with_conn!(self, |conn| {
            api_tokens::table.count().get_result(conn).await.map_err(StoreError::from)
        })
    }

    /// Creates a principal and its first token in one transaction.
    pub async fn insert_principal_with_token(
        &self,
        principal: &PrincipalRow,
        token: &ApiTokenRow,
    ) -> Result<(), StoreError> {
        let principal = principal.clone();
        let token = token.clone();
        with_conn!(self, |conn| {
            conn.transaction(async |conn| {
                diesel::insert_into(principals::table).values(&principal).execute(conn).await?;
                diesel::insert_into(api_tokens::table).values(&token).execute(conn).await?;
                Ok::<_, diesel::result::Error>(())
            })
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("principal {:?} already exists", principal.name))
                } else {
                    StoreError::Query(e)
                }
            })
        })
    }

    /// The principal owning a live (not revoked, not expired) token with this digest.
    pub async fn principal_by_token(
        &self,
        token_sha256: &str,
        now: NaiveDateTime,
    ) -> Result<Option<(PrincipalRow, String)>, StoreError> {
        with_conn!(self, |conn| {
            api_tokens::table
                .inner_join(principals::table)
                .filter(api_tokens::token_sha256.eq(token_sha256))
                .filter(api_tokens::revoked_at.is_null())
                .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now)))
                .select((PrincipalRow::as_select(), api_tokens::id))
                .first(conn)
                .await
                .optional()
                .map_err(StoreError::from)
        })
    }
}
