//! Clusters in the schema: the `Cluster` type, its Relay connection, and its mutations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use secrecy::SecretString;
use tokio_stream::wrappers::BroadcastStream;

use super::RoleGuard;
use super::resources::{self, ApiResourceInfo, ListArgs, Resource, ResourceConnection};
use super::{data, principal};
use crate::auth::Role;
use crate::clients::connections::ClusterConnections;
use crate::clients::{ClusterStatus, ConnectError};
use crate::clusters::{ClusterChangeKind, ClusterPatch, ClusterService, ClusterSpec, ConnectionMode};
use crate::error::ApiError;
use crate::pagination::PageRequest;
use crate::resources::ListQuery;
use crate::settings::ApiLimits;
use crate::store::clusters::ClusterRow;
use crate::store::utc;
use crate::watch::WatchHub;

const CLUSTERS_SCOPE: &str = "clusters";

/// A Kubernetes cluster kubegql can connect to. Credentials are write-only: the API says whether
/// they are set, never what they are.
pub struct Cluster(pub Arc<ClusterRow>);

#[derive(SimpleObject, Clone)]
#[graphql(serial)]
pub struct Label {
    pub key: String,
    pub value: String,
}

#[derive(InputObject)]
pub struct LabelInput {
    pub key: String,
    pub value: String,
}

