//! Which containers' logs a followed workload or selector has, as its pods come and go: a pure
//! function of the pod watcher's events (as `WatchState` is for watches), so that the rules are
//! tested without a cluster. A container is followed once it has run (its log exists), from the
//! start of its log when it appeared after the first list, or from the subscription's own start
//! (`tailLines`, `sinceSeconds`, ...) when it was there already; a restarted container is
//! followed again; a deleted pod's streams stop.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;

/// Which of a pod's containers are wanted.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// This container only.
    pub container: Option<String>,
    /// Every container (else the pod's default one, as kubectl picks it).
    pub all_containers: bool,
}

/// One container's log, in one run of the container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub pod: String,
    pub container: String,
    /// The container's restart count: a new run is a new stream.
    pub run: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Follow this stream: from the start of its log, or from the subscription's start.
    Start { stream: StreamId, from_beginning: bool },
    /// Stop following it (its pod is gone).
    Stop { stream: StreamId },
}

/// The annotation naming a pod's default container, as kubectl reads it.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

impl Wanted {
    /// The streams of `pod` that exist now (containers that run or have run) and are wanted.
    pub fn streams_of(&self, pod: &Pod) -> Vec<StreamId> {
        let Some(name) = pod.metadata.name.clone() else { return Vec::new() };
        let spec_names: Vec<String> =
            pod.spec.as_ref().map(|s| s.containers.iter().map(|c| c.name.clone()).collect()).unwrap_or_default();
        let wanted: Vec<String> = match (&self.container, self.all_containers) {
            (Some(one), _) => spec_names.into_iter().filter(|n| n == one).collect(),
            (None, true) => spec_names,
            (None, false) => {
                let annotated = pod.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CONTAINER));
                match annotated.filter(|a| spec_names.contains(a)) {
                    Some(default) => vec![default.clone()],
                    None => spec_names.into_iter().take(1).collect(),
                }
            }
        };
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
        wanted
            .into_iter()
            .filter_map(|container| {
                let status = statuses?.iter().find(|s| s.name == container)?;
                let state = status.state.as_ref()?;
                let has_run = state.running.is_some() || state.terminated.is_some();
                has_run.then(|| StreamId { pod: name.clone(), container, run: status.restart_count })
            })
            .collect()
    }
}

/// The streams a subscription follows, kept from the pod watcher's events.
#[derive(Debug, Default)]
pub struct PodTracker {
    wanted: Wanted,
    /// Followed streams, by pod.
    streams: BTreeMap<String, BTreeSet<StreamId>>,
    /// A list in progress: the pods it has read so far.
    relist: Option<Vec<Pod>>,
    listed: bool,
}

impl PodTracker {
    pub fn new(wanted: Wanted) -> PodTracker {
        PodTracker { wanted, ..Default::default() }
    }

