//! A list page read while the API server's bytes arrive.
//!
//! The API server writes a large list as it encodes it: a page of 500 objects arrives in a few
//! hundred chunks over several milliseconds. Reading the list only once the last chunk is in would
//! add the whole parse to the request's time; `ListReader` instead parses (and indexes, see
//! `raw.rs`) each item as soon as its last byte has arrived, so that little is left to read when
//! the body ends. The answer is still all or nothing: a page exists only once the whole list has
//! arrived and is valid.
//!
//! The reader follows the list's own object (its members, their names, colons and commas); each
//! value in it is read by serde_json from the text received so far (items as `RawObject`,
//! `metadata` as `ListMeta`, any other member checked as JSON). A value that has not fully
//! arrived is read again once more text is in, and not before as much text again has come, so
//! that a large item arriving in many small chunks is read a few times at most, not once per
//! chunk. A list this reader accepts is one that `serde_json::from_str::<RawList>` accepts, read
//! the same way (the tests compare both on the same inputs cut into random chunks).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::de::{DeserializeOwned, Error as _, IgnoredAny};

use super::{RawList, RawObject};

/// Reads one list from chunks of its JSON text: `push` each chunk, then `finish`.
#[derive(Default)]
pub(crate) struct ListReader {
    /// The text received so far, but for the start of a character cut between chunks.
    text: String,
    /// The start of a character cut between chunks.
    cut: Vec<u8>,
    /// Everything before this has been read.
    pos: usize,
    /// A value that has not fully arrived is read again once the text is this long.
    retry_at: usize,
    /// The text has ended: a value not whole now never will be.
    ended: bool,
    state: State,
    items: Option<Vec<RawObject>>,
    items_seen: bool,
    metadata: Option<ListMeta>,
    /// Bytes of text read by the value reads so far, whole or not (the reader's cost).
    scanned: usize,
}

#[derive(Clone, Copy, Debug, Default)]
enum State {
    #[default]
    Start,
    Key {
        first: bool,
    },
    Colon {
        member: Member,
    },
    Value {
        member: Member,
    },
    AfterValue,
    ItemOrEnd {
        first: bool,
    },
    AfterItem,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Member {
    Metadata,
    Items,
    Other,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn invalid(what: &str) -> serde_json::Error {
    serde_json::Error::custom(format!("the list is not valid JSON: {what}"))
}

impl ListReader {
    /// Reads the next chunk of the list's text.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> serde_json::Result<()> {
        let bytes: std::borrow::Cow<'_, [u8]> = if self.cut.is_empty() {
            chunk.into()
        } else {
            let mut joined = std::mem::take(&mut self.cut);
            joined.extend_from_slice(chunk);
            joined.into()
        };
        match std::str::from_utf8(&bytes) {
            Ok(text) => self.text.push_str(text),
            Err(e) if e.error_len().is_none() => {
                let (whole, cut) = bytes.split_at(e.valid_up_to());
                self.text.push_str(std::str::from_utf8(whole).map_err(|_| invalid("text that is not UTF-8"))?);
                self.cut = cut.to_vec();
            }
            Err(_) => return Err(invalid("text that is not UTF-8")),
        }
        if self.text.len() < self.retry_at {
            return Ok(());
        }
        self.advance()
    }

    /// The list, once its text has ended.
    pub(crate) fn finish(mut self) -> serde_json::Result<RawList> {
        if !self.cut.is_empty() {
            return Err(invalid("text that is not UTF-8"));
        }
        self.ended = true;
        self.advance()?;
        if !matches!(self.state, State::Done) {
            return Err(invalid("it ended early"));
        }
        tracing::trace!(bytes = self.text.len(), read = self.scanned, "list read while it arrived");
        let metadata = self.metadata.ok_or_else(|| serde_json::Error::missing_field("metadata"))?;
        Ok(RawList { metadata, items: self.items })
    }

    /// The value that starts at `pos`, and where it ends; `None` when it has not fully arrived
    /// (and then `retry_at` says when to try again).
    fn value<T: DeserializeOwned>(&mut self) -> serde_json::Result<Option<(T, usize)>> {
        let rest = self.text.get(self.pos..).ok_or_else(|| invalid("a value starts inside a character"))?;
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<T>();
        let read = match values.next() {
            // Whole only once something follows it: a number's digits may go on in the next
            // chunk (in a list, every value is followed by at least a bracket).
            Some(Ok(value)) if self.pos + values.byte_offset() < self.text.len() => {
                Some((value, self.pos + values.byte_offset()))
            }
            Some(Ok(_)) | None => None,
            Some(Err(e)) if e.is_eof() => None,
            Some(Err(e)) => return Err(e),
        };
        self.scanned += match &read {
            Some((_, end)) => end - self.pos,
            None => rest.len(),
        };
        if read.is_none() {
            if self.ended {
                return Err(invalid("it ended early"));
            }
            self.retry_at = self.text.len() + (self.text.len() - self.pos).max(1);
        }
        Ok(read)
    }

