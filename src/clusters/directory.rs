//! `ClusterDirectory`: every cluster record, held in memory so that a request for a known
//! cluster does no database read. Loaded in bulk at start-up, refreshed on an interval (the
//! backstop for changes made by other replicas), and kept current by this process's own writes.

use std::sync::Arc;

use dashmap::DashMap;

use crate::store::clusters::ClusterRow;
use crate::store::{Database, StoreError};

#[derive(Debug)]
pub struct ClusterDirectory {
    rows: DashMap<String, Arc<ClusterRow>>,
    db: Database,
}

impl ClusterDirectory {
    pub fn new(db: Database) -> Self {
        Self { rows: DashMap::new(), db }
    }

    /// Replaces the contents with what the database holds now.
    pub async fn refresh(&self) -> Result<usize, StoreError> {
        let all = self.db.all_clusters().await?;
        let ids: std::collections::HashSet<&str> = all.iter().map(|r| r.id.as_str()).collect();
        self.rows.retain(|id, _| ids.contains(id.as_str()));
        let count = all.len();
        for row in all {
            self.put_if_newer(row);
        }
        Ok(count)
    }

    /// The record, from memory when known, else from the database (and then remembered).
    pub async fn get(&self, id: &str) -> Result<Option<Arc<ClusterRow>>, StoreError> {
        if let Some(row) = self.rows.get(id) {
            return Ok(Some(Arc::clone(&row)));
        }
        Ok(self.db.cluster(id).await?.map(|row| self.put_if_newer(row)))
    }

    /// Records a row unless a newer version of it is already held (a refresh that read before
    /// this process's own update must not undo it).
    pub fn put_if_newer(&self, row: ClusterRow) -> Arc<ClusterRow> {
        let mut entry = self.rows.entry(row.id.clone()).or_insert_with(|| Arc::new(row.clone()));
        if entry.updated_at <= row.updated_at {
            *entry = Arc::new(row);
        }
        Arc::clone(&entry)
    }

    /// Reads one record again (after another replica changed it); returns whether it exists.
    pub async fn reload(&self, id: &str) -> Result<bool, StoreError> {
        match self.db.cluster(id).await? {
            Some(row) => {
                self.put_if_newer(row);
                Ok(true)
            }
            None => {
                self.remove(id);
                Ok(false)
            }
        }
    }

    /// A page of `tenant`'s clusters by name, as the database would give it, from memory.
    pub fn page(&self, tenant: &str, after_name: Option<&str>, limit: usize) -> Vec<ClusterRow> {
        let mut rows: Vec<ClusterRow> = self
            .rows
            .iter()
            .filter(|row| row.tenant == tenant && after_name.is_none_or(|after| row.name.as_str() > after))
            .map(|row| ClusterRow::clone(&row))
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows.truncate(limit);
        rows
    }

    pub fn remove(&self, id: &str) {
        self.rows.remove(id);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
