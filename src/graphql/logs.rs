//! `logStream`: `kubectl logs -f`, live, for one pod or every pod of a workload or selector.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, InputObject, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};

use super::{caller, data};
use crate::error::{ApiError, ErrorCode};
use crate::logs::filter::LineFilter;
use crate::logs::pods::{StreamId, Wanted};
use crate::logs::position::Position;
use crate::logs::{Follow, LogEvent, LogHub, Start};
use crate::resources::ResourceService;
use crate::resources::logs::LogTarget;

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum LogEventType {
    /// A container's log is followed from now on.
    Started,
    /// One line.
    Line,
    /// Lines were left out (past the budget, or the subscriber read too slowly): `dropped`
    /// says how many.
    Dropped,
    /// A container's log is no longer followed (`message` says why).
    Ended,
    /// The subscription is over (`message` says why); nothing follows.
    Finished,
}

/// One event of a followed log.
#[derive(SimpleObject, Debug)]
pub struct LogStreamEvent {
    #[graphql(name = "type")]
    pub kind: LogEventType,
    pub pod: Option<String>,
    pub container: Option<String>,
    /// When the container wrote the line (nanoseconds).
    pub timestamp: Option<DateTime<Utc>>,
    pub line: Option<String>,
    /// The line was longer than the server keeps (`--log-max-line-bytes`); this is its start.
    pub truncated: bool,
    /// Lines left out, for DROPPED.
    pub dropped: Option<i64>,
    pub message: Option<String>,
    /// Where this line leaves its container's log: give the last cursor of each container in
    /// `resumeFrom` to go on after a reconnect without repeating a line.
    pub cursor: Option<String>,
}

impl LogStreamEvent {
    fn new(kind: LogEventType, stream: Option<&StreamId>) -> Self {
        LogStreamEvent {
            kind,
            pod: stream.map(|s| s.pod.clone()),
            container: stream.map(|s| s.container.clone()),
            timestamp: None,
            line: None,
            truncated: false,
            dropped: None,
            message: None,
            cursor: None,
        }
    }
}

impl From<LogEvent> for LogStreamEvent {
    fn from(event: LogEvent) -> Self {
        match event {
            LogEvent::Started { stream } => LogStreamEvent::new(LogEventType::Started, Some(&stream)),
            LogEvent::Line { stream, line, cursor } => LogStreamEvent {
                timestamp: line.at.as_ref().map(super::object::to_chrono),
                line: Some(line.text.clone()),
                truncated: line.truncated,
                cursor,
                ..LogStreamEvent::new(LogEventType::Line, Some(&stream))
            },
            LogEvent::Dropped { stream, lines } => LogStreamEvent {
                dropped: Some(lines.min(i64::MAX as u64) as i64),
                ..LogStreamEvent::new(LogEventType::Dropped, stream.as_ref())
            },
            LogEvent::Ended { stream, reason } => {
                LogStreamEvent { message: Some(reason), ..LogStreamEvent::new(LogEventType::Ended, Some(&stream)) }
            }
            LogEvent::Finished { reason } => {
                LogStreamEvent { message: Some(reason), ..LogStreamEvent::new(LogEventType::Finished, None) }
            }
        }
    }
}

/// A workload whose pods' logs are followed.
#[derive(InputObject, Debug)]
pub struct LogWorkloadInput {
    /// Deployment, StatefulSet, DaemonSet, ReplicaSet or Job.
    pub kind: String,
    pub name: String,
}

#[derive(Default)]
pub struct LogSubscription;

fn invalid(message: impl Into<String>) -> async_graphql::Error {
    ApiError::new(ErrorCode::BadUserInput, message).into()
}

