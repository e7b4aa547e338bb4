//! One Kubernetes object of any kind in the schema (`Resource`), and its metadata.
//!
//! An object reaches a resolver in one of two forms: parsed by kube-rs (a single read, a write's
//! result, a watch event shared by its subscribers), or, for the items of a list page, as the
//! bytes the API server sent. A list item is parsed only as far as the query reads it: metadata
//! into a small struct that skips `managedFields`, the whole object straight into the response
//! value, with no typed or intermediate JSON tree on the way.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    ContextSelectionSet, Json, Name, Object, OutputType, Positioned, ServerError, ServerResult, SimpleObject, Value,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DynamicObject;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::clusters::Label;
use super::raw::{RawJsonOutput, raw_value};
use crate::error::ApiError;
use crate::resources::RawObject;
use crate::resources::raw::members_deserializer;

/// What every object of one query shares: its type and its cluster.
#[derive(Debug)]
pub struct Origin {
    pub api_version: String,
    pub kind: String,
    pub cluster_id: String,
    /// `"apiVersion":…,"kind":…` as JSON members, put back into list items' text.
    type_members: String,
}

impl Origin {
    pub fn new(api_version: &str, kind: &str, cluster_id: &str) -> Arc<Self> {
        let json = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        Arc::new(Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            cluster_id: cluster_id.to_owned(),
            type_members: format!("\"apiVersion\":{},\"kind\":{}", json(api_version), json(kind)),
        })
    }
}

enum Body {
    Object(Arc<DynamicObject>),
    Raw(RawObject),
}

/// A Kubernetes object of any kind.
pub struct Resource {
    body: Body,
    origin: Arc<Origin>,
    meta: OnceLock<Result<Meta<'static>, String>>,
}

impl Resource {
    pub fn new(object: DynamicObject, api_version: &str, kind: &str, cluster_id: &str) -> Self {
        Self::shared(Arc::new(object), Origin::new(api_version, kind, cluster_id))
    }

    /// An object parsed once and shared, such as a watch event's.
    pub fn shared(object: Arc<DynamicObject>, origin: Arc<Origin>) -> Self {
        Self { body: Body::Object(object), origin, meta: OnceLock::new() }
    }

    /// A list item as the API server sent it.
    pub fn raw(raw: RawObject, origin: Arc<Origin>) -> Self {
        Self { body: Body::Raw(raw), origin, meta: OnceLock::new() }
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The object's metadata, read once and kept (for the resolvers).
    pub(super) fn meta(&self) -> Result<&Meta<'static>, ApiError> {
        let meta = self.meta.get_or_init(|| match &self.body {
            Body::Object(object) => Ok(Meta::from(&object.metadata)),
            Body::Raw(raw) => read_meta(raw).map(Meta::into_owned),
        });
        meta.as_ref().map_err(|e| ApiError::internal(format!("the object's metadata could not be read: {e}")))
    }

    /// The object's metadata for one read: a list item's borrowed from its bytes (nothing kept),
    /// a parsed object's as kept. `None` when it cannot be read (`meta` says why).
    pub(super) fn meta_view(&self) -> Option<Cow<'_, Meta<'_>>> {
        match &self.body {
            Body::Raw(raw) if self.meta.get().is_none() => read_meta(raw).ok().map(Cow::Owned),
            _ => self.meta().ok().map(Cow::Borrowed),
        }
    }

    /// The whole object as a response value, with `apiVersion` and `kind` first (list items come
    /// without them; they are put back). `metadata.managedFields` is left out unless asked for,
    /// as `kubectl get -o yaml` leaves it out; read from a list item it is skipped unparsed.
    pub(super) fn whole(&self, managed_fields: bool) -> Result<Value, String> {
        let value = match &self.body {
            Body::Object(object) => {
                let mut value = async_graphql::to_value(&**object).map_err(|e| e.to_string())?;
                if !managed_fields
                    && let Value::Object(fields) = &mut value
                    && let Some(Value::Object(meta)) = fields.get_mut("metadata")
                {
                    meta.shift_remove("managedFields");
                }
                value
            }
            Body::Raw(raw) => {
                let skip: &[&str] = if managed_fields { &[] } else { &["metadata", "managedFields"] };
                let mut de = serde_json::Deserializer::from_str(raw.get());
                let value = ObjectSeed { skip }.deserialize(&mut de).map_err(|e| e.to_string())?;
                de.end().map_err(|e| e.to_string())?;
                value
            }
        };
        let Value::Object(fields) = value else { return Ok(value) };
        let typed = |key: &str| matches!(fields.get(key), Some(Value::String(s)) if !s.is_empty());
        if typed("apiVersion") && typed("kind") {
            return Ok(Value::Object(fields));
        }
        let mut out = IndexMap::with_capacity(fields.len() + 2);
        out.insert(Name::new("apiVersion"), Value::String(self.origin.api_version.clone()));
        out.insert(Name::new("kind"), Value::String(self.origin.kind.clone()));
        out.extend(fields.into_iter().filter(|(k, _)| k.as_str() != "apiVersion" && k.as_str() != "kind"));
        Ok(Value::Object(out))
    }

