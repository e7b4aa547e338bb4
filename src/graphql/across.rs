//! Queries and subscriptions across clusters: `resourcesAcrossClusters` (one page merged from
//! several clusters, one cursor for all of them) and `resourceEventsAcrossClusters` (one
//! subscription over several clusters). The clusters are named by ids or chosen by a selector
//! over their labels, always among the caller's tenant's; each answers or fails on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::connection::PageInfo;
use async_graphql::{Context, ID, Object, SimpleObject, Subscription};
use futures_util::{Stream, StreamExt};

use super::object::Origin;
use super::page::{Items, OnePass, page_info};
use super::resources::{Resource, selects_only_metadata};
use super::table::{Column, TableRow};
use super::watch::{ResourceEvent, WatchArgs, subscribe};
use super::{caller, data};
use crate::access::Caller;
use crate::clusters::ClusterService;
use crate::clusters::selector::LabelSelector;
use crate::error::{ApiError, ErrorCode};
use crate::pagination::{PageRequest, encode_cursor};
use crate::resources::across::{FanOut, KindQuery, Position, SpanCluster};
use crate::resources::{ListQuery, ResourceService};
use crate::settings::ApiLimits;
use crate::store::clusters::ClusterRow;
use crate::watch::WatchHub;
use crate::watch::coalesce::WatchEventType;

/// Why one cluster did not answer, as a GraphQL error would say it.
#[derive(SimpleObject, Clone)]
pub struct ClusterError {
    /// The `extensions.code` the same failure has on a single-cluster field.
    code: String,
    message: String,
}

impl From<&ApiError> for ClusterError {
    fn from(error: &ApiError) -> Self {
        ClusterError { code: error.code.as_str().to_owned(), message: error.message.clone() }
    }
}

/// One cluster's part of a page across clusters.
#[derive(SimpleObject)]
pub struct ClusterListPart {
    cluster_id: ID,
    /// Empty when the cluster is not (or no longer) one of the caller's.
    cluster_name: String,
    /// Objects of this page from this cluster.
    items: i32,
    /// Whether this cluster has been read to its end.
    done: bool,
    /// Why the cluster did not answer this time; it keeps its place and is read again on the
    /// next page.
    error: Option<ClusterError>,
}

/// An object of a page across clusters, with its cluster.
pub struct ClusterResourceEdge {
    pub(super) cursor: Arc<str>,
    pub(super) cluster_id: String,
    pub(super) cluster_name: String,
    pub(super) node: Resource,
}

#[Object]
impl ClusterResourceEdge {
    /// The page's cursor (every edge of a page has the same one).
    async fn cursor(&self) -> &str {
        &self.cursor
    }
    async fn cluster_id(&self) -> ID {
        ID(self.cluster_id.clone())
    }
    async fn cluster_name(&self) -> &str {
        &self.cluster_name
    }
    async fn node(&self) -> &Resource {
        &self.node
    }
}

/// One page of objects from several clusters, merged by namespace, name, then cluster name.
pub struct ResourcesAcrossClusters {
    pub(super) edges: Vec<ClusterResourceEdge>,
    pub(super) parts: Vec<ClusterListPart>,
    pub(super) has_previous_page: bool,
    pub(super) has_next_page: bool,
    pub(super) cursor: Arc<str>,
}

#[Object]
impl ResourcesAcrossClusters {
    /// The page's objects, each with its cluster.
    async fn edges(&self) -> OnePass<'_, ClusterResourceEdge> {
        OnePass { items: Items::ClusterEdges(&self.edges), each: &self.edges }
    }
    async fn page_info(&self) -> PageInfo {
        page_info(self.has_previous_page, self.has_next_page, &self.cursor, self.edges.is_empty())
    }
    /// Each cluster's part: how many objects it gave, whether it is done, or why it failed.
    async fn clusters(&self) -> &[ClusterListPart] {
        &self.parts
    }
}

/// Which clusters a field spans.
pub struct Span {
    pub ids: Option<Vec<ID>>,
    pub selector: Option<String>,
}

impl Span {
    /// The part of a cursor's scope that names the span.
    fn scope(&self) -> String {
        match (&self.ids, &self.selector) {
            (Some(ids), _) => {
                let ids: BTreeSet<&str> = ids.iter().map(|id| id.as_str()).collect();
                format!("ids:{}", ids.into_iter().collect::<Vec<_>>().join(","))
            }
            (None, Some(selector)) => format!("selector:{selector}"),
            (None, None) => String::new(),
        }
    }

