//! Tables as `kubectl get` prints them. The API server renders them itself (`as=Table`): its own
//! printers for built-in kinds and a custom resource's `additionalPrinterColumns`, so every
//! kind is drawn the way kubectl draws it without kubegql knowing any kind's columns. Lists and
//! watches ask for the same rendering; this module owns the request and the wire types.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::core::Request;
use serde::Deserialize;
use serde_json::Value;

use super::{ListPage, ListQuery, RawObject, ResourceError, Target, list_params};

/// What the API server is asked for: a `meta.k8s.io/v1` Table.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// One column as the API server defines it (`TableColumnDefinition`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableColumn {
    pub name: String,
    /// An OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub kind: String,
    /// An OpenAPI format (`name` marks the column of the object's name).
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub description: String,
    /// 0 for the columns `kubectl get` prints; higher for those only `-o wide` prints.
    #[serde(default)]
    pub priority: i32,
}

/// What each row carries besides its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowObject {
    /// The object's type and metadata (`PartialObjectMetadata`).
    Metadata,
    /// The whole object.
    Object,
}

impl RowObject {
    fn as_param(self) -> &'static str {
        match self {
            RowObject::Metadata => "Metadata",
            RowObject::Object => "Object",
        }
    }
}

/// A Table as the API server sends it, its rows' objects of type `O`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
pub struct WireTable<O> {
    #[serde(default)]
    pub metadata: ListMeta,
    /// Null in every watch event but the first.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub column_definitions: Vec<TableColumn>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub rows: Vec<WireRow<O>>,
}

/// A list the API server may send as `null`.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(bound(deserialize = "O: Deserialize<'de>"))]
pub struct WireRow<O> {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub cells: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub conditions: Vec<RowCondition>,
    pub object: O,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RowCondition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
}

/// A row's cells and what the API server said of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowCells {
    pub cells: Vec<Value>,
    /// The `Completed` condition: the object has finished (a Succeeded or Failed pod), which
    /// kubectl leaves out of `get` unless asked.
    pub completed: bool,
}

impl<O> WireRow<O> {
    /// The row's cells, and its object apart.
    pub fn split(self) -> (RowCells, O) {
        let completed = self.conditions.iter().any(|c| c.kind == "Completed" && c.status == "True");
        (RowCells { cells: self.cells, completed }, self.object)
    }
}

/// One page of a table.
pub struct TablePage {
    pub columns: Arc<[TableColumn]>,
    pub rows: ListPage<(RowCells, RawObject)>,
}

/// A table request: the list or watch request with the Table asked for in `Accept` and the
/// rows' objects in `includeObject`.
pub(crate) fn as_table(mut request: http::Request<Vec<u8>>, object: RowObject) -> http::Request<Vec<u8>> {
    let uri = request.uri().to_string();
    let joiner = if uri.contains('?') { '&' } else { '?' };
    if let Ok(uri) = format!("{uri}{joiner}includeObject={}", object.as_param()).parse() {
        *request.uri_mut() = uri;
    }
    request.headers_mut().insert(http::header::ACCEPT, http::HeaderValue::from_static(TABLE_ACCEPT));
    request
}

/// The text kubectl prints for a cell: strings as they are, numbers and booleans as Go prints
/// them, nothing for an absent value.
pub fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), ..) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

impl Target {
    /// One page of the target's objects as the API server's table, cut by `limit`/`continue` as
    /// `list` cuts them (the continue tokens are the same).
    pub async fn table(
        &self,
        query: &ListQuery,
        limit: u32,
        continue_token: Option<String>,
        object: RowObject,
    ) -> Result<TablePage, ResourceError> {
        if !self.caps.supports_operation("list") {
            return Err(ResourceError::Invalid(format!("{} cannot be listed", self.resource.kind)));
        }
        let params = list_params(query, limit, continue_token);
        let request = self.request().list(&params).map_err(|e| ResourceError::Invalid(e.to_string()))?;
        let mut request = as_table(request, object);
        request.extensions_mut().insert("list");
        let table: WireTable<Option<RawObject>> = self.client.request(request).await.map_err(|e| self.error(e))?;
        let mut rows = Vec::with_capacity(table.rows.len());
        for row in table.rows {
            let (cells, object) = row.split();
            let object = object.ok_or_else(|| {
                ResourceError::Invalid(format!(
                    "the API server sent a {} table row without its object",
                    self.resource.kind
                ))
            })?;
            rows.push((cells, object));
        }
        Ok(TablePage {
            columns: table.column_definitions.into(),
            rows: ListPage {
                items: rows,
                continue_token: table.metadata.continue_.filter(|c| !c.is_empty()),
                remaining_item_count: table.metadata.remaining_item_count,
                resource_version: table.metadata.resource_version,
            },
        })
    }
}

