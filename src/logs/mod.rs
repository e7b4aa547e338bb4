//! Followed logs (`kubectl logs -f`), shared and bounded like watches. One upstream log stream
//! per (cluster, identity, namespace, pod, container, start options) serves every subscriber of
//! it; a subscriber that joins a running stream first gets what the stream keeps of its recent
//! lines (the last `--log-replay-lines`), as it would have seen them. Each subscription follows
//! one pod, or every pod of a selector (a workload's, or one given) as pods come and go; it has a
//! lines-per-second and a bytes-per-second budget, as does its principal, and a bounded queue:
//! lines past either are dropped and counted, and the subscriber is told how many (a DROPPED
//! event) instead of losing them silently.

pub mod filter;
pub mod line;
pub mod pods;
pub mod position;

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use futures_util::{Stream, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{broadcast, mpsc};

use self::filter::LineFilter;
use self::line::{LogLine, read_line};
use self::pods::{Change, PodTracker, StreamId, Wanted};
use self::position::{Position, Progress};
use crate::watch::{SubscriptionSlot, WatchHub};

/// Limits of followed logs.
#[derive(clap::Args, Debug, Clone)]
pub struct LogSettings {
    /// Lines per second a log subscription receives unless it asks for fewer.
    #[arg(long, env = "KUBEGQL_LOG_DEFAULT_LINES_PER_SECOND", default_value_t = 200)]
    pub log_default_lines_per_second: u32,
    /// The most lines per second a log subscription may ask for.
    #[arg(long, env = "KUBEGQL_LOG_MAX_LINES_PER_SECOND", default_value_t = 2000)]
    pub log_max_lines_per_second: u32,
    /// Bytes per second a log subscription receives unless it asks for fewer.
    #[arg(long, env = "KUBEGQL_LOG_DEFAULT_BYTES_PER_SECOND", default_value_t = 256 * 1024)]
    pub log_default_bytes_per_second: u32,
    /// The most bytes per second a log subscription may ask for.
    #[arg(long, env = "KUBEGQL_LOG_MAX_BYTES_PER_SECOND", default_value_t = 4 * 1024 * 1024)]
    pub log_max_bytes_per_second: u32,
    /// Lines per second all of one principal's log subscriptions together receive.
    #[arg(long, env = "KUBEGQL_LOG_PRINCIPAL_LINES_PER_SECOND", default_value_t = 5000)]
    pub log_principal_lines_per_second: u32,
    /// Bytes per second all of one principal's log subscriptions together receive.
    #[arg(long, env = "KUBEGQL_LOG_PRINCIPAL_BYTES_PER_SECOND", default_value_t = 8 * 1024 * 1024)]
    pub log_principal_bytes_per_second: u32,
    /// Containers one log subscription may follow at once (kubectl's `--max-log-requests`).
    #[arg(long, env = "KUBEGQL_LOG_MAX_STREAMS_PER_SUBSCRIPTION", default_value_t = 32)]
    pub log_max_streams_per_subscription: usize,
    /// The longest line kept; a longer one is cut and marked truncated.
    #[arg(long, env = "KUBEGQL_LOG_MAX_LINE_BYTES", default_value_t = 64 * 1024)]
    pub log_max_line_bytes: usize,
    /// The longest filter (substring or regular expression), in bytes.
    #[arg(long, env = "KUBEGQL_LOG_MAX_FILTER_BYTES", default_value_t = 1024)]
    pub log_max_filter_bytes: usize,
    /// Recent lines a shared log stream keeps for subscribers that join it later.
    #[arg(long, env = "KUBEGQL_LOG_REPLAY_LINES", default_value_t = 1000)]
    pub log_replay_lines: usize,
    /// Events that may wait for a slow subscriber before lines are dropped.
    #[arg(long, env = "KUBEGQL_LOG_QUEUE_EVENTS", default_value_t = 1000)]
    pub log_queue_events: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            log_default_lines_per_second: 200,
            log_max_lines_per_second: 2000,
            log_default_bytes_per_second: 256 * 1024,
            log_max_bytes_per_second: 4 * 1024 * 1024,
            log_principal_lines_per_second: 5000,
            log_principal_bytes_per_second: 8 * 1024 * 1024,
            log_max_streams_per_subscription: 32,
            log_max_line_bytes: 64 * 1024,
            log_max_filter_bytes: 1024,
            log_replay_lines: 1000,
            log_queue_events: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooMany(String),
}

/// Where a followed log starts (`kubectl logs --tail --since --since-time --previous`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Start {
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<Timestamp>,
    pub previous: bool,
}

