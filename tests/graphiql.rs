//! The GraphiQL page is served whole by kubegql: every file it loads is embedded, comes from this
//! server, matches the digest recorded for it, and the page's policy allows nothing else.
//! (That it renders and runs in a browser is checked with the browser tests.)

use crate::common;

use common::{Backend, TestDb, TestServer};
use sha2::Digest;

fn recorded_digests() -> Vec<(String, String)> {
    let sums = std::fs::read_to_string(common::control_plane::project_dir().join("assets/vendor/SHA256SUMS")).unwrap();
    sums.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (digest, file) = l.split_once("  ").expect("sha256sum format");
            (file.to_owned(), digest.to_owned())
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_everything_it_loads_come_from_kubegql() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let page = server.client.get(server.url("/graphiql")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    for directive in ["default-src 'self'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert!(!policy.contains("http"), "no other origin: {policy}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"), "{html}");
    assert!(!html.contains("<script>") && !html.contains("onload="), "no inline script (the policy forbids it)");

    // Every file the page names is served from here, with its type.
    let referenced: Vec<&str> = html.split(['"', '\'']).filter(|part| part.starts_with("/assets/")).collect();
    assert!(referenced.len() >= 6, "{referenced:?}");
    let recorded = recorded_digests();
    assert_eq!(recorded.len(), 4, "four vendored files: {recorded:?}");
    for path in &referenced {
        let answer = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        let content_type = answer.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with(if path.ends_with(".js") { "text/javascript" } else { "text/css" }),
            "{path}: {content_type}"
        );
        let cache = answer.headers()["cache-control"].to_str().unwrap().to_owned();
        let bytes = answer.bytes().await.unwrap();
        // Vendored files: the bytes recorded in SHA256SUMS, cached for a year under their versioned URL.
        if let Some(vendored) = path.strip_prefix("/assets/vendor/") {
            let (_, digest) = recorded
                .iter()
                .find(|(file, _)| file == vendored)
                .unwrap_or_else(|| panic!("{vendored} is not recorded"));
            assert_eq!(&hex(&bytes), digest, "{vendored} is not the recorded release file");
            assert!(cache.contains("immutable"), "{path}: {cache}");
        } else {
            assert_eq!(cache, "no-cache", "{path}");
        }
    }
    // The files on disk match the record too (an update must update both).
    for (file, digest) in &recorded {
        let bytes = std::fs::read(common::control_plane::project_dir().join("assets/vendor").join(file)).unwrap();
        assert_eq!(&hex(&bytes), digest, "{file}");
    }
    let missing = server.client.get(server.url("/assets/vendor/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_is_served_whole_under_a_policy_without_inline_code_or_styles() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let page = server.client.get(server.url("/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    for directive in ["default-src 'self'", "script-src 'self'", "style-src 'self';", "connect-src 'self'"] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert!(!policy.contains("unsafe") && !policy.contains("http"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>") && !html.contains("style=") && !html.contains("http"), "{html}");
    let referenced: Vec<&str> = html.split('"').filter(|part| part.starts_with("/assets/")).collect();
    assert_eq!(referenced, ["/assets/ui.css", "/assets/sso.js", "/assets/ui.js"]);
    for path in referenced {
        let answer = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        let script = answer.text().await.unwrap();
        // The dashboard talks to this server only, through the public API.
        assert!(!script.contains("http://") && !script.contains("https://"), "{path}");
    }
}
