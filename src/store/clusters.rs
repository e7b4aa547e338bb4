//! Rows of the `clusters` table. Secret columns are envelopes; this module never sees plaintext.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::clusters;
use super::{Database, StoreError, is_unique_violation, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = clusters, treat_none_as_null = true)]
pub struct ClusterRow {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub mode: String,
    pub kubeconfig_path: Option<String>,
    pub kubeconfig_context: Option<String>,
    pub kubeconfig_sealed: Option<Vec<u8>>,
    pub api_server_url: Option<String>,
    pub bearer_token_sealed: Option<Vec<u8>>,
    pub ca_data_sealed: Option<Vec<u8>>,
    pub ca_fingerprint_sha256: Option<String>,
    pub client_certificate_sealed: Option<Vec<u8>>,
    pub client_key_sealed: Option<Vec<u8>>,
    pub tls_server_name: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub default_namespace: Option<String>,
    pub impersonate_caller: bool,
    pub labels: String,
    pub key_id: String,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
}

fn name_conflict(err: diesel::result::Error, name: &str) -> StoreError {
    if is_unique_violation(&err) {
        StoreError::Conflict(format!("a cluster named {name:?} already exists"))
    } else {
        StoreError::Query(err)
    }
}

impl Database {
    pub async fn insert_cluster(&self, row: &ClusterRow) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::insert_into(clusters::table)
                .values(row)
                .execute(conn)
                .await
                .map_err(|e| name_conflict(e, &row.name))?;
        });
        Ok(())
    }

    pub async fn cluster(&self, id: &str) -> Result<Option<ClusterRow>, StoreError> {
        with_conn!(self, |conn| {
            clusters::table
                .find(id)
                .select(ClusterRow::as_select())
                .first(conn)
                .await
                .optional()
                .map_err(StoreError::from)
        })
    }

    /// One page of a tenant's clusters ordered by name, starting after `after_name` (keyset, no
    /// OFFSET).
    pub async fn clusters_page(
        &self,
        tenant: &str,
        after_name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ClusterRow>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = clusters::table
                .filter(clusters::tenant.eq(tenant.to_owned()))
                .select(ClusterRow::as_select())
                .order(clusters::name.asc())
                .limit(limit)
                .into_boxed();
            if let Some(after) = after_name {
                query = query.filter(clusters::name.gt(after.to_owned()));
            }
            query.load(conn).await.map_err(StoreError::from)
        })
    }

    pub async fn all_clusters(&self) -> Result<Vec<ClusterRow>, StoreError> {
        with_conn!(self, |conn| {
            clusters::table
                .select(ClusterRow::as_select())
                .order(clusters::name.asc())
                .load(conn)
                .await
                .map_err(StoreError::from)
        })
    }

    pub async fn count_clusters(&self) -> Result<i64, StoreError> {
        with_conn!(self, |conn| clusters::table.count().get_result(conn).await.map_err(StoreError::from))
    }

    /// Replaces every column of the row with this id; false when no such row exists.
    pub async fn update_cluster(&self, row: &ClusterRow) -> Result<bool, StoreError> {
        let changed = with_conn!(self, |conn| {
            diesel::update(clusters::table.find(&row.id))
                .set(row)
                .execute(conn)
                .await
                .map_err(|e| name_conflict(e, &row.name))?
        });
        Ok(changed == 1)
    }

    pub async fn delete_cluster(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = with_conn!(self, |conn| diesel::delete(clusters::table.find(id)).execute(conn).await?);
        Ok(deleted == 1)
    }
}