impl Start {
    fn params(&self, container: &str) -> LogParams {
        LogParams {
            container: Some(container.to_owned()),
            follow: true,
            timestamps: true,
            tail_lines: self.tail_lines,
            since_seconds: self.since_seconds,
            since_time: self.since_time,
            previous: self.previous,
            ..Default::default()
        }
    }

    /// What a subscriber that joins a running stream gets of the lines it keeps.
    fn replay<'a>(&self, kept: &'a VecDeque<Arc<LogLine>>) -> impl Iterator<Item = &'a Arc<LogLine>> {
        let oldest = match (self.since_seconds, self.since_time) {
            (Some(s), _) => Some(Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(s)),
            (None, t) => t,
        };
        let in_time: Vec<&Arc<LogLine>> = kept
            .iter()
            .filter(|l| match (oldest, l.at) {
                (Some(o), Some(at)) => at >= o,
                _ => true,
            })
            .collect();
        let skip = match self.tail_lines {
            Some(n) => in_time.len().saturating_sub(n.max(0) as usize),
            None => 0,
        };
        in_time.into_iter().skip(skip)
    }
}

/// One upstream stream's identity: subscribers with the same key share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub cluster_id: String,
    pub identity: Option<String>,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The container's run (restart count): a restarted container's log is another stream.
    pub run: i32,
    pub start: Start,
}

/// What an upstream stream sends its subscribers.
#[derive(Debug)]
enum Sent {
    Line(Arc<LogLine>),
    Ended(String),
}

/// An upstream's recent lines, and whether it has ended; changed and sent under one lock, so
/// a joining subscriber's replay and its live lines neither overlap nor gap.
#[derive(Default)]
struct Kept {
    lines: VecDeque<Arc<LogLine>>,
    /// Lines the stream had sent that no longer fit.
    evicted: u64,
    ended: Option<String>,
}

struct Upstream {
    id: u64,
    events: broadcast::Sender<Arc<Sent>>,
    kept: Arc<std::sync::Mutex<Kept>>,
    subscribers: usize,
    task: tokio::task::JoinHandle<()>,
}

/// What a subscription is told.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// A container's log is followed from now on.
    Started {
        stream: StreamId,
    },
    Line {
        stream: StreamId,
        line: Arc<LogLine>,
        cursor: Option<String>,
    },
    /// Lines were not delivered: past the budget, or the subscriber was too slow.
    Dropped {
        stream: Option<StreamId>,
        lines: u64,
    },
    /// A container's log is no longer followed, and why.
    Ended {
        stream: StreamId,
        reason: String,
    },
    /// The subscription itself ends (its one pod is gone, its cluster changed).
    Finished {
        reason: String,
    },
}

/// What to follow.
#[derive(Debug, Clone)]
pub enum Source {
    Pod(String),
    Selector(String),
}

/// A subscription's request.
pub struct Follow {
    pub principal: String,
    pub client: kube::Client,
    pub cluster_id: String,
    pub identity: Option<String>,
    pub namespace: String,
    pub source: Source,
    pub wanted: Wanted,
    pub start: Start,
    pub filter: Option<LineFilter>,
    pub resume: Vec<Position>,
    pub lines_per_second: u32,
    pub bytes_per_second: u32,
}

fn quota(per_second: u32) -> Quota {
    let n = NonZeroU32::new(per_second.max(1)).expect("at least one");
    Quota::per_second(n).allow_burst(n)
}

/// A lines and a bytes budget.
struct Budget {
    lines: DefaultDirectRateLimiter,
    bytes: DefaultDirectRateLimiter,
}

impl Budget {
    fn new(lines: u32, bytes: u32) -> Budget {
        Budget { lines: RateLimiter::direct(quota(lines)), bytes: RateLimiter::direct(quota(bytes)) }
    }

    fn admit(&self, weight: usize) -> bool {
        let weight = NonZeroU32::new(weight.clamp(1, u32::MAX as usize) as u32).expect("at least one");
        self.lines.check().is_ok() && matches!(self.bytes.check_n(weight), Ok(Ok(())))
    }
}

