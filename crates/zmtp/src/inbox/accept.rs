//! The accept side: the listener, the accept task, and one handshake task per connection, which
//! hands the established connection to the inbox.

use super::{InboxConfig, InboxEvent, PeerAddr};
use crate::codec::Metadata;
use crate::conn::{self, Stream};
use crate::error::HandshakeError;
use crate::identity::Identity;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// What the accept side hands to the inbox: a finished handshake, or an event to pass on.
pub(super) enum Control {
    /// A connection that completed its handshake.
    Established(Box<Established>),
    /// An event with no connection behind it (a refused or failed handshake).
    Event(InboxEvent),
}

/// A connection whose handshake is done, on its way from its handshake task to the inbox.
pub(super) struct Established {
    pub(super) conn: conn::Conn,
    pub(super) identity: Identity,
    pub(super) peer: PeerAddr,
    pub(super) socket_type: String,
    pub(super) slot: SlotGuard,
}

/// Counts one open connection against `max_connections` until dropped.
pub(super) struct SlotGuard(Arc<AtomicUsize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<(Stream, PeerAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), PeerAddr::Tcp(a)))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), PeerAddr::Ipc))
            }
        }
    }
}

pub(super) fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

/// Accepts connections and runs each handshake in its own task (under the handshake timeout, so a
/// slow-loris peer only ever holds its own task); finished handshakes go to the inbox.
pub(super) async fn accept_loop(
    listener: Listener,
    cfg: Arc<InboxConfig>,
    tx: mpsc::Sender<Control>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            _ = tx.closed() => return,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    if open.load(Ordering::Relaxed) >= cfg.max_connections {
                        tracing::debug!(%peer, "connection limit reached, refusing");
                        drop(stream);
                        let _ = tx.try_send(Control::Event(InboxEvent::HandshakeFailed {
                            peer,
                            reason: HandshakeError::TooManyConnections,
                        }));
                        continue;
                    }
                    open.fetch_add(1, Ordering::Relaxed);
                    let slot = SlotGuard(open.clone());
                    handshakes.spawn(handshake(stream, peer, slot, cfg.clone(), tx.clone()));
                }
                Err(e) => {
                    // E.g. EMFILE: back off briefly instead of spinning.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// A libzmq-style generated identity: 0x00 followed by a 32-bit counter.
fn generated_identity() -> Identity {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let ctr = NEXT.get_or_init(|| {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id();
        AtomicU32::new(seed)
    });
    let n = ctr.fetch_add(1, Ordering::Relaxed);
    let mut v = [0u8; 5];
    v[1..].copy_from_slice(&n.to_be_bytes());
    Identity::from_slice(&v)
}

/// One connection's handshake; the established connection is handed to the inbox.
async fn handshake(
    stream: Stream,
    peer: PeerAddr,
    slot: SlotGuard,
    cfg: Arc<InboxConfig>,
    tx: mpsc::Sender<Control>,
) {
    let peer_s = peer.to_string();
    let params = conn::HandshakeParams {
        socket_type: "ROUTER",
        accept: &["DEALER", "REQ", "ROUTER"],
        metadata: Metadata::new().with("Socket-Type", "ROUTER"),
        max_frame: cfg.max_frame_size,
        mech: {
            let mut m = cfg.mechanism.build(true);
            m.set_peer_addr(peer);
            m
        },
        peer: &peer_s,
    };
    let conn =
        match tokio::time::timeout(cfg.handshake_timeout, conn::handshake(stream, params)).await {
            Ok(Ok(c)) => c,
            r => {
                let reason = match r {
                    Ok(Err(e)) => e,
                    _ => HandshakeError::Timeout,
                };
                tracing::debug!(peer = %peer, %reason, "inbox handshake failed");
                let _ = tx
                    .send(Control::Event(InboxEvent::HandshakeFailed { peer, reason }))
                    .await;
                return;
            }
        };
    let identity = match conn.peer_meta.get("Identity") {
        // Own copy: do not pin the handshake read buffer for the connection's lifetime.
        Some(id) if !id.is_empty() => Identity::from_slice(id),
        _ => generated_identity(),
    };
    let socket_type = conn
        .peer_meta
        .get("Socket-Type")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let _ = tx
        .send(Control::Established(Box::new(Established {
            conn,
            identity,
            peer,
            socket_type,
            slot,
        })))
        .await;
}
