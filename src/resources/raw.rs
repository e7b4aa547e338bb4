//! An object as the API server sent it, indexed as it is read.
//!
//! A list page keeps its items as text: a query parses only what it reads of them, and a whole
//! object goes to the response as its own bytes. Reading a page's list already walks every byte
//! of every item once; this type records, during that walk, where each top-level member and
//! each member of `metadata` lies in the item's text. Later reads (the metadata fields, the
//! whole object with `managedFields` cut out, `spec`) then go straight to the members they need
//! instead of scanning the item again, which measured as most of a page's time in the server.
//!
//! An item that the index cannot describe (not an object, `metadata` that is not an object, or a
//! key with escapes, none of which the API server writes) keeps its text and no index, and every
//! reader then parses the text as a whole, as it would without an index.

use std::borrow::Cow;
use std::ops::Range;

use serde::de::value::SeqAccessDeserializer;
use serde::de::{DeserializeSeed, Deserializer, Error as _, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};
use serde_json::value::RawValue;

/// One object of a list page (or a single read), as the API server sent it.
#[derive(Debug, Clone)]
pub struct RawObject {
    /// The object's JSON: the API server's bytes, with the whitespace between the members of the
    /// object and of its `metadata` left out.
    text: Box<str>,
    index: Option<Index>,
}

#[derive(Debug, Clone)]
struct Index {
    members: Box<[Member]>,
    /// The members of `metadata`; `None` when the object has no `metadata` object.
    metadata: Option<Box<[Member]>>,
}

/// Where one member's key (without its quotes) and value lie in the text.
#[derive(Debug, Clone)]
struct Member {
    key: Range<usize>,
    value: Range<usize>,
}

impl RawObject {
    /// Reads an object from JSON text.
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    /// The object's JSON text.
    pub fn get(&self) -> &str {
        &self.text
    }

    /// The object's members as (key, JSON text of the value), in order; `None` when the object
    /// was not indexed (read the text instead).
    pub fn members(&self) -> Option<impl Iterator<Item = (&str, &str)> + Clone> {
        Some(self.pairs(&self.index.as_ref()?.members))
    }

    /// The JSON text of one top-level member (`None` when absent or not indexed).
    pub fn member(&self, key: &str) -> Option<&str> {
        self.members()?.find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The members of `metadata`, as `members`. `Some` of nothing when the object has no
    /// metadata; `None` when it was not indexed, or its `metadata` is not an object.
    pub fn metadata_members(&self) -> Option<impl Iterator<Item = (&str, &str)> + Clone> {
        let index = self.index.as_ref()?;
        match &index.metadata {
            Some(members) => Some(self.pairs(members)),
            None if index.members.iter().all(|m| &self.text[m.key.clone()] != "metadata") => Some(self.pairs(&[])),
            None => None,
        }
    }

    fn pairs<'a>(&'a self, members: &'a [Member]) -> impl Iterator<Item = (&'a str, &'a str)> + Clone {
        members.iter().map(|m| (&self.text[m.key.clone()], &self.text[m.value.clone()]))
    }
}

/// Deserializes the JSON text of one value, borrowing strings from it: lets a struct be read
/// from an object's indexed members (see `members_deserializer`).
#[derive(Clone, Copy)]
pub struct JsonText<'a>(pub &'a str);

impl<'de> JsonText<'de> {
    /// Runs one read of serde_json's deserializer over the text, which must hold nothing more.
    fn read<T>(
        self,
        read: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::StrRead<'de>>) -> serde_json::Result<T>,
    ) -> serde_json::Result<T> {
        let mut de = serde_json::Deserializer::from_str(self.0);
        let value = read(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

/// Each method of `Deserializer`, handed to serde_json's with the same arguments.
macro_rules! forward_to_json {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            self.read(|de| de.$method($($arg,)* visitor))
        }
    )*};
}

impl<'de> Deserializer<'de> for JsonText<'de> {
    type Error = serde_json::Error;

    forward_to_json! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16(); deserialize_i32();
        deserialize_i64(); deserialize_u8(); deserialize_u16(); deserialize_u32(); deserialize_u64();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str(); deserialize_string();
        deserialize_bytes(); deserialize_byte_buf(); deserialize_option(); deserialize_unit();
        deserialize_seq(); deserialize_map(); deserialize_identifier(); deserialize_ignored_any();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }
}

impl<'de> IntoDeserializer<'de, serde_json::Error> for JsonText<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

