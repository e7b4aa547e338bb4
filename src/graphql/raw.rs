//! Raw JSON in responses written over HTTP and SSE.
//!
//! A whole object of a list page is already JSON (the API server's bytes). Turning it into a
//! response value only to write it out again costs more than the rest of the page, so when a
//! response is written by `response_json` a resolver may hand over JSON text instead: a
//! one-key object under serde_json's raw-value token, which the writer copies into the output
//! as it is (see `check`). The token is the convention async-graphql 8 adopts for
//! the same purpose. Responses written elsewhere (the WebSocket transports) never carry the
//! marker: resolvers produce raw values only when `RawJsonOutput` is in the request's data.

use async_graphql::indexmap::IndexMap;
use async_graphql::{BatchResponse, Name, Response, Value};

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

/// Appends `value` as JSON to `out`, raw values copied as they are.
fn write_value(out: &mut Vec<u8>, value: &Value) -> serde_json::Result<()> {
    match value {
        Value::Object(map) => {
            if let (1, Some(Value::String(text))) = (map.len(), map.get(RAW_VALUE_TOKEN)) {
                check(text)?;
                out.extend_from_slice(text.as_bytes());
                return Ok(());
            }
            out.push(b'{');
            for (i, (key, value)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key.as_str())?;
                out.push(b':');
                write_value(out, value)?;
            }
            out.push(b'}');
        }
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other)?,
    }
    Ok(())
}

/// Raw values are made only by this crate's writers, from spans of the API server's JSON that
/// serde_json has already read (so checked) and from text they escape themselves: they are JSON
/// by construction, and a release build copies them without reading them again (for a page of
/// whole objects that second read cost as much as the rest of the server's work on it). Debug
/// builds, which the test suite runs, check every one, so a writer that broke the rule fails
/// the tests instead of reaching a client.
fn check(text: &str) -> serde_json::Result<()> {
    if cfg!(debug_assertions) {
        serde_json::from_str::<serde::de::IgnoredAny>(text)?;
    }
    Ok(())
}

/// The bytes of the raw values in `value`: most of a page's response, so the output is sized
/// once for them.
fn raw_len(value: &Value) -> usize {
    match value {
        Value::Object(map) => match (map.len(), map.get(RAW_VALUE_TOKEN)) {
            (1, Some(Value::String(text))) => text.len(),
            _ => map.values().map(raw_len).sum(),
        },
        Value::List(items) => items.iter().map(raw_len).sum(),
        _ => 0,
    }
}

/// A response as async-graphql writes it (`data`, then `extensions` and `errors` when present),
/// with raw values copied through.
fn write_response(out: &mut Vec<u8>, r: &Response) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"data\":");
    write_value(out, &r.data)?;
    if !r.extensions.is_empty() {
        out.extend_from_slice(b",\"extensions\":");
        serde_json::to_writer(&mut *out, &r.extensions)?;
    }
    if !r.errors.is_empty() {
        out.extend_from_slice(b",\"errors\":");
        serde_json::to_writer(&mut *out, &r.errors)?;
    }
    out.push(b'}');
    Ok(())
}

/// The JSON body of a response.
pub fn response_json(response: &Response) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw_len(&response.data) + 4096);
    write_response(&mut out, response)?;
    Ok(out)
}

/// The JSON body of a single or batched response.
pub fn batch_json(batch: &BatchResponse) -> serde_json::Result<Vec<u8>> {
    match batch {
        BatchResponse::Single(response) => response_json(response),
        BatchResponse::Batch(responses) => {
            let mut out = Vec::with_capacity(responses.iter().map(|r| raw_len(&r.data) + 4096).sum());
            out.push(b'[');
            for (i, response) in responses.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_response(&mut out, response)?;
            }
            out.push(b']');
            Ok(out)
        }
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

    /// In debug builds (the test suite's); a release build trusts its writers (see `check`).
    #[test]
    #[cfg(debug_assertions)]
    fn text_that_is_not_json_is_refused_not_written() {
        let response = Response::new(raw_value("{not json".to_owned()));
        assert!(response_json(&response).is_err());
    }
}