    /// Streams followed now.
    pub fn len(&self) -> usize {
        self.streams.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one watcher event; returns what to start and stop, in order.
    pub fn apply(&mut self, event: watcher::Event<Pod>) -> Vec<Change> {
        match event {
            watcher::Event::Init => {
                self.relist = Some(Vec::new());
                Vec::new()
            }
            watcher::Event::InitApply(pod) => {
                if let Some(buffer) = self.relist.as_mut() {
                    buffer.push(pod);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let pods = self.relist.take().unwrap_or_default();
                // Pods of the first list were there before the subscription: they start where it
                // asked; pods a later relist finds are new: they start at their beginning.
                let from_beginning = self.listed;
                self.listed = true;
                let present: BTreeSet<String> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
                let mut changes: Vec<Change> = Vec::new();
                let gone: Vec<String> = self.streams.keys().filter(|p| !present.contains(*p)).cloned().collect();
                for pod in gone {
                    for stream in self.streams.remove(&pod).unwrap_or_default() {
                        changes.push(Change::Stop { stream });
                    }
                }
                for pod in &pods {
                    changes.extend(self.started(pod, from_beginning));
                }
                changes
            }
            watcher::Event::Apply(pod) => self.started(&pod, true),
            watcher::Event::Delete(pod) => {
                let name = pod.metadata.name.unwrap_or_default();
                self.streams
                    .remove(&name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|stream| Change::Stop { stream })
                    .collect()
            }
        }
    }

    fn started(&mut self, pod: &Pod, from_beginning: bool) -> Vec<Change> {
        let mut changes = Vec::new();
        for stream in self.wanted.streams_of(pod) {
            let followed = self.streams.entry(stream.pod.clone()).or_default();
            if followed.insert(stream.clone()) {
                // A later run of a container is new, whatever the subscription asked.
                let earlier_run = followed.iter().any(|s| s.container == stream.container && s.run < stream.run);
                changes.push(Change::Start { stream, from_beginning: from_beginning || earlier_run });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pod with `containers`, each `(name, state, restarts)`; state "running", "terminated" or
    /// "waiting".
    fn pod(name: &str, containers: &[(&str, &str, i32)], default: Option<&str>) -> Pod {
        let annotations = default.map(|d| json!({ DEFAULT_CONTAINER: d })).unwrap_or(json!({}));
        serde_json::from_value(json!({
            "metadata": { "name": name, "annotations": annotations },
            "spec": { "containers": containers.iter().map(|(n, _, _)| json!({ "name": n })).collect::<Vec<_>>() },
            "status": { "containerStatuses": containers.iter().map(|(n, state, restarts)| json!({
                "name": n, "restartCount": restarts, "ready": false, "image": "i", "imageID": "",
                "state": { *state: if *state == "terminated" { json!({ "exitCode": 0 }) } else { json!({}) } }
            })).collect::<Vec<_>>() }
        }))
        .unwrap()
    }

    fn id(pod: &str, container: &str, run: i32) -> StreamId {
        StreamId { pod: pod.into(), container: container.into(), run }
    }

    fn start(pod: &str, container: &str, run: i32, from_beginning: bool) -> Change {
        Change::Start { stream: id(pod, container, run), from_beginning }
    }

    #[test]
    fn the_default_container_is_kubectls_and_only_containers_that_ran_have_logs() {
        let two = pod("p", &[("main", "running", 0), ("sidecar", "running", 0)], None);
        assert_eq!(Wanted::default().streams_of(&two), [id("p", "main", 0)]);
        let annotated = pod("p", &[("main", "running", 0), ("sidecar", "running", 0)], Some("sidecar"));
        assert_eq!(Wanted::default().streams_of(&annotated), [id("p", "sidecar", 0)]);
        let all = Wanted { all_containers: true, ..Default::default() };
        assert_eq!(all.streams_of(&two), [id("p", "main", 0), id("p", "sidecar", 0)]);
        let one = Wanted { container: Some("sidecar".into()), ..Default::default() };
        assert_eq!(one.streams_of(&two), [id("p", "sidecar", 0)]);
        let waiting = pod("p", &[("main", "waiting", 0)], None);
        assert!(Wanted::default().streams_of(&waiting).is_empty());
        let done = pod("p", &[("main", "terminated", 2)], None);
        assert_eq!(Wanted::default().streams_of(&done), [id("p", "main", 2)]);
    }

    #[test]
    fn pods_join_leave_and_restart() {
        let mut tracker = PodTracker::new(Wanted::default());
        assert!(tracker.apply(watcher::Event::Init).is_empty());
        tracker.apply(watcher::Event::InitApply(pod("a", &[("main", "running", 0)], None)));
        tracker.apply(watcher::Event::InitApply(pod("b", &[("main", "waiting", 0)], None)));
        // The first list: what was there starts where the subscription asked.
        assert_eq!(tracker.apply(watcher::Event::InitDone), [start("a", "main", 0, false)]);
        // b starts running later: from the beginning of its log. A repeat says nothing new.
        let b = pod("b", &[("main", "running", 0)], None);
        assert_eq!(tracker.apply(watcher::Event::Apply(b.clone())), [start("b", "main", 0, true)]);
        assert!(tracker.apply(watcher::Event::Apply(b)).is_empty());
        // a's container restarts: its new run is followed from its beginning.
        let restarted = pod("a", &[("main", "running", 1)], None);
        assert_eq!(tracker.apply(watcher::Event::Apply(restarted)), [start("a", "main", 1, true)]);
        assert_eq!(tracker.len(), 3);
        // a is deleted: both of its runs stop.
        let gone = tracker.apply(watcher::Event::Delete(pod("a", &[], None)));
        assert_eq!(gone, [Change::Stop { stream: id("a", "main", 0) }, Change::Stop { stream: id("a", "main", 1) }]);
        // A relist (the watch was interrupted) that no longer has b stops it, and a pod it finds
        // for the first time is new.
        tracker.apply(watcher::Event::Init);
        tracker.apply(watcher::Event::InitApply(pod("c", &[("main", "running", 0)], None)));
        assert_eq!(
            tracker.apply(watcher::Event::InitDone),
            [Change::Stop { stream: id("b", "main", 0) }, start("c", "main", 0, true)]
        );
        assert_eq!(tracker.len(), 1);
    }
}
