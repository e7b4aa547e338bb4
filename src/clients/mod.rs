//! Connections to clusters: `ClientFactory` turns a stored cluster spec into a `kube::Client`
//! for any connection mode, and `ClientCache` keeps built clients so the UI's hot path neither
//! decrypts credentials nor reads the database.

pub mod cache;
pub mod connections;
pub mod guard;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::config::{AuthInfo, KubeConfigOptions};
use kube::{Client, Config};
use secrecy::{ExposeSecret, SecretString};

use crate::clusters::policy::{ConnectionPolicy, PolicyError};
use crate::clusters::{ClusterError, ClusterSpec, ConnectionMode, load_kubeconfig};

/// Settings for building clients.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientSettings {
    /// Time allowed to open a connection to a cluster's API server.
    #[arg(long, env = "KUBEGQL_CONNECT_TIMEOUT_SECS", default_value_t = 5)]
    pub connect_timeout_secs: u64,

    /// Time allowed for a cluster's API server to answer a request (watches and streams excepted).
    #[arg(long, env = "KUBEGQL_READ_TIMEOUT_SECS", default_value_t = 30)]
    pub read_timeout_secs: u64,

    /// Time allowed for a whole answer of a cluster's API server, head and body (watches,
    /// followed logs and upgraded connections stream and are excepted).
    #[arg(long, env = "KUBEGQL_CLUSTER_REQUEST_TIMEOUT_SECS", default_value_t = 60)]
    pub cluster_request_timeout_secs: u64,

    /// Largest answer taken from a cluster's API server, in bytes (streams excepted).
    #[arg(long, env = "KUBEGQL_CLUSTER_MAX_RESPONSE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub cluster_max_response_bytes: u64,

    /// Service-account token file for IN_CLUSTER clusters (re-read when it rotates).
    #[arg(
        long,
        env = "KUBEGQL_IN_CLUSTER_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub in_cluster_token_file: PathBuf,

    /// CA bundle for IN_CLUSTER clusters.
    #[arg(
        long,
        env = "KUBEGQL_IN_CLUSTER_CA_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    pub in_cluster_ca_file: PathBuf,

    /// API server host for IN_CLUSTER clusters (set by Kubernetes in every pod).
    #[arg(long, env = "KUBERNETES_SERVICE_HOST")]
    pub in_cluster_host: Option<String>,

    /// API server port for IN_CLUSTER clusters.
    #[arg(long, env = "KUBERNETES_SERVICE_PORT", default_value = "443")]
    pub in_cluster_port: String,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 5,
            read_timeout_secs: 30,
            cluster_request_timeout_secs: 60,
            cluster_max_response_bytes: 256 * 1024 * 1024,
            in_cluster_token_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            in_cluster_ca_file: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt".into(),
            in_cluster_host: None,
            in_cluster_port: "443".into(),
        }
    }
}

/// Why a cluster could not be reached or used. Messages never carry credentials.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    #[error("the cluster configuration cannot be used: {0}")]
    Config(String),
    /// The operator's policy does not open this cluster to its tenant (SECURITY.md).
    #[error("{0}")]
    NotAllowed(String),
    #[error("TLS failure talking to the API server: {0}")]
    Tls(String),
    #[error("the API server refused the credentials (401 Unauthorized)")]
    Unauthorized,
    #[error("the API server denied access (403 Forbidden): {0}")]
    Forbidden(String),
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the API server is unreachable: {0}")]
    Unreachable(String),
    #[error("the API server answered {code}: {message}")]
    Api { code: u16, message: String },
}

/// The longest excerpt of a cluster's words (an error message, a response body) that goes into
/// an answer: enough to tell what went wrong, too little to read a service through kubegql.
pub const MAX_REMOTE_MESSAGE_CHARS: usize = 256;

/// A message from a cluster or a connection, made safe to show: control characters removed and
/// cut to `MAX_REMOTE_MESSAGE_CHARS`.
pub fn bounded(text: &str) -> String {
    let mut out: String =
        text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_REMOTE_MESSAGE_CHARS).collect();
    if text.chars().count() > MAX_REMOTE_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// Said instead of a credential plugin's or token file's error, whose text may hold the
/// plugin's output or the file's contents.
const CREDENTIALS_FAILED: &str =
    "the cluster's credentials could not be obtained (credential plugin or token file failed)";

impl ConnectError {
    /// Classifies an error from a request to the API server.
    pub fn from_kube(err: &kube::Error, timeout: Duration) -> ConnectError {
        if let kube::Error::Api(status) = err {
            return match status.code {
                401 => ConnectError::Unauthorized,
                403 => ConnectError::Forbidden(bounded(&status.message)),
                code => ConnectError::Api { code, message: bounded(&status.message) },
            };
        }
        if let kube::Error::Auth(_) = err {
            return ConnectError::Config(CREDENTIALS_FAILED.into());
        }
        let mut chain = Vec::new();
        let mut source: Option<&dyn std::error::Error> = Some(err);
        while let Some(e) = source {
            chain.push(e.to_string());
            source = e.source();
        }
        let text = chain.join(": ");
        let lower = text.to_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            ConnectError::Tls(innermost(&chain))
        } else if lower.contains("timed out") || lower.contains("elapsed") || lower.contains("timeout") {
            ConnectError::Timeout(timeout)
        } else {
            ConnectError::Unreachable(innermost(&chain))
        }
    }
}

