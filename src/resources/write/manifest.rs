//! Manifests as `kubectl apply -f` reads them: YAML or JSON, one or many documents, `List`s
//! flattened, each checked for what an apply needs; and the order kinds are applied in. Pure:
//! no cluster is asked.

use serde_json::Value;

/// A manifest with more objects than this is refused.
pub const MAX_DOCUMENTS: usize = 1000;

/// What parsing one manifest may cost, across all its documents together: YAML nodes and parser
/// events, an alias's expansion included (sized for 16 MiB of real objects, with room to spare;
/// they also bound the memory one parse may build), aliases and anchors
/// (which Kubernetes manifests hardly use, and which a "billion laughs" document multiplies), and
/// nesting (deep enough for the OpenAPI schemas of real CRDs).
pub const MAX_NODES: usize = 2_000_000;
pub const MAX_EVENTS: usize = 4_000_000;
pub const MAX_ALIASES: usize = 1_000;
pub const MAX_DEPTH: usize = 256;

/// A parsed manifest, with what its audit record keeps of it. Parsed once: the audit summary
/// and the apply read the same documents.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub documents: Vec<Document>,
    /// Hex SHA-256 of the text.
    pub sha256: String,
    pub bytes: usize,
}

impl Manifest {
    /// Parses a manifest of at most `max_bytes` bytes (see [`parse_manifest`]).
    pub fn parse(text: &str, max_bytes: usize) -> Result<Manifest, String> {
        if text.len() > max_bytes {
            return Err(format!("the manifest has {} bytes; at most {max_bytes} are accepted", text.len()));
        }
        Ok(Manifest {
            documents: parse_manifest(text)?,
            sha256: crate::digest::sha256_hex(text.as_bytes()),
            bytes: text.len(),
        })
    }

    /// What an audit record keeps: the digest, the size and the objects named.
    pub fn summary(&self) -> Value {
        let objects: Vec<String> = self
            .documents
            .iter()
            .map(|d| match d.namespace() {
                Some(ns) => format!("{}/{}/{}", d.kind(), ns, d.name()),
                None => format!("{}/{}", d.kind(), d.name()),
            })
            .collect();
        serde_json::json!({ "sha256": self.sha256, "bytes": self.bytes, "objects": objects })
    }
}

/// What is left of the manifest's parse budget.
struct Budget {
    nodes: usize,
    events: usize,
    aliases: usize,
}

impl Budget {
    fn whole() -> Self {
        Budget { nodes: MAX_NODES, events: MAX_EVENTS, aliases: MAX_ALIASES }
    }

