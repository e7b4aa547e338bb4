//! Plain-HTTP resource endpoints: `POST /api/v1/clusters/{id}/apply`, behind the same audit
//! record and role check as the mutations.

use super::*;

/// Query parameters of `POST /api/v1/clusters/{id}/apply`, named as the GraphQL arguments.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ApplyQuery {
    namespace: Option<String>,
    field_manager: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    dry_run: bool,
    field_validation: Option<FieldValidation>,
    on_error: Option<OnError>,
}

/// Runs an OPERATOR action of a plain HTTP endpoint behind its audit record, as the audit
/// extension does for mutations: the record is written first (the action is refused when it
/// cannot be), a VIEWER is refused, and the record is completed with the outcome. An error comes
/// back as the HTTP answer to send.
pub(super) async fn audited<T, Fut>(
    state: &AppState,
    caller: &Caller,
    entry: AuditEntry,
    action: impl FnOnce() -> Fut,
) -> Result<T, Response>
where
    Fut: std::future::Future<Output = Result<T, crate::error::ApiError>>,
{
    let field = entry.field.clone();
    let pending = match state.audit.begin(crate::audit::Actor::Caller(caller), entry).await {
        Ok(p) => p,
        Err(err) => {
            tracing::error!(error = %err, field, "audit record could not be written; refusing the action");
            let (message, code) = crate::audit::refusal(Some(&err));
            return Err(error_response(status_of(code), code, message));
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
    // A failure is logged by the recorder; the action ran, and its answer stands.
    let _ = pending.finish(audit_outcome, code).await;
    outcome.map_err(IntoResponse::into_response)
}

/// `kubectl apply --server-side` over plain HTTP: `curl --data-binary @app.yaml`. The same code
/// path, authentication and audit record as the `apply` mutation; the JSON answer has the
/// mutation's shape.
pub(super) async fn apply_endpoint(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    axum::extract::Path(cluster_id): axum::extract::Path<String>,
    query: Result<axum::extract::Query<ApplyQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let query = query_params(query)?;
    let text = String::from_utf8(read_body(body)?.to_vec()).map_err(|_| {
        error_response(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, "the manifest is not UTF-8 text")
    })?;
    let options = ApplyOptions {
        namespace: query.namespace,
        field_manager: query.field_manager.unwrap_or_else(|| crate::graphql::DEFAULT_FIELD_MANAGER.to_owned()),
        force: query.force,
        dry_run: query.dry_run,
        field_validation: query.field_validation.unwrap_or_default(),
        on_error: query.on_error.unwrap_or_default(),
    };
    // Parsed once: the record keeps its summary, the apply reads its documents.
    let manifest = crate::resources::write::read_manifest(text.clone(), state.limits.max_manifest_bytes).await;
    let summary = match &manifest {
        Ok(manifest) => manifest.summary(),
        Err(err) => crate::resources::write::unreadable_manifest_summary(&text, &err.to_string()),
    };
    drop(text);
    let entry = AuditEntry {
        operation: Some("POST /api/v1/clusters/{id}/apply".into()),
        field: "apply".into(),
        cluster_id: Some(cluster_id.clone()),
        verb: Some("PATCH".into()),
        namespace: options.namespace.clone(),
        dry_run: options.dry_run,
        arguments: json!({
            "clusterId": cluster_id, "manifest": summary, "namespace": options.namespace,
            "fieldManager": options.field_manager, "force": options.force, "dryRun": options.dry_run,
        }),
        ..Default::default()
    };
    let outcome = audited(&state, &caller, entry, || async {
        let manifest = manifest.map_err(crate::error::ApiError::from)?;
        state.resources.apply(&caller, &cluster_id, &manifest, &options).await.map_err(crate::error::ApiError::from)
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
    Ok(response)
}
