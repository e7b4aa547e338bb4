//! The fields of a page's objects, written in one pass.
//!
//! A page holds up to 500 objects, and resolving each of their fields as its own future (as the
//! generic executor does) costs more than reading the fields. So the page's `edges` and `nodes`
//! are written here straight from the selection set, when every selected field is a plain read
//! of the object. What each field of `ResourceEdge`, `Resource`, `ObjectMeta`, `Label` and
//! `OwnerReference` gives is written once, below, against a [`Sink`]; the sink decides the form:
//! a response value ([`ValueSink`]) or, for responses that pass raw JSON through, the JSON text
//! itself ([`TextSink`], no value tree built at all). What a field's value means (metadata read,
//! timestamps in their written form, the whole object) lives in `object.rs`, which the schema's
//! resolvers read as well; a test over fixture objects checks that the resolvers and both sinks
//! give the same answer for every field.
//!
//! Aliases, fragments and repeated fields are honoured as the executor honours them
//! (`@skip`/`@include` are already applied to the document by then). A field this module does
//! not know (`events`, which calls the API server per object), a directive, or an object that
//! cannot be read makes it give up (`None`), and the generic executor takes over, reporting
//! errors with their paths.

use std::fmt::Write;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::{ContextSelectionSet, Name, Positioned, Value};

use super::across::ClusterResourceEdge;
use super::object::{Meta, Resource, Text};
use super::raw::raw_value;
use super::table::TableRow;
use crate::resources::table::cell_text;

/// Where the one-pass writers put what they read. A field's value is written after its key; an
/// object is written between `begin_object` and `end_object`, a list between `begin_list` and
/// `end_list`. A method answers `None` when this sink cannot write what is asked.
pub(super) trait Sink<'q> {
    fn null(&mut self);
    fn string(&mut self, s: &str);
    fn int(&mut self, n: i64);
    fn boolean(&mut self, b: bool);
    fn json(&mut self, value: serde_json::Value) -> Option<()>;
    /// The whole object (`json`).
    fn whole(&mut self, item: &Resource, managed_fields: bool) -> Option<()>;
    fn begin_object(&mut self);
    /// The key of the next value in the innermost object.
    fn key(&mut self, key: &'q str) -> Option<()>;
    fn end_object(&mut self);
    fn begin_list(&mut self);
    fn end_list(&mut self);
}

/// `[ResourceEdge!]!`: every edge of a page with the page's cursor.
pub(super) fn edges<'q, S: Sink<'q>>(
    ctx: &'q ContextSelectionSet<'_>,
    set: &'q SelectionSet,
    items: &[Resource],
    cursor: &str,
    sink: &mut S,
) -> Option<()> {
    list(sink, items, |sink, item| {
        object(ctx, set, sink, |sink, f| {
            match f.node.name.node.as_str() {
                "__typename" => sink.string("ResourceEdge"),
                "cursor" => sink.string(cursor),
                "node" => resource(ctx, &f.node.selection_set.node, item, sink)?,
                _ => return None,
            }
            Some(())
        })
    })
}

/// `[ClusterResourceEdge!]!`: the edges of a page across clusters, each naming its cluster.
pub(super) fn cluster_edges<'q, S: Sink<'q>>(
    ctx: &'q ContextSelectionSet<'_>,
    set: &'q SelectionSet,
    edges: &[ClusterResourceEdge],
    sink: &mut S,
) -> Option<()> {
    list(sink, edges, |sink, edge| {
        object(ctx, set, sink, |sink, f| {
            match f.node.name.node.as_str() {
                "__typename" => sink.string("ClusterResourceEdge"),
                "cursor" => sink.string(&edge.cursor),
                "clusterId" => sink.string(&edge.cluster_id),
                "clusterName" => sink.string(&edge.cluster_name),
                "node" => resource(ctx, &f.node.selection_set.node, &edge.node, sink)?,
                _ => return None,
            }
            Some(())
        })
    })
}

/// `[TableRow!]!`.
pub(super) fn table_rows<'q, S: Sink<'q>>(
    ctx: &'q ContextSelectionSet<'_>,
    set: &'q SelectionSet,
    rows: &[TableRow],
    sink: &mut S,
) -> Option<()> {
    list(sink, rows, |sink, row| table_row(ctx, set, row, sink))
}

