//! Live resource events as a GraphQL subscription (over both WebSocket protocols and SSE).

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Subscription};
use futures_util::{Stream, StreamExt};

use super::object::Origin;
use super::resources::{Resource, resolve_kind};
use super::table::{Column, TableRow, columns};
use super::{caller, data};
use crate::error::{ApiError, ErrorCode};
use crate::resources::{ListQuery, ResourceService};
use crate::watch::coalesce::{WatchEvent, WatchEventType};
use crate::watch::{SubscribeOptions, WatchHub, WatchKey};

/// One change to a watched object.
pub struct ResourceEvent {
    event: WatchEvent,
    origin: Arc<Origin>,
}

#[Object]
impl ResourceEvent {
    async fn r#type(&self) -> WatchEventType {
        self.event.kind
    }
    /// The object after the change (for DELETED, its last state); absent for RESYNC.
    async fn resource(&self) -> Option<Resource> {
        let object = self.event.object.as_ref()?;
        Some(Resource::shared(Arc::clone(&object.object), Arc::clone(&self.origin)))
    }
    async fn resource_version(&self) -> Option<&str> {
        self.event.object.as_ref()?.metadata.resource_version.as_deref()
    }
    /// The object's row of the API server's table (`kubectl get` of this one object), when the
    /// subscription asked for `asTable`; a row with the same `object.metadata.uid` is replaced.
    async fn row(&self) -> Option<TableRow> {
        let watched = self.event.object.as_ref()?;
        let row = watched.row.as_ref()?;
        let object = Resource::shared(Arc::clone(&watched.object), Arc::clone(&self.origin));
        Some(TableRow::new(row.cells.clone(), object))
    }
    /// The table's columns, when the subscription asked for `asTable` (the same as
    /// `Cluster.table`'s unless the kind's definition changed).
    async fn columns(&self) -> Option<Vec<Column>> {
        let row = self.event.object.as_ref()?.row.as_ref()?;
        Some(columns(&row.columns))
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
        let caller = caller(ctx)?;
        let hub = data::<Arc<WatchHub>>(ctx)?;
        let rate = hub.rate_for(max_events_per_second).map_err(ApiError::from)?;
        let service = data::<ResourceService>(ctx)?;
        let target =
            resolve_kind(ctx, &cluster_id, &group.unwrap_or_default(), version.as_deref(), &kind, namespace).await?;
        if !target.caps.supports_operation("watch") {
            return Err(
                ApiError::new(ErrorCode::BadUserInput, format!("{} cannot be watched", target.resource.kind)).into()
            );
        }
        // One small list checks the selectors and the identity's permission before subscribing.
        let query = ListQuery { label_selector: label_selector.clone(), field_selector: field_selector.clone() };
        target.list(&query, 1, None, true).await.map_err(ApiError::from)?;
        let (row, client) = service.connections().client_for(caller, &cluster_id).await.map_err(ApiError::from)?;
        let identity = caller.cluster_identity(row.impersonate_caller).ok().flatten().map(|i| i.canonical());
        let key = WatchKey {
            cluster_id: row.id.clone(),
            identity,
            group: target.resource.group.clone(),
            version: target.resource.version.clone(),
            kind: target.resource.kind.clone(),
            namespace: target.namespace().map(str::to_owned),
            label_selector,
            field_selector,
            table: as_table.unwrap_or(false),
        };
        let options = SubscribeOptions {
            event_types,
            send_initial_state: send_initial_state.unwrap_or(false),
            events_per_second: Some(rate),
        };
        let stream = hub
            .subscribe(key, &caller.principal.id, client, target.resource.clone(), options)
            .await
            .map_err(ApiError::from)?;
        let origin = Origin::new(&target.resource.api_version, &target.resource.kind, &row.id);
        Ok(stream.map(move |event| {
            event
                .map(|event| ResourceEvent { event, origin: Arc::clone(&origin) })
                .map_err(|err| async_graphql::Error::from(ApiError::from(err)))
        }))
    }
}