#[Object]
impl Cluster {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn mode(&self) -> ConnectionMode {
        ConnectionMode::parse(&self.0.mode).unwrap_or(ConnectionMode::Direct)
    }
    /// Path of the kubeconfig file on the server (KUBECONFIG mode).
    async fn kubeconfig_path(&self) -> Option<&str> {
        self.0.kubeconfig_path.as_deref()
    }
    /// Context of the kubeconfig; absent means its current-context.
    async fn kubeconfig_context(&self) -> Option<&str> {
        self.0.kubeconfig_context.as_deref()
    }
    /// Whether an inline kubeconfig is stored (sealed).
    async fn has_inline_kubeconfig(&self) -> bool {
        self.0.kubeconfig_sealed.is_some()
    }
    async fn api_server_url(&self) -> Option<&str> {
        self.0.api_server_url.as_deref()
    }
    async fn has_bearer_token(&self) -> bool {
        self.0.bearer_token_sealed.is_some()
    }
    async fn has_ca_data(&self) -> bool {
        self.0.ca_data_sealed.is_some()
    }
    /// SHA-256 of the CA certificate (DER), as `openssl x509 -fingerprint -sha256` prints it.
    async fn ca_fingerprint_sha256(&self) -> Option<&str> {
        self.0.ca_fingerprint_sha256.as_deref()
    }
    async fn has_client_certificate(&self) -> bool {
        self.0.client_certificate_sealed.is_some()
    }
    async fn tls_server_name(&self) -> Option<&str> {
        self.0.tls_server_name.as_deref()
    }
    /// True only when the record explicitly disables server certificate checks.
    async fn insecure_skip_tls_verify(&self) -> bool {
        self.0.insecure_skip_tls_verify
    }
    async fn default_namespace(&self) -> Option<&str> {
        self.0.default_namespace.as_deref()
    }
    /// Whether kubegql acts on this cluster as the calling principal.
    async fn impersonate_caller(&self) -> bool {
        self.0.impersonate_caller
    }
    /// The tenant the cluster belongs to.
    async fn tenant(&self) -> &str {
        &self.0.tenant
    }
    async fn labels(&self) -> Vec<Label> {
        serde_json::from_str::<BTreeMap<String, String>>(&self.0.labels)
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| Label { key, value })
            .collect()
    }
    /// Id of the master key that sealed this cluster's credentials.
    async fn credential_key_id(&self) -> &str {
        &self.0.key_id
    }
    async fn created_at(&self) -> DateTime<Utc> {
        utc(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        utc(self.0.updated_at)
    }
    /// The kinds the cluster serves, from its API discovery (cached; refreshed when a kind is
    /// asked for that the cache does not know).
    #[graphql(complexity = "super::cost::cluster_call(child_complexity)")]
    async fn api_resources(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiResourceInfo>> {
        resources::api_resources(ctx, &self.0.id).await
    }

    /// May the caller do these? Each check is answered by kubegql's role first (a VIEWER may
    /// only read; exec may be off for the tenant), then by the cluster through
    /// SelfSubjectAccessReview under the identity kubegql uses for this caller (its stored
    /// credentials, or the caller impersonated). At most 50 checks; answers are kept 10 seconds.
    #[graphql(complexity = "super::cost::cluster_calls(checks.len(), child_complexity)")]
    async fn access(
        &self,
        ctx: &Context<'_>,
        checks: Vec<super::access::AccessCheckInput>,
    ) -> async_graphql::Result<Vec<super::access::AccessDecisionOutput>> {
        super::access::access(ctx, &self.0.id, checks).await
    }

    /// What the cluster lets the caller's identity do in a namespace (SelfSubjectRulesReview,
    /// `kubectl auth can-i --list`), with the caller's kubegql role.
    #[graphql(complexity = "super::cost::cluster_call(child_complexity)")]
    async fn access_rules(
        &self,
        ctx: &Context<'_>,
        namespace: String,
    ) -> async_graphql::Result<super::access::AccessRulesOutput> {
        super::access::access_rules(ctx, &self.0.id, &namespace).await
    }

    /// Namespaces, a page at a time.
    #[graphql(complexity = "super::cost::cluster_page(first, child_complexity)")]
    async fn namespaces(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        label_selector: Option<String>,
    ) -> async_graphql::Result<ResourceConnection> {
        let query = ListQuery { label_selector, field_selector: None };
        let args = ListArgs {
            group: String::new(),
            version: Some("v1".into()),
            kind: "Namespace".into(),
            namespace: None,
            query,
            first,
            after,
        };
        resources::list_resources(ctx, &self.0.id, args).await
    }

    /// Objects of any kind, a page at a time, as the API server cuts them (`limit`/`continue`).
    /// `namespace` absent means all namespaces. Continue with `pageInfo.endCursor`.
    #[graphql(complexity = "super::cost::cluster_page(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn resources(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "API group; absent or empty for the core group.")] group: Option<String>,
        #[graphql(desc = "API version; default the group's preferred version.")] version: Option<String>,
        #[graphql(desc = "Kind (`Deployment`) or plural (`deployments`).")] kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ResourceConnection> {
        principal(ctx)?;
        let query = ListQuery { label_selector, field_selector };
        let group = group.unwrap_or_default();
        resources::list_resources(ctx, &self.0.id, ListArgs { group, version, kind, namespace, query, first, after })
            .await
    }

    /// Objects of any kind as `kubectl get` prints them: the API server's table (its columns,
    /// `-o wide`'s included, and a row per object), a page at a time by the same cursors as
    /// `resources`. A custom resource's columns are its `additionalPrinterColumns`.
    #[graphql(complexity = "super::cost::cluster_page(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn table(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "API group; absent or empty for the core group.")] group: Option<String>,
        #[graphql(desc = "API version; default the group's preferred version.")] version: Option<String>,
        #[graphql(desc = "Kind (`Deployment`) or plural (`deployments`).")] kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<super::table::ResourceTable> {
        let query = ListQuery { label_selector, field_selector };
        let group = group.unwrap_or_default();
        super::table::list_table(ctx, &self.0.id, ListArgs { group, version, kind, namespace, query, first, after })
            .await
    }

    /// The rollout of a Deployment, StatefulSet or DaemonSet (`kubectl rollout status|history`).
    async fn rollout(
        &self,
        ctx: &Context<'_>,
        kind: String,
        namespace: String,
        name: String,
    ) -> async_graphql::Result<super::rollout::Rollout> {
        super::rollout::rollout(ctx, &self.0.id, &kind, namespace, name)
    }

    /// One object. A missing object is a NOT_FOUND error.
    #[graphql(complexity = "super::cost::cluster_call(child_complexity)")]
    async fn resource(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "API group; absent or empty for the core group.")] group: Option<String>,
        version: Option<String>,
        kind: String,
        namespace: Option<String>,
        name: String,
    ) -> async_graphql::Result<Resource> {
        principal(ctx)?;
        let group = group.unwrap_or_default();
        resources::get_resource(ctx, &self.0.id, &group, version.as_deref(), &kind, namespace.as_deref(), &name).await
    }

    /// Whether the cluster answers, and how fast. A status younger than 30 seconds (kept by the
    /// background health check) is returned as it is unless `refresh` asks for a new check.
    #[graphql(complexity = "if refresh { super::cost::cluster_call(child_complexity) } else { child_complexity + 1 }")]
    async fn status(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] refresh: bool,
    ) -> async_graphql::Result<ConnectionStatus> {
        let connections = data::<ClusterConnections>(ctx)?;
        let status =
            connections.status(&self.0.id, &self.0.tenant, STATUS_MAX_AGE, refresh).await.map_err(ApiError::from)?;
        Ok(ConnectionStatus::from(status).noting_tls(self.0.insecure_skip_tls_verify))
    }
}