    /// The whole object as JSON text, for a response that passes raw JSON through (see
    /// `raw.rs`): the list item's own bytes with its type put back and, unless asked for,
    /// `metadata.managedFields` cut out. `None` when the object is not a list item, or its keys
    /// need unescaping (Kubernetes' never do); the caller then builds the value instead.
    pub(super) fn whole_text(&self, managed_fields: bool) -> Option<String> {
        let mut out = String::with_capacity(self.raw_len() + 64);
        self.write_whole_text(&mut out, managed_fields)?;
        Some(out)
    }

    /// The length of a list item's text (0 for a parsed object).
    pub(super) fn raw_len(&self) -> usize {
        match &self.body {
            Body::Raw(raw) => raw.get().len(),
            Body::Object(_) => 0,
        }
    }

    /// `whole_text`, appended to `out`; on `None`, `out` is left as it was.
    pub(super) fn write_whole_text(&self, out: &mut String, managed_fields: bool) -> Option<()> {
        let len = out.len();
        let written = self.try_write_whole_text(out, managed_fields);
        if written.is_none() {
            out.truncate(len);
        }
        written
    }

    fn try_write_whole_text(&self, out: &mut String, managed_fields: bool) -> Option<()> {
        let Body::Raw(raw) = &self.body else { return None };
        let members = raw.members()?;
        let typed = |key: &str| members.clone().any(|(k, v)| k == key && v.starts_with('"') && v != "\"\"");
        let keep_type = typed("apiVersion") && typed("kind");
        out.push('{');
        let mut first = keep_type;
        if !keep_type {
            out.push_str(&self.origin.type_members);
        }
        let mut key = |out: &mut String, k: &str| {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
        };
        for (k, v) in members {
            if !keep_type && (k == "apiVersion" || k == "kind") {
                continue;
            }
            key(out, k);
            if k == "metadata" && !managed_fields && v.starts_with('{') {
                out.push('{');
                let mut first_meta = true;
                for (mk, mv) in raw.metadata_members()?.filter(|(mk, _)| *mk != "managedFields") {
                    if !std::mem::take(&mut first_meta) {
                        out.push(',');
                    }
                    out.push('"');
                    out.push_str(mk);
                    out.push_str("\":");
                    out.push_str(mv);
                }
                out.push('}');
            } else {
                out.push_str(v);
            }
        }
        out.push('}');
        Some(())
    }

    /// One top-level field of the object (`spec`, `status`), as JSON.
    pub(super) fn part(&self, key: &str) -> Result<serde_json::Value, String> {
        match &self.body {
            Body::Object(object) => Ok(object.data.get(key).cloned().unwrap_or_default()),
            Body::Raw(raw) => {
                if raw.members().is_some() {
                    return raw.member(key).map_or(Ok(serde_json::Value::Null), |part| {
                        serde_json::from_str(part).map_err(|e| e.to_string())
                    });
                }
                let fields: BTreeMap<&str, &serde_json::value::RawValue> =
                    serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
                fields
                    .get(key)
                    .map(|part| serde_json::from_str(part.get()).map_err(|e| e.to_string()))
                    .unwrap_or(Ok(serde_json::Value::Null))
            }
        }
    }
}

/// The metadata of a list item, borrowing what it can: read from the members of `metadata`
/// that the item's index found (so `managedFields` and the rest of the object are not read
/// again), or from the whole text when it has no index.
fn read_meta(raw: &RawObject) -> Result<Meta<'_>, String> {
    if let Some(members) = raw.metadata_members() {
        let members = members.filter(|(k, _)| *k != "managedFields");
        return Meta::deserialize(members_deserializer(members)).map_err(|e| e.to_string());
    }
    #[derive(Deserialize)]
    struct OnlyMetadata<'a> {
        #[serde(default, borrow)]
        metadata: Meta<'a>,
    }
    serde_json::from_str::<OnlyMetadata>(raw.get()).map(|o| o.metadata).map_err(|e| e.to_string())
}

