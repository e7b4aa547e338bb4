//! Manifests as `kubectl apply -f` reads them: YAML or JSON, one or many documents, `List`s
//! flattened, each checked for what an apply needs; and the order kinds are applied in. Pure:
//! no cluster is asked.

use serde_json::Value;

/// A manifest larger than this is refused (the HTTP layer's body limit applies first).
pub const MAX_DOCUMENTS: usize = 1000;

/// One document of a manifest, as parsed.
#[derive(Debug, Clone)]
pub struct Document {
    /// 0-based position in the manifest (items of a `List` count one each).
    pub index: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    pub object: Value,
}

impl Document {
    fn text(&self, pointer: &str) -> Option<&str> {
        self.object.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    pub fn api_version(&self) -> &str {
        self.text("/apiVersion").unwrap_or_default()
    }
    pub fn kind(&self) -> &str {
        self.text("/kind").unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.text("/metadata/name").unwrap_or_default()
    }
    pub fn namespace(&self) -> Option<&str> {
        self.text("/metadata/namespace")
    }
    pub(super) fn group_version(&self) -> (&str, &str) {
        match self.api_version().split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", self.api_version()),
        }
    }
}

/// Splits a YAML (or JSON) text into documents, flattening `List` kinds, and checks that each
/// names an apiVersion, a kind and a name. Errors give the document index, line and column.
pub fn parse_manifest(text: &str) -> Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    let mut raw_index = 0usize;
    for (start_line, chunk) in split_documents(text) {
        if chunk.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        }) {
            continue;
        }
        let value: Value = serde_saphyr::from_str(&chunk).map_err(|err| {
            let (line, column) = err.location().map(|l| (l.line() as usize, l.column() as usize)).unwrap_or((1, 1));
            let reason = err.to_string().lines().next().unwrap_or("invalid YAML").to_owned();
            format!("document {raw_index}: line {}, column {column}: {reason}", start_line + line.saturating_sub(1))
        })?;
        raw_index += 1;
        let items = match value {
            Value::Null => continue,
            Value::Object(ref map)
                if map.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"))
                    && map.get("items").is_some() =>
            {
                match map.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    _ => return Err(format!("document {}: line {start_line}: items must be a list", raw_index - 1)),
                }
            }
            other => vec![other],
        };
        for object in items {
            let document = Document { index: documents.len(), line: start_line, object };
            check_document(&document)?;
            documents.push(document);
            if documents.len() > MAX_DOCUMENTS {
                return Err(format!("a manifest may hold at most {MAX_DOCUMENTS} objects"));
            }
        }
    }
    if documents.is_empty() {
        return Err("the manifest holds no object".into());
    }
    Ok(documents)
}

fn check_document(doc: &Document) -> Result<(), String> {
    let at = format!("document {} (line {})", doc.index, doc.line);
    if !doc.object.is_object() {
        return Err(format!("{at}: is not a mapping"));
    }
    if doc.api_version().is_empty() {
        return Err(format!("{at}: has no apiVersion"));
    }
    if doc.kind().is_empty() {
        return Err(format!("{at}: has no kind"));
    }
    if doc.name().is_empty() {
        if doc.object.pointer("/metadata/generateName").is_some() {
            return Err(format!(
                "{at}: {} uses generateName, which server-side apply cannot do; give a name",
                doc.kind()
            ));
        }
        return Err(format!("{at}: {} has no metadata.name", doc.kind()));
    }
    Ok(())
}

/// Lines starting a new document (`---`, optionally followed by a comment or content).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 1usize;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            if !current.is_empty() {
                out.push((start, std::mem::take(&mut current)));
            }
            start = i + 2;
            let rest = line[3..].trim_start();
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
            continue;
        }
        if line == "..." {
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.is_empty() {
        out.push((start, current));
    }
    out
}

/// Kinds applied before the others, as kubectl and Helm order them: what other objects live in
/// or are defined by comes first.
pub(super) fn apply_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "PriorityClass" | "StorageClass" | "IngressClass" | "RuntimeClass" => 2,
        "ServiceAccount" | "Secret" | "ConfigMap" => 3,
        "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" => 4,
        "PersistentVolume" | "PersistentVolumeClaim" => 5,
        "Service" => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_lists_and_positions() {
        let text = "# leading comment\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n";
        let docs = parse_manifest(text).unwrap();
        let names: Vec<&str> = docs.iter().map(|d| d.name()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        assert_eq!(docs[1].line, 8);
        assert_eq!(docs[2].index, 2);
        let json = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}"#;
        assert_eq!(parse_manifest(json).unwrap()[0].name(), "j");
    }

    #[test]
    fn malformed_yaml_names_document_line_and_column() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n";
        let err = parse_manifest(text).unwrap_err();
        assert!(err.starts_with("document 1: line "), "{err}");
        assert!(err.contains("column"), "{err}");
        let line: usize = err["document 1: line ".len()..].split(',').next().unwrap().parse().unwrap();
        assert!((9..=10).contains(&line), "{err}");
    }

    #[test]
    fn missing_parts_and_empty_manifests() {
        assert!(parse_manifest("").unwrap_err().contains("no object"));
        assert!(parse_manifest("# only a comment\n---\n").unwrap_err().contains("no object"));
        assert!(parse_manifest("apiVersion: v1\nmetadata: {name: x}\n").unwrap_err().contains("no kind"));
        assert!(
            parse_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap_err().contains("no metadata.name")
        );
        assert!(parse_manifest("kind: ConfigMap\nmetadata: {name: x}\n").unwrap_err().contains("no apiVersion"));
        assert!(parse_manifest("- a\n- b\n").unwrap_err().contains("not a mapping"));
    }

    #[test]
    fn kubectl_order() {
        let mut kinds = vec!["Deployment", "ConfigMap", "CustomResourceDefinition", "Namespace", "Widget"];
        kinds.sort_by_key(|k| apply_rank(k));
        assert_eq!(kinds, vec!["Namespace", "CustomResourceDefinition", "ConfigMap", "Deployment", "Widget"]);
    }
}
