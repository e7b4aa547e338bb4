//! A page of Kubernetes objects as a Relay connection (`ResourceConnection`).
//!
//! A page holds up to 500 objects, and resolving each of their fields as its own future (as the
//! generic executor does) costs more than reading the fields. So `edges` and `nodes` build the
//! page's value directly from the selection set, in one pass, when every selected field is a
//! plain read of the object: aliases, fragments and repeated fields are honoured as the
//! executor honours them (`@skip`/`@include` are already applied to the document by then).
//! A selection with `events` (which calls the API server per object), or an object that cannot be
//! read, goes through the generic executor instead, which also reports errors with their paths.

use std::borrow::Cow;

use async_graphql::connection::PageInfo;
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, Name, Object, OutputType, Positioned, ScalarType, ServerResult, Value};

use super::object::{Meta, Resource};
use super::raw::{RawJsonOutput, raw_value};
use super::resources::ListInfo;

/// One page of objects.
pub struct ResourceConnection {
    has_previous_page: bool,
    has_next_page: bool,
    /// The cursor of every edge: Kubernetes continues after a page, never from inside one.
    cursor: String,
    items: Vec<Resource>,
    info: ListInfo,
}

impl ResourceConnection {
    pub fn new(
        has_previous_page: bool,
        has_next_page: bool,
        cursor: String,
        items: Vec<Resource>,
        info: ListInfo,
    ) -> Self {
        Self { has_previous_page, has_next_page, cursor, items, info }
    }

    /// A page with nothing in it.
    pub fn empty(has_previous_page: bool) -> Self {
        Self::new(has_previous_page, false, String::new(), Vec::new(), ListInfo::default())
    }

    fn page_info_value(&self) -> PageInfo {
        // A filtered list may come back empty with a continue token; the cursor is given then
        // too, or the client could not go on.
        let cursor = (!self.items.is_empty() || self.has_next_page).then(|| self.cursor.clone());
        PageInfo {
            has_previous_page: self.has_previous_page,
            has_next_page: self.has_next_page,
            start_cursor: cursor.clone(),
            end_cursor: cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_page_with_more_to_come_still_gives_its_cursor() {
        let info =
            ResourceConnection::new(true, true, "next".into(), Vec::new(), ListInfo::default()).page_info_value();
        assert!(info.has_next_page);
        assert_eq!(info.end_cursor.as_deref(), Some("next"));
        let last = ResourceConnection::empty(true).page_info_value();
        assert!(!last.has_next_page);
        assert_eq!(last.end_cursor, None);
    }
}

#[Object]
impl ResourceConnection {
    /// Information to aid in pagination.
    async fn page_info(&self) -> PageInfo {
        self.page_info_value()
    }
    /// A list of edges.
    async fn edges(&self) -> Edges<'_> {
        Edges(self)
    }
    /// A list of nodes.
    async fn nodes(&self) -> Nodes<'_> {
        Nodes(&self.items)
    }
    /// How many items follow this page, when the API server says (it does not for
    /// selector-filtered lists).
    async fn remaining_item_count(&self) -> Option<i64> {
        self.info.remaining_item_count
    }
    /// The collection's resourceVersion when the first page was read.
    async fn resource_version(&self) -> Option<&str> {
        self.info.resource_version.as_deref()
    }
}

/// One object of a page and the page's cursor.
pub struct ResourceEdge<'a> {
    cursor: &'a str,
    node: &'a Resource,
}

/// An edge in a connection.
#[Object]
impl ResourceEdge<'_> {
    /// The item at the end of the edge
    async fn node(&self) -> &Resource {
        self.node
    }
    /// A cursor for use in pagination
    async fn cursor(&self) -> &str {
        self.cursor
    }
}

/// `[ResourceEdge!]!`, resolved in one pass when it can be.
pub struct Edges<'a>(&'a ResourceConnection);

impl OutputType for Edges<'_> {
    fn type_name() -> Cow<'static, str> {
        <Vec<ResourceEdge<'static>> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<ResourceEdge<'static>> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let page = self.0;
        if ctx.data_opt::<RawJsonOutput>().is_some()
            && let Some(text) = text::edges(ctx, &field.node.selection_set.node, &page.items, &page.cursor)
        {
            return Ok(raw_value(text));
        }
        let direct = page.items.iter().map(|item| {
            let mut out = IndexMap::new();
            edge_fields(ctx, &field.node.selection_set.node, item, &page.cursor, &mut out).map(|()| Value::Object(out))
        });
        if let Some(values) = direct.collect::<Option<Vec<_>>>() {
            return Ok(Value::List(values));
        }
        let edges: Vec<ResourceEdge> =
            page.items.iter().map(|node| ResourceEdge { cursor: &page.cursor, node }).collect();
        edges.resolve(ctx, field).await
    }
}

