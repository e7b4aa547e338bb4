//! The HTTP surface: the router and its layers (body limits, tracing), built from one list of
//! routes, and the API error as an HTTP answer. Each kind of route has its module: `auth` (the
//! `Authenticated` extractor every plain route takes), `graphql` (POST/GET `/graphql`, SSE,
//! WebSocket, GraphiQL), `resources` (`/apply`), `tunnels` (port-forward, attach) and
//! `operations` (`/metrics`, `/readyz`). Authentication happens before any other work, so an
//! unauthenticated request costs one token lookup and gets HTTP 401.

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse, Data};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

const REQUEST_ID: &str = "x-request-id";

use crate::access::{Caller, Impersonation};
use crate::audit::{AuditEntry, AuditOutcome, AuditRecorder};
use crate::auth::{AuthError, Authenticator, bearer_token};
use crate::error::{ErrorCode, ensure_codes};
use crate::graphql::raw::{RawJsonOutput, batch_json, response_json};
use crate::graphql::{AppSchema, reads_only};
use crate::resources::ResourceService;
use crate::resources::write::{ApplyOptions, FieldValidation, OnError};
use crate::store::Database;

mod assets;
mod auth;
mod graphql;
mod live;
pub mod metrics;
mod operations;
pub mod origins;
mod resources;
mod sso;
mod tunnels;

use auth::*;
pub use auth::{AuthFailures, Authenticated};
use graphql::*;
use live::*;
use metrics::{metrics, record_request};
use operations::*;
use origins::{origin_refused, upgrade_allowed};
use resources::*;
use tunnels::*;

#[derive(Clone)]
pub struct AppState {
    /// The schema with the audit extension: every request that may mutate runs on it.
    pub schema: AppSchema,
    /// The same schema without it, for documents that hold no mutation.
    pub reads: AppSchema,
    pub auth: Authenticator,
    pub db: Database,
    pub resources: ResourceService,
    pub audit: AuditRecorder,
    pub watch_hub: std::sync::Arc<crate::watch::WatchHub>,
    pub metrics: std::sync::Arc<metrics::Metrics>,
    pub limits: crate::settings::ApiLimits,
    pub auth_failures: std::sync::Arc<auth::AuthFailures>,
    pub tunnels: std::sync::Arc<crate::tunnel::OpenTunnels>,
    pub tunnel_settings: crate::tunnel::TunnelSettings,
    /// Origins whose pages may call kubegql from a browser (checked at start-up).
    pub allowed_origins: Vec<axum::http::HeaderValue>,
}

/// Every route of the server, in one list: the router is built from it, and the boundary test
/// (tests/boundary.rs) checks it knows each one, so a new route cannot slip past it.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/graphql", get(graphql_get).post(graphql_post)),
        ("/graphql/ws", get(graphql_ws)),
        ("/graphql/stream", post(graphql_sse)),
        ("/graphiql", get(assets::graphiql)),
        ("/ui", get(assets::ui)),
        ("/assets/{*path}", get(assets::asset)),
        ("/api/v1/clusters/{id}/apply", post(apply_endpoint)),
        ("/api/v1/clusters/{id}/namespaces/{namespace}/pods/{pod}/portforward", get(port_forward_endpoint)),
        ("/api/v1/clusters/{id}/namespaces/{namespace}/pods/{pod}/attach", get(attach_endpoint)),
        ("/api/v1/clusters/{id}/namespaces/{namespace}/pods/{pod}/exec", get(exec_endpoint)),
        ("/auth/login", get(sso::login)),
        ("/auth/callback", get(sso::callback)),
        ("/auth/session", post(sso::session)),
        ("/auth/logout", post(sso::logout)),
        ("/healthz", get(|| async { "ok" })),
        ("/readyz", get(readyz)),
        ("/metrics", get(metrics)),
    ]
}

/// The paths the router serves.
pub fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

/// The body limit of a route: manifests are large (`/apply`), and so may be the GraphQL request
/// that carries one; everything else takes `max_body_bytes`.
fn body_limit(path: &str, limits: &crate::settings::ApiLimits) -> usize {
    match path {
        "/api/v1/clusters/{id}/apply" => limits.max_manifest_bytes,
        "/graphql" => limits.max_graphql_request_bytes(),
        _ => limits.max_body_bytes,
    }
}

pub fn router(state: AppState) -> Router {
    let limits = state.limits.clone();
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            let max = body_limit(path, &limits);
            let methods = methods.layer(DefaultBodyLimit::max(max)).layer(middleware::from_fn(
                move |request: Request, next: Next| refuse_declared_oversize(request, next, max),
            ));
            router.route(path, methods)
        })
        .route_layer(middleware::from_fn_with_state(state.clone(), record_request))
        // Every request carries an id (the client's X-Request-Id when usable, else a new UUID),
        // and every answer gives it back, errors included.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn(drop_unusable_request_id))
        .layer(origins::cors(state.allowed_origins.clone()))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Refuses a body whose declared length is over the limit before reading any of it; bodies
/// without a length (chunked) are cut at the limit by `DefaultBodyLimit` while they are read.
async fn refuse_declared_oversize(request: Request, next: Next, max: usize) -> Response {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return too_large();
    }
    next.run(request).await
}

fn too_large() -> Response {
    let mut response = error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BadUserInput,
        "the request body is larger than this server accepts",
    );
    // The unread body makes the connection unusable for another request.
    response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}

/// A GraphQL-shaped error body with an HTTP status, for failures before execution.
fn error_response(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let body = json!({ "errors": [{ "message": message.into(), "extensions": { "code": code.as_str() } }] });
    let mut response = (status, Json(body)).into_response();
    if code == ErrorCode::Unauthenticated {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

/// A request body, or the answer to send when it cannot be read (413 past the limit).
// The error is the HTTP answer itself, returned at once by the handler.
#[allow(clippy::result_large_err)]
fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Response> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            error_response(rejection.status(), ErrorCode::BadUserInput, rejection.body_text())
        }
    })
}

/// A GraphQL request (or batch) from a JSON body.
#[allow(clippy::result_large_err)]
fn graphql_body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Response> {
    let body = read_body(body)?;
    serde_json::from_slice(&body).map_err(|err| {
        error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadUserInput,
            format!("the body is not a GraphQL request: {err}"),
        )
    })
}

/// A route's query parameters; an unknown or malformed one is BAD_USER_INPUT naming it.
#[allow(clippy::result_large_err)]
fn query_params<T>(
    query: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Response> {
    query
        .map(|axum::extract::Query(q)| q)
        .map_err(|rejection| error_response(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, rejection.body_text()))
}

/// The API error as an HTTP answer: the status its code means, and a GraphQL-shaped body.
impl IntoResponse for crate::error::ApiError {
    fn into_response(self) -> Response {
        error_response(status_of(self.code), self.code, self.message)
    }
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadUserInput => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::ClusterUnreachable => StatusCode::BAD_GATEWAY,
        ErrorCode::CursorExpired => StatusCode::GONE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::StoreUnavailable | ErrorCode::IdentityProviderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A client's X-Request-Id is kept only when it is 1 to 128 visible characters, since it goes into
/// audit records and logs; otherwise the request gets a new one.
async fn drop_unusable_request_id(mut request: Request, next: Next) -> Response {
    let usable = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()));
    if !usable {
        request.headers_mut().remove(REQUEST_ID);
    }
    next.run(request).await
}
