//! The GraphQL transports: POST and GET `/graphql`, Server-Sent Events on `/graphql/stream`,
//! both WebSocket subprotocols on `/graphql/ws`, and the GraphiQL page.

use super::*;

/// A request's GraphQL document (its `query` text) is held to `max_body_bytes`, even where the
/// body may be larger to carry a manifest: a large body is data, not a large document to parse.
#[allow(clippy::result_large_err)]
fn document_within(query: &str, limits: &crate::settings::ApiLimits) -> Result<(), Response> {
    if query.len() > limits.max_body_bytes {
        return Err(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadUserInput,
            format!(
                "the GraphQL document has {} bytes; at most {} (maxBodyBytes) are accepted; send large values as variables",
                query.len(),
                limits.max_body_bytes
            ),
        ));
    }
    Ok(())
}

pub(super) fn respond(mut batch: BatchResponse, limits: &crate::settings::ApiLimits) -> Response {
    match &mut batch {
        BatchResponse::Single(response) => ensure_codes(response, limits),
        BatchResponse::Batch(responses) => responses.iter_mut().for_each(|r| ensure_codes(r, limits)),
    }
    match batch_json(&batch) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a response could not be written");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "the response could not be written")
        }
    }
}

pub(super) async fn graphql_post(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let batch: BatchRequest = graphql_body(body)?;
    if let BatchRequest::Batch(requests) = &batch
        && requests.len() > state.limits.max_batch_size
    {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadUserInput,
            format!(
                "a batch may hold at most {} requests (maxBatchSize); this one holds {}",
                state.limits.max_batch_size,
                requests.len()
            ),
        ));
    }
    for request in batch.iter() {
        document_within(&request.query, &state.limits)?;
    }
    let mut batch = batch.data(caller).data(RawJsonOutput);
    let schema = if batch.iter_mut().all(reads_only) { &state.reads } else { &state.schema };
    Ok(respond(schema.execute_batch(batch).await, &state.limits))
}

/// GET serves queries only: a mutation over GET could be triggered by a link or an image tag.
pub(super) async fn graphql_get(
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
    // Only queries get here: a document that does not parse goes to the audited schema, which
    // reports the error.
    let schema = if reads_only(&mut request) { &state.reads } else { &state.schema };
    respond(BatchResponse::Single(schema.execute(request.data(caller).data(RawJsonOutput)).await), &state.limits)
}

/// GraphQL over Server-Sent Events, distinct-connections mode: one POSTed operation, its results
/// as `next` events, then `complete`. Subscriptions stream for as long as the client stays.
pub(super) async fn graphql_sse(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    LiveToken(token): LiveToken,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt;
    let mut request: async_graphql::Request = graphql_body(body)?;
    document_within(&request.query, &state.limits)?;
    let schema = if reads_only(&mut request) { &state.reads } else { &state.schema };
    let limits = state.limits.clone();
    // The stream lives only as long as the credentials it was opened with.
    let revoked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ended = {
        let (auth, principal, revoked) =
            (state.auth.clone(), caller.principal.clone(), std::sync::Arc::clone(&revoked));
        Box::pin(async move {
            credentials_end(auth, token, principal).await;
            revoked.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let farewell = futures_util::stream::once(async move { revoked.load(std::sync::atomic::Ordering::SeqCst) })
        .filter_map(|revoked| async move {
            revoked.then(|| {
                Ok(Event::default().event("next").data(
                    r#"{"errors":[{"message":"the credentials of this stream were revoked or expired","extensions":{"code":"UNAUTHENTICATED"}}]}"#,
                ))
            })
        });
    let results = schema.execute_stream(request.data(caller).data(RawJsonOutput)).map(move |mut response| {
        ensure_codes(&mut response, &limits);
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
    let sse = Sse::new(results.take_until(ended).chain(farewell).chain(complete)).keep_alive(KeepAlive::default());
    Ok(sse.into_response())
}

/// An impersonation block in a WebSocket `connection_init` payload:
/// `{"impersonate": {"user": "…", "groups": ["…"], "uid": "…", "extra": {"k": ["v"]}}}`.
pub(super) fn init_payload_impersonation(payload: &serde_json::Value) -> Result<Option<Impersonation>, String> {
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
pub(super) fn init_payload_token(payload: &serde_json::Value) -> Option<String> {
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

pub(super) async fn graphql_ws(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
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
    if !upgrade_allowed(&headers, &state.allowed_origins) {
        return origin_refused();
    }
    if let Err(refused) = state.auth_failures.check(address) {
        return refused;
    }
    let max_message = state.limits.max_graphql_request_bytes();
    let limits = SocketLimits {
        init_timeout: std::time::Duration::from_secs(state.limits.websocket_init_timeout_secs),
        max_operations: state.limits.max_websocket_operations,
    };
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).max_message_size(max_message).max_frame_size(max_message).on_upgrade(
        move |socket| {
            use futures_util::StreamExt;
            let auth = state.auth.clone();
            let failures = std::sync::Arc::clone(&state.auth_failures);
            let session = std::sync::Arc::new(Session::default());
            let (sink, stream) = socket.split();
            let incoming = guard_incoming(stream, std::sync::Arc::clone(&session), auth.clone(), limits);
            let outgoing = watch_outgoing(sink, std::sync::Arc::clone(&session));
            GraphQLWebSocket::new_with_pair(outgoing, incoming, state.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    let token = init_payload_token(&payload).or(header_token);
                    let principal = auth.authenticate(token.as_deref()).await.map_err(|err| {
                        if err.is_refused_credential() {
                            // The connection fails either way; a refused address is refused at
                            // its next attempt, before the upgrade.
                            let _ = failures.failed(address);
                        }
                        async_graphql::Error::new(err.to_string())
                    })?;
                    let impersonation = match init_payload_impersonation(&payload) {
                        Ok(Some(found)) => Some(found),
                        Ok(None) => header_impersonation,
                        Err(message) => return Err(async_graphql::Error::new(message)),
                    };
                    // From now on the connection lives only as long as these credentials hold.
                    let _ = session.opened_by.set((token, principal.clone()));
                    let mut data = Data::default();
                    data.insert(Caller { principal, impersonation, request_id: connection_id });
                    Ok(data)
                })
                .serve()
        },
    )
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn any_connection_init_payload_is_read_or_refused_with_a_reason(
            payload in crate::any_json(),
            block in crate::any_json(),
        ) {
            for payload in [payload, serde_json::json!({ "impersonate": block })] {
                match init_payload_impersonation(&payload) {
                    Ok(Some(_)) => prop_assert!(payload.get("impersonate").is_some()),
                    Ok(None) => prop_assert!(payload.get("impersonate").is_none()),
                    Err(reason) => prop_assert!(reason.starts_with("impersonate")),
                }
            }
        }
    }
}
