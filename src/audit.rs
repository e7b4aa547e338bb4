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

/// True for a kind argument that names Secrets, in any spelling the API accepts or nearly does
/// (`Secret`, `secrets`, `SECRET`): the body of a change to one is never recorded.
/// What a caller is told when an action is refused because its audit record could not be
/// written (every mutation is recorded before it runs, so none runs unrecorded).
pub fn refusal(cause: Option<&StoreError>) -> (&'static str, crate::error::ErrorCode) {
    match cause {
        Some(err) if err.is_unavailable() => (
            "the action was refused: kubegql's database is unavailable, so its audit record cannot be written \
             (reads of known clusters and their resources go on)",
            crate::error::ErrorCode::StoreUnavailable,
        ),
        _ => ("the action was refused: its audit record could not be written", crate::error::ErrorCode::Internal),
    }
}

pub fn is_secret_kind(kind: &str) -> bool {
    kind.eq_ignore_ascii_case("secret") || kind.eq_ignore_ascii_case("secrets")
}

/// A change to a Secret, recorded as where it writes and never what: the paths a merge or
/// strategic patch sets, the operations and paths of a JSON patch.
fn body_paths(body: &Value) -> Value {
    fn leaves(value: &Value, path: &mut String, out: &mut Vec<Value>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, v) in map {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    leaves(v, path, out);
                    path.truncate(len);
                }
            }
            _ => out.push(Value::String(if path.is_empty() { "/".into() } else { path.clone() })),
        }
    }
    let paths = match body {
        Value::Array(ops) => ops
            .iter()
            .map(|op| {
                let mut kept = serde_json::Map::new();
                for key in ["op", "path", "from"] {
                    if let Some(Value::String(v)) = op.get(key) {
                        kept.insert(key.into(), Value::String(v.clone()));
                    }
                }
                Value::Object(kept)
            })
            .collect(),
        other => {
            let mut out = Vec::new();
            leaves(other, &mut String::new(), &mut out);
            out
        }
    };
    serde_json::json!({ "masked": "the target is a Secret: only the paths are recorded", "paths": paths })
}

/// The arguments as recorded: [`mask_arguments`], and for a change to a Secret (by its kind
/// argument) its body as paths only.
pub fn recorded_arguments(kind: Option<&str>, arguments: Value) -> Value {
    let mut masked = mask_arguments(arguments);
    if kind.is_some_and(is_secret_kind)
        && let Value::Object(map) = &mut masked
    {
        for key in ["patch", "object", "body"] {
            if let Some(body) = map.get_mut(key)
                && !body.is_null()
            {
                *body = body_paths(body);
            }
        }
    }
    masked
}

/// A manifest that reached the record as text (its parsed summary is normally put in its place
/// before): only its digest and size are kept.
fn manifest_summary(text: &str) -> Value {
    serde_json::json!({ "sha256": crate::digest::sha256_hex(text.as_bytes()), "bytes": text.len() })
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

/// Who acts.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// An API caller.
    Caller(&'a Caller),
    /// The operator, through the command line.
    Operator,
    /// Nobody authenticated (a request refused before authentication).
    Anonymous,
}

/// The name the trail gives the operator's own actions.
pub const OPERATOR: &str = "operator (command line)";

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum AuditOutcome {
    Success,
    Error,
    /// Refused by authentication or authorization.
    Denied,
    /// The request went away (its client disconnected) before the action finished: the action
    /// may or may not have reached the cluster.
    Abandoned,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "SUCCESS",
            AuditOutcome::Error => "ERROR",
            AuditOutcome::Denied => "DENIED",
            AuditOutcome::Abandoned => "ABANDONED",
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

/// The operator's key for a keyed chain: each record's hash is then an HMAC-SHA256 under it, so
/// that someone who can write the database but does not hold the key cannot rewrite history
/// without `audit verify` (given the key) noticing.
#[derive(Clone)]
pub struct ChainKey(std::sync::Arc<orion::hazardous::mac::hmac::sha256::SecretKey>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(***)")
    }
}

/// The prefix of a keyed record's hash.
pub const KEYED: &str = "hmac-sha256:";

impl ChainKey {
    /// A key of at least 32 bytes, given as base64 (surrounding white space ignored).
    pub fn from_base64(text: &str) -> Result<ChainKey, String> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| "the audit key is not base64".to_owned())?;
        if bytes.len() < 32 {
            return Err(format!("the audit key has {} bytes; it needs at least 32", bytes.len()));
        }
        let key = orion::hazardous::mac::hmac::sha256::SecretKey::from_slice(&bytes)
            .map_err(|_| "the audit key cannot be used".to_owned())?;
        Ok(ChainKey(std::sync::Arc::new(key)))
    }

    /// Reads the key from the operator's file.
    pub fn from_file(path: &std::path::Path) -> Result<ChainKey, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("the audit key file cannot be read: {e}"))?;
        ChainKey::from_base64(&text)
    }

    fn seal(&self, row: &AuditRow) -> String {
        let tag = orion::hazardous::mac::hmac::sha256::HmacSha256::hmac(&self.0, row.canonical().as_bytes())
            .expect("HMAC over any input with a valid key");
        format!("{KEYED}{}", crate::digest::hex(tag.unprotected_as_bytes()))
    }
}

