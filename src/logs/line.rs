//! The lines of a followed log. The API server is asked for timestamps (`timestamps=true`), so
//! each line it sends starts with its RFC 3339 time (nanoseconds); lines are read with a bounded
//! length (a longer line is cut, and says so) and parsed once.

use futures_util::io::{AsyncBufRead, AsyncBufReadExt};
use k8s_openapi::jiff::Timestamp;

/// One line of one container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the container wrote it (absent only if the API server sent no time).
    pub at: Option<Timestamp>,
    pub text: String,
    /// The line was longer than the server keeps; `text` is its beginning.
    pub truncated: bool,
}

impl LogLine {
    /// Parses a line as the API server sends it with `timestamps=true`: `<RFC 3339> <text>`.
    pub fn parse(raw: &[u8], truncated: bool) -> LogLine {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw);
        match text.split_once(' ') {
            Some((stamp, rest)) => match stamp.parse::<Timestamp>() {
                Ok(at) => LogLine { at: Some(at), text: rest.to_owned(), truncated },
                Err(_) => LogLine { at: None, text: text.into_owned(), truncated },
            },
            None => match text.parse::<Timestamp>() {
                // An empty line: only its time.
                Ok(at) => LogLine { at: Some(at), text: String::new(), truncated },
                Err(_) => LogLine { at: None, text: text.into_owned(), truncated },
            },
        }
    }

    /// Bytes this line counts for against a budget.
    pub fn weight(&self) -> usize {
        self.text.len() + 1
    }
}

/// Reads the next line, keeping at most `max` bytes of it (the rest of a longer line is read and
/// dropped). `None` at the end of the stream.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let mut line = Vec::new();
    let mut truncated = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok((!line.is_empty() || truncated).then_some((line, truncated)));
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (&available[..=end], true),
            None => (available, false),
        };
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            truncated = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume_unpin(used);
        if done {
            return Ok(Some((line, truncated)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_its_time_and_its_text() {
        let line = LogLine::parse(b"2026-11-27T23:00:01.123456789Z hello world\n", false);
        assert_eq!(line.at, Some("2026-11-27T23:00:01.123456789Z".parse().unwrap()));
        assert_eq!(line.text, "hello world");
        let empty = LogLine::parse(b"2026-11-27T23:00:01Z\n", false);
        assert_eq!((empty.at.is_some(), empty.text.as_str()), (true, ""));
        let spaces = LogLine::parse(b"2026-11-27T23:00:01Z   indented\r\n", false);
        assert_eq!(spaces.text, "  indented");
        let unstamped = LogLine::parse(b"no time here\n", false);
        assert_eq!((unstamped.at, unstamped.text.as_str()), (None, "no time here"));
        let invalid = LogLine::parse(b"2026-11-27T23:00:01Z \xff\xfe ok\n", false);
        assert!(invalid.text.ends_with(" ok"), "{invalid:?}");
    }

    #[tokio::test]
    async fn lines_are_read_whole_or_cut_at_the_limit() {
        let input = b"short\nthis line is much too long\nlast without newline".to_vec();
        // A reader that hands out 3 bytes at a time, as a network stream might.
        let mut reader = futures_util::io::BufReader::with_capacity(3, &input[..]);
        let mut lines = Vec::new();
        while let Some((line, truncated)) = read_line(&mut reader, 10).await.unwrap() {
            lines.push((String::from_utf8(line).unwrap(), truncated));
        }
        assert_eq!(
            lines,
            [("short\n".to_owned(), false), ("this line ".to_owned(), true), ("last witho".to_owned(), true),]
        );
        let mut empty = futures_util::io::BufReader::new(&b""[..]);
        assert_eq!(read_line(&mut empty, 10).await.unwrap(), None);
    }
}
