//! Upgrading a store made by an earlier kubegql: the data it holds survives each new migration.

mod common;

use common::{Backend, TestDb, TestServer, cli_principal, first_error, settings_for};
use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use serde_json::json;

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const OLD_TOKEN: &str = "kgq_made-before-the-upgrade-0123456789";

/// Principal names became unique per tenant, which on SQLite means rebuilding the principals
/// table under its tokens: the tokens must survive (a careless rebuild cascades their deletion).
#[tokio::test(flavor = "multi_thread")]
async fn upgrading_sqlite_keeps_principals_and_their_tokens() {
    let db = TestDb::new(Backend::Sqlite).await;
    {
        let mut conn = SqliteConnection::establish(&db.url).unwrap();
        conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
        // The store as the first release left it: only the first migration.
        conn.run_next_migration(SQLITE).unwrap();
        conn.batch_execute(&format!(
            "INSERT INTO principals (id, name, kind, role, tenant, created_at)
                 VALUES ('p1', 'old-admin', 'USER', 'ADMIN', 'default', '2026-11-01 00:00:00');
             INSERT INTO api_tokens (id, principal_id, name, token_sha256, created_at)
                 VALUES ('t1', 'p1', 'initial', '{}', '2026-11-01 00:00:00');",
            kubegql::auth::token_digest(OLD_TOKEN)
        ))
        .unwrap();
    }

    // Starting the new server runs the pending migrations.
    let server = TestServer::start_with(settings_for(&db)).await;
    let me = server.gql_as(OLD_TOKEN, &[], "{ viewer { name tenant role } }", json!({})).await;
    assert_eq!(me["data"]["viewer"], json!({ "name": "old-admin", "tenant": "default", "role": "ADMIN" }), "{me}");

    // The same name is free in another tenant, taken in its own.
    cli_principal(&db, "red", "old-admin", "VIEWER");
    let dup = server
        .gql_as(
            OLD_TOKEN,
            &[],
            "mutation { createPrincipal(input: { name: \"old-admin\", role: VIEWER }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(first_error(&dup).0, "CONFLICT", "{dup}");
}