/// How the audit trail is kept.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AuditSettings {
    /// File holding a key (base64 of at least 32 bytes) that keys the audit chain: each record's
    /// hash becomes an HMAC-SHA256 under it, so that whoever can write the database but lacks the
    /// key cannot rewrite history undetected. Keep it apart from the database; `audit verify`
    /// needs it too.
    #[arg(long, env = "KUBEGQL_AUDIT_KEY_FILE")]
    pub audit_key_file: Option<std::path::PathBuf>,
}

impl AuditSettings {
    /// The key, when one is configured.
    pub fn key(&self) -> Result<Option<ChainKey>, String> {
        self.audit_key_file.as_deref().map(ChainKey::from_file).transpose()
    }
}

/// The hash a completed record carries: plain SHA-256, or an HMAC under the operator's key.
pub fn record_hash(row: &AuditRow, key: Option<&ChainKey>) -> String {
    match key {
        Some(key) => key.seal(row),
        None => row.expected_hash(),
    }
}

/// An action recorded as started. Finish it with its outcome; dropped unfinished (its request
/// went away), its record is completed as `ABANDONED` by the task that wrote it.
#[derive(Debug)]
pub struct PendingAction {
    outcome: tokio::sync::oneshot::Sender<(AuditOutcome, Option<String>)>,
    done: tokio::sync::oneshot::Receiver<Result<AuditRow, StoreError>>,
}

impl PendingAction {
    /// Completes the record with the action's outcome, and waits until it is written.
    pub async fn finish(self, outcome: AuditOutcome, error_code: Option<&str>) -> Result<AuditRow, StoreError> {
        if self.outcome.send((outcome, error_code.map(str::to_owned))).is_err() {
            return Err(StoreError::Pool("the audit writer stopped".into()));
        }
        self.done.await.unwrap_or_else(|_| Err(StoreError::Pool("the audit writer stopped".into())))
    }
}

#[derive(Clone, Debug)]
pub struct AuditRecorder {
    db: Database,
    key: Option<ChainKey>,
    // Completions are serialised in process, so that this process's appends queue here rather
    // than in the database; the database serialises them across processes (an immediate
    // transaction on SQLite, an advisory lock on PostgreSQL).
    chain: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// How often, and how patiently, a completion is retried when the database refuses it.
const COMPLETE_ATTEMPTS: u32 = 8;

impl AuditRecorder {
    pub fn new(db: Database, key: Option<ChainKey>) -> Self {
        Self { db, key, chain: Default::default() }
    }