/// Live log subscriptions' shared upstream streams.
pub struct LogHub {
    upstreams: std::sync::Mutex<HashMap<StreamKey, Upstream>>,
    next_id: AtomicU64,
    starts: AtomicU64,
    budgets: DashMap<String, Arc<Budget>>,
    watch_hub: Arc<WatchHub>,
    settings: LogSettings,
}

impl std::fmt::Debug for LogHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHub").field("upstreams", &self.upstream_count()).finish()
    }
}

impl LogHub {
    /// Subscriptions count against the watch hub's per-principal cap.
    pub fn new(settings: LogSettings, watch_hub: Arc<WatchHub>) -> Arc<Self> {
        Arc::new(Self {
            upstreams: Default::default(),
            next_id: AtomicU64::new(1),
            starts: AtomicU64::new(0),
            budgets: DashMap::new(),
            watch_hub,
            settings,
        })
    }

    pub fn settings(&self) -> &LogSettings {
        &self.settings
    }

    /// Upstream log streams open now.
    pub fn upstream_count(&self) -> usize {
        self.upstreams.lock().map(|u| u.len()).unwrap_or_default()
    }

    /// Lines the upstream streams keep now for subscribers that join later (bounded by
    /// `--log-replay-lines` each).
    pub fn kept_lines(&self) -> usize {
        let upstreams = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        upstreams.values().map(|u| u.kept.lock().map(|k| k.lines.len()).unwrap_or_default()).sum()
    }

    /// Upstream log streams opened since the hub was made.
    pub fn upstream_starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// Checks a requested budget against the server's bounds.
    pub fn budget_for(&self, lines: Option<i32>, bytes: Option<i32>) -> Result<(u32, u32), LogError> {
        let s = &self.settings;
        let lines = match lines {
            None => s.log_default_lines_per_second,
            Some(n) if n < 1 || n as u32 > s.log_max_lines_per_second => {
                return Err(LogError::Invalid(format!(
                    "maxLinesPerSecond must be between 1 and {}, got {n}",
                    s.log_max_lines_per_second
                )));
            }
            Some(n) => n as u32,
        };
        let least = s.log_max_line_bytes.min(u32::MAX as usize) as u32;
        let bytes = match bytes {
            None => s.log_default_bytes_per_second.max(least),
            Some(n) if n < 1 || (n as u32) < least || n as u32 > s.log_max_bytes_per_second => {
                return Err(LogError::Invalid(format!(
                    "maxBytesPerSecond must be between {least} (the longest line) and {}, got {n}",
                    s.log_max_bytes_per_second
                )));
            }
            Some(n) => n as u32,
        };
        Ok((lines, bytes))
    }

