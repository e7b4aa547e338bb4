//! Live resource events as a GraphQL subscription (over both WebSocket protocols and SSE).

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Subscription};
use futures_util::{Stream, StreamExt};

use super::object::Origin;
use super::resources::Resource;
use super::table::{Column, TableRow, columns};
use super::{caller, data};
use crate::access::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::resources::{ListQuery, ResourceService};
use crate::watch::coalesce::{WatchEvent, WatchEventType};
use crate::watch::{SubscribeOptions, WatchHub, WatchKey};

/// One change to a watched object.
pub struct ResourceEvent {
    event: WatchEvent,
    origin: Arc<Origin>,
}

impl ResourceEvent {
    pub(super) fn kind(&self) -> WatchEventType {
        self.event.kind
    }
    pub(super) fn object(&self) -> Option<Resource> {
        let object = self.event.object.as_ref()?;
        Some(Resource::shared(object.object(), Arc::clone(&self.origin)))
    }
    pub(super) fn version(&self) -> Option<&str> {
        self.event.object.as_ref()?.resource_version()
    }
    pub(super) fn table_row(&self) -> Option<TableRow> {
        let watched = self.event.object.as_ref()?;
        let row = watched.row()?;
        let object = Resource::shared(watched.object(), Arc::clone(&self.origin));
        Some(TableRow::new(row.cells.clone(), object))
    }
    pub(super) fn table_columns(&self) -> Option<Vec<Column>> {
        let row = self.event.object.as_ref()?.row()?;
        Some(columns(&row.columns))
    }
}

#[Object]
impl ResourceEvent {
    async fn r#type(&self) -> WatchEventType {
        self.kind()
    }
    /// The object after the change (for DELETED, its last state); absent for RESYNC.
    async fn resource(&self) -> Option<Resource> {
        self.object()
    }
    async fn resource_version(&self) -> Option<&str> {
        self.version()
    }
    /// The object's row of the API server's table (`kubectl get` of this one object), when the
    /// subscription asked for `asTable`; a row with the same `object.metadata.uid` is replaced.
    async fn row(&self) -> Option<TableRow> {
        self.table_row()
    }
    /// The table's columns, when the subscription asked for `asTable` (the same as
    /// `Cluster.table`'s unless the kind's definition changed).
    async fn columns(&self) -> Option<Vec<Column>> {
        self.table_columns()
    }
}

#[derive(Default)]
pub struct WatchSubscription;

#[Subscription]
impl WatchSubscription {
    /// Changes to the objects of a kind, live. One upstream watch serves every subscriber of the
    /// same query. Events above `maxEventsPerSecond` are coalesced per object (the latest state
    /// wins; a DELETED is never dropped), so the client always converges on the cluster's state.
    /// A RESYNC means the subscriber fell too far behind: its view is rebuilt (with the current
    /// objects as ADDED when `sendInitialState` is set).
    #[allow(clippy::too_many_arguments)]
    async fn resource_events(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        group: Option<String>,
        version: Option<String>,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
        #[graphql(desc = "Only these types (RESYNC always comes).")] event_types: Option<Vec<WatchEventType>>,
        #[graphql(desc = "Start with the current objects as ADDED. Default false.")] send_initial_state: Option<bool>,
        #[graphql(desc = "Default and maximum are server settings.")] max_events_per_second: Option<i32>,
        #[graphql(desc = "Each event with the object's table row (`row`, `columns`), as `Cluster.table` draws it.")]
        as_table: Option<bool>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ResourceEvent>> + use<>> {
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
        let stream =
            subscribe(caller(ctx)?, data::<Arc<WatchHub>>(ctx)?, data::<ResourceService>(ctx)?, &cluster_id, &args)
                .await?;
        Ok(stream.map(|event| event.map_err(async_graphql::Error::from)))
    }
}

/// What a subscription to one kind asks for.
#[derive(Clone)]
pub(super) struct WatchArgs {
    pub group: String,
    pub version: Option<String>,
    pub kind: String,
    pub namespace: Option<String>,
    pub query: ListQuery,
    pub event_types: Option<Vec<WatchEventType>>,
    pub send_initial_state: bool,
    pub max_events_per_second: Option<i32>,
    pub as_table: bool,
}

/// Subscribes the caller to a kind of one cluster through the watch hub, after checking the
/// kind, the selectors and the identity's permission with one small list.
pub(super) async fn subscribe(
    caller: &Caller,
    hub: &Arc<WatchHub>,
    service: &ResourceService,
    cluster_id: &str,
    args: &WatchArgs,
) -> Result<impl Stream<Item = Result<ResourceEvent, ApiError>> + Send + use<>, ApiError> {
    let rate = hub.rate_for(args.max_events_per_second)?;
    let target = service
        .target(caller, cluster_id, &args.group, args.version.as_deref(), &args.kind, args.namespace.clone())
        .await?;
    if !target.caps.supports_operation("watch") {
        return Err(ApiError::new(ErrorCode::BadUserInput, format!("{} cannot be watched", target.resource.kind)));
    }
    // One small list checks the selectors and the identity's permission before subscribing.
    target.list(&args.query, 1, None, true).await?;
    let (row, client) = service.connections().client_for(caller, cluster_id).await?;
    let identity = caller.cluster_identity(row.impersonate_caller).ok().flatten().map(|i| i.canonical());
    let key = WatchKey {
        cluster_id: row.id.clone(),
        identity,
        group: target.resource.group.clone(),
        version: target.resource.version.clone(),
        kind: target.resource.kind.clone(),
        namespace: target.namespace().map(str::to_owned),
        label_selector: args.query.label_selector.clone(),
        field_selector: args.query.field_selector.clone(),
        table: args.as_table,
    };
    let options = SubscribeOptions {
        event_types: args.event_types.clone(),
        send_initial_state: args.send_initial_state,
        events_per_second: Some(rate),
    };
    let stream = hub.subscribe(key, &caller.principal.id, client, target.resource.clone(), options).await?;
    let origin = Origin::new(&target.resource.api_version, &target.resource.kind, &row.id);
    Ok(stream.map(move |event| {
        event.map(|event| ResourceEvent { event, origin: Arc::clone(&origin) }).map_err(ApiError::from)
    }))
}
