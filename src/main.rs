use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use kubegql::clients::cache::{ClientCache, SystemClock};
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
        Command::RotateKey { store, keys } => {
            let db = server::open_store(&store).await?;
            let cipher = Arc::new(server::open_cipher(&keys, &store)?);
            let key_id = cipher.current_key_id().to_owned();
            let cache = Arc::new(ClientCache::new(Duration::ZERO, Arc::new(SystemClock)));
            let count = ClusterService::new(db, cipher, cache).reseal_all().await?;
            println!("re-sealed {count} cluster(s) under key {key_id}");
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
