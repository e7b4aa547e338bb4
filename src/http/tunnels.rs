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
    let arguments = json!({ "clusterId": cluster_id, "namespace": namespace, "pod": pod, "port": port });
    let entry = pod_stream_entry("portforward", "portForward", &cluster_id, &namespace, &pod, arguments);
    let opened = audited(&state, &caller, entry, || async {
        with_slot(&state, &caller, state.resources.port_forward(&caller, &cluster_id, &namespace, &pod, port)).await
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
    let arguments = json!({ "clusterId": cluster_id, "namespace": namespace, "pod": pod,
                           "container": query.container, "stdin": query.stdin, "tty": query.tty });
    let entry = pod_stream_entry("attach", "attach", &cluster_id, &namespace, &pod, arguments);
    let params = stream_params(query.container.clone(), query.stdin, query.tty);
    let attached = audited(&state, &caller, entry, || async {
        with_slot(&state, &caller, state.resources.attach(&caller, &cluster_id, &namespace, &pod, &params)).await
    })
    .await;
    Ok(match attached {
        Ok((slot, process)) => bridge_process(&state, &caller, token, upgrade, ATTACH_PROTOCOL, slot, process),
        Err(response) => response,
    })
}

/// Takes one of the principal's tunnel places, then opens the stream; a refusal of either is the
/// API error to answer (and record).
async fn with_slot<T>(
    state: &AppState,
    caller: &crate::access::Caller,
    open: impl std::future::Future<Output = Result<T, crate::resources::ResourceError>>,
) -> Result<(crate::tunnel::TunnelSlot, T), crate::error::ApiError> {
    let slot = state
        .tunnels
        .open(&caller.principal.id, state.tunnel_settings.max_tunnels_per_principal)
        .map_err(crate::error::ApiError::from)?;
    let stream = open.await.map_err(crate::error::ApiError::from)?;
    Ok((slot, stream))
}

/// The audit record of a pod stream (port-forward, attach, exec) as the caller asked for it.
fn pod_stream_entry(
    route: &str,
    field: &str,
    cluster_id: &str,
    namespace: &str,
    pod: &str,
    arguments: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        operation: Some(format!("GET /api/v1/clusters/{{id}}/namespaces/{{namespace}}/pods/{{pod}}/{route}")),
        field: field.into(),
        cluster_id: Some(cluster_id.to_owned()),
        verb: Some("POST".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.to_owned()),
        name: Some(pod.to_owned()),
        arguments,
        ..Default::default()
    }
}

/// The stream options of an attach or an exec: stdout always; a terminal merges stderr into
/// stdout, as the API server requires.
fn stream_params(container: Option<String>, stdin: bool, tty: bool) -> kube::api::AttachParams {
    kube::api::AttachParams { container, stdin, stdout: true, stderr: !tty, tty, ..Default::default() }
}

/// Upgrades to a WebSocket that carries an attached or executed process's streams until the
/// process ends, the client leaves, or the credentials that opened it stop holding.
fn bridge_process(
    state: &AppState,
    caller: &crate::access::Caller,
    token: Option<String>,
    upgrade: WebSocketUpgrade,
    protocol: &'static str,
    slot: crate::tunnel::TunnelSlot,
    process: kube::api::AttachedProcess,
) -> Response {
    let timing = state.tunnel_settings.timing();
    let ended = credentials_end(state.auth.clone(), token, caller.principal.clone());
    upgrade.protocols([protocol]).on_upgrade(move |socket| async move {
        let _slot = slot;
        tokio::select! {
            () = crate::tunnel::attach_bridge(socket, process, timing) => {}
            () = ended => tracing::info!(protocol, "the credentials of a pod stream ended; closing it"),
        }
    })
}

/// The WebSocket subprotocol an exec answers with when the client offers it.
pub(super) const EXEC_PROTOCOL: &str = "v1.exec.kubegql";

/// Bounds of an exec's command: at most this many words, each at most `MAX_WORD` bytes.
const MAX_WORDS: usize = 64;
const MAX_WORD: usize = 4096;

/// What an exec asks for: the command as a list (`command` repeated, as the API server takes
/// it), the container, and whether stdin and a terminal are wanted.
#[derive(Debug, PartialEq)]
pub(super) struct ExecQuery {
    command: Vec<String>,
    container: Option<String>,
    stdin: bool,
    tty: bool,
}

