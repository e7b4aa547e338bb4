//! Cluster configurations: validation, sealing of credentials, and the store round trip.
//!
//! `ClusterService` owns the rules for what a cluster record may hold. Plaintext credentials
//! exist only in `ClusterSpec` (as `SecretString`); rows hold envelopes. An update opens the
//! stored spec, applies the change, validates the whole result and seals it again under the
//! current key, so a record is never half-updated and rotation happens on write.

pub mod directory;
pub mod policy;
pub mod selector;

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use self::directory::ClusterDirectory;
use self::policy::{ConnectionPolicy, PolicyError};
use crate::crypto::{CipherError, CredentialCipher, SealContext};
use crate::store::clusters::ClusterRow;
use crate::store::notify::Change;
use crate::store::{Database, StoreError, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum ConnectionMode {
    /// A kubeconfig file on the server (path + context) or an inline kubeconfig stored sealed.
    Kubeconfig,
    /// API server URL with a bearer token or client certificate, and CA data.
    Direct,
    /// The service account of the pod kubegql runs in.
    InCluster,
}

impl ConnectionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionMode::Kubeconfig => "KUBECONFIG",
            ConnectionMode::Direct => "DIRECT",
            ConnectionMode::InCluster => "IN_CLUSTER",
        }
    }

    pub fn parse(text: &str) -> Option<ConnectionMode> {
        match text {
            "KUBECONFIG" => Some(ConnectionMode::Kubeconfig),
            "DIRECT" => Some(ConnectionMode::Direct),
            "IN_CLUSTER" => Some(ConnectionMode::InCluster),
            _ => None,
        }
    }
}

/// A whole cluster configuration with its credentials in the clear (in memory only).
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    pub mode: ConnectionMode,
    pub kubeconfig_path: Option<String>,
    pub kubeconfig_context: Option<String>,
    pub kubeconfig: Option<SecretString>,
    pub api_server_url: Option<String>,
    pub bearer_token: Option<SecretString>,
    pub ca_data: Option<SecretString>,
    pub client_certificate: Option<SecretString>,
    pub client_key: Option<SecretString>,
    pub tls_server_name: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub default_namespace: Option<String>,
    /// Act on the cluster as the calling principal (impersonation), so the cluster's RBAC decides.
    pub impersonate_caller: bool,
    pub labels: BTreeMap<String, String>,
}

/// A change to a stored spec: `None` keeps a field, `Some(None)` clears it, `Some(Some(v))` sets it.
#[derive(Debug, Clone, Default)]
pub struct ClusterPatch {
    pub name: Option<String>,
    pub mode: Option<ConnectionMode>,
    pub kubeconfig_path: Option<Option<String>>,
    pub kubeconfig_context: Option<Option<String>>,
    pub kubeconfig: Option<Option<SecretString>>,
    pub api_server_url: Option<Option<String>>,
    pub bearer_token: Option<Option<SecretString>>,
    pub ca_data: Option<Option<SecretString>>,
    pub client_certificate: Option<Option<SecretString>>,
    pub client_key: Option<Option<SecretString>>,
    pub tls_server_name: Option<Option<String>>,
    pub insecure_skip_tls_verify: Option<bool>,
    pub default_namespace: Option<Option<String>>,
    pub impersonate_caller: Option<bool>,
    pub labels: Option<BTreeMap<String, String>>,
}

impl ClusterSpec {
    fn apply(mut self, patch: ClusterPatch) -> ClusterSpec {
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *slot = value;
            }
        }
        set(&mut self.name, patch.name);
        set(&mut self.mode, patch.mode);
        set(&mut self.kubeconfig_path, patch.kubeconfig_path);
        set(&mut self.kubeconfig_context, patch.kubeconfig_context);
        set(&mut self.kubeconfig, patch.kubeconfig);
        set(&mut self.api_server_url, patch.api_server_url);
        set(&mut self.bearer_token, patch.bearer_token);
        set(&mut self.ca_data, patch.ca_data);
        set(&mut self.client_certificate, patch.client_certificate);
        set(&mut self.client_key, patch.client_key);
        set(&mut self.tls_server_name, patch.tls_server_name);
        set(&mut self.insecure_skip_tls_verify, patch.insecure_skip_tls_verify);
        set(&mut self.default_namespace, patch.default_namespace);
        set(&mut self.impersonate_caller, patch.impersonate_caller);
        set(&mut self.labels, patch.labels);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("no cluster with id {0}")]
    NotFound(String),
    /// The operator has not opened this to the caller's tenant.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Cipher(#[from] CipherError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> ClusterError {
    ClusterError::Invalid { field, message: message.into() }
}