/// `[Resource!]!`, resolved in one pass when it can be.
pub struct Nodes<'a>(&'a [Resource]);

impl OutputType for Nodes<'_> {
    fn type_name() -> Cow<'static, str> {
        <Vec<Resource> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<Resource> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        if ctx.data_opt::<RawJsonOutput>().is_some()
            && let Some(text) = text::nodes(ctx, &field.node.selection_set.node, self.0)
        {
            return Ok(raw_value(text));
        }
        let direct = self.0.iter().map(|item| {
            let mut out = IndexMap::new();
            resource_fields(ctx, &field.node.selection_set.node, item, &mut out).map(|()| Value::Object(out))
        });
        if let Some(values) = direct.collect::<Option<Vec<_>>>() {
            return Ok(Value::List(values));
        }
        let nodes: Vec<&Resource> = self.0.iter().collect();
        nodes.resolve(ctx, field).await
    }
}

/// Calls `field` for every field of a selection set, fragments included; `None` (use the
/// generic executor) when `field` says so or a field carries a directive.
fn each_field<'a>(
    ctx: &'a ContextSelectionSet<'_>,
    set: &'a SelectionSet,
    field: &mut impl FnMut(&'a Positioned<Field>) -> Option<()>,
) -> Option<()> {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(f) if f.node.directives.is_empty() => field(f)?,
            Selection::Field(_) => return None,
            Selection::FragmentSpread(spread) => {
                let fragment = ctx.query_env.fragments.get(&spread.node.fragment_name.node)?;
                each_field(ctx, &fragment.node.selection_set.node, field)?;
            }
            Selection::InlineFragment(inline) => each_field(ctx, &inline.node.selection_set.node, field)?,
        }
    }
    Some(())
}

/// Adds a field's value under its response key, merging with what the key already holds, as
/// the executor does when a field is selected more than once.
fn insert(out: &mut IndexMap<Name, Value>, f: &Positioned<Field>, value: Value) {
    let key = f.node.response_key().node.clone();
    match out.get_mut(&key) {
        Some(existing) => merge(existing, value),
        None => {
            out.insert(key, value);
        }
    }
}

fn merge(target: &mut Value, value: Value) {
    match (target, value) {
        (Value::Object(target), Value::Object(more)) => {
            for (k, v) in more {
                match target.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        target.insert(k, v);
                    }
                }
            }
        }
        (Value::List(target), Value::List(more)) => {
            for (existing, v) in target.iter_mut().zip(more) {
                merge(existing, v);
            }
        }
        _ => {}
    }
}

/// A boolean argument given literally or by a variable; `None` for anything else, which the
/// generic executor then handles.
fn bool_argument(ctx: &ContextSelectionSet<'_>, f: &Positioned<Field>, name: &str, default: bool) -> Option<bool> {
    let Some(value) = f.node.get_argument(name) else { return Some(default) };
    match value.node.clone().into_const_with(|var| ctx.query_env.variables.get(&var).cloned().ok_or(())).ok()? {
        Value::Boolean(b) => Some(b),
        _ => None,
    }
}

/// An object whose fields are plain reads: `field` gives a field's value by its name.
fn plain_object(
    ctx: &ContextSelectionSet<'_>,
    set: &SelectionSet,
    field: impl Fn(&str) -> Option<Value>,
) -> Option<Value> {
    let mut out = IndexMap::new();
    each_field(ctx, set, &mut |p| {
        let value = field(p.node.name.node.as_str())?;
        insert(&mut out, p, value);
        Some(())
    })?;
    Some(Value::Object(out))
}

fn text(value: Option<&str>) -> Value {
    value.map(|s| Value::String(s.to_owned())).unwrap_or(Value::Null)
}

