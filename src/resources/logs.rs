//! What a followed log reads, checked as the caller before the subscription starts: one pod (and
//! its container), a workload's pods (its selector, as `kubectl logs deployment/web` finds them),
//! or the pods of a label selector. A missing pod or workload, a refused read or a bad selector is
//! an error with its code here, not a subscription that ends at once.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, ListParams};

use super::rollout::selector_text;
use super::{ResourceError, ResourceService};
use crate::access::Caller;

/// What to follow, as asked.
#[derive(Debug, Clone)]
pub enum LogTarget {
    Pod { name: String, container: Option<String> },
    Workload { kind: String, name: String },
    Selector(String),
}

/// The kinds whose pods a log can follow by their selector.
pub const WORKLOAD_KINDS: [&str; 5] = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"];

impl ResourceService {
    /// Checks the target as the caller; returns the client to follow it with, and the pods to
    /// follow: one pod's name, or a label selector.
    pub async fn log_source(
        &self,
        caller: &Caller,
        cluster_id: &str,
        namespace: &str,
        target: LogTarget,
    ) -> Result<(Client, crate::logs::Source), ResourceError> {
        let (cluster, client) = self.client(caller, cluster_id).await?;
        let fail = |e| Self::api_error(&cluster, e);
        let source = match target {
            LogTarget::Pod { name, container } => {
                let pod = Api::<Pod>::namespaced(client.clone(), namespace).get(&name).await.map_err(fail)?;
                let containers: Vec<String> =
                    pod.spec.iter().flat_map(|s| s.containers.iter().map(|c| c.name.clone())).collect();
                if let Some(container) = container
                    && !containers.contains(&container)
                {
                    return Err(ResourceError::Invalid(format!(
                        "pod {name} has no container {container}; it has {}",
                        containers.join(", ")
                    )));
                }
                crate::logs::Source::Pod(name)
            }
            LogTarget::Workload { kind, name } => {
                let selector = match kind.as_str() {
                    "Deployment" => {
                        selector_of::<Deployment>(&client, namespace, &name, |d| Some(&d.spec.selector)).await
                    }
                    "StatefulSet" => {
                        selector_of::<StatefulSet>(&client, namespace, &name, |d| Some(&d.spec.selector)).await
                    }
                    "DaemonSet" => {
                        selector_of::<DaemonSet>(&client, namespace, &name, |d| Some(&d.spec.selector)).await
                    }
                    "ReplicaSet" => {
                        selector_of::<ReplicaSet>(&client, namespace, &name, |d| Some(&d.spec.selector)).await
                    }
                    "Job" => {
                        selector_of::<Job>(&client, namespace, &name, |d| {
                            d.spec.as_ref().and_then(|s| s.selector.as_ref())
                        })
                        .await
                    }
                    other => {
                        return Err(ResourceError::Invalid(format!(
                            "logs follow the pods of a {}, not of a {other}",
                            WORKLOAD_KINDS.join(", ")
                        )));
                    }
                };
                let selector = selector.map_err(fail)?;
                let selector = selector
                    .ok_or_else(|| ResourceError::Invalid(format!("{kind} {name} has no pod selector")))
                    .and_then(|s| selector_text(&s))?;
                if selector.is_empty() {
                    return Err(ResourceError::Invalid(format!(
                        "{kind} {name} selects every pod; refusing to follow them all"
                    )));
                }
                crate::logs::Source::Selector(selector)
            }
            LogTarget::Selector(selector) => {
                if selector.trim().is_empty() {
                    return Err(ResourceError::Invalid("labelSelector must select something".into()));
                }
                // One small list checks the selector and the permission to list pods.
                let params = ListParams::default().labels(&selector).limit(1);
                Api::<Pod>::namespaced(client.clone(), namespace).list_metadata(&params).await.map_err(fail)?;
                crate::logs::Source::Selector(selector)
            }
        };
        Ok((client, source))
    }
}

async fn selector_of<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    selector: impl Fn(&K) -> Option<&LabelSelector>,
) -> Result<Option<LabelSelector>, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let object = Api::<K>::namespaced(client.clone(), namespace).get(name).await?;
    Ok(selector(&object).cloned())
}

/// The most bytes of log one request reads from the API server: twice what an answer may hold,
/// as each line comes with its time (about 31 bytes) that the answer may leave out.
const SERVER_BYTES: i64 = 2 * super::MAX_LOG_BYTES;
/// The most lines a page further back looks through.
const MAX_WINDOW: i64 = 100_000;
/// Lines in a page further back when `tailLines` does not say.
const DEFAULT_PAGE_LINES: i64 = 100;

/// One line of a fetched window: its time, its rank among the window's lines of that very time,
/// and where its text starts (after the time).
#[derive(Debug)]
struct Stamped<'a> {
    at: Option<k8s_openapi::jiff::Timestamp>,
    rank: u32,
    raw: &'a str,
    text: &'a str,
}

/// The lines of a log read with `timestamps=true`. When the server's byte limit cut the last
/// line, it is left out.
fn stamped(raw: &str, cut: bool) -> Vec<Stamped<'_>> {
    let mut lines: Vec<&str> = raw.split_inclusive('\n').collect();
    if cut && lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.pop();
    }
    let mut out: Vec<Stamped<'_>> = Vec::with_capacity(lines.len());
    for line in lines {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let (stamp, text) = line.split_once(' ').unwrap_or((line, ""));
        let at = stamp.parse().ok();
        let text = if at.is_some() { text } else { line };
        let rank = match out.last() {
            Some(prev) if prev.at.is_some() && prev.at == at => prev.rank + 1,
            _ => 1,
        };
        out.push(Stamped { at, rank, raw: line, text });
    }
    out
}

