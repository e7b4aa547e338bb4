//! Changing resources the way `kubectl` does: server-side apply of YAML or JSON manifests (one or
//! many documents, `List`s included), strategic merge, merge and JSON patches, delete and scale,
//! each optionally as the API server's own dry run (`dryRun=All`). `manifest` parses (pure),
//! `send` talks to the API server, `apply` and `mutate` are the actions.

mod apply;
mod manifest;
mod mutate;
mod send;

pub use apply::{ApplyAction, ApplyOptions, DocumentResult, FieldValidation, OnError};
pub use manifest::parse_manifest;
pub use mutate::{DeleteRequest, PatchRequest, PatchType};