    /// Reads as far as the text goes.
    fn advance(&mut self) -> serde_json::Result<()> {
        loop {
            while self.pos < self.text.len() && is_space(self.text.as_bytes()[self.pos]) {
                self.pos += 1;
            }
            if self.pos == self.text.len() {
                return Ok(());
            }
            let b = self.text.as_bytes()[self.pos];
            self.state = match self.state {
                State::Start if b == b'{' => {
                    self.pos += 1;
                    State::Key { first: true }
                }
                State::Start => return Err(invalid("a list is an object")),
                State::Key { first: true } if b == b'}' => {
                    self.pos += 1;
                    State::Done
                }
                State::Key { .. } if b == b'"' => {
                    let Some((key, end)) = self.value::<String>()? else { return Ok(()) };
                    self.pos = end;
                    let member = match key.as_str() {
                        "metadata" if self.metadata.is_some() => {
                            return Err(serde_json::Error::duplicate_field("metadata"));
                        }
                        "items" if self.items_seen => return Err(serde_json::Error::duplicate_field("items")),
                        "metadata" => Member::Metadata,
                        "items" => Member::Items,
                        _ => Member::Other,
                    };
                    State::Colon { member }
                }
                State::Key { .. } => return Err(invalid("expected a member's name")),
                State::Colon { member } if b == b':' => {
                    self.pos += 1;
                    State::Value { member }
                }
                State::Colon { .. } => return Err(invalid("expected `:`")),
                State::Value { member: Member::Items } if b == b'[' => {
                    self.pos += 1;
                    self.items_seen = true;
                    self.items = Some(Vec::new());
                    State::ItemOrEnd { first: true }
                }
                State::Value { member } => {
                    let end = match member {
                        Member::Metadata => {
                            let Some((metadata, end)) = self.value::<ListMeta>()? else { return Ok(()) };
                            self.metadata = Some(metadata);
                            end
                        }
                        // Items that are not a list can only be `null` (an empty list of
                        // custom resources).
                        Member::Items => {
                            let Some((items, end)) = self.value::<Option<Vec<RawObject>>>()? else { return Ok(()) };
                            self.items_seen = true;
                            self.items = items;
                            end
                        }
                        Member::Other => {
                            let Some((IgnoredAny, end)) = self.value::<IgnoredAny>()? else { return Ok(()) };
                            end
                        }
                    };
                    self.pos = end;
                    State::AfterValue
                }
                State::AfterValue if b == b',' => {
                    self.pos += 1;
                    State::Key { first: false }
                }
                State::AfterValue if b == b'}' => {
                    self.pos += 1;
                    State::Done
                }
                State::AfterValue => return Err(invalid("expected `,` or `}`")),
                State::ItemOrEnd { first: true } if b == b']' => {
                    self.pos += 1;
                    State::AfterValue
                }
                State::ItemOrEnd { .. } => {
                    let Some((item, end)) = self.value::<RawObject>()? else { return Ok(()) };
                    self.items.get_or_insert_with(Vec::new).push(item);
                    self.pos = end;
                    State::AfterItem
                }
                State::AfterItem if b == b',' => {
                    self.pos += 1;
                    State::ItemOrEnd { first: false }
                }
                State::AfterItem if b == b']' => {
                    self.pos += 1;
                    State::AfterValue
                }
                State::AfterItem => return Err(invalid("expected `,` or `]`")),
                State::Done => return Err(invalid("text after the list")),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A list as an API server writes it, with items of several shapes.
    fn sample() -> String {
        let items: Vec<String> = (0..6)
            .map(|i| {
                format!(
                    r#"{{"metadata":{{"name":"cm-{i}","namespace":"ns","uid":"u{i}","resourceVersion":"{}","labels":{{"a":"b\"c"}},"managedFields":[{{"manager":"kubectl","fieldsV1":{{"f:data":{{".":{{}}}}}}}}]}},"data":{{"k":"v]}}{{\\\\ \u00e9 {i}","n":"[1, 2]"}}}}"#,
                    100 + i
                )
            })
            .collect();
        format!(
            r#"{{"kind":"ConfigMapList","apiVersion":"v1","metadata":{{"resourceVersion":"99","continue":"abc","remainingItemCount":4}},"items":[{}]}}"#,
            items.join(",")
        )
    }

    fn read_in(text: &[u8], cuts: &[usize]) -> serde_json::Result<RawList> {
        let mut reader = ListReader::default();
        let mut at = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
        cuts.sort_unstable();
        for cut in cuts {
            reader.push(&text[at..cut])?;
            at = cut;
        }
        reader.push(&text[at..])?;
        reader.finish()
    }

    /// What a list read at once gives, to compare.
    fn summary(list: &RawList) -> (Option<String>, Option<String>, Option<i64>, Option<Vec<String>>) {
        (
            list.metadata.resource_version.clone(),
            list.metadata.continue_.clone(),
            list.metadata.remaining_item_count,
            list.items.as_ref().map(|items| items.iter().map(|i| i.get().to_owned()).collect()),
        )
    }

    #[test]
    fn a_list_cut_anywhere_reads_as_the_whole_text_does() {
        let text = sample();
        let whole: RawList = serde_json::from_str(&text).unwrap();
        assert_eq!(whole.items.as_ref().unwrap().len(), 6);
        for cut in 0..=text.len() {
            let list = read_in(text.as_bytes(), &[cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(summary(&list), summary(&whole), "cut at {cut}");
        }
        // Byte by byte, too: an item's index is the one a whole read builds.
        let cuts: Vec<usize> = (0..text.len()).collect();
        let list = read_in(text.as_bytes(), &cuts).unwrap();
        let item = &list.items.as_ref().unwrap()[2];
        assert_eq!(item.metadata_members().unwrap().find(|(k, _)| *k == "name").unwrap().1, "\"cm-2\"");
    }

    #[test]
    fn empty_and_null_item_lists_and_other_members_in_any_order() {
        for text in [
            r#"{"metadata":{},"items":[]}"#,
            r#"{"items":null,"metadata":{"resourceVersion":"1"}}"#,
            r#" { "items" : [ ] , "kind" : "List" , "metadata" : { } } "#,
            r#"{"metadata":{},"x":[1,{"y":"]"}],"z":-1.5e3,"t":true}"#,
        ] {
            let whole: RawList = serde_json::from_str(text).unwrap();
            let list = read_in(text.as_bytes(), &[3, 9]).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(summary(&list), summary(&whole), "{text}");
        }
    }

    #[test]
    fn what_is_not_a_valid_list_is_refused() {
        for text in [
            "",
            "[]",
            "{",
            r#"{"items":[]}"#,
            r#"{"metadata":{},"items":[],}"#,
            r#"{"metadata":{},"items":[1,]}"#,
            r#"{"metadata":{},"items":[,1]}"#,
            r#"{"metadata":{},"items":[{"a":1}{"b":2}]}"#,
            r#"{"metadata":{},"items":{}}"#,
            r#"{"metadata":{},"metadata":{}}"#,
            r#"{"metadata":{},"items":[],"items":[]}"#,
            r#"{"metadata":{}"items":[]}"#,
            r#"{"metadata"{}}"#,
            r#"{"metadata":{}} x"#,
            r#"{"metadata":{},"x":tru}"#,
            r#"{"metadata":{},"items":[{"a":]}]}"#,
            r#"{"metadata":{"resourceVersion":5}}"#,
        ] {
            assert!(read_in(text.as_bytes(), &[2]).is_err(), "accepted {text:?}");
            assert!(serde_json::from_str::<RawList>(text).is_err(), "serde_json accepts {text:?}");
        }
        assert!(read_in(b"{\"metadata\":{},\"x\":\"\xff\"}", &[]).is_err());
    }

    /// A large item arriving in many small chunks is read a few times, not once per chunk: an
    /// item not whole yet is read again only once as much text again has come, so those reads
    /// at least double in length each time and add up to less than twice the item, and then it
    /// is read once whole: under three times the list's text in all.
    #[test]
    fn an_item_in_many_small_chunks_is_read_a_few_times_not_once_per_chunk() {
        let data = "x".repeat(200_000);
        let text = format!(r#"{{"metadata":{{}},"items":[{{"metadata":{{"name":"big"}},"data":{{"k":"{data}"}}}}]}}"#);
        let mut reader = ListReader::default();
        let mut chunks = 0;
        for chunk in text.as_bytes().chunks(100) {
            reader.push(chunk).unwrap();
            chunks += 1;
        }
        assert!(chunks > 2_000);
        let scanned = reader.scanned;
        assert_eq!(reader.finish().unwrap().items.unwrap().len(), 1);
        // Reading the item again after every chunk would read some 200 MB.
        assert!(scanned < 3 * text.len(), "read {scanned} bytes of a {}-byte list", text.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A list with a byte changed, removed or added, cut into chunks anywhere: what the
        /// reader accepts, serde_json accepts and reads the same; what serde_json accepts as an
        /// object, the reader accepts.
        #[test]
        fn damaged_lists_in_any_chunks_read_as_serde_json_reads_them(
            at in any::<prop::sample::Index>(),
            change in 0u8..3,
            byte in prop::sample::select(b"{}[]\",:\\ 0a-".to_vec()),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut text = sample().into_bytes();
            let i = at.index(text.len());
            match change {
                0 => text[i] = byte,
                1 => { text.remove(i); }
                _ => text.insert(i, byte),
            }
            let ours = read_in(&text, &cuts);
            let theirs = std::str::from_utf8(&text).ok().map(serde_json::from_str::<RawList>);
            match (&ours, &theirs) {
                (Ok(list), Some(Ok(whole))) => prop_assert_eq!(summary(list), summary(whole)),
                (Ok(_), _) => prop_assert!(false, "accepted what serde_json refuses"),
                (Err(_), Some(Ok(_))) => prop_assert!(false, "refused what serde_json accepts"),
                (Err(_), _) => {}
            }
        }
    }
}
