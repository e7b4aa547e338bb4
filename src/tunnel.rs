//! Byte tunnels between a client's WebSocket and a pod: port-forward and attach.
//!
//! The client sends and receives binary messages; each carries the next bytes of the TCP stream
//! to or from the pod's port (text messages are taken as their UTF-8 bytes). The tunnel closes
//! when either side closes: the client closing its WebSocket, or the pod closing the connection.

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use kube::api::Portforwarder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most bytes read from the pod into one message.
const CHUNK: usize = 32 * 1024;

/// Carries bytes both ways until one side closes. Returns the bytes sent to and from the pod.
pub async fn bridge(socket: WebSocket, mut forwarder: Portforwarder, port: u16) -> (u64, u64) {
    let Some(stream) = forwarder.take_stream(port) else {
        return (0, 0);
    };
    let (mut pod_read, mut pod_write) = tokio::io::split(stream);
    let (mut ws_send, mut ws_recv) = socket.split();
    let (mut to_pod, mut from_pod) = (0u64, 0u64);
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            message = ws_recv.next() => {
                let bytes = match message {
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                if pod_write.write_all(&bytes).await.is_err() {
                    break;
                }
                to_pod += bytes.len() as u64;
            }
            read = pod_read.read(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if ws_send.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                            break;
                        }
                        from_pod += n as u64;
                    }
                }
            }
        }
    }
    let _ = ws_send.send(Message::Close(None)).await;
    let _ = pod_write.shutdown().await;
    forwarder.abort();
    (to_pod, from_pod)
}

/// Channels of an attach tunnel: the first byte of every binary message, as in the Kubernetes
/// API server's own `channel.k8s.io` WebSocket protocol.
pub mod channel {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    /// The container's end: a JSON `Status` (`{"status":"Success"}` or a failure).
    pub const STATUS: u8 = 3;
    /// From the client: `{"Width": w, "Height": h}` for a terminal.
    pub const RESIZE: u8 = 4;
}

async fn read_some(
    reader: &mut Option<tokio::io::ReadHalf<tokio::io::SimplexStream>>,
    buf: &mut [u8],
) -> Option<usize> {
    match reader {
        Some(r) => match r.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

fn framed(channel: u8, bytes: &[u8]) -> Message {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(channel);
    out.extend_from_slice(bytes);
    Message::Binary(out.into())
}

/// Carries an attached process's streams over channel-framed binary messages until the process
/// ends or the client leaves; the process's end status goes out on the status channel.
pub async fn attach_bridge(socket: WebSocket, mut process: kube::api::AttachedProcess) {
    let (mut ws_send, mut ws_recv) = socket.split();
    let mut stdin = process.stdin();
    let mut stdout = process.stdout();
    let mut stderr = process.stderr();
    let mut resize = process.terminal_size();
    let status = process.take_status();
    let mut status = std::pin::pin!(async move {
        match status {
            Some(status) => status.await,
            None => std::future::pending().await,
        }
    });
    let (mut out_buf, mut err_buf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        tokio::select! {
            message = ws_recv.next() => {
                let bytes = match message {
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                match bytes.split_first() {
                    Some((&channel::STDIN, data)) => {
                        if let Some(writer) = stdin.as_mut()
                            && writer.write_all(data).await.is_err()
                        {
                            break;
                        }
                    }
                    Some((&channel::RESIZE, data)) => {
                        if let (Some(sender), Ok(size)) = (resize.as_mut(), serde_json::from_slice::<kube::api::TerminalSize>(data)) {
                            let _ = sender.send(size).await;
                        }
                    }
                    _ => {}
                }
            }
            read = read_some(&mut stdout, &mut out_buf) => match read {
                Some(n) => {
                    if ws_send.send(framed(channel::STDOUT, &out_buf[..n])).await.is_err() {
                        break;
                    }
                }
                None => stdout = None,
            },
            read = read_some(&mut stderr, &mut err_buf) => match read {
                Some(n) => {
                    if ws_send.send(framed(channel::STDERR, &err_buf[..n])).await.is_err() {
                        break;
                    }
                }
                None => stderr = None,
            },
            ended = &mut status => {
                let status = ended.map(|s| serde_json::to_vec(&s).unwrap_or_default()).unwrap_or_else(|| br#"{"status":"Success"}"#.to_vec());
                let _ = ws_send.send(framed(channel::STATUS, &status)).await;
                break;
            }
        }
    }
    let _ = ws_send.send(Message::Close(None)).await;
    process.abort();
}
