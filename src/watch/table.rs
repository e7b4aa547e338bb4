//! A watch of a collection as the API server's table (`as=Table`, whole objects in the rows),
//! for subscribers that draw a live `kubectl get`. kube-runtime's watcher cannot ask for another
//! rendering, so this is its loop written for tables, with the same events: a list (`Init`,
//! `InitApply` for each row, `InitDone`), then a watch from the list's resourceVersion, resumed
//! where it stopped when the API server closes it and listed again when that version has
//! expired (410). Failures are retried with a growing pause, and reported to the caller.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use kube::Client;
use kube::api::{DynamicObject, WatchEvent};
use kube::runtime::watcher;

use super::coalesce::{TableRow, Watched};
use crate::resources::ListQuery;
use crate::resources::table::{self, TableColumn, WireRow, WireTable};

/// Objects per page of a relist.
const PAGE: u32 = 500;
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

type Events = BoxStream<'static, Result<WatchEvent<WireTable<DynamicObject>>, kube::Error>>;

enum Phase {
    List,
    Watch { version: String },
    Streaming { version: String, events: Events },
}

struct TableWatch {
    client: Client,
    url_path: String,
    query: ListQuery,
    /// `timeoutSeconds` of each watch request.
    request_secs: u32,
    /// The columns of the latest list or watch that sent them (only the first event of a watch
    /// does).
    columns: Arc<[TableColumn]>,
    phase: Phase,
    ready: VecDeque<watcher::Event<Watched>>,
    pause: Duration,
}

/// The table watch of the collection at `url_path`.
pub fn table_watcher(
    client: Client,
    url_path: String,
    query: ListQuery,
    request_secs: u32,
) -> impl Stream<Item = Result<watcher::Event<Watched>, kube::Error>> + Send {
    let watch = TableWatch {
        client,
        url_path,
        query,
        request_secs,
        columns: Arc::from(Vec::new()),
        phase: Phase::List,
        ready: VecDeque::new(),
        pause: FIRST_PAUSE,
    };
    futures_util::stream::unfold(watch, |mut watch| async move {
        let item = watch.next().await;
        Some((item, watch))
    })
}

impl TableWatch {
    async fn next(&mut self) -> Result<watcher::Event<Watched>, kube::Error> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            match &mut self.phase {
                Phase::List => match self.list().await {
                    Ok(version) => {
                        self.pause = FIRST_PAUSE;
                        self.phase = Phase::Watch { version };
                    }
                    Err(err) => return Err(self.failed(err).await),
                },
                Phase::Watch { version } => {
                    let version = version.clone();
                    let request = table::watch_request(&self.url_path, &self.query, &version, self.request_secs)
                        .map_err(kube::Error::BuildRequest)?;
                    match self.client.request_events::<WireTable<DynamicObject>>(request).await {
                        Ok(events) => self.phase = Phase::Streaming { version, events: events.boxed() },
                        Err(err) => {
                            if expired(&err) {
                                self.phase = Phase::List;
                            }
                            return Err(self.failed(err).await);
                        }
                    }
                }
                Phase::Streaming { events, .. } => {
                    let next = events.next().await;
                    self.receive(next).await?;
                }
            }
        }
    }

    /// Takes what the watch stream gave: its rows queued, the version to resume from kept, and
    /// on failure the phase that tries again.
    async fn receive(
        &mut self,
        next: Option<Result<WatchEvent<WireTable<DynamicObject>>, kube::Error>>,
    ) -> Result<(), kube::Error> {
        let Phase::Streaming { version, .. } = &self.phase else { return Ok(()) };
        let version = version.clone();
        let resume = |version| Phase::Watch { version };
        match next {
            // The API server ends every watch after a while: resume where it stopped.
            None => self.phase = resume(version),
            Some(Ok(WatchEvent::Added(table) | WatchEvent::Modified(table))) => {
                self.take(table, watcher::Event::Apply);
                self.pause = FIRST_PAUSE;
            }
            Some(Ok(WatchEvent::Deleted(table))) => self.take(table, watcher::Event::Delete),
            Some(Ok(WatchEvent::Bookmark(bookmark))) => self.resume_from(bookmark.metadata.resource_version),
            Some(Ok(WatchEvent::Error(status))) => {
                let err = kube::Error::Api(status);
                self.phase = if expired(&err) { Phase::List } else { resume(version) };
                return Err(self.failed(err).await);
            }
            Some(Err(err)) => {
                self.phase = resume(version);
                return Err(self.failed(err).await);
            }
        }
        Ok(())
    }

    fn resume_from(&mut self, latest: String) {
        if let Phase::Streaming { version, .. } = &mut self.phase {
            *version = latest;
        }
    }

    /// Lists the collection, a page at a time, into `ready` as one relist; returns the list's
    /// resourceVersion, where the watch starts.
    async fn list(&mut self) -> Result<String, kube::Error> {
        let mut objects = Vec::new();
        let mut continue_token = None;
        let version = loop {
            let request = table::list_request(&self.url_path, &self.query, PAGE, continue_token.take())
                .map_err(kube::Error::BuildRequest)?;
            let page: WireTable<DynamicObject> = self.client.request(request).await?;
            if !page.column_definitions.is_empty() {
                self.columns = page.column_definitions.into();
            }
            objects.extend(page.rows.into_iter().map(|row| self.watched(row)));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => continue_token = Some(token),
                None => break page.metadata.resource_version.unwrap_or_default(),
            }
        };
        self.ready.push_back(watcher::Event::Init);
        self.ready.extend(objects.into_iter().map(watcher::Event::InitApply));
        self.ready.push_back(watcher::Event::InitDone);
        Ok(version)
    }

    /// Queues the rows of a watch event; the watch resumes after its last object.
    fn take(&mut self, table: WireTable<DynamicObject>, event: fn(Watched) -> watcher::Event<Watched>) {
        if !table.column_definitions.is_empty() {
            self.columns = table.column_definitions.into();
        }
        for row in table.rows {
            let watched = self.watched(row);
            if let Some(version) = watched.resource_version() {
                self.resume_from(version.to_owned());
            }
            self.ready.push_back(event(watched));
        }
    }

    fn watched(&self, row: WireRow<DynamicObject>) -> Watched {
        let (cells, object) = row.split();
        Watched::new(object, Some(Arc::new(TableRow { columns: Arc::clone(&self.columns), cells })))
    }

    /// Waits before the next try, longer after each failure in a row, and hands the error back.
    async fn failed(&mut self, err: kube::Error) -> kube::Error {
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        err
    }
}

fn expired(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 410)
}