/// `[TableRowEdge!]!`: every row of a table page with the page's cursor.
pub(super) fn table_edges<'q, S: Sink<'q>>(
    ctx: &'q ContextSelectionSet<'_>,
    set: &'q SelectionSet,
    rows: &[TableRow],
    cursor: &str,
    sink: &mut S,
) -> Option<()> {
    list(sink, rows, |sink, row| {
        object(ctx, set, sink, |sink, f| {
            match f.node.name.node.as_str() {
                "__typename" => sink.string("TableRowEdge"),
                "cursor" => sink.string(cursor),
                "node" => table_row(ctx, &f.node.selection_set.node, row, sink)?,
                _ => return None,
            }
            Some(())
        })
    })
}

fn table_row<'q, S: Sink<'q>>(
    ctx: &'q ContextSelectionSet<'_>,
    set: &'q SelectionSet,
    row: &TableRow,
    sink: &mut S,
) -> Option<()> {
    object(ctx, set, sink, |sink, f| {
        match f.node.name.node.as_str() {
            "__typename" => sink.string("TableRow"),
            "cells" => list(sink, &row.row_cells().cells, |sink, cell| match cell {
                serde_json::Value::Null => {
                    sink.null();
                    Some(())
                }
                cell => sink.json(cell.clone()),
            })?,
            "text" => list(sink, &row.row_cells().cells, |sink, cell| {
                sink.string(&cell_text(cell));
                Some(())
            })?,
            "completed" => sink.boolean(row.row_cells().completed),
            "object" => resource(ctx, &f.node.selection_set.node, row.row_object(), sink)?,
            _ => return None,
        }
        Some(())
    })
}

/// `[Resource!]!`.
pub(super) fn nodes<'q, S: Sink<'q>>(
    ctx: &'q ContextSelectionSet<'_>,
    set: &'q SelectionSet,
    items: &[Resource],
    sink: &mut S,
) -> Option<()> {
    list(sink, items, |sink, item| resource(ctx, set, item, sink))
}

fn resource<'q, S: Sink<'q>>(
    ctx: &'q ContextSelectionSet<'_>,
    set: &'q SelectionSet,
    item: &Resource,
    sink: &mut S,
) -> Option<()> {
    object(ctx, set, sink, |sink, f| {
        let name = f.node.name.node.as_str();
        match name {
            "__typename" => sink.string("Resource"),
            "apiVersion" => sink.string(&item.origin().api_version),
            "kind" => sink.string(&item.origin().kind),
            "metadata" => meta(ctx, &f.node.selection_set.node, &*item.meta_view()?, sink)?,
            "spec" | "status" => sink.json(item.part(name).ok()?)?,
            "json" => sink.whole(item, bool_argument(ctx, f, "managedFields", false)?)?,
            "yaml" => {
                let value = item.whole(bool_argument(ctx, f, "managedFields", false)?).ok()?;
                sink.string(&serde_saphyr::to_string(&value).ok()?);
            }
            _ => return None,
        }
        Some(())
    })
}

fn meta<'q, S: Sink<'q>>(
    ctx: &'q ContextSelectionSet<'_>,
    set: &'q SelectionSet,
    meta: &Meta<'_>,
    sink: &mut S,
) -> Option<()> {
    let text = |sink: &mut S, t: &Option<Text>| match t {
        Some(t) => sink.string(t.as_str()),
        None => sink.null(),
    };
    object(ctx, set, sink, |sink, f| {
        let name = f.node.name.node.as_str();
        match name {
            "__typename" => sink.string("ObjectMeta"),
            "name" => text(sink, &meta.name),
            "namespace" => text(sink, &meta.namespace),
            "uid" => text(sink, &meta.uid),
            "resourceVersion" => text(sink, &meta.resource_version),
            "generation" => match meta.generation {
                Some(g) => sink.int(g),
                None => sink.null(),
            },
            "labels" | "annotations" => {
                let pairs = if name == "labels" { &meta.labels } else { &meta.annotations };
                list(sink, pairs, |sink, (key, value)| {
                    object(ctx, &f.node.selection_set.node, sink, |sink, p| {
                        match p.node.name.node.as_str() {
                            "__typename" => sink.string("Label"),
                            "key" => sink.string(key.as_str()),
                            "value" => sink.string(value.as_str()),
                            _ => return None,
                        }
                        Some(())
                    })
                })?;
            }
            "creationTimestamp" | "deletionTimestamp" => {
                let time =
                    if name == "creationTimestamp" { &meta.creation_timestamp } else { &meta.deletion_timestamp };
                match time {
                    Some(t) => sink.string(t.as_str()),
                    None => sink.null(),
                }
            }
            "finalizers" => list(sink, &meta.finalizers, |sink, f| {
                sink.string(f.as_str());
                Some(())
            })?,
            "ownerReferences" => list(sink, &meta.owner_references, |sink, owner| {
                object(ctx, &f.node.selection_set.node, sink, |sink, p| {
                    match p.node.name.node.as_str() {
                        "__typename" => sink.string("OwnerReference"),
                        "apiVersion" => sink.string(owner.api_version.as_str()),
                        "kind" => sink.string(owner.kind.as_str()),
                        "name" => sink.string(owner.name.as_str()),
                        "uid" => sink.string(owner.uid.as_str()),
                        "controller" => match owner.controller {
                            Some(b) => sink.boolean(b),
                            None => sink.null(),
                        },
                        _ => return None,
                    }
                    Some(())
                })
            })?,
            _ => return None,
        }
        Some(())
    })
}