    /// Records that `actor` is starting an action. An error here means the action must not run.
    ///
    /// The record is written, and later completed, by a task of its own that outlives the
    /// request: a request dropped at any point (its client went away) leaves no record pending.
    pub async fn begin(&self, actor: Actor<'_>, entry: AuditEntry) -> Result<PendingAction, StoreError> {
        let (principal_id, principal_name, tenant, request_id, impersonated) = match actor {
            Actor::Caller(c) => (
                Some(c.principal.id.clone()),
                Some(c.principal.name.clone()),
                Some(c.principal.tenant.clone()),
                c.request_id.clone(),
                c.impersonation.as_ref().map(|i| i.canonical()),
            ),
            Actor::Operator => (None, Some(OPERATOR.to_owned()), None, uuid::Uuid::new_v4().to_string(), None),
            Actor::Anonymous => (None, None, None, uuid::Uuid::new_v4().to_string(), None),
        };
        let arguments = recorded_arguments(entry.kind.as_deref(), entry.arguments).to_string();
        let row = AuditRow {
            id: uuid::Uuid::new_v4().to_string(),
            seq: None,
            started_at: now(),
            request_id,
            principal_id,
            principal_name,
            tenant,
            impersonated,
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
            arguments,
            prev_hash: None,
            hash: None,
        };
        let (begun_tx, begun) = tokio::sync::oneshot::channel();
        let (outcome_tx, outcome) = tokio::sync::oneshot::channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let recorder = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let id = row.id.clone();
            let inserted = recorder.db.insert_audit(&row).await;
            let written = inserted.is_ok();
            let _ = begun_tx.send(inserted);
            if !written {
                return;
            }
            // The sender is dropped with the request when it goes away before finishing.
            let (outcome, code) = outcome.await.unwrap_or((AuditOutcome::Abandoned, None));
            let completed = recorder.complete(&id, outcome, code.as_deref(), started).await;
            if let Err(err) = &completed {
                // The action ran; its record stays PENDING, which `audit verify` reports.
                tracing::error!(error = %err, record = %id, "audit record could not be completed");
            }
            let _ = done_tx.send(completed);
        });
        match begun.await {
            Ok(Ok(())) => Ok(PendingAction { outcome: outcome_tx, done }),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(StoreError::Pool("the audit writer stopped".into())),
        }
    }

    /// Completes a record, retrying while the database is busy, and logs it under `audit`.
    async fn complete(
        &self,
        id: &str,
        outcome: AuditOutcome,
        error_code: Option<&str>,
        started: Instant,
    ) -> Result<AuditRow, StoreError> {
        let duration_ms = started.elapsed().as_millis() as i64;
        let seal = |row: &AuditRow| record_hash(row, self.key.as_ref());
        let mut attempt = 0;
        let row = loop {
            let result = {
                let _serial = self.chain.lock().await;
                self.db.complete_audit(id, outcome.as_str(), error_code, duration_ms, &seal).await
            };
            match result {
                Ok(row) => break row,
                Err(err) if attempt + 1 < COMPLETE_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(error = %err, attempt, "audit completion failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt.min(5))).await;
                }
                Err(err) => return Err(err),
            }
        };
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

    /// Records an action of the operator's (a command-line write) around `action`.
    pub async fn operator_action<T, E: std::fmt::Display>(
        &self,
        entry: AuditEntry,
        action: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, anyhow::Error> {
        let pending = self.begin(Actor::Operator, entry).await?;
        let result = action.await;
        let outcome = if result.is_ok() { AuditOutcome::Success } else { AuditOutcome::Error };
        // The command line prints the reason; the record says that the action failed.
        let code = None;
        pending.finish(outcome, code).await?;
        result.map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// What `verify` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChainReport {
    /// Completed records checked.
    pub checked: u64,
    /// Of them, keyed (HMAC) records.
    pub keyed: u64,
    /// The first break in the chain, if any.
    pub broken: Option<String>,
    /// Records started but never completed (the process died during the action, or the
    /// completion could not be written).
    pub unfinished: u64,
}

/// Walks the chain from the first record: sequence numbers without gaps, each record's
/// `prev_hash` equal to the hash before it, each hash recomputed. With the operator's `key`,
/// every record after `unkeyed_until` must be keyed (a record rewritten as an unkeyed one is a
/// break); without it, a keyed record cannot be checked and is reported as such.
pub async fn verify_chain(
    db: &Database,
    key: Option<&ChainKey>,
    unkeyed_until: i64,
) -> Result<ChainReport, StoreError> {
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
            let keyed = row.hash.as_deref().is_some_and(|h| h.starts_with(KEYED));
            let expected = match (keyed, key) {
                (true, Some(key)) => Ok(key.seal(&row)),
                (true, None) => Err(format!("record {seq} is keyed: check the chain with the audit key")),
                (false, Some(_)) if seq > unkeyed_until => Err(format!(
                    "record {seq} is not keyed, but every record after {unkeyed_until} must be (it was rewritten, \
                     or it was written without the key)"
                )),
                (false, _) => Ok(row.expected_hash()),
            };
            let problem = if seq != last_seq + 1 {
                Some(format!("record {} is missing (next found is {seq})", last_seq + 1))
            } else if row.prev_hash != last_hash {
                Some(format!("record {seq} does not follow record {last_seq} (previous hash differs)"))
            } else {
                match expected {
                    Err(problem) => Some(problem),
                    Ok(hash) if row.hash.as_deref() != Some(hash.as_str()) => {
                        Some(format!("record {seq} was altered (its hash does not match its contents)"))
                    }
                    Ok(_) => None,
                }
            };
            if let Some(problem) = problem {
                report.broken = Some(problem);
                return Ok(report);
            }
            report.checked += 1;
            report.keyed += u64::from(keyed);
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
        assert_eq!(masked["manifest"]["bytes"], manifest.len());
        assert_eq!(masked["manifest"]["sha256"], crate::digest::sha256_hex(manifest.as_bytes()));
        // The parsed summary that the API layers put in its place names the objects.
        let parsed = crate::resources::write::Manifest::parse(manifest, 1 << 20).unwrap();
        let masked = mask_arguments(json!({ "manifest": parsed.summary() }));
        assert_eq!(masked["manifest"]["objects"], json!(["Secret/ns/creds"]));
    }

    #[test]
    fn outcomes_of_errors() {
        assert_eq!(AuditOutcome::of_error_code(Some("FORBIDDEN")), AuditOutcome::Denied);
        assert_eq!(AuditOutcome::of_error_code(Some("UNAUTHENTICATED")), AuditOutcome::Denied);
        assert_eq!(AuditOutcome::of_error_code(Some("NOT_FOUND")), AuditOutcome::Error);
        assert_eq!(AuditOutcome::of_error_code(None), AuditOutcome::Error);
    }
}