impl From<PolicyError> for ClusterError {
    fn from(err: PolicyError) -> Self {
        match err {
            PolicyError::Refused { field, message } => ClusterError::Invalid { field, message },
            PolicyError::Forbidden(message) => ClusterError::Forbidden(message),
        }
    }
}

/// What happened to a cluster, for live dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum ClusterChangeKind {
    Created,
    Updated,
    Deleted,
}

#[derive(Debug, Clone)]
pub struct ClusterChange {
    pub kind: ClusterChangeKind,
    pub id: String,
    pub name: String,
    /// Subscribers see only their own tenant's changes.
    pub tenant: String,
}

/// Parses a cluster id, refusing anything that is not a UUID.
pub fn parse_cluster_id(text: &str) -> Result<uuid::Uuid, ClusterError> {
    uuid::Uuid::parse_str(text.trim()).map_err(|_| invalid("id", format!("{text:?} is not a cluster id (a UUID)")))
}

/// Cluster records: reads come from the in-memory directory, writes go to the database and then
/// to the directory, and invalidate the cluster's cached clients at once.
#[derive(Clone)]
pub struct ClusterService {
    db: Database,
    cipher: Arc<CredentialCipher>,
    changes: broadcast::Sender<ClusterChange>,
    directory: Arc<ClusterDirectory>,
    listeners: Arc<std::sync::RwLock<Vec<Arc<dyn ClusterListener>>>>,
    policy: Arc<ConnectionPolicy>,
}

/// What must forget a cluster the moment its record changes (a cache of its clients): told
/// synchronously, before the change returns or is announced, for this process's own writes and
/// for other replicas' notices.
pub trait ClusterListener: Send + Sync {
    fn cluster_changed(&self, id: &str);
}

impl ClusterService {
    pub fn new(db: Database, cipher: Arc<CredentialCipher>, policy: Arc<ConnectionPolicy>) -> Self {
        let (changes, _) = broadcast::channel(256);
        let directory = Arc::new(ClusterDirectory::new(db.clone()));
        Self { db, cipher, changes, directory, listeners: Default::default(), policy }
    }

    /// Adds a listener, told of every later change.
    pub fn listen(&self, listener: Arc<dyn ClusterListener>) {
        self.listeners.write().unwrap_or_else(|e| e.into_inner()).push(listener);
    }

    fn tell_listeners(&self, id: &str) {
        for listener in self.listeners.read().unwrap_or_else(|e| e.into_inner()).iter() {
            listener.cluster_changed(id);
        }
    }

    pub fn policy(&self) -> &Arc<ConnectionPolicy> {
        &self.policy
    }