    /// The caller's clusters the span names: every id must be one of the tenant's (another
    /// tenant's is NOT_FOUND, as for `cluster(id:)`); a selector matches among the tenant's.
    async fn resolve(
        &self,
        clusters: &ClusterService,
        tenant: &str,
        limits: &ApiLimits,
    ) -> Result<Vec<Arc<ClusterRow>>, ApiError> {
        let max = limits.max_clusters_per_query;
        match (&self.ids, &self.selector) {
            (Some(_), Some(_)) | (None, None) => Err(ApiError::bad_input(
                "clusterIds",
                "give either clusterIds or clusterSelector (the clusters to span), not both",
            )),
            (Some(ids), None) => {
                let ids: BTreeSet<&str> = ids.iter().map(|id| id.as_str()).collect();
                if ids.is_empty() {
                    return Err(ApiError::bad_input("clusterIds", "clusterIds is empty"));
                }
                if ids.len() > max {
                    let message = format!("at most {max} clusters per query, got {}", ids.len());
                    return Err(ApiError::bad_input("clusterIds", message));
                }
                let mut rows = Vec::with_capacity(ids.len());
                for id in ids {
                    rows.push(clusters.get(id, tenant).await?);
                }
                Ok(rows)
            }
            (None, Some(selector)) => {
                let selector = LabelSelector::parse(selector)
                    .map_err(|e| ApiError::bad_input("clusterSelector", e.to_string()))?;
                let mut matched = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = clusters.page(tenant, after.as_deref(), 500).await?;
                    let last = page.last().map(|row| row.name.clone());
                    for row in page {
                        let labels: BTreeMap<String, String> = serde_json::from_str(&row.labels).unwrap_or_default();
                        if selector.matches(&labels) {
                            matched.push(Arc::new(row));
                        }
                    }
                    if matched.len() > max {
                        let message =
                            format!("the selector matches more than {max} clusters (at most {max} per query)");
                        return Err(ApiError::bad_input("clusterSelector", message));
                    }
                    match last {
                        Some(name) => after = Some(name),
                        None => break,
                    }
                }
                Ok(matched)
            }
        }
    }
}

/// The positions a cursor carries, one per cluster of the span (fixed by its first page).
fn read_positions(text: &str, limits: &ApiLimits) -> Result<BTreeMap<String, Position>, ApiError> {
    let positions: BTreeMap<String, Position> = serde_json::from_str(text)
        .map_err(|_| ApiError::bad_input("after", "after is not a cursor issued by this list"))?;
    if positions.len() > limits.max_clusters_per_query {
        return Err(ApiError::bad_input("after", "after names more clusters than a query may span"));
    }
    Ok(positions)
}

/// What `resourcesAcrossClusters` asks for.
pub struct AcrossArgs {
    pub span: Span,
    pub kind: KindQuery,
    pub first: Option<i32>,
    pub after: Option<String>,
}

