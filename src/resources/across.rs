//! One list of a kind over several clusters, merged into one stable order (namespace, name, then
//! the cluster's name) and paged with one position per cluster.
//!
//! Kubernetes pages by continue token, after whole pages. A merged page takes from each cluster
//! only the items that fall within it, so a cluster's position is a start (the list at the
//! exact resourceVersion of its first page, or a continue token) and how many items of that
//! start were already taken. A cluster that has taken as many as a page holds is realigned
//! first (one list of exactly those items gives the token after them), so no read grows beyond
//! two pages. Every read of a position is at the resourceVersion of its first page, so pages
//! neither skip nor repeat an object, as one cluster's continue tokens do not.
//!
//! Clusters are read concurrently, a bounded number at once, under one deadline: a cluster that
//! fails or is late gives its own error and keeps its position (it is tried again on the next
//! page), while the others answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};

use super::{ListQuery, RawObject, ResourceService};
use crate::access::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::store::clusters::ClusterRow;

/// Where a cluster's list stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "lowercase")]
pub enum Position {
    /// Nothing read yet.
    Start,
    /// `skip` items taken of the list at this exact resourceVersion (a first page).
    Version { rv: String, skip: u32 },
    /// `skip` items taken of the list this continue token goes on with.
    Token { token: String, skip: u32 },
    /// Read to its end.
    Done,
}

/// Where a list read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFrom {
    /// A new list, at the latest resourceVersion.
    Latest,
    /// The list at this exact resourceVersion.
    Exact(String),
    /// Where a continue token says.
    Continue(String),
}

/// How a fan-out is bounded.
#[derive(Debug, Clone, Copy)]
pub struct FanOut {
    /// Clusters read at once.
    pub concurrency: usize,
    /// How long all of them together may take.
    pub deadline: Duration,
}

/// What the query asks of each cluster.
#[derive(Debug, Clone)]
pub struct KindQuery {
    pub group: String,
    pub version: Option<String>,
    pub kind: String,
    pub namespace: Option<String>,
    pub query: ListQuery,
    pub metadata_only: bool,
}

/// A cluster's part of a merged page.
#[derive(Debug)]
pub struct ClusterPart {
    pub cluster_id: String,
    pub cluster_name: String,
    /// The kind as this cluster serves it (its preferred version may differ from another's).
    pub resource: Option<ApiResource>,
    /// Items of this page from this cluster.
    pub items: usize,
    /// Where the cluster stands after this page.
    pub position: Position,
    /// Why this cluster did not answer (it keeps its position).
    pub error: Option<ApiError>,
}

/// One merged page.
#[derive(Debug)]
pub struct AcrossPage {
    /// (index into `clusters`, object), in the merged order.
    pub items: Vec<(usize, RawObject)>,
    pub clusters: Vec<ClusterPart>,
}

impl AcrossPage {
    /// Whether any cluster has more to read (one that failed included: it is tried again).
    pub fn has_next(&self) -> bool {
        self.clusters.iter().any(|c| c.position != Position::Done)
    }
}

/// A cluster to read, or why it cannot be.
pub type SpanCluster = Result<Arc<ClusterRow>, (String, ApiError)>;

/// The order of the merge: namespace, name, then the cluster's name and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SortKey {
    namespace: String,
    name: String,
}

fn sort_key(raw: &RawObject) -> SortKey {
    #[derive(Deserialize, Default)]
    struct Meta {
        #[serde(default)]
        namespace: Option<String>,
        #[serde(default)]
        name: Option<String>,
    }
    #[derive(Deserialize)]
    struct Object {
        #[serde(default)]
        metadata: Meta,
    }
    let meta = match raw.metadata_members() {
        Some(members) => Meta::deserialize(super::raw::members_deserializer(members)).unwrap_or_default(),
        None => serde_json::from_str::<Object>(raw.get()).map(|o| o.metadata).unwrap_or_default(),
    };
    SortKey { namespace: meta.namespace.unwrap_or_default(), name: meta.name.unwrap_or_default() }
}

/// What one cluster gave for a page: the candidates after what was taken, and how to go on.
struct Candidates {
    resource: ApiResource,
    items: Vec<(SortKey, RawObject)>,
    /// The start the candidates were read from, and how many items of it precede them.
    start: Position,
    /// The continue token after the candidates, if the list goes on.
    next: Option<String>,
}