    pub fn directory(&self) -> &ClusterDirectory {
        &self.directory
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ClusterChange> {
        self.changes.subscribe()
    }

    /// Tells this process's subscribers, and (on PostgreSQL) the other replicas.
    async fn announce(&self, kind: ClusterChangeKind, row: &ClusterRow) {
        // No subscriber is not an error.
        let _ = self.changes.send(ClusterChange {
            kind,
            id: row.id.clone(),
            name: row.name.clone(),
            tenant: row.tenant.clone(),
        });
        if let Err(err) = self.db.announce(&Change::Cluster(row.id.clone())).await {
            // The other replicas' periodic refresh still catches up.
            tracing::warn!(error = %err, cluster = %row.id, "could not notify other replicas of a cluster change");
        }
    }

    /// Another replica changed this cluster: read it again and drop its clients.
    pub async fn apply_remote_change(&self, id: &str) -> Result<(), ClusterError> {
        // The record as known before the reload names the tenant of a deleted cluster.
        let before = self.directory.get(id).await?;
        let exists = self.directory.reload(id).await?;
        self.tell_listeners(id);
        let kind = if exists { ClusterChangeKind::Updated } else { ClusterChangeKind::Deleted };
        let Some(row) = (if exists { self.directory.get(id).await? } else { before }) else {
            return Ok(());
        };
        let _ = self.changes.send(ClusterChange {
            kind,
            id: id.to_owned(),
            name: row.name.clone(),
            tenant: row.tenant.clone(),
        });
        Ok(())
    }

    /// A cluster record of any tenant, from memory when it is known. For kubegql's own use:
    /// requests go through `get`, which keeps tenants apart.
    pub async fn get_any(&self, id: &str) -> Result<Arc<ClusterRow>, ClusterError> {
        let id = parse_cluster_id(id)?.to_string();
        self.directory.get(&id).await?.ok_or(ClusterError::NotFound(id))
    }

    /// A cluster of `tenant`. Another tenant's cluster is not found, as if it did not exist.
    pub async fn get(&self, id: &str, tenant: &str) -> Result<Arc<ClusterRow>, ClusterError> {
        let row = self.get_any(id).await?;
        if row.tenant != tenant {
            return Err(ClusterError::NotFound(row.id.clone()));
        }
        Ok(row)
    }

    pub async fn page(
        &self,
        tenant: &str,
        after_name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ClusterRow>, ClusterError> {
        match self.db.clusters_page(tenant, after_name, limit).await {
            // The directory holds every record as of its last refresh: while the database is
            // unavailable, a page comes from there (records cannot change meanwhile, except on
            // another replica that reaches the database).
            Err(err) if err.is_unavailable() => {
                Ok(self.directory.page(tenant, after_name, usize::try_from(limit).unwrap_or(0)))
            }
            other => Ok(other?),
        }
    }

    pub async fn create(&self, tenant: &str, spec: ClusterSpec) -> Result<ClusterRow, ClusterError> {
        validate(&spec, tenant, &self.policy).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let at = now();
        let row = self.seal(&id, tenant, &spec, at, at)?;
        self.db.insert_cluster(&row).await?;
        self.directory.put_if_newer(row.clone());
        tracing::info!(cluster = %row.id, name = %row.name, mode = %row.mode, "cluster created");
        self.announce(ClusterChangeKind::Created, &row).await;
        Ok(row)
    }

    pub async fn update(&self, id: &str, tenant: &str, patch: ClusterPatch) -> Result<ClusterRow, ClusterError> {
        let current = self.get(id, tenant).await?;
        let spec = self.open(&current)?.apply(patch);
        validate(&spec, &current.tenant, &self.policy).await?;
        let row = self.seal(&current.id, &current.tenant, &spec, current.created_at, now())?;
        if !self.db.update_cluster(&row).await? {
            self.forget(&current.id);
            return Err(ClusterError::NotFound(current.id.clone()));
        }
        self.directory.put_if_newer(row.clone());
        self.tell_listeners(&row.id);
        tracing::info!(cluster = %row.id, name = %row.name, "cluster updated");
        self.announce(ClusterChangeKind::Updated, &row).await;
        Ok(row)
    }

    pub async fn delete(&self, id: &str, tenant: &str) -> Result<Arc<ClusterRow>, ClusterError> {
        let current = self.get(id, tenant).await?;
        let deleted = self.db.delete_cluster(&current.id).await?;
        self.forget(&current.id);
        if !deleted {
            return Err(ClusterError::NotFound(current.id.clone()));
        }
        tracing::info!(cluster = %current.id, name = %current.name, "cluster deleted");
        self.announce(ClusterChangeKind::Deleted, &current).await;
        Ok(current)
    }

    fn forget(&self, id: &str) {
        self.directory.remove(id);
        self.tell_listeners(id);
    }

    /// The stored spec with its credentials opened.
    pub fn open(&self, row: &ClusterRow) -> Result<ClusterSpec, ClusterError> {
        let open = |column: &'static str, sealed: &Option<Vec<u8>>| -> Result<Option<SecretString>, ClusterError> {
            sealed
                .as_deref()
                .map(|bytes| self.cipher.open(seal_context(row, column), &row.key_id, bytes))
                .transpose()
                .map_err(ClusterError::from)
        };
        let mode = ConnectionMode::parse(&row.mode)
            .ok_or_else(|| StoreError::Conflict(format!("stored cluster {} has mode {:?}", row.id, row.mode)))?;
        Ok(ClusterSpec {
            name: row.name.clone(),
            mode,
            kubeconfig_path: row.kubeconfig_path.clone(),
            kubeconfig_context: row.kubeconfig_context.clone(),
            kubeconfig: open("kubeconfig", &row.kubeconfig_sealed)?,
            api_server_url: row.api_server_url.clone(),
            bearer_token: open("bearer_token", &row.bearer_token_sealed)?,
            ca_data: open("ca_data", &row.ca_data_sealed)?,
            client_certificate: open("client_certificate", &row.client_certificate_sealed)?,
            client_key: open("client_key", &row.client_key_sealed)?,
            tls_server_name: row.tls_server_name.clone(),
            insecure_skip_tls_verify: row.insecure_skip_tls_verify,
            default_namespace: row.default_namespace.clone(),
            impersonate_caller: row.impersonate_caller,
            labels: serde_json::from_str(&row.labels).unwrap_or_default(),
        })
    }

    fn seal(
        &self,
        id: &str,
        tenant: &str,
        spec: &ClusterSpec,
        created_at: chrono::NaiveDateTime,
        updated_at: chrono::NaiveDateTime,
    ) -> Result<ClusterRow, ClusterError> {
        let mut row = ClusterRow {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            name: spec.name.clone(),
            mode: spec.mode.as_str().to_owned(),
            kubeconfig_path: spec.kubeconfig_path.clone(),
            kubeconfig_context: spec.kubeconfig_context.clone(),
            kubeconfig_sealed: None,
            api_server_url: spec.api_server_url.clone(),
            bearer_token_sealed: None,
            ca_data_sealed: None,
            ca_fingerprint_sha256: spec.ca_data.as_ref().and_then(|ca| ca_fingerprint(ca.expose_secret())),
            client_certificate_sealed: None,
            client_key_sealed: None,
            tls_server_name: spec.tls_server_name.clone(),
            insecure_skip_tls_verify: spec.insecure_skip_tls_verify,
            default_namespace: spec.default_namespace.clone(),
            impersonate_caller: spec.impersonate_caller,
            labels: serde_json::to_string(&spec.labels).map_err(|e| invalid("labels", e.to_string()))?,
            key_id: self.cipher.current_key_id().to_owned(),
            created_at,
            updated_at,
        };
        let seal = |column: &'static str, value: &Option<SecretString>, row: &ClusterRow| {
            value
                .as_ref()
                .map(|secret| self.cipher.seal(seal_context(row, column), secret.expose_secret().as_bytes()))
                .transpose()
        };
        row.kubeconfig_sealed = seal("kubeconfig", &spec.kubeconfig, &row)?;
        row.bearer_token_sealed = seal("bearer_token", &spec.bearer_token, &row)?;
        row.ca_data_sealed = seal("ca_data", &spec.ca_data, &row)?;
        row.client_certificate_sealed = seal("client_certificate", &spec.client_certificate, &row)?;
        row.client_key_sealed = seal("client_key", &spec.client_key, &row)?;
        Ok(row)
    }

