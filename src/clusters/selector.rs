//! Label selectors over clusters' labels, in Kubernetes' syntax (`env=prod,tier!=edge`,
//! `region in (eu,us)`, `gpu`, `!legacy`), so that a query can span "every production cluster"
//! without naming them.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    Absent(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Debug, thiserror::Error)]
#[error("invalid cluster selector {selector:?}: {reason}")]
pub struct SelectorError {
    selector: String,
    reason: String,
}

fn valid_word(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 317
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/'))
}

/// Splits on the commas that are not inside a set's parentheses.
fn split_requirements(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced or nested parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_set(key: &str, rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("the values of {key:?} go in parentheses: {key} in (a,b)"))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    if let Some(bad) = values.iter().find(|v| !valid_word(v)) {
        return Err(format!("{bad:?} is not a label value"));
    }
    Ok(values)
}

fn parse_requirement(text: &str) -> Result<Requirement, String> {
    let text = text.trim();
    let checked_key = |key: &str| {
        let key = key.trim();
        if valid_word(key) { Ok(key.to_owned()) } else { Err(format!("{key:?} is not a label key")) }
    };
    let checked_value = |value: &str| {
        let value = value.trim();
        // An empty value is allowed (`tier=`), as Kubernetes allows it.
        if value.is_empty() || valid_word(value) {
            Ok(value.to_owned())
        } else {
            Err(format!("{value:?} is not a label value"))
        }
    };
    if let Some(key) = text.strip_prefix('!') {
        return Ok(Requirement::Absent(checked_key(key)?));
    }
    if let Some((key, value)) = text.split_once("!=") {
        return Ok(Requirement::NotEquals(checked_key(key)?, checked_value(value)?));
    }
    if let Some((key, value)) = text.split_once("==").or_else(|| text.split_once('=')) {
        return Ok(Requirement::Equals(checked_key(key)?, checked_value(value)?));
    }
    let mut words = text.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim_start();
    if rest.is_empty() {
        return Ok(Requirement::Exists(checked_key(key)?));
    }
    let key = checked_key(key)?;
    if let Some(set) = rest.strip_prefix("notin") {
        return Ok(Requirement::NotIn(key.clone(), parse_set(&key, set)?));
    }
    if let Some(set) = rest.strip_prefix("in") {
        return Ok(Requirement::In(key.clone(), parse_set(&key, set)?));
    }
    Err(format!("cannot read {text:?}"))
}

impl LabelSelector {
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let fail = |reason: String| SelectorError { selector: selector.to_owned(), reason };
        if selector.trim().is_empty() {
            return Err(fail("it is empty".into()));
        }
        if selector.len() > 4096 {
            return Err(fail("it is longer than 4096 bytes".into()));
        }
        let parts = split_requirements(selector).map_err(fail)?;
        let requirements = parts.into_iter().map(parse_requirement).collect::<Result<_, _>>().map_err(fail)?;
        Ok(LabelSelector(requirements))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::Absent(key) => !labels.contains_key(key),
            Requirement::Equals(key, value) => labels.get(key) == Some(value),
            Requirement::NotEquals(key, value) => labels.get(key) != Some(value),
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn selectors_match_as_kubernetes_ones_do() {
        let prod_eu = labels(&[("env", "prod"), ("region", "eu"), ("gpu", "")]);
        let dev_us = labels(&[("env", "dev"), ("region", "us")]);
        for (selector, on_prod_eu, on_dev_us) in [
            ("env=prod", true, false),
            ("env==prod", true, false),
            ("env!=prod", false, true),
            ("env!=prod,region=us", false, true),
            ("region in (eu, us)", true, true),
            ("region notin (eu)", false, true),
            ("gpu", true, false),
            ("!gpu", false, true),
            ("env=prod, region in (us,eu), gpu", true, false),
            ("missing!=x", true, true),
            ("missing notin (x)", true, true),
            ("gpu=", true, false),
        ] {
            let parsed = LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
            assert_eq!(parsed.matches(&prod_eu), on_prod_eu, "{selector} on prod/eu");
            assert_eq!(parsed.matches(&dev_us), on_dev_us, "{selector} on dev/us");
        }
    }

    #[test]
    fn bad_selectors_are_refused_with_a_reason() {
        for selector in ["", "  ", "env=pr od", "region in eu", "region in (eu", "a in ((b))", "=x", "k=v)", "a b c"] {
            let err = LabelSelector::parse(selector).expect_err(selector);
            assert!(err.to_string().contains("invalid cluster selector"), "{err}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A requirement as text, and what it says of a set of labels.
    fn requirement() -> impl Strategy<Value = (String, Requirement)> {
        let key = "[a-c]";
        let value = "[x-z]{0,1}";
        prop_oneof![
            key.prop_map(|k| (k.clone(), Requirement::Exists(k))),
            key.prop_map(|k| (format!("!{k}"), Requirement::Absent(k))),
            (key, value).prop_map(|(k, v)| (format!("{k}={v}"), Requirement::Equals(k, v))),
            (key, value).prop_map(|(k, v)| (format!("{k} != {v}"), Requirement::NotEquals(k, v))),
            (key, prop::collection::vec("[x-z]", 1..3))
                .prop_map(|(k, vs)| (format!("{k} in ({})", vs.join(", ")), Requirement::In(k, vs))),
            (key, prop::collection::vec("[x-z]", 1..3))
                .prop_map(|(k, vs)| (format!("{k} notin ({})", vs.join(",")), Requirement::NotIn(k, vs))),
        ]
    }

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_text_is_a_selector_or_refused_with_a_reason(text in "(?s).{0,120}") {
            if let Err(err) = LabelSelector::parse(&text) {
                prop_assert!(err.to_string().starts_with("invalid cluster selector"));
            }
        }

        #[test]
        fn a_selector_matches_exactly_what_its_requirements_say(
            parts in prop::collection::vec(requirement(), 1..4),
            labels in prop::collection::btree_map("[a-c]", "[x-z]{0,1}", 0..3),
        ) {
            let text = parts.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(",");
            let selector = LabelSelector::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let expected = LabelSelector(parts.into_iter().map(|(_, r)| r).collect());
            prop_assert_eq!(&selector, &expected, "{}", text);
            let by_hand = expected.0.iter().all(|r| match r {
                Requirement::Exists(k) => labels.contains_key(k),
                Requirement::Absent(k) => !labels.contains_key(k),
                Requirement::Equals(k, v) => labels.get(k) == Some(v),
                Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
                Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
                Requirement::NotIn(k, vs) => !labels.get(k).is_some_and(|v| vs.contains(v)),
            });
            prop_assert_eq!(selector.matches(&labels), by_hand);
        }
    }
}
