//! Byte tunnels between a client's WebSocket and a pod: port-forward and attach.
//!
//! The client sends and receives binary messages; each carries the next bytes of the TCP stream
//! to or from the pod's port (text messages are taken as their UTF-8 bytes). The tunnel closes
//! when either side closes: the client closing its WebSocket, or the pod closing the connection.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use kube::api::Portforwarder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Interval};

/// The most bytes read from the pod into one message.
const CHUNK: usize = 32 * 1024;

/// How a tunnel is kept: closed after `idle` without bytes either way, and pinged every
/// `keepalive` so that proxies between the client and kubegql keep the connection.
#[derive(Debug, Clone, Copy)]
pub struct TunnelTiming {
    pub idle: Duration,
    pub keepalive: Duration,
}

fn keepalive(timing: TunnelTiming) -> Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + timing.keepalive, timing.keepalive);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// Carries bytes both ways until one side closes, or nothing moves for `timing.idle`. Returns
/// the bytes sent to and from the pod.
pub async fn bridge(socket: WebSocket, mut forwarder: Portforwarder, port: u16, timing: TunnelTiming) -> (u64, u64) {
    let Some(stream) = forwarder.take_stream(port) else {
        return (0, 0);
    };
    let (mut pod_read, mut pod_write) = tokio::io::split(stream);
    let (mut ws_send, mut ws_recv) = socket.split();
    let (mut to_pod, mut from_pod) = (0u64, 0u64);
    let mut buf = vec![0u8; CHUNK];
    let mut last_bytes = Instant::now();
    let mut pings = keepalive(timing);
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
                last_bytes = Instant::now();
            }
            read = pod_read.read(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if ws_send.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                            break;
                        }
                        from_pod += n as u64;
                        last_bytes = Instant::now();
                    }
                }
            }
            _ = pings.tick() => {
                if ws_send.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep_until(last_bytes + timing.idle) => {
                tracing::info!(idle = ?timing.idle, "a port-forward was idle; closing it");
                break;
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

/// How long, once a process has ended, its last output may take to arrive.
const DRAIN: Duration = Duration::from_secs(2);

/// Carries an attached (or executed) process's streams over channel-framed binary messages until the process
/// ends or the client leaves; the process's end status goes out on the status channel.
pub async fn attach_bridge(socket: WebSocket, mut process: kube::api::AttachedProcess, timing: TunnelTiming) {
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
    let mut last_bytes = Instant::now();
    let mut pings = keepalive(timing);
    loop {
        tokio::select! {
            _ = pings.tick() => {
                if ws_send.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
                continue;
            }
            () = tokio::time::sleep_until(last_bytes + timing.idle) => {
                tracing::info!(idle = ?timing.idle, "an attach was idle; closing it");
                break;
            }
            message = ws_recv.next() => {
                let bytes = match message {
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                last_bytes = Instant::now();
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
                    last_bytes = Instant::now();
                    if ws_send.send(framed(channel::STDOUT, &out_buf[..n])).await.is_err() {
                        break;
                    }
                }
                None => stdout = None,
            },
            read = read_some(&mut stderr, &mut err_buf) => match read {
                Some(n) => {
                    last_bytes = Instant::now();
                    if ws_send.send(framed(channel::STDERR, &err_buf[..n])).await.is_err() {
                        break;
                    }
                }
                None => stderr = None,
            },
            ended = &mut status => {
                // What the process wrote before it ended may still be on its way: it goes first.
                for (stream, buf, channel) in [(&mut stdout, &mut out_buf, channel::STDOUT), (&mut stderr, &mut err_buf, channel::STDERR)] {
                    while stream.is_some() {
                        match tokio::time::timeout(DRAIN, read_some(stream, buf)).await {
                            Ok(Some(n)) => {
                                if ws_send.send(framed(channel, &buf[..n])).await.is_err() {
                                    break;
                                }
                            }
                            Ok(None) => *stream = None,
                            Err(_) => break,
                        }
                    }
                }
                let status = ended.map(|s| serde_json::to_vec(&s).unwrap_or_default()).unwrap_or_else(|| br#"{"status":"Success"}"#.to_vec());
                let _ = ws_send.send(framed(channel::STATUS, &status)).await;
                break;
            }
        }
    }
    let _ = ws_send.send(Message::Close(None)).await;
    process.abort();
}

/// Limits of pod tunnels (port-forward, attach and exec).
#[derive(clap::Args, Debug, Clone)]
pub struct TunnelSettings {
    /// Tunnels one principal may hold open at once.
    #[arg(long, env = "KUBEGQL_MAX_TUNNELS_PER_PRINCIPAL", default_value_t = 8)]
    pub max_tunnels_per_principal: usize,
    /// Tenants whose callers may not exec into pods (repeat the flag, or separate with commas).
    /// Their OPERATORs and ADMINs keep port-forward and attach.
    #[arg(long = "exec-disabled-tenant", env = "KUBEGQL_EXEC_DISABLED_TENANTS", value_delimiter = ',')]
    pub exec_disabled_tenants: Vec<String>,
    /// Seconds a tunnel may stay open without bytes either way.
    #[arg(long, env = "KUBEGQL_TUNNEL_IDLE_TIMEOUT_SECS", default_value_t = 1800)]
    pub tunnel_idle_timeout_secs: u64,
    /// Seconds between the pings a tunnel sends its client.
    #[arg(long, env = "KUBEGQL_TUNNEL_KEEPALIVE_SECS", default_value_t = 30)]
    pub tunnel_keepalive_secs: u64,
}

impl Default for TunnelSettings {
    fn default() -> Self {
        Self {
            max_tunnels_per_principal: 8,
            exec_disabled_tenants: Vec::new(),
            tunnel_idle_timeout_secs: 1800,
            tunnel_keepalive_secs: 30,
        }
    }
}

impl TunnelSettings {
    pub fn timing(&self) -> TunnelTiming {
        TunnelTiming {
            idle: Duration::from_secs(self.tunnel_idle_timeout_secs.max(1)),
            keepalive: Duration::from_secs(self.tunnel_keepalive_secs.max(1)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("at most {0} tunnels per principal may be open at once")]
pub struct TooManyTunnels(pub usize);

/// The tunnels open now, per principal.
#[derive(Debug, Default)]
pub struct OpenTunnels {
    per_principal: dashmap::DashMap<String, usize>,
}

/// One open tunnel: dropping it gives the place back.
#[derive(Debug)]
pub struct TunnelSlot {
    tunnels: std::sync::Arc<OpenTunnels>,
    principal: String,
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        if let Some(mut count) = self.tunnels.per_principal.get_mut(&self.principal) {
            *count = count.saturating_sub(1);
        }
        self.tunnels.per_principal.remove_if(&self.principal, |_, count| *count == 0);
    }
}

impl OpenTunnels {
    /// Takes a place for one more of `principal`'s tunnels, or refuses past `max`.
    pub fn open(self: &std::sync::Arc<Self>, principal: &str, max: usize) -> Result<TunnelSlot, TooManyTunnels> {
        let mut count = self.per_principal.entry(principal.to_owned()).or_insert(0);
        if *count >= max {
            return Err(TooManyTunnels(max));
        }
        *count += 1;
        Ok(TunnelSlot { tunnels: std::sync::Arc::clone(self), principal: principal.to_owned() })
    }

    /// Tunnels open now, all principals together.
    /// Principals holding at least one tunnel.
    pub fn principals(&self) -> usize {
        self.per_principal.iter().filter(|e| *e.value() > 0).count()
    }

    /// The most tunnels one principal holds.
    pub fn most_of_one(&self) -> usize {
        self.per_principal.iter().map(|e| *e.value()).max().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.per_principal.iter().map(|e| *e.value()).sum()
    }

    /// Tunnels `principal` holds open now.
    pub fn of(&self, principal: &str) -> usize {
        self.per_principal.get(principal).map(|c| *c).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_holds_at_most_its_tunnels_and_gets_places_back() {
        let tunnels = std::sync::Arc::new(OpenTunnels::default());
        let a = tunnels.open("p", 2).unwrap();
        let _b = tunnels.open("p", 2).unwrap();
        assert_eq!(
            tunnels.open("p", 2).unwrap_err().to_string(),
            "at most 2 tunnels per principal may be open at once"
        );
        let _other = tunnels.open("q", 2).expect("another principal's count is its own");
        assert_eq!((tunnels.of("p"), tunnels.total()), (2, 3));
        drop(a);
        let _c = tunnels.open("p", 2).expect("a place was given back");
    }
}