/// A key of an object's members, read as a struct's field name.
struct Key<'a>(&'a str);

impl<'de> Deserializer<'de> for Key<'de> {
    type Error = serde_json::Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.0)
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, serde_json::Error> for Key<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

/// A deserializer of an object made of indexed members (as `RawObject::metadata_members` gives
/// them), so that a struct reads only the members it names and borrows from their text.
pub fn members_deserializer<'a>(
    members: impl Iterator<Item = (&'a str, &'a str)>,
) -> impl Deserializer<'a, Error = serde_json::Error> {
    serde::de::value::MapDeserializer::new(members.map(|(k, v)| (Key(k), JsonText(v))))
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(Shape { nested: false })? {
            Read::Members(members) => Ok(build(members)),
            Read::Other(value) => {
                Ok(RawObject { text: serde_json::to_string(&value).map_err(D::Error::custom)?.into(), index: None })
            }
        }
    }
}

/// What was read of a value: an object's members (its `metadata`'s, too, one level down), or
/// any other value, whole.
enum Read<'de> {
    Members(Vec<(Cow<'de, str>, Value<'de>)>),
    Other(serde_json::Value),
}

enum Value<'de> {
    Raw(&'de RawValue),
    Read(Read<'de>),
}

/// Reads an object's members, and at the top level its `metadata`'s as well.
struct Shape {
    nested: bool,
}

impl<'de> DeserializeSeed<'de> for Shape {
    type Value = Read<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Read<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Shape {
    type Value = Read<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(if self.nested { 12 } else { 6 }));
        while let Some(key) = map.next_key_seed(KeyText)? {
            let value = if !self.nested && key == "metadata" {
                Value::Read(map.next_value_seed(Shape { nested: true })?)
            } else {
                Value::Raw(map.next_value::<&'de RawValue>()?)
            };
            members.push((key, value));
        }
        Ok(Read::Members(members))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Read<'de>, A::Error> {
        serde_json::Value::deserialize(SeqAccessDeserializer::new(seq)).map(Read::Other).map_err(A::Error::custom)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Read<'de>, E> {
        Ok(Read::Other(v.into()))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Read<'de>, E> {
        Ok(Read::Other(v.into()))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Read<'de>, E> {
        Ok(Read::Other(v.into()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Read<'de>, E> {
        Ok(Read::Other(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Read<'de>, E> {
        Ok(Read::Other(v.into()))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Read<'de>, E> {
        Ok(Read::Other(serde_json::Value::Null))
    }
}

/// A key: borrowed when it has no escapes; owned (and then re-escaped) when it has.
struct KeyText;

impl<'de> DeserializeSeed<'de> for KeyText {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyText {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Writes the members read into one text, recording where each lies.
fn build(members: Vec<(Cow<'_, str>, Value<'_>)>) -> RawObject {
    let mut indexable = true;
    let mut text = String::with_capacity(estimate(&members));
    let mut index = Vec::with_capacity(members.len());
    let mut metadata = None;
    text.push('{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let key_range = write_key(&mut text, key, &mut indexable);
        let start = text.len();
        match value {
            Value::Raw(raw) => text.push_str(raw.get()),
            Value::Read(Read::Members(inner)) => {
                let mut nested = Vec::with_capacity(inner.len());
                text.push('{');
                for (j, (key, value)) in inner.iter().enumerate() {
                    if j > 0 {
                        text.push(',');
                    }
                    let key_range = write_key(&mut text, key, &mut indexable);
                    let start = text.len();
                    if let Value::Raw(raw) = value {
                        text.push_str(raw.get());
                    }
                    nested.push(Member { key: key_range, value: start..text.len() });
                }
                text.push('}');
                metadata = Some(nested.into_boxed_slice());
            }
            Value::Read(Read::Other(other)) => {
                // `metadata` that is not an object: kept as given, not indexed.
                text.push_str(&other.to_string());
                if !other.is_null() {
                    indexable = false;
                }
            }
        }
        index.push(Member { key: key_range, value: start..text.len() });
    }
    text.push('}');
    let index = indexable.then(|| Index { members: index.into_boxed_slice(), metadata });
    RawObject { text: text.into_boxed_str(), index }
}

/// Writes a key; one that had escapes (read owned) is escaped again, and the object is then not
/// indexed (a lookup by name could not find it).
#[allow(clippy::ptr_arg)] // whether the key is borrowed is what matters
fn write_key(text: &mut String, key: &Cow<'_, str>, indexable: &mut bool) -> Range<usize> {
    let escaped = matches!(key, Cow::Owned(_));
    if escaped {
        *indexable = false;
        let start = text.len();
        text.push_str(&serde_json::to_string(key.as_ref()).unwrap_or_default());
        let range = start..text.len();
        text.push(':');
        return range;
    }
    text.push('"');
    let start = text.len();
    text.push_str(key);
    let range = start..text.len();
    text.push_str("\":");
    range
}

fn estimate(members: &[(Cow<'_, str>, Value<'_>)]) -> usize {
    members
        .iter()
        .map(|(key, value)| {
            key.len()
                + 4
                + match value {
                    Value::Raw(raw) => raw.get().len(),
                    Value::Read(Read::Members(inner)) => estimate(inner) + 2,
                    Value::Read(Read::Other(_)) => 16,
                }
        })
        .sum::<usize>()
        + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEM: &str = r#"{"metadata":{"name":"a","namespace":"ns","labels":{"app":"x"},"managedFields":[{"manager":"m","fieldsV1":{"f:data":{}}}]},"data":{"k":"v \"q\""}}"#;

    #[test]
    fn an_item_keeps_its_text_and_finds_its_members() {
        let raw = RawObject::from_json(ITEM).unwrap();
        assert_eq!(raw.get(), ITEM);
        let members: Vec<_> = raw.members().unwrap().collect();
        assert_eq!(members.iter().map(|m| m.0).collect::<Vec<_>>(), ["metadata", "data"]);
        assert_eq!(raw.member("data"), Some(r#"{"k":"v \"q\""}"#));
        let meta: Vec<_> = raw.metadata_members().unwrap().map(|m| m.0).collect();
        assert_eq!(meta, ["name", "namespace", "labels", "managedFields"]);
        assert_eq!(raw.metadata_members().unwrap().nth(2).unwrap().1, r#"{"app":"x"}"#);
    }

    #[test]
    fn whitespace_between_members_is_left_out() {
        let spaced = "{ \"metadata\" : { \"name\" : \"a\" } ,\n \"spec\": { \"x\" : 1 } }";
        let raw = RawObject::from_json(spaced).unwrap();
        assert_eq!(raw.get(), r#"{"metadata":{"name":"a"},"spec":{ "x" : 1 }}"#);
        let back: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
        assert_eq!(back, serde_json::from_str::<serde_json::Value>(spaced).unwrap());
    }

    #[test]
    fn what_the_index_cannot_describe_is_kept_unindexed() {
        for text in [r#"[1,2]"#, r#""s""#, r#"{"metadata":3}"#, r#"{"met\u0061data":{"name":"a"}}"#, "null"] {
            let raw = RawObject::from_json(text).unwrap();
            assert!(raw.members().is_none() || raw.metadata_members().is_none(), "{text}");
            let back: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
            assert_eq!(back, serde_json::from_str::<serde_json::Value>(text).unwrap(), "{text}");
        }
        let no_metadata = RawObject::from_json(r#"{"spec":{}}"#).unwrap();
        assert_eq!(no_metadata.metadata_members().unwrap().count(), 0);
        let null_metadata = RawObject::from_json(r#"{"metadata":null}"#).unwrap();
        assert!(null_metadata.metadata_members().is_none());
    }

    #[test]
    fn a_struct_reads_from_indexed_members() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct Named<'a> {
            #[serde(borrow)]
            name: &'a str,
            namespace: Option<String>,
            #[serde(default)]
            labels: std::collections::BTreeMap<String, String>,
        }
        let raw = RawObject::from_json(ITEM).unwrap();
        let named = Named::deserialize(members_deserializer(raw.metadata_members().unwrap())).unwrap();
        assert_eq!(named.name, "a");
        assert_eq!(named.namespace.as_deref(), Some("ns"));
        assert_eq!(named.labels["app"], "x");
        let bad = RawObject::from_json(r#"{"metadata":{"name":5}}"#).unwrap();
        assert!(Named::deserialize(members_deserializer(bad.metadata_members().unwrap())).is_err());
    }

    #[test]
    fn a_list_of_items_reads_each() {
        #[derive(Deserialize)]
        struct List {
            items: Vec<RawObject>,
        }
        let list: List = serde_json::from_str(&format!(r#"{{"items":[{ITEM},{ITEM}]}}"#)).unwrap();
        assert_eq!(list.items.len(), 2);
        assert_eq!(list.items[1].get(), ITEM);
    }
}
