//! The store suite: the same tests against a SQLite file and a real PostgreSQL database.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Backend, TEST_CA_PEM, TestDb, test_key};
use kubegql::clusters::{ClusterError, ClusterPatch, ClusterService, ClusterSpec, ConnectionMode};
use kubegql::crypto::{CipherError, CredentialCipher};
use kubegql::store::Database;
use secrecy::{ExposeSecret, SecretString};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.store-suite-bearer-token-7f3a";

async fn open(db: &TestDb) -> Database {
    let database = Database::connect(&db.url, 4).await.expect("connect");
    database.migrate().await.expect("migrate");
    database
}

fn service_for(db: Database, cipher: Arc<CredentialCipher>) -> ClusterService {
    ClusterService::new(db, cipher, Default::default())
}

fn cipher(key: &str, previous: &[String]) -> Arc<CredentialCipher> {
    Arc::new(CredentialCipher::from_base64(key, previous).unwrap())
}

fn direct(name: &str) -> ClusterSpec {
    ClusterSpec {
        name: name.into(),
        mode: ConnectionMode::Direct,
        kubeconfig_path: None,
        kubeconfig_context: None,
        kubeconfig: None,
        api_server_url: Some("https://127.0.0.1:6443".into()),
        bearer_token: Some(SecretString::from(TOKEN)),
        ca_data: Some(SecretString::from(TEST_CA_PEM)),
        client_certificate: None,
        client_key: None,
        tls_server_name: None,
        insecure_skip_tls_verify: false,
        default_namespace: Some("default".into()),
        impersonate_caller: false,
        labels: BTreeMap::from([("env".into(), "test".into())]),
    }
}

async fn migrations_are_idempotent(backend: Backend) {
    let db = TestDb::new(backend).await;
    let database = open(&db).await;
    assert!(database.migrate().await.unwrap().is_empty(), "second run applies nothing");
    database.ping().await.unwrap();
}

async fn create_get_update_delete(backend: Backend) {
    let db = TestDb::new(backend).await;
    let service = service_for(open(&db).await, cipher(&test_key(), &[]));
    let created = service.create("default", direct("alpha")).await.unwrap();
    let fetched = service.get(&created.id, "default").await.unwrap();
    assert_eq!(*fetched, created, "a row reads back exactly as written");
    assert!(created.bearer_token_sealed.is_some());
    assert_eq!(
        created.ca_fingerprint_sha256.as_deref(),
        Some("A9:41:0A:28:61:6C:EA:F9:0F:AD:13:41:F2:EB:A8:7C:AC:61:1C:07:8E:0E:21:F4:59:11:39:73:8E:44:28:0A"),
        "fingerprint equals `openssl x509 -fingerprint -sha256` of the fixture"
    );

    let spec = service.open(&fetched).unwrap();
    assert_eq!(spec.bearer_token.unwrap().expose_secret(), TOKEN);
    assert_eq!(spec.ca_data.unwrap().expose_secret(), TEST_CA_PEM);

    // Absent fields are kept, including sealed credentials.
    let patch = ClusterPatch { default_namespace: Some(Some("apps".into())), ..Default::default() };
    let updated = service.update(&created.id, "default", patch).await.unwrap();
    assert_eq!(updated.default_namespace.as_deref(), Some("apps"));
    assert_eq!(service.open(&updated).unwrap().bearer_token.unwrap().expose_secret(), TOKEN);
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);

    // Clearing the CA clears its fingerprint with it.
    let patch = ClusterPatch { ca_data: Some(None), ..Default::default() };
    let updated = service.update(&created.id, "default", patch).await.unwrap();
    assert!(updated.ca_data_sealed.is_none() && updated.ca_fingerprint_sha256.is_none());

    let deleted = service.delete(&created.id, "default").await.unwrap();
    assert_eq!(deleted.id, created.id);
    assert!(matches!(service.get(&created.id, "default").await, Err(ClusterError::NotFound(_))));
    assert!(matches!(service.delete(&created.id, "default").await, Err(ClusterError::NotFound(_))));
}

async fn duplicate_names_conflict(backend: Backend) {
    let db = TestDb::new(backend).await;
    let database = open(&db).await;
    let service = service_for(database.clone(), cipher(&test_key(), &[]));
    service.create("default", direct("dup")).await.unwrap();
    let err = service.create("default", direct("dup")).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let other = service.create("default", direct("other")).await.unwrap();
    let rename = ClusterPatch { name: Some("dup".into()), ..Default::default() };
    assert!(service.update(&other.id, "default", rename).await.is_err());
    assert_eq!(database.count_clusters().await.unwrap(), 2);
    assert_eq!(service.get(&other.id, "default").await.unwrap().name, "other");
}