/// Parses JSON into a response value, leaving out the field at the path `skip` (a key of this
/// object, then keys of nested objects) without building it. Keys become names with one
/// allocation each (the value type's own parser makes two).
struct ObjectSeed<'p> {
    skip: &'p [&'p str],
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = IndexMap::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.skip {
                [only] if *only == key.as_str() => {
                    map.next_value::<IgnoredAny>()?;
                }
                [first, rest @ ..] if *first == key.as_str() => {
                    fields.insert(key, map.next_value_seed(ObjectSeed { skip: rest })?);
                }
                _ => {
                    fields.insert(key, map.next_value_seed(ObjectSeed { skip: &[] })?);
                }
            }
        }
        Ok(Value::Object(fields))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(ObjectSeed { skip: &[] })? {
            items.push(item);
        }
        Ok(Value::List(items))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Name;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Name, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Name;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
        Ok(Name::new(v))
    }
}

/// The `JSON` scalar of a whole object, built when the response asks for it.
pub struct WholeObject<'a> {
    pub(super) resource: &'a Resource,
    pub(super) managed_fields: bool,
}

impl OutputType for WholeObject<'_> {
    fn type_name() -> Cow<'static, str> {
        <Json<serde_json::Value> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Json<serde_json::Value> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        if ctx.data_opt::<RawJsonOutput>().is_some()
            && let Some(text) = self.resource.whole_text(self.managed_fields)
        {
            return Ok(raw_value(text));
        }
        self.resource
            .whole(self.managed_fields)
            .map_err(|e| ServerError::new(format!("the object could not be read: {e}"), Some(field.pos)))
    }
}

/// Text read from JSON: borrowed from the input where it has no escapes, owned otherwise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text<'a>(pub(super) Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn owned(&self) -> Text<'static> {
        Text(Cow::Owned(self.0.clone().into_owned()))
    }
}

impl From<&str> for Text<'static> {
    fn from(s: &str) -> Self {
        Text(Cow::Owned(s.to_owned()))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The metadata fields the schema serves, each in the form the schema gives it: this is the one
/// place that says what a `metadata` field means, for the resolvers and for the one-pass page
/// writers alike (`fields.rs`). Read from a list item, it borrows the item's bytes and skips
/// `managedFields` and everything outside `metadata` without building them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Meta<'a> {
    #[serde(borrow)]
    pub(super) name: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) namespace: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) uid: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) resource_version: Option<Text<'a>>,
    pub(super) generation: Option<i64>,
    /// By key, each key once (the last given wins, as when the API server parses it).
    #[serde(borrow, deserialize_with = "pairs")]
    pub(super) labels: Vec<(Text<'a>, Text<'a>)>,
    #[serde(borrow, deserialize_with = "pairs")]
    pub(super) annotations: Vec<(Text<'a>, Text<'a>)>,
    /// RFC 3339 with the zone as an offset, as the schema's `DateTime` writes it.
    #[serde(borrow, deserialize_with = "timestamp")]
    pub(super) creation_timestamp: Option<Text<'a>>,
    #[serde(borrow, deserialize_with = "timestamp")]
    pub(super) deletion_timestamp: Option<Text<'a>>,
    #[serde(borrow, deserialize_with = "or_empty")]
    pub(super) finalizers: Vec<Text<'a>>,
    #[serde(borrow, deserialize_with = "or_empty")]
    pub(super) owner_references: Vec<Owner<'a>>,
}

/// One of `metadata.ownerReferences`, as the schema serves it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner<'a> {
    #[serde(borrow)]
    pub(super) api_version: Text<'a>,
    #[serde(borrow)]
    pub(super) kind: Text<'a>,
    #[serde(borrow)]
    pub(super) name: Text<'a>,
    #[serde(borrow)]
    pub(super) uid: Text<'a>,
    #[serde(default)]
    pub(super) controller: Option<bool>,
}

