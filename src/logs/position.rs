//! Where a follower was in a container's log, so that a reconnect resumes without duplicates. A
//! position names the pod and container, the time of the last line delivered, and how many lines
//! with that very time came up to it (several lines may share a time). It travels as an opaque
//! cursor; a forged one can only move where its holder's own stream starts.

use base64::Engine;
use k8s_openapi::jiff::{Timestamp, Unit};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "lp1.";
/// The longest cursor accepted.
pub const MAX_CURSOR_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub pod: String,
    pub container: String,
    /// RFC 3339 time of the last line delivered.
    pub at: String,
    /// Lines with exactly that time, up to and including the last one delivered.
    pub seen: u32,
}

impl Position {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(cursor: &str) -> Result<Position, String> {
        let bad = || "not a log cursor this server gave".to_owned();
        if cursor.len() > MAX_CURSOR_BYTES {
            return Err(bad());
        }
        let body = cursor.strip_prefix(PREFIX).ok_or_else(bad)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?;
        let position: Position = serde_json::from_slice(&json).map_err(|_| bad())?;
        position.time().ok_or_else(bad)?;
        Ok(position)
    }

    pub fn time(&self) -> Option<Timestamp> {
        self.at.parse().ok()
    }

    /// The `sinceTime` to ask the API server for: the position's second, as it takes seconds.
    pub fn since(&self) -> Option<Timestamp> {
        self.time().and_then(|t| {
            t.round(
                k8s_openapi::jiff::TimestampRound::new()
                    .smallest(Unit::Second)
                    .mode(k8s_openapi::jiff::RoundMode::Floor),
            )
            .ok()
        })
    }
}

/// Counts one stream's lines per time, and skips those at or before a resume position.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    last: Option<Timestamp>,
    same: u32,
    resume: Option<(Timestamp, u32)>,
}

impl Progress {
    pub fn resuming(position: Option<&Position>) -> Progress {
        Progress { resume: position.and_then(|p| Some((p.time()?, p.seen))), ..Default::default() }
    }

    /// Whether a line written at `at` is new to the follower; counts it either way.
    pub fn admit(&mut self, at: Option<Timestamp>) -> bool {
        if let Some(at) = at {
            if self.last == Some(at) {
                self.same += 1;
            } else {
                self.last = Some(at);
                self.same = 1;
            }
        }
        match (self.resume, at) {
            (Some((after, seen)), Some(at)) => {
                if at < after || (at == after && self.same <= seen) {
                    return false;
                }
                self.resume = None;
                true
            }
            _ => true,
        }
    }

    /// The position after the last line admitted or skipped.
    pub fn position(&self, pod: &str, container: &str) -> Option<Position> {
        let at = self.last?;
        Some(Position { pod: pod.to_owned(), container: container.to_owned(), at: at.to_string(), seen: self.same })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<Timestamp> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_cursor_round_trips_and_a_foreign_one_is_refused() {
        let p =
            Position { pod: "web-1".into(), container: "main".into(), at: "2026-11-27T23:00:01.5Z".into(), seen: 2 };
        assert_eq!(Position::decode(&p.encode()).unwrap(), p);
        for bad in ["", "lp1.", "lp1.!!!", "xx.e30", &format!("lp1.{}", "A".repeat(MAX_CURSOR_BYTES))] {
            assert!(Position::decode(bad).is_err(), "{bad}");
        }
        let no_time = Position { at: "yesterday".into(), ..p.clone() };
        assert!(Position::decode(&no_time.encode()).is_err());
        assert_eq!(p.since().unwrap().to_string(), "2026-11-27T23:00:01Z");
    }

    #[test]
    fn resuming_skips_exactly_what_was_delivered() {
        // The stream as the API server sends it again from the position's second.
        let lines = [
            "2026-11-27T23:00:01.1Z",
            "2026-11-27T23:00:01.5Z",
            "2026-11-27T23:00:01.5Z",
            "2026-11-27T23:00:01.5Z",
            "2026-11-27T23:00:02Z",
        ];
        // The follower had the first two lines at .5 (the second and third lines).
        let position =
            Position { pod: "p".into(), container: "c".into(), at: "2026-11-27T23:00:01.5Z".into(), seen: 2 };
        let mut progress = Progress::resuming(Some(&position));
        let admitted: Vec<bool> = lines.iter().map(|at| progress.admit(t(at))).collect();
        assert_eq!(admitted, [false, false, false, true, true]);
        assert_eq!(progress.position("p", "c").unwrap().at, "2026-11-27T23:00:02Z");

        // Without a position, everything; lines without a time are never held back.
        let mut fresh = Progress::resuming(None);
        assert!(lines.iter().all(|at| fresh.admit(t(at))));
        assert!(fresh.admit(None));
        // The position counts lines sharing a time.
        let mut counting = Progress::default();
        for at in &lines[..4] {
            counting.admit(t(at));
        }
        assert_eq!(counting.position("p", "c").unwrap().seen, 3);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_text_is_a_log_cursor_or_refused(cursor in "(?s)(lp1\\.)?.{0,300}") {
            if let Ok(position) = Position::decode(&cursor) {
                prop_assert!(position.time().is_some());
            }
        }

        #[test]
        fn a_position_reads_back(pod in ".{0,40}", container in ".{0,40}", secs in 0i64..4_000_000_000, nanos in 0u32..1_000_000_000, seen in any::<u32>()) {
            let at = Timestamp::new(secs, nanos as i32).unwrap().to_string();
            let position = Position { pod, container, at, seen };
            prop_assert_eq!(Position::decode(&position.encode()).unwrap(), position);
        }
    }
}
