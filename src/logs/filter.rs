//! The server-side filter of a followed log: a substring, or a regular expression (the `regex`
//! crate's, which runs in time linear in the line, with bounded pattern size and compiled size).

/// Keeps the lines that match.
#[derive(Debug, Clone)]
pub enum LineFilter {
    Contains(String),
    Regex(regex::Regex),
}

/// The compiled size a pattern may reach.
const COMPILED_LIMIT: usize = 1 << 20;

impl LineFilter {
    /// The filter asked for: at most one of `contains` and `regex`, each at most `max_bytes`.
    pub fn new(contains: Option<String>, regex: Option<String>, max_bytes: usize) -> Result<Option<Self>, String> {
        match (contains, regex) {
            (Some(_), Some(_)) => Err("give contains or regex, not both".into()),
            (Some(text), None) => {
                if text.len() > max_bytes {
                    return Err(format!("contains: at most {max_bytes} bytes"));
                }
                Ok(Some(LineFilter::Contains(text)))
            }
            (None, Some(pattern)) => {
                if pattern.len() > max_bytes {
                    return Err(format!("regex: at most {max_bytes} bytes"));
                }
                let compiled = regex::RegexBuilder::new(&pattern)
                    .size_limit(COMPILED_LIMIT)
                    .dfa_size_limit(COMPILED_LIMIT)
                    .nest_limit(64)
                    .build()
                    .map_err(|e| format!("regex: {}", first_line(&e.to_string())))?;
                Ok(Some(LineFilter::Regex(compiled)))
            }
            (None, None) => Ok(None),
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            LineFilter::Contains(needle) => text.contains(needle.as_str()),
            LineFilter::Regex(regex) => regex.is_match(text),
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(text).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_keeps_what_matches() {
        let contains = LineFilter::new(Some("ERROR".into()), None, 64).unwrap().unwrap();
        assert!(contains.matches("x ERROR y") && !contains.matches("error"));
        let regex = LineFilter::new(None, Some(r"^level=(warn|error)\b".into()), 64).unwrap().unwrap();
        assert!(regex.matches("level=warn msg") && !regex.matches("level=info") && !regex.matches("xlevel=warn"));
        assert!(LineFilter::new(None, None, 64).unwrap().is_none());
    }

    #[test]
    fn a_bad_filter_is_refused_with_the_reason() {
        let both = LineFilter::new(Some("a".into()), Some("b".into()), 64).unwrap_err();
        assert!(both.contains("not both"), "{both}");
        assert!(LineFilter::new(Some("x".repeat(65)), None, 64).unwrap_err().contains("at most 64 bytes"));
        assert!(LineFilter::new(None, Some("x".repeat(65)), 64).unwrap_err().contains("at most 64 bytes"));
        let unclosed = LineFilter::new(None, Some("(a".into()), 64).unwrap_err();
        assert!(unclosed.starts_with("regex:"), "{unclosed}");
        // Small to write, huge to compile: refused, not built.
        let huge = LineFilter::new(None, Some(r"\w{1000}\w{1000}\w{1000}".into()), 64).unwrap_err();
        assert!(huge.contains("regex"), "{huge}");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_filter_is_compiled_or_refused_and_matches_any_line(
            contains in prop::option::of("(?s).{0,40}"),
            regex in prop::option::of("(?s)[a-z()\\[\\]*+?{}|.^$\\\\0-9,]{0,60}"),
            line in "(?s).{0,200}",
        ) {
            match LineFilter::new(contains, regex, 1024) {
                Ok(Some(filter)) => {
                    let _ = filter.matches(&line);
                }
                Ok(None) => {}
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }
    }
}
