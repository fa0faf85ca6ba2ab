//! The UDP beacon source: Zyre's discovery.
//!
//! The protocol engine does not care *how* a peer was found; it only consumes [`Sighting`]s — "a node
//! with this UUID accepts ZRE connections at this endpoint" or "this node is leaving". This module
//! provides the first source of sightings, UDP beacons ([`BeaconSocket`]), exactly as Zyre sends them
//! (22-byte version-1 beacons on port 5670 to the interface's directed broadcast address; in secure
//! mode 54-byte version-3 beacons carrying the node's CURVE public key). A node takes only beacons
//! of its own version, and in secure mode only usable keys (Zyre's rule, [`Beacon::admit`]); it
//! says once in its log that it ignores the other mode's beacons. Later
//! sources (IPv4 multicast, IPv6, gossip, static seed lists) produce the same [`Sighting`] values, so the
//! node and the engine stay unchanged when they are added.
//!
//! Several nodes per host share the beacon port: every socket sets `SO_REUSEADDR` and `SO_REUSEPORT`
//! and binds `0.0.0.0:<port>`; Linux delivers each broadcast datagram to every such socket. A node
//! ignores its own beacons by UUID.
//!
//! # One receive socket per port and process
//!
//! Receiving beacons is the hot path of an idle node: one datagram per peer per beacon interval,
//! 10,000 a second on a host with a hundred nodes. When one process runs many nodes (simulations,
//! tests, benchmarks, gateways), giving each node its own socket makes the kernel clone every
//! datagram once per node, and every node pays a `recvfrom`, a decode and an endpoint string for
//! it. Instead, all [`BeaconSocket`]s of a process on the same port share one hub: one socket,
//! one small receive thread that reads each datagram once, decodes it once, looks its endpoint
//! string up once (built once per sender, shared as an `Arc<str>`) and hands a copy to each
//! node's queue. A node then pays one queue pop per beacon. Beacons are sent from the same
//! socket, so nothing changes on the wire (source port = beacon port, as before).
//!
//! The receive thread is a plain OS thread with a blocking socket rather than a tokio task, so a
//! hub serves nodes on any number of runtimes (every `#[tokio::test]` has its own) and outlives
//! none of them by more than one receive timeout: when the last `BeaconSocket` of a port is
//! dropped, the thread notices within `HUB_POLL` (500 ms) and closes the socket. A node whose
//! queue is full (it is not reading) loses beacons, as it would with a full socket buffer.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;
use tracing::{debug, info};
use uuid::Uuid;
use zmesh_zre::{Beacon, BeaconRefusal};

use super::{endpoint_of, Heard, Sighting, Source};

/// Why a received datagram was not a usable beacon. Counted and logged by the node, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum BeaconDropReason {
    /// Not a ZRE beacon at all, or malformed.
    #[error("undecodable beacon: {0}")]
    Undecodable(#[from] zmesh_zre::BeaconError),
    /// A beacon of the other security mode (a CURVE node's 0x03 beacon for a plain node, a plain
    /// node's 0x01 beacon for a secure one), or a version-3 beacon without a usable key.
    #[error(transparent)]
    Refused(#[from] BeaconRefusal),
    /// Our own beacon, looped back.
    #[error("own beacon")]
    Own,
}

/// Largest datagram kept whole. ZRE beacons are at most 54 bytes; a larger buffer lets the
/// decoder tell "too long" from "truncated".
const DATAGRAM_MAX: usize = 256;

/// Most `(address, port)` endpoint strings a hub keeps; past that (spoofed or very many senders)
/// the cache starts over, so it cannot grow without bound.
const ENDPOINT_CACHE_MAX: usize = 4096;

/// Datagrams queued per node before further beacons are dropped for it (it is not reading).
const NODE_QUEUE: usize = 1024;

/// How often an idle hub thread checks whether its last node has gone.
const HUB_POLL: Duration = Duration::from_millis(500);

/// One received datagram, as handed to every node on the port.
#[derive(Debug, Clone)]
struct Datagram {
    bytes: [u8; DATAGRAM_MAX],
    len: usize,
    from: SocketAddr,
    /// The endpoint string of (sender ip, advertised port), if the datagram decoded as a
    /// beacon with a port.
    endpoint: Option<(SocketAddr, Arc<str>)>,
}

/// The receive socket and thread shared by every [`BeaconSocket`] of one port in this process.
#[derive(Debug)]
struct Hub {
    port: u16,
    socket: std::net::UdpSocket,
    /// Node queues, by subscription id.
    nodes: Mutex<Vec<(u64, mpsc::Sender<Datagram>)>>,
    next_id: AtomicU64,
    /// Set when the last `BeaconSocket` is gone; the thread exits at its next wake-up.
    stop: AtomicBool,
}

/// The live hubs, by port. Entries are weak: a hub lives as long as its nodes do.
fn hubs() -> &'static Mutex<HashMap<u16, Weak<HubHandle>>> {
    static HUBS: OnceLock<Mutex<HashMap<u16, Weak<HubHandle>>>> = OnceLock::new();
    HUBS.get_or_init(Default::default)
}

