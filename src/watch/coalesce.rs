//! Per-subscriber coalescing: when a subscriber is slower than its events, only the latest state
//! of each object waits to be sent, so the queue is bounded by the number of objects, not events.
//! A DELETE is never dropped and never followed by a stale MODIFIED; past the capacity the queue
//! is cleared and the subscriber gets a RESYNC.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use kube::api::DynamicObject;

use crate::resources::table::{RowCells, TableColumn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    /// The subscriber's view was rebuilt: refetch (or take the ADDED events that follow when the
    /// subscription asked for the initial state).
    Resync,
}

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: WatchEventType,
    pub object: Option<Watched>,
}

/// An object as a watch holds it: its JSON (compact, without `managedFields`, LZ4-compressed:
/// a pod's 2.3 KB take about 0.8), its key and its resource version, with its table row when the watch asked the API server for tables. A watch
/// of 30,000 pods holds 30,000 of these, however many subscribers share it, and a subscriber's
/// queue and snapshot hold pointers to them. The object is parsed again only when a subscriber
/// reads it, and the parsed form is shared by every reader of the moment (it goes when the last
/// one is done with it): held parsed, an object takes several times its JSON.
#[derive(Debug, Clone)]
pub struct Watched(Arc<Held>);

#[derive(Debug)]
struct Held {
    key: ObjectKey,
    version: Option<Box<str>>,
    json: Box<[u8]>,
    row: Option<Arc<TableRow>>,
    parsed: std::sync::Mutex<std::sync::Weak<DynamicObject>>,
}

/// A watched object's row of the API server's table, and the table's columns.
#[derive(Debug, PartialEq)]
pub struct TableRow {
    pub columns: Arc<[TableColumn]>,
    pub cells: RowCells,
}

impl Watched {
    /// Holds `object` (and its row). Its `managedFields` are left out: subscriptions serve
    /// objects as `kubectl get -w -o yaml` shows them.
    pub fn new(mut object: DynamicObject, row: Option<Arc<TableRow>>) -> Self {
        object.metadata.managed_fields = None;
        let key = object_key(&object);
        let version = object.metadata.resource_version.as_deref().map(Box::from);
        // A DynamicObject is metadata and a JSON value: writing it as JSON cannot fail.
        let json = serde_json::to_vec(&object).unwrap_or_default();
        let json = lz4_flex::block::compress_prepend_size(&json).into_boxed_slice();
        let parsed = std::sync::Mutex::new(std::sync::Weak::new());
        Watched(Arc::new(Held { key, version, json, row, parsed }))
    }

    /// (namespace, name).
    pub fn key(&self) -> &ObjectKey {
        &self.0.key
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.0.version.as_deref()
    }

    pub fn row(&self) -> Option<&Arc<TableRow>> {
        self.0.row.as_ref()
    }

    /// The object, parsed from what is held (or shared with whoever else reads it now).
    pub fn object(&self) -> Arc<DynamicObject> {
        let mut parsed = self.0.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(object) = parsed.upgrade() {
            return object;
        }
        // Written above by serde_json from a DynamicObject: it reads back. Should it not, the
        // reader gets the key alone rather than a panic.
        let json = lz4_flex::block::decompress_size_prepended(&self.0.json).unwrap_or_default();
        let object = Arc::new(serde_json::from_slice(&json).unwrap_or_else(|_| {
            let mut empty = DynamicObject { types: None, metadata: Default::default(), data: serde_json::Value::Null };
            empty.metadata.namespace = Some(self.0.key.0.clone()).filter(|ns| !ns.is_empty());
            empty.metadata.name = Some(self.0.key.1.clone());
            empty
        }));
        *parsed = Arc::downgrade(&object);
        object
    }

    /// The bytes held for the object (compressed).
    pub fn held_bytes(&self) -> usize {
        self.0.json.len()
    }
}

impl From<DynamicObject> for Watched {
    fn from(object: DynamicObject) -> Self {
        Watched::new(object, None)
    }
}

/// The objects that several watches of one cluster hold at once (watches of the same kind with
/// different selectors, namespaces or identities see the same objects): each version of an
/// object is held once, found by (cluster, group, version, kind, uid, resourceVersion). Only
/// what some watch holds stays; the table forgets the rest as it grows. Sharing is by content,
/// so a watch only ever holds objects its own list or watch returned.
#[derive(Debug, Default)]
pub struct SharedObjects {
    held: std::sync::Mutex<SharedTable>,
}

#[derive(Debug, Default)]
struct SharedTable {
    by_version: HashMap<String, std::sync::Weak<Held>>,
    /// Entries after the last sweep of forgotten ones.
    swept: usize,
}

