//! Byte tunnels between a client's WebSocket and a pod: port-forward.
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
