//! A cluster on a bad day: its API server restarted in the middle of a paged walk (with and
//! without the walk's revision compacted away meanwhile), its etcd restarted under a live watch,
//! and its connection cut by a proxy in the middle of a list and of a watch. A walk completes
//! with every object exactly once or fails with `CURSOR_EXPIRED`; a watch converges with no
//! duplicate and no gap; a cut list is an error, never half a page. In a test binary of its own,
//! since it restarts its control plane's API server and etcd (the test command gives the fault
//! tests a control plane of their own, in a lane beside the other tests); its tests take turns.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use common::control_plane::{ControlPlane, controllers_caught_up, project_dir, ready_namespace, unique_namespace};
use common::{Backend, TestDb, TestServer, first_error};
use futures_util::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The tests restart shared components: one at a time.
static TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn restart(args: &[&str]) {
    let out = std::process::Command::new(project_dir().join("tests/cluster/restart-apiserver"))
        .args(args)
        .output()
        .expect("restart-apiserver runs");
    assert!(out.status.success(), "restart-apiserver {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn restart_async(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || restart(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap();
}

/// A shell command for `--while-down` that deletes one key in etcd (through its JSON gateway)
/// and fails unless exactly one key went.
fn etcd_delete(key: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    format!("curl -sf -X POST \"$ETCD_URL/v3/kv/deleterange\" -d '{{\"key\":\"{key}\"}}' | grep -q '\"deleted\":\"1\"'")
}

/// A shell command for `--while-down` that compacts etcd's history up to its current revision,
/// so that no read at an older revision (a list's continue token) can be served any more.
fn etcd_compact() -> String {
    "rev=$(curl -sf -X POST \"$ETCD_URL/v3/kv/range\" -d '{\"key\":\"Lw==\"}' | sed -E 's/.*\"revision\":\"([0-9]+)\".*/\\1/') && \
     curl -sf -X POST \"$ETCD_URL/v3/kv/compaction\" -d \"{\\\"revision\\\":\\\"$rev\\\",\\\"physical\\\":true}\" >/dev/null"
        .to_owned()
}

struct Fixture {
    _db: TestDb,
    server: TestServer,
    id: String,
    ns: String,
    configmaps: Api<ConfigMap>,
    namespaces: Api<Namespace>,
}

impl Fixture {
    /// A server with the control plane registered (at `api_url`, when given), and a namespace
    /// holding `count` ConfigMaps labelled `f=y`, each with `bytes` of data.
    async fn new(prefix: &str, count: usize, bytes: usize, api_url: Option<&str>) -> Fixture {
        let cp = ControlPlane::get();
        let db = TestDb::new(Backend::Sqlite).await;
        let server = TestServer::start(&db).await;
        let extra = api_url.map_or(json!({}), |url| json!({ "apiServerUrl": url }));
        let id = server.control_plane_cluster(&cp, prefix, extra).await;
        let client = cp.client("admin").await;
        let ns = unique_namespace(prefix);
        ready_namespace(&client, &ns).await;
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let data = "x".repeat(bytes);
        stream::iter(0..count)
            .for_each_concurrent(16, |i| {
                let (configmaps, data) = (configmaps.clone(), data.clone());
                async move {
                    configmaps.create(&PostParams::default(), &config_map(&format!("cm-{i:04}"), &data)).await.unwrap();
                }
            })
            .await;
        Fixture { _db: db, server, id, ns, configmaps, namespaces: Api::all(client) }
    }

    async fn page(&self, first: usize, after: &Value) -> Value {
        self.server
            .gql(
                "query($id: ID!, $ns: String, $first: Int, $after: String) { cluster(id: $id) { resources(kind: \"ConfigMap\", namespace: $ns, labelSelector: \"f=y\", first: $first, after: $after) { edges { node { metadata { name } } } pageInfo { hasNextPage endCursor } } } }",
                json!({ "id": self.id, "ns": self.ns, "first": first, "after": after }),
            )
            .await
    }

    /// Removes the namespace, once the control plane's controllers have caught up with the
    /// restarts the test made.
    async fn drop(self) {
        let client = self.namespaces.clone().into_client();
        controllers_caught_up(&client, Duration::from_secs(180)).await;
        let _ = self.namespaces.delete(&self.ns, &DeleteParams::background()).await;
    }
}

fn config_map(name: &str, data: &str) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name, "labels": { "f": "y" } }, "data": { "d": data } }))
        .unwrap()
}

