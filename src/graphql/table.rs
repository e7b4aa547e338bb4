//! Tables as `kubectl get` prints them (`Cluster.table`): the API server's own columns and rows
//! for any kind, a page at a time by the same cursors as `Cluster.resources`, each row with its
//! object (metadata only unless the query reads more of it).

use std::sync::Arc;

use async_graphql::connection::PageInfo;
use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, Json, Object, OutputType, Positioned, ServerResult, SimpleObject, Value,
};

use super::object::Origin;
use super::page::{Items, OnePass, one_pass, page_info};
use super::resources::{ListArgs, Resource, list_scope, resolve_kind, selects_only_metadata};
use super::{data, principal};
use crate::error::ApiError;
use crate::pagination::{PageRequest, encode_cursor};
use crate::resources::table::{self, RowCells, RowObject, TableColumn};
use crate::settings::ApiLimits;

/// A column of a table, as the API server defines it.
#[derive(SimpleObject, Clone)]
#[graphql(name = "TableColumn")]
pub struct Column {
    /// The header (kubectl prints it in capitals).
    name: String,
    /// An OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    r#type: String,
    /// An OpenAPI format; `name` marks the column of the object's name.
    format: String,
    description: String,
    /// 0 for the columns `kubectl get` prints; higher for those only `kubectl get -o wide` adds.
    priority: i32,
}

impl From<&TableColumn> for Column {
    fn from(column: &TableColumn) -> Self {
        Column {
            name: column.name.clone(),
            r#type: column.kind.clone(),
            format: column.format.clone(),
            description: column.description.clone(),
            priority: column.priority,
        }
    }
}

pub fn columns(columns: &[TableColumn]) -> Vec<Column> {
    columns.iter().map(Column::from).collect()
}

/// One row of a table: its cells, one per column, and its object.
pub struct TableRow {
    cells: RowCells,
    object: Resource,
}

impl TableRow {
    pub fn new(cells: RowCells, object: Resource) -> Self {
        TableRow { cells, object }
    }

    pub(super) fn row_cells(&self) -> &RowCells {
        &self.cells
    }

    pub(super) fn row_object(&self) -> &Resource {
        &self.object
    }
}

#[Object]
impl TableRow {
    /// The cells as the API server typed them (strings, numbers, booleans; null when absent).
    async fn cells(&self) -> Vec<Option<Json<&serde_json::Value>>> {
        self.cells.cells.iter().map(|cell| (!cell.is_null()).then_some(Json(cell))).collect()
    }
    /// The cells as `kubectl get` prints them (an absent value is empty).
    async fn text(&self) -> Vec<String> {
        self.cells.cells.iter().map(table::cell_text).collect()
    }
    /// The object has run to completion (a Succeeded or Failed pod).
    async fn completed(&self) -> bool {
        self.cells.completed
    }
    /// The row's object: its metadata, or all of it when the query reads more.
    async fn object(&self) -> &Resource {
        &self.object
    }
}

/// An edge of a table page.
pub struct TableEdge<'a> {
    cursor: &'a str,
    node: &'a TableRow,
}

impl<'a> TableEdge<'a> {
    fn new(cursor: &'a str, node: &'a TableRow) -> Self {
        TableEdge { cursor, node }
    }
}

#[Object(name = "TableRowEdge")]
impl TableEdge<'_> {
    async fn node(&self) -> &TableRow {
        self.node
    }
    /// The page's cursor (Kubernetes continues after a page, never from inside one).
    async fn cursor(&self) -> &str {
        self.cursor
    }
}

/// One page of a table.
pub struct ResourceTable {
    pub(super) columns: Arc<[TableColumn]>,
    pub(super) rows: Vec<TableRow>,
    pub(super) has_previous_page: bool,
    pub(super) has_next_page: bool,
    pub(super) cursor: String,
    pub(super) remaining_item_count: Option<i64>,
    pub(super) resource_version: Option<String>,
}

#[Object]
impl ResourceTable {
    /// The columns, in the order of every row's cells.
    async fn columns(&self) -> Vec<Column> {
        columns(&self.columns)
    }
    async fn page_info(&self) -> PageInfo {
        page_info(self.has_previous_page, self.has_next_page, &self.cursor, self.rows.is_empty())
    }
    async fn edges(&self) -> TableEdges<'_> {
        TableEdges(self)
    }
    async fn rows(&self) -> OnePass<'_, TableRow> {
        OnePass { items: Items::TableRows(&self.rows), each: &self.rows }
    }
    /// How many items follow this page, when the API server says.
    async fn remaining_item_count(&self) -> Option<i64> {
        self.remaining_item_count
    }
    /// The collection's resourceVersion when the first page was read.
    async fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }
}

/// `[TableRowEdge!]!`, written in one pass when it can be.
pub struct TableEdges<'a>(&'a ResourceTable);

impl OutputType for TableEdges<'_> {
    fn type_name() -> Cow<'static, str> {
        <Vec<TableEdge<'static>> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<TableEdge<'static>> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let table = self.0;
        let items = Items::TableEdges(&table.rows, &table.cursor);
        if let Some(value) = one_pass(ctx, &field.node.selection_set.node, items) {
            return Ok(value);
        }
        let edges: Vec<TableEdge> = table.rows.iter().map(|node| TableEdge::new(&table.cursor, node)).collect();
        edges.resolve(ctx, field).await
    }
}

pub async fn list_table(ctx: &Context<'_>, cluster_id: &str, args: ListArgs) -> async_graphql::Result<ResourceTable> {
    principal(ctx)?;
    let limits = data::<ApiLimits>(ctx)?;
    let target =
        resolve_kind(ctx, cluster_id, &args.group, args.version.as_deref(), &args.kind, args.namespace).await?;
    let scope = list_scope(cluster_id, &target, &args.query);
    let page = PageRequest::parse(args.first, args.after.as_deref(), &scope, limits)?;
    let empty = |columns| ResourceTable {
        columns,
        rows: Vec::new(),
        has_previous_page: true,
        has_next_page: false,
        cursor: String::new(),
        remaining_item_count: None,
        resource_version: None,
    };
    if page.after.as_deref() == Some("") {
        // The cursor of a last page: nothing follows it.
        return Ok(empty(Arc::from(Vec::new())));
    }
    let look = ctx.look_ahead();
    let object = if selects_only_metadata([
        look.field("edges").field("node").field("object"),
        look.field("rows").field("object"),
    ]) {
        RowObject::Metadata
    } else {
        RowObject::Object
    };
    let table = target.table(&args.query, page.size, page.after.clone(), object).await.map_err(ApiError::from)?;
    let origin = Origin::new(&target.resource.api_version, &target.resource.kind, cluster_id);
    let list = table.rows;
    Ok(ResourceTable {
        columns: table.columns,
        rows: list
            .items
            .into_iter()
            .map(|(cells, raw)| TableRow::new(cells, Resource::raw(raw, Arc::clone(&origin))))
            .collect(),
        has_previous_page: page.after.is_some(),
        has_next_page: list.continue_token.is_some(),
        cursor: encode_cursor(&scope, list.continue_token.as_deref().unwrap_or("")),
        remaining_item_count: list.remaining_item_count,
        resource_version: list.resource_version,
    })
}
