//! The audit trail: every mutating action is recorded before it runs (so an action that cannot
//! be recorded is refused) and completed after it, joining a hash chain that `kubegql audit
//! verify` checks. Records also go to tracing under the `audit` target. Secrets in arguments are
//! masked before they are stored or logged.

use std::time::Instant;

use serde_json::Value;

use crate::access::Caller;
use crate::store::audit::AuditRow;
use crate::store::{Database, StoreError, now};

/// Argument names whose values are never recorded.
const SECRET_KEYS: &[&str] = &[
    "bearertoken",
    "token",
    "cadata",
    "clientcertificate",
    "clientkey",
    "kubeconfig",
    "password",
    "secret",
    "masterkey",
];

pub const MASK: &str = "***";

/// Replaces the values of secret-named keys (at any depth) with `***`. Kubernetes `Secret`
/// objects in manifests have their `data` and `stringData` masked too.
pub fn mask_arguments(value: Value) -> Value {
    match value {
        Value::Object(mut map) => {
            // A manifest may carry Secrets; the record keeps what it named and its digest.
            if let Some(Value::String(text)) = map.get("manifest") {
                let summary = manifest_summary(text);
                map.insert("manifest".into(), summary);
            }
            let is_secret_object = map.get("kind").and_then(Value::as_str) == Some("Secret");
            Value::Object(
                map.into_iter()
                    .map(|(key, value)| {
                        let lower = key.to_ascii_lowercase();
                        let secret = SECRET_KEYS.contains(&lower.as_str())
                            || (is_secret_object && (key == "data" || key == "stringData"));
                        if secret && !value.is_null() {
                            (key, Value::String(MASK.into()))
                        } else {
                            (key, mask_arguments(value))
                        }
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(mask_arguments).collect()),
        other => other,
    }
}

fn manifest_summary(text: &str) -> Value {
    let digest = crate::digest::sha256_hex(text.as_bytes());
    let objects: Vec<String> = crate::resources::write::parse_manifest(text)
        .map(|docs| {
            docs.iter()
                .map(|d| match d.namespace() {
                    Some(ns) => format!("{}/{}/{}", d.kind(), ns, d.name()),
                    None => format!("{}/{}", d.kind(), d.name()),
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({ "sha256": digest, "bytes": text.len(), "objects": objects })
}

/// What is known of an action before it runs.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    pub operation: Option<String>,
    pub field: String,
    pub cluster_id: Option<String>,
    pub verb: Option<String>,
    pub api_group: Option<String>,
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub dry_run: bool,
    /// The arguments; masked by `begin`.
    pub arguments: Value,
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum AuditOutcome {
    Success,
    Error,
    /// Refused by authentication or authorization.
    Denied,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "SUCCESS",
            AuditOutcome::Error => "ERROR",
            AuditOutcome::Denied => "DENIED",
        }
    }

    /// The outcome of an action that failed with this error code.
    pub fn of_error_code(code: Option<&str>) -> AuditOutcome {
        match code {
            Some("FORBIDDEN" | "UNAUTHENTICATED") => AuditOutcome::Denied,
            _ => AuditOutcome::Error,
        }
    }
}

/// An action that has been recorded as started.
#[derive(Debug)]
pub struct PendingAction {
    id: String,
    started: Instant,
}

#[derive(Clone, Debug)]
pub struct AuditRecorder {
    db: Database,
    // SQLite has one writer; serialising completions in process keeps chain appends from
    // failing on a busy database. PostgreSQL serialises them with an advisory lock.
    chain: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl AuditRecorder {
    pub fn new(db: Database) -> Self {
        Self { db, chain: Default::default() }
    }

    /// Records that `caller` is starting an action. An error here means the action must not run.
    pub async fn begin(&self, caller: Option<&Caller>, entry: AuditEntry) -> Result<PendingAction, StoreError> {
        let principal = caller.map(|c| &c.principal);
        let row = AuditRow {
            id: uuid::Uuid::new_v4().to_string(),
            seq: None,
            started_at: now(),
            request_id: caller.map(|c| c.request_id.clone()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            principal_id: principal.map(|p| p.id.clone()),
            principal_name: principal.map(|p| p.name.clone()),
            tenant: principal.map(|p| p.tenant.clone()),
            impersonated: caller.and_then(|c| c.impersonation.as_ref()).map(|i| i.canonical()),
            cluster_id: entry.cluster_id,
            operation: entry.operation,
            field: entry.field,
            verb: entry.verb,
            api_group: entry.api_group,
            api_version: entry.api_version,
            kind: entry.kind,
            namespace: entry.namespace,
            name: entry.name,
            dry_run: entry.dry_run,
            outcome: "PENDING".into(),
            error_code: None,
            duration_ms: None,
            arguments: mask_arguments(entry.arguments).to_string(),
            prev_hash: None,
            hash: None,
        };
        self.db.insert_audit(&row).await?;
        Ok(PendingAction { id: row.id, started: Instant::now() })
    }

    /// Completes the record of an action and logs it under the `audit` target.
    pub async fn finish(
        &self,
        action: PendingAction,
        outcome: AuditOutcome,
        error_code: Option<&str>,
    ) -> Result<AuditRow, StoreError> {
        let duration_ms = action.started.elapsed().as_millis() as i64;
        let _serial = self.chain.lock().await;
        let row = self.db.complete_audit(&action.id, outcome.as_str(), error_code, duration_ms).await?;
        tracing::info!(
            target: "audit",
            seq = row.seq,
            request_id = %row.request_id,
            principal = row.principal_name.as_deref().unwrap_or("-"),
            tenant = row.tenant.as_deref().unwrap_or("-"),
            impersonated = row.impersonated.as_deref().unwrap_or("-"),
            cluster = row.cluster_id.as_deref().unwrap_or("-"),
            field = %row.field,
            verb = row.verb.as_deref().unwrap_or("-"),
            kind = row.kind.as_deref().unwrap_or("-"),
            namespace = row.namespace.as_deref().unwrap_or("-"),
            name = row.name.as_deref().unwrap_or("-"),
            dry_run = row.dry_run,
            outcome = %row.outcome,
            error_code = row.error_code.as_deref().unwrap_or("-"),
            duration_ms = duration_ms,
            arguments = %row.arguments,
            "audit"
        );
        Ok(row)
    }
}

/// What `verify` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChainReport {
    /// Completed records checked.
    pub checked: u64,
    /// The first break in the chain, if any.
    pub broken: Option<String>,
    /// Records started but never completed (the process died during the action, or the
    /// completion could not be written).
    pub unfinished: u64,
}

/// Walks the chain from the first record: sequence numbers without gaps, each record's
/// `prev_hash` equal to the hash before it, each hash recomputed.
pub async fn verify_chain(db: &Database) -> Result<ChainReport, StoreError> {
    let mut report = ChainReport { unfinished: db.audit_pending().await?.len() as u64, ..Default::default() };
    let mut last_seq = 0i64;
    let mut last_hash: Option<String> = None;
    loop {
        let rows = db.audit_chain(last_seq, 1000).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let seq = row.seq.unwrap_or_default();
            let problem = if seq != last_seq + 1 {
                Some(format!("record {} is missing (next found is {seq})", last_seq + 1))
            } else if row.prev_hash != last_hash {
                Some(format!("record {seq} does not follow record {last_seq} (previous hash differs)"))
            } else if row.hash.as_deref() != Some(row.expected_hash().as_str()) {
                Some(format!("record {seq} was altered (its hash does not match its contents)"))
            } else {
                None
            };
            if let Some(problem) = problem {
                report.broken = Some(problem);
                return Ok(report);
            }
            report.checked += 1;
            last_seq = seq;
            last_hash = row.hash;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_at_any_depth() {
        let args = json!({
            "input": { "name": "prod", "bearerToken": "T0K3N", "caData": "PEM", "clientKey": null,
                       "nested": [{ "password": "pw" }] },
            "manifest": { "kind": "Secret", "data": { "k": "c2VjcmV0" }, "stringData": { "k": "v" } },
            "Token": "x"
        });
        let masked = mask_arguments(args);
        let text = masked.to_string();
        for secret in ["T0K3N", "PEM", "pw", "c2VjcmV0", "\"v\"", "\"x\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(masked["input"]["name"], "prod");
        assert_eq!(masked["input"]["clientKey"], Value::Null, "absent values stay absent");
        assert_eq!(masked["input"]["bearerToken"], MASK);
    }

    #[test]
    fn manifests_are_summarised_not_stored() {
        let manifest =
            "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: ns}\nstringData: {password: hunter2}\n";
        let masked = mask_arguments(json!({ "manifest": manifest }));
        assert!(!masked.to_string().contains("hunter2"));
        assert_eq!(masked["manifest"]["objects"], json!(["Secret/ns/creds"]));
        assert_eq!(masked["manifest"]["bytes"], manifest.len());
    }

    #[test]
    fn outcomes_of_errors() {
        assert_eq!(AuditOutcome::of_error_code(Some("FORBIDDEN")), AuditOutcome::Denied);
        assert_eq!(AuditOutcome::of_error_code(Some("UNAUTHENTICATED")), AuditOutcome::Denied);
        assert_eq!(AuditOutcome::of_error_code(Some("NOT_FOUND")), AuditOutcome::Error);
        assert_eq!(AuditOutcome::of_error_code(None), AuditOutcome::Error);
    }
}