async fn keyset_pages_cover_everything_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let database = open(&db).await;
    let service = service_for(database.clone(), cipher(&test_key(), &[]));
    for i in 0..23 {
        service.create("default", direct(&format!("c{i:02}"))).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = database.clusters_page("default", after.as_deref(), 5).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.name.clone());
        seen.extend(page.into_iter().map(|r| r.name));
    }
    let expected: Vec<String> = (0..23).map(|i| format!("c{i:02}")).collect();
    assert_eq!(seen, expected);
}

async fn wrong_key_and_tampering_are_clear_errors(backend: Backend) {
    let db = TestDb::new(backend).await;
    let database = open(&db).await;
    let service = service_for(database.clone(), cipher(&test_key(), &[]));
    let row = service.create("default", direct("sealed")).await.unwrap();

    let other_key = base64_key(9);
    let wrong = service_for(database.clone(), cipher(&other_key, &[]));
    let err = wrong.update(&row.id, "default", ClusterPatch::default()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClusterError::Cipher(CipherError::UnknownKey { .. })), "{text}");
    assert!(text.contains("sealed") && text.contains(&row.key_id), "names cluster and key: {text}");
    assert!(!text.contains(TOKEN));
    assert_eq!(*service.get(&row.id, "default").await.unwrap(), row, "a failed update overwrites nothing");
    assert_eq!(database.cluster(&row.id).await.unwrap().unwrap(), row, "nor in the database");

    let mut tampered = row.clone();
    let sealed = tampered.bearer_token_sealed.as_mut().unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 0x01;
    database.update_cluster(&tampered).await.unwrap();
    service.directory().refresh().await.unwrap();
    let err = service.update(&row.id, "default", ClusterPatch::default()).await.unwrap_err();
    assert!(matches!(err, ClusterError::Cipher(CipherError::Open { .. })), "{err}");
    assert!(err.to_string().contains("bearer_token"));

    // An envelope moved to another row does not open there.
    let second = service.create("default", direct("second")).await.unwrap();
    let mut moved = second.clone();
    moved.bearer_token_sealed = row.bearer_token_sealed.clone();
    database.update_cluster(&moved).await.unwrap();
    service.directory().refresh().await.unwrap();
    assert!(service.open(&service.get(&second.id, "default").await.unwrap()).is_err());
}

fn base64_key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

async fn rotation_reseals_under_the_new_key(backend: Backend) {
    let db = TestDb::new(backend).await;
    let database = open(&db).await;
    let old = service_for(database.clone(), cipher(&test_key(), &[]));
    let row = old.create("default", direct("rotate-me")).await.unwrap();

    let new_key = base64_key(3);
    let rotated = service_for(database.clone(), cipher(&new_key, &[test_key()]));
    assert_eq!(rotated.reseal_all().await.unwrap(), 1);
    assert_eq!(rotated.reseal_all().await.unwrap(), 0, "already under the current key");

    let after = rotated.get(&row.id, "default").await.unwrap();
    assert_ne!(after.key_id, row.key_id);
    assert_ne!(after.bearer_token_sealed, row.bearer_token_sealed);
    let only_new = service_for(database, cipher(&new_key, &[]));
    assert_eq!(only_new.open(&after).unwrap().bearer_token.unwrap().expose_secret(), TOKEN);
}

/// The stored bytes (the SQLite file, or a pg_dump) never contain a credential in the clear.
async fn secrets_do_not_reach_the_database_in_clear(backend: Backend) {
    let db = TestDb::new(backend).await;
    let database = open(&db).await;
    let service = service_for(database.clone(), cipher(&test_key(), &[]));
    service.create("default", direct("secretive")).await.unwrap();
    let ca_body = TEST_CA_PEM.lines().nth(1).unwrap();
    let dump: Vec<u8> = match backend {
        Backend::Sqlite => {
            drop(database);
            let file = db.sqlite_file.as_ref().unwrap();
            let mut bytes = std::fs::read(file).unwrap();
            for suffix in ["-wal", "-shm"] {
                if let Ok(more) = std::fs::read(format!("{}{suffix}", file.display())) {
                    bytes.extend(more);
                }
            }
            bytes
        }
        Backend::Postgres => {
            let output =
                std::process::Command::new("pg_dump").arg("--dbname").arg(&db.url).output().expect("pg_dump runs");
            assert!(output.status.success(), "pg_dump: {}", String::from_utf8_lossy(&output.stderr));
            output.stdout
        }
    };
    let contains = |needle: &str| dump.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains("secretive"), "the dump does hold the cluster row");
    assert!(!contains(TOKEN), "bearer token found in clear");
    assert!(!contains(ca_body), "CA text found in clear");
}

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

store_suite!(
    migrations_are_idempotent,
    create_get_update_delete,
    duplicate_names_conflict,
    keyset_pages_cover_everything_once,
    wrong_key_and_tampering_are_clear_errors,
    rotation_reseals_under_the_new_key,
    secrets_do_not_reach_the_database_in_clear,
);
