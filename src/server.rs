//! Start-up: open and migrate the store, unlock the credentials, make sure an admin exists, and
//! serve. `start` returns once the listener is bound, so tests run the real server in process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::audit::AuditRecorder;
use crate::auth::{Authenticator, Bootstrap, bootstrap_admin};
use crate::clients::ClientFactory;
use crate::clients::cache::{ClientCache, SystemClock};
use crate::clients::connections::ClusterConnections;
use crate::clusters::ClusterService;
use crate::clusters::policy::ConnectionPolicy;
use crate::crypto::{CredentialCipher, KeySource, load_cipher};
use crate::graphql::{read_schema_builder, schema_builder};
use crate::http::{AppState, router};
use crate::principals::PrincipalService;
use crate::resources::ResourceService;
use crate::resources::discovery::DiscoveryCache;
use crate::settings::{KeySettings, ServeSettings, StoreSettings};
use crate::store::{Database, sqlite_file};
use crate::watch::WatchHub;

/// Opens the database named by the settings and applies pending migrations.
pub async fn open_store(settings: &StoreSettings) -> anyhow::Result<Database> {
    let db = Database::connect(&settings.database_url, settings.db_pool_size).await?;
    let applied = db.migrate().await?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied database migrations");
    }
    Ok(db)
}

/// The cipher for this store. A SQLite store gets a key file beside it when no key is
/// configured; PostgreSQL is shared by replicas, which must share a key, so it needs one given.
pub fn open_cipher(keys: &KeySettings, store: &StoreSettings) -> anyhow::Result<CredentialCipher> {
    let beside = sqlite_file(&store.database_url);
    let (cipher, source) = load_cipher(keys.key_options(), beside.as_deref()).map_err(|err| {
        if beside.is_none() && keys.master_key.is_none() && keys.master_key_file.is_none() {
            anyhow::anyhow!("a PostgreSQL store needs KUBEGQL_MASTER_KEY or --master-key-file, shared by every replica")
        } else {
            anyhow::Error::from(err)
        }
    })?;
    match source {
        KeySource::Created(path) => tracing::warn!(
            path = %path.display(),
            key_id = cipher.current_key_id(),
            "no master key configured: created a new random key file; back it up, credentials cannot be read without it"
        ),
        KeySource::File(path) => {
            tracing::info!(path = %path.display(), key_id = cipher.current_key_id(), "master key loaded from file")
        }
        KeySource::Environment => tracing::info!(key_id = cipher.current_key_id(), "master key loaded from settings"),
    }
    Ok(cipher)
}

/// A server that is listening.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The admin token generated at this start, if one was (shown once).
    pub generated_admin_token: Option<SecretString>,
    pub clusters: ClusterService,
    pub connections: ClusterConnections,
    pub watch_hub: Arc<WatchHub>,
    pub log_hub: Arc<crate::logs::LogHub>,
    pub db: Database,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    upkeep: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for task in &self.upkeep {
            task.abort();
        }
        self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Runs until the process is told to stop (Ctrl-C or SIGTERM).
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await
    }
}

