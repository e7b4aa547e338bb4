//! `WatchHub`: live resource events for subscriptions. One upstream Kubernetes watch per
//! (cluster, identity, kind, namespace, selectors), however many subscribers share it; it starts
//! with the first subscriber and stops a grace period after the last one leaves.
//!
//! The upstream keeps the current state of what it watches. After a relist (a 410, or the API
//! server coming back) it compares the new list with that state and emits the differences, so
//! subscribers lose no DELETE and see no duplicate. Each subscriber receives through its own
//! bounded `Coalescer`, paced by its own rate limit and its principal's budget.

pub mod coalesce;
pub mod state;
pub mod table;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use futures_util::{Stream, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::{RwLock, broadcast};

use self::coalesce::{Coalescer, SharedObjects, WatchEvent, WatchEventType, Watched};
use self::state::WatchState;
use crate::resources::ListQuery;

/// Limits of live subscriptions.
#[derive(clap::Args, Debug, Clone)]
pub struct WatchSettings {
    /// Events per second a subscription gets when it does not ask for a rate.
    #[arg(long, env = "KUBEGQL_WATCH_DEFAULT_EVENTS_PER_SECOND", default_value_t = 20)]
    pub default_events_per_second: u32,
    /// The highest rate a subscription may ask for.
    #[arg(long, env = "KUBEGQL_WATCH_MAX_EVENTS_PER_SECOND", default_value_t = 200)]
    pub max_events_per_second: u32,
    /// Concurrent subscriptions one principal may hold.
    #[arg(long, env = "KUBEGQL_WATCH_MAX_SUBSCRIPTIONS_PER_PRINCIPAL", default_value_t = 32)]
    pub max_subscriptions_per_principal: usize,
    /// Events per second all of one principal's subscriptions together may receive.
    #[arg(long, env = "KUBEGQL_WATCH_PRINCIPAL_EVENTS_PER_SECOND", default_value_t = 1000)]
    pub principal_events_per_second: u32,
    /// Objects beyond those the watch holds that may wait for one subscriber (deleted ones, under
    /// churn) before it gets a RESYNC instead. The queue holds one entry per object, so it never
    /// grows with the number of events.
    #[arg(long, env = "KUBEGQL_WATCH_QUEUE_OBJECTS", default_value_t = 10_000)]
    pub queue_objects: usize,
    /// How long an upstream watch outlives its last subscriber (a reconnecting client reuses it).
    #[arg(long, env = "KUBEGQL_WATCH_GRACE_SECS", default_value_t = 10)]
    pub grace_secs: u64,
    /// Upstream watches one principal's subscriptions may keep alive at once, those in their
    /// grace period included.
    #[arg(long, env = "KUBEGQL_WATCH_MAX_UPSTREAMS_PER_PRINCIPAL", default_value_t = 32)]
    pub max_upstreams_per_principal: usize,
    /// Upstream watches one principal may start per minute.
    #[arg(long, env = "KUBEGQL_WATCH_UPSTREAM_STARTS_PER_MINUTE", default_value_t = 60)]
    pub upstream_starts_per_minute: u32,
    /// Seconds the API server keeps one watch request open (`timeoutSeconds`) before the watch
    /// resumes from where it stopped with a new request. Below the client's read timeout (the
    /// server sets it from `--read-timeout-secs`), so that a quiet watch ends cleanly rather than
    /// being cut as a stalled read.
    #[arg(skip = 25u32)]
    pub upstream_request_secs: u32,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            default_events_per_second: 20,
            max_events_per_second: 200,
            max_subscriptions_per_principal: 32,
            principal_events_per_second: 1000,
            queue_objects: 10_000,
            grace_secs: 10,
            max_upstreams_per_principal: 32,
            upstream_starts_per_minute: 60,
            upstream_request_secs: 25,
        }
    }
}

/// What one upstream watch watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchKey {
    pub cluster_id: String,
    pub identity: Option<String>,
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Watch the API server's table of the objects (a row with each), not the objects alone.
    pub table: bool,
}

struct Upstream {
    /// Tells this upstream from a later one of the same key.
    id: u64,
    /// The principal whose subscription started it, and whose upstreams it counts among.
    owner: String,
    /// Why it was ended early (its cluster changed), for its subscribers.
    ended: Arc<std::sync::OnceLock<String>>,
    events: broadcast::Sender<Sent>,
    store: Arc<RwLock<WatchState>>,
    /// How many objects the store holds, readable without its lock.
    held: Arc<AtomicUsize>,
    /// Whether its first list is complete, readable without the store's lock.
    listed: Arc<AtomicBool>,
    subscribers: usize,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooMany(String),
    /// The watch was ended under its subscribers (its cluster was changed or removed).
    #[error("{0}")]
    Ended(String),
}