impl ResourceService {
    /// One merged page of `size` items over `clusters`, each from its position.
    pub async fn list_across(
        &self,
        caller: &Caller,
        clusters: Vec<SpanCluster>,
        kind: &KindQuery,
        size: u32,
        positions: &BTreeMap<String, Position>,
        fan: FanOut,
    ) -> AcrossPage {
        let deadline = tokio::time::Instant::now() + fan.deadline;
        let mut reads = Vec::with_capacity(clusters.len());
        for (i, cluster) in clusters.iter().enumerate() {
            let Ok(row) = cluster else { continue };
            let position = positions.get(&row.id).cloned().unwrap_or(Position::Start);
            let id = row.id.clone();
            reads.push(async move { (i, self.candidates(caller, &id, kind, size, position).await) });
        }
        let mut reads = futures_util::stream::iter(reads).buffer_unordered(fan.concurrency.max(1));
        let mut answers: Vec<Option<Result<Candidates, ApiError>>> = clusters.iter().map(|_| None).collect();
        while let Ok(Some((i, answer))) = tokio::time::timeout_at(deadline, reads.next()).await {
            answers[i] = Some(answer);
        }
        drop(reads);

        // Merge: the `size` smallest candidates of all clusters.
        let mut merged: Vec<(SortKey, String, usize, usize)> = Vec::new();
        for (i, answer) in answers.iter().enumerate() {
            if let (Some(Ok(candidates)), Ok(row)) = (answer, &clusters[i]) {
                let keys = candidates.items.iter().enumerate();
                merged.extend(keys.map(|(j, (key, _))| (key.clone(), row.name.clone(), i, j)));
            }
        }
        merged.sort();
        merged.truncate(size as usize);
        let mut taken = vec![0usize; clusters.len()];
        for (_, _, i, _) in &merged {
            taken[*i] += 1;
        }

        let mut parts = Vec::with_capacity(clusters.len());
        let mut objects: Vec<Vec<Option<RawObject>>> = Vec::with_capacity(clusters.len());
        for ((i, cluster), answer) in clusters.into_iter().enumerate().zip(answers) {
            let (id, name, outcome) = match cluster {
                Ok(row) => {
                    let late = || {
                        let secs = fan.deadline.as_secs_f64();
                        let message = format!("cluster {} did not answer within {secs}s", row.name);
                        Err(ApiError::new(ErrorCode::ClusterUnreachable, message))
                    };
                    (row.id.clone(), row.name.clone(), answer.unwrap_or_else(late))
                }
                Err((id, error)) => (id, String::new(), Err(error)),
            };
            let before = positions.get(&id).cloned().unwrap_or(Position::Start);
            match outcome {
                Ok(candidates) => {
                    let count = candidates.items.len();
                    let position = advance(&candidates, taken[i]);
                    objects.push(candidates.items.into_iter().map(|(_, raw)| Some(raw)).collect());
                    let part = ClusterPart {
                        cluster_id: id,
                        cluster_name: name,
                        resource: Some(candidates.resource),
                        items: taken[i].min(count),
                        position,
                        error: None,
                    };
                    parts.push(part);
                }
                Err(error) => {
                    objects.push(Vec::new());
                    let part = ClusterPart {
                        cluster_id: id,
                        cluster_name: name,
                        resource: None,
                        items: 0,
                        position: before,
                        error: Some(error),
                    };
                    parts.push(part);
                }
            }
        }
        let items = merged.into_iter().filter_map(|(_, _, i, j)| Some((i, objects[i][j].take()?))).collect();
        AcrossPage { items, clusters: parts }
    }