pub async fn start(settings: &ServeSettings) -> anyhow::Result<RunningServer> {
    let db = open_store(&settings.store).await?;
    let cipher = Arc::new(open_cipher(&settings.keys, &settings.store)?);
    let generated_admin_token = match bootstrap_admin(&db, settings.bootstrap_admin_token.as_deref()).await? {
        Bootstrap::Generated(token) => Some(token),
        Bootstrap::FromSettings => {
            tracing::info!("created the admin principal with the configured bootstrap token");
            None
        }
        Bootstrap::Existing => None,
    };
    let client_cache = Arc::new(
        ClientCache::new(Duration::from_secs(settings.upkeep.client_ttl_secs), Arc::new(SystemClock))
            .with_capacity(settings.upkeep.client_cache_capacity),
    );
    let policy = Arc::new(ConnectionPolicy::new(&settings.connection_policy).map_err(anyhow::Error::msg)?);
    let clusters = ClusterService::new(db.clone(), cipher, Arc::clone(&policy));
    // Listen for other replicas' changes before the bulk load, so none falls between the two.
    let notices = crate::store::notify::listen(&db, &settings.store.database_url).await;
    // Prefetch every cluster record so requests for known clusters never wait on the database.
    let known = clusters.directory().refresh().await?;
    tracing::info!(clusters = known, "cluster directory loaded");
    let connections = ClusterConnections::new(
        clusters.clone(),
        ClientFactory::new(settings.clients.clone(), policy),
        Arc::clone(&client_cache),
    );
    let upkeep = connections.spawn_upkeep(&settings.upkeep);
    let discovery = Arc::new(DiscoveryCache::new());
    let mut upkeep = upkeep;
    upkeep.push(forget_discovery_of_changed_clusters(&clusters, Arc::clone(&discovery)));
    let resources = ResourceService::new(connections.clone(), discovery);
    let audit = AuditRecorder::new(db.clone(), settings.audit.key().map_err(anyhow::Error::msg)?);
    let mut watch_settings = settings.watch.clone();
    watch_settings.upstream_request_secs = settings.clients.read_timeout_secs.saturating_sub(5).clamp(1, 290) as u32;
    let watch_hub = WatchHub::new(watch_settings);
    // A changed or removed cluster ends its watches, which hold its old client.
    clusters.listen(Arc::clone(&watch_hub) as Arc<dyn crate::clusters::ClusterListener>);
    // Followed logs count against the same subscription cap, and end with their cluster too.
    let log_hub = crate::logs::LogHub::new(settings.logs.clone(), Arc::clone(&watch_hub));
    clusters.listen(Arc::clone(&log_hub) as Arc<dyn crate::clusters::ClusterListener>);
    let access_reviews = crate::resources::access_review::AccessReviews {
        cache: Default::default(),
        exec_disabled_tenants: Arc::new(settings.tunnels.exec_disabled_tenants.clone()),
    };
    let mut auth =
        Authenticator::new(db.clone()).with_outage_grace(Duration::from_secs(settings.store.outage_grace_secs));
    if let Some(path) = &settings.oidc_config {
        let oidc = Arc::new(crate::oidc::Oidc::from_file(path)?);
        // Discovered now when the issuer answers; otherwise on first use (a token, a sign-in).
        if oidc.metadata().await.is_err() {
            tracing::warn!(issuer = %oidc.config().issuer, "the OIDC issuer did not answer at start-up; trying again on use");
        }
        auth = auth.with_oidc(oidc);
    }
    if let Some(notices) = notices {
        upkeep.push(follow_other_replicas(notices, clusters.clone(), Arc::clone(&client_cache), auth.clone()));
    }
    let services = |builder: async_graphql::SchemaBuilder<_, _, _>| {
        builder
            .data(PrincipalService::new(db.clone(), auth.clone()))
            .data(audit.clone())
            .data(db.clone())
            .data(clusters.clone())
            .data(connections.clone())
            .data(resources.clone())
            .data(Arc::clone(&watch_hub))
            .data(Arc::clone(&log_hub))
            .data(access_reviews.clone())
            .finish()
    };
    let schema = services(schema_builder(&settings.limits));
    let reads = services(read_schema_builder(&settings.limits));
    let tunnels = Arc::new(crate::tunnel::OpenTunnels::default());
    let metrics = Arc::new(crate::http::metrics::Metrics::new(
        Arc::clone(&watch_hub),
        Arc::clone(&client_cache),
        db.clone(),
        Arc::clone(&tunnels),
        Arc::clone(&log_hub),
        connections.clone(),
    ));
    let state = AppState {
        schema,
        reads,
        auth,
        db: db.clone(),
        resources,
        audit,
        watch_hub: Arc::clone(&watch_hub),
        metrics,
        limits: settings.limits.clone(),
        auth_failures: Arc::new(crate::http::AuthFailures::new(settings.limits.auth_failures_per_minute)),
        tunnels,
        tunnel_settings: settings.tunnels.clone(),
        allowed_origins: settings.origins.allowed().map_err(anyhow::Error::msg)?,
    };
    let app = router(state);

    let listener = TcpListener::bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    // Streams (subscriptions, followed logs, tunnels) write small messages: send each at once
    // rather than let Nagle's algorithm hold it for the peer's delayed acknowledgement (up to
    // 40 ms a message, seen in the log benchmark).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not turn off Nagle's algorithm on a connection");
        }
    });
    let (shutdown, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    Ok(RunningServer {
        addr,
        generated_admin_token,
        clusters,
        connections,
        watch_hub,
        log_hub,
        db,
        shutdown: Some(shutdown),
        task,
        upkeep,
    })
}

/// Applies other replicas' changes to this process's caches as their notices arrive.
fn follow_other_replicas(
    mut notices: tokio::sync::mpsc::UnboundedReceiver<crate::store::notify::Change>,
    clusters: ClusterService,
    clients: Arc<ClientCache<kube::Client>>,
    auth: Authenticator,
) -> JoinHandle<()> {
    use crate::store::notify::Change;
    tokio::spawn(async move {
        while let Some(change) = notices.recv().await {
            match change {
                Change::Cluster(id) => {
                    if let Err(err) = clusters.apply_remote_change(&id).await {
                        tracing::warn!(error = %err, cluster = %id, "could not apply another replica's change");
                    }
                }
                Change::Tokens => auth.forget_all(),
                Change::SignedOut { token_digest, until } => {
                    let until = chrono::DateTime::from_timestamp(until, 0).unwrap_or_else(chrono::Utc::now);
                    auth.sessions().sign_out_digest(token_digest, until);
                    auth.forget_all();
                }
                Change::Everything => {
                    auth.forget_all();
                    if let Err(err) = clusters.directory().refresh().await {
                        tracing::warn!(error = %err, "could not refresh the cluster directory");
                    }
                    clients.invalidate_all();
                }
            }
        }
    })
}

/// A cluster that is changed may now point at another API server: its discovery is dropped.
fn forget_discovery_of_changed_clusters(clusters: &ClusterService, discovery: Arc<DiscoveryCache>) -> JoinHandle<()> {
    let mut changes = clusters.subscribe();
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(change) => discovery.invalidate(&change.id),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => discovery.clear(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Prints what a person needs to start using the server: the URLs and, once, the admin token.
/// A closed stdout (the banner piped into `head`, say) is not a reason to stop serving.
pub fn print_banner(server: &RunningServer) {
    use std::io::Write;
    let base = format!("http://{}", server.addr);
    let mut text = format!(
        "kubegql listening on {base}\n  GraphQL:   {base}/graphql  (WebSocket: ws://{}/graphql/ws)\n  GraphiQL:  {base}/graphiql\n",
        server.addr
    );
    if let Some(token) = &server.generated_admin_token {
        text.push_str(&format!(
            "\n  Admin API token (shown only now, store it safely):\n    {}\n  Send it as the header  Authorization: Bearer <token>\n  (in GraphiQL: the Headers pane, {{\"Authorization\": \"Bearer <token>\"}})\n",
            token.expose_secret()
        ));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
