//! The one-pass writers against the schema's resolvers, offline: every fixture object (as a list
//! item and as a parsed object) read through the generic executor, the value sink and the text
//! sink must give the same response, byte for byte.

use crate::resources::RawObject;
use async_graphql::{EmptyMutation, EmptySubscription, Object, Request, Schema, Variables};
use kube::api::DynamicObject;
use serde::Deserialize;
use serde_json::json;

use std::sync::Arc;

use crate::graphql::across::{ClusterResourceEdge, ResourcesAcrossClusters};
use crate::graphql::object::{Origin, Resource};
use crate::graphql::page::{ListInfo, ResourceConnection, trace};
use crate::graphql::raw::{RawJsonOutput, response_json};
use crate::graphql::table::{ResourceTable, TableRow};
use crate::resources::table::RowCells;

const FIXTURES: &str = include_str!("../../../tests/fixtures/objects.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fixture {
    api_version: String,
    kind: String,
    item: RawObject,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    ListItem,
    Parsed,
}

struct Query {
    form: Form,
    fixtures: &'static str,
}

impl Query {
    fn resources(&self) -> Vec<Resource> {
        let fixtures: Vec<Fixture> = serde_json::from_str(self.fixtures).expect("fixtures parse");
        fixtures
            .into_iter()
            .map(|f| {
                let origin = Origin::new(&f.api_version, &f.kind, "cluster-1");
                match self.form {
                    Form::ListItem => Resource::raw(f.item, origin),
                    Form::Parsed => {
                        let object: DynamicObject = serde_json::from_str(f.item.get()).expect("a fixture parses");
                        Resource::shared(object.into(), origin)
                    }
                }
            })
            .collect()
    }
}

#[Object]
impl Query {
    async fn page(&self) -> ResourceConnection {
        ResourceConnection::new(false, true, "cursor-1".into(), self.resources(), ListInfo::default())
    }

    /// The fixtures as a page across two clusters.
    async fn across(&self) -> ResourcesAcrossClusters {
        let cursor: Arc<str> = Arc::from("cursor-2");
        let edges = self
            .resources()
            .into_iter()
            .enumerate()
            .map(|(i, node)| ClusterResourceEdge {
                cursor: Arc::clone(&cursor),
                cluster_id: format!("id-{}", i % 2),
                cluster_name: ["one", "two \"quoted\""][i % 2].to_owned(),
                node,
            })
            .collect();
        ResourcesAcrossClusters { edges, parts: Vec::new(), has_previous_page: false, has_next_page: true, cursor }
    }

