//! `ClientCache`: built clients by (cluster, identity), shared across requests.
//!
//! Reads take a shard read lock and a clone of an `Arc`-backed client: no allocation, no database,
//! no decryption. Concurrent misses for one key share a single build (the slot's `OnceCell`).
//! Entries expire after a TTL; the health check evicts clients of clusters that stop answering;
//! cluster updates and deletions invalidate at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::OnceCell;

/// A source of monotonic time, replaceable in tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<Instant>);

impl Default for ManualClock {
    fn default() -> Self {
        Self(std::sync::Mutex::new(Instant::now()))
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whose client: the cluster's own identity, or an identity it impersonates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub cluster_id: String,
    pub identity: Option<String>,
}

impl CacheKey {
    pub fn cluster(cluster_id: impl Into<String>) -> Self {
        Self { cluster_id: cluster_id.into(), identity: None }
    }
}

#[derive(Debug)]
struct Slot<V> {
    born: Instant,
    value: OnceCell<V>,
    /// When it was last asked for, as a tick of the cache's use counter.
    used: AtomicU64,
}

/// Counters, for metrics and tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub builds: AtomicU64,
    pub evictions: AtomicU64,
}

#[derive(Debug)]
pub struct ClientCache<V> {
    slots: DashMap<CacheKey, Arc<Slot<V>>>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    /// Most entries kept; past it the least recently used goes.
    capacity: usize,
    ticks: AtomicU64,
    pub stats: CacheStats,
}

/// Entries a cache keeps unless told otherwise.
pub const DEFAULT_CAPACITY: usize = 1024;

