//! The GraphiQL page, the dashboard (`/ui`), and the files they load, all embedded in the binary:
//! the pages work with no network at all. Third-party browser builds live in `assets/vendor/`
//! (see its README); their URLs carry their versions, so browsers may keep them for a year. Each
//! page's Content-Security-Policy allows this server only.

use axum::extract::Path;

use super::*;

/// The policy of the GraphiQL page: scripts, styles, fonts and connections (WebSockets
/// included) from this server only. GraphiQL sets style attributes and adds style elements as it
/// draws, hence `'unsafe-inline'` for styles (and for nothing else).
pub(super) const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// An embedded file: its path under `/assets/`, its bytes, its type, and whether its URL names a
/// version (and so never changes).
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
    content_type: &'static str,
    versioned: bool,
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// An embedded file of `assets/`, by its path there.
macro_rules! asset {
    ($path:literal, $content_type:expr, versioned: $versioned:literal) => {
        Asset {
            path: $path,
            bytes: include_bytes!(concat!("../../assets/", $path)),
            content_type: $content_type,
            versioned: $versioned,
        }
    };
}

static ASSETS: &[Asset] = &[
    asset!("vendor/graphiql-4.1.2/graphiql.min.js", JS, versioned: true),
    asset!("vendor/graphiql-4.1.2/graphiql.min.css", CSS, versioned: true),
    asset!("vendor/react-18.3.1/react.production.min.js", JS, versioned: true),
    asset!("vendor/react-18.3.1/react-dom.production.min.js", JS, versioned: true),
    asset!("graphiql-page.js", JS, versioned: false),
    asset!("sso.js", JS, versioned: false),
    asset!("graphiql-page.css", CSS, versioned: false),
    asset!("ui.js", JS, versioned: false),
    asset!("ui.css", CSS, versioned: false),
];

/// The policy of the dashboard: as GraphiQL's, without inline styles (the dashboard sets none).
pub(super) const UI_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `GET /graphiql`: the page, under its policy. It holds no data; the API token is entered in it.
pub(super) async fn graphiql() -> Response {
    page(include_str!("../../assets/graphiql.html"), PAGE_POLICY)
}

/// `GET /ui`: the dashboard, under its policy. Like GraphiQL it holds no data and uses only the
/// public GraphQL API with the token entered in it.
pub(super) async fn ui() -> Response {
    page(include_str!("../../assets/ui.html"), UI_POLICY)
}

fn page(html: &'static str, policy: &'static str) -> Response {
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(policy));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    response
}

/// `GET /assets/{*path}`: an embedded file, or 404.
pub(super) async fn asset(Path(path): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such asset");
    };
    let cache = if asset.versioned { "public, max-age=31536000, immutable" } else { "no-cache" };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.bytes,
    )
        .into_response()
}
