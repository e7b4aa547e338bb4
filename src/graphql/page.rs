//! A page of Kubernetes objects as a Relay connection (`ResourceConnection`). Its `edges` and
//! `nodes` are written in one pass when they can be (`fields.rs`: as JSON text when the response
//! passes raw JSON through, else as a value), and through the generic executor otherwise.

use std::borrow::Cow;

use async_graphql::connection::PageInfo;
use async_graphql::parser::types::{Field, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, Object, OutputType, Positioned, ServerResult, SimpleObject, Value};

use super::across::ClusterResourceEdge;
use super::fields::{self, Sink, TextSink, ValueSink};
use super::object::Resource;
use super::raw::{RawJsonOutput, raw_value};
use super::table::TableRow;

/// Extra facts about a Kubernetes list page.
#[derive(SimpleObject, Default)]
pub struct ListInfo {
    /// How many items follow this page, when the API server says (it does not for
    /// selector-filtered lists).
    pub remaining_item_count: Option<i64>,
    /// The collection's resourceVersion when the first page was read.
    pub resource_version: Option<String>,
}

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
        page_info(self.has_previous_page, self.has_next_page, &self.cursor, self.items.is_empty())
    }
}

/// The page info of a Kubernetes page, whose every edge has the same cursor.
pub(super) fn page_info(has_previous_page: bool, has_next_page: bool, cursor: &str, empty: bool) -> PageInfo {
    // A filtered list may come back empty with a continue token; the cursor is given then too,
    // or the client could not go on.
    let cursor = (!empty || has_next_page).then(|| cursor.to_owned());
    PageInfo { has_previous_page, has_next_page, start_cursor: cursor.clone(), end_cursor: cursor }
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
        if let Some(value) = one_pass(ctx, &field.node.selection_set.node, Items::Edges(&page.items, &page.cursor)) {
            return Ok(value);
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
        if let Some(value) = one_pass(ctx, &field.node.selection_set.node, Items::Nodes(self.0)) {
            return Ok(value);
        }
        let nodes: Vec<&Resource> = self.0.iter().collect();
        nodes.resolve(ctx, field).await
    }
}

/// A list of a page's items typed as `[T!]!`, written in one pass when it can be and through the
/// generic executor (over `each`) otherwise.
pub(super) struct OnePass<'a, T> {
    pub items: Items<'a>,
    pub each: &'a [T],
}

impl<T: OutputType> OutputType for OnePass<'_, T> {
    fn type_name() -> Cow<'static, str> {
        <Vec<T> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<T> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        if let Some(value) = one_pass(ctx, &field.node.selection_set.node, self.items) {
            return Ok(value);
        }
        self.each.resolve(ctx, field).await
    }
}

/// What a page writes in one pass.
#[derive(Clone, Copy)]
pub(super) enum Items<'a> {
    Edges(&'a [Resource], &'a str),
    Nodes(&'a [Resource]),
    ClusterEdges(&'a [ClusterResourceEdge]),
    TableRows(&'a [TableRow]),
    TableEdges(&'a [TableRow], &'a str),
}

impl Items<'_> {
    /// About how long the page's text will be: its items' own text (when they are list items,
    /// which a whole object copies) and room for the fields around each.
    fn text_len(&self) -> usize {
        match self {
            Items::Edges(items, _) | Items::Nodes(items) => items.iter().map(|i| i.raw_len() + 256).sum(),
            Items::ClusterEdges(edges) => edges.iter().map(|e| e.node.raw_len() + 256).sum(),
            Items::TableRows(rows) | Items::TableEdges(rows, _) => rows.len() * 256,
        }
    }
}

fn write<'q, S: Sink<'q>>(
    ctx: &'q ContextSelectionSet<'_>,
    set: &'q SelectionSet,
    items: Items<'_>,
    sink: &mut S,
) -> Option<()> {
    match items {
        Items::Edges(items, cursor) => fields::edges(ctx, set, items, cursor, sink),
        Items::Nodes(items) => fields::nodes(ctx, set, items, sink),
        Items::ClusterEdges(edges) => fields::cluster_edges(ctx, set, edges, sink),
        Items::TableRows(rows) => fields::table_rows(ctx, set, rows, sink),
        Items::TableEdges(rows, cursor) => fields::table_edges(ctx, set, rows, cursor, sink),
    }
}

/// The page's edges or nodes written in one pass: as JSON text when the response passes raw JSON
/// through and the selection allows it, else as a value; `None` when only the generic executor can.
pub(super) fn one_pass(ctx: &ContextSelectionSet<'_>, set: &SelectionSet, items: Items<'_>) -> Option<Value> {
    #[cfg(test)]
    if trace::executor_only() {
        return trace::went("executor", None);
    }
    let raw_json = ctx.data_opt::<RawJsonOutput>().is_some();
    if raw_json {
        let mut sink = TextSink::with_capacity(items.text_len());
        if write(ctx, set, items, &mut sink).is_some() {
            #[cfg(test)]
            trace::went("text", ());
            return Some(raw_value(sink.finish()));
        }
    }
    let mut sink = ValueSink::new(raw_json);
    let value = write(ctx, set, items, &mut sink).and_then(|()| sink.finish());
    #[cfg(test)]
    trace::went(if value.is_some() { "value" } else { "executor" }, ());
    value
}

/// For the tests: the one-pass writers can be turned off on a thread, and each page written on
/// it says which way it went.
#[cfg(test)]
pub(super) mod trace {
    use std::cell::{Cell, RefCell};

    thread_local! {
        static EXECUTOR_ONLY: Cell<bool> = const { Cell::new(false) };
        static WAYS: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    }

    pub fn executor_only() -> bool {
        EXECUTOR_ONLY.get()
    }

    pub fn set_executor_only(on: bool) {
        EXECUTOR_ONLY.set(on);
    }

    pub fn went<T>(way: &'static str, result: T) -> T {
        WAYS.with_borrow_mut(|ways| ways.push(way));
        result
    }

    /// The ways taken since the last call.
    pub fn take() -> Vec<&'static str> {
        WAYS.take()
    }
}