impl Meta<'_> {
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_ref().map(Text::as_str)
    }
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_ref().map(Text::as_str)
    }

    /// The same metadata, owning its text.
    pub fn into_owned(self) -> Meta<'static> {
        let text = |t: Option<Text>| t.map(|t| t.owned());
        let pairs = |p: Vec<(Text, Text)>| p.iter().map(|(k, v)| (k.owned(), v.owned())).collect();
        Meta {
            name: text(self.name),
            namespace: text(self.namespace),
            uid: text(self.uid),
            resource_version: text(self.resource_version),
            generation: self.generation,
            labels: pairs(self.labels),
            annotations: pairs(self.annotations),
            creation_timestamp: text(self.creation_timestamp),
            deletion_timestamp: text(self.deletion_timestamp),
            finalizers: self.finalizers.iter().map(Text::owned).collect(),
            owner_references: self
                .owner_references
                .into_iter()
                .map(|o| Owner {
                    api_version: o.api_version.owned(),
                    kind: o.kind.owned(),
                    name: o.name.owned(),
                    uid: o.uid.owned(),
                    controller: o.controller,
                })
                .collect(),
        }
    }
}

impl From<&kube::api::ObjectMeta> for Meta<'static> {
    fn from(m: &kube::api::ObjectMeta) -> Self {
        let text = |t: &Option<String>| t.as_deref().map(Text::from);
        let pairs = |map: &Option<BTreeMap<String, String>>| {
            map.iter().flatten().map(|(k, v)| (Text::from(k.as_str()), Text::from(v.as_str()))).collect()
        };
        let time = |t: &Option<Time>| t.as_ref().map(|t| Text(Cow::Owned(to_chrono(&t.0).to_rfc3339())));
        Meta {
            name: text(&m.name),
            namespace: text(&m.namespace),
            uid: text(&m.uid),
            resource_version: text(&m.resource_version),
            generation: m.generation,
            labels: pairs(&m.labels),
            annotations: pairs(&m.annotations),
            creation_timestamp: time(&m.creation_timestamp),
            deletion_timestamp: time(&m.deletion_timestamp),
            finalizers: m.finalizers.iter().flatten().map(|f| Text::from(f.as_str())).collect(),
            owner_references: m
                .owner_references
                .iter()
                .flatten()
                .map(|o| Owner {
                    api_version: Text::from(o.api_version.as_str()),
                    kind: Text::from(o.kind.as_str()),
                    name: Text::from(o.name.as_str()),
                    uid: Text::from(o.uid.as_str()),
                    controller: o.controller,
                })
                .collect(),
        }
    }
}

/// A JSON object of strings as pairs sorted by key, each key once (the last wins).
fn pairs<'de: 'a, 'a, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(Text<'a>, Text<'a>)>, D::Error> {
    struct PairsVisitor<'a>(std::marker::PhantomData<&'a ()>);
    impl<'de: 'a, 'a> Visitor<'de> for PairsVisitor<'a> {
        type Value = Vec<(Text<'a>, Text<'a>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of strings")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs: Vec<(Text<'a>, Text<'a>)> = Vec::with_capacity(map.size_hint().unwrap_or(4));
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
                // Stable, so that of equal keys the last given stays last, and is kept.
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                let mut kept: Vec<(Text<'a>, Text<'a>)> = Vec::with_capacity(pairs.len());
                for pair in pairs {
                    match kept.last_mut() {
                        Some(last) if last.0 == pair.0 => *last = pair,
                        _ => kept.push(pair),
                    }
                }
                pairs = kept;
            }
            Ok(pairs)
        }
    }
    deserializer.deserialize_option(OptionOf(PairsVisitor(std::marker::PhantomData)))
}

/// A list, with `null` read as empty.
fn or_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A Kubernetes timestamp in the form the schema writes it (`DateTime<Utc>::to_rfc3339`).
/// The API server writes whole seconds in UTC (`"2026-11-27T01:00:00Z"`), which only needs its
/// zone spelt as an offset once its date and time are checked; anything else is parsed as
/// kube-rs parses it, and formatted.
fn timestamp<'de: 'a, 'a, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Text<'a>>, D::Error> {
    let Some(text) = Option::<Text<'a>>::deserialize(deserializer)? else { return Ok(None) };
    rfc3339(text.as_str()).map(|t| Some(Text(Cow::Owned(t)))).map_err(serde::de::Error::custom)
}