const STATUS_MAX_AGE: Duration = Duration::from_secs(30);

/// Why a connection check failed.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionErrorKind {
    /// The configuration cannot be turned into a client (unreadable file, bad CA, no context).
    Config,
    /// The TLS handshake failed (unknown CA, wrong server name, bad client certificate).
    Tls,
    /// The API server refused the credentials (401).
    Unauthorized,
    /// The credentials are valid but may not do this (403).
    Forbidden,
    /// No answer within the timeout.
    Timeout,
    /// The connection could not be made (refused, no route, DNS).
    Unreachable,
    /// The API server answered with another error.
    Api,
}

/// The result of a connection check.
#[derive(SimpleObject)]
pub struct ConnectionStatus {
    pub reachable: bool,
    /// The API server's `gitVersion`, such as `v1.37.2`.
    pub server_version: Option<String>,
    pub latency_ms: Option<u64>,
    pub checked_at: DateTime<Utc>,
    pub error: Option<String>,
    pub error_kind: Option<ConnectionErrorKind>,
    /// Things about the connection a person should know, such as disabled TLS verification.
    pub warnings: Vec<String>,
}

impl ConnectionStatus {
    fn noting_tls(mut self, insecure_skip_tls_verify: bool) -> Self {
        if insecure_skip_tls_verify {
            self.warnings.push(
                "TLS verification is disabled for this cluster (insecureSkipTlsVerify): \
                 the API server's identity is not checked"
                    .to_owned(),
            );
        }
        self
    }
}

impl From<ClusterStatus> for ConnectionStatus {
    fn from(status: ClusterStatus) -> Self {
        let error_kind = status.error.as_ref().map(|e| match e {
            ConnectError::Config(_) | ConnectError::NotAllowed(_) => ConnectionErrorKind::Config,
            ConnectError::Tls(_) => ConnectionErrorKind::Tls,
            ConnectError::Unauthorized => ConnectionErrorKind::Unauthorized,
            ConnectError::Forbidden(_) => ConnectionErrorKind::Forbidden,
            ConnectError::Timeout(_) => ConnectionErrorKind::Timeout,
            ConnectError::Unreachable(_) => ConnectionErrorKind::Unreachable,
            ConnectError::Api { .. } => ConnectionErrorKind::Api,
        });
        ConnectionStatus {
            reachable: status.reachable,
            server_version: status.server_version,
            latency_ms: status.latency_ms,
            checked_at: status.checked_at,
            error: status.error.map(|e| e.to_string()),
            error_kind,
            warnings: Vec::new(),
        }
    }
}

#[derive(Default)]
pub struct ClusterQuery;

#[Object]
impl ClusterQuery {
    /// Clusters ordered by name, as a Relay connection.
    #[graphql(complexity = "super::cost::page(first, child_complexity)")]
    async fn clusters(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size: default 50, at most 500 (both configurable).")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Cluster>> {
        let tenant = &principal(ctx)?.tenant;
        let limits = data::<ApiLimits>(ctx)?;
        let page = PageRequest::parse(first, after.as_deref(), CLUSTERS_SCOPE, limits)?;
        let service = data::<ClusterService>(ctx)?;
        let rows = service.page(tenant, page.after.as_deref(), page.fetch_limit()).await.map_err(ApiError::from)?;
        Ok(page.connection(CLUSTERS_SCOPE, rows, |row| row.name.clone(), |row| Cluster(Arc::new(row))))
    }