    /// Re-seals every cluster not sealed under the current key; returns how many were re-sealed.
    pub async fn reseal_all(&self) -> Result<usize, ClusterError> {
        let mut count = 0;
        for row in self.db.all_clusters().await? {
            if row.key_id == self.cipher.current_key_id() {
                continue;
            }
            let spec = self.open(&row)?;
            let resealed = self.seal(&row.id, &row.tenant, &spec, row.created_at, row.updated_at)?;
            self.db.update_cluster(&resealed).await?;
            self.directory.put_if_newer(resealed);
            count += 1;
        }
        Ok(count)
    }
}

fn seal_context<'a>(row: &'a ClusterRow, column: &'a str) -> SealContext<'a> {
    SealContext { owner_kind: "cluster", owner_id: &row.id, owner_label: &row.name, column }
}

/// SHA-256 of the first certificate's DER bytes, as colon-separated upper-case hex (the form
/// `openssl x509 -fingerprint -sha256` prints).
pub fn ca_fingerprint(pem_text: &str) -> Option<String> {
    let first = pem::parse_many(pem_text).ok()?.into_iter().find(|p| p.tag() == "CERTIFICATE")?;
    let digest = Sha256::digest(first.contents());
    Some(digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn validate_name(name: &str) -> Result<(), ClusterError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!(
                "{name:?} is not a valid cluster name: 1-63 letters, digits, '-', '.' or '_', \
                 starting and ending with a letter or digit"
            ),
        ))
    }
}