/// The most specific message of an error chain (the outer ones repeat it with prefixes).
fn innermost(chain: &[String]) -> String {
    bounded(chain.last().map(String::as_str).unwrap_or_default())
}

/// An error from building a client, safe to show.
fn build_error(err: &kube::Error) -> ConnectError {
    match err {
        kube::Error::Auth(_) => ConnectError::Config(CREDENTIALS_FAILED.into()),
        other => ConnectError::Config(bounded(&other.to_string())),
    }
}

impl From<PolicyError> for ConnectError {
    fn from(err: PolicyError) -> Self {
        match err {
            PolicyError::Forbidden(message) => ConnectError::NotAllowed(message),
            refused @ PolicyError::Refused { .. } => ConnectError::Config(refused.to_string()),
        }
    }
}

impl From<ClusterError> for ConnectError {
    fn from(err: ClusterError) -> Self {
        ConnectError::Config(err.to_string())
    }
}

/// Builds `kube::Client`s from cluster specs, under the operator's connection policy (checked
/// again here, so a record stored before a rule existed is held to it too).
#[derive(Debug, Clone, Default)]
pub struct ClientFactory {
    settings: ClientSettings,
    policy: Arc<ConnectionPolicy>,
}

impl ClientFactory {
    pub fn new(settings: ClientSettings, policy: Arc<ConnectionPolicy>) -> Self {
        Self { settings, policy }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.connect_timeout_secs)
    }

    fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.read_timeout_secs)
    }

    /// The kube `Config` for a spec of `tenant`, with the server's timeouts applied and the API
    /// server's address checked and pinned.
    pub async fn config(&self, tenant: &str, spec: &ClusterSpec) -> Result<Config, ConnectError> {
        let mut config = match spec.mode {
            ConnectionMode::Kubeconfig => self.kubeconfig_config(tenant, spec).await?,
            ConnectionMode::Direct => direct_config(spec)?,
            ConnectionMode::InCluster => {
                self.policy.check_in_cluster(tenant)?;
                self.in_cluster_config()?
            }
        };
        if spec.mode != ConnectionMode::InCluster {
            self.pin_address(&mut config).await?;
        }
        config.connect_timeout = Some(self.connect_timeout());
        config.read_timeout = Some(self.read_timeout());
        config.reset_reader_on_write = true;
        if let Some(ns) = &spec.default_namespace {
            config.default_namespace = ns.clone();
        }
        Ok(config)
    }

    pub async fn build(&self, tenant: &str, spec: &ClusterSpec) -> Result<Client, ConnectError> {
        let config = self.config(tenant, spec).await?;
        self.client(config).await
    }

    /// The bounds every call of a built client is held to (see `guard`).
    pub fn call_bounds(&self) -> guard::CallBounds {
        guard::CallBounds {
            timeout: Duration::from_secs(self.settings.cluster_request_timeout_secs),
            max_response_bytes: self.settings.cluster_max_response_bytes,
        }
    }

    /// A client from a finished config, its calls bounded. Building one may run a kubeconfig's
    /// credential plugin (a command, when the operator allows them), so it happens off the async
    /// workers.
    pub async fn client(&self, config: Config) -> Result<Client, ConnectError> {
        let bounds = self.call_bounds();
        let plugin = config.auth_info.exec.is_some() || config.auth_info.auth_provider.is_some();
        let build = move || {
            kube::client::ClientBuilder::try_from(config)
                .map(|b| b.with_layer(&bounds).build())
                .map_err(|e| build_error(&e))
        };
        if !plugin {
            return build();
        }
        tokio::task::spawn_blocking(build)
            .await
            .map_err(|_| ConnectError::Config("building the client failed".into()))?
    }

    async fn kubeconfig_config(&self, tenant: &str, spec: &ClusterSpec) -> Result<Config, ConnectError> {
        let kubeconfig = load_kubeconfig(spec, tenant, &self.policy).await?;
        let options = KubeConfigOptions { context: spec.kubeconfig_context.clone(), ..Default::default() };
        Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| ConnectError::Config(bounded(&e.to_string())))
    }

    /// Checks the API server's address against the policy and, for a host name, connects to the
    /// address that was checked (the name still verifies the certificate), so a name that
    /// resolves elsewhere later cannot lead the client to a refused address.
    async fn pin_address(&self, config: &mut Config) -> Result<(), ConnectError> {
        let url = config.cluster_url.clone();
        let host = url.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.parse::<std::net::IpAddr>().is_ok() {
            return Ok(self.policy.check_server_url("server", &url.to_string())?);
        }
        let port = url.port_u16().unwrap_or(443);
        let candidates = self.policy.resolve(&host, port).await?;
        // One address is pinned, so pick one that answers (a name such as `localhost` may list
        // an IPv6 address the server does not listen on); with none answering, the first.
        let mut address = candidates[0];
        if candidates.len() > 1 {
            for candidate in &candidates {
                let attempt = tokio::time::timeout(self.connect_timeout(), tokio::net::TcpStream::connect(candidate));
                if matches!(attempt.await, Ok(Ok(_))) {
                    address = *candidate;
                    break;
                }
            }
        }
        let mut parts = url.into_parts();
        let authority = match address {
            std::net::SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        parts.authority =
            Some(authority.parse().map_err(|_| ConnectError::Config("the API server address is not valid".into()))?);
        config.cluster_url = http::Uri::from_parts(parts)
            .map_err(|_| ConnectError::Config("the API server address is not valid".into()))?;
        if config.tls_server_name.is_none() {
            config.tls_server_name = Some(host);
        }
        Ok(())
    }

    fn in_cluster_config(&self) -> Result<Config, ConnectError> {
        let host = self.settings.in_cluster_host.as_deref().ok_or_else(|| {
            ConnectError::Config("KUBERNETES_SERVICE_HOST is not set: kubegql is not running in a pod".into())
        })?;
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
        let url = format!("https://{host}:{}", self.settings.in_cluster_port)
            .parse()
            .map_err(|_| ConnectError::Config("the in-cluster API server address is not valid".into()))?;
        let ca = std::fs::read_to_string(&self.settings.in_cluster_ca_file).map_err(|e| {
            ConnectError::Config(format!("cannot read {}: {}", self.settings.in_cluster_ca_file.display(), e.kind()))
        })?;
        let token_file = &self.settings.in_cluster_token_file;
        if let Err(e) = std::fs::metadata(token_file) {
            return Err(ConnectError::Config(format!("cannot read {}: {}", token_file.display(), e.kind())));
        }
        let mut config = Config::new(url);
        config.root_cert = Some(pem_certificates(&ca)?);
        // kube re-reads a token file about every minute, so projected tokens that rotate keep working.
        config.auth_info = AuthInfo { token_file: Some(token_file.display().to_string()), ..Default::default() };
        Ok(config)
    }
}

