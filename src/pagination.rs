//! The one pagination helper every list uses: Relay `first`/`after` checked against the page-size
//! limits, and opaque cursors bound to the query they came from.
//!
//! A cursor is `base64url("kgq1" NUL scope NUL position)`. The scope names the list and its
//! filters; a cursor presented to a list with another scope is refused, so a page of one query can
//! never be continued as another.

use async_graphql::connection::{Connection, Edge};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ApiError;
use crate::settings::ApiLimits;

const CURSOR_TAG: &str = "kgq1";

/// A checked page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items the page holds at most.
    pub size: u32,
    /// The position after which the page starts, as the list encoded it.
    pub after: Option<String>,
}

impl PageRequest {
    pub fn parse(first: Option<i32>, after: Option<&str>, scope: &str, limits: &ApiLimits) -> Result<Self, ApiError> {
        let size = match first {
            None => limits.default_page_size,
            Some(n) if n < 1 => {
                return Err(ApiError::bad_input("first", format!("first must be at least 1, got {n}")));
            }
            Some(n) if n as u32 > limits.max_page_size => {
                return Err(ApiError::bad_input(
                    "first",
                    format!("first must be at most {}, got {n}", limits.max_page_size),
                ));
            }
            Some(n) => n as u32,
        };
        let after = after.map(|cursor| decode_cursor(cursor, scope)).transpose()?;
        Ok(Self { size, after })
    }
}

impl PageRequest {
    /// How many rows to ask the database for: one more than the page, which only tells whether
    /// more follow.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.size) + 1
    }

    /// The Relay connection of database rows fetched with `fetch_limit`, keyed in `scope` by
    /// `key` (the position the next page starts after).
    pub fn connection<Row, Node: async_graphql::OutputType>(
        &self,
        scope: &str,
        mut rows: Vec<Row>,
        key: impl Fn(&Row) -> String,
        node: impl Fn(Row) -> Node,
    ) -> Connection<String, Node> {
        let has_next = rows.len() > self.size as usize;
        rows.truncate(self.size as usize);
        let mut connection = Connection::new(self.after.is_some(), has_next);
        connection.edges.extend(rows.into_iter().map(|row| Edge::new(encode_cursor(scope, &key(&row)), node(row))));
        connection
    }
}

pub fn encode_cursor(scope: &str, position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}\0{scope}\0{position}"))
}

pub fn decode_cursor(cursor: &str, scope: &str) -> Result<String, ApiError> {
    let not_ours = || ApiError::bad_input("after", "after is not a cursor issued by this list");
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| not_ours())?;
    let text = String::from_utf8(bytes).map_err(|_| not_ours())?;
    let mut parts = text.splitn(3, '\0');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(CURSOR_TAG), Some(found), Some(position)) if found == scope => Ok(position.to_owned()),
        (Some(CURSOR_TAG), Some(_), Some(_)) => {
            Err(ApiError::bad_input("after", "after is a cursor of another query; start again without it"))
        }
        _ => Err(not_ours()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn database_pages_fetch_one_more_and_key_their_cursors() {
        let limits = ApiLimits::default();
        let first = PageRequest::parse(Some(2), None, "names", &limits).unwrap();
        assert_eq!(first.fetch_limit(), 3);
        let page = first.connection("names", vec!["a", "b", "c"], |n| n.to_string(), |n| n.to_uppercase());
        assert!(page.has_next_page && !page.has_previous_page);
        let nodes: Vec<&str> = page.edges.iter().map(|e| e.node.as_str()).collect();
        assert_eq!(nodes, ["A", "B"], "the extra row is not served");
        let next = page.edges.last().unwrap().cursor.clone();
        let second = PageRequest::parse(Some(2), Some(&next), "names", &limits).unwrap();
        assert_eq!(second.after.as_deref(), Some("b"));
        let last = second.connection("names", vec!["c"], |n| n.to_string(), |n| n.to_uppercase());
        assert!(!last.has_next_page && last.has_previous_page);
        assert!(PageRequest::parse(Some(2), Some(&next), "other", &limits).is_err());
    }

    #[test]
    fn defaults_and_limits() {
        let limits = ApiLimits::default();
        assert_eq!(PageRequest::parse(None, None, "s", &limits).unwrap().size, 50);
        assert_eq!(PageRequest::parse(Some(500), None, "s", &limits).unwrap().size, 500);
        for bad in [0, -1, 501, 100_000] {
            let err = PageRequest::parse(Some(bad), None, "s", &limits).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadUserInput, "{bad}");
        }
    }

    #[test]
    fn cursors_are_bound_to_their_scope() {
        let limits = ApiLimits::default();
        let cursor = encode_cursor("clusters", "prod-eu");
        let page = PageRequest::parse(Some(2), Some(&cursor), "clusters", &limits).unwrap();
        assert_eq!(page.after.as_deref(), Some("prod-eu"));
        let err = PageRequest::parse(Some(2), Some(&cursor), "other", &limits).unwrap_err();
        assert!(err.message.contains("another query"));
        for junk in ["", "!!!", "YWJj", &URL_SAFE_NO_PAD.encode("kgq2\0clusters\0x")] {
            let err = PageRequest::parse(None, Some(junk), "clusters", &limits).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadUserInput, "{junk}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::error::ErrorCode;

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_cursor_is_a_position_of_this_list_or_bad_input(cursor in "(?s).{0,300}", scope in "[a-z0-9:]{1,20}") {
            if let Err(err) = decode_cursor(&cursor, &scope) {
                prop_assert_eq!(err.code, ErrorCode::BadUserInput);
            }
        }

        #[test]
        fn a_cursor_reads_back_only_in_its_own_scope(
            scope in "[a-z0-9:]{1,20}",
            other in "[a-z0-9:]{1,20}",
            position in "(?s).{0,200}",
        ) {
            let cursor = encode_cursor(&scope, &position);
            prop_assert_eq!(decode_cursor(&cursor, &scope).unwrap(), position.clone());
            if other != scope {
                prop_assert_eq!(decode_cursor(&cursor, &other).unwrap_err().code, ErrorCode::BadUserInput);
            }
        }

        #[test]
        fn any_page_size_is_taken_or_refused_never_clamped(first in any::<Option<i32>>()) {
            let limits = ApiLimits::default();
            match PageRequest::parse(first, None, "s", &limits) {
                Ok(page) => prop_assert!(page.size >= 1 && page.size <= limits.max_page_size),
                Err(err) => {
                    prop_assert_eq!(err.code, ErrorCode::BadUserInput);
                    prop_assert!(first.is_some_and(|n| n < 1 || n as u32 > limits.max_page_size));
                }
            }
        }
    }
}
