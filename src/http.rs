//! The HTTP surface: `/graphql` (POST, and GET for queries), `/graphql/ws` (both WebSocket
//! subprotocols), `/graphiql`, `/healthz` and `/readyz`. Authentication happens here, before any
//! GraphQL work, so an unauthenticated request costs one token lookup and gets HTTP 401.

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
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
use tower_http::trace::TraceLayer;

use crate::access::{Caller, Impersonation};
use crate::audit::{AuditEntry, AuditOutcome, AuditRecorder};
use crate::auth::{AuthError, Authenticator, bearer_token};
use crate::error::{ErrorCode, ensure_codes};
use crate::graphql::raw::{RawJsonOutput, batch_json, response_json};
use crate::graphql::{AppSchema, reads_only};
use crate::resources::ResourceService;
use crate::resources::write::{ApplyOptions, FieldValidation, OnError};
use crate::store::Database;

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
}

/// Every route of the server, in one list: the router is built from it, and the boundary test
/// (tests/boundary.rs) checks it knows each one, so a new route cannot slip past it.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/graphql", get(graphql_get).post(graphql_post)),
        ("/graphql/ws", get(graphql_ws)),
        ("/graphql/stream", post(graphql_sse)),
        ("/graphiql", get(graphiql)),
        ("/api/v1/clusters/{id}/apply", post(apply_endpoint)),
        ("/api/v1/clusters/{id}/namespaces/{namespace}/pods/{pod}/portforward", get(port_forward_endpoint)),
        ("/api/v1/clusters/{id}/namespaces/{namespace}/pods/{pod}/attach", get(attach_endpoint)),
        ("/healthz", get(|| async { "ok" })),
        ("/readyz", get(readyz)),
        ("/metrics", get(metrics)),
    ]
}

/// The paths the router serves.
pub fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| router.route(path, methods))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            refuse_declared_oversize(request, next, max_body_bytes)
        }))
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

fn auth_failure(err: AuthError) -> Response {
    match err {
        AuthError::Store(store) => {
            tracing::error!(error = %store, "token lookup failed");
            error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal, "database unavailable")
        }
        other => error_response(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, other.to_string()),
    }
}

/// The request's id: the client's `X-Request-Id` when it is a sensible one, else a new UUID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The `Impersonate-*` headers of a request, as Kubernetes itself reads them (`kubectl --as`,
/// `--as-group`, `--as-uid`, and `Impersonate-Extra-<key>`). Whether the caller may use them is
/// decided where a cluster is reached, so that an attempted mutation is still audited.
// The error is the HTTP answer itself, returned at once by the handler; it is not carried around.
#[allow(clippy::result_large_err)]
fn impersonation_headers(headers: &HeaderMap) -> Result<Option<Impersonation>, Response> {
    let text = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    let user = text("impersonate-user").into_iter().next();
    let groups = text("impersonate-group");
    let uid = text("impersonate-uid").into_iter().next();
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && let Ok(value) = value.to_str()
        {
            extra.entry(key.to_owned()).or_default().push(value.to_owned());
        }
    }
    match user {
        Some(user) => Ok(Some(Impersonation { user, groups, uid, extra })),
        None if groups.is_empty() && uid.is_none() && extra.is_empty() => Ok(None),
        None => Err(error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadUserInput,
            "Impersonate-Group, Impersonate-Uid and Impersonate-Extra-* need Impersonate-User",
        )),
    }
}

/// The authenticated caller of a plain HTTP request, as an extractor: the bearer token of the
/// `Authorization` header or, on a WebSocket upgrade (a browser cannot set headers there), of
/// the Kubernetes bearer subprotocol; with the `Impersonate-*` headers and the request id. What
/// the caller may then do is asked of `authz`. A refusal is the HTTP answer to send (401, or 400
/// for malformed impersonation headers), before any other work.
pub struct Authenticated(pub Caller);

impl axum::extract::FromRequestParts<AppState> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Response> {
        let upgrade = parts
            .headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let protocol_token = if upgrade { token_from_protocols(&parts.headers) } else { None };
        authenticate_with(state, &parts.headers, protocol_token.as_deref()).await.map(Authenticated)
    }
}

