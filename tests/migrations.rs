//! Upgrading a store made by an earlier kubegql: the data it holds survives each new migration.

use crate::common;

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

/// The audit table is rebuilt on SQLite to accept ABANDONED: its records keep their chain.
#[tokio::test(flavor = "multi_thread")]
async fn upgrading_sqlite_keeps_the_audit_chain() {
    use kubegql::store::audit::AuditRow;
    let db = TestDb::new(Backend::Sqlite).await;
    {
        let mut conn = SqliteConnection::establish(&db.url).unwrap();
        // The store as the release before this one left it: the first two migrations.
        conn.run_next_migration(SQLITE).unwrap();
        conn.run_next_migration(SQLITE).unwrap();
    }
    {
        // One completed record, written as that release wrote them.
        let store = kubegql::store::Database::connect(&db.url, 1).await.unwrap();
        let mut row = AuditRow {
            id: "r1".into(),
            seq: None,
            started_at: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap().and_hms_opt(0, 0, 0).unwrap(),
            request_id: "q1".into(),
            principal_id: None,
            principal_name: Some("old-admin".into()),
            tenant: Some("default".into()),
            impersonated: None,
            cluster_id: None,
            operation: None,
            field: "createCluster".into(),
            verb: None,
            api_group: None,
            api_version: None,
            kind: None,
            namespace: None,
            name: None,
            dry_run: false,
            outcome: "PENDING".into(),
            error_code: None,
            duration_ms: None,
            arguments: "{}".into(),
            prev_hash: None,
            hash: None,
        };
        store.insert_audit(&row).await.unwrap();
        row = store.complete_audit("r1", "SUCCESS", None, 3, &|r: &AuditRow| r.expected_hash()).await.unwrap();
        assert_eq!(row.seq, Some(1));
    }
    // Starting the new server runs the pending migration; a new record joins the old chain.
    let server = TestServer::start_with(settings_for(&db)).await;
    server.gql_ok("mutation { createCluster(input: { name: \"after\", mode: IN_CLUSTER }) { id } }", json!({})).await;
    server.server.stop().await.unwrap();
    let store = kubegql::store::Database::connect(&db.url, 1).await.unwrap();
    let report = kubegql::audit::verify_chain(&store, None, 0).await.unwrap();
    assert_eq!((report.checked, report.broken.as_deref(), report.unfinished), (2, None, 0), "{report:?}");
}