pub async fn resources_across(ctx: &Context<'_>, args: AcrossArgs) -> async_graphql::Result<ResourcesAcrossClusters> {
    let caller = caller(ctx)?;
    let limits = data::<ApiLimits>(ctx)?;
    let service = data::<ResourceService>(ctx)?;
    let clusters = service.connections().clusters();
    let kind = &args.kind;
    let scope = format!(
        "k8s-across:{}",
        &crate::digest::sha256_hex(
            [
                args.span.scope().as_str(),
                &kind.group,
                kind.version.as_deref().unwrap_or(""),
                &kind.kind,
                kind.namespace.as_deref().unwrap_or("\0all"),
                kind.query.label_selector.as_deref().unwrap_or(""),
                kind.query.field_selector.as_deref().unwrap_or(""),
            ]
            .join("\0")
            .as_bytes()
        )[..16]
    );
    let page = PageRequest::parse(args.first, args.after.as_deref(), &scope, limits)?;
    let (span, positions): (Vec<SpanCluster>, _) = match &page.after {
        None => {
            let rows = args.span.resolve(clusters, caller.tenant(), limits).await?;
            (rows.into_iter().map(Ok).collect(), BTreeMap::new())
        }
        Some(text) => {
            // The span of the first page: clusters removed (or moved away) since give their
            // own NOT_FOUND.
            let positions = read_positions(text, limits)?;
            let mut span = Vec::with_capacity(positions.len());
            for id in positions.keys() {
                span.push(clusters.get(id, caller.tenant()).await.map_err(|e| (id.clone(), ApiError::from(e))));
            }
            (span, positions)
        }
    };
    let mut kind = args.kind;
    let look = ctx.look_ahead();
    kind.metadata_only = selects_only_metadata([look.field("edges").field("node")]);
    let fan =
        FanOut { concurrency: limits.fanout_concurrency, deadline: Duration::from_secs(limits.fanout_deadline_secs) };
    let merged = service.list_across(caller, span, &kind, page.size, &positions, fan).await;
    let has_next_page = merged.has_next();
    let next: BTreeMap<&str, &Position> =
        merged.clusters.iter().map(|part| (part.cluster_id.as_str(), &part.position)).collect();
    let cursor: Arc<str> = encode_cursor(&scope, &serde_json::to_string(&next).map_err(ApiError::internal)?).into();
    let origins: Vec<Option<Arc<Origin>>> = merged
        .clusters
        .iter()
        .map(|part| {
            let resource = part.resource.as_ref()?;
            Some(Origin::new(&resource.api_version, &resource.kind, &part.cluster_id))
        })
        .collect();
    let mut edges = Vec::with_capacity(merged.items.len());
    for (i, raw) in merged.items {
        let part = &merged.clusters[i];
        let Some(origin) = &origins[i] else { continue };
        edges.push(ClusterResourceEdge {
            cursor: Arc::clone(&cursor),
            cluster_id: part.cluster_id.clone(),
            cluster_name: part.cluster_name.clone(),
            node: Resource::raw(raw, Arc::clone(origin)),
        });
    }
    let parts = merged
        .clusters
        .iter()
        .map(|part| ClusterListPart {
            cluster_id: ID(part.cluster_id.clone()),
            cluster_name: part.cluster_name.clone(),
            items: part.items as i32,
            done: part.position == Position::Done,
            error: part.error.as_ref().map(ClusterError::from),
        })
        .collect();
    Ok(ResourcesAcrossClusters { edges, parts, has_previous_page: page.after.is_some(), has_next_page, cursor })
}

/// A change on one cluster of a subscription across clusters, or why a cluster is not part of it.
pub struct ClusterResourceEvent {
    cluster_id: String,
    cluster_name: String,
    event: Result<ResourceEvent, ApiError>,
}

#[Object]
impl ClusterResourceEvent {
    async fn cluster_id(&self) -> ID {
        ID(self.cluster_id.clone())
    }
    async fn cluster_name(&self) -> &str {
        &self.cluster_name
    }
    /// Absent when this is the cluster's `error`.
    async fn r#type(&self) -> Option<WatchEventType> {
        Some(self.event.as_ref().ok()?.kind())
    }
    /// The object after the change (for DELETED, its last state).
    async fn resource(&self) -> Option<Resource> {
        self.event.as_ref().ok()?.object()
    }
    async fn resource_version(&self) -> Option<&str> {
        self.event.as_ref().ok()?.version()
    }
    /// The object's table row, when the subscription asked for `asTable`.
    async fn row(&self) -> Option<TableRow> {
        self.event.as_ref().ok()?.table_row()
    }
    async fn columns(&self) -> Option<Vec<Column>> {
        self.event.as_ref().ok()?.table_columns()
    }
    /// The cluster could not be subscribed to, or its watch ended; the other clusters go on.
    async fn error(&self) -> Option<ClusterError> {
        self.event.as_ref().err().map(ClusterError::from)
    }
}

#[derive(Default)]
pub struct AcrossSubscription;