/// What the `BeaconSocket`s of a port hold; dropping the last one stops the hub thread.
#[derive(Debug)]
struct HubHandle {
    hub: Arc<Hub>,
}

impl Drop for HubHandle {
    fn drop(&mut self) {
        self.hub.stop.store(true, Ordering::Relaxed);
        let mut map = hubs().lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.hub.port)
            .is_some_and(|w| w.strong_count() == 0)
        {
            map.remove(&self.hub.port);
        }
    }
}

impl Hub {
    /// The hub of `port`, created (socket bound, thread started) if there is none.
    fn join(port: u16) -> io::Result<Arc<HubHandle>> {
        let mut map = hubs().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = map.get(&port).and_then(Weak::upgrade) {
            return Ok(h);
        }
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.set_broadcast(true)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
        let socket: std::net::UdpSocket = socket.into();
        socket.set_read_timeout(Some(HUB_POLL))?;
        // A beacon send must never stall a node task for long (UDP sends practically never block).
        socket.set_write_timeout(Some(Duration::from_millis(100)))?;
        let hub = Arc::new(Hub {
            port,
            socket,
            nodes: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let thread_hub = hub.clone();
        std::thread::Builder::new()
            .name(format!("zmesh-beacon-{port}"))
            .spawn(move || thread_hub.run())?;
        let handle = Arc::new(HubHandle { hub });
        map.insert(port, Arc::downgrade(&handle));
        Ok(handle)
    }

    /// The receive loop: one `recvfrom`, one decode and one endpoint lookup per datagram, then a
    /// copy into every node's queue.
    fn run(self: Arc<Hub>) {
        let mut endpoints: HashMap<SocketAddr, Arc<str>> = HashMap::new();
        let mut buf = [0u8; DATAGRAM_MAX];
        while !self.stop.load(Ordering::Relaxed) {
            let (len, from) = match self.socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    debug!(port = self.port, error = %e, "beacon receive error");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let endpoint = match Beacon::decode(&buf[..len]) {
                Ok(b) if b.port != 0 => {
                    let addr = SocketAddr::new(sender_ip(from), b.port);
                    let e = endpoints.get(&addr).cloned().unwrap_or_else(|| {
                        if endpoints.len() >= ENDPOINT_CACHE_MAX {
                            endpoints.clear();
                        }
                        let e = endpoint_of(addr);
                        endpoints.insert(addr, e.clone());
                        e
                    });
                    Some((addr, e))
                }
                _ => None,
            };
            let datagram = Datagram {
                bytes: buf,
                len,
                from,
                endpoint,
            };
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes.retain(|(_, q)| match q.try_send(datagram.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
    }
}

/// The UDP socket a node beacons on and listens to beacons with: a subscription to its port's
/// shared hub (module documentation).
#[derive(Debug)]
pub struct BeaconSocket {
    hub: Arc<HubHandle>,
    id: u64,
    queue: mpsc::Receiver<Datagram>,
    target: SocketAddrV4,
    own_uuid: Uuid,
    /// Our CURVE public key: `Some` = secure mode (version-3 beacons).
    own_key: Option<[u8; 32]>,
    /// The other mode's beacons were reported once in the log.
    said_refused: bool,
}

impl Drop for BeaconSocket {
    fn drop(&mut self) {
        let mut nodes = self.hub.hub.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|(id, _)| *id != self.id);
    }
}

impl BeaconSocket {
    /// Joins this process's receive socket for `0.0.0.0:port` (shared with other nodes on this
    /// host; created on first use) and prepares to send beacons to `broadcast:port`: version 3
    /// with `own_key` (secure mode), else version 1.
    pub fn bind(
        port: u16,
        broadcast: Ipv4Addr,
        own_uuid: Uuid,
        own_key: Option<[u8; 32]>,
    ) -> io::Result<BeaconSocket> {
        let hub = Hub::join(port)?;
        let id = hub.hub.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(NODE_QUEUE);
        hub.hub
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, tx));
        Ok(BeaconSocket {
            hub,
            id,
            queue: rx,
            target: SocketAddrV4::new(broadcast, port),
            own_uuid,
            own_key,
            said_refused: false,
        })
    }

    /// Sends one beacon announcing `tcp_port` (0 = leaving): version 1, or version 3 with our
    /// key in secure mode.
    pub fn send(&self, tcp_port: u16) -> io::Result<()> {
        let beacon = Beacon {
            version: Beacon::version_for(self.own_key.is_some()),
            uuid: self.own_uuid,
            port: tcp_port,
            public_key: self.own_key,
        };
        self.hub.hub.socket.send_to(&beacon.encode(), self.target)?;
        Ok(())
    }

    /// The next datagram, interpreted. Cancel-safe.
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Result<Sighting, BeaconDropReason>>> {
        let Some(d) = std::task::ready!(self.queue.poll_recv(cx)) else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "beacon hub stopped",
            )));
        };
        Poll::Ready(Ok(interpret_with(
            &d.bytes[..d.len],
            d.from,
            self.own_uuid,
            self.own_key.is_some(),
            |addr| match &d.endpoint {
                Some((a, e)) if *a == addr => e.clone(),
                _ => endpoint_of(addr),
            },
        )))
    }

    /// Waits for the next datagram and interprets it. Cancel-safe.
    #[cfg(test)]
    pub async fn recv(&mut self) -> io::Result<Result<Sighting, BeaconDropReason>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Source for BeaconSocket {
    fn kind(&self) -> &'static str {
        "beacon"
    }

    fn poll_heard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Heard>> {
        let polled = std::task::ready!(self.poll_recv(cx));
        let secure = self.own_key.is_some();
        let said = &mut self.said_refused;
        Poll::Ready(polled.map(|r| match r {
            Ok(s) => Heard::Sighting(s),
            Err(BeaconDropReason::Own) => Heard::Own,
            Err(e) => {
                if matches!(e, BeaconDropReason::Refused(_)) && !std::mem::replace(said, true) {
                    if secure {
                        info!("secure mode: ignoring version-1 beacons of plain ZRE nodes (and keyless ones); said once");
                    } else {
                        info!("plain mode: ignoring version-3 beacons of secure (CURVE) nodes; said once");
                    }
                }
                Heard::Garbage(e.to_string())
            }
        }))
    }

    fn announce(&mut self, tcp_port: u16) -> io::Result<()> {
        self.send(tcp_port)
    }
}

