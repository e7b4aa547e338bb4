//! Changing resources the way `kubectl` does: server-side apply of YAML or JSON manifests (one or
//! many documents, `List`s included), strategic merge, merge and JSON patches, delete and scale,
//! each optionally as the API server's own dry run (`dryRun=All`). `manifest` parses (pure),
//! `send` talks to the API server, `apply` and `mutate` are the actions.

mod apply;
pub mod diff;
mod manifest;
mod mutate;
mod send;

pub use apply::{ApplyAction, ApplyOptions, DocumentResult, FieldValidation, OnError};
pub use manifest::{Manifest, parse_manifest};

/// Parses a manifest on a blocking thread (a large one takes a while), within `max_bytes` and
/// the parse budget; an invalid one is `Invalid` with the reason.
pub async fn read_manifest(text: String, max_bytes: usize) -> Result<Manifest, super::ResourceError> {
    tokio::task::spawn_blocking(move || Manifest::parse(&text, max_bytes))
        .await
        .map_err(|e| super::ResourceError::Invalid(format!("the manifest could not be read: {e}")))?
        .map_err(super::ResourceError::Invalid)
}

/// What an audit record keeps of a manifest that could not be parsed.
pub fn unreadable_manifest_summary(text: &str, reason: &str) -> serde_json::Value {
    serde_json::json!({ "sha256": crate::digest::sha256_hex(text.as_bytes()), "bytes": text.len(), "invalid": reason })
}
pub use mutate::{DeleteRequest, PatchRequest, PatchType};
