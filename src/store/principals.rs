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
        with_conn!(self, |conn| api_tokens::table.count().get_result(conn).await.map_err(StoreError::from))
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
                    StoreError::Conflict(format!(
                        "principal {:?} already exists in tenant {:?}",
                        principal.name, principal.tenant
                    ))
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
    ) -> Result<Option<(PrincipalRow, String, Option<NaiveDateTime>)>, StoreError> {
        with_conn!(self, |conn| {
            api_tokens::table
                .inner_join(principals::table)
                .filter(api_tokens::token_sha256.eq(token_sha256))
                .filter(api_tokens::revoked_at.is_null())
                .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now)))
                .select((PrincipalRow::as_select(), api_tokens::id, api_tokens::expires_at))
                .first(conn)
                .await
                .optional()
                .map_err(StoreError::from)
        })
    }
}

impl Database {
    pub async fn insert_principal(&self, principal: &PrincipalRow) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::insert_into(principals::table).values(principal).execute(conn).await.map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!(
                        "a principal named {:?} already exists in this tenant",
                        principal.name
                    ))
                } else {
                    StoreError::Query(e)
                }
            })?;
        });
        Ok(())
    }

    pub async fn principal(&self, id: &str) -> Result<Option<PrincipalRow>, StoreError> {
        with_conn!(self, |conn| {
            principals::table
                .find(id)
                .select(PrincipalRow::as_select())
                .first(conn)
                .await
                .optional()
                .map_err(StoreError::from)
        })
    }

    /// A page of a tenant's principals by name (keyset).
    pub async fn principals_page(
        &self,
        tenant: &str,
        after_name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PrincipalRow>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = principals::table
                .filter(principals::tenant.eq(tenant.to_owned()))
                .select(PrincipalRow::as_select())
                .order(principals::name.asc())
                .limit(limit)
                .into_boxed();
            if let Some(after) = after_name {
                query = query.filter(principals::name.gt(after.to_owned()));
            }
            query.load(conn).await.map_err(StoreError::from)
        })
    }

    pub async fn insert_api_token(&self, token: &ApiTokenRow) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::insert_into(api_tokens::table).values(token).execute(conn).await?;
        });
        Ok(())
    }

    pub async fn api_token(&self, id: &str) -> Result<Option<ApiTokenRow>, StoreError> {
        with_conn!(self, |conn| {
            api_tokens::table
                .find(id)
                .select(ApiTokenRow::as_select())
                .first(conn)
                .await
                .optional()
                .map_err(StoreError::from)
        })
    }

    /// A page of one principal's tokens by id (keyset).
    pub async fn api_tokens_page(
        &self,
        principal_id: &str,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApiTokenRow>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = api_tokens::table
                .filter(api_tokens::principal_id.eq(principal_id.to_owned()))
                .select(ApiTokenRow::as_select())
                .order(api_tokens::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(after) = after_id {
                query = query.filter(api_tokens::id.gt(after.to_owned()));
            }
            query.load(conn).await.map_err(StoreError::from)
        })
    }

    /// Marks a token revoked (once); false when it was revoked already or does not exist.
    pub async fn revoke_api_token(&self, id: &str, at: NaiveDateTime) -> Result<bool, StoreError> {
        let changed = with_conn!(self, |conn| {
            diesel::update(api_tokens::table.find(id).filter(api_tokens::revoked_at.is_null()))
                .set(api_tokens::revoked_at.eq(Some(at)))
                .execute(conn)
                .await?
        });
        Ok(changed == 1)
    }
}
