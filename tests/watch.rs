//! Live resource events against the real control plane: shared upstream watches, rate limiting
//! with coalescing, SSE and both WebSocket protocols, and bad input.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, unique_namespace};
use common::{Backend, TestDb, TestServer, settings_for};
use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const EVENTS: &str = "subscription($id: ID!, $ns: String, $rate: Int, $initial: Boolean, $types: [WatchEventType!], $labels: String, $kind: String!) {
  resourceEvents(clusterId: $id, kind: $kind, namespace: $ns, maxEventsPerSecond: $rate, sendInitialState: $initial, eventTypes: $types, labelSelector: $labels) {
    type resourceVersion resource { metadata { name } json } } }";

async fn setup(
    settings_change: impl FnOnce(&mut kubegql::settings::ServeSettings),
) -> (ControlPlane, TestDb, TestServer, String, kube::Client, String) {
    let cp = ControlPlane::get();
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings_change(&mut settings);
    let server = TestServer::start_with(settings).await;
    let id = server.control_plane_cluster(&cp, "watch", json!({})).await;
    let client = cp.client("admin").await;
    let ns = unique_namespace("watch");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap())
        .await
        .unwrap();
    (cp, db, server, id, client, ns)
}

/// A subscription over SSE to the events query.
async fn sse(
    server: &TestServer,
    token: &str,
    variables: Value,
) -> Result<mpsc::UnboundedReceiver<Value>, (u16, Value)> {
    server.subscribe_sse(token, EVENTS, variables).await
}

