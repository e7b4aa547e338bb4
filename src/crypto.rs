//! Envelope encryption of stored credentials (`CredentialCipher`) and loading of the master key.
//!
//! Each secret column holds `version(1) || nonce(24) || ciphertext || tag(16)`, sealed with
//! XChaCha20-Poly1305 under the master key named by the row's `key_id`. The associated data binds an
//! envelope to its row and column, so a ciphertext copied into another row or column fails to open.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use orion::hazardous::aead::xchacha20poly1305::{self, Nonce, SecretKey};
use orion::hazardous::stream::xchacha20::XCHACHA_NONCESIZE;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const ENVELOPE_VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("the master key must be base64 of exactly 32 bytes ({0})")]
    BadKey(String),
    #[error("cannot read the master key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("no master key with id {key_id} is configured; it sealed the credentials of {owner}")]
    UnknownKey { key_id: String, owner: String },
    #[error("the {column} of {owner} cannot be decrypted with key {key_id}: wrong master key or tampered data")]
    Open { owner: String, column: String, key_id: String },
    #[error("encryption failed")]
    Seal,
}

/// A 32-byte key and the id derived from it. The key bytes never appear in `Debug`.
struct MasterKey {
    id: String,
    key: SecretKey,
}

impl MasterKey {
    fn from_base64(text: &str) -> Result<Self, CipherError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| CipherError::BadKey("not valid base64".into()))?;
        if bytes.len() != KEY_LEN {
            return Err(CipherError::BadKey(format!("got {} bytes", bytes.len())));
        }
        let key = SecretKey::from_slice(&bytes).map_err(|_| CipherError::BadKey("rejected".into()))?;
        Ok(Self { id: key_id_of(&bytes), key })
    }
}

/// The key id is a short digest of the key: stable, public, and useless for recovering the key.
fn key_id_of(key: &[u8]) -> String {
    let digest = Sha256::new().chain_update(b"kubegql master key id\0").chain_update(key).finalize();
    crate::digest::hex(&digest[..8])
}

/// Where a sealed value belongs: the owner (for example `cluster 3f2a...`) and the column.
#[derive(Clone, Copy)]
pub struct SealContext<'a> {
    pub owner_kind: &'a str,
    pub owner_id: &'a str,
    pub owner_label: &'a str,
    pub column: &'a str,
}

impl SealContext<'_> {
    fn associated_data(&self, key_id: &str) -> Vec<u8> {
        format!("kubegql/v1\0{}\0{}\0{}\0{}", self.owner_kind, self.owner_id, self.column, key_id).into_bytes()
    }

    fn owner(&self) -> String {
        format!("{} {} ({})", self.owner_kind, self.owner_label, self.owner_id)
    }
}

/// Seals and opens credential envelopes. Holds the current key and any earlier keys still needed
/// to open envelopes written before a rotation.
pub struct CredentialCipher {
    current: MasterKey,
    previous: HashMap<String, MasterKey>,
}