#[Subscription]
impl LogSubscription {
    /// `kubectl logs -f`: one pod's container, or the pods of a workload or a label selector as
    /// they come and go (give exactly one of `pod`, `workload`, `labelSelector`). Each line comes
    /// with its pod, container, time and a cursor; `resumeFrom` takes the last cursor of each
    /// container to go on after a reconnect without repeating a line. Lines past the budget
    /// (`maxLinesPerSecond`, `maxBytesPerSecond`, and the principal's) or beyond what a slow
    /// subscriber reads are dropped and counted in a DROPPED event. One upstream stream serves
    /// every subscriber of the same container with the same options. Counts against the
    /// caller's subscriptions like `resourceEvents`.
    #[allow(clippy::too_many_arguments)]
    async fn log_stream(
        &self,
        ctx: &Context<'_>,
        cluster_id: ID,
        namespace: String,
        pod: Option<String>,
        workload: Option<LogWorkloadInput>,
        label_selector: Option<String>,
        #[graphql(desc = "This container; default the pod's default container (kubectl's choice).")] container: Option<
            String,
        >,
        #[graphql(default = false, desc = "Every container of each pod.")] all_containers: bool,
        #[graphql(desc = "Start with the last lines of each log.")] tail_lines: Option<i64>,
        since_seconds: Option<i64>,
        since_time: Option<DateTime<Utc>>,
        #[graphql(default = false, desc = "The previous run of each container (it has ended).")] previous: bool,
        #[graphql(desc = "Only lines containing this text.")] contains: Option<String>,
        #[graphql(desc = "Only lines matching this regular expression (RE2 syntax, linear time).")] regex: Option<
            String,
        >,
        #[graphql(desc = "The last cursor of each container, to resume after a reconnect.")] resume_from: Option<
            Vec<String>,
        >,
        #[graphql(desc = "Default and maximum are server settings.")] max_lines_per_second: Option<i32>,
        #[graphql(desc = "Default and maximum are server settings.")] max_bytes_per_second: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = LogStreamEvent> + use<>> {
        let caller = caller(ctx)?;
        let hub = data::<Arc<LogHub>>(ctx)?;
        let target = match (pod, workload, label_selector) {
            (Some(name), None, None) => LogTarget::Pod { name, container: container.clone() },
            (None, Some(w), None) => LogTarget::Workload { kind: w.kind, name: w.name },
            (None, None, Some(selector)) => LogTarget::Selector(selector),
            _ => return Err(invalid("give exactly one of pod, workload and labelSelector")),
        };
        if tail_lines.is_some_and(|n| n < 0) || since_seconds.is_some_and(|n| n < 1) {
            return Err(invalid("tailLines must be >= 0 and sinceSeconds >= 1"));
        }
        if since_seconds.is_some() && since_time.is_some() {
            return Err(invalid("give sinceSeconds or sinceTime, not both"));
        }
        let since_time = since_time
            .map(|t| k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32))
            .transpose()
            .map_err(|e| invalid(format!("sinceTime: {e}")))?;
        let settings = hub.settings();
        let filter = LineFilter::new(contains, regex, settings.log_max_filter_bytes).map_err(invalid)?;
        let resume = resume_from
            .unwrap_or_default()
            .iter()
            .map(|cursor| Position::decode(cursor).map_err(|e| invalid(format!("resumeFrom: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if resume.len() > settings.log_max_streams_per_subscription {
            return Err(invalid("resumeFrom: more cursors than containers a subscription may follow"));
        }
        let (lines_per_second, bytes_per_second) =
            hub.budget_for(max_lines_per_second, max_bytes_per_second).map_err(ApiError::from)?;
        let service = data::<ResourceService>(ctx)?;
        let (client, source) =
            service.log_source(caller, &cluster_id, &namespace, target).await.map_err(ApiError::from)?;
        let (row, _) = service.connections().client_for(caller, &cluster_id).await.map_err(ApiError::from)?;
        let follow = Follow {
            principal: caller.principal.id.clone(),
            client,
            cluster_id: row.id.clone(),
            identity: caller.cluster_identity(row.impersonate_caller).ok().flatten().map(|i| i.canonical()),
            namespace,
            source,
            wanted: Wanted { container, all_containers },
            start: Start { tail_lines, since_seconds, since_time, previous },
            filter,
            resume,
            lines_per_second,
            bytes_per_second,
        };
        let events = hub.follow(follow).map_err(ApiError::from)?;
        Ok(events.map(LogStreamEvent::from))
    }
}