    /// Starts following; the stream ends when the subscriber drops it.
    pub fn follow(self: &Arc<Self>, request: Follow) -> Result<impl Stream<Item = LogEvent> + Send + use<>, LogError> {
        let slot = self.watch_hub.reserve(&request.principal).map_err(|e| LogError::TooMany(e.to_string()))?;
        let (tx, rx) = mpsc::channel(self.settings.log_queue_events.max(1));
        let task = tokio::spawn(Arc::clone(self).run(request, tx));
        let guard = FollowGuard { _slot: slot, task };
        Ok(futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
            let event = rx.recv().await?;
            Some((event, (rx, guard)))
        }))
    }

    /// A subscription's life: watches its pods and follows each wanted container.
    async fn run(self: Arc<Self>, request: Follow, out: mpsc::Sender<LogEvent>) {
        let Follow { client, namespace, source, wanted, start, filter, resume, principal, .. } = &request;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        // Each watch request ends before the client's read timeout, as the resource watches' do.
        let base = watcher::Config::default().timeout(self.watch_hub.settings().upstream_request_secs);
        let config = match source {
            Source::Pod(name) => base.fields(&format!("metadata.name={name}")),
            Source::Selector(selector) => base.labels(selector),
        };
        let principal_budget = Arc::clone(
            &self
                .budgets
                .entry(principal.clone())
                .or_insert_with(|| {
                    Arc::new(Budget::new(
                        self.settings.log_principal_lines_per_second,
                        self.settings.log_principal_bytes_per_second,
                    ))
                })
                .clone(),
        );
        let shared = Arc::new(Shared {
            budget: Budget::new(request.lines_per_second, request.bytes_per_second),
            principal_budget,
            filter: filter.clone(),
            out: out.clone(),
        });
        let mut tracker = PodTracker::new(wanted.clone());
        let mut followers = Followers::default();
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<StreamId>();
        let mut pod_events = watcher(pods, config).default_backoff().boxed();
        let mut ever_followed = false;
        loop {
            tokio::select! {
                event = pod_events.next() => {
                    let Some(event) = event else { break };
                    let event = match event {
                        Ok(event) => event,
                        Err(err) => {
                            tracing::warn!(error = %err, "a log subscription's pod watch was interrupted; resuming");
                            continue;
                        }
                    };
                    for change in tracker.apply(event) {
                        match change {
                            Change::Start { stream, from_beginning } => {
                                if followers.0.len() >= self.settings.log_max_streams_per_subscription {
                                    let reason = format!(
                                        "not followed: this subscription already follows {} containers, the most one may",
                                        self.settings.log_max_streams_per_subscription
                                    );
                                    if out.send(LogEvent::Ended { stream, reason }).await.is_err() {
                                        return;
                                    }
                                    continue;
                                }
                                let start = if from_beginning { Start { previous: start.previous, ..Default::default() } } else { start.clone() };
                                let position = resume.iter().find(|p| p.pod == stream.pod && p.container == stream.container).cloned();
                                let start = match position.as_ref().and_then(Position::since) {
                                    // Resuming: from the position's second; the rest is skipped.
                                    Some(since) => Start { since_time: Some(since), previous: start.previous, ..Default::default() },
                                    None => start,
                                };
                                let key = StreamKey {
                                    cluster_id: request.cluster_id.clone(),
                                    identity: request.identity.clone(),
                                    namespace: namespace.clone(),
                                    pod: stream.pod.clone(),
                                    container: stream.container.clone(),
                                    run: stream.run,
                                    start,
                                };
                                ever_followed = true;
                                if out.send(LogEvent::Started { stream: stream.clone() }).await.is_err() {
                                    return;
                                }
                                let member = self.join(key, client.clone());
                                let follower = tokio::spawn(forward(
                                    member,
                                    stream.clone(),
                                    Progress::resuming(position.as_ref()),
                                    Arc::clone(&shared),
                                    ended_tx.clone(),
                                ));
                                followers.0.insert(stream, follower.abort_handle());
                            }
                            Change::Stop { stream } => {
                                if let Some(follower) = followers.0.remove(&stream) {
                                    follower.abort();
                                    let reason = "the pod was deleted".to_owned();
                                    if out.send(LogEvent::Ended { stream, reason }).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    }
                }
                Some(stream) = ended_rx.recv() => {
                    followers.0.remove(&stream);
                }
            }
            // One pod whose every followed container has ended, and that is gone or done: the
            // subscription is over, as `kubectl logs -f POD` is.
            if matches!(source, Source::Pod(_)) && ever_followed && followers.0.is_empty() && tracker.is_empty() {
                let _ = out.send(LogEvent::Finished { reason: "the pod is gone".into() }).await;
                return;
            }
        }
        let _ = out.send(LogEvent::Finished { reason: "the pod watch ended".into() }).await;
    }

    /// Joins (or opens) the upstream stream for `key`.
    fn join(self: &Arc<Self>, key: StreamKey, client: kube::Client) -> Member {
        let mut upstreams = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        // A stream that has ended (its container stopped, its cluster changed) is not joined: a
        // new subscriber reads the log afresh. Its old subscribers keep what they were told.
        let ended = upstreams.get(&key).is_some_and(|u| u.kept.lock().map(|k| k.ended.is_some()).unwrap_or(true));
        if ended && let Some(old) = upstreams.remove(&key) {
            old.task.abort();
        }
        let upstream = upstreams.entry(key.clone()).or_insert_with(|| {
            self.starts.fetch_add(1, Ordering::Relaxed);
            let (events, _) = broadcast::channel(1024);
            let kept: Arc<std::sync::Mutex<Kept>> = Arc::default();
            let task = tokio::spawn(read_upstream(
                client,
                key.clone(),
                events.clone(),
                Arc::clone(&kept),
                self.settings.log_replay_lines,
                self.settings.log_max_line_bytes,
            ));
            Upstream { id: self.next_id.fetch_add(1, Ordering::Relaxed), events, kept, subscribers: 0, task }
        });
        upstream.subscribers += 1;
        let (replay, evicted, receiver, ended) = {
            let kept = upstream.kept.lock().unwrap_or_else(|e| e.into_inner());
            let receiver = upstream.events.subscribe();
            let replay: Vec<Arc<LogLine>> = key.start.replay(&kept.lines).cloned().collect();
            // Lines before the kept ones are missing only for a subscriber that wanted them all.
            let evicted =
                if key.start == Start::default() || key.start.since_time.is_some() { kept.evicted } else { 0 };
            (replay, evicted, receiver, kept.ended.clone())
        };
        Member { hub: Arc::clone(self), key, id: upstream.id, replay, evicted, receiver, ended }
    }

    fn leave(&self, key: &StreamKey, id: u64) {
        let mut upstreams = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(upstream) = upstreams.get_mut(key)
            && upstream.id == id
        {
            upstream.subscribers = upstream.subscribers.saturating_sub(1);
            if upstream.subscribers == 0 {
                upstream.task.abort();
                upstreams.remove(key);
            }
        }
    }

    /// Ends every upstream stream of a cluster (its credentials or address changed): their
    /// subscribers are told, and a new subscription opens new streams.
    pub fn end_cluster(&self, cluster_id: &str) {
        let mut upstreams = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        upstreams.retain(|key, upstream| {
            if key.cluster_id != cluster_id {
                return true;
            }
            upstream.task.abort();
            let mut kept = upstream.kept.lock().unwrap_or_else(|e| e.into_inner());
            let reason = "the cluster was changed or removed; subscribe again".to_owned();
            kept.ended = Some(reason.clone());
            let _ = upstream.events.send(Arc::new(Sent::Ended(reason)));
            false
        });
    }
}

impl crate::clusters::ClusterListener for LogHub {
    fn cluster_changed(&self, id: &str) {
        self.end_cluster(id);
    }
}

/// A subscription's followers, one per container; they end with it.
#[derive(Default)]
struct Followers(HashMap<StreamId, tokio::task::AbortHandle>);

impl Drop for Followers {
    fn drop(&mut self) {
        for follower in self.0.values() {
            follower.abort();
        }
    }
}

/// Ends a subscription's task (and so its followers) when the subscriber goes.
struct FollowGuard {
    _slot: SubscriptionSlot,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FollowGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What every follower of one subscription shares.
struct Shared {
    budget: Budget,
    principal_budget: Arc<Budget>,
    filter: Option<LineFilter>,
    out: mpsc::Sender<LogEvent>,
}

/// A subscriber's place in an upstream stream; leaving gives it back.
struct Member {
    hub: Arc<LogHub>,
    key: StreamKey,
    id: u64,
    replay: Vec<Arc<LogLine>>,
    evicted: u64,
    receiver: broadcast::Receiver<Arc<Sent>>,
    ended: Option<String>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.hub.leave(&self.key, self.id);
    }
}

/// Reads one container's log from the API server, keeps its recent lines and sends each one.
async fn read_upstream(
    client: kube::Client,
    key: StreamKey,
    events: broadcast::Sender<Arc<Sent>>,
    kept: Arc<std::sync::Mutex<Kept>>,
    keep: usize,
    max_line: usize,
) {
    let end = |reason: String| {
        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.ended = Some(reason.clone());
        let _ = events.send(Arc::new(Sent::Ended(reason)));
    };
    let pods: Api<Pod> = Api::namespaced(client, &key.namespace);
    let reader = match pods.log_stream(&key.pod, &key.start.params(&key.container)).await {
        Ok(reader) => reader,
        Err(err) => return end(open_error(&err)),
    };
    let mut reader = std::pin::pin!(reader);
    loop {
        match read_line(&mut reader, max_line).await {
            Ok(Some((raw, truncated))) => {
                let line = Arc::new(LogLine::parse(&raw, truncated));
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                kept.lines.push_back(Arc::clone(&line));
                while kept.lines.len() > keep {
                    kept.lines.pop_front();
                    kept.evicted += 1;
                }
                let _ = events.send(Arc::new(Sent::Line(line)));
            }
            Ok(None) => return end("the container's log ended".into()),
            Err(err) => {
                tracing::info!(error = %err, pod = %key.pod, "a followed log broke off");
                return end("the log stream broke off; subscribe again to resume".into());
            }
        }
    }
}

/// Why a log could not be opened, in words that carry nothing of the API server's own text but
/// its status.
fn open_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => match status.code {
            400 => format!("the API server refused the log request: {}", status.message),
            403 => "the cluster does not allow reading this pod's log (FORBIDDEN)".into(),
            404 => "the pod or container is gone (NOT_FOUND)".into(),
            code => format!("the API server answered {code}"),
        },
        _ => "the cluster could not be reached".into(),
    }
}