    /// The fixtures as a table, with cells of every type.
    async fn table(&self) -> ResourceTable {
        let rows = self
            .resources()
            .into_iter()
            .enumerate()
            .map(|(i, object)| {
                let cells = vec![
                    json!(format!("row-{i}")),
                    json!(i),
                    json!(2.5),
                    json!(i % 2 == 0),
                    json!(null),
                    json!("a\"b\n"),
                ];
                TableRow::new(RowCells { cells, completed: i % 2 == 1 }, object)
            })
            .collect();
        ResourceTable {
            columns: Arc::from(Vec::new()),
            rows,
            has_previous_page: false,
            has_next_page: false,
            cursor: "cursor-3".into(),
            remaining_item_count: None,
            resource_version: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    Executor,
    Value,
    Text,
}

/// The response's JSON as the HTTP transports write it, and the ways its pages went.
async fn answer(
    form: Form,
    fixtures: &'static str,
    query: &str,
    vars: &serde_json::Value,
    way: Way,
) -> (String, Vec<&'static str>) {
    let schema = Schema::new(Query { form, fixtures }, EmptyMutation, EmptySubscription);
    let mut request = Request::new(query).variables(Variables::from_json(vars.clone()));
    if way == Way::Text {
        request = request.data(RawJsonOutput);
    }
    trace::take();
    trace::set_executor_only(way == Way::Executor);
    let response = schema.execute(request).await;
    trace::set_executor_only(false);
    let json = String::from_utf8(response_json(&response).expect("the response writes")).unwrap();
    (normal(&json), trace::take())
}

/// JSON text without the differences JSON does not mean: white space, and a key repeated in one
/// object (the API server never sends either, but fixture files have white space). The order
/// of keys stays, and is compared.
fn normal(json: &str) -> String {
    let value: async_graphql::Value = serde_json::from_str(json).expect("the response is JSON");
    serde_json::to_string(&value).unwrap()
}

/// Where two texts first differ, with some context.
fn first_difference(a: &str, b: &str) -> String {
    let at = a.bytes().zip(b.bytes()).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let start = at.saturating_sub(120);
    let around = |s: &str| s.get(start..(at + 120).min(s.len())).unwrap_or("").to_owned();
    format!("at byte {at}:\n  {}\n  {}", around(a), around(b))
}

/// Runs `query` every way over every form; the answers must be equal, each must be free of errors,
/// and the pages must have gone the ways expected (`text_way`: what the text run falls back to).
async fn same_every_way(query: &str, vars: serde_json::Value, text_way: &str, value_way: &str) -> String {
    let mut first = None;
    for form in [Form::ListItem, Form::Parsed] {
        let (executor, ways) = answer(form, FIXTURES, query, &vars, Way::Executor).await;
        assert!(!ways.is_empty() && ways.iter().all(|w| *w == "executor"), "{ways:?}");
        assert!(!executor.contains("\"errors\""), "{form:?}: {executor}");
        for (way, expected_way) in [(Way::Value, value_way), (Way::Text, text_way)] {
            let (json, ways) = answer(form, FIXTURES, query, &vars, way).await;
            assert!(ways.iter().all(|w| *w == expected_way), "{form:?} {way:?}: went {ways:?}, not {expected_way}");
            assert!(
                json == executor,
                "{form:?} {way:?} differs from the executor {}",
                first_difference(&json, &executor)
            );
        }
        if form == Form::ListItem {
            first = Some(executor);
        }
    }
    first.unwrap()
}

const FULL: &str = "
    fragment Full on Resource {
        __typename apiVersion kind
        metadata {
            __typename name namespace uid resourceVersion generation
            labels { key value __typename } annotations { value key }
            creationTimestamp deletionTimestamp finalizers
            ownerReferences { apiVersion kind name uid controller __typename }
        }
        spec status json whole: json(managedFields: $mf) yaml managed: yaml(managedFields: true)
    }";

#[tokio::test]
async fn every_field_reads_the_same_through_the_resolvers_and_both_one_pass_writers() {
    let query = format!(
        "query($mf: Boolean!) {{ page {{
            edges {{ __typename cursor node {{ ...Full }} }}
            nodes {{ ...Full }}
            pageInfo {{ hasNextPage endCursor }} }} }} {FULL}"
    );
    for mf in [false, true] {
        let json = same_every_way(&query, json!({ "mf": mf }), "text", "value").await;
        // And the answer is right, not only the same.
        let body: serde_json::Value = serde_json::from_str(&json).unwrap();
        let nodes = &body["data"]["page"]["nodes"];
        let escapes = &nodes[1]["metadata"];
        assert_eq!(escapes["name"], "escapes \"quoted\" \\ and ünïcødé ✓");
        let labels: Vec<(&str, &str)> = escapes["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["key"].as_str().unwrap(), l["value"].as_str().unwrap()))
            .collect();
        assert_eq!(
            labels,
            [("a-first", "line\nbreak\ttab"), ("m\"id", "\u{1}control"), ("z-last", "3")],
            "sorted by key"
        );
        assert_eq!(
            escapes["annotations"],
            json!([{ "value": "last", "key": "dup" }, { "value": "x", "key": "other" }])
        );
        assert_eq!(escapes["creationTimestamp"], "2026-11-27T01:02:03.500+00:00");
        assert_eq!(escapes["deletionTimestamp"], "2026-11-27T01:02:03+00:00");
        assert_eq!(nodes[0]["metadata"]["creationTimestamp"], "2026-11-27T01:02:03+00:00");
        assert_eq!(escapes["ownerReferences"][0]["controller"], true);
        assert_eq!(escapes["ownerReferences"][1]["controller"], serde_json::Value::Null);
        assert_eq!(nodes[2]["metadata"]["generation"], 7);
        assert_eq!(nodes[2]["metadata"]["labels"], json!([]));
        assert_eq!(nodes[2]["spec"]["big"], json!(18446744073709551615u64));
        assert_eq!(nodes[0]["json"]["kind"], "ConfigMap", "a list item gets its type back");
        assert_eq!(nodes[0]["json"]["metadata"].get("managedFields"), None);
        assert_eq!(nodes[0]["whole"]["metadata"]["managedFields"].is_array(), mf);
        assert_eq!(nodes[4]["json"]["kind"], "Namespace", "an empty type is replaced");
        assert!(nodes[0]["managed"].as_str().unwrap().contains("managedFields:"));
        assert_eq!(body["data"]["page"]["edges"][3]["cursor"], "cursor-1");
    }
}