fn flag(value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("expected true or false, not {other:?}")),
    }
}

/// Reads an exec's query string; every refusal says what is wrong.
pub(super) fn exec_query(raw: Option<&str>) -> Result<ExecQuery, String> {
    let mut query = ExecQuery { command: Vec::new(), container: None, stdin: false, tty: false };
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "command" => {
                if query.command.len() == MAX_WORDS {
                    return Err(format!("command: at most {MAX_WORDS} words"));
                }
                if value.len() > MAX_WORD {
                    return Err(format!("command: each word at most {MAX_WORD} bytes"));
                }
                query.command.push(value.into_owned());
            }
            "container" if query.container.is_none() => query.container = Some(value.into_owned()),
            "stdin" => query.stdin = flag(&value).map_err(|e| format!("stdin: {e}"))?,
            "tty" => query.tty = flag(&value).map_err(|e| format!("tty: {e}"))?,
            other => return Err(format!("unknown or repeated parameter {other:?}")),
        }
    }
    if query.command.is_empty() || query.command[0].is_empty() {
        return Err("command: give the program and its arguments as repeated `command` parameters".into());
    }
    Ok(query)
}

/// `kubectl exec` over a WebSocket, framed as attach is (0 stdin, 4 terminal size from the
/// client; 1 stdout, 2 stderr, 3 the end status to it). OPERATOR or ADMIN, unless the operator
/// turned exec off for the caller's tenant; audited with the command and its options (never what
/// goes to stdin). The process is started before the upgrade, so refusals are HTTP errors.
pub(super) async fn exec_endpoint(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    LiveToken(token): LiveToken,
    axum::extract::Path((cluster_id, namespace, pod)): axum::extract::Path<(String, String, String)>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
) -> Result<Response, Response> {
    if !upgrade_allowed(&headers, &state.allowed_origins) {
        return Err(origin_refused());
    }
    let query = exec_query(raw.as_deref())
        .map_err(|message| error_response(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, message))?;
    let arguments = json!({ "clusterId": cluster_id, "namespace": namespace, "pod": pod, "command": query.command,
                           "container": query.container, "stdin": query.stdin, "tty": query.tty });
    let entry = pod_stream_entry("exec", "exec", &cluster_id, &namespace, &pod, arguments);
    let params = stream_params(query.container.clone(), query.stdin, query.tty);
    let started = audited(&state, &caller, entry, || async {
        if state.tunnel_settings.exec_disabled_tenants.contains(&caller.principal.tenant) {
            return Err(crate::error::ApiError::new(
                ErrorCode::Forbidden,
                "exec is turned off for this tenant by the server's operator",
            ));
        }
        with_slot(
            &state,
            &caller,
            state.resources.exec(&caller, &cluster_id, &namespace, &pod, &query.command, &params),
        )
        .await
    })
    .await;
    Ok(match started {
        Ok((slot, process)) => bridge_process(&state, &caller, token, upgrade, EXEC_PROTOCOL, slot, process),
        Err(response) => response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_query_takes_the_command_as_repeated_words() {
        let query =
            exec_query(Some("command=sh&command=-c&command=echo%20a%26b&container=main&stdin=true&tty=1")).unwrap();
        assert_eq!(
            query,
            ExecQuery {
                command: vec!["sh".into(), "-c".into(), "echo a&b".into()],
                container: Some("main".into()),
                stdin: true,
                tty: true,
            }
        );
        assert!(!exec_query(Some("command=ls")).unwrap().stdin);
    }

    #[test]
    fn a_bad_exec_query_is_refused_with_the_reason() {
        for (raw, says) in [
            (None, "command"),
            (Some("container=main"), "command"),
            (Some("command="), "command"),
            (Some("command=ls&stdin=yes"), "stdin"),
            (Some("command=ls&container=a&container=b"), "repeated"),
            (Some("command=ls&cmd=x"), "unknown"),
        ] {
            let error = exec_query(raw).unwrap_err();
            assert!(error.contains(says), "{raw:?}: {error}");
        }
        let long = format!("command={}", "a".repeat(MAX_WORD + 1));
        assert!(exec_query(Some(&long)).unwrap_err().contains("bytes"));
        let many = vec!["command=a"; MAX_WORDS + 1].join("&");
        assert!(exec_query(Some(&many)).unwrap_err().contains("words"));
    }
}
