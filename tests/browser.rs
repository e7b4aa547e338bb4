//! The pages in a real browser (headless Chromium, see `common/browser.rs`): GraphiQL and the
//! dashboard render with nothing but kubegql to talk to, sign in with a token, run queries and
//! subscriptions; a page on another origin is allowed or refused by the operator's CORS list.

mod common;
#[path = "common/browser.rs"]
mod browser;

use std::time::Duration;

use browser::{Browser, Page};
use common::{Backend, TestDb, TestServer};
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
    format!("(document.querySelector('.{class} .CodeMirror') || {{CodeMirror: {{getValue: () => ''}}}}).CodeMirror.getValue()")
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