fn edge_fields(
    ctx: &ContextSelectionSet<'_>,
    set: &SelectionSet,
    item: &Resource,
    cursor: &str,
    out: &mut IndexMap<Name, Value>,
) -> Option<()> {
    each_field(ctx, set, &mut |f| {
        let value = match f.node.name.node.as_str() {
            "__typename" => Value::String("ResourceEdge".into()),
            "cursor" => Value::String(cursor.to_owned()),
            "node" => {
                let mut node = IndexMap::new();
                resource_fields(ctx, &f.node.selection_set.node, item, &mut node)?;
                Value::Object(node)
            }
            _ => return None,
        };
        insert(out, f, value);
        Some(())
    })
}

fn resource_fields(
    ctx: &ContextSelectionSet<'_>,
    set: &SelectionSet,
    item: &Resource,
    out: &mut IndexMap<Name, Value>,
) -> Option<()> {
    each_field(ctx, set, &mut |f| {
        let managed_fields = || bool_argument(ctx, f, "managedFields", false);
        let value = match f.node.name.node.as_str() {
            "__typename" => Value::String("Resource".into()),
            "apiVersion" => Value::String(item.origin().api_version.clone()),
            "kind" => Value::String(item.origin().kind.clone()),
            "metadata" => {
                let mut meta = IndexMap::new();
                meta_fields(ctx, &f.node.selection_set.node, item.meta().ok()?, &mut meta)?;
                Value::Object(meta)
            }
            "spec" | "status" => Value::from_json(item.part(f.node.name.node.as_str()).ok()?).ok()?,
            "json" => {
                let managed_fields = managed_fields()?;
                match ctx.data_opt::<RawJsonOutput>().and_then(|_| item.whole_text(managed_fields)) {
                    Some(text) => raw_value(text),
                    None => item.whole(managed_fields).ok()?,
                }
            }
            "yaml" => Value::String(serde_saphyr::to_string(&item.whole(managed_fields()?).ok()?).ok()?),
            _ => return None,
        };
        insert(out, f, value);
        Some(())
    })
}

fn meta_fields(
    ctx: &ContextSelectionSet<'_>,
    set: &SelectionSet,
    meta: &Meta,
    out: &mut IndexMap<Name, Value>,
) -> Option<()> {
    each_field(ctx, set, &mut |f| {
        let time = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.map(|t| super::object::to_chrono(&t.0).to_value()).unwrap_or(Value::Null)
        };
        let value = match f.node.name.node.as_str() {
            "__typename" => Value::String("ObjectMeta".into()),
            "name" => text(meta.name.as_deref()),
            "namespace" => text(meta.namespace.as_deref()),
            "uid" => text(meta.uid.as_deref()),
            "resourceVersion" => text(meta.resource_version.as_deref()),
            "generation" => meta.generation.map(|g| Value::Number(g.into())).unwrap_or(Value::Null),
            "labels" | "annotations" => {
                let map = if f.node.name.node == "labels" { &meta.labels } else { &meta.annotations };
                let pairs = map.iter().flatten().map(|(key, value)| {
                    plain_object(ctx, &f.node.selection_set.node, |name| match name {
                        "__typename" => Some(Value::String("Label".into())),
                        "key" => Some(Value::String(key.clone())),
                        "value" => Some(Value::String(value.clone())),
                        _ => None,
                    })
                });
                Value::List(pairs.collect::<Option<_>>()?)
            }
            "creationTimestamp" => time(meta.creation_timestamp.as_ref()),
            "deletionTimestamp" => time(meta.deletion_timestamp.as_ref()),
            "finalizers" => Value::List(meta.finalizers.iter().flatten().map(|s| Value::String(s.clone())).collect()),
            "ownerReferences" => {
                let owners = meta.owner_references.iter().flatten().map(|owner| {
                    plain_object(ctx, &f.node.selection_set.node, |name| match name {
                        "__typename" => Some(Value::String("OwnerReference".into())),
                        "apiVersion" => Some(Value::String(owner.api_version.clone())),
                        "kind" => Some(Value::String(owner.kind.clone())),
                        "name" => Some(Value::String(owner.name.clone())),
                        "uid" => Some(Value::String(owner.uid.clone())),
                        "controller" => Some(owner.controller.map(Value::Boolean).unwrap_or(Value::Null)),
                        _ => None,
                    })
                });
                Value::List(owners.collect::<Option<_>>()?)
            }
            _ => return None,
        };
        insert(out, f, value);
        Some(())
    })
}

/// The page's JSON written as text in one pass, for responses that pass raw JSON through:
/// no value tree is built for it at all. `None` when a field is selected twice under one key
/// (the value path merges those) or anything else the value path handles.
mod text {
    use std::fmt::Write;