/// The caller named by the `Authorization` header, or by `other_token` when there is none.
async fn authenticate_with(
    state: &AppState,
    headers: &HeaderMap,
    other_token: Option<&str>,
) -> Result<Caller, Response> {
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token).or(other_token);
    let principal = state.auth.authenticate(token).await.map_err(auth_failure)?;
    let impersonation = impersonation_headers(headers)?;
    Ok(Caller { principal, impersonation, request_id: request_id(headers) })
}

fn with_request_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = header::HeaderValue::from_str(id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn respond(mut batch: BatchResponse) -> Response {
    match &mut batch {
        BatchResponse::Single(response) => ensure_codes(response),
        BatchResponse::Batch(responses) => responses.iter_mut().for_each(ensure_codes),
    }
    match batch_json(&batch) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a response could not be written");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "the response could not be written")
        }
    }
}

async fn graphql_post(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
        Err(rejection) => {
            return error_response(rejection.status(), ErrorCode::BadUserInput, rejection.body_text());
        }
    };
    let batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(err) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadUserInput,
                format!("the body is not a GraphQL request: {err}"),
            );
        }
    };
    let id = caller.request_id.clone();
    let mut batch = batch.data(caller).data(RawJsonOutput);
    let schema = if batch.iter_mut().all(reads_only) { &state.reads } else { &state.schema };
    with_request_id(respond(schema.execute_batch(batch).await), &id)
}

/// GET serves queries only: a mutation over GET could be triggered by a link or an image tag.
async fn graphql_get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    RawQuery(query): RawQuery,
) -> Response {
    let request = match async_graphql::http::parse_query_string(query.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(err) => {
            return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, err.to_string());
        }
    };
    let mut request = request;
    if let Ok(document) = request.parsed_query() {
        let mutates = document.operations.iter().any(|(_, op)| op.node.ty != OperationType::Query);
        if mutates {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::BadUserInput,
                "only queries may be sent with GET; use POST",
            );
            response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            return response;
        }
    }
    let id = caller.request_id.clone();
    // Only queries get here: a document that does not parse goes to the audited schema, which
    // reports the error.
    let schema = if reads_only(&mut request) { &state.reads } else { &state.schema };
    with_request_id(respond(BatchResponse::Single(schema.execute(request.data(caller).data(RawJsonOutput)).await)), &id)
}

/// GraphQL over Server-Sent Events, distinct-connections mode: one POSTed operation, its results
/// as `next` events, then `complete`. Subscriptions stream for as long as the client stays.
async fn graphql_sse(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt;
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
        Err(rejection) => return error_response(rejection.status(), ErrorCode::BadUserInput, rejection.body_text()),
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadUserInput,
                format!("the body is not a GraphQL request: {err}"),
            );
        }
    };
    let id = caller.request_id.clone();
    let mut request = request;
    let schema = if reads_only(&mut request) { &state.reads } else { &state.schema };
    let results = schema.execute_stream(request.data(caller).data(RawJsonOutput)).map(|mut response| {
        ensure_codes(&mut response);
        let body = response_json(&response).ok().and_then(|body| String::from_utf8(body).ok());
        let event = match body {
            Some(body) => Event::default().event("next").data(body),
            None => Event::default().event("next").data(
                r#"{"errors":[{"message":"the response could not be written","extensions":{"code":"INTERNAL"}}]}"#,
            ),
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    let complete = futures_util::stream::once(async { Ok(Event::default().event("complete").data("")) });
    let sse = Sse::new(results.chain(complete)).keep_alive(KeepAlive::default());
    with_request_id(sse.into_response(), &id)
}

/// An impersonation block in a WebSocket `connection_init` payload:
/// `{"impersonate": {"user": "…", "groups": ["…"], "uid": "…", "extra": {"k": ["v"]}}}`.
fn init_payload_impersonation(payload: &serde_json::Value) -> Result<Option<Impersonation>, String> {
    let Some(block) = payload.get("impersonate") else { return Ok(None) };
    #[derive(serde::Deserialize)]
    struct Block {
        user: String,
        #[serde(default)]
        groups: Vec<String>,
        uid: Option<String>,
        #[serde(default)]
        extra: std::collections::BTreeMap<String, Vec<String>>,
    }
    let block: Block = serde_json::from_value(block.clone()).map_err(|e| format!("impersonate: {e}"))?;
    Ok(Some(Impersonation { user: block.user, groups: block.groups, uid: block.uid, extra: block.extra }))
}

/// The token a WebSocket client sends in `connection_init`: `{"Authorization": "Bearer …"}`
/// (what GraphiQL sends from its headers pane) or `{"token": "…"}`.
fn init_payload_token(payload: &serde_json::Value) -> Option<String> {
    let object = payload.as_object()?;
    for (key, value) in object {
        if key.eq_ignore_ascii_case("authorization")
            && let Some(token) = value.as_str().and_then(bearer_token)
        {
            return Some(token.to_owned());
        }
    }
    object.get("token").and_then(|v| v.as_str()).map(str::to_owned)
}

async fn graphql_ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let header_token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token).map(str::to_owned);
    let header_impersonation = match impersonation_headers(&headers) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let connection_id = request_id(&headers);
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |stream| {
        let auth = state.auth.clone();
        GraphQLWebSocket::new(stream, state.schema.clone(), protocol)
            .on_connection_init(move |payload| async move {
                let token = init_payload_token(&payload).or(header_token);
                let principal = auth
                    .authenticate(token.as_deref())
                    .await
                    .map_err(|err| async_graphql::Error::new(err.to_string()))?;
                let impersonation = match init_payload_impersonation(&payload) {
                    Ok(Some(found)) => Some(found),
                    Ok(None) => header_impersonation,
                    Err(message) => return Err(async_graphql::Error::new(message)),
                };
                let mut data = Data::default();
                data.insert(Caller { principal, impersonation, request_id: connection_id });
                Ok(data)
            })
            .serve()
    })
}