/// Live subscriptions' shared upstream watches.
pub struct WatchHub {
    upstreams: Arc<std::sync::Mutex<HashMap<WatchKey, Upstream>>>,
    /// Upstreams alive per principal that started them.
    upstreams_of: Arc<DashMap<String, usize>>,
    start_budget: governor::DefaultKeyedRateLimiter<String>,
    starts: AtomicU64,
    /// Upstream watch requests that failed (cut, refused) rather than ended, since start.
    interruptions: Arc<AtomicU64>,
    per_principal: DashMap<String, usize>,
    budgets: DashMap<String, Arc<DefaultDirectRateLimiter>>,
    /// Each version of an object held once, however many watches hold it.
    shared: Arc<SharedObjects>,
    settings: WatchSettings,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub").field("upstreams", &self.upstream_count()).finish()
    }
}

/// One of a principal's concurrent subscriptions (of any kind): dropping it gives the place back.
pub struct SubscriptionSlot {
    hub: Arc<WatchHub>,
    principal: String,
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        if let Some(mut count) = self.hub.per_principal.get_mut(&self.principal) {
            *count = count.saturating_sub(1);
        }
    }
}

/// Holds a subscriber's place: dropping it releases the upstream and the principal's slot.
pub struct Membership {
    key: WatchKey,
    upstream: u64,
    // Dropped after `drop` below has released the upstream.
    slot: SubscriptionSlot,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.slot.hub.release(&self.key, self.upstream);
    }
}

/// How a subscriber wants its events.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    pub event_types: Option<Vec<WatchEventType>>,
    pub send_initial_state: bool,
    pub events_per_second: Option<u32>,
}

fn quota(per_second: u32) -> Quota {
    let n = NonZeroU32::new(per_second.max(1)).expect("at least one");
    Quota::per_second(n).allow_burst(n)
}

impl WatchHub {
    pub fn new(settings: WatchSettings) -> Arc<Self> {
        let per_minute = NonZeroU32::new(settings.upstream_starts_per_minute.max(1)).expect("at least one");
        Arc::new(Self {
            upstreams: Default::default(),
            upstreams_of: Default::default(),
            start_budget: RateLimiter::keyed(Quota::per_minute(per_minute)),
            starts: AtomicU64::new(0),
            interruptions: Arc::default(),
            per_principal: DashMap::new(),
            budgets: DashMap::new(),
            shared: Arc::default(),
            settings,
        })
    }

    pub fn settings(&self) -> &WatchSettings {
        &self.settings
    }

    /// Upstream watches running now.
    pub fn upstream_count(&self) -> usize {
        self.upstreams.lock().map(|u| u.len()).unwrap_or_default()
    }

    /// Upstream watch requests that failed (cut by the network or a timeout, refused by the API
    /// server) rather than ending as the API server ends them, since start.
    pub fn interruptions(&self) -> u64 {
        self.interruptions.load(Ordering::Relaxed)
    }

    /// Upstream watches running now whose first list is complete (from then on, what changes
    /// reaches every subscriber).
    pub fn listed_upstream_count(&self) -> usize {
        self.upstreams
            .lock()
            .map(|u| u.values().filter(|up| up.listed.load(Ordering::Relaxed)).count())
            .unwrap_or_default()
    }

    /// Subscriptions open now.
    pub fn subscription_count(&self) -> usize {
        self.per_principal.iter().map(|e| *e.value()).sum()
    }

    /// Upstream watches started since the hub was made.
    pub fn upstream_starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// Checks a requested rate against the server's bounds.
    pub fn rate_for(&self, asked: Option<i32>) -> Result<u32, WatchError> {
        match asked {
            None => Ok(self.settings.default_events_per_second),
            Some(n) if n < 1 => Err(WatchError::Invalid(format!("maxEventsPerSecond must be at least 1, got {n}"))),
            Some(n) if n as u32 > self.settings.max_events_per_second => Err(WatchError::Invalid(format!(
                "maxEventsPerSecond must be at most {}, got {n}",
                self.settings.max_events_per_second
            ))),
            Some(n) => Ok(n as u32),
        }
    }