    /// Parses one document within what is left, and takes what it used.
    fn parse(&mut self, chunk: &str) -> Result<Value, serde_saphyr::Error> {
        let mut budget = serde_saphyr::Budget::default();
        budget.max_nodes = self.nodes;
        budget.max_events = self.events;
        budget.max_aliases = self.aliases;
        budget.max_anchors = MAX_ALIASES;
        budget.max_depth = MAX_DEPTH;
        let used = std::rc::Rc::new(std::cell::Cell::new((0usize, 0usize, 0usize)));
        let seen = std::rc::Rc::clone(&used);
        let report: serde_saphyr::options::BudgetReportCallback =
            std::rc::Rc::new(std::cell::RefCell::new(move |r: serde_saphyr::budget::BudgetReport| {
                seen.set((r.nodes, r.events, r.aliases))
            }));
        let mut options = serde_saphyr::Options::default();
        options.budget = Some(budget);
        options.budget_report_cb = Some(report);
        let value = serde_saphyr::from_str_with_options(chunk, options);
        let (nodes, events, aliases) = used.get();
        self.nodes = self.nodes.saturating_sub(nodes);
        self.events = self.events.saturating_sub(events);
        self.aliases = self.aliases.saturating_sub(aliases);
        value
    }
}

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
/// The manifest's documents together stay within one parse budget (`MAX_NODES` and the rest).
pub fn parse_manifest(text: &str) -> Result<Vec<Document>, String> {
    let mut budget = Budget::whole();
    let mut documents = Vec::new();
    let mut raw_index = 0usize;
    for (start_line, chunk) in split_documents(text) {
        if chunk.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        }) {
            continue;
        }
        // A JSON document is read as JSON, as kubectl reads it: JSON allows characters in
        // strings that YAML does not (DEL, for one). It has no aliases to budget; its size is
        // bounded by the manifest's and its depth by serde_json's limit.
        let json = chunk.trim_start().starts_with('{').then(|| serde_json::from_str::<Value>(&chunk).ok()).flatten();
        let value: Value = match json {
            Some(value) => value,
            None => budget.parse(&chunk).map_err(|err| {
                let (line, column) = err.location().map(|l| (l.line() as usize, l.column() as usize)).unwrap_or((1, 1));
                let reason = err.to_string().lines().next().unwrap_or("invalid YAML").to_owned();
                format!("document {raw_index}: line {}, column {column}: {reason}", start_line + line.saturating_sub(1))
            })?,
        };
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
        // JSON allows what YAML does not (a raw DEL in a string); kubectl reads it as JSON too.
        let json = "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"d\"}, \"data\": {\"k\": \"\u{7f}\"}}";
        assert_eq!(parse_manifest(json).unwrap()[0].object["data"]["k"], "\u{7f}");
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

    /// A ConfigMap whose data holds `aliases` anchored values and an alias of each.
    fn aliased(name: &str, aliases: usize) -> String {
        let mut doc = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata:\n");
        for i in 0..aliases {
            doc.push_str(&format!("  a{i}: &v{i} value{i}\n  b{i}: *v{i}\n"));
        }
        doc
    }

    #[test]
    fn aliases_are_budgeted_across_the_whole_manifest() {
        // Two documents of half the budget each: at the budget passes, one more is refused, though
        // each document alone is far under what one document may use.
        let half = MAX_ALIASES / 2;
        let at = format!("{}---\n{}", aliased("a", half), aliased("b", MAX_ALIASES - half));
        assert_eq!(parse_manifest(&at).unwrap().len(), 2);
        let over = format!("{}---\n{}", aliased("a", half), aliased("b", MAX_ALIASES - half + 1));
        let err = parse_manifest(&over).unwrap_err();
        assert!(err.starts_with("document 1:"), "{err}");
    }

    #[test]
    fn a_billion_laughs_is_refused() {
        let mut doc = String::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        );
        for i in 1..10 {
            let refs = vec![format!("*l{}", i - 1); 10].join(", ");
            doc.push_str(&format!("  l{i}: &l{i} [{refs}]\n"));
        }
        let err = parse_manifest(&doc).unwrap_err();
        assert!(err.contains("budget"), "{err}");
    }

    #[test]
    fn the_size_limit_takes_the_largest_manifest_and_no_more() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
        let manifest = Manifest::parse(text, text.len()).unwrap();
        assert_eq!((manifest.bytes, manifest.documents.len()), (text.len(), 1));
        assert_eq!(manifest.sha256, crate::digest::sha256_hex(text.as_bytes()));
        assert_eq!(manifest.summary()["objects"], serde_json::json!(["ConfigMap/a"]));
        let err = Manifest::parse(text, text.len() - 1).unwrap_err();
        assert!(err.contains(&format!("at most {} are accepted", text.len() - 1)), "{err}");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    const REAL: &str = include_str!("../../../tests/fixtures/ingress-nginx-v1.5.2.yaml");

    /// Every document read names what an apply needs; every refusal says why.
    fn read_or_refused(text: &str) -> Result<(), TestCaseError> {
        match Manifest::parse(text, 1 << 20) {
            Ok(manifest) => {
                prop_assert!(!manifest.documents.is_empty());
                for doc in &manifest.documents {
                    prop_assert!(!doc.api_version().is_empty() && !doc.kind().is_empty() && !doc.name().is_empty());
                }
            }
            Err(reason) => prop_assert!(!reason.trim().is_empty()),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_text_is_read_or_refused_with_a_reason(text in "(?s).{0,600}") {
            read_or_refused(&text)?;
        }

        #[test]
        fn yaml_like_text_is_read_or_refused_with_a_reason(
            lines in prop::collection::vec("(---|  |- |[a-z]{1,8}: |&a |\\*a |\\{|\\[|'|\"|#|[a-z0-9]{0,8})*", 0..24)
        ) {
            read_or_refused(&lines.join("\n"))?;
        }

        #[test]
        fn a_real_manifest_cut_or_changed_anywhere_is_read_or_refused(
            cut in 1..REAL.len(),
            at in 0..REAL.len(),
            byte in any::<u8>(),
        ) {
            let mut bytes = REAL.as_bytes()[..cut].to_vec();
            if at < bytes.len() {
                bytes[at] = byte;
            }
            read_or_refused(&String::from_utf8_lossy(&bytes))?;
        }

        #[test]
        fn generated_objects_read_back_in_order(
            objects in prop::collection::vec(("[a-z][a-z0-9-]{0,20}", prop::option::of("[a-z][a-z0-9-]{0,10}"), any_json_leafy()), 1..6),
            as_json in any::<bool>(),
        ) {
            let docs: Vec<serde_json::Value> = objects
                .iter()
                .map(|(name, ns, data)| serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": { "name": name, "namespace": ns }, "data": data
                }))
                .collect();
            let text = if as_json {
                serde_json::to_string(&serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": docs })).unwrap()
            } else {
                docs.iter().map(|d| serde_saphyr::to_string(d).unwrap()).collect::<Vec<_>>().join("---\n")
            };
            let manifest = Manifest::parse(&text, 1 << 20).map_err(TestCaseError::fail)?;
            let names: Vec<&str> = manifest.documents.iter().map(Document::name).collect();
            let expected: Vec<&str> = objects.iter().map(|(name, ..)| name.as_str()).collect();
            prop_assert_eq!(names, expected);
        }
    }

    fn any_json_leafy() -> impl Strategy<Value = serde_json::Value> {
        crate::any_json()
    }
}
