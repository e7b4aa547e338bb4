//! The pages in a real browser (headless Chromium, see `common/browser.rs`): GraphiQL and the
//! dashboard render with nothing but kubegql to talk to, sign in with a token, run queries and
//! subscriptions; a page on another origin is allowed or refused by the operator's CORS list.

use crate::common::{self, browser};

use std::time::Duration;

use browser::{Browser, Page};
use common::control_plane::{ControlPlane, ready_namespace, running_pod, unique_namespace};
use common::{Backend, TestDb, TestServer, settings_for};
use serde_json::json;

const SOON: Duration = Duration::from_secs(20);

/// Every URL the page asked for is kubegql's own (or the page's own `about:`/`data:` content).
fn assert_only_from(page: &Page, origin: &str) {
    let urls = page.requested_urls();
    assert!(!urls.is_empty(), "the page asked for nothing at all");
    let ws_origin = origin.replacen("http://", "ws://", 1);
    let foreign: Vec<&String> = urls
        .iter()
        .filter(|url| {
            !(url.starts_with(&format!("{origin}/"))
                || url.starts_with(&format!("{ws_origin}/"))
                || url.starts_with("data:")
                || url.starts_with("about:"))
        })
        .collect();
    assert!(foreign.is_empty(), "requests that left kubegql: {foreign:?}");
}

/// The GraphiQL editor's text (CodeMirror, as GraphiQL 4 draws it), by the editor's class.
fn editor_value(class: &str) -> String {
    format!(
        "(document.querySelector('.{class} .CodeMirror') || {{CodeMirror: {{getValue: () => ''}}}}).CodeMirror.getValue()"
    )
}