    /// Joins (or starts) the upstream for `key` and returns the subscriber's event stream.
    pub async fn subscribe(
        self: &Arc<Self>,
        key: WatchKey,
        principal: &str,
        client: kube::Client,
        resource: ApiResource,
        options: SubscribeOptions,
    ) -> Result<impl Stream<Item = Result<WatchEvent, WatchError>> + Send + use<>, WatchError> {
        let rate = self.rate_for(options.events_per_second.map(|n| n as i32))?;
        let slot = self.reserve(principal)?;
        let (id, ended, events, store, held) = {
            let mut upstreams = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
            if !upstreams.contains_key(&key) {
                let alive = self.upstreams_of.get(principal).map(|n| *n).unwrap_or(0);
                if alive >= self.settings.max_upstreams_per_principal {
                    return Err(WatchError::TooMany(format!(
                        "at most {} upstream watches per principal, those ending in their grace period included",
                        self.settings.max_upstreams_per_principal
                    )));
                }
                if self.start_budget.check_key(&principal.to_owned()).is_err() {
                    return Err(WatchError::TooMany(format!(
                        "at most {} new upstream watches per principal per minute",
                        self.settings.upstream_starts_per_minute
                    )));
                }
                let id = self.starts.fetch_add(1, Ordering::Relaxed) + 1;
                *self.upstreams_of.entry(principal.to_owned()).or_insert(0) += 1;
                let shared = Arc::clone(&self.shared);
                let options = UpstreamOptions {
                    request_secs: self.settings.upstream_request_secs,
                    interruptions: Arc::clone(&self.interruptions),
                };
                upstreams.insert(key.clone(), start_upstream(id, principal, &key, client, resource, shared, options));
            }
            let upstream = upstreams.get_mut(&key).expect("present or just inserted");
            upstream.subscribers += 1;
            (
                upstream.id,
                Arc::clone(&upstream.ended),
                upstream.events.clone(),
                Arc::clone(&upstream.store),
                Arc::clone(&upstream.held),
            )
        };
        let membership = Membership { key, upstream: id, slot };
        let budget = Arc::clone(
            &self
                .budgets
                .entry(principal.to_owned())
                .or_insert_with(|| Arc::new(RateLimiter::direct(quota(self.settings.principal_events_per_second)))),
        );
        let wanted = options.event_types.clone();
        let accept = move |kind: WatchEventType| {
            kind == WatchEventType::Resync || wanted.as_ref().is_none_or(|w| w.contains(&kind))
        };
        // Subscribe while holding the store's read lock: the upstream changes the store and
        // sends under its write lock, so the snapshot and the stream neither overlap nor gap.
        // The snapshot is pointers to what the watch holds, sent as ADDED before any change.
        let (receiver, snapshot, skip_first_list) = {
            let state = store.read().await;
            let receiver = events.subscribe();
            let snapshot: Vec<Watched> = if options.send_initial_state && accept(WatchEventType::Added) {
                state.objects().values().cloned().collect()
            } else {
                Vec::new()
            };
            (receiver, snapshot, !options.send_initial_state && !state.listed())
        };
        let coalescer = Coalescer::new(self.settings.queue_objects + held.load(Ordering::Relaxed));
        let state = SubscriberState {
            receiver,
            snapshot: snapshot.into_iter(),
            coalescer,
            limiter: RateLimiter::direct(quota(rate)),
            budget,
            store,
            held,
            spare: self.settings.queue_objects,
            resend_state: options.send_initial_state,
            skip_first_list,
            accept: Box::new(accept),
            _membership: membership,
            closed: false,
            ended,
        };
        Ok(futures_util::stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            match state.next().await {
                Some(event) => Some((Ok(event), Some(state))),
                // Ended under its subscribers: they are told why, once, and the stream ends.
                None => state.ended.get().map(|why| (Err(WatchError::Ended(why.clone())), None)),
            }
        }))
    }

    /// Takes one of `principal`'s concurrent subscriptions, or refuses past the cap. Every
    /// subscription holds one, watches and the other live feeds alike.
    pub fn reserve(self: &Arc<Self>, principal: &str) -> Result<SubscriptionSlot, WatchError> {
        let mut count = self.per_principal.entry(principal.to_owned()).or_insert(0);
        if *count >= self.settings.max_subscriptions_per_principal {
            return Err(WatchError::TooMany(format!(
                "at most {} concurrent subscriptions per principal",
                self.settings.max_subscriptions_per_principal
            )));
        }
        *count += 1;
        Ok(SubscriptionSlot { hub: Arc::clone(self), principal: principal.to_owned() })
    }

    fn release(self: &Arc<Self>, key: &WatchKey, id: u64) {
        let last = {
            let mut upstreams = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
            match upstreams.get_mut(key) {
                Some(upstream) if upstream.id == id => {
                    upstream.subscribers = upstream.subscribers.saturating_sub(1);
                    upstream.subscribers == 0
                }
                _ => false,
            }
        };
        if last {
            let (upstreams, upstreams_of) = (Arc::clone(&self.upstreams), Arc::clone(&self.upstreams_of));
            let key = key.clone();
            let grace = Duration::from_secs(self.settings.grace_secs);
            let stop = move || {
                let mut upstreams = upstreams.lock().unwrap_or_else(|e| e.into_inner());
                if upstreams.get(&key).is_some_and(|u| u.id == id && u.subscribers == 0)
                    && let Some(upstream) = upstreams.remove(&key)
                {
                    upstream.task.abort();
                    forget_upstream(&upstreams_of, &upstream.owner);
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(handle) if !grace.is_zero() => {
                    handle.spawn(async move {
                        tokio::time::sleep(grace).await;
                        stop();
                    });
                }
                _ => stop(),
            }
        }
    }
}