impl<V: Clone> ClientCache<V> {
    pub fn new(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            slots: DashMap::new(),
            ttl,
            clock,
            capacity: DEFAULT_CAPACITY,
            ticks: AtomicU64::new(0),
            stats: CacheStats::default(),
        }
    }

    /// The same cache, keeping at most `capacity` entries (at least one).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    fn tick(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::Relaxed)
    }

    /// Past capacity, drops the least recently used entries other than `keep`.
    fn shrink(&self, keep: &CacheKey) {
        while self.slots.len() > self.capacity {
            let oldest = self
                .slots
                .iter()
                .filter(|e| e.key() != keep)
                .min_by_key(|e| e.value().used.load(Ordering::Relaxed))
                .map(|e| e.key().clone());
            match oldest {
                Some(key) => {
                    self.evict(&key);
                }
                None => break,
            }
        }
    }

    fn fresh(&self, slot: &Slot<V>, now: Instant) -> bool {
        now.saturating_duration_since(slot.born) < self.ttl
    }

    /// The cached value for `key`, if built and not expired.
    pub fn get(&self, key: &CacheKey) -> Option<V> {
        let slot = self.slots.get(key)?;
        if !self.fresh(&slot, self.clock.now()) {
            return None;
        }
        let value = slot.value.get().cloned()?;
        slot.used.store(self.tick(), Ordering::Relaxed);
        Some(value)
    }

    /// The cached value, or the result of `build` — run once however many callers miss together.
    pub async fn get_or_build<F, Fut, E>(&self, key: &CacheKey, build: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.get(key) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let new_slot = || Arc::new(Slot { born: now, value: OnceCell::new(), used: AtomicU64::new(self.tick()) });
        let slot = {
            let mut entry = self.slots.entry(key.clone()).or_insert_with(new_slot);
            if !self.fresh(&entry, now) {
                *entry = new_slot();
            }
            Arc::clone(&entry)
        };
        self.shrink(key);
        let value = slot
            .value
            .get_or_try_init(|| {
                self.stats.builds.fetch_add(1, Ordering::Relaxed);
                build()
            })
            .await?;
        Ok(value.clone())
    }

    /// Drops the entry for one key.
    pub fn evict(&self, key: &CacheKey) -> bool {
        let removed = self.slots.remove(key).is_some();
        if removed {
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Drops every entry of a cluster, whatever the identity.
    pub fn invalidate_cluster(&self, cluster_id: &str) {
        self.slots.retain(|key, _| {
            let keep = key.cluster_id != cluster_id;
            if !keep {
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
            keep
        });
    }

    /// Drops every entry.
    pub fn invalidate_all(&self) {
        let dropped = self.slots.len() as u64;
        self.slots.clear();
        self.stats.evictions.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Drops expired entries (so a cluster no one asks for does not hold a client forever).
    pub fn purge_expired(&self) {
        let now = self.clock.now();
        self.slots.retain(|_, slot| now.saturating_duration_since(slot.born) < self.ttl);
    }

    /// The built entries: key and value.
    pub fn entries(&self) -> Vec<(CacheKey, V)> {
        self.slots.iter().filter_map(|e| e.value().value.get().map(|v| (e.key().clone(), v.clone()))).collect()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

impl<C: Clone + Send + Sync + 'static> crate::clusters::ClusterListener for ClientCache<C> {
    fn cluster_changed(&self, id: &str) {
        self.invalidate_cluster(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn cache(clock: Arc<ManualClock>) -> ClientCache<u32> {
        ClientCache::new(Duration::from_secs(60), clock)
    }

    #[tokio::test]
    async fn hit_after_build_and_expiry_after_ttl() {
        let clock = Arc::new(ManualClock::default());
        let cache = cache(clock.clone());
        let key = CacheKey::cluster("a");
        let built = AtomicUsize::new(0);
        let build = || async {
            built.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(7)
        };
        assert_eq!(cache.get_or_build(&key, build).await, Ok(7));
        assert_eq!(cache.get_or_build(&key, build).await, Ok(7));
        assert_eq!(built.load(Ordering::SeqCst), 1, "second call is a hit");
        clock.advance(Duration::from_secs(59));
        assert_eq!(cache.get(&key), Some(7));
        clock.advance(Duration::from_secs(1));
        assert_eq!(cache.get(&key), None, "expired at the TTL");
        assert_eq!(cache.get_or_build(&key, build).await, Ok(7));
        assert_eq!(built.load(Ordering::SeqCst), 2, "rebuilt after expiry");
        clock.advance(Duration::from_secs(61));
        cache.purge_expired();
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn past_capacity_the_least_recently_used_goes() {
        let cache = cache(Arc::new(ManualClock::default())).with_capacity(3);
        let key = |user: &str| CacheKey { cluster_id: "c".into(), identity: Some(user.into()) };
        for (i, user) in ["a", "b", "c"].into_iter().enumerate() {
            cache.get_or_build(&key(user), || async move { Ok::<_, ()>(i as u32) }).await.unwrap();
        }
        assert_eq!(cache.get(&key("a")), Some(0), "a is used again: b is now the oldest");
        cache.get_or_build(&key("d"), || async { Ok::<_, ()>(3) }).await.unwrap();
        assert_eq!(cache.len(), 3, "at capacity, not past it");
        assert_eq!(cache.get(&key("b")), None, "the least recently used went");
        for user in ["a", "c", "d"] {
            assert!(cache.get(&key(user)).is_some(), "{user} stays");
        }
        // A stream of new identities never grows it.
        for i in 0..100 {
            cache.get_or_build(&key(&format!("u{i}")), || async { Ok::<_, ()>(9) }).await.unwrap();
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.stats.evictions.load(Ordering::Relaxed) >= 101);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_build_once() {
        let cache = Arc::new(cache(Arc::new(ManualClock::default())));
        let built = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, built, gate) = (cache.clone(), built.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_build(&CacheKey::cluster("a"), || async move {
                        built.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok::<_, ()>(1)
                    })
                    .await
            }));
        }
        // Let every task reach the slot, then release the one build.
        while cache.stats.misses.load(Ordering::SeqCst) < 16 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(1));
        }
        assert_eq!(built.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failed_builds_are_not_cached() {
        let cache = cache(Arc::new(ManualClock::default()));
        let key = CacheKey::cluster("a");
        assert_eq!(cache.get_or_build(&key, || async { Err::<u32, _>("down") }).await, Err("down"));
        assert_eq!(cache.get_or_build(&key, || async { Ok::<_, &str>(3) }).await, Ok(3));
    }

    #[tokio::test]
    async fn invalidation_and_eviction() {
        let cache = cache(Arc::new(ManualClock::default()));
        let own = CacheKey::cluster("a");
        let as_user = CacheKey { cluster_id: "a".into(), identity: Some("user:jane".into()) };
        let other = CacheKey::cluster("b");
        for key in [&own, &as_user, &other] {
            cache.get_or_build(key, || async { Ok::<_, ()>(1) }).await.unwrap();
        }
        cache.invalidate_cluster("a");
        assert_eq!((cache.get(&own), cache.get(&as_user), cache.get(&other)), (None, None, Some(1)));
        assert!(cache.evict(&other));
        assert!(!cache.evict(&other));
        assert!(cache.is_empty());
        assert_eq!(cache.stats.evictions.load(Ordering::SeqCst), 3);
    }
}