pub(super) fn rfc3339(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let shape = b.len() == 20
        && b[19] == b'Z'
        && b[..19].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    let number = |range: std::ops::Range<usize>| s[range].parse::<u32>().unwrap_or(u32::MAX);
    if shape
        && chrono::NaiveDate::from_ymd_opt(number(0..4) as i32, number(5..7), number(8..10)).is_some()
        && chrono::NaiveTime::from_hms_opt(number(11..13), number(14..16), number(17..19)).is_some()
    {
        return Ok(format!("{}+00:00", &s[..19]));
    }
    let time: k8s_openapi::jiff::Timestamp = s.parse().map_err(|e: k8s_openapi::jiff::Error| e.to_string())?;
    Ok(to_chrono(&time).to_rfc3339())
}

/// Reads `null` as the visitor's unit, anything else with the visitor.
struct OptionOf<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for OptionOf<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.0.expecting(f)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        deserializer.deserialize_map(self.0)
    }
}

pub(super) fn to_chrono(t: &k8s_openapi::jiff::Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32).unwrap_or_default()
}

/// The schema's `DateTime` for a timestamp already in its written form.
pub struct DateTimeText<'a>(pub(super) &'a str);

impl OutputType for DateTimeText<'_> {
    fn type_name() -> Cow<'static, str> {
        <chrono::DateTime<chrono::Utc> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <chrono::DateTime<chrono::Utc> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, _: &ContextSelectionSet<'_>, _: &Positioned<Field>) -> ServerResult<Value> {
        Ok(Value::String(self.0.to_owned()))
    }
}

/// An owner of an object, as in `metadata.ownerReferences`.
#[derive(SimpleObject)]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: Option<bool>,
}

/// The common metadata of every object.
pub struct ObjectMeta<'a>(pub(super) &'a Meta<'a>);

fn label_list(pairs: &[(Text, Text)]) -> Vec<Label> {
    pairs.iter().map(|(k, v)| Label { key: k.as_str().to_owned(), value: v.as_str().to_owned() }).collect()
}