/// One upstream fewer for `owner`.
fn forget_upstream(upstreams_of: &DashMap<String, usize>, owner: &str) {
    if let Some(mut count) = upstreams_of.get_mut(owner) {
        *count = count.saturating_sub(1);
    }
    upstreams_of.remove_if(owner, |_, count| *count == 0);
}

impl WatchHub {
    /// Ends every upstream watch of a cluster at once (it was changed or removed): its
    /// subscribers get an error saying so, and a new subscription starts a new watch with the
    /// cluster's new client.
    pub fn end_cluster(&self, cluster_id: &str) {
        let mut upstreams = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        let ended: Vec<WatchKey> = upstreams.keys().filter(|k| k.cluster_id == cluster_id).cloned().collect();
        for key in ended {
            if let Some(upstream) = upstreams.remove(&key) {
                let _ = upstream.ended.set(format!(
                    "cluster {cluster_id} was changed or removed: subscribe again to watch it as it is now"
                ));
                upstream.task.abort();
                forget_upstream(&self.upstreams_of, &upstream.owner);
            }
        }
    }

    /// Upstream watches alive that `principal` started.
    pub fn upstreams_of(&self, principal: &str) -> usize {
        self.upstreams_of.get(principal).map(|n| *n).unwrap_or(0)
    }
}

impl crate::clusters::ClusterListener for WatchHub {
    fn cluster_changed(&self, id: &str) {
        self.end_cluster(id);
    }
}

/// What an upstream watch sends its subscribers: an event, and whether it belongs to the watch's
/// first list (which announces, as ADDED, what existed before the watch started).
#[derive(Clone, Debug)]
struct Sent {
    event: WatchEvent,
    first_list: bool,
}

struct SubscriberState {
    ended: Arc<std::sync::OnceLock<String>>,
    receiver: broadcast::Receiver<Sent>,
    /// The state to send as ADDED (on subscribing with the initial state, or after a RESYNC)
    /// before the changes that wait in the coalescer: an object's ADDED always precedes its
    /// later changes.
    snapshot: std::vec::IntoIter<Watched>,
    coalescer: Coalescer,
    limiter: DefaultDirectRateLimiter,
    budget: Arc<DefaultDirectRateLimiter>,
    store: Arc<RwLock<WatchState>>,
    held: Arc<AtomicUsize>,
    spare: usize,
    resend_state: bool,
    /// The subscriber joined before the first list was done and did not ask for the initial
    /// state: the first list's events are not for it.
    skip_first_list: bool,
    accept: Box<dyn Fn(WatchEventType) -> bool + Send + Sync>,
    _membership: Membership,
    closed: bool,
}