/// Puts `query` into GraphiQL's editor and waits until GraphiQL has parsed it (it does so a moment
/// after each change, and runs what it parsed).
async fn set_query(page: &Page, query: &str) {
    let editor = "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror";
    page.eval(&format!("{editor}.setValue({})", json!(query))).await;
    page.wait_for(
        "GraphiQL parsed the query",
        &format!("(e => !!e.documentAST && e.documentAST.loc.source.body === e.getValue())({editor})"),
        SOON,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graphiql_loads_the_schema_after_the_token_and_runs_a_query_and_a_subscription_offline() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let browser = Browser::start().await;
    let page = browser.page().await;
    page.open(&server.url("/graphiql")).await;
    page.wait_for("GraphiQL drawn", "!!document.querySelector('.graphiql-container')", SOON).await;

    // Without a token the schema cannot load: the page says so, and the API's answer is shown.
    assert!(page.text("#who").await.contains("enter a token"), "{}", page.text("#who").await);

    page.type_into("#token", &server.token).await;
    page.click("#signin button[type=submit]").await;
    page.wait_for("signed in", "document.querySelector('#who').innerText.includes('signed in')", SOON).await;
    assert_eq!(page.eval("document.querySelector('#token').value").await, json!(""), "the field is cleared");
    assert_eq!(page.eval("sessionStorage.getItem('kubegql.token')").await, json!(server.token));
    assert!(!page.eval("location.href").await.as_str().unwrap().contains(&server.token), "never in the URL");

    // The schema is loaded: the documentation explorer lists the root types.
    page.click(".graphiql-sidebar button").await;
    page.wait_for(
        "the documentation explorer shows the schema",
        "(() => { const d = document.querySelector('.graphiql-doc-explorer'); \
          return !!d && d.innerText.includes('Subscription') && d.innerText.includes('Mutation'); })()",
        SOON,
    )
    .await;

    // A query, through the editor and the run button.
    set_query(&page, "{ viewer { name role tenant } }").await;
    page.click(".graphiql-execute-button").await;
    page.wait_for("the query's answer", &format!("{}.includes('\"ADMIN\"')", editor_value("result-window")), SOON)
        .await;
    page.screenshot("graphiql").await;

    // A subscription over graphql-transport-ws: a cluster registered elsewhere appears.
    set_query(&page, "subscription { clusterChanges { kind name } }").await;
    page.click(".graphiql-execute-button").await;
    // The subscription is running once the button offers to stop it.
    page.wait_for(
        "the subscription runs",
        "(document.querySelector('.graphiql-execute-button') || {}).getAttribute('aria-label').startsWith('Stop')",
        SOON,
    )
    .await;
    let create = r#"mutation($n: String!) { createCluster(input: { name: $n, mode: DIRECT, apiServerUrl: "https://127.0.0.1:9", bearerToken: "t" }) { id } }"#;
    let mut n = 0;
    let deadline = std::time::Instant::now() + SOON;
    // The socket opens asynchronously: register clusters until one is seen.
    loop {
        n += 1;
        server.gql_ok(create, json!({ "n": format!("seen-in-graphiql-{n}") })).await;
        let shown = page.eval(&format!("{}.includes('seen-in-graphiql-')", editor_value("result-window"))).await;
        if shown == json!(true) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no clusterChanges event reached GraphiQL; result pane: {}; requests: {:?}; console: {:?}",
            page.eval(&editor_value("result-window")).await,
            page.requested_urls().iter().map(|u| u.chars().take(80).collect::<String>()).collect::<Vec<_>>(),
            page.console()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let result = page.eval(&editor_value("result-window")).await;
    assert!(result.as_str().unwrap().contains("\"CREATED\""), "{result}");
    assert!(
        page.requested_urls().iter().any(|u| u.ends_with("/graphql/ws")),
        "the subscription went over the WebSocket: {:?}",
        page.requested_urls()
    );

    assert_only_from(&page, &server.base);
    assert!(page.exceptions().is_empty(), "uncaught exceptions: {:?}", page.console());
}

/// Signs in on the page with `token` (typed into the field, as a person would).
async fn sign_in(page: &Page, token: &str) {
    page.type_into("#token", token).await;
    page.click("#signin button[type=submit]").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_a_deployment_created_rolled_out_and_deleted_with_kubectl_live() {
    let cp = ControlPlane::get();
    let ns = unique_namespace("ui");
    ready_namespace(&cp.client("admin").await, &ns).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    server.control_plane_cluster(&cp, "dashboard", json!({})).await;

    let browser = Browser::start().await;
    let page = browser.page().await;
    page.open(&server.url("/ui")).await;
    assert!(page.text("#who").await.contains("enter a token"), "{}", page.text("#who").await);
    sign_in(&page, &server.token).await;
    page.wait_for("signed in", "document.querySelector('#who').innerText.includes('ADMIN')", SOON).await;
    page.wait_for("the live connection", "document.querySelector('#live').classList.contains('on')", SOON).await;

    // The cluster, with its status.
    page.wait_for(
        "the cluster and its status",
        "!!document.querySelector(\"#clusters li[data-name='dashboard'] .status.up\")",
        SOON,
    )
    .await;
    assert!(page.text("#clusters li[data-name='dashboard'] .status").await.contains("reachable, v1."));
    page.click("#clusters li[data-name='dashboard']").await;
    page.wait_for(
        "the kinds of the cluster",
        "!document.querySelector('#kind').disabled && document.querySelector('#kind').value === 'apps/v1/Deployment'",
        SOON,
    )
    .await;
    page.select("#namespace", &ns).await;
    page.wait_for("the empty first page", "document.querySelector('#counts').innerText.startsWith('0 shown')", SOON)
        .await;

    // Created with kubectl: shown within seconds, with its replicas becoming ready (kwok runs the pods).
    let created = std::time::Instant::now();
    cp.run_kubectl(&["-n", &ns, "create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2"]);
    let row = "#objects tr[data-name='web']";
    page.wait_for("the new Deployment in the list", &format!("!!document.querySelector(\"{row}\")"), SOON).await;
    eprintln!("the Deployment appeared {:?} after kubectl created it", created.elapsed());
    page.wait_for(
        "its replicas ready (READY 2/2, as kubectl prints it)",
        &format!("document.querySelector(\"{row} td:nth-child(2)\").innerText === '2/2'"),
        Duration::from_secs(60),
    )
    .await;
    assert!(page.text("#counts").await.contains("1 shown"), "{}", page.text("#counts").await);

    // Opened: its YAML and its events.
    page.click(row).await;
    page.wait_for("its YAML", "document.querySelector('#yaml').innerText.includes('name: web')", SOON).await;
    page.wait_for(
        "its events",
        "document.querySelector('#events tbody').innerText.includes('ScalingReplicaSet')",
        SOON,
    )
    .await;

    // A rollout followed live: paused, changed (the page shows it waiting), resumed, finished.
    cp.run_kubectl(&["-n", &ns, "rollout", "pause", "deployment/web"]);
    cp.run_kubectl(&["-n", &ns, "set", "image", "deployment/web", "web=registry.invalid/web:2"]);
    page.click("#follow").await;
    page.wait_for(
        "the rollout waiting",
        "document.querySelector('#rollout').innerText.includes('Waiting for deployment')",
        SOON,
    )
    .await;
    cp.run_kubectl(&["-n", &ns, "rollout", "resume", "deployment/web"]);
    page.wait_for(
        "the rollout finished",
        "(document.querySelector('#rollout li.done') || {innerText: ''}).innerText.includes('successfully rolled out')",
        Duration::from_secs(60),
    )
    .await;
    page.wait_for(
        "the new image in the YAML",
        "document.querySelector('#yaml').innerText.includes('registry.invalid/web:2')",
        SOON,
    )
    .await;
    page.screenshot("dashboard").await;

    // Deleted with kubectl: gone from the list.
    cp.run_kubectl(&["-n", &ns, "delete", "deployment", "web", "--wait=false"]);
    page.wait_for("the Deployment gone", &format!("!document.querySelector(\"{row}\")"), SOON).await;
    page.wait_for(
        "the open Deployment marked deleted",
        "document.querySelector('#detail-title').innerText.endsWith('(deleted)')",
        SOON,
    )
    .await;
    let counts = page.text("#counts").await;
    assert!(counts.starts_with("0 shown") && counts.contains("1 deleted"), "{counts}");

    assert_eq!(page.text("#errors").await, "", "no API error was shown");
    assert_only_from(&page, &server.base);
    assert!(page.exceptions().is_empty(), "uncaught exceptions: {:?}", page.console());
    cp.run_kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The headers of the dashboard's list, joined by commas.
const HEADERS: &str = "[...document.querySelectorAll('#objects thead th')].map(t => t.innerText).join(',')";

/// Signs in, opens the cluster and shows `kind` (`group/version/Kind`) in `namespace`.
async fn show(page: &Page, token: &str, cluster: &str, kind: &str, namespace: &str) {
    sign_in(page, token).await;
    let item = format!("#clusters li[data-name='{cluster}']");
    page.wait_for("the cluster", &format!("!!document.querySelector(\"{item}\")"), SOON).await;
    page.click(&item).await;
    page.wait_for("the kinds of the cluster", "!document.querySelector('#kind').disabled", SOON).await;
    page.select("#kind", kind).await;
    page.select("#namespace", namespace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_draws_kubectls_columns_offers_what_the_caller_may_do_and_previews_an_edit() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("ui-table");
    ready_namespace(&client, &ns).await;
    cp.run_kubectl(&["-n", &ns, "create", "configmap", "cfg", "--from-literal=k=v"]);
    running_pod(
        &client,
        &ns,
        json!({
            "metadata": { "name": "ticker" },
            "spec": { "containers": [{ "name": "main", "image": "registry.invalid/ticker:1" }] }
        }),
    )
    .await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    server.control_plane_cluster(&cp, "tables", json!({})).await;
    let (_, viewer) = server.principal("vera", "VIEWER").await;

    let browser = Browser::start().await;
    let page = browser.page().await;
    page.open(&server.url("/ui")).await;
    show(&page, &server.token, "tables", "/v1/ConfigMap", &ns).await;

    // kubectl's columns, drawn by the API server; a row changes in place when its object does.
    page.wait_for("the ConfigMap columns", &format!("{HEADERS} === 'NAME,DATA,AGE'"), SOON).await;
    let data_cell =
        "(document.querySelector(\"#objects tr[data-name='cfg'] td:nth-child(2)\") || {innerText: ''}).innerText";
    page.wait_for("cfg with one key", &format!("{data_cell} === '1'"), SOON).await;
    cp.run_kubectl(&["-n", &ns, "patch", "configmap", "cfg", "--type=merge", "-p", r#"{"data":{"k2":"v2"}}"#]);
    page.wait_for("cfg's row updated live", &format!("{data_cell} === '2'"), SOON).await;

    // Edit: the editor holds the object, a preview shows the API server's diff, and only then
    // is it applied.
    page.click("#objects tr[data-name='cfg']").await;
    page.wait_for("Edit offered to an ADMIN", "!document.querySelector('#edit').disabled", SOON).await;
    page.click("#edit").await;
    page.wait_for("the object in the editor", "document.querySelector('#manifest').value.includes('\"k2\"')", SOON)
        .await;
    let mut object: serde_json::Value =
        serde_json::from_str(page.eval("document.querySelector('#manifest').value").await.as_str().unwrap()).unwrap();
    assert!(object.get("status").is_none() && object["metadata"].get("managedFields").is_none(), "{object}");
    object["data"]["k"] = json!("changed");
    page.eval("(e => { e.focus(); e.select(); })(document.querySelector('#manifest'))").await;
    page.call("Input.insertText", json!({ "text": serde_json::to_string_pretty(&object).unwrap() })).await;
    assert_eq!(page.eval("document.querySelector('#apply').disabled").await, json!(true), "no apply before a preview");
    page.click("#preview").await;
    page.wait_for(
        "the preview's diff",
        "document.querySelector('#diff').innerText.includes('-  k: v') && document.querySelector('#diff').innerText.includes('+  k: changed')",
        SOON,
    )
    .await;
    let stored = || cp.run_kubectl(&["-n", &ns, "get", "configmap", "cfg", "-o", "jsonpath={.data.k}"]);
    assert_eq!(stored(), "v", "the preview changed nothing");
    page.screenshot("dashboard-edit-preview").await;
    page.click("#apply").await;
    page.wait_for("applied", "document.querySelector('#applied').innerText.includes('CONFIGURED')", SOON).await;
    assert_eq!(stored(), "changed");

    // Pods: kubectl's columns, and -o wide's with "Wide"; a pod's log followed live.
    page.select("#kind", "/v1/Pod").await;
    page.wait_for("the Pod columns", &format!("{HEADERS} === 'NAME,READY,STATUS,RESTARTS,AGE'"), SOON).await;
    page.wait_for(
        "the pod running",
        "(document.querySelector(\"#objects tr[data-name='ticker']\") || {innerText: ''}).innerText.includes('Running')",
        SOON,
    )
    .await;
    page.click("#wide").await;
    page.wait_for("the wide columns", &format!("{HEADERS}.startsWith('NAME,READY,STATUS,RESTARTS,AGE,IP,NODE')"), SOON)
        .await;
    page.click("#objects tr[data-name='ticker']").await;
    page.wait_for("logs offered", "!document.querySelector('#logs').disabled", SOON).await;
    page.click("#logs").await;
    page.wait_for("log lines", "document.querySelector('#logtext').innerText.trim().length > 0", SOON).await;
    page.screenshot("dashboard-table-logs").await;
    assert_eq!(page.text("#errors").await, "", "no API error was shown");
    assert_only_from(&page, &server.base);
    assert!(page.exceptions().is_empty(), "uncaught exceptions: {:?}", page.console());

    // A VIEWER sees the same list, and Edit is not offered, with kubegql's reason.
    let page = browser.page().await;
    page.open(&server.url("/ui")).await;
    page.eval("window.sessionStorage.clear()").await;
    show(&page, &viewer, "tables", "/v1/ConfigMap", &ns).await;
    page.wait_for("cfg listed", "!!document.querySelector(\"#objects tr[data-name='cfg']\")", SOON).await;
    page.click("#objects tr[data-name='cfg']").await;
    page.wait_for(
        "Edit refused to a VIEWER",
        "document.querySelector('#edit').disabled && document.querySelector('#edit').title.includes('VIEWER')",
        SOON,
    )
    .await;
    assert!(page.exceptions().is_empty(), "uncaught exceptions: {:?}", page.console());
    cp.run_kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A page of another origin: a tiny web server on its own loopback port that answers every
/// request with an empty HTML page. Returns its origin.
async fn elsewhere() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let _ = stream.read(&mut request).await;
                let body = "<!doctype html><title>a frontend elsewhere</title><p>elsewhere</p>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    origin
}

/// In the page: a GraphQL request to kubegql with the token (a CORS request with a preflight).
fn cross_origin_query(base: &str, token: &str, query: &str) -> String {
    format!(
        "fetch({url}, {{ method: 'POST', headers: {{ 'Content-Type': 'application/json', Authorization: 'Bearer ' + {token} }}, \
         body: JSON.stringify({{ query: {query} }}) }}).then(r => r.json()).then(b => ({{ ok: b }}), e => ({{ refused: String(e) }}))",
        url = json!(format!("{base}/graphql")),
        token = json!(token),
        query = json!(query),
    )
}

/// In the page: subscribes to `clusterChanges` over graphql-transport-ws; resolves with the first
/// event, an error, or how the socket closed.
fn cross_origin_ws(base: &str, token: &str) -> String {
    format!(
        "new Promise(resolve => {{ \
           const ws = new WebSocket({url}, 'graphql-transport-ws'); \
           ws.onopen = () => ws.send(JSON.stringify({{ type: 'connection_init', payload: {{ Authorization: 'Bearer ' + {token} }} }})); \
           ws.onmessage = e => {{ const m = JSON.parse(e.data); \
             if (m.type === 'connection_ack') ws.send(JSON.stringify({{ id: '1', type: 'subscribe', payload: {{ query: 'subscription {{ clusterChanges {{ kind name }} }}' }} }})); \
             else if (m.type === 'next') {{ resolve({{ ok: m.payload }}); ws.close(); }} \
             else if (m.type === 'error') resolve({{ error: m.payload }}); }}; \
           ws.onclose = e => resolve({{ closed: e.code }}); }})",
        url = json!(format!("{}/graphql/ws", base.replacen("http://", "ws://", 1))),
        token = json!(token),
    )
}

/// In the page: subscribes to `clusterChanges` over Server-Sent Events (a streamed POST);
/// resolves with the first `next` event's data, or the refusal.
fn cross_origin_sse(base: &str, token: &str) -> String {
    format!(
        "fetch({url}, {{ method: 'POST', headers: {{ 'Content-Type': 'application/json', Accept: 'text/event-stream', \
           Authorization: 'Bearer ' + {token} }}, body: JSON.stringify({{ query: 'subscription {{ clusterChanges {{ kind name }} }}' }}) }}) \
         .then(async r => {{ const reader = r.body.getReader(); const decoder = new TextDecoder(); let text = ''; \
           for (;;) {{ const {{ value, done }} = await reader.read(); if (done) return {{ ended: text }}; text += decoder.decode(value); \
             const at = text.indexOf('event: next'); const end = text.indexOf('\\n\\n', at); \
             if (at >= 0 && end > at) {{ reader.cancel(); const data = text.slice(at, end).split('\\n').find(l => l.startsWith('data:')); \
               return {{ ok: JSON.parse(data.slice(5)) }}; }} }} }}, e => ({{ refused: String(e) }}))",
        url = json!(format!("{base}/graphql/stream")),
        token = json!(token),
    )
}

/// Evaluates a page's subscription script while registering clusters (one every 300 ms) until the
/// page's promise settles; returns what it settled with.
async fn while_clusters_change(page: &Page, server: &TestServer, script: &str, prefix: &str) -> serde_json::Value {
    let create = r#"mutation($n: String!) { createCluster(input: { name: $n, mode: DIRECT, apiServerUrl: "https://127.0.0.1:9", bearerToken: "t" }) { id } }"#;
    let settled = page.eval(script);
    tokio::pin!(settled);
    let deadline = tokio::time::Instant::now() + SOON;
    let mut n = 0;
    loop {
        tokio::select! {
            value = &mut settled => return value,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {
                assert!(tokio::time::Instant::now() < deadline, "{prefix}: the page's subscription saw nothing");
                n += 1;
                server.gql_ok(create, json!({ "n": format!("{prefix}-{n}") })).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frontend_on_a_listed_origin_queries_and_subscribes_and_another_origin_is_refused() {
    let listed = elsewhere().await;
    let unlisted = elsewhere().await;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.origins.cors_allow_origins = vec![listed.clone()];
    let server = TestServer::start_with(settings).await;
    let browser = Browser::start().await;

    // From the listed origin: a query (after its preflight), a WebSocket subscription and an SSE one.
    let page = browser.page().await;
    page.open(&format!("{listed}/")).await;
    assert_eq!(page.eval("location.origin").await, json!(listed));
    let answer = page.eval(&cross_origin_query(&server.base, &server.token, "{ viewer { role } }")).await;
    assert_eq!(answer["ok"]["data"]["viewer"]["role"], "ADMIN", "{answer}");
    let answer = while_clusters_change(&page, &server, &cross_origin_ws(&server.base, &server.token), "over-ws").await;
    assert_eq!(answer["ok"]["data"]["clusterChanges"]["kind"], "CREATED", "{answer}");
    let answer =
        while_clusters_change(&page, &server, &cross_origin_sse(&server.base, &server.token), "over-sse").await;
    assert_eq!(answer["ok"]["data"]["clusterChanges"]["kind"], "CREATED", "{answer}");

    // From another origin: the browser is refused every way, and nothing was done.
    let page = browser.page().await;
    page.open(&format!("{unlisted}/")).await;
    let before = server.cluster_count().await;
    let create = r#"mutation { createCluster(input: { name: "from-elsewhere", mode: DIRECT, apiServerUrl: "https://127.0.0.1:9", bearerToken: "t" }) { id } }"#;
    for query in ["{ viewer { role } }", create] {
        let answer = page.eval(&cross_origin_query(&server.base, &server.token, query)).await;
        assert!(answer["refused"].as_str().is_some_and(|e| e.contains("Failed to fetch")), "{query}: {answer}");
    }
    assert_eq!(server.cluster_count().await, before, "the refused mutation did nothing");
    let answer = page.eval(&cross_origin_ws(&server.base, &server.token)).await;
    assert_eq!(answer, json!({ "closed": 1006 }), "the WebSocket upgrade is refused");
    let answer = page.eval(&cross_origin_sse(&server.base, &server.token)).await;
    assert!(answer["refused"].as_str().is_some_and(|e| e.contains("Failed to fetch")), "{answer}");
    // What the browser said about the refused requests: CORS, not a network failure.
    let failed = page.failed_requests();
    assert!(
        failed.iter().any(|(url, why)| url.ends_with("/graphql") && why["corsErrorStatus"].is_object()),
        "{failed:?}"
    );
}

/// Opens the dashboard, signs in, and shows `kind` in `namespace` of the cluster `cluster`.
async fn dashboard_at(page: &Page, server: &TestServer, cluster: &str, kind: &str, namespace: &str) {
    page.open(&server.url("/ui")).await;
    sign_in(page, &server.token).await;
    let item = format!("#clusters li[data-name='{cluster}']");
    page.wait_for("the cluster", &format!("!!document.querySelector({})", json!(item)), SOON).await;
    page.click(&item).await;
    page.wait_for("the kinds of the cluster", "!document.querySelector('#kind').disabled", SOON).await;
    page.select("#kind", kind).await;
    page.select("#namespace", namespace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_pages_on_the_server_shows_api_errors_and_a_resync_then_converges() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("ui-resync");
    ready_namespace(&client, &ns).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let configmap = |name: &str, value: &str| -> ConfigMap {
        serde_json::from_value(json!({ "metadata": { "name": name }, "data": { "v": value } })).unwrap()
    };
    // More than one page (50): 55 here, with `a-stays` first and the namespace's own CA bundle.
    configmaps.create(&PostParams::default(), &configmap("a-stays", "1")).await.unwrap();
    for i in 0..54 {
        configmaps.create(&PostParams::default(), &configmap(&format!("b-{i:02}"), "1")).await.unwrap();
    }
    common::eventually("the namespace's CA bundle", SOON, || async {
        configmaps.get_opt("kube-root-ca.crt").await.ok().flatten().is_some()
    })
    .await;

    // A small queue and a slow default rate, so that churn overflows the subscriber.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = settings_for(&db);
    settings.watch.queue_objects = 3;
    settings.watch.default_events_per_second = 2;
    let server = TestServer::start_with(settings).await;
    server.control_plane_cluster(&cp, "paging", json!({})).await;
    let browser = Browser::start().await;
    let page = browser.page().await;

    // A refused token: the API's answer is on the page, with its code.
    page.open(&server.url("/ui")).await;
    sign_in(&page, "kgq_not-a-token").await;
    page.wait_for("the refusal shown", "document.querySelector('#errors').innerText.includes('UNAUTHENTICATED')", SOON)
        .await;
    assert!(page.text("#who").await.contains("not signed in"));

    // The first view is one server-side page; the next page comes on demand.
    dashboard_at(&page, &server, "paging", "/v1/ConfigMap", &ns).await;
    assert_eq!(page.text("#errors").await, "", "signing in again cleared the refusal");
    page.wait_for("the first page", "document.querySelector('#counts').innerText.startsWith('50 shown')", SOON).await;
    assert!(page.text("#counts").await.contains("(more pages)"), "{}", page.text("#counts").await);
    page.click("#more").await;
    page.wait_for("the second page", "document.querySelector('#counts').innerText.startsWith('56 shown')", SOON).await;
    assert!(!page.text("#counts").await.contains("more pages"));
    assert_eq!(page.eval("document.querySelector('#more').hidden").await, json!(true));
    assert_eq!(page.eval("document.querySelector('#resync').hidden").await, json!(true), "no RESYNC yet");

    // Churn faster than the subscriber may take (two events a second; each deletion waits, and
    // the queue holds the 56 watched objects and 3 more): a visible RESYNC, then the list as it
    // is now.
    for i in 0..70 {
        configmaps.create(&PostParams::default(), &configmap(&format!("churn-{i}"), "x")).await.unwrap();
        configmaps.delete(&format!("churn-{i}"), &DeleteParams::default()).await.unwrap();
    }
    let patch = json!({ "data": { "v": "2" } });
    configmaps.patch("a-stays", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    page.wait_for(
        "the RESYNC shown",
        "document.querySelector('#resync').innerText.includes('RESYNC')",
        Duration::from_secs(30),
    )
    .await;
    assert!(!page.text("#counts").await.contains(" 0 resyncs"), "{}", page.text("#counts").await);
    // After the reload: the first page again, none of the churned objects, the last change in.
    page.wait_for(
        "the list rebuilt",
        "document.querySelector('#counts').innerText.startsWith('50 shown') && !document.querySelector(\"#objects tr[data-name^='churn-']\")",
        Duration::from_secs(30),
    )
    .await;
    page.click("#objects tr[data-name='a-stays']").await;
    page.wait_for(
        "the object as it is now",
        "document.querySelector('#yaml').innerText.includes(\"v: \\\"2\\\"\")",
        SOON,
    )
    .await;
    assert!(page.exceptions().is_empty(), "uncaught exceptions: {:?}", page.console());
    cp.run_kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_execs_in_a_pod_with_the_token_as_a_websocket_subprotocol() {
    let cp = ControlPlane::get();
    let client = cp.client("admin").await;
    let ns = unique_namespace("ui-exec");
    ready_namespace(&client, &ns).await;
    let pod = json!({
        "metadata": { "name": "shell" },
        "spec": { "containers": [{ "name": "main", "image": "registry.invalid/shell:1" }] }
    });
    common::control_plane::running_pod(&client, &ns, pod).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let id = server.control_plane_cluster(&cp, "exec-from-a-page", json!({})).await;
    let (_, operator) = server.principal("olga", "OPERATOR").await;

    let browser = Browser::start().await;
    let page = browser.page().await;
    page.open(&server.url("/ui")).await;
    // A browser cannot set headers on a WebSocket: the token travels as a subprotocol, as the
    // Kubernetes API server takes it.
    let url = format!(
        "{}/api/v1/clusters/{id}/namespaces/{ns}/pods/shell/exec?command=echo&command=from%20a%20browser",
        server.base.replacen("http://", "ws://", 1)
    );
    let script = format!(
        "new Promise(resolve => {{ \
           const token = btoa({token}).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, ''); \
           const ws = new WebSocket({url}, ['v1.exec.kubegql', 'base64url.bearer.authorization.k8s.io.' + token]); \
           ws.binaryType = 'arraybuffer'; let out = ''; let status = null; \
           ws.onmessage = e => {{ const bytes = new Uint8Array(e.data); const text = new TextDecoder().decode(bytes.slice(1)); \
             if (bytes[0] === 1) out += text; if (bytes[0] === 3) status = JSON.parse(text); }}; \
           ws.onclose = e => resolve({{ out, status, protocol: ws.protocol }}); }})",
        token = json!(operator),
        url = json!(url),
    );
    let answer = page.eval(&script).await;
    assert_eq!(answer["out"], "from a browser\n", "{answer}");
    assert_eq!(answer["status"]["status"], "Success", "{answer}");
    assert_eq!(answer["protocol"], "v1.exec.kubegql", "{answer}");
    cp.run_kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