fn names_of(page: &Value) -> Vec<String> {
    page["data"]["cluster"]["resources"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(|e| e["node"]["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// How a walk ended.
#[derive(Debug)]
enum Walk {
    Complete(Vec<String>),
    Expired { after_pages: usize },
}

/// Walks every page of 25, calling `between` once after the second page.
async fn walk(fixture: &Fixture, between: impl std::future::Future<Output = ()>) -> Walk {
    let mut between = Some(between);
    let mut names = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let page = fixture.page(25, &after).await;
        if page.get("errors").is_some() {
            let (code, message) = first_error(&page);
            assert_eq!(code, "CURSOR_EXPIRED", "a walk fails only with CURSOR_EXPIRED: {message}");
            assert!(page["data"].is_null() || page["data"]["cluster"].is_null(), "no partial page: {page}");
            return Walk::Expired { after_pages: pages };
        }
        names.extend(names_of(&page));
        pages += 1;
        let info = &page["data"]["cluster"]["resources"]["pageInfo"];
        if info["hasNextPage"] == false {
            return Walk::Complete(names);
        }
        after = info["endCursor"].clone();
        if pages == 2
            && let Some(between) = between.take()
        {
            between.await;
        }
    }
}

fn expected(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("cm-{i:04}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paged_walk_across_an_api_server_restart_completes_exactly_or_expires() {
    let _turn = TURNS.lock().await;
    let fixture = Fixture::new("walk", 120, 10, None).await;

    // A plain restart: etcd keeps the walk's revision, so the walk goes on, each object once.
    match walk(&fixture, restart_async(&["--down-for", "1"])).await {
        Walk::Complete(names) => assert_eq!(names, expected(120), "every object exactly once, in order"),
        Walk::Expired { after_pages } => assert!(after_pages >= 2, "expired only after the restart"),
    }

    // A restart during which etcd's history is compacted: the walk's revision is gone, and the
    // next page says so with CURSOR_EXPIRED (never a page from another revision).
    let compact = etcd_compact();
    match walk(&fixture, restart_async(&["--while-down", &compact])).await {
        Walk::Expired { after_pages } => assert_eq!(after_pages, 2, "the page after the compaction expired"),
        Walk::Complete(names) => panic!("a walk over a compacted revision completed: {} names", names.len()),
    }
    // Starting again from the first page gives the whole list.
    match walk(&fixture, async {}).await {
        Walk::Complete(names) => assert_eq!(names, expected(120)),
        other => panic!("a fresh walk: {other:?}"),
    }
    fixture.drop().await;
}

/// Collects a subscription's events as (type, name) pairs.
async fn follow(fixture: &Fixture) -> tokio::sync::mpsc::UnboundedReceiver<(String, String)> {
    let query = "subscription($id: ID!, $ns: String) { resourceEvents(clusterId: $id, kind: \"ConfigMap\", namespace: $ns, labelSelector: \"f=y\", sendInitialState: true) { type resource { metadata { name } } } }";
    let mut payloads = fixture
        .server
        .subscribe_sse(&fixture.server.token, query, json!({ "id": fixture.id, "ns": fixture.ns }))
        .await
        .expect("subscribed");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(value) = payloads.recv().await {
            let event = &value["data"]["resourceEvents"];
            let kind = event["type"].as_str().unwrap_or("?").to_owned();
            let name = event["resource"]["metadata"]["name"].as_str().unwrap_or("").to_owned();
            if tx.send((kind, name)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Reads events until `done` holds for the counts seen, or a minute passes.
async fn events_until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    done: impl Fn(&HashMap<(String, String), usize>) -> bool,
) -> HashMap<(String, String), usize> {
    let mut seen = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&seen) && Instant::now() < deadline {
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
            *seen.entry(event).or_default() += 1;
        }
    }
    // A little longer, for a duplicate that would follow.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        *seen.entry(event).or_default() += 1;
    }
    seen
}

fn key(kind: &str, name: &str) -> (String, String) {
    (kind.to_owned(), name.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_learns_of_a_delete_made_while_the_api_server_was_down_and_survives_an_etcd_restart() {
    let _turn = TURNS.lock().await;
    let fixture = Fixture::new("gone", 3, 10, None).await;
    let mut rx = follow(&fixture).await;
    let initial = events_until(&mut rx, |s| s.len() == 3).await;
    assert_eq!(initial.len(), 3, "the initial state: {initial:?}");

    // Deleted in etcd behind the stopped API server's back: no API server ever sends a DELETED
    // for it, so kubegql must find it missing when it lists again.
    let delete = etcd_delete(&format!("/registry/configmaps/{}/cm-0001", fixture.ns));
    restart_async(&["--while-down", &delete]).await;
    fixture.configmaps.create(&PostParams::default(), &config_map("after-restart", "y")).await.unwrap();
    let seen = events_until(&mut rx, |s| {
        s.contains_key(&key("DELETED", "cm-0001")) && s.contains_key(&key("ADDED", "after-restart"))
    })
    .await;
    assert_eq!(seen.get(&key("DELETED", "cm-0001")), Some(&1), "{seen:?}");
    assert_eq!(seen.get(&key("ADDED", "after-restart")), Some(&1), "{seen:?}");
    assert_eq!(seen.len(), 2, "nothing else (no ADDED again for the objects that stayed): {seen:?}");

    // etcd restarted under the watch: it goes on, and a change made after is delivered once.
    restart_async(&["--etcd"]).await;
    fixture.configmaps.create(&PostParams::default(), &config_map("after-etcd", "y")).await.unwrap();
    fixture.configmaps.delete("cm-0002", &DeleteParams::default()).await.unwrap();
    let seen = events_until(&mut rx, |s| {
        s.contains_key(&key("ADDED", "after-etcd")) && s.contains_key(&key("DELETED", "cm-0002"))
    })
    .await;
    assert_eq!(seen.get(&key("ADDED", "after-etcd")), Some(&1), "{seen:?}");
    assert_eq!(seen.get(&key("DELETED", "cm-0002")), Some(&1), "{seen:?}");
    assert_eq!(seen.len(), 2, "nothing else: {seen:?}");
    // And a list after it has exactly what is there.
    let page = fixture.page(50, &Value::Null).await;
    let names: BTreeSet<String> = names_of(&page).into_iter().collect();
    let expected: BTreeSet<String> =
        ["cm-0000", "after-restart", "after-etcd"].into_iter().map(str::to_owned).collect();
    assert_eq!(names, expected);
    fixture.drop().await;
}

/// A TCP proxy on loopback in front of the API server that can cut its connections: all of them
/// at once, or each one once the API server has sent it a number of bytes; and refuse new ones
/// for a while.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    /// Bytes the API server may still send before every connection is cut (`i64::MAX`: no limit).
    budget: Arc<AtomicI64>,
    refusing: Arc<AtomicBool>,
    /// Connections refused while `refusing`.
    refused: Arc<AtomicUsize>,
    cut: tokio::sync::watch::Sender<usize>,
    cuts: Arc<AtomicUsize>,
}

impl CuttingProxy {
    async fn start(upstream: std::net::SocketAddr) -> CuttingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let budget = Arc::new(AtomicI64::new(i64::MAX));
        let refusing = Arc::new(AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0usize);
        let cuts = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let proxy = CuttingProxy { addr, budget, refusing, refused, cut, cuts };
        let (budget, refusing, refused, cut, cuts) = (
            Arc::clone(&proxy.budget),
            Arc::clone(&proxy.refusing),
            Arc::clone(&proxy.refused),
            proxy.cut.clone(),
            Arc::clone(&proxy.cuts),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let (budget, cut, cuts) = (Arc::clone(&budget), cut.clone(), Arc::clone(&cuts));
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let mut ended = cut.subscribe();
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = tokio::io::copy(&mut client_read, &mut server_write);
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = server_read.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            // The cut comes before these bytes: this connection ends here, the
                            // others at their next turn.
                            if budget.fetch_sub(n as i64, Ordering::SeqCst) - (n as i64) < 0 {
                                budget.store(i64::MAX, Ordering::SeqCst);
                                cuts.fetch_add(1, Ordering::SeqCst);
                                cut.send_modify(|generation| *generation += 1);
                                return Ok(());
                            }
                            client_write.write_all(&buf[..n]).await?;
                        }
                    };
                    // Both halves are dropped, and so the connection closed, when either side
                    // ends or a cut comes.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = ended.changed() => {}
                    }
                });
            }
        });
        proxy
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn cut_after(&self, bytes: i64) {
        self.budget.store(bytes, Ordering::SeqCst);
    }

    fn cut_all(&self) {
        self.cuts.fetch_add(1, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_cut_mid_list_is_an_error_and_a_watch_cut_mid_stream_converges() {
    let _turn = TURNS.lock().await;
    let cp = ControlPlane::get();
    let upstream: std::net::SocketAddr =
        cp.api_url.trim_start_matches("https://").trim_end_matches('/').parse().expect("the API server's address");
    let proxy = CuttingProxy::start(upstream).await;
    // 200 ConfigMaps of 2 KiB: a page of 200 is some 450 KB on the wire.
    let fixture = Fixture::new("cut", 200, 2048, Some(&proxy.url())).await;
    let full = fixture.page(200, &Value::Null).await;
    assert_eq!(names_of(&full), expected(200), "{}", full["errors"]);

    // Mid-list: the connection goes after 64 KiB of the answer.
    proxy.cut_after(64 * 1024);
    let cut = fixture.page(200, &Value::Null).await;
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 1, "the proxy cut the list");
    let (code, message) = first_error(&cut);
    assert_eq!(code, "CLUSTER_UNREACHABLE", "{message}");
    assert!(cut["data"].is_null() || cut["data"]["cluster"].is_null(), "no half page: {cut}");
    // The next request gets a new connection and the whole page.
    assert_eq!(names_of(&fixture.page(200, &Value::Null).await), expected(200));

    // Mid-watch: every connection cut, and new ones refused until kubegql has tried again, while
    // objects change; the subscription converges without a duplicate or a gap.
    let mut rx = follow(&fixture).await;
    let initial = events_until(&mut rx, |s| s.len() == 200).await;
    assert_eq!(initial.len(), 200);
    proxy.refusing.store(true, Ordering::SeqCst);
    proxy.cut_all();
    fixture.configmaps.create(&PostParams::default(), &config_map("during-cut", "y")).await.unwrap();
    fixture.configmaps.delete("cm-0007", &DeleteParams::default()).await.unwrap();
    let refused = Arc::clone(&proxy.refused);
    common::eventually("kubegql tries to reconnect", Duration::from_secs(30), || async {
        refused.load(Ordering::SeqCst) > 0
    })
    .await;
    proxy.refusing.store(false, Ordering::SeqCst);
    fixture.configmaps.create(&PostParams::default(), &config_map("after-cut", "y")).await.unwrap();
    let seen = events_until(&mut rx, |s| {
        ["during-cut", "after-cut"].iter().all(|n| s.contains_key(&key("ADDED", n)))
            && s.contains_key(&key("DELETED", "cm-0007"))
    })
    .await;
    for (kind, name) in [("ADDED", "during-cut"), ("ADDED", "after-cut"), ("DELETED", "cm-0007")] {
        assert_eq!(seen.get(&key(kind, name)), Some(&1), "{kind} {name}: {seen:?}");
    }
    assert_eq!(seen.len(), 3, "nothing else: {seen:?}");
    fixture.drop().await;
}