impl fmt::Debug for CredentialCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCipher")
            .field("current_key_id", &self.current.id)
            .field("previous_key_ids", &self.previous.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CredentialCipher {
    pub fn from_base64(current: &str, previous: &[String]) -> Result<Self, CipherError> {
        let current = MasterKey::from_base64(current)?;
        let mut older = HashMap::new();
        for text in previous.iter().filter(|t| !t.trim().is_empty()) {
            let key = MasterKey::from_base64(text)?;
            if key.id != current.id {
                older.insert(key.id.clone(), key);
            }
        }
        Ok(Self { current, previous: older })
    }

    /// A fresh random key, base64-encoded, for a new key file.
    pub fn generate_key_base64() -> Result<SecretString, CipherError> {
        let mut bytes = [0u8; KEY_LEN];
        orion::util::secure_rand_bytes(&mut bytes).map_err(|_| CipherError::Seal)?;
        Ok(SecretString::from(STANDARD.encode(bytes)))
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    pub fn knows_key(&self, key_id: &str) -> bool {
        self.key(key_id).is_some()
    }

    fn key(&self, key_id: &str) -> Option<&MasterKey> {
        if self.current.id == key_id { Some(&self.current) } else { self.previous.get(key_id) }
    }

    /// Seals `plaintext` under the current key.
    pub fn seal(&self, ctx: SealContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        let mut nonce_bytes = [0u8; XCHACHA_NONCESIZE];
        orion::util::secure_rand_bytes(&mut nonce_bytes).map_err(|_| CipherError::Seal)?;
        let nonce = Nonce::from_slice(&nonce_bytes).map_err(|_| CipherError::Seal)?;
        let mut out = vec![0u8; 1 + XCHACHA_NONCESIZE + plaintext.len() + TAG_LEN];
        out[0] = ENVELOPE_VERSION;
        out[1..1 + XCHACHA_NONCESIZE].copy_from_slice(&nonce_bytes);
        let ad = ctx.associated_data(&self.current.id);
        xchacha20poly1305::seal(&self.current.key, &nonce, plaintext, Some(&ad), &mut out[1 + XCHACHA_NONCESIZE..])
            .map_err(|_| CipherError::Seal)?;
        Ok(out)
    }

    /// Opens an envelope sealed under `key_id` for the same owner and column.
    pub fn open(&self, ctx: SealContext<'_>, key_id: &str, envelope: &[u8]) -> Result<SecretString, CipherError> {
        let key = self
            .key(key_id)
            .ok_or_else(|| CipherError::UnknownKey { key_id: key_id.to_owned(), owner: ctx.owner() })?;
        let failed =
            || CipherError::Open { owner: ctx.owner(), column: ctx.column.to_owned(), key_id: key_id.to_owned() };
        if envelope.len() < 1 + XCHACHA_NONCESIZE + TAG_LEN || envelope[0] != ENVELOPE_VERSION {
            return Err(failed());
        }
        let nonce = Nonce::from_slice(&envelope[1..1 + XCHACHA_NONCESIZE]).map_err(|_| failed())?;
        let sealed = &envelope[1 + XCHACHA_NONCESIZE..];
        let mut plain = vec![0u8; sealed.len() - TAG_LEN];
        let ad = ctx.associated_data(key_id);
        xchacha20poly1305::open(&key.key, &nonce, sealed, Some(&ad), &mut plain).map_err(|_| failed())?;
        let text = String::from_utf8(plain).map_err(|_| failed())?;
        Ok(SecretString::from(text))
    }
}

/// How the master key was obtained, so start-up can say so once.
#[derive(Debug, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
    Created(PathBuf),
}

/// Where the master key comes from: the key itself (base64), or a file holding it; and earlier
/// keys kept to open what they sealed.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyOptions<'a> {
    pub master_key: Option<&'a str>,
    pub master_key_file: Option<&'a Path>,
    pub previous_master_keys: &'a [String],
}

/// Loads the master key. When none is configured and `create_beside` is given (the database
/// path), a random key file is created there with mode 0600 and used on later starts.
pub fn load_cipher(
    settings: KeyOptions<'_>,
    create_beside: Option<&Path>,
) -> Result<(CredentialCipher, KeySource), CipherError> {
    if let Some(text) = settings.master_key {
        let cipher = CredentialCipher::from_base64(text, settings.previous_master_keys)?;
        return Ok((cipher, KeySource::Environment));
    }
    let (path, may_create) = match (settings.master_key_file, create_beside) {
        (Some(path), _) => (path.to_path_buf(), false),
        (None, Some(beside)) => (default_key_path(beside), true),
        (None, None) => {
            return Err(CipherError::BadKey("no master key: set KUBEGQL_MASTER_KEY or --master-key-file".into()));
        }
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let cipher = CredentialCipher::from_base64(&text, settings.previous_master_keys)?;
            Ok((cipher, KeySource::File(path)))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && may_create => {
            let key = CredentialCipher::generate_key_base64()?;
            write_private_file(&path, key.expose_secret())
                .map_err(|e| CipherError::KeyFile { path: path.clone(), reason: e.to_string() })?;
            let cipher = CredentialCipher::from_base64(key.expose_secret(), settings.previous_master_keys)?;
            Ok((cipher, KeySource::Created(path)))
        }
        Err(err) => Err(CipherError::KeyFile { path, reason: err.to_string() }),
    }
}