    use async_graphql::parser::types::{Field, SelectionSet};
    use async_graphql::{ContextSelectionSet, Positioned};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use serde_json::value::RawValue;

    use super::super::object::{Pairs, to_chrono};
    use super::{Resource, bool_argument, each_field};

    /// Room for the fields of one object; more falls back to the value path.
    const MAX_FIELDS: usize = 24;

    pub(super) fn string(out: &mut String, s: &str) {
        out.push('"');
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            out.push_str(&s[start..i]);
            if escape.is_empty() {
                let _ = write!(out, "\\u{b:04x}");
            } else {
                out.push_str(escape);
            }
            start = i + 1;
        }
        out.push_str(&s[start..]);
        out.push('"');
    }

    /// `{ "key": value, ... }` for a selection set, `field` writing each value.
    fn object<'a>(
        ctx: &'a ContextSelectionSet<'_>,
        set: &'a SelectionSet,
        out: &mut String,
        mut field: impl FnMut(&mut String, &'a Positioned<Field>) -> Option<()>,
    ) -> Option<()> {
        let mut keys: [&str; MAX_FIELDS] = [""; MAX_FIELDS];
        let mut count = 0;
        out.push('{');
        each_field(ctx, set, &mut |f| {
            let key = f.node.response_key().node.as_str();
            if count == MAX_FIELDS || keys[..count].contains(&key) {
                return None;
            }
            keys[count] = key;
            if count > 0 {
                out.push(',');
            }
            count += 1;
            string(out, key);
            out.push(':');
            field(out, f)
        })?;
        out.push('}');
        Some(())
    }

    fn list<T>(
        out: &mut String,
        items: impl IntoIterator<Item = T>,
        mut item: impl FnMut(&mut String, T) -> Option<()>,
    ) -> Option<()> {
        out.push('[');
        for (i, t) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            item(out, t)?;
        }
        out.push(']');
        Some(())
    }

    pub(super) fn edges(
        ctx: &ContextSelectionSet<'_>,
        set: &SelectionSet,
        items: &[Resource],
        cursor: &str,
    ) -> Option<String> {
        let mut out = String::with_capacity(items.len() * 256);
        list(&mut out, items, |out, item| {
            object(ctx, set, out, |out, f| {
                match f.node.name.node.as_str() {
                    "__typename" => string(out, "ResourceEdge"),
                    "cursor" => string(out, cursor),
                    "node" => resource(ctx, &f.node.selection_set.node, item, out)?,
                    _ => return None,
                }
                Some(())
            })
        })?;
        Some(out)
    }

    pub(super) fn nodes(ctx: &ContextSelectionSet<'_>, set: &SelectionSet, items: &[Resource]) -> Option<String> {
        let mut out = String::with_capacity(items.len() * 256);
        list(&mut out, items, |out, item| resource(ctx, set, item, out))?;
        Some(out)
    }

    fn resource(ctx: &ContextSelectionSet<'_>, set: &SelectionSet, item: &Resource, out: &mut String) -> Option<()> {
        object(ctx, set, out, |out, f| {
            match f.node.name.node.as_str() {
                "__typename" => string(out, "Resource"),
                "apiVersion" => string(out, &item.origin().api_version),
                "kind" => string(out, &item.origin().kind),
                "metadata" => meta(ctx, &f.node.selection_set.node, &item.raw_metadata()?, out)?,
                "spec" | "status" => {
                    out.push_str(&serde_json::to_string(&item.part(f.node.name.node.as_str()).ok()?).ok()?)
                }
                "json" => out.push_str(&item.whole_text(bool_argument(ctx, f, "managedFields", false)?)?),
                "yaml" => {
                    let managed_fields = bool_argument(ctx, f, "managedFields", false)?;
                    string(out, &serde_saphyr::to_string(&item.whole(managed_fields).ok()?).ok()?);
                }
                _ => return None,
            }
            Some(())
        })
    }

    /// The metadata of a list item, copied from its bytes where the JSON is the same (strings,
    /// numbers, the finalizer list) and converted where the schema's form differs (labels as
    /// key/value pairs, timestamps as RFC 3339 with an offset, as the value path writes them).
    fn meta(
        ctx: &ContextSelectionSet<'_>,
        set: &SelectionSet,
        fields: &[(&str, &RawValue)],
        out: &mut String,
    ) -> Option<()> {
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v.get()).filter(|v| *v != "null");
        object(ctx, set, out, |out, f| {
            let name = f.node.name.node.as_str();
            match name {
                "__typename" => string(out, "ObjectMeta"),
                "name" | "namespace" | "uid" | "resourceVersion" => match get(name) {
                    Some(v) if v.starts_with('"') => out.push_str(v),
                    Some(_) => return None,
                    None => out.push_str("null"),
                },
                "generation" => match get(name) {
                    Some(v) if v.bytes().all(|b| b.is_ascii_digit() || b == b'-') => out.push_str(v),
                    Some(_) => return None,
                    None => out.push_str("null"),
                },
                "labels" | "annotations" => {
                    let pairs = match get(name) {
                        Some(v) => serde_json::from_str::<Pairs>(v).ok()?.0,
                        None => Vec::new(),
                    };
                    list(out, pairs, |out, (key, value)| {
                        if !value.get().starts_with('"') {
                            return None;
                        }
                        object(ctx, &f.node.selection_set.node, out, |out, p| {
                            match p.node.name.node.as_str() {
                                "__typename" => string(out, "Label"),
                                "key" => string(out, key),
                                "value" => out.push_str(value.get()),
                                _ => return None,
                            }
                            Some(())
                        })
                    })?;
                }
                "creationTimestamp" | "deletionTimestamp" => match get(name) {
                    Some(v) => timestamp(out, v)?,
                    None => out.push_str("null"),
                },
                "finalizers" => match get(name) {
                    Some(v) if v.starts_with('[') => out.push_str(v),
                    Some(_) => return None,
                    None => out.push_str("[]"),
                },
                "ownerReferences" => {
                    let owners: Vec<OwnerReference> = match get(name) {
                        Some(v) => serde_json::from_str(v).ok()?,
                        None => Vec::new(),
                    };
                    list(out, &owners, |out, owner| {
                        object(ctx, &f.node.selection_set.node, out, |out, p| {
                            match p.node.name.node.as_str() {
                                "__typename" => string(out, "OwnerReference"),
                                "apiVersion" => string(out, &owner.api_version),
                                "kind" => string(out, &owner.kind),
                                "name" => string(out, &owner.name),
                                "uid" => string(out, &owner.uid),
                                "controller" => out.push_str(match owner.controller {
                                    Some(true) => "true",
                                    Some(false) => "false",
                                    None => "null",
                                }),
                                _ => return None,
                            }
                            Some(())
                        })
                    })?;
                }
                _ => return None,
            }
            Some(())
        })
    }

    /// A timestamp as the value path writes it (`DateTime<Utc>::to_rfc3339`). Kubernetes writes
    /// whole seconds in UTC (`"2026-11-27T01:00:00Z"`), which only needs its zone spelt as an
    /// offset; anything else is parsed and formatted.
    fn timestamp(out: &mut String, json: &str) -> Option<()> {
        let b = json.as_bytes();
        let whole_seconds_utc = b.len() == 22
            && b[0] == b'"'
            && b[20] == b'Z'
            && b[21] == b'"'
            && b[1..20].iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            });
        if whole_seconds_utc {
            out.push_str(&json[..20]);
            out.push_str("+00:00\"");
        } else {
            let time: Time = serde_json::from_str(json).ok()?;
            string(out, &to_chrono(&time.0).to_rfc3339());
        }
        Some(())
    }

    #[cfg(test)]
    mod tests {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

        #[test]
        fn timestamps_are_written_as_the_value_path_writes_them() {
            for json in [r#""2026-11-27T01:02:03Z""#, r#""2026-11-27T01:02:03.5Z""#, r#""2026-11-27T03:02:03+02:00""#] {
                let mut out = String::new();
                super::timestamp(&mut out, json).unwrap();
                let time: Time = serde_json::from_str(json).unwrap();
                let expected = super::to_chrono(&time.0).to_rfc3339();
                assert_eq!(serde_json::from_str::<String>(&out).unwrap(), expected, "{json}");
            }
            assert!(super::timestamp(&mut String::new(), r#""not a time""#).is_none());
        }

        #[test]
        fn strings_are_escaped_as_json_escapes_them() {
            for s in ["plain", "quote \" and \\ back", "line\nbreak\ttab\r", "\u{1}\u{1f} control", "ünïcødé ✓", ""]
            {
                let mut out = String::new();
                super::string(&mut out, s);
                assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s, "{out}");
            }
        }
    }
}