impl SubscriberState {
    fn take(&mut self, received: Result<Sent, broadcast::error::RecvError>) {
        // Every object the watch holds may wait, plus `spare` more (deleted ones).
        self.coalescer.set_capacity(self.held.load(Ordering::Relaxed) + self.spare);
        match received {
            Ok(Sent { first_list: true, .. }) if self.skip_first_list => {}
            Ok(Sent { event, .. }) => {
                if (self.accept)(event.kind) {
                    self.coalescer.push(event);
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => self.coalescer.resync(),
            Err(broadcast::error::RecvError::Closed) => self.closed = true,
        }
        if self.coalescer.resync_pending() {
            // A RESYNC replaces whatever of the old state was still to be sent.
            self.snapshot = Vec::new().into_iter();
        }
    }

    /// After a RESYNC: the whole current state is to be sent, and nothing received so far (the
    /// state includes it).
    async fn rebuild(&mut self) {
        let state = self.store.read().await;
        // The upstream sends under the store's write lock: all that waits was sent before now.
        loop {
            match self.receiver.try_recv() {
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Closed) => {
                    self.closed = true;
                    break;
                }
            }
        }
        self.coalescer.clear();
        if (self.accept)(WatchEventType::Added) {
            self.snapshot = state.objects().values().cloned().collect::<Vec<_>>().into_iter();
        }
    }

    /// The next event for the subscriber, paced by its rate and its principal's budget: a
    /// RESYNC first, then what is left of the state to send, then the changes.
    async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            // Take everything already waiting, so coalescing sees it before pacing.
            loop {
                match self.receiver.try_recv() {
                    Ok(event) => self.take(Ok(event)),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        self.take(Err(broadcast::error::RecvError::Lagged(n)))
                    }
                    Err(broadcast::error::TryRecvError::Closed) => {
                        self.closed = true;
                        break;
                    }
                }
            }
            if self.coalescer.is_empty() && self.snapshot.len() == 0 {
                if self.closed {
                    return None;
                }
                let received = self.receiver.recv().await;
                self.take(received);
                continue;
            }
            tokio::select! {
                biased;
                _ = async { self.limiter.until_ready().await; self.budget.until_ready().await } => {
                    if self.coalescer.resync_pending() {
                        let event = self.coalescer.pop()?;
                        if self.resend_state {
                            self.rebuild().await;
                        }
                        return Some(event);
                    }
                    if let Some(object) = self.snapshot.next() {
                        if self.snapshot.len() == 0 {
                            // Sent: give its pointers' memory back now, not at the next RESYNC.
                            self.snapshot = Vec::new().into_iter();
                        }
                        return Some(WatchEvent { kind: WatchEventType::Added, object: Some(object) });
                    }
                    return self.coalescer.pop();
                }
                received = self.receiver.recv(), if !self.closed => self.take(received),
            }
        }
    }
}

/// How an upstream watch makes its requests, and where it counts their failures.
struct UpstreamOptions {
    request_secs: u32,
    interruptions: Arc<AtomicU64>,
}

fn start_upstream(
    id: u64,
    owner: &str,
    key: &WatchKey,
    client: kube::Client,
    resource: ApiResource,
    shared: Arc<SharedObjects>,
    options: UpstreamOptions,
) -> Upstream {
    let UpstreamOptions { request_secs, interruptions } = options;
    let (events, _) = broadcast::channel(4096);
    let store: Arc<RwLock<WatchState>> = Arc::default();
    let held = Arc::new(AtomicUsize::new(0));
    let listed = Arc::new(AtomicBool::new(false));
    let mut stream = if key.table {
        let url_path = <DynamicObject as kube::Resource>::url_path(&resource, key.namespace.as_deref());
        let query =
            ListQuery { label_selector: key.label_selector.clone(), field_selector: key.field_selector.clone() };
        table::table_watcher(client, url_path, query, request_secs).map(|item| item.map_err(|e| e.to_string())).boxed()
    } else {
        let api: Api<DynamicObject> = match &key.namespace {
            Some(ns) => Api::namespaced_with(client, ns, &resource),
            None => Api::all_with(client, &resource),
        };
        let mut config = watcher::Config::default().timeout(request_secs);
        if let Some(labels) = &key.label_selector {
            config = config.labels(labels);
        }
        if let Some(fields) = &key.field_selector {
            config = config.fields(fields);
        }
        let scope = format!("{}/{}/{}/{}", key.cluster_id, resource.group, resource.version, resource.kind);
        let hold = move |object| shared.hold(&scope, object);
        watcher(api, config)
            .default_backoff()
            .map(move |item| item.map(|event| state::watched(event, &hold)).map_err(|e| e.to_string()))
            .boxed()
    };
    let task = {
        let (events, store, held, listed) =
            (events.clone(), Arc::clone(&store), Arc::clone(&held), Arc::clone(&listed));
        let what = format!("{}/{} {:?}", key.cluster_id, key.kind, key.namespace);
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(event) => {
                        // Changed and sent under the write lock, so a subscriber's snapshot
                        // (taken under the read lock) neither overlaps nor misses an event.
                        let mut state = store.write().await;
                        let first_list = !state.listed();
                        for event in state.apply(event) {
                            let _ = events.send(Sent { event, first_list });
                        }
                        held.store(state.objects().len(), Ordering::Relaxed);
                        listed.store(state.listed(), Ordering::Relaxed);
                    }
                    Err(err) => {
                        interruptions.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(watch = %what, error = %err, "watch interrupted; resuming")
                    }
                }
            }
        })
    };
    Upstream {
        id,
        owner: owner.to_owned(),
        ended: Default::default(),
        events,
        store,
        held,
        listed,
        subscribers: 0,
        task,
    }
}
