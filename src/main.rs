use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use kubegql::audit::{AuditEntry, AuditRecorder, AuditSettings};
use kubegql::clusters::ClusterService;
use kubegql::settings::{KeySettings, ServeSettings, StoreSettings};
use kubegql::{graphql, server};

#[derive(Parser)]
#[command(name = "kubegql", version, about = "GraphQL API server for managing Kubernetes clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Serve(Box<ServeSettings>),
    /// Apply pending database migrations and exit.
    Migrate(StoreSettings),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Re-seal every stored credential under the current master key. Give the old keys with
    /// --previous-master-keys.
    RotateKey {
        #[command(flatten)]
        store: StoreSettings,
        #[command(flatten)]
        keys: KeySettings,
        #[command(flatten)]
        audit: AuditSettings,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// API principals (users and service accounts) and their tokens, in any tenant.
    Principal {
        #[command(subcommand)]
        command: PrincipalCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of audit records; exits non-zero when a record was edited or deleted.
    Verify {
        #[command(flatten)]
        store: StoreSettings,
        #[command(flatten)]
        audit: AuditSettings,
        /// With a key: the last record written before the chain was keyed (older records are
        /// checked as unkeyed; every later one must be keyed).
        #[arg(long, default_value_t = 0)]
        unkeyed_until: i64,
    },
}

#[derive(Subcommand)]
enum PrincipalCommand {
    /// Create a principal and print its first API token (shown once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["ADMIN", "OPERATOR", "VIEWER"])]
        role: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long, default_value_t = false)]
        service_account: bool,
        /// Token lifetime in seconds; none means no expiry.
        #[arg(long)]
        expires_in_seconds: Option<i64>,
        #[command(flatten)]
        store: StoreSettings,
        #[command(flatten)]
        audit: AuditSettings,
    },
    /// List the principals of a tenant.
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        store: StoreSettings,
    },
    /// Revoke an API token by id.
    RevokeToken {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        token_id: String,
        #[command(flatten)]
        store: StoreSettings,
        #[command(flatten)]
        audit: AuditSettings,
    },
}

fn init_tracing() {
    let filter = EnvFilter::try_from_env("KUBEGQL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(settings) => {
            let running = server::start(&settings).await?;
            server::print_banner(&running);
            running.run_until_signal().await?;
        }
        Command::Migrate(store) => {
            let db = kubegql::store::Database::connect(&store.database_url, store.db_pool_size).await?;
            let applied = db.migrate().await?;
            if applied.is_empty() {
                println!("no pending migrations");
            }
            for version in applied {
                println!("applied {version}");
            }
        }
        Command::Schema => print!("{}", graphql::sdl()),
        Command::Audit { command: AuditCommand::Verify { store, audit, unkeyed_until } } => {
            let db = server::open_store(&store).await?;
            let key = audit.key().map_err(anyhow::Error::msg)?;
            let report = kubegql::audit::verify_chain(&db, key.as_ref(), unkeyed_until).await?;
            println!(
                "checked {} audit record(s) ({} keyed); {} unfinished",
                report.checked, report.keyed, report.unfinished
            );
            if let Some(problem) = report.broken {
                anyhow::bail!("the audit chain is broken: {problem}");
            }
            println!("the audit chain is intact");
        }
        Command::Principal { command } => principal_command(command).await?,
        Command::RotateKey { store, keys, audit } => {
            let db = server::open_store(&store).await?;
            let recorder = AuditRecorder::new(db.clone(), audit.key().map_err(anyhow::Error::msg)?);
            let cipher = Arc::new(server::open_cipher(&keys, &store)?);
            let key_id = cipher.current_key_id().to_owned();
            let entry = operator_entry("rotate-key", serde_json::json!({ "keyId": key_id }));
            let service = ClusterService::new(db, cipher, Default::default());
            let count = recorder.operator_action(entry, service.reseal_all()).await?;
            println!("re-sealed {count} cluster(s) under key {key_id}");
        }
    }
    Ok(())
}

/// The record of an operator's command-line write.
fn operator_entry(command: &str, arguments: serde_json::Value) -> AuditEntry {
    AuditEntry { field: format!("cli: {command}"), arguments, ..Default::default() }
}

async fn principal_command(command: PrincipalCommand) -> anyhow::Result<()> {
    use kubegql::auth::{Authenticator, PrincipalKind, Role};
    use kubegql::principals::PrincipalService;
    use secrecy::ExposeSecret;
    let store = match &command {
        PrincipalCommand::Create { store, .. }
        | PrincipalCommand::List { store, .. }
        | PrincipalCommand::RevokeToken { store, .. } => store,
    };
    let db = server::open_store(store).await?;
    let service = PrincipalService::new(db.clone(), Authenticator::new(db.clone()));
    let recorder = |audit: &AuditSettings| -> anyhow::Result<AuditRecorder> {
        Ok(AuditRecorder::new(db.clone(), audit.key().map_err(anyhow::Error::msg)?))
    };
    match command {
        PrincipalCommand::Create { name, role, tenant, service_account, expires_in_seconds, audit, .. } => {
            let role = Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role {role}"))?;
            let kind = if service_account { PrincipalKind::ServiceAccount } else { PrincipalKind::User };
            let entry = operator_entry(
                "principal create",
                serde_json::json!({ "tenant": tenant, "name": name, "role": role.as_str(),
                                    "serviceAccount": service_account, "expiresInSeconds": expires_in_seconds }),
            );
            let action = async {
                let principal = service.create(&tenant, &name, kind, role).await?;
                let issued = service.issue_token(&tenant, &principal.id, "initial", expires_in_seconds).await?;
                Ok::<_, anyhow::Error>((principal, issued))
            };
            let (principal, (token, row)) = recorder(&audit)?.operator_action(entry, action).await?;
            println!(
                "principal {} ({}) in tenant {} with role {}",
                principal.name,
                principal.id,
                tenant,
                role.as_str()
            );
            println!("token id {}; the token (shown only now):", row.id);
            println!("{}", token.expose_secret());
        }
        PrincipalCommand::List { tenant, .. } => {
            let mut after: Option<String> = None;
            loop {
                let page = service.page(&tenant, after.as_deref(), 500).await?;
                if page.is_empty() {
                    break;
                }
                for p in &page {
                    println!("{}\t{}\t{}\t{}", p.id, p.name, p.kind, p.role);
                }
                after = page.last().map(|p| p.name.clone());
            }
        }
        PrincipalCommand::RevokeToken { tenant, token_id, audit, .. } => {
            let entry =
                operator_entry("principal revoke-token", serde_json::json!({ "tenant": tenant, "tokenId": token_id }));
            let row = recorder(&audit)?.operator_action(entry, service.revoke_token(&tenant, &token_id)).await?;
            println!("revoked token {} ({})", row.id, row.name);
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Schema) {
        init_tracing();
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kubegql: {err:#}");
            ExitCode::FAILURE
        }
    }
}