    /// A cluster's candidates for the next page: up to `size` items after its position.
    async fn candidates(
        &self,
        caller: &Caller,
        cluster_id: &str,
        kind: &KindQuery,
        size: u32,
        position: Position,
    ) -> Result<Candidates, ApiError> {
        let target = self
            .target(caller, cluster_id, &kind.group, kind.version.as_deref(), &kind.kind, kind.namespace.clone())
            .await?;
        let list = |limit: u32, from: ListFrom| target.list_from(&kind.query, limit, from, kind.metadata_only);
        let (mut start, skip) = match position {
            Position::Done => {
                return Ok(Candidates {
                    resource: target.resource.clone(),
                    items: Vec::new(),
                    start: Position::Done,
                    next: None,
                });
            }
            Position::Start => {
                let page = list(size, ListFrom::Latest).await?;
                let rv = page.resource_version.clone().unwrap_or_default();
                let items = page.items.into_iter().map(|raw| (sort_key(&raw), raw)).collect();
                return Ok(Candidates {
                    resource: target.resource.clone(),
                    items,
                    start: Position::Version { rv, skip: 0 },
                    next: page.continue_token,
                });
            }
            Position::Version { rv, skip } => (ListFrom::Exact(rv), skip),
            Position::Token { token, skip } => (ListFrom::Continue(token), skip),
        };
        let mut skip = skip;
        if skip >= size {
            // Realign: the token just after the items already taken.
            let taken = list(skip, start.clone()).await?;
            match taken.continue_token {
                Some(token) => start = ListFrom::Continue(token),
                None => {
                    return Ok(Candidates {
                        resource: target.resource.clone(),
                        items: Vec::new(),
                        start: Position::Done,
                        next: None,
                    });
                }
            }
            skip = 0;
        }
        let page = list(skip + size, start.clone()).await?;
        let items = page.items.into_iter().skip(skip as usize).map(|raw| (sort_key(&raw), raw)).collect();
        let start = match start {
            ListFrom::Exact(rv) => Position::Version { rv, skip },
            ListFrom::Continue(token) => Position::Token { token, skip },
            ListFrom::Latest => Position::Start,
        };
        Ok(Candidates { resource: target.resource.clone(), items, start, next: page.continue_token })
    }
}

/// Where a cluster stands once `taken` of its candidates are on the page.
fn advance(candidates: &Candidates, taken: usize) -> Position {
    let taken = taken.min(candidates.items.len());
    if taken == candidates.items.len() {
        // Every candidate is on the page: go on after them, or stop.
        return match (&candidates.start, &candidates.next) {
            (Position::Done, _) | (_, None) => Position::Done,
            (_, Some(token)) => Position::Token { token: token.clone(), skip: 0 },
        };
    }
    match &candidates.start {
        Position::Version { rv, skip } => Position::Version { rv: rv.clone(), skip: skip + taken as u32 },
        Position::Token { token, skip } => Position::Token { token: token.clone(), skip: skip + taken as u32 },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(namespace: &str, name: &str) -> RawObject {
        RawObject::from_json(&serde_json::json!({ "metadata": { "namespace": namespace, "name": name } }).to_string())
            .unwrap()
    }

    fn candidates(start: Position, names: &[&str], next: Option<&str>) -> Candidates {
        Candidates {
            resource: ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
            items: names.iter().map(|n| (sort_key(&raw("ns", n)), raw("ns", n))).collect(),
            start,
            next: next.map(str::to_owned),
        }
    }

    #[test]
    fn the_sort_key_is_namespace_then_name() {
        let mut keys = [sort_key(&raw("b", "a")), sort_key(&raw("a", "z")), sort_key(&raw("a", "b"))];
        keys.sort();
        let names: Vec<_> = keys.iter().map(|k| format!("{}/{}", k.namespace, k.name)).collect();
        assert_eq!(names, ["a/b", "a/z", "b/a"]);
    }

    #[test]
    fn a_position_moves_past_what_the_page_took() {
        let first = Position::Version { rv: "7".into(), skip: 0 };
        // All taken and more to come: on with the continue token.
        assert_eq!(
            advance(&candidates(first.clone(), &["a", "b"], Some("t1")), 2),
            Position::Token { token: "t1".into(), skip: 0 }
        );
        // All taken, nothing more: done.
        assert_eq!(advance(&candidates(first.clone(), &["a", "b"], None), 2), Position::Done);
        // Some taken: the same start, further in.
        assert_eq!(
            advance(&candidates(Position::Version { rv: "7".into(), skip: 3 }, &["a", "b"], Some("t1")), 1),
            Position::Version { rv: "7".into(), skip: 4 }
        );
        assert_eq!(
            advance(&candidates(Position::Token { token: "t".into(), skip: 0 }, &["a", "b"], None), 0),
            Position::Token { token: "t".into(), skip: 0 }
        );
        // An empty cluster is done.
        assert_eq!(advance(&candidates(first, &[], None), 0), Position::Done);
    }

    #[test]
    fn positions_read_back_as_written() {
        for position in [
            Position::Start,
            Position::Done,
            Position::Version { rv: "12".into(), skip: 3 },
            Position::Token { token: "eyJ2Ijo".into(), skip: 0 },
        ] {
            let text = serde_json::to_string(&position).unwrap();
            assert_eq!(serde_json::from_str::<Position>(&text).unwrap(), position, "{text}");
        }
    }
}