/// Carries one container's lines to the subscription: skips what a resumed subscriber already
/// had, filters, spends the budgets, and counts what it drops.
async fn forward(
    mut member: Member,
    stream: StreamId,
    mut progress: Progress,
    shared: Arc<Shared>,
    ended: mpsc::UnboundedSender<StreamId>,
) {
    let mut dropped = std::mem::take(&mut member.evicted);
    let replay = std::mem::take(&mut member.replay);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut replay = replay.into_iter();
    let mut finished = member.ended.take();
    loop {
        let line = if let Some(line) = replay.next() {
            line
        } else if let Some(reason) = finished.take() {
            flush_dropped(&shared, &stream, &mut dropped).await;
            let _ = shared.out.send(LogEvent::Ended { stream: stream.clone(), reason }).await;
            let _ = ended.send(stream);
            return;
        } else {
            tokio::select! {
                received = member.receiver.recv() => match received {
                    Ok(sent) => match &*sent {
                        Sent::Line(line) => Arc::clone(line),
                        Sent::Ended(reason) => {
                            finished = Some(reason.clone());
                            continue;
                        }
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        dropped += n;
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        finished = Some("the log stream closed".into());
                        continue;
                    }
                },
                _ = tick.tick() => {
                    if shared.out.is_closed() {
                        return;
                    }
                    flush_dropped(&shared, &stream, &mut dropped).await;
                    continue;
                }
            }
        };
        if !progress.admit(line.at) {
            continue;
        }
        if shared.filter.as_ref().is_some_and(|f| !f.matches(&line.text)) {
            continue;
        }
        if !(shared.budget.admit(line.weight()) && shared.principal_budget.admit(line.weight())) {
            dropped += 1;
            continue;
        }
        if dropped > 0 && !try_dropped(&shared, &stream, &mut dropped) {
            dropped += 1;
            continue;
        }
        let cursor = progress.position(&stream.pod, &stream.container).map(|p| p.encode());
        let event = LogEvent::Line { stream: stream.clone(), line, cursor };
        match shared.out.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// Tells the subscriber how many lines it missed, if there is room for it now.
fn try_dropped(shared: &Shared, stream: &StreamId, dropped: &mut u64) -> bool {
    let event = LogEvent::Dropped { stream: Some(stream.clone()), lines: *dropped };
    match shared.out.try_send(event) {
        Ok(()) => {
            *dropped = 0;
            true
        }
        Err(_) => false,
    }
}

async fn flush_dropped(shared: &Shared, stream: &StreamId, dropped: &mut u64) {
    if *dropped > 0 {
        try_dropped(shared, stream, dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at: &str) -> Arc<LogLine> {
        Arc::new(LogLine { at: Some(at.parse().unwrap()), text: at.into(), truncated: false })
    }

    #[test]
    fn a_late_subscriber_gets_what_it_would_have_seen_of_the_kept_lines() {
        let kept: VecDeque<Arc<LogLine>> =
            ["2026-11-27T23:00:01Z", "2026-11-27T23:00:02Z", "2026-11-27T23:00:03Z"].into_iter().map(line).collect();
        let texts = |start: Start| start.replay(&kept).map(|l| l.text.clone()).collect::<Vec<_>>();
        assert_eq!(texts(Start::default()).len(), 3);
        assert_eq!(
            texts(Start { tail_lines: Some(2), ..Default::default() }),
            ["2026-11-27T23:00:02Z", "2026-11-27T23:00:03Z"]
        );
        assert!(texts(Start { tail_lines: Some(0), ..Default::default() }).is_empty());
        let since = Start { since_time: Some("2026-11-27T23:00:02Z".parse().unwrap()), ..Default::default() };
        assert_eq!(texts(since), ["2026-11-27T23:00:02Z", "2026-11-27T23:00:03Z"]);
        // Lines older than sinceSeconds are not replayed.
        assert!(texts(Start { since_seconds: Some(60), ..Default::default() }).is_empty());
    }

    #[test]
    fn a_budget_counts_lines_and_bytes() {
        let budget = Budget::new(3, 100);
        assert!(budget.admit(40) && budget.admit(40));
        assert!(!budget.admit(40), "the bytes are spent");
        let lines = Budget::new(2, 1000);
        assert!(lines.admit(1) && lines.admit(1) && !lines.admit(1), "the lines are spent");
    }
}