impl SharedObjects {
    /// The held form of `object` as watched in `scope` (cluster, group, version and kind):
    /// the one another watch holds already, or a new one.
    pub fn hold(&self, scope: &str, object: DynamicObject) -> Watched {
        let (Some(uid), Some(version)) = (object.metadata.uid.as_deref(), object.metadata.resource_version.as_deref())
        else {
            return Watched::new(object, None);
        };
        let key = format!("{scope}\0{uid}\0{version}");
        let mut table = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = table.by_version.get(&key).and_then(std::sync::Weak::upgrade) {
            return Watched(held);
        }
        let watched = Watched::new(object, None);
        table.by_version.insert(key, Arc::downgrade(&watched.0));
        if table.by_version.len() >= table.swept * 2 + 1024 {
            table.by_version.retain(|_, held| held.strong_count() > 0);
            table.swept = table.by_version.len();
        }
        watched
    }

    /// Versions of objects remembered (some perhaps no longer held by any watch).
    pub fn len(&self) -> usize {
        self.held.lock().map(|t| t.by_version.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// (namespace, name): what identifies an object within one watch.
pub type ObjectKey = (String, String);

pub fn object_key(object: &DynamicObject) -> ObjectKey {
    (object.metadata.namespace.clone().unwrap_or_default(), object.metadata.name.clone().unwrap_or_default())
}

#[derive(Debug)]
pub struct Coalescer {
    order: VecDeque<ObjectKey>,
    pending: HashMap<ObjectKey, Vec<WatchEvent>>,
    capacity: usize,
    resync: bool,
}

impl Coalescer {
    pub fn new(capacity: usize) -> Self {
        Self { order: VecDeque::new(), pending: HashMap::new(), capacity: capacity.max(1), resync: false }
    }

    /// Objects that may wait before a RESYNC replaces them.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    pub fn is_empty(&self) -> bool {
        !self.resync && self.pending.is_empty()
    }

    /// Objects waiting to be sent.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether a RESYNC is the next event out.
    pub fn resync_pending(&self) -> bool {
        self.resync
    }

    /// Drops everything queued (the subscriber is about to get the whole current state).
    pub fn clear(&mut self) {
        self.order.clear();
        self.pending.clear();
    }

    /// Drops everything queued; the next event out is a RESYNC.
    pub fn resync(&mut self) {
        self.order.clear();
        self.pending.clear();
        self.resync = true;
    }

    pub fn push(&mut self, event: WatchEvent) {
        let Some(object) = event.object.as_ref() else {
            self.resync();
            return;
        };
        let key = object.key().clone();
        match self.pending.get_mut(&key) {
            None => {
                if self.pending.len() >= self.capacity {
                    self.resync();
                    return;
                }
                self.order.push_back(key.clone());
                self.pending.insert(key, vec![event]);
            }
            Some(queued) => merge(queued, event),
        }
    }

    pub fn pop(&mut self) -> Option<WatchEvent> {
        if self.resync {
            self.resync = false;
            return Some(WatchEvent { kind: WatchEventType::Resync, object: None });
        }
        loop {
            let key = self.order.pop_front()?;
            let Some(queued) = self.pending.get_mut(&key) else { continue };
            let event = queued.remove(0);
            if queued.is_empty() {
                self.pending.remove(&key);
            } else {
                // A re-created object: its ADDED goes after the DELETE, in turn.
                self.order.push_front(key);
            }
            return Some(event);
        }
    }
}

/// Folds a new event into what is queued for the same object (at most two events: a DELETE and
/// the ADDED of a re-created object).
fn merge(queued: &mut Vec<WatchEvent>, event: WatchEvent) {
    use WatchEventType::*;
    let last = queued.last_mut().expect("never empty");
    match (last.kind, event.kind) {
        // A re-creation after a delete: keep the delete, then the new object.
        (Deleted, Added) | (Deleted, Modified) => {
            if queued.len() == 1 {
                queued.push(WatchEvent { kind: Added, object: event.object });
            } else {
                queued[1] = WatchEvent { kind: Added, object: event.object };
            }
        }
        // The subscriber has not seen the object yet: it is still new to it.
        (Added, Modified) => last.object = event.object,
        (_, Deleted) => *last = event,
        _ => *last = event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, rv: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": "ns", "resourceVersion": rv }
        }))
        .unwrap()
    }

    fn event(kind: WatchEventType, name: &str, rv: &str) -> WatchEvent {
        WatchEvent { kind, object: Some(object(name, rv).into()) }
    }

    fn drain(c: &mut Coalescer) -> Vec<(WatchEventType, String)> {
        std::iter::from_fn(|| c.pop())
            .map(|e| (e.kind, e.object.map(|o| o.resource_version().unwrap().to_owned()).unwrap_or_default()))
            .collect()
    }

    #[test]
    fn latest_state_wins_and_order_is_kept() {
        use WatchEventType::*;
        let mut c = Coalescer::new(100);
        c.push(event(Added, "a", "1"));
        c.push(event(Modified, "b", "2"));
        c.push(event(Modified, "a", "3"));
        c.push(event(Modified, "b", "4"));
        assert_eq!(drain(&mut c), vec![(Added, "3".into()), (Modified, "4".into())]);
    }

    #[test]
    fn deletes_are_never_dropped_nor_followed_by_stale_state() {
        use WatchEventType::*;
        let mut c = Coalescer::new(100);
        c.push(event(Modified, "a", "1"));
        c.push(event(Deleted, "a", "2"));
        assert_eq!(drain(&mut c), vec![(Deleted, "2".into())]);
        c.push(event(Deleted, "a", "3"));
        c.push(event(Added, "a", "4"));
        c.push(event(Modified, "a", "5"));
        assert_eq!(drain(&mut c), vec![(Deleted, "3".into()), (Added, "5".into())]);
        c.push(event(Added, "a", "6"));
        c.push(event(Deleted, "a", "7"));
        assert_eq!(drain(&mut c), vec![(Deleted, "7".into())]);
    }

    #[test]
    fn a_held_object_reads_back_without_managed_fields_and_readers_share_one_parse() {
        let mut with_fields = object("a", "7");
        with_fields.data = serde_json::json!({ "data": { "k": "v" } });
        with_fields.metadata.managed_fields = Some(vec![Default::default()]);
        let held = Watched::from(with_fields.clone());
        let read = held.object();
        with_fields.metadata.managed_fields = None;
        assert_eq!(*read, with_fields);
        assert_eq!(held.key(), &("ns".to_owned(), "a".to_owned()));
        assert_eq!(held.resource_version(), Some("7"));
        assert!(Arc::ptr_eq(&read, &held.clone().object()), "a second reader shares the first one's parse");
        drop(read);
        assert_eq!(*held.object(), with_fields, "parsed again once nobody holds it");
        let mut big = object("b", "1");
        big.data = serde_json::json!({ "data": { "k": "repeated text ".repeat(200) } });
        let size = serde_json::to_vec(&big).unwrap().len();
        let held = Watched::from(big.clone());
        assert!(held.held_bytes() * 4 < size, "held compressed: {} of {size} bytes", held.held_bytes());
        assert_eq!(*held.object(), big);
    }

    #[test]
    fn watches_of_one_cluster_share_each_version_of_an_object() {
        let shared = SharedObjects::default();
        let mut a = object("a", "1");
        a.metadata.uid = Some("u1".into());
        let first = shared.hold("c/v1/ConfigMap", a.clone());
        let second = shared.hold("c/v1/ConfigMap", a.clone());
        assert!(Arc::ptr_eq(&first.0, &second.0), "one held copy for two watches");
        let other_kind = shared.hold("c/v1/Secret", a.clone());
        assert!(!Arc::ptr_eq(&first.0, &other_kind.0), "another scope holds its own");
        a.metadata.resource_version = Some("2".into());
        let newer = shared.hold("c/v1/ConfigMap", a.clone());
        assert!(!Arc::ptr_eq(&first.0, &newer.0), "another version is another object");
        drop((first, second));
        let again = shared.hold("c/v1/ConfigMap", object_with_uid("a", "1", "u1"));
        assert_eq!(Arc::strong_count(&again.0), 1, "forgotten once no watch held it");
        // The table sweeps what no watch holds as it grows.
        for i in 0..5000 {
            shared.hold("c/v1/ConfigMap", object_with_uid("x", &i.to_string(), "u2"));
        }
        assert!(shared.len() < 3000, "{} entries", shared.len());
    }

    fn object_with_uid(name: &str, rv: &str, uid: &str) -> DynamicObject {
        let mut object = object(name, rv);
        object.metadata.uid = Some(uid.into());
        object
    }

    #[test]
    fn overflow_becomes_a_resync() {
        use WatchEventType::*;
        let mut c = Coalescer::new(2);
        c.push(event(Added, "a", "1"));
        c.push(event(Added, "b", "2"));
        c.push(event(Modified, "a", "3"));
        assert_eq!(c.len(), 2, "the same objects fit");
        c.push(event(Added, "c", "4"));
        assert_eq!(drain(&mut c), vec![(Resync, String::new())]);
        assert!(c.is_empty());
    }
}