/// The sender's address, with an IPv4-mapped IPv6 address unmapped.
fn sender_ip(from: SocketAddr) -> std::net::IpAddr {
    match from {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => (*a.ip()).into(),
        },
        SocketAddr::V4(a) => (*a.ip()).into(),
    }
}

/// Turns one received datagram into a sighting for a plain node (pure; unit-tested).
#[cfg(test)]
pub fn interpret(
    datagram: &[u8],
    from: SocketAddr,
    own_uuid: Uuid,
) -> Result<Sighting, BeaconDropReason> {
    interpret_with(datagram, from, own_uuid, false, endpoint_of)
}

/// [`interpret`], with the endpoint string of `(sender ip, advertised port)` supplied by
/// `endpoint` (a cache in [`BeaconSocket::recv`]).
fn interpret_with(
    datagram: &[u8],
    from: SocketAddr,
    own_uuid: Uuid,
    secure: bool,
    endpoint: impl FnOnce(SocketAddr) -> Arc<str>,
) -> Result<Sighting, BeaconDropReason> {
    let beacon = Beacon::decode(datagram)?;
    beacon.admit(secure)?;
    if beacon.uuid == own_uuid {
        return Err(BeaconDropReason::Own);
    }
    if beacon.port == 0 {
        return Ok(Sighting::Left { uuid: beacon.uuid });
    }
    let addr = SocketAddr::new(sender_ip(from), beacon.port);
    Ok(Sighting::Seen {
        uuid: beacon.uuid,
        addr,
        endpoint: endpoint(addr),
        public_key: beacon.public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> SocketAddr {
        "10.77.0.12:5670".parse().unwrap()
    }

    #[test]
    fn beacon_with_port_is_a_sighting_at_the_source_address() {
        let uuid = Uuid::from_u128(0x3A07FC75400A5B36F319333FA8492A52);
        let dg = [
            0x5A, 0x52, 0x45, 0x01, 0x3A, 0x07, 0xFC, 0x75, 0x40, 0x0A, 0x5B, 0x36, 0xF3, 0x19,
            0x33, 0x3F, 0xA8, 0x49, 0x2A, 0x52, 0xC0, 0x00,
        ];
        let s = interpret(&dg, from(), Uuid::nil()).unwrap();
        assert_eq!(
            s,
            Sighting::Seen {
                uuid,
                addr: "10.77.0.12:49152".parse().unwrap(),
                endpoint: "tcp://10.77.0.12:49152".into(),
                public_key: None,
            }
        );
        assert!(matches!(
            interpret(&dg, from(), uuid),
            Err(BeaconDropReason::Own)
        ));
    }

    /// Loopback only (127.255.255.255 reaches every socket on the port on `lo`).
    #[tokio::test]
    async fn a_known_senders_endpoint_is_built_once() {
        let port = free_udp_port();
        let bcast = Ipv4Addr::new(127, 255, 255, 255);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let tx = BeaconSocket::bind(port, bcast, a, None).unwrap();
        let mut rx = BeaconSocket::bind(port, bcast, b, None).unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            tx.send(4242).unwrap();
            let deadline = std::time::Duration::from_secs(5);
            loop {
                let s = tokio::time::timeout(deadline, rx.recv())
                    .await
                    .unwrap()
                    .unwrap();
                if let Ok(Sighting::Seen { uuid, endpoint, .. }) = s {
                    assert_eq!(uuid, a);
                    assert_eq!(&*endpoint, "tcp://127.0.0.1:4242");
                    seen.push(endpoint);
                    break;
                }
            }
        }
        assert!(
            Arc::ptr_eq(&seen[0], &seen[1]),
            "second beacon re-formatted"
        );
    }

    fn free_udp_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn one_hub_per_port_released_with_its_last_socket() {
        let port = free_udp_port();
        let bcast = Ipv4Addr::new(127, 255, 255, 255);
        let a = BeaconSocket::bind(port, bcast, Uuid::new_v4(), None).unwrap();
        let b = BeaconSocket::bind(port, bcast, Uuid::new_v4(), None).unwrap();
        assert!(Arc::ptr_eq(&a.hub, &b.hub), "two hubs for one port");
        let hub = Arc::downgrade(&a.hub.hub);
        drop(a);
        assert!(
            hub.upgrade().is_some(),
            "hub gone while a socket still uses it"
        );
        drop(b);
        // The thread holds the last reference; it exits within one receive timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while hub.upgrade().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "hub thread still running"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // A new socket on the port gets a fresh hub.
        let c = BeaconSocket::bind(port, bcast, Uuid::new_v4(), None).unwrap();
        assert_eq!(c.hub.hub.port, port);
    }

    /// Nodes on two different runtimes share the hub and both hear a beacon (loopback only).
    #[test]
    fn a_hub_serves_nodes_on_several_runtimes() {
        let port = free_udp_port();
        let bcast = Ipv4Addr::new(127, 255, 255, 255);
        let sender = Uuid::new_v4();
        let mut listeners = Vec::new();
        for _ in 0..2 {
            listeners.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut rx = BeaconSocket::bind(port, bcast, Uuid::new_v4(), None).unwrap();
                    let tx = BeaconSocket::bind(port, bcast, sender, None).unwrap();
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                    loop {
                        tx.send(4243).unwrap();
                        let got = tokio::time::timeout_at(deadline, rx.recv()).await;
                        match got.expect("no beacon within 5 s").unwrap() {
                            Ok(Sighting::Seen { uuid, .. }) if uuid == sender => return,
                            _ => {}
                        }
                    }
                })
            }));
        }
        for l in listeners {
            l.join().unwrap();
        }
    }

    #[test]
    fn port_zero_is_a_departure() {
        let uuid = Uuid::new_v4();
        let b = Beacon {
            version: 1,
            uuid,
            port: 0,
            public_key: None,
        }
        .encode();
        assert_eq!(
            interpret(&b, from(), Uuid::nil()).unwrap(),
            Sighting::Left { uuid }
        );
    }

    #[test]
    fn garbage_and_other_versions_are_dropped() {
        assert!(matches!(
            interpret(b"hello world", from(), Uuid::nil()),
            Err(BeaconDropReason::Undecodable(_))
        ));
        let mut v3 = vec![0x5A, 0x52, 0x45, 0x03];
        v3.extend_from_slice(&[7u8; 16]);
        v3.extend_from_slice(&[0xC0, 0x00]);
        v3.extend_from_slice(&[9u8; 32]);
        assert!(matches!(
            interpret(&v3, from(), Uuid::nil()),
            Err(BeaconDropReason::Refused(BeaconRefusal::OtherVersion {
                got: 3,
                want: 1
            }))
        ));
    }

    #[test]
    fn a_secure_node_takes_v3_beacons_with_their_key_and_nothing_else() {
        let uuid = Uuid::new_v4();
        let key = [0x42; 32];
        let secure = |dg: &[u8]| interpret_with(dg, from(), Uuid::nil(), true, endpoint_of);
        assert_eq!(
            secure(&Beacon::v3(uuid, 49152, key).encode()).unwrap(),
            Sighting::Seen {
                uuid,
                addr: "10.77.0.12:49152".parse().unwrap(),
                endpoint: "tcp://10.77.0.12:49152".into(),
                public_key: Some(key),
            }
        );
        assert_eq!(
            secure(&Beacon::v3(uuid, 0, key).encode()).unwrap(),
            Sighting::Left { uuid }
        );
        assert!(matches!(
            secure(&Beacon::v1(uuid, 49152).encode()),
            Err(BeaconDropReason::Refused(BeaconRefusal::OtherVersion {
                got: 1,
                want: 3
            }))
        ));
        let mut zero = key;
        zero[0] = 0;
        assert!(matches!(
            secure(&Beacon::v3(uuid, 49152, zero).encode()),
            Err(BeaconDropReason::Refused(BeaconRefusal::NoKey))
        ));
    }

    /// A secure socket sends 54-byte version-3 beacons with its key (loopback only).
    #[tokio::test]
    async fn a_secure_socket_sends_v3_beacons() {
        let port = free_udp_port();
        let bcast = Ipv4Addr::new(127, 255, 255, 255);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let key = [0x42; 32];
        let tx = BeaconSocket::bind(port, bcast, a, Some(key)).unwrap();
        let mut rx = BeaconSocket::bind(port, bcast, b, Some([0x43; 32])).unwrap();
        let mut plain = BeaconSocket::bind(port, bcast, Uuid::new_v4(), None).unwrap();
        tx.send(4244).unwrap();
        let deadline = Duration::from_secs(5);
        loop {
            let s = tokio::time::timeout(deadline, rx.recv())
                .await
                .unwrap()
                .unwrap();
            if let Ok(Sighting::Seen {
                uuid, public_key, ..
            }) = s
            {
                assert_eq!(uuid, a);
                assert_eq!(public_key, Some(key));
                break;
            }
        }
        // The plain node refuses it as the other mode's.
        loop {
            let s = tokio::time::timeout(deadline, plain.recv())
                .await
                .unwrap()
                .unwrap();
            match s {
                Err(BeaconDropReason::Refused(BeaconRefusal::OtherVersion { got: 3, .. })) => break,
                Err(BeaconDropReason::Own) => {}
                other => panic!("plain node took a v3 beacon: {other:?}"),
            }
        }
    }
}