/// An object for a selection set, `field` writing each selected field's value.
fn object<'q, S: Sink<'q>>(
    ctx: &'q ContextSelectionSet<'_>,
    set: &'q SelectionSet,
    sink: &mut S,
    mut field: impl FnMut(&mut S, &'q Positioned<Field>) -> Option<()>,
) -> Option<()> {
    sink.begin_object();
    each_field(ctx, set, &mut |f| {
        sink.key(f.node.response_key().node.as_str())?;
        field(sink, f)
    })?;
    sink.end_object();
    Some(())
}

fn list<'q, S: Sink<'q>, T>(
    sink: &mut S,
    items: impl IntoIterator<Item = T>,
    mut item: impl FnMut(&mut S, T) -> Option<()>,
) -> Option<()> {
    sink.begin_list();
    for t in items {
        item(sink, t)?;
    }
    sink.end_list();
    Some(())
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

/// A boolean argument given literally or by a variable; `None` for anything else, which the
/// generic executor then handles.
fn bool_argument(ctx: &ContextSelectionSet<'_>, f: &Positioned<Field>, name: &str, default: bool) -> Option<bool> {
    let Some(value) = f.node.get_argument(name) else { return Some(default) };
    match value.node.clone().into_const_with(|var| ctx.query_env.variables.get(&var).cloned().ok_or(())).ok()? {
        Value::Boolean(b) => Some(b),
        _ => None,
    }
}

enum Frame {
    Object(IndexMap<Name, Value>, Option<Name>),
    List(Vec<Value>),
}

/// Builds a response value. A key selected twice (aliases aside) is merged with what it holds,
/// as the executor merges a field selected more than once.
pub(super) struct ValueSink {
    stack: Vec<Frame>,
    done: Option<Value>,
    /// The response passes raw JSON through: a whole list item may be given as its text.
    raw_json: bool,
}

impl ValueSink {
    pub(super) fn new(raw_json: bool) -> Self {
        Self { stack: Vec::new(), done: None, raw_json }
    }

    pub(super) fn finish(self) -> Option<Value> {
        self.done
    }

    fn put(&mut self, value: Value) {
        match self.stack.last_mut() {
            Some(Frame::Object(fields, key)) => {
                let key = key.take().expect("a value in an object follows its key");
                match fields.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        fields.insert(key, value);
                    }
                }
            }
            Some(Frame::List(items)) => items.push(value),
            None => self.done = Some(value),
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

impl<'q> Sink<'q> for ValueSink {
    fn null(&mut self) {
        self.put(Value::Null)
    }
    fn string(&mut self, s: &str) {
        self.put(Value::String(s.to_owned()))
    }
    fn int(&mut self, n: i64) {
        self.put(Value::Number(n.into()))
    }
    fn boolean(&mut self, b: bool) {
        self.put(Value::Boolean(b))
    }
    fn json(&mut self, value: serde_json::Value) -> Option<()> {
        self.put(Value::from_json(value).ok()?);
        Some(())
    }
    fn whole(&mut self, item: &Resource, managed_fields: bool) -> Option<()> {
        let value = match self.raw_json.then(|| item.whole_text(managed_fields)).flatten() {
            Some(text) => raw_value(text),
            None => item.whole(managed_fields).ok()?,
        };
        self.put(value);
        Some(())
    }
    fn begin_object(&mut self) {
        self.stack.push(Frame::Object(IndexMap::new(), None));
    }
    fn key(&mut self, key: &'q str) -> Option<()> {
        if let Some(Frame::Object(_, next)) = self.stack.last_mut() {
            *next = Some(Name::new(key));
        }
        Some(())
    }
    fn end_object(&mut self) {
        if let Some(Frame::Object(fields, _)) = self.stack.pop() {
            self.put(Value::Object(fields));
        }
    }
    fn begin_list(&mut self) {
        self.stack.push(Frame::List(Vec::new()));
    }
    fn end_list(&mut self) {
        if let Some(Frame::List(items)) = self.stack.pop() {
            self.put(Value::List(items));
        }
    }
}

/// At most this many keys in one object of [`TextSink`] (a repeated key is found by a scan);
/// more gives up.
const MAX_KEYS: usize = 24;

/// Writes the JSON text. Gives up when a key repeats in one object (the value sink merges
/// those) or an object has more than [`MAX_KEYS`] keys.
pub(super) struct TextSink<'q> {
    out: String,
    frames: Vec<TextFrame>,
    /// The keys written in the open objects, innermost last.
    keys: Vec<&'q str>,
}

enum TextFrame {
    /// Where the object's keys start in `keys`.
    Object(usize),
    /// Whether a member was written.
    List(bool),
}

impl<'q> TextSink<'q> {
    pub(super) fn with_capacity(bytes: usize) -> Self {
        Self { out: String::with_capacity(bytes), frames: Vec::with_capacity(8), keys: Vec::with_capacity(32) }
    }

    pub(super) fn finish(self) -> String {
        self.out
    }

    /// Before a value: a comma when it follows another member of a list (an object's commas
    /// come with its keys).
    fn member(&mut self) {
        if let Some(TextFrame::List(written)) = self.frames.last_mut()
            && std::mem::replace(written, true)
        {
            self.out.push(',');
        }
    }
}

impl<'q> Sink<'q> for TextSink<'q> {
    fn null(&mut self) {
        self.member();
        self.out.push_str("null");
    }
    fn string(&mut self, s: &str) {
        self.member();
        json_string(&mut self.out, s);
    }
    fn int(&mut self, n: i64) {
        self.member();
        let _ = write!(self.out, "{n}");
    }
    fn boolean(&mut self, b: bool) {
        self.member();
        self.out.push_str(if b { "true" } else { "false" });
    }
    fn json(&mut self, value: serde_json::Value) -> Option<()> {
        self.member();
        // Writing to a String cannot fail on I/O; a map with non-string keys cannot come from JSON.
        let text = serde_json::to_string(&value).ok()?;
        self.out.push_str(&text);
        Some(())
    }
    fn whole(&mut self, item: &Resource, managed_fields: bool) -> Option<()> {
        self.member();
        match item.write_whole_text(&mut self.out, managed_fields) {
            Some(()) => {}
            None => {
                let value = item.whole(managed_fields).ok()?;
                self.out.push_str(&serde_json::to_string(&value).ok()?);
            }
        }
        Some(())
    }
    fn begin_object(&mut self) {
        self.member();
        self.out.push('{');
        self.frames.push(TextFrame::Object(self.keys.len()));
    }
    fn key(&mut self, key: &'q str) -> Option<()> {
        let Some(TextFrame::Object(start)) = self.frames.last() else { return None };
        let written = &self.keys[*start..];
        if written.len() >= MAX_KEYS || written.contains(&key) {
            return None;
        }
        if !written.is_empty() {
            self.out.push(',');
        }
        self.keys.push(key);
        json_string(&mut self.out, key);
        self.out.push(':');
        Some(())
    }
    fn end_object(&mut self) {
        if let Some(TextFrame::Object(start)) = self.frames.pop() {
            self.keys.truncate(start);
        }
        self.out.push('}');
    }
    fn begin_list(&mut self) {
        self.member();
        self.out.push('[');
        self.frames.push(TextFrame::List(false));
    }
    fn end_list(&mut self) {
        self.frames.pop();
        self.out.push(']');
    }
}

/// A string as JSON writes it.
fn json_string(out: &mut String, s: &str) {
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

#[cfg(test)]
mod tests;