fn direct_config(spec: &ClusterSpec) -> Result<Config, ConnectError> {
    let url = spec
        .api_server_url
        .as_deref()
        .ok_or_else(|| ConnectError::Config("no API server URL".into()))?
        .parse()
        .map_err(|_| ConnectError::Config("the API server URL is not valid".into()))?;
    let mut config = Config::new(url);
    if let Some(ca) = &spec.ca_data {
        config.root_cert = Some(pem_certificates(ca.expose_secret())?);
    }
    config.accept_invalid_certs = spec.insecure_skip_tls_verify;
    config.tls_server_name = spec.tls_server_name.clone();
    let mut auth = AuthInfo { token: spec.bearer_token.clone(), ..Default::default() };
    if let (Some(cert), Some(key)) = (&spec.client_certificate, &spec.client_key) {
        use base64::Engine;
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        auth.client_certificate_data = Some(b64(cert.expose_secret()));
        auth.client_key_data = Some(SecretString::from(b64(key.expose_secret())));
    }
    config.auth_info = auth;
    Ok(config)
}

/// The DER bytes of every certificate in a PEM bundle.
fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, ConnectError> {
    let certs: Vec<Vec<u8>> = pem::parse_many(text)
        .map_err(|_| ConnectError::Config("the CA data is not valid PEM".into()))?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect();
    if certs.is_empty() {
        return Err(ConnectError::Config("the CA data holds no certificate".into()));
    }
    Ok(certs)
}

/// What a connection check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub reachable: bool,
    pub server_version: Option<String>,
    pub latency_ms: Option<u64>,
    pub checked_at: chrono::DateTime<chrono::Utc>,
    pub error: Option<ConnectError>,
}

/// Asks the API server for its version: proves the network, TLS and (on most clusters) the
/// credentials, since `/version` is readable by any authenticated user.
pub async fn check(client: &Client, timeout: Duration) -> ClusterStatus {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, client.apiserver_version()).await;
    let checked_at = chrono::Utc::now();
    let latency_ms = Some(started.elapsed().as_millis() as u64);
    match result {
        Ok(Ok(info)) => ClusterStatus {
            reachable: true,
            server_version: Some(info.git_version),
            latency_ms,
            checked_at,
            error: None,
        },
        Ok(Err(err)) => {
            let error = ConnectError::from_kube(&err, timeout);
            // A 401/403 still proves the server is there.
            let reachable = matches!(error, ConnectError::Unauthorized | ConnectError::Forbidden(_));
            ClusterStatus { reachable, server_version: None, latency_ms, checked_at, error: Some(error) }
        }
        Err(_) => ClusterStatus {
            reachable: false,
            server_version: None,
            latency_ms: None,
            checked_at,
            error: Some(ConnectError::Timeout(timeout)),
        },
    }
}