    /// One cluster by id.
    async fn cluster(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Cluster> {
        let tenant = &principal(ctx)?.tenant;
        let row = data::<ClusterService>(ctx)?.get(&id, tenant).await.map_err(ApiError::from)?;
        Ok(Cluster(row))
    }
}

/// A new cluster. Which fields apply depends on `mode`; a field that does not apply is refused.
#[derive(InputObject)]
pub struct CreateClusterInput {
    pub name: String,
    pub mode: ConnectionMode,
    pub kubeconfig_path: Option<String>,
    pub kubeconfig_context: Option<String>,
    /// Inline kubeconfig (YAML), stored sealed.
    pub kubeconfig: Option<String>,
    pub api_server_url: Option<String>,
    /// Stored sealed; never returned.
    pub bearer_token: Option<String>,
    /// PEM CA bundle, stored sealed.
    pub ca_data: Option<String>,
    /// PEM client certificate, stored sealed.
    pub client_certificate: Option<String>,
    /// PEM private key, stored sealed; never returned.
    pub client_key: Option<String>,
    pub tls_server_name: Option<String>,
    #[graphql(default)]
    pub insecure_skip_tls_verify: bool,
    pub default_namespace: Option<String>,
    /// Act on the cluster as the calling principal (user = principal name, groups =
    /// `kubegql:tenant:<tenant>` and `kubegql:role:<role>`), so the cluster's own RBAC decides.
    /// kubegql's credentials must be allowed to impersonate.
    #[graphql(default)]
    pub impersonate_caller: bool,
    pub labels: Option<Vec<LabelInput>>,
}

/// Changes to a cluster: an absent field is kept, `null` clears it.
#[derive(InputObject)]
pub struct UpdateClusterInput {
    pub name: Option<String>,
    pub mode: Option<ConnectionMode>,
    pub kubeconfig_path: MaybeUndefined<String>,
    pub kubeconfig_context: MaybeUndefined<String>,
    pub kubeconfig: MaybeUndefined<String>,
    pub api_server_url: MaybeUndefined<String>,
    pub bearer_token: MaybeUndefined<String>,
    pub ca_data: MaybeUndefined<String>,
    pub client_certificate: MaybeUndefined<String>,
    pub client_key: MaybeUndefined<String>,
    pub tls_server_name: MaybeUndefined<String>,
    pub insecure_skip_tls_verify: Option<bool>,
    pub default_namespace: MaybeUndefined<String>,
    pub impersonate_caller: Option<bool>,
    /// Replaces all labels.
    pub labels: Option<Vec<LabelInput>>,
}

fn labels_map(labels: Vec<LabelInput>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut map = BTreeMap::new();
    for LabelInput { key, value } in labels {
        if map.insert(key.clone(), value).is_some() {
            return Err(ApiError::bad_input("labels", format!("label {key:?} is given twice")));
        }
    }
    Ok(map)
}

fn secret(value: Option<String>) -> Option<SecretString> {
    value.map(SecretString::from)
}

/// Absent keeps, null clears, a value sets; empty strings count as null for optional text.
fn change(value: MaybeUndefined<String>) -> Option<Option<String>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

fn secret_change(value: MaybeUndefined<String>) -> Option<Option<SecretString>> {
    change(value).map(secret)
}

impl CreateClusterInput {
    fn into_spec(self) -> Result<ClusterSpec, ApiError> {
        Ok(ClusterSpec {
            name: self.name,
            mode: self.mode,
            kubeconfig_path: self.kubeconfig_path,
            kubeconfig_context: self.kubeconfig_context,
            kubeconfig: secret(self.kubeconfig),
            api_server_url: self.api_server_url,
            bearer_token: secret(self.bearer_token),
            ca_data: secret(self.ca_data),
            client_certificate: secret(self.client_certificate),
            client_key: secret(self.client_key),
            tls_server_name: self.tls_server_name,
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            default_namespace: self.default_namespace,
            impersonate_caller: self.impersonate_caller,
            labels: labels_map(self.labels.unwrap_or_default())?,
        })
    }
}

impl UpdateClusterInput {
    fn into_patch(self) -> Result<ClusterPatch, ApiError> {
        Ok(ClusterPatch {
            name: self.name,
            mode: self.mode,
            kubeconfig_path: change(self.kubeconfig_path),
            kubeconfig_context: change(self.kubeconfig_context),
            kubeconfig: secret_change(self.kubeconfig),
            api_server_url: change(self.api_server_url),
            bearer_token: secret_change(self.bearer_token),
            ca_data: secret_change(self.ca_data),
            client_certificate: secret_change(self.client_certificate),
            client_key: secret_change(self.client_key),
            tls_server_name: change(self.tls_server_name),
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            default_namespace: change(self.default_namespace),
            impersonate_caller: self.impersonate_caller,
            labels: self.labels.map(labels_map).transpose()?,
        })
    }
}

#[derive(Default)]
pub struct ClusterMutation;

#[Object]
impl ClusterMutation {
    /// Registers a cluster. Credentials are validated, then sealed before they are stored.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_cluster(&self, ctx: &Context<'_>, input: CreateClusterInput) -> async_graphql::Result<Cluster> {
        let admin = principal(ctx)?;
        let spec = input.into_spec()?;
        let row = data::<ClusterService>(ctx)?.create(&admin.tenant, spec).await.map_err(ApiError::from)?;
        Ok(Cluster(Arc::new(row)))
    }

