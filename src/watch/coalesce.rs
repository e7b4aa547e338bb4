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

/// An object as a watch holds it: parsed once and shared by every subscriber, with its table
/// row when the watch asked the API server for tables.
#[derive(Debug, Clone)]
pub struct Watched {
    pub object: Arc<DynamicObject>,
    pub row: Option<Arc<TableRow>>,
}

/// A watched object's row of the API server's table, and the table's columns.
#[derive(Debug, PartialEq)]
pub struct TableRow {
    pub columns: Arc<[TableColumn]>,
    pub cells: RowCells,
}

impl std::ops::Deref for Watched {
    type Target = DynamicObject;

    fn deref(&self) -> &DynamicObject {
        &self.object
    }
}

impl From<DynamicObject> for Watched {
    fn from(object: DynamicObject) -> Self {
        Arc::new(object).into()
    }
}

impl From<Arc<DynamicObject>> for Watched {
    fn from(object: Arc<DynamicObject>) -> Self {
        Watched { object, row: None }
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
        let key = object_key(object);
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

    fn object(name: &str, rv: &str) -> Arc<DynamicObject> {
        let mut obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": "ns", "resourceVersion": rv }
        }))
        .unwrap();
        obj.metadata.resource_version = Some(rv.into());
        Arc::new(obj)
    }

    fn event(kind: WatchEventType, name: &str, rv: &str) -> WatchEvent {
        WatchEvent { kind, object: Some(object(name, rv).into()) }
    }

    fn drain(c: &mut Coalescer) -> Vec<(WatchEventType, String)> {
        std::iter::from_fn(|| c.pop())
            .map(|e| (e.kind, e.object.map(|o| o.metadata.resource_version.clone().unwrap()).unwrap_or_default()))
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