/// Query parameters of `POST /api/v1/clusters/{id}/apply`, named as the GraphQL arguments.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApplyQuery {
    namespace: Option<String>,
    field_manager: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    dry_run: bool,
    field_validation: Option<FieldValidation>,
    on_error: Option<OnError>,
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
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Runs an OPERATOR action of a plain HTTP endpoint behind its audit record, as the audit
/// extension does for mutations: the record is written first (the action is refused when it
/// cannot be), a VIEWER is refused, and the record is completed with the outcome. An error comes
/// back as the HTTP answer to send.
async fn audited<T, Fut>(
    state: &AppState,
    caller: &Caller,
    entry: AuditEntry,
    action: impl FnOnce() -> Fut,
) -> Result<T, Response>
where
    Fut: std::future::Future<Output = Result<T, crate::error::ApiError>>,
{
    let field = entry.field.clone();
    let pending = match state.audit.begin(Some(caller), entry).await {
        Ok(p) => p,
        Err(err) => {
            tracing::error!(error = %err, field, "audit record could not be written; refusing the action");
            return Err(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the action was refused: its audit record could not be written",
            ));
        }
    };
    let outcome = match crate::authz::require(&caller.principal, crate::auth::Role::Operator) {
        Err(denied) => Err(crate::error::ApiError::from(denied)),
        Ok(()) => action().await,
    };
    let (audit_outcome, code) = match &outcome {
        Ok(_) => (AuditOutcome::Success, None),
        Err(err) => (AuditOutcome::of_error_code(Some(err.code.as_str())), Some(err.code.as_str())),
    };
    if let Err(err) = state.audit.finish(pending, audit_outcome, code).await {
        tracing::error!(error = %err, "audit record could not be completed");
    }
    outcome.map_err(|err| error_response(status_of(err.code), err.code, err.message))
}