/// How many of `lines` come before `position` (older lines first).
fn older_than(lines: &[Stamped<'_>], position: (k8s_openapi::jiff::Timestamp, u32)) -> usize {
    lines
        .iter()
        .position(|l| match l.at {
            Some(at) => at > position.0 || (at == position.0 && l.rank >= position.1),
            None => false,
        })
        .unwrap_or(lines.len())
}

impl ResourceService {
    /// A pod's log (`kubectl logs`), at most `limitBytes` of it (1 MiB at most); `truncated`
    /// only when lines of what was asked for are left out. With `before`, the page of lines just
    /// older than that position. Either way, `older` says where the lines before the text start
    /// when there may be some.
    pub async fn pod_logs(
        &self,
        caller: &Caller,
        cluster_id: &str,
        namespace: &str,
        pod: &str,
        params: super::PodLogRequest,
    ) -> Result<super::PodLog, ResourceError> {
        let (cluster, client) = self.client(caller, cluster_id).await?;
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let limit = params.limit_bytes.unwrap_or(super::MAX_LOG_BYTES).clamp(1, super::MAX_LOG_BYTES) as usize;
        if let Some(before) = &params.before
            && (before.pod != pod || before.container != params.container.clone().unwrap_or_default())
        {
            return Err(ResourceError::Invalid("before: the cursor belongs to another pod or container".into()));
        }
        let before = params.before.as_ref().and_then(|p| Some((p.time()?, p.seen)));
        let fetch = |tail_lines: Option<i64>| {
            let api = api.clone();
            let log_params = kube::api::LogParams {
                container: params.container.clone(),
                tail_lines,
                since_seconds: params.since_seconds,
                previous: params.previous,
                limit_bytes: Some(SERVER_BYTES + 1),
                timestamps: true,
                ..Default::default()
            };
            async move { api.logs(pod, &log_params).await }
        };
        let (raw, page_start, page_end, older_possible) = match before {
            None => {
                let raw = fetch(params.tail_lines).await.map_err(|e| Self::api_error(&cluster, e))?;
                let count = stamped(&raw, raw.len() as i64 > SERVER_BYTES).len();
                let older = params.tail_lines.is_some_and(|n| count as i64 >= n) || params.since_seconds.is_some();
                (raw, 0, count, older)
            }
            Some(position) => {
                let want = params.tail_lines.unwrap_or(DEFAULT_PAGE_LINES).max(0) as usize;
                let mut window = (want as i64 * 2).max(DEFAULT_PAGE_LINES);
                loop {
                    let raw = fetch(Some(window)).await.map_err(|e| Self::api_error(&cluster, e))?;
                    let cut = raw.len() as i64 > SERVER_BYTES;
                    let lines = stamped(&raw, cut);
                    let older = older_than(&lines, position);
                    let reached_start = !cut && (lines.len() as i64) < window;
                    if older >= want || reached_start || cut || window >= MAX_WINDOW {
                        let start = older.saturating_sub(want);
                        let more = start > 0 || !reached_start;
                        break (raw, start, older, more);
                    }
                    window = (window * 4).min(MAX_WINDOW);
                }
            }
        };
        let server_cut = raw.len() as i64 > SERVER_BYTES;
        let lines = stamped(&raw, server_cut);
        let page = &lines[page_start.min(lines.len())..page_end.min(lines.len())];
        let mut text = String::new();
        for line in page {
            text.push_str(if params.timestamps { line.raw } else { line.text });
            text.push('\n');
        }
        // Lines left out at the end: by the server's byte limit (a window further back reads
        // toward the position, so its cut loses lines too), or by this answer's.
        let mut truncated = server_cut;
        if text.len() > limit {
            let mut end = limit;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            truncated = true;
        }
        let older = match page.first() {
            Some(first) if older_possible => first.at.map(|at| crate::logs::position::Position {
                pod: pod.to_owned(),
                container: params.container.clone().unwrap_or_default(),
                at: at.to_string(),
                seen: first.rank,
            }),
            _ => None,
        };
        Ok(super::PodLog { text, truncated, older })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: &str = "2026-11-27T23:00:01Z a\n2026-11-27T23:00:02Z b\n2026-11-27T23:00:02Z c\n2026-11-27T23:00:03Z d\n2026-11-27T23:00:04Z e";

    #[test]
    fn a_window_is_read_into_lines_with_their_rank_at_their_time() {
        let lines = stamped(WINDOW, false);
        let seen: Vec<(&str, u32)> = lines.iter().map(|l| (l.text, l.rank)).collect();
        assert_eq!(seen, [("a", 1), ("b", 1), ("c", 2), ("d", 1), ("e", 1)]);
        // A cut last line is left out.
        assert_eq!(stamped(WINDOW, true).len(), 4);
        assert_eq!(stamped("no time\n", false)[0].text, "no time");
    }

    #[test]
    fn lines_older_than_a_position_are_counted_exactly() {
        let lines = stamped(WINDOW, false);
        let at = |s: &str| s.parse::<k8s_openapi::jiff::Timestamp>().unwrap();
        assert_eq!(older_than(&lines, (at("2026-11-27T23:00:03Z"), 1)), 3);
        // The second line of 23:00:02 is the position: only a and b are older.
        assert_eq!(older_than(&lines, (at("2026-11-27T23:00:02Z"), 2)), 2);
        assert_eq!(older_than(&lines, (at("2026-11-27T23:00:01Z"), 1)), 0);
        assert_eq!(older_than(&lines, (at("2026-11-28T00:00:00Z"), 1)), 5);
    }
}
