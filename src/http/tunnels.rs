//! Pod tunnels over WebSockets: port-forward and attach.

use super::*;

/// The WebSocket subprotocol a port-forward answers with when the client offers it.
pub(super) const PORT_FORWARD_PROTOCOL: &str = "v1.portforward.kubegql";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PortForwardQuery {
    port: u16,
}

/// `kubectl port-forward` over a WebSocket: binary messages carry the bytes of one TCP
/// connection to the pod's port. OPERATOR or ADMIN; audited. The connection to the pod is opened
/// before the upgrade, so a missing pod or a refusal is an HTTP error with its code.
pub(super) async fn port_forward_endpoint(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    LiveToken(token): LiveToken,
    axum::extract::Path((cluster_id, namespace, pod)): axum::extract::Path<(String, String, String)>,
    query: Result<axum::extract::Query<PortForwardQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
) -> Result<Response, Response> {
    if !upgrade_allowed(&headers, &state.allowed_origins) {
        return Err(origin_refused());
    }
    let port = query_params(query)?.port;
    if port == 0 {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadUserInput,
            "port must be between 1 and 65535",
        ));
    }
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
        let slot = state
            .tunnels
            .open(&caller.principal.id, state.tunnel_settings.max_tunnels_per_principal)
            .map_err(crate::error::ApiError::from)?;
        let forwarder = state
            .resources
            .port_forward(&caller, &cluster_id, &namespace, &pod, port)
            .await
            .map_err(crate::error::ApiError::from)?;
        Ok((slot, forwarder))
    })
    .await;
    let timing = state.tunnel_settings.timing();
    let response = match opened {
        Ok((slot, forwarder)) => {
            let ended = credentials_end(state.auth.clone(), token, caller.principal.clone());
            upgrade.protocols([PORT_FORWARD_PROTOCOL]).on_upgrade(move |socket| async move {
                let _slot = slot;
                tokio::select! {
                    (to_pod, from_pod) = crate::tunnel::bridge(socket, forwarder, port, timing) => {
                        tracing::debug!(to_pod, from_pod, "port-forward closed");
                    }
                    () = ended => tracing::info!("the credentials of a port-forward ended; closing it"),
                }
            })
        }
        Err(response) => response,
    };
    Ok(response)
}

/// The WebSocket subprotocol an attach answers with when the client offers it.
pub(super) const ATTACH_PROTOCOL: &str = "v1.attach.kubegql";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttachQuery {
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
pub(super) async fn attach_endpoint(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    LiveToken(token): LiveToken,
    axum::extract::Path((cluster_id, namespace, pod)): axum::extract::Path<(String, String, String)>,
    query: Result<axum::extract::Query<AttachQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
) -> Result<Response, Response> {
    if !upgrade_allowed(&headers, &state.allowed_origins) {
        return Err(origin_refused());
    }
    let query = query_params(query)?;
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
        let slot = state
            .tunnels
            .open(&caller.principal.id, state.tunnel_settings.max_tunnels_per_principal)
            .map_err(crate::error::ApiError::from)?;
        let process = state
            .resources
            .attach(&caller, &cluster_id, &namespace, &pod, &params)
            .await
            .map_err(crate::error::ApiError::from)?;
        Ok((slot, process))
    })
    .await;
    let timing = state.tunnel_settings.timing();
    let response = match attached {
        Ok((slot, process)) => {
            let ended = credentials_end(state.auth.clone(), token, caller.principal.clone());
            upgrade.protocols([ATTACH_PROTOCOL]).on_upgrade(move |socket| async move {
                let _slot = slot;
                tokio::select! {
                    () = crate::tunnel::attach_bridge(socket, process, timing) => {}
                    () = ended => tracing::info!("the credentials of an attach ended; closing it"),
                }
            })
        }
        Err(response) => response,
    };
    Ok(response)
}