#[tokio::test]
async fn pages_across_clusters_and_table_pages_read_the_same_every_way() {
    let query = format!(
        "query($mf: Boolean!) {{
            across {{ edges {{ __typename cursor clusterId clusterName node {{ ...Full }} }} }}
            table {{
                rows {{ __typename cells text completed object {{ ...Full }} }}
                edges {{ __typename cursor node {{ text object {{ metadata {{ name }} }} }} }} }} }} {FULL}"
    );
    let json = same_every_way(&query, json!({ "mf": false }), "text", "value").await;
    let body: serde_json::Value = serde_json::from_str(&json).unwrap();
    let edge = &body["data"]["across"]["edges"][1];
    assert_eq!(edge["clusterName"], "two \"quoted\"");
    assert_eq!(edge["clusterId"], "id-1");
    assert_eq!(edge["cursor"], "cursor-2");
    let row = &body["data"]["table"]["rows"][1];
    assert_eq!(row["cells"], json!(["row-1", 1, 2.5, false, null, "a\"b\n"]));
    assert_eq!(row["text"], json!(["row-1", "1", "2.5", "false", "", "a\"b\n"]));
    assert_eq!(row["completed"], true);
    assert_eq!(body["data"]["table"]["edges"][0]["cursor"], "cursor-3");
}

#[tokio::test]
async fn aliases_fragments_and_merged_selections_read_as_the_executor_reads_them() {
    // Inline fragments, nested spreads and aliases: written as text.
    let nested = "{ page { nodes { ... on Resource { k: kind ...M } n2: metadata { ...Names } } } }
        fragment M on Resource { metadata { ...Names labels { ... on Label { key } } } }
        fragment Names on ObjectMeta { name ns: namespace }";
    same_every_way(nested, json!({}), "text", "value").await;
    // A key selected twice is merged: the text sink gives way to the value sink.
    let merged = format!(
        "query($mf: Boolean!) {{ page {{ nodes {{ ...Full metadata {{ name labels {{ key }} }} again: metadata {{ n: name }}
            metadata {{ ownerReferences {{ kind }} }} }} edges {{ node {{ kind }} node {{ apiVersion }} }} }} }} {FULL}"
    );
    same_every_way(&merged, json!({ "mf": true }), "value", "value").await;
    // More keys in one object than the text sink has room for.
    let aliases: String = (0..30).map(|i| format!("k{i}: kind ")).collect();
    same_every_way(&format!("{{ page {{ nodes {{ {aliases} }} }} }}"), json!({}), "value", "value").await;
    // `@include` and `@skip` are applied to the document before any resolver runs.
    let directive =
        "query($on: Boolean!) { page { nodes { kind @include(if: $on) metadata @skip(if: $on) { name } } } }";
    for on in [true, false] {
        let json = same_every_way(directive, json!({ "on": on }), "text", "value").await;
        let node: serde_json::Value =
            serde_json::from_str::<serde_json::Value>(&json).unwrap()["data"]["page"]["nodes"][0].clone();
        assert_eq!(node.get("kind").is_some(), on, "{json}");
        assert_eq!(node.get("metadata").is_some(), !on, "{json}");
    }
}

#[tokio::test]
async fn an_unreadable_object_answers_the_same_error_every_way() {
    for (what, item) in [
        ("a name that is not a string", r#"{"metadata":{"name":5}}"#),
        ("a date that does not exist", r#"{"metadata":{"name":"x","creationTimestamp":"2026-13-01T00:00:00Z"}}"#),
        ("labels that are not strings", r#"{"metadata":{"labels":{"a":1}}}"#),
        ("an owner without a uid", r#"{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"K","name":"n"}]}}"#),
    ] {
        let fixtures: &'static str = Box::leak(
            format!(
                r#"[{{"apiVersion":"v1","kind":"ConfigMap","item":{{"metadata":{{"name":"ok"}}}}}},
                        {{"apiVersion":"v1","kind":"ConfigMap","item":{item}}}]"#
            )
            .into_boxed_str(),
        );
        let query =
            "{ page { nodes { kind metadata { name creationTimestamp labels { key } ownerReferences { uid } } } } }";
        let (executor, _) = answer(Form::ListItem, fixtures, query, &json!({}), Way::Executor).await;
        let body: serde_json::Value = serde_json::from_str(&executor).unwrap();
        assert_eq!(body["errors"][0]["path"], json!(["page", "nodes", 1, "metadata"]), "{what}: {executor}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL", "{what}: {executor}");
        assert_eq!(body["data"]["page"]["nodes"][0]["metadata"]["name"], "ok", "the other objects are answered");
        for way in [Way::Value, Way::Text] {
            let (json, ways) = answer(Form::ListItem, fixtures, query, &json!({}), way).await;
            assert_eq!(ways, ["executor"], "{what}: {way:?}");
            assert_eq!(json, executor, "{what}: {way:?}");
        }
    }
}
