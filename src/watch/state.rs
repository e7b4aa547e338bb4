//! `WatchState`: the objects one upstream watch holds, kept as a pure function of the watcher's
//! events (kube-runtime's reflector store is the model), and the events each one means for the
//! subscribers. A relist is buffered until it is complete and then compared with what was held,
//! so subscribers get only the differences: a DELETED for what vanished meanwhile, nothing for
//! what did not change.

use std::collections::HashMap;

use kube::api::DynamicObject;
use kube::runtime::watcher;

use super::coalesce::{ObjectKey, WatchEvent, WatchEventType, Watched};

pub type Objects = HashMap<ObjectKey, Watched>;

#[derive(Debug, Default)]
pub struct WatchState {
    objects: Objects,
    /// A relist in progress: what it has read so far.
    relist: Option<Objects>,
    /// Whether the first list is complete (before it, the watch knows nothing yet).
    listed: bool,
}

impl WatchState {
    /// What the watch holds now (a relist in progress does not count until it is done).
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Whether the first list is complete. The events of the first list announce what existed
    /// before the watch started: a subscriber that did not ask for the initial state skips them.
    pub fn listed(&self) -> bool {
        self.listed
    }

    /// Applies one watcher event and returns the events it means for subscribers, in order.
    pub fn apply(&mut self, event: watcher::Event<Watched>) -> Vec<WatchEvent> {
        let event_for = |kind, object: &Watched| WatchEvent { kind, object: Some(object.clone()) };
        match event {
            watcher::Event::Init => {
                self.relist = Some(Objects::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                if let Some(buffer) = self.relist.as_mut() {
                    buffer.insert(object.key().clone(), object);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let fresh = self.relist.take().unwrap_or_default();
                let mut events: Vec<WatchEvent> = self
                    .objects
                    .iter()
                    .filter(|(key, _)| !fresh.contains_key(*key))
                    .map(|(_, old)| event_for(WatchEventType::Deleted, old))
                    .collect();
                for (key, new) in &fresh {
                    match self.objects.get(key) {
                        None => events.push(event_for(WatchEventType::Added, new)),
                        Some(old) if old.resource_version() != new.resource_version() => {
                            events.push(event_for(WatchEventType::Modified, new))
                        }
                        Some(_) => {}
                    }
                }
                self.objects = fresh;
                self.listed = true;
                events
            }
            watcher::Event::Apply(object) => {
                let kind = match self.objects.insert(object.key().clone(), object.clone()) {
                    None => WatchEventType::Added,
                    Some(old) if old.resource_version() == object.resource_version() => {
                        return Vec::new();
                    }
                    Some(_) => WatchEventType::Modified,
                };
                vec![event_for(kind, &object)]
            }
            watcher::Event::Delete(object) => {
                self.objects.remove(object.key());
                vec![event_for(WatchEventType::Deleted, &object)]
            }
        }
    }
}

/// A watcher's event over objects, as one over held objects (`hold` makes or finds each).
pub fn watched(
    event: watcher::Event<DynamicObject>,
    hold: impl Fn(DynamicObject) -> Watched,
) -> watcher::Event<Watched> {
    match event {
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(hold(object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
        watcher::Event::Apply(object) => watcher::Event::Apply(hold(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(hold(object)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, version: &str) -> Watched {
        serde_json::from_value::<DynamicObject>(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": "ns", "resourceVersion": version }
        }))
        .unwrap()
        .into()
    }

    /// The events as (type, name, resourceVersion), sorted: a relist's order is the map's.
    fn seen(events: Vec<WatchEvent>) -> Vec<(WatchEventType, String, String)> {
        let mut seen: Vec<_> = events
            .into_iter()
            .map(|e| {
                let object = e.object.as_ref().unwrap();
                (e.kind, object.key().1.clone(), object.resource_version().unwrap().to_owned())
            })
            .collect();
        seen.sort_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)));
        seen
    }

    fn names(state: &WatchState) -> Vec<String> {
        let mut names: Vec<String> = state.objects().keys().map(|(_, name)| name.clone()).collect();
        names.sort();
        names
    }

    #[test]
    fn changes_as_they_come() {
        let mut state = WatchState::default();
        assert_eq!(
            seen(state.apply(watcher::Event::Apply(object("a", "1")))),
            [(WatchEventType::Added, "a".into(), "1".into())]
        );
        assert!(state.apply(watcher::Event::Apply(object("a", "1"))).is_empty(), "the same version again says nothing");
        assert_eq!(
            seen(state.apply(watcher::Event::Apply(object("a", "2")))),
            [(WatchEventType::Modified, "a".into(), "2".into())]
        );
        assert_eq!(
            seen(state.apply(watcher::Event::Delete(object("a", "3")))),
            [(WatchEventType::Deleted, "a".into(), "3".into())]
        );
        assert!(state.objects().is_empty());
    }

    #[test]
    fn a_relist_sends_only_the_differences_once_it_is_complete() {
        let mut state = WatchState::default();
        for (name, version) in [("kept", "1"), ("changed", "1"), ("gone", "1")] {
            state.apply(watcher::Event::Apply(object(name, version)));
        }
        assert!(state.apply(watcher::Event::Init).is_empty());
        for (name, version) in [("kept", "1"), ("changed", "2"), ("new", "1")] {
            assert!(state.apply(watcher::Event::InitApply(object(name, version))).is_empty());
        }
        assert_eq!(names(&state), ["changed", "gone", "kept"], "a relist in progress does not change what is held");
        assert_eq!(
            seen(state.apply(watcher::Event::InitDone)),
            [
                (WatchEventType::Modified, "changed".into(), "2".into()),
                (WatchEventType::Deleted, "gone".into(), "1".into()),
                (WatchEventType::Added, "new".into(), "1".into()),
            ]
        );
        assert_eq!(names(&state), ["changed", "kept", "new"]);
    }

    #[test]
    fn the_first_list_adds_everything_and_an_empty_relist_deletes_everything() {
        let mut state = WatchState::default();
        state.apply(watcher::Event::Init);
        state.apply(watcher::Event::InitApply(object("a", "1")));
        state.apply(watcher::Event::InitApply(object("b", "1")));
        assert!(!state.listed(), "nothing is listed before the first list is done");
        let added = seen(state.apply(watcher::Event::InitDone));
        assert!(added.iter().all(|(kind, ..)| *kind == WatchEventType::Added) && added.len() == 2, "{added:?}");
        assert!(state.listed());
        state.apply(watcher::Event::Init);
        let deleted = seen(state.apply(watcher::Event::InitDone));
        assert!(deleted.iter().all(|(kind, ..)| *kind == WatchEventType::Deleted) && deleted.len() == 2, "{deleted:?}");
        assert!(state.objects().is_empty());
    }
}