/// A subscription over a WebSocket protocol: its payloads arrive on the channel.
async fn websocket(server: &TestServer, protocol: &str, variables: Value) -> mpsc::UnboundedReceiver<Value> {
    let mut request = format!("ws://{}/graphql/ws", server.server.addr).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", server.token) } });
    socket.send(Message::Text(init.to_string().into())).await.unwrap();
    let start = if protocol == "graphql-ws" { "start" } else { "subscribe" };
    let subscribe = json!({ "id": "1", "type": start, "payload": { "query": EVENTS, "variables": variables } });
    socket.send(Message::Text(subscribe.to_string().into())).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = tokio::select! { m = socket.next() => m, _ = tx.closed() => None } {
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if matches!(value["type"].as_str(), Some("next" | "data")) && tx.send(value["payload"].clone()).is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

/// (type, name) of the next event, within a time limit.
async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> (String, String, Value) {
    let payload =
        tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("an event in time").expect("stream open");
    assert!(payload.get("errors").is_none(), "{payload}");
    let event = &payload["data"]["resourceEvents"];
    (
        event["type"].as_str().unwrap().to_owned(),
        event["resource"]["metadata"]["name"].as_str().unwrap_or("").to_owned(),
        event.clone(),
    )
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(
        json!({ "metadata": { "name": name, "labels": { "watch": "yes" } }, "data": { "v": value } }),
    )
    .unwrap()
}

async fn change(configmaps: &Api<ConfigMap>, name: &str, value: &str) {
    let patch = json!({ "data": { "v": value } });
    configmaps.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribers_share_one_upstream_and_see_every_change() {
    let (_cp, _db, server, id, client, ns) = setup(|s| s.watch.grace_secs = 1).await;
    let vars = json!({ "id": id, "ns": ns, "kind": "ConfigMap", "labels": "watch=yes" });
    let mut first = sse(&server, &server.token, vars.clone()).await.unwrap();
    let mut second = websocket(&server, "graphql-transport-ws", vars.clone()).await;
    let hub = &server.server.watch_hub;
    // Both subscribed, and the watch has listed (what exists before that is not a change).
    common::eventually("both subscribed to one listed watch", Duration::from_secs(20), || async {
        hub.subscription_count() == 2 && hub.listed_upstream_count() == 1
    })
    .await;
    assert_eq!((hub.upstream_count(), hub.upstream_starts()), (1, 1), "one upstream watch for both");
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("kubegql_watch_upstreams 1\n") && metrics.contains("kubegql_watch_subscriptions 2\n"),
        "{metrics}"
    );

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    // Each change is awaited by both subscribers before the next: changes to one object that
    // queue up faster than a subscriber reads are coalesced (the latest state wins), by design.
    configmaps.create(&PostParams::default(), &configmap("shared", "1")).await.unwrap();
    for rx in [&mut first, &mut second] {
        let (kind, name, _) = next(rx).await;
        assert_eq!((kind.as_str(), name.as_str()), ("ADDED", "shared"));
    }
    change(&configmaps, "shared", "2").await;
    for rx in [&mut first, &mut second] {
        let (kind, _, event) = next(rx).await;
        assert_eq!(kind, "MODIFIED");
        assert_eq!(event["resource"]["json"]["data"]["v"], "2");
    }
    configmaps.delete("shared", &DeleteParams::default()).await.unwrap();
    for rx in [&mut first, &mut second] {
        let (kind, name, _) = next(rx).await;
        assert_eq!((kind.as_str(), name.as_str()), ("DELETED", "shared"));
    }
    // The upstream stops a grace period after the last subscriber leaves.
    drop(first);
    drop(second);
    let mut stopped = false;
    for _ in 0..100 {
        if hub.upstream_count() == 0 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "the upstream stopped after its subscribers left");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_is_rate_limited_and_still_converges() {
    let (_cp, _db, server, id, client, ns) = setup(|_| {}).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for i in 0..20 {
        configmaps.create(&PostParams::default(), &configmap(&format!("burst-{i:02}"), "0")).await.unwrap();
    }
    let vars = json!({ "id": id, "ns": ns, "kind": "ConfigMap", "labels": "watch=yes", "rate": 5, "initial": true });
    let mut rx = sse(&server, &server.token, vars).await.unwrap();
    let started = Instant::now();
    // 2,000 updates: 100 to each of 20 ConfigMaps, 20 at a time (so their order varies; the
    // truth is what the cluster holds afterwards).
    futures_util::stream::iter(0..2000)
        .map(|n| {
            let configmaps = configmaps.clone();
            async move { change(&configmaps, &format!("burst-{:02}", n % 20), &(n / 20 + 1).to_string()).await }
        })
        .buffer_unordered(20)
        .collect::<Vec<_>>()
        .await;
    let truth: BTreeMap<String, String> = configmaps
        .list(&ListParams::default().labels("watch=yes"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|cm| (cm.metadata.name.unwrap(), cm.data.unwrap()["v"].clone()))
        .collect();

    let mut view: BTreeMap<String, String> = BTreeMap::new();
    let mut received = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while view != truth && Instant::now() < deadline {
        let Ok(Some(payload)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await else { break };
        received += 1;
        let event = &payload["data"]["resourceEvents"];
        let name = event["resource"]["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        match event["type"].as_str().unwrap() {
            "DELETED" => {
                view.remove(&name);
            }
            "RESYNC" => view.clear(),
            _ => {
                view.insert(name, event["resource"]["json"]["data"]["v"].as_str().unwrap().to_owned());
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(view, truth, "the subscriber converged on the cluster's state");
    // 5 per second, plus the limiter's burst of 5.
    let allowed = (5.0 * elapsed).ceil() as usize + 5;
    assert!(received <= allowed, "{received} events in {elapsed:.1}s is above the rate (at most {allowed})");
    assert!(received < 2020, "coalesced: {received} events for 2,020 changes");
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_and_both_websocket_protocols_deliver_the_same_events() {
    let (_cp, _db, server, id, client, ns) = setup(|_| {}).await;
    let vars = json!({ "id": id, "ns": ns, "kind": "ConfigMap", "labels": "watch=yes", "types": ["ADDED", "DELETED"] });
    let mut over_sse = sse(&server, &server.token, vars.clone()).await.unwrap();
    let mut modern = websocket(&server, "graphql-transport-ws", vars.clone()).await;
    let mut legacy = websocket(&server, "graphql-ws", vars.clone()).await;
    let hub = std::sync::Arc::clone(&server.server.watch_hub);
    // Subscribed, and the watch has listed (what exists before that is not a change).
    common::eventually("three subscriptions to a listed watch", Duration::from_secs(20), || async {
        hub.subscription_count() == 3 && hub.listed_upstream_count() == 1
    })
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    // The ADDED is awaited before the change and the delete (changes queued faster than a
    // subscriber reads are coalesced, by design), and the change has time to arrive if the
    // server did not filter it out.
    configmaps.create(&PostParams::default(), &configmap("same", "1")).await.unwrap();
    let mut added = Vec::new();
    for rx in [&mut over_sse, &mut modern, &mut legacy] {
        added.push(next(rx).await);
    }
    change(&configmaps, "same", "2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    configmaps.delete("same", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    for (rx, added) in [&mut over_sse, &mut modern, &mut legacy].into_iter().zip(added) {
        let deleted = next(rx).await;
        seen.push((added.0, added.2["resourceVersion"].clone(), deleted.0, deleted.2["resourceVersion"].clone()));
    }
    assert_eq!(seen[0].0, "ADDED");
    assert_eq!(seen[0].2, "DELETED", "MODIFIED was filtered out on the server");
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_subscriptions_get_clear_errors() {
    let (_cp, _db, server, id, _client, ns) = setup(|s| s.watch.max_subscriptions_per_principal = 2).await;
    let error_of = |rx: Result<mpsc::UnboundedReceiver<Value>, (u16, Value)>| async move {
        let mut rx = rx.expect("the stream opens; errors come inside it");
        let payload = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        payload["errors"][0]["extensions"]["code"].as_str().unwrap_or("<none>").to_owned()
    };
    let base = json!({ "id": id, "ns": ns, "kind": "ConfigMap" });
    let mut unknown = base.clone();
    unknown["kind"] = json!("Gizmo");
    assert_eq!(error_of(sse(&server, &server.token, unknown).await).await, "NOT_FOUND");
    let mut selector = base.clone();
    selector["labels"] = json!("a in (");
    assert_eq!(error_of(sse(&server, &server.token, selector).await).await, "BAD_USER_INPUT");
    let mut fast = base.clone();
    fast["rate"] = json!(100_000);
    assert_eq!(error_of(sse(&server, &server.token, fast).await).await, "BAD_USER_INPUT");
    match sse(&server, "kgq_not-a-token", base.clone()).await {
        Err((status, body)) => {
            assert_eq!(status, 401);
            assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
        }
        Ok(_) => panic!("a subscription without a valid token was accepted"),
    }
    // Past the per-principal cap: RATE_LIMITED.
    let _one = sse(&server, &server.token, base.clone()).await.unwrap();
    let _two = sse(&server, &server.token, base.clone()).await.unwrap();
    let hub = std::sync::Arc::clone(&server.server.watch_hub);
    common::eventually("two subscriptions", Duration::from_secs(20), || async { hub.subscription_count() == 2 }).await;
    assert_eq!(error_of(sse(&server, &server.token, base.clone()).await).await, "RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_too_slow_for_churn_gets_a_resync_and_then_the_state() {
    let (_cp, _db, server, id, client, ns) = setup(|s| s.watch.queue_objects = 3).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    configmaps.create(&PostParams::default(), &configmap("stays", "1")).await.unwrap();
    for i in 0..4 {
        configmaps.create(&PostParams::default(), &configmap(&format!("base-{i}"), "1")).await.unwrap();
    }
    let vars = json!({ "id": id, "ns": ns, "kind": "ConfigMap", "labels": "watch=yes", "rate": 2, "initial": true });
    let mut rx = sse(&server, &server.token, vars).await.unwrap();
    // A state larger than the 3 spare places still arrives whole, without a RESYNC.
    let mut initial = Vec::new();
    for _ in 0..5 {
        let (kind, name, _) = next(&mut rx).await;
        assert_eq!(kind, "ADDED", "{initial:?}");
        initial.push(name);
    }
    initial.sort();
    assert_eq!(initial, vec!["base-0", "base-1", "base-2", "base-3", "stays"]);
    // Churn: 10 objects made and removed while the subscriber may take two events a second. Their
    // DELETEs would have to wait one each; past 3 spare places the subscriber is resynced instead.
    for i in 0..10 {
        configmaps.create(&PostParams::default(), &configmap(&format!("churn-{i}"), "x")).await.unwrap();
        configmaps.delete(&format!("churn-{i}"), &DeleteParams::default()).await.unwrap();
    }
    change(&configmaps, "stays", "2").await;
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let (kind, name, event) = next(&mut rx).await;
        let value = event["resource"]["json"]["data"]["v"].as_str().unwrap_or("").to_owned();
        events.push((kind.clone(), name.clone()));
        // The change reaches the subscriber in the state after the RESYNC (ADDED) or, when the
        // state was taken before the change arrived, right after it (MODIFIED).
        if (kind == "ADDED" || kind == "MODIFIED") && name == "stays" && value == "2" {
            break;
        }
    }
    let resync = events.iter().position(|(k, _)| k == "RESYNC").unwrap_or_else(|| panic!("no RESYNC in {events:?}"));
    assert_eq!(events.last().unwrap().1, "stays", "the state follows the RESYNC: {events:?}");
    assert!(
        events[resync..].iter().any(|(k, n)| k == "ADDED" && n == "stays"),
        "the state after the RESYNC holds the object that stayed: {events:?}"
    );
    assert!(resync < events.len() - 1);
    assert!(events.len() < 15, "the churn was not delivered event by event: {events:?}");
}

/// A changed cluster ends its watches (they hold its old client): subscribers are told, with
/// CONFLICT, and a new subscription watches the cluster as it is now.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_cluster_ends_its_watches() {
    let (_cp, _db, server, id, client, ns) = setup(|_| {}).await;
    let vars = json!({ "id": id, "ns": ns, "kind": "ConfigMap", "labels": "watch=yes" });
    let mut rx = sse(&server, &server.token, vars.clone()).await.unwrap();
    let hub = &server.server.watch_hub;
    common::eventually("the upstream watch starts", Duration::from_secs(20), || async { hub.upstream_count() == 1 })
        .await;
    server
        .gql_ok(
            "mutation($id: ID!) { updateCluster(id: $id, input: { labels: [{ key: \"moved\", value: \"yes\" }] }) { id } }",
            json!({ "id": id }),
        )
        .await;
    let told = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("told in time").expect("an event");
    assert_eq!(told["errors"][0]["extensions"]["code"], "CONFLICT", "{told}");
    assert!(told["errors"][0]["message"].as_str().unwrap().contains("subscribe again"), "{told}");
    assert!(
        tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("ends in time").is_none(),
        "the stream ended"
    );
    assert_eq!(hub.upstream_count(), 0, "the upstream is gone at once, not after its grace period");
    // A new subscription works, with a new watch.
    let mut again = sse(&server, &server.token, vars).await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    // What existed before the new watch listed is not a change for this subscriber (it did not
    // ask for the initial state): create once the list is done.
    common::eventually("the new watch has listed", Duration::from_secs(20), || async {
        hub.listed_upstream_count() == 1
    })
    .await;
    configmaps.create(&PostParams::default(), &configmap("after", "1")).await.unwrap();
    let first = next(&mut again).await;
    assert_eq!(first.0, "ADDED");
    assert_eq!(hub.upstream_starts(), 2);
    let _ = Api::<Namespace>::all(client).delete(&ns, &DeleteParams::background()).await;
}

/// Cycling selectors cannot start unbounded upstream watches: those in their grace period count
/// against the principal, and new ones start at a bounded rate.
#[tokio::test(flavor = "multi_thread")]
async fn cycling_selectors_cannot_start_unbounded_watches() {
    let (_cp, _db, server, id, client, ns) = setup(|s| {
        s.watch.grace_secs = 300;
        s.watch.max_upstreams_per_principal = 2;
        s.watch.upstream_starts_per_minute = 3;
    })
    .await;
    let hub = &server.server.watch_hub;
    let subscribe = |labels: &str| {
        sse(&server, &server.token, json!({ "id": id, "ns": ns, "kind": "ConfigMap", "labels": labels }))
    };
    // Two selectors, each subscription dropped at once: their upstreams live on in their grace.
    for (i, labels) in ["cycle=1", "cycle=2"].into_iter().enumerate() {
        let rx = subscribe(labels).await.unwrap();
        common::eventually("the upstream starts", Duration::from_secs(20), || async { hub.upstream_count() == i + 1 })
            .await;
        drop(rx);
    }
    let admin = server.gql_ok("{ viewer { id } }", json!({})).await["viewer"]["id"].as_str().unwrap().to_owned();
    assert_eq!(hub.upstreams_of(&admin), 2);
    // A third selector is one over the cap; rejoining a live upstream is not a new one.
    let (status, body) = match subscribe("cycle=3").await {
        Ok(mut rx) => {
            (200, tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap_or_default())
        }
        Err(refused) => refused,
    };
    assert!(
        body.to_string().contains("RATE_LIMITED") && body.to_string().contains("at most 2 upstream"),
        "{status} {body}"
    );
    common::eventually("both watches have listed", Duration::from_secs(20), || async {
        hub.listed_upstream_count() == 2
    })
    .await;
    let mut rejoined = subscribe("cycle=1").await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    // The subscription joins the upstream once its stream is first polled, after the answer's
    // headers: a change made before that is not an event for it. So changes are made until one
    // arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        let name = format!("c1-{}", uuid::Uuid::new_v4().simple());
        let labelled: ConfigMap =
            serde_json::from_value(json!({ "metadata": { "name": name, "labels": { "cycle": "1" } } })).unwrap();
        configmaps.create(&PostParams::default(), &labelled).await.unwrap();
        if let Ok(event) = tokio::time::timeout(Duration::from_secs(2), rejoined.recv()).await {
            break event.expect("stream open");
        }
        assert!(Instant::now() < deadline, "the rejoined subscription saw no change");
    };
    assert_eq!(event["data"]["resourceEvents"]["type"], "ADDED", "{event}");
    assert_eq!(hub.upstream_starts(), 2);
    let _ = Api::<Namespace>::all(client).delete(&ns, &DeleteParams::background()).await;
}

/// New upstream watches start at a bounded rate per principal: at the budget passes, one more
/// is refused.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_watches_start_at_a_bounded_rate() {
    let (_cp, _db, server, id, client, ns) = setup(|s| {
        s.watch.grace_secs = 0;
        s.watch.upstream_starts_per_minute = 3;
    })
    .await;
    let subscribe = |labels: String| {
        sse(&server, &server.token, json!({ "id": id, "ns": ns, "kind": "ConfigMap", "labels": labels }))
    };
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(subscribe(format!("rate={i}")).await.expect("within the budget"));
    }
    let hub = &server.server.watch_hub;
    common::eventually("three upstream watches start", Duration::from_secs(20), || async {
        hub.upstream_starts() == 3
    })
    .await;
    let refused = match subscribe("rate=3".into()).await {
        Ok(mut rx) => tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap_or_default(),
        Err((_, body)) => body,
    };
    assert!(refused.to_string().contains("at most 3 new upstream watches per principal per minute"), "{refused}");
    drop(open);
    let _ = Api::<Namespace>::all(client).delete(&ns, &DeleteParams::background()).await;
}

/// The first subscriber of a new upstream watch that did not ask for the initial state gets only
/// what changes after it subscribed, not the watch's first list as ADDED.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_initial_state_the_first_subscriber_gets_only_changes() {
    let (_cp, _db, server, id, client, ns) = setup(|_| {}).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for name in ["before-1", "before-2", "before-3"] {
        configmaps.create(&PostParams::default(), &configmap(name, "1")).await.unwrap();
    }
    let vars = json!({ "id": id, "ns": ns, "kind": "ConfigMap", "labels": "watch=yes" });
    let mut rx = sse(&server, &server.token, vars).await.unwrap();
    let hub = &server.server.watch_hub;
    common::eventually("the upstream watch starts", Duration::from_secs(20), || async { hub.upstream_count() == 1 })
        .await;
    common::eventually("the watch has listed", Duration::from_secs(20), || async { hub.listed_upstream_count() == 1 })
        .await;
    change(&configmaps, "before-2", "2").await;
    // The first event is that change, not an ADDED for each object that existed before.
    let first = next(&mut rx).await;
    assert_eq!((first.0.as_str(), first.1.as_str()), ("MODIFIED", "before-2"), "{first:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_watch_is_not_cut_by_the_read_timeout_and_still_sees_changes() {
    // A 6 s read timeout: kubegql asks the API server to end each watch request after 1 s, so
    // that a quiet watch ends cleanly and resumes instead of being cut as a stalled read.
    let (_cp, _db, server, id, client, ns) = setup(|s| s.clients.read_timeout_secs = 6).await;
    let mut events =
        sse(&server, &server.token, json!({ "id": id, "ns": ns, "kind": "ConfigMap", "labels": "watch=yes" }))
            .await
            .unwrap();
    let hub = &server.server.watch_hub;
    common::eventually("the watch has listed", Duration::from_secs(20), || async { hub.listed_upstream_count() == 1 })
        .await;
    // The scenario is a quiet period: twice the read timeout without a change.
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(hub.interruptions(), 0, "a quiet watch request failed instead of ending");
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns);
    configmaps.create(&PostParams::default(), &configmap("after-quiet", "1")).await.unwrap();
    let (kind, name, _) = next(&mut events).await;
    assert_eq!((kind.as_str(), name.as_str()), ("ADDED", "after-quiet"));
    assert_eq!(hub.interruptions(), 0);
}