#[Subscription]
impl AcrossSubscription {
    /// Changes to the objects of a kind on several clusters (by ids or a selector over cluster
    /// labels), each event naming its cluster. Each cluster is subscribed to as `resourceEvents`
    /// subscribes to it (one subscription of the caller's per cluster, one shared upstream
    /// watch); a cluster that cannot be subscribed to, or whose watch ends, sends one event with
    /// its `error`, and the others go on.
    #[allow(clippy::too_many_arguments)]
    async fn resource_events_across_clusters(
        &self,
        ctx: &Context<'_>,
        cluster_ids: Option<Vec<ID>>,
        #[graphql(desc = "A label selector over the clusters' labels (`env=prod,region in (eu,us)`).")]
        cluster_selector: Option<String>,
        group: Option<String>,
        version: Option<String>,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
        event_types: Option<Vec<WatchEventType>>,
        send_initial_state: Option<bool>,
        max_events_per_second: Option<i32>,
        as_table: Option<bool>,
    ) -> async_graphql::Result<impl Stream<Item = ClusterResourceEvent> + use<>> {
        let caller: Caller = caller(ctx)?.clone();
        let limits = data::<ApiLimits>(ctx)?;
        let service = data::<ResourceService>(ctx)?.clone();
        let hub = Arc::clone(data::<Arc<WatchHub>>(ctx)?);
        let span = Span { ids: cluster_ids, selector: cluster_selector };
        let rows = span.resolve(service.connections().clusters(), caller.tenant(), limits).await?;
        let args = WatchArgs {
            group: group.unwrap_or_default(),
            version,
            kind,
            namespace,
            query: ListQuery { label_selector, field_selector },
            event_types,
            send_initial_state: send_initial_state.unwrap_or(false),
            max_events_per_second,
            as_table: as_table.unwrap_or(false),
        };
        let deadline = Duration::from_secs(limits.fanout_deadline_secs);
        let starts = rows.into_iter().map(|row| {
            let (caller, hub, service, args) = (&caller, &hub, &service, &args);
            async move {
                let started = tokio::time::timeout(deadline, subscribe(caller, hub, service, &row.id, args)).await;
                let late = || {
                    let message = format!("cluster {} did not answer within {}s", row.name, deadline.as_secs());
                    ApiError::new(ErrorCode::ClusterUnreachable, message)
                };
                let (id, name) = (row.id.clone(), row.name.clone());
                let tag =
                    move |event| ClusterResourceEvent { cluster_id: id.clone(), cluster_name: name.clone(), event };
                match started.unwrap_or_else(|_| Err(late())) {
                    Ok(events) => events.map(tag).boxed(),
                    Err(error) => futures_util::stream::once(async move { tag(Err(error)) }).boxed(),
                }
            }
        });
        let streams: Vec<_> =
            futures_util::stream::iter(starts).buffer_unordered(limits.fanout_concurrency.max(1)).collect().await;
        Ok(futures_util::stream::select_all(streams))
    }
}

#[derive(Default)]
pub struct AcrossQuery;

#[Object]
impl AcrossQuery {
    /// Objects of a kind on several clusters at once, chosen by ids or by a selector over the
    /// clusters' labels, merged by namespace, name, then cluster name, a page at a time with one
    /// cursor that carries every cluster's position. A cluster that fails or does not answer
    /// within the server's deadline has its own entry in `clusters` and keeps its place; the
    /// others answer.
    #[graphql(complexity = "super::cost::across(cluster_ids.as_ref().map(Vec::len), first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn resources_across_clusters(
        &self,
        ctx: &Context<'_>,
        cluster_ids: Option<Vec<ID>>,
        #[graphql(desc = "A label selector over the clusters' labels (`env=prod,region in (eu,us)`).")]
        cluster_selector: Option<String>,
        #[graphql(desc = "API group; absent or empty for the core group.")] group: Option<String>,
        #[graphql(desc = "API version; default each cluster's preferred version.")] version: Option<String>,
        #[graphql(desc = "Kind (`Deployment`) or plural (`deployments`).")] kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ResourcesAcrossClusters> {
        let kind = KindQuery {
            group: group.unwrap_or_default(),
            version,
            kind,
            namespace,
            query: ListQuery { label_selector, field_selector },
            metadata_only: false,
        };
        let span = Span { ids: cluster_ids, selector: cluster_selector };
        resources_across(ctx, AcrossArgs { span, kind, first, after }).await
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn position() -> impl Strategy<Value = Position> {
        prop_oneof![
            Just(Position::Start),
            Just(Position::Done),
            (".{0,12}", any::<u32>()).prop_map(|(rv, skip)| Position::Version { rv, skip }),
            (".{0,40}", any::<u32>()).prop_map(|(token, skip)| Position::Token { token, skip }),
        ]
    }

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_text_is_the_positions_of_a_span_or_bad_input(text in "(?s)\\{?.{0,200}") {
            if let Err(err) = read_positions(&text, &ApiLimits::default()) {
                prop_assert_eq!(err.code, ErrorCode::BadUserInput);
            }
        }

        #[test]
        fn positions_read_back_up_to_the_widest_span(
            positions in prop::collection::btree_map("[a-f0-9-]{1,36}", position(), 0..30),
        ) {
            let limits = ApiLimits::default();
            let text = serde_json::to_string(&positions).unwrap();
            match read_positions(&text, &limits) {
                Ok(read) => prop_assert_eq!(read, positions),
                Err(err) => {
                    prop_assert!(positions.len() > limits.max_clusters_per_query);
                    prop_assert_eq!(err.code, ErrorCode::BadUserInput);
                }
            }
        }
    }
}