fn validate_pem(field: &'static str, text: &str, tag_suffix: &str) -> Result<(), ClusterError> {
    let blocks = pem::parse_many(text).map_err(|_| invalid(field, "is not valid PEM"))?;
    if blocks.iter().any(|b| b.tag().ends_with(tag_suffix)) {
        Ok(())
    } else {
        Err(invalid(field, format!("is not valid PEM: no {tag_suffix} block")))
    }
}

fn validate_https_url(url: &str) -> Result<(), ClusterError> {
    let uri: axum::http::Uri =
        url.parse().map_err(|_| invalid("apiServerUrl", format!("{url:?} is not a valid URL")))?;
    if uri.scheme_str() != Some("https") {
        return Err(invalid("apiServerUrl", format!("{url:?} must use https://")));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("apiServerUrl", format!("{url:?} has no host")));
    }
    Ok(())
}

/// Reads the kubeconfig a KUBECONFIG spec names, under the policy: an inline one must carry data
/// only; a file must be in the tenant's directory.
pub async fn load_kubeconfig(
    spec: &ClusterSpec,
    tenant: &str,
    policy: &ConnectionPolicy,
) -> Result<kube::config::Kubeconfig, ClusterError> {
    match (&spec.kubeconfig_path, &spec.kubeconfig) {
        (Some(_), Some(_)) => {
            Err(invalid("kubeconfig", "give either kubeconfigPath or an inline kubeconfig, not both"))
        }
        (None, None) => Err(invalid("kubeconfigPath", "KUBECONFIG mode needs kubeconfigPath or an inline kubeconfig")),
        (Some(path), None) => Ok(policy.read_kubeconfig(tenant, path).await?),
        (None, Some(inline)) => {
            // Parse errors may quote the text, which can hold credentials: say only that it failed.
            let config = kube::config::Kubeconfig::from_yaml(inline.expose_secret())
                .map_err(|_| invalid("kubeconfig", "the inline kubeconfig is not a valid kubeconfig"))?;
            policy.check_api_kubeconfig(&config)?;
            Ok(config)
        }
    }
}

async fn validate_kubeconfig(spec: &ClusterSpec, tenant: &str, policy: &ConnectionPolicy) -> Result<(), ClusterError> {
    let config = load_kubeconfig(spec, tenant, policy).await?;
    let context =
        spec.kubeconfig_context.clone().or_else(|| config.current_context.clone()).ok_or_else(|| {
            invalid("kubeconfigContext", "no context given and the kubeconfig has no current-context")
        })?;
    if !config.contexts.iter().any(|c| c.name == context) {
        let known: Vec<&str> = config.contexts.iter().map(|c| c.name.as_str()).collect();
        return Err(invalid(
            "kubeconfigContext",
            format!("context {context:?} is not in the kubeconfig (it has: {})", known.join(", ")),
        ));
    }
    Ok(())
}

