//! Rows of `audit_events`, and the hash chain that links them.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::audit_events;
use super::{Database, Pools, StoreError, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: String,
    pub seq: Option<i64>,
    pub started_at: NaiveDateTime,
    pub request_id: String,
    pub principal_id: Option<String>,
    pub principal_name: Option<String>,
    pub tenant: Option<String>,
    pub impersonated: Option<String>,
    pub cluster_id: Option<String>,
    pub operation: Option<String>,
    pub field: String,
    pub verb: Option<String>,
    pub api_group: Option<String>,
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub dry_run: bool,
    pub outcome: String,
    pub error_code: Option<String>,
    pub duration_ms: Option<i64>,
    pub arguments: String,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

impl AuditRow {
    /// The hash an unkeyed completed row must carry: SHA-256 over its canonical form.
    pub fn expected_hash(&self) -> String {
        crate::digest::sha256_hex(self.canonical().as_bytes())
    }

    /// Every field but the hash itself, the previous row's hash included, as one JSON text.
    pub fn canonical(&self) -> String {
        serde_json::json!([
            self.id,
            self.seq,
            self.started_at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            self.request_id,
            self.principal_id,
            self.principal_name,
            self.tenant,
            self.impersonated,
            self.cluster_id,
            self.operation,
            self.field,
            self.verb,
            self.api_group,
            self.api_version,
            self.kind,
            self.namespace,
            self.name,
            self.dry_run,
            self.outcome,
            self.error_code,
            self.duration_ms,
            self.arguments,
            self.prev_hash,
        ])
        .to_string()
    }
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant: Option<String>,
    pub principal_id: Option<String>,
    pub cluster_id: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
}

/// The advisory lock key that serialises chain appends across replicas on PostgreSQL.
const CHAIN_LOCK: i64 = 0x6b75_6265_6771_6c01;

impl Database {
    pub async fn insert_audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::insert_into(audit_events::table).values(row).execute(conn).await?;
        });
        Ok(())
    }

    /// Completes a PENDING row and appends it to the chain: next seq, previous hash, own hash
    /// (`seal` computes it). On PostgreSQL a transaction-scoped advisory lock keeps replicas from
    /// forking the chain; on SQLite the transaction is IMMEDIATE, so that it holds the write lock
    /// before it reads the chain's end (a deferred one would fail, not wait, when another writer
    /// got in between its read and its write).
    pub async fn complete_audit(
        &self,
        id: &str,
        outcome: &str,
        error_code: Option<&str>,
        duration_ms: i64,
        seal: &(dyn Fn(&AuditRow) -> String + Sync),
    ) -> Result<AuditRow, StoreError> {
        self.count_query();
        macro_rules! append {
            ($conn:ident) => {{
                let last: Option<(Option<i64>, Option<String>)> = audit_events::table
                    .filter(audit_events::seq.is_not_null())
                    .order(audit_events::seq.desc())
                    .select((audit_events::seq, audit_events::hash))
                    .first($conn)
                    .await
                    .optional()?;
                let (last_seq, last_hash) = last.map(|(s, h)| (s.unwrap_or(0), h)).unwrap_or((0, None));
                let mut row: AuditRow = audit_events::table.find(id).select(AuditRow::as_select()).first($conn).await?;
                row.seq = Some(last_seq + 1);
                row.prev_hash = last_hash;
                row.outcome = outcome.to_owned();
                row.error_code = error_code.map(str::to_owned);
                row.duration_ms = Some(duration_ms);
                row.hash = Some(seal(&row));
                diesel::update(audit_events::table.find(id))
                    .set((
                        audit_events::seq.eq(row.seq),
                        audit_events::prev_hash.eq(&row.prev_hash),
                        audit_events::outcome.eq(&row.outcome),
                        audit_events::error_code.eq(&row.error_code),
                        audit_events::duration_ms.eq(row.duration_ms),
                        audit_events::hash.eq(&row.hash),
                    ))
                    .execute($conn)
                    .await?;
                Ok::<_, diesel::result::Error>(row)
            }};
        }
        match &self.pools {
            Pools::Sqlite(pool) => {
                let mut conn = self.checkout(pool.get()).await?;
                conn.immediate_transaction(async |conn| append!(conn)).await.map_err(StoreError::from)
            }
            Pools::Postgres(pool) => {
                let mut conn = self.checkout(pool.get()).await?;
                conn.transaction(async |conn| {
                    diesel::sql_query(format!("SELECT pg_advisory_xact_lock({CHAIN_LOCK})")).execute(conn).await?;
                    append!(conn)
                })
                .await
                .map_err(StoreError::from)
            }
        }
    }

    /// Completed records, newest first, before `before_seq` (keyset).
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = audit_events::table
                .filter(audit_events::seq.is_not_null())
                .select(AuditRow::as_select())
                .order(audit_events::seq.desc())
                .limit(limit)
                .into_boxed();
            if let Some(seq) = before_seq {
                query = query.filter(audit_events::seq.lt(seq));
            }
            if let Some(tenant) = &filter.tenant {
                query = query.filter(audit_events::tenant.eq(tenant.clone()));
            }
            if let Some(principal) = &filter.principal_id {
                query = query.filter(audit_events::principal_id.eq(principal.clone()));
            }
            if let Some(cluster) = &filter.cluster_id {
                query = query.filter(audit_events::cluster_id.eq(cluster.clone()));
            }
            if let Some(outcome) = &filter.outcome {
                query = query.filter(audit_events::outcome.eq(outcome.clone()));
            }
            if let Some(since) = filter.since {
                query = query.filter(audit_events::started_at.ge(since));
            }
            if let Some(until) = filter.until {
                query = query.filter(audit_events::started_at.lt(until));
            }
            query.load(conn).await.map_err(StoreError::from)
        })
    }

    /// The chain in order, after `after_seq` (for verification).
    pub async fn audit_chain(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        with_conn!(self, |conn| {
            audit_events::table
                .filter(audit_events::seq.gt(after_seq))
                .select(AuditRow::as_select())
                .order(audit_events::seq.asc())
                .limit(limit)
                .load(conn)
                .await
                .map_err(StoreError::from)
        })
    }

    /// Records still PENDING (an action whose completion was never written).
    pub async fn audit_pending(&self) -> Result<Vec<AuditRow>, StoreError> {
        with_conn!(self, |conn| {
            audit_events::table
                .filter(audit_events::seq.is_null())
                .select(AuditRow::as_select())
                .order(audit_events::started_at.asc())
                .load(conn)
                .await
                .map_err(StoreError::from)
        })
    }

    pub async fn count_audit(&self) -> Result<i64, StoreError> {
        with_conn!(self, |conn| audit_events::table.count().get_result(conn).await.map_err(StoreError::from))
    }
}
