//! Raw JSON in responses written over HTTP and SSE.
//!
//! A whole object of a list page is already JSON (the API server's bytes). Turning it into a
//! response value only to write it out again costs more than the rest of the page, so when a
//! response is written by `response_json` a resolver may hand over JSON text instead: a
//! one-key object under serde_json's raw-value token, which the writer copies into the output
//! as it is (after checking it is JSON). The token is the convention async-graphql 8 adopts for
//! the same purpose. Responses written elsewhere (the WebSocket transports) never carry the
//! marker: resolvers produce raw values only when `RawJsonOutput` is in the request's data.

use async_graphql::indexmap::IndexMap;
use async_graphql::{BatchResponse, Name, Response, Value};
use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// serde_json's name for a raw value.
pub const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// In a request's data: its response is written by `response_json`, so raw JSON may be used.
#[derive(Debug, Clone, Copy)]
pub struct RawJsonOutput;

/// A response value that `response_json` writes as the JSON text `json`.
pub fn raw_value(json: String) -> Value {
    let mut map = IndexMap::with_capacity(1);
    map.insert(Name::new(RAW_VALUE_TOKEN), Value::String(json));
    Value::Object(map)
}

struct Out<'a>(&'a Value);

impl Serialize for Out<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                if let (1, Some(Value::String(text))) = (map.len(), map.get(RAW_VALUE_TOKEN)) {
                    let raw: &RawValue = serde_json::from_str(text).map_err(S::Error::custom)?;
                    return raw.serialize(serializer);
                }
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    out.serialize_entry(key.as_str(), &Out(value))?;
                }
                out.end()
            }
            Value::List(items) => serializer.collect_seq(items.iter().map(Out)),
            other => other.serialize(serializer),
        }
    }
}

/// A response as async-graphql writes it (`data`, then `extensions` and `errors` when present),
/// with raw values copied through.
struct ResponseOut<'a>(&'a Response);

impl Serialize for ResponseOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("data", &Out(&r.data))?;
        if !r.extensions.is_empty() {
            out.serialize_entry("extensions", &r.extensions)?;
        }
        if !r.errors.is_empty() {
            out.serialize_entry("errors", &r.errors)?;
        }
        out.end()
    }
}

/// The JSON body of a response.
pub fn response_json(response: &Response) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&ResponseOut(response))
}

/// The JSON body of a single or batched response.
pub fn batch_json(batch: &BatchResponse) -> serde_json::Result<Vec<u8>> {
    match batch {
        BatchResponse::Single(response) => response_json(response),
        BatchResponse::Batch(responses) => serde_json::to_vec(&responses.iter().map(ResponseOut).collect::<Vec<_>>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_are_copied_through_and_the_rest_is_written_as_async_graphql_writes_it() {
        let mut data = IndexMap::new();
        data.insert(Name::new("object"), raw_value(r#"{"b":1,"a":[true,null]}"#.to_owned()));
        data.insert(Name::new("plain"), Value::List(vec![Value::String("x".into()), Value::Number(2.into())]));
        let mut response = Response::new(Value::Object(data));
        let ours: serde_json::Value = serde_json::from_slice(&response_json(&response).unwrap()).unwrap();
        assert_eq!(ours, serde_json::json!({ "data": { "object": { "b": 1, "a": [true, null] }, "plain": ["x", 2] } }));
        let text = String::from_utf8(response_json(&response).unwrap()).unwrap();
        assert!(text.contains(r#""object":{"b":1,"a":[true,null]}"#), "copied byte for byte: {text}");

        response.data = Value::String("no raw".into());
        response.errors.push(async_graphql::ServerError::new("bad", None));
        let theirs = serde_json::to_value(&response).unwrap();
        let ours: serde_json::Value = serde_json::from_slice(&response_json(&response).unwrap()).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn text_that_is_not_json_is_refused_not_written() {
        let response = Response::new(raw_value("{not json".to_owned()));
        assert!(response_json(&response).is_err());
    }
}