/// The rules a cluster record of `tenant` must meet, whole, under the operator's policy; a
/// failure names the field at fault.
pub async fn validate(spec: &ClusterSpec, tenant: &str, policy: &ConnectionPolicy) -> Result<(), ClusterError> {
    validate_name(&spec.name)?;
    if let Some(ns) = &spec.default_namespace
        && !is_dns_label(ns)
    {
        return Err(invalid("defaultNamespace", format!("{ns:?} is not a valid namespace name")));
    }
    if let Some(server_name) = &spec.tls_server_name
        && (server_name.is_empty() || server_name.len() > 253 || server_name.contains(char::is_whitespace))
    {
        return Err(invalid("tlsServerName", "is not a valid host name"));
    }
    for (key, value) in &spec.labels {
        let fine = |t: &str, empty_ok: bool| {
            (empty_ok || !t.is_empty())
                && t.len() <= 63
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/'))
        };
        if !fine(key, false) || !fine(value, true) {
            return Err(invalid("labels", format!("label {key:?}={value:?} is not valid")));
        }
    }
    if let Some(ca) = &spec.ca_data {
        validate_pem("caData", ca.expose_secret(), "CERTIFICATE")?;
        if spec.insecure_skip_tls_verify {
            // kubectl refuses the same combination: a CA that is never checked is misleading.
            return Err(invalid("insecureSkipTlsVerify", "cannot be set together with caData"));
        }
    }
    let direct_only = [
        ("apiServerUrl", spec.api_server_url.is_some()),
        ("bearerToken", spec.bearer_token.is_some()),
        ("clientCertificate", spec.client_certificate.is_some()),
        ("clientKey", spec.client_key.is_some()),
    ];
    let kubeconfig_only = [
        ("kubeconfigPath", spec.kubeconfig_path.is_some()),
        ("kubeconfigContext", spec.kubeconfig_context.is_some()),
        ("kubeconfig", spec.kubeconfig.is_some()),
    ];
    let refuse = |fields: &[(&'static str, bool)], mode: ConnectionMode| match fields.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(invalid(field, format!("is not used in {} mode", mode.as_str()))),
        None => Ok(()),
    };
    match spec.mode {
        ConnectionMode::Direct => {
            refuse(&kubeconfig_only, spec.mode)?;
            let url = spec
                .api_server_url
                .as_deref()
                .ok_or_else(|| invalid("apiServerUrl", "DIRECT mode needs apiServerUrl"))?;
            validate_https_url(url)?;
            policy.check_server_url("apiServerUrl", url)?;
            match (&spec.client_certificate, &spec.client_key) {
                (Some(cert), Some(key)) => {
                    validate_pem("clientCertificate", cert.expose_secret(), "CERTIFICATE")?;
                    validate_pem("clientKey", key.expose_secret(), "PRIVATE KEY")?;
                }
                (Some(_), None) => return Err(invalid("clientKey", "clientCertificate needs clientKey")),
                (None, Some(_)) => return Err(invalid("clientCertificate", "clientKey needs clientCertificate")),
                (None, None) => {
                    if spec.bearer_token.is_none() {
                        return Err(invalid(
                            "bearerToken",
                            "DIRECT mode needs bearerToken or clientCertificate and clientKey",
                        ));
                    }
                }
            }
            if spec.bearer_token.as_ref().is_some_and(|t| t.expose_secret().trim().is_empty()) {
                return Err(invalid("bearerToken", "is empty"));
            }
        }
        ConnectionMode::Kubeconfig => {
            refuse(&direct_only, spec.mode)?;
            if spec.ca_data.is_some() {
                return Err(invalid("caData", "is not used in KUBECONFIG mode; the kubeconfig holds it"));
            }
            validate_kubeconfig(spec, tenant, policy).await?;
        }
        ConnectionMode::InCluster => {
            refuse(&direct_only, spec.mode)?;
            refuse(&kubeconfig_only, spec.mode)?;
            if spec.ca_data.is_some() {
                return Err(invalid("caData", "is not used in IN_CLUSTER mode"));
            }
            policy.check_in_cluster(tenant)?;
        }
    }
    Ok(())
}