/// `kubegql.db` → `kubegql.db.key`, in the same directory.
pub fn default_key_path(database_path: &Path) -> PathBuf {
    let mut name = database_path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".key");
    database_path.with_file_name(name)
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(column: &str) -> SealContext<'_> {
        SealContext { owner_kind: "cluster", owner_id: "id-1", owner_label: "prod", column }
    }

    fn key() -> String {
        STANDARD.encode([7u8; 32])
    }

    #[test]
    fn round_trip_and_binding_to_column() {
        let cipher = CredentialCipher::from_base64(&key(), &[]).unwrap();
        let sealed = cipher.seal(ctx("bearer_token"), b"s3cret").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        let id = cipher.current_key_id().to_owned();
        let opened = cipher.open(ctx("bearer_token"), &id, &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "s3cret");
        let err = cipher.open(ctx("ca_data"), &id, &sealed).unwrap_err();
        assert!(matches!(err, CipherError::Open { .. }));
        let other_row = SealContext { owner_id: "id-2", ..ctx("bearer_token") };
        assert!(cipher.open(other_row, &id, &sealed).is_err());
    }

    #[test]
    fn tampering_and_wrong_key_are_errors_naming_owner_and_key() {
        let cipher = CredentialCipher::from_base64(&key(), &[]).unwrap();
        let id = cipher.current_key_id().to_owned();
        let mut sealed = cipher.seal(ctx("bearer_token"), b"s3cret").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        let msg = cipher.open(ctx("bearer_token"), &id, &sealed).unwrap_err().to_string();
        assert!(msg.contains("prod") && msg.contains(&id), "{msg}");
        assert!(!msg.contains("s3cret"));

        let other = CredentialCipher::from_base64(&STANDARD.encode([9u8; 32]), &[]).unwrap();
        let sealed = cipher.seal(ctx("bearer_token"), b"s3cret").unwrap();
        let err = other.open(ctx("bearer_token"), &id, &sealed).unwrap_err();
        assert!(matches!(err, CipherError::UnknownKey { .. }), "{err}");
        assert!(cipher.open(ctx("bearer_token"), &id, &sealed[..10]).is_err());
    }

    #[test]
    fn previous_keys_still_open_old_envelopes() {
        let old = CredentialCipher::from_base64(&key(), &[]).unwrap();
        let sealed = old.seal(ctx("ca_data"), b"pem").unwrap();
        let rotated = CredentialCipher::from_base64(&STANDARD.encode([1u8; 32]), &[key()]).unwrap();
        assert_ne!(rotated.current_key_id(), old.current_key_id());
        let opened = rotated.open(ctx("ca_data"), old.current_key_id(), &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "pem");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(CredentialCipher::from_base64("not base64!", &[]).is_err());
        assert!(CredentialCipher::from_base64(&STANDARD.encode([1u8; 16]), &[]).is_err());
    }

    #[test]
    fn key_file_is_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kubegql.db");
        let settings = KeyOptions::default();
        let (first, source) = load_cipher(settings, Some(&db)).unwrap();
        let path = dir.path().join("kubegql.db.key");
        assert_eq!(source, KeySource::Created(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (second, source) = load_cipher(settings, Some(&db)).unwrap();
        assert_eq!(source, KeySource::File(path));
        assert_eq!(first.current_key_id(), second.current_key_id());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let cipher = CredentialCipher::from_base64(&key(), &[]).unwrap();
        let text = format!("{cipher:?}");
        assert!(!text.contains(&key()));
        assert!(text.contains(cipher.current_key_id()));
    }
}