/// The request for a table watch of a collection (`url_path`) from `resource_version`.
pub(crate) fn watch_request(
    url_path: &str,
    query: &ListQuery,
    resource_version: &str,
    timeout_secs: u32,
) -> Result<http::Request<Vec<u8>>, kube::core::request::Error> {
    let params = kube::api::WatchParams {
        label_selector: query.label_selector.clone(),
        field_selector: query.field_selector.clone(),
        bookmarks: false,
        timeout: Some(timeout_secs),
        ..Default::default()
    };
    let request = Request::new(url_path).watch(&params, resource_version)?;
    Ok(as_table(request, RowObject::Object))
}

/// The request for one page of a table list of a collection, with whole objects.
pub(crate) fn list_request(
    url_path: &str,
    query: &ListQuery,
    limit: u32,
    continue_token: Option<String>,
) -> Result<http::Request<Vec<u8>>, kube::core::request::Error> {
    let request = Request::new(url_path).list(&list_params(query, limit, continue_token))?;
    Ok(as_table(request, RowObject::Object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_print_as_kubectl_prints_them() {
        assert_eq!(cell_text(&json!("1/1")), "1/1");
        assert_eq!(cell_text(&json!(null)), "");
        assert_eq!(cell_text(&json!(3)), "3");
        assert_eq!(cell_text(&json!(-2)), "-2");
        assert_eq!(cell_text(&json!(2.5)), "2.5");
        assert_eq!(cell_text(&json!(3.0)), "3");
        assert_eq!(cell_text(&json!(true)), "true");
    }

    #[test]
    fn a_table_request_asks_for_the_table_and_the_rows_objects() {
        let request = Request::new("/api/v1/pods").list(&kube::api::ListParams::default().limit(5)).unwrap();
        let request = as_table(request, RowObject::Metadata);
        assert_eq!(request.headers()[http::header::ACCEPT], TABLE_ACCEPT);
        assert!(request.uri().to_string().ends_with("limit=5&includeObject=Metadata"), "{}", request.uri());
        let watch = watch_request("/api/v1/pods", &ListQuery::default(), "42", 25).unwrap();
        assert!(watch.uri().to_string().ends_with("resourceVersion=42&includeObject=Object"), "{}", watch.uri());
        assert!(watch.uri().to_string().contains("watch=true"), "{}", watch.uri());
    }

    #[test]
    fn a_watch_events_table_without_columns_reads() {
        // As the API server sends every watch event after the first (and every DELETED).
        let line = r#"{"type":"DELETED","object":{"kind":"Table","apiVersion":"meta.k8s.io/v1",
            "metadata":{"resourceVersion":"6283"},"columnDefinitions":null,
            "rows":[{"cells":["c1",1,"0s"],"conditions":null,"object":{"kind":"ConfigMap","apiVersion":"v1",
            "metadata":{"name":"c1","namespace":"ns","resourceVersion":"6283"},"data":{"a":"b"}}}]}}"#;
        let event: kube::api::WatchEvent<WireTable<kube::api::DynamicObject>> = serde_json::from_str(line).unwrap();
        let kube::api::WatchEvent::Deleted(table) = event else { panic!("a DELETED event") };
        assert!(table.column_definitions.is_empty());
        assert_eq!(table.rows[0].cells, [json!("c1"), json!(1), json!("0s")]);
        assert_eq!(table.rows[0].object.metadata.name.as_deref(), Some("c1"));
    }

    #[test]
    fn a_row_says_whether_its_object_completed() {
        let table: WireTable<Value> = serde_json::from_value(json!({
            "columnDefinitions": [{ "name": "Name", "type": "string", "format": "name", "priority": 0 }],
            "rows": [
                { "cells": ["a"], "object": {} },
                { "cells": ["b"], "conditions": [{ "type": "Completed", "status": "True" }], "object": {} }
            ]
        }))
        .unwrap();
        let completed: Vec<bool> = table.rows.into_iter().map(|row| row.split().0.completed).collect();
        assert_eq!(completed, [false, true]);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_json_is_a_table_or_refused(value in crate::any_json(), cell in crate::any_json()) {
            let text = serde_json::to_string(&value).unwrap();
            if let Ok(table) = serde_json::from_str::<WireTable<Option<RawObject>>>(&text) {
                for row in table.rows {
                    let _ = row.split();
                }
            }
            let _ = cell_text(&cell);
        }
    }
}