/// `kubectl apply --server-side` over plain HTTP: `curl --data-binary @app.yaml`. The same code
/// path, authentication and audit record as the `apply` mutation; the JSON answer has the
/// mutation's shape.
async fn apply_endpoint(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    axum::extract::Path(cluster_id): axum::extract::Path<String>,
    query: Result<axum::extract::Query<ApplyQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let id = caller.request_id.clone();
    let query = match query {
        Ok(axum::extract::Query(q)) => q,
        Err(rejection) => {
            return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, rejection.body_text());
        }
    };
    let text = match body {
        Ok(bytes) => match String::from_utf8(bytes.to_vec()) {
            Ok(text) => text,
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadUserInput,
                    "the manifest is not UTF-8 text",
                );
            }
        },
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
        Err(rejection) => return error_response(rejection.status(), ErrorCode::BadUserInput, rejection.body_text()),
    };
    let options = ApplyOptions {
        namespace: query.namespace,
        field_manager: query.field_manager.unwrap_or_else(|| crate::graphql::DEFAULT_FIELD_MANAGER.to_owned()),
        force: query.force,
        dry_run: query.dry_run,
        field_validation: query.field_validation.unwrap_or_default(),
        on_error: query.on_error.unwrap_or_default(),
    };
    let entry = AuditEntry {
        operation: Some("POST /api/v1/clusters/{id}/apply".into()),
        field: "apply".into(),
        cluster_id: Some(cluster_id.clone()),
        verb: Some("PATCH".into()),
        namespace: options.namespace.clone(),
        dry_run: options.dry_run,
        arguments: json!({
            "clusterId": cluster_id, "manifest": text, "namespace": options.namespace,
            "fieldManager": options.field_manager, "force": options.force, "dryRun": options.dry_run,
        }),
        ..Default::default()
    };
    let outcome = audited(&state, &caller, entry, || async {
        state.resources.apply(&caller, &cluster_id, &text, &options).await.map_err(crate::error::ApiError::from)
    })
    .await;
    let response = match outcome {
        Ok(documents) => {
            let failed = documents.iter().filter(|d| d.error.is_some()).count();
            let succeeded = documents.iter().filter(|d| d.action.is_some()).count();
            let documents: Vec<serde_json::Value> = documents
                .iter()
                .map(|d| {
                    let mut value = serde_json::to_value(d).unwrap_or_default();
                    value["error"] = match d.error.as_deref().map(crate::error::ApiError::from) {
                        Some(api) => json!({ "code": api.code.as_str(), "message": api.message }),
                        None => serde_json::Value::Null,
                    };
                    value
                })
                .collect();
            Json(json!({ "dryRun": options.dry_run, "succeeded": succeeded, "failed": failed, "documents": documents }))
                .into_response()
        }
        Err(response) => response,
    };
    with_request_id(response, &id)
}

/// The WebSocket subprotocol a port-forward answers with when the client offers it.
const PORT_FORWARD_PROTOCOL: &str = "v1.portforward.kubegql";
/// Browsers cannot set headers on a WebSocket; as with the Kubernetes API server, they may send
/// the token as a subprotocol: `base64url.bearer.authorization.k8s.io.<base64url(token)>`.
const TOKEN_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

fn token_from_protocols(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let offered = headers.get(header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    let encoded = offered.split(',').map(str::trim).find_map(|p| p.strip_prefix(TOKEN_PROTOCOL_PREFIX))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).ok()?;
    String::from_utf8(bytes).ok()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PortForwardQuery {
    port: u16,
}

/// `kubectl port-forward` over a WebSocket: binary messages carry the bytes of one TCP
/// connection to the pod's port. OPERATOR or ADMIN; audited. The connection to the pod is opened
/// before the upgrade, so a missing pod or a refusal is an HTTP error with its code.
async fn port_forward_endpoint(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    axum::extract::Path((cluster_id, namespace, pod)): axum::extract::Path<(String, String, String)>,
    query: Result<axum::extract::Query<PortForwardQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let id = caller.request_id.clone();
    let port = match query {
        Ok(axum::extract::Query(q)) if q.port > 0 => q.port,
        Ok(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadUserInput,
                "port must be between 1 and 65535",
            );
        }
        Err(rejection) => {
            return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, rejection.body_text());
        }
    };
    let entry = AuditEntry {
        operation: Some("GET /api/v1/clusters/{id}/namespaces/{namespace}/pods/{pod}/portforward".into()),
        field: "portForward".into(),
        cluster_id: Some(cluster_id.clone()),
        verb: Some("POST".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.clone()),
        name: Some(pod.clone()),
        arguments: json!({ "clusterId": cluster_id, "namespace": namespace, "pod": pod, "port": port }),
        ..Default::default()
    };
    let opened = audited(&state, &caller, entry, || async {
        state
            .resources
            .port_forward(&caller, &cluster_id, &namespace, &pod, port)
            .await
            .map_err(crate::error::ApiError::from)
    })
    .await;
    let response = match opened {
        Ok(forwarder) => upgrade.protocols([PORT_FORWARD_PROTOCOL]).on_upgrade(move |socket| async move {
            let (to_pod, from_pod) = crate::tunnel::bridge(socket, forwarder, port).await;
            tracing::debug!(to_pod, from_pod, "port-forward closed");
        }),
        Err(response) => response,
    };
    with_request_id(response, &id)
}