    /// Changes a cluster; the whole result is validated before anything is written.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn update_cluster(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateClusterInput,
    ) -> async_graphql::Result<Cluster> {
        let admin = principal(ctx)?;
        let patch = input.into_patch()?;
        let row = data::<ClusterService>(ctx)?.update(&id, &admin.tenant, patch).await.map_err(ApiError::from)?;
        Ok(Cluster(Arc::new(row)))
    }

    /// Checks a configuration before it is saved: validates it, connects, and asks the API server
    /// for its version. Writes nothing. A mutation rather than a query so that credentials are
    /// only ever sent in a POST body, never in a URL.
    #[graphql(guard = "RoleGuard(Role::Admin)", complexity = "super::cost::cluster_call(child_complexity)")]
    async fn test_cluster_connection(
        &self,
        ctx: &Context<'_>,
        input: CreateClusterInput,
    ) -> async_graphql::Result<ConnectionStatus> {
        let admin = principal(ctx)?;
        let spec = input.into_spec()?;
        let status = data::<ClusterConnections>(ctx)?.test(&admin.tenant, &spec).await.map_err(ApiError::from)?;
        Ok(ConnectionStatus::from(status).noting_tls(spec.insecure_skip_tls_verify))
    }

    /// Removes a cluster and returns what it was.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn delete_cluster(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Cluster> {
        let admin = principal(ctx)?;
        let row = data::<ClusterService>(ctx)?.delete(&id, &admin.tenant).await.map_err(ApiError::from)?;
        Ok(Cluster(row))
    }
}

/// A cluster was created, changed or removed.
#[derive(SimpleObject)]
pub struct ClusterChangeEvent {
    pub kind: ClusterChangeKind,
    pub cluster_id: ID,
    pub name: String,
}

#[derive(Default)]
pub struct ClusterSubscription;

#[Subscription]
impl ClusterSubscription {
    /// Registrations, changes and removals of the caller's tenant's clusters, as this server
    /// learns of them. Counts as one of the caller's concurrent subscriptions.
    async fn cluster_changes(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = ClusterChangeEvent> + use<>> {
        let who = principal(ctx)?;
        let slot = data::<Arc<WatchHub>>(ctx)?.reserve(&who.id).map_err(ApiError::from)?;
        let tenant = who.tenant.clone();
        let receiver = data::<ClusterService>(ctx)?.subscribe();
        // A subscriber that lags past the channel's capacity skips what it missed.
        Ok(BroadcastStream::new(receiver).filter_map(move |change| {
            // The slot lives as long as the stream.
            let _held = &slot;
            let event = change.ok().filter(|c| c.tenant == tenant).map(|c| ClusterChangeEvent {
                kind: c.kind,
                cluster_id: ID(c.id),
                name: c.name,
            });
            async move { event }
        }))
    }
}