// Resolved field after field: every field is a read of parsed memory, and running them as
// concurrent futures costs more than the fields themselves on pages of hundreds of objects.
#[Object(serial)]
impl ObjectMeta<'_> {
    async fn name(&self) -> Option<&str> {
        self.0.name.as_ref().map(Text::as_str)
    }
    async fn namespace(&self) -> Option<&str> {
        self.0.namespace()
    }
    async fn uid(&self) -> Option<&str> {
        self.0.uid()
    }
    async fn resource_version(&self) -> Option<&str> {
        self.0.resource_version.as_ref().map(Text::as_str)
    }
    async fn generation(&self) -> Option<i64> {
        self.0.generation
    }
    async fn labels(&self) -> Vec<Label> {
        label_list(&self.0.labels)
    }
    async fn annotations(&self) -> Vec<Label> {
        label_list(&self.0.annotations)
    }
    async fn creation_timestamp(&self) -> Option<DateTimeText<'_>> {
        self.0.creation_timestamp.as_ref().map(|t| DateTimeText(t.as_str()))
    }
    async fn deletion_timestamp(&self) -> Option<DateTimeText<'_>> {
        self.0.deletion_timestamp.as_ref().map(|t| DateTimeText(t.as_str()))
    }
    async fn finalizers(&self) -> Vec<&str> {
        self.0.finalizers.iter().map(Text::as_str).collect()
    }
    async fn owner_references(&self) -> Vec<OwnerReference> {
        self.0
            .owner_references
            .iter()
            .map(|o| OwnerReference {
                api_version: o.api_version.as_str().to_owned(),
                kind: o.kind.as_str().to_owned(),
                name: o.name.as_str().to_owned(),
                uid: o.uid.as_str().to_owned(),
                controller: o.controller,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEM: &str = r#"{"metadata":{"name":"a","namespace":"ns","uid":"u-1","resourceVersion":"7",
        "labels":{"app":"web"},"creationTimestamp":"2026-11-27T01:00:00Z",
        "managedFields":[{"manager":"kubectl","operation":"Apply","fieldsV1":{"f:data":{}}}]},
        "data":{"k":"v"}}"#;

    fn raw_item() -> Resource {
        let raw = RawObject::from_json(ITEM).unwrap();
        Resource::raw(raw, Origin::new("v1", "ConfigMap", "c"))
    }

    #[test]
    fn a_list_item_gets_its_type_back_first_and_keeps_the_api_servers_order() {
        let Value::Object(fields) = raw_item().whole(true).unwrap() else { panic!("not an object") };
        let keys: Vec<&str> = fields.keys().map(Name::as_str).collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "data"]);
        assert_eq!(fields["kind"], Value::String("ConfigMap".into()));
        let json = serde_json::to_value(Value::Object(fields)).unwrap();
        assert_eq!(json["metadata"]["managedFields"][0]["manager"], "kubectl", "the whole object is whole");
        assert_eq!(json["data"]["k"], "v");
    }

    #[test]
    fn metadata_of_a_list_item_reads_the_served_fields() {
        let item = raw_item();
        let meta = item.meta().unwrap();
        assert_eq!(meta.name.as_ref().map(Text::as_str), Some("a"));
        assert_eq!(meta.uid(), Some("u-1"));
        assert_eq!(meta.labels, [(Text::from("app"), Text::from("web"))]);
        assert_eq!(meta.creation_timestamp.as_ref().map(Text::as_str), Some("2026-11-27T01:00:00+00:00"));
        assert_eq!(item.part("data").unwrap(), serde_json::json!({ "k": "v" }));
        assert_eq!(item.part("spec").unwrap(), serde_json::Value::Null);
    }

    #[test]
    fn an_object_and_its_list_item_form_give_the_same_whole_object() {
        let object: DynamicObject = serde_json::from_str(ITEM).unwrap();
        let parsed = Resource::new(object, "v1", "ConfigMap", "c");
        for managed_fields in [true, false] {
            let as_json = |r: &Resource| serde_json::to_value(r.whole(managed_fields).unwrap()).unwrap();
            assert_eq!(as_json(&parsed), as_json(&raw_item()), "managedFields: {managed_fields}");
        }
    }

    #[test]
    fn the_text_of_a_list_item_is_the_same_object_as_its_value() {
        for managed_fields in [true, false] {
            let item = raw_item();
            let text = item.whole_text(managed_fields).expect("a list item has text");
            let from_text: serde_json::Value = serde_json::from_str(&text).unwrap();
            let from_value = serde_json::to_value(item.whole(managed_fields).unwrap()).unwrap();
            assert_eq!(from_text, from_value, "managedFields: {managed_fields}");
            assert!(text.starts_with(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a""#), "{text}");
        }
        // A custom resource's list items carry their type; it is kept as it is.
        let raw = RawObject::from_json(r#"{"apiVersion":"x.io/v1","kind":"W","metadata":{}}"#).unwrap();
        let item = Resource::raw(raw, Origin::new("x.io/v1", "W", "c"));
        assert_eq!(item.whole_text(false).unwrap(), r#"{"apiVersion":"x.io/v1","kind":"W","metadata":{}}"#);
        // Parsed objects have no text.
        let parsed = Resource::new(serde_json::from_str(ITEM).unwrap(), "v1", "ConfigMap", "c");
        assert!(parsed.whole_text(false).is_none());
    }

    #[test]
    fn managed_fields_are_left_out_unless_asked_for() {
        let json = serde_json::to_value(raw_item().whole(false).unwrap()).unwrap();
        assert_eq!(json["metadata"].get("managedFields"), None);
        assert_eq!(json["metadata"]["labels"]["app"], "web", "the rest of metadata stays: {json}");
        assert_eq!(json["data"]["k"], "v");
        let keys: Vec<&str> = json["metadata"].as_object().unwrap().keys().map(String::as_str).collect();
        assert!(keys.contains(&"creationTimestamp") && keys.contains(&"resourceVersion"), "{keys:?}");
    }

    #[test]
    fn a_list_item_with_other_values_parses_whole() {
        let text = r#"{"metadata":{"name":"n","managedFields":[]},"spec":{"replicas":3,"ratio":0.5,"on":true,"none":null,"list":[1,"a",{"b":[]}]}}"#;
        let raw = RawObject::from_json(text).unwrap();
        let item = Resource::raw(raw, Origin::new("apps/v1", "Deployment", "c"));
        let json = serde_json::to_value(item.whole(false).unwrap()).unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(text).unwrap();
        expected["metadata"].as_object_mut().unwrap().remove("managedFields");
        expected.as_object_mut().unwrap().insert("apiVersion".into(), "apps/v1".into());
        expected.as_object_mut().unwrap().insert("kind".into(), "Deployment".into());
        assert_eq!(json, expected);
    }
}