/// The WebSocket subprotocol an attach answers with when the client offers it.
const ATTACH_PROTOCOL: &str = "v1.attach.kubegql";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachQuery {
    container: Option<String>,
    #[serde(default)]
    stdin: bool,
    #[serde(default)]
    tty: bool,
}

/// `kubectl attach` over a WebSocket. Every binary message starts with a channel byte, as in the
/// API server's `channel.k8s.io` protocol: 0 stdin and 4 terminal size (`{"Width","Height"}`)
/// from the client; 1 stdout, 2 stderr and 3 the end status (JSON) to it. OPERATOR or ADMIN;
/// audited. The attach is made before the upgrade, so refusals are HTTP errors with codes.
async fn attach_endpoint(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    axum::extract::Path((cluster_id, namespace, pod)): axum::extract::Path<(String, String, String)>,
    query: Result<axum::extract::Query<AttachQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let id = caller.request_id.clone();
    let query = match query {
        Ok(axum::extract::Query(q)) => q,
        Err(rejection) => {
            return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, rejection.body_text());
        }
    };
    let entry = AuditEntry {
        operation: Some("GET /api/v1/clusters/{id}/namespaces/{namespace}/pods/{pod}/attach".into()),
        field: "attach".into(),
        cluster_id: Some(cluster_id.clone()),
        verb: Some("POST".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.clone()),
        name: Some(pod.clone()),
        arguments: json!({ "clusterId": cluster_id, "namespace": namespace, "pod": pod,
                           "container": query.container, "stdin": query.stdin, "tty": query.tty }),
        ..Default::default()
    };
    let params = kube::api::AttachParams {
        container: query.container.clone(),
        stdin: query.stdin,
        stdout: true,
        // A terminal merges stderr into stdout, as the API server requires.
        stderr: !query.tty,
        tty: query.tty,
        ..Default::default()
    };
    let attached = audited(&state, &caller, entry, || async {
        state
            .resources
            .attach(&caller, &cluster_id, &namespace, &pod, &params)
            .await
            .map_err(crate::error::ApiError::from)
    })
    .await;
    let response = match attached {
        Ok(process) => {
            upgrade.protocols([ATTACH_PROTOCOL]).on_upgrade(move |socket| crate::tunnel::attach_bridge(socket, process))
        }
        Err(response) => response,
    };
    with_request_id(response, &id)
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql/ws").title("kubegql").finish())
}

/// Prometheus text format. Counts only: nothing here names a cluster, a principal or a secret.
async fn metrics(State(state): State<AppState>) -> Response {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let hub = &state.watch_hub;
    let cache = state.resources.connections().clients();
    let stats = &cache.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    metric("kubegql_watch_upstreams", "gauge", "Upstream Kubernetes watches running.", hub.upstream_count() as u64);
    metric(
        "kubegql_watch_upstream_starts_total",
        "counter",
        "Upstream Kubernetes watches started.",
        hub.upstream_starts(),
    );
    metric("kubegql_watch_subscriptions", "gauge", "Live resource subscriptions.", hub.subscription_count() as u64);
    metric("kubegql_client_cache_entries", "gauge", "Cached Kubernetes clients.", cache.len() as u64);
    metric("kubegql_client_cache_hits_total", "counter", "Client cache hits.", stats.hits.load(Relaxed));
    metric("kubegql_client_cache_misses_total", "counter", "Client cache misses.", stats.misses.load(Relaxed));
    metric("kubegql_client_cache_builds_total", "counter", "Kubernetes clients built.", stats.builds.load(Relaxed));
    metric("kubegql_client_cache_evictions_total", "counter", "Cached clients evicted.", stats.evictions.load(Relaxed));
    metric("kubegql_db_queries_total", "counter", "Database queries run.", state.db.query_count());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}
