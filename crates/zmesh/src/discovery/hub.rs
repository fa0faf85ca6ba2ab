//! One receive socket per beacon port, address family and process, shared by every node.
//!
//! Receiving beacons is the hot path of an idle node: one datagram per peer per beacon interval,
//! 10,000 a second on a host with a hundred nodes. When one process runs many nodes (simulations,
//! tests, benchmarks, gateways), giving each node its own socket makes the kernel clone every
//! datagram once per node, and every node pays a `recvfrom`, a decode and an endpoint string for
//! it. Instead, all beacon sources of a process on the same port and family share one hub: one
//! socket, one small receive thread that reads each datagram once, decodes it once, looks its
//! endpoint string up once (built once per sender, shared as an `Arc<str>`) and hands a copy to
//! each node's queue. A node then pays one queue pop per beacon.
//!
//! * **IPv4** hub: bound to `0.0.0.0:<port>` with `SO_BROADCAST`; it receives directed
//!   broadcasts and every IPv4 multicast group joined on it ([`Hub::join_group`], refcount-free:
//!   a membership stays until the hub closes, which costs nothing but the filter entry).
//!   Broadcast beacons are sent from it (source port = beacon port, as Zyre).
//! * **IPv6** hub: bound to `[::]:<port>` (`IPV6_V6ONLY`), joined to the link-local group on
//!   every interface a node beacons on; the sender's scope (interface index) comes with every
//!   datagram, so link-local endpoints are usable as they are.
//! * Multicast beacons go out from one small **send socket per interface** (kept by the hub),
//!   because the outgoing interface of a multicast datagram is a per-socket option
//!   (`IP_MULTICAST_IF`, `IPV6_MULTICAST_IF`) and nodes on several threads share the hub.
//!
//! Several nodes per host (and processes) share the beacon port: every socket sets
//! `SO_REUSEADDR` and `SO_REUSEPORT`; Linux delivers each broadcast or multicast datagram to
//! every such socket. The receive thread is a plain OS thread with a blocking socket rather than
//! a tokio task, so a hub serves nodes on any number of runtimes and outlives none of them by more
//! than one receive timeout: when the last subscription of a hub is dropped, the thread notices
//! within [`HUB_POLL`] and closes the socket. A node whose queue is full (it is not reading) loses
//! beacons, as it would with a full socket buffer.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;
use tracing::debug;
use zmesh_zre::Beacon;

use super::endpoint_of;

/// Largest datagram kept whole. ZRE beacons are at most 54 bytes; a larger buffer lets the
/// decoder tell "too long" from "truncated".
pub(super) const DATAGRAM_MAX: usize = 256;

/// Most `(address, port)` endpoint strings a hub keeps; past that (spoofed or very many senders)
/// the cache starts over, so it cannot grow without bound.
const ENDPOINT_CACHE_MAX: usize = 4096;

/// Datagrams queued per node before further beacons are dropped for it (it is not reading).
const NODE_QUEUE: usize = 1024;

/// How often an idle hub thread checks whether its last node has gone.
const HUB_POLL: Duration = Duration::from_millis(500);

/// Two identical beacons from one address this close together are one beacon sent twice (a node
/// with broadcast and multicast on sends both back to back, and this hub hears both): the second
/// is not handed to the nodes. It carries nothing new, and with every source on it was a third of
/// an idle node's work. Far below any sensible beacon interval; should the interval be shorter,
/// a dropped copy still tells nothing the kept one did not.
pub(super) const DUPLICATE_WINDOW: Duration = Duration::from_millis(25);

/// A beacon send must never stall a node task for long (UDP sends practically never block).
const SEND_TIMEOUT: Duration = Duration::from_millis(100);

/// The address family of a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Family {
    V4,
    V6,
}

/// One received datagram, as handed to every node on the port.
#[derive(Debug, Clone)]
pub(super) struct Datagram {
    pub(super) bytes: [u8; DATAGRAM_MAX],
    pub(super) len: usize,
    pub(super) from: SocketAddr,
    /// The endpoint string of (sender ip, advertised port), if the datagram decoded as a
    /// beacon with a port.
    pub(super) endpoint: Option<(SocketAddr, Arc<str>)>,
}

/// Where a multicast send socket sends from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SenderKey {
    /// IPv4 multicast out of the interface holding this address, with this TTL.
    V4 { iface: Ipv4Addr, ttl: u32 },
    /// IPv6 multicast out of this interface index, from this source address.
    V6 { ifindex: u32, source: Ipv6Addr },
}

/// The receive socket and thread shared by every beacon source of one port and family.
#[derive(Debug)]
pub(super) struct Hub {
    pub(super) port: u16,
    family: Family,
    socket: std::net::UdpSocket,
    /// Node queues, by subscription id.
    nodes: Mutex<Vec<(u64, mpsc::Sender<Datagram>)>>,
    next_id: AtomicU64,
    /// Set when the last subscription is gone; the thread exits at its next wake-up.
    stop: AtomicBool,
    /// Multicast memberships taken on `socket`: (group, interface address or index).
    joined: Mutex<HashSet<(IpAddr, u32)>>,
    /// Multicast send sockets, one per interface.
    senders: Mutex<HashMap<SenderKey, std::net::UdpSocket>>,
}

type HubMap = HashMap<(u16, Family), Weak<HubHandle>>;

/// The live hubs, by port and family. Entries are weak: a hub lives as long as its nodes do.
fn hubs() -> &'static Mutex<HubMap> {
    static HUBS: OnceLock<Mutex<HubMap>> = OnceLock::new();
    HUBS.get_or_init(Default::default)
}

/// What the subscriptions of a hub hold; dropping the last one stops the hub thread.
#[derive(Debug)]
pub(super) struct HubHandle {
    pub(super) hub: Arc<Hub>,
}

impl Drop for HubHandle {
    fn drop(&mut self) {
        self.hub.stop.store(true, Ordering::Relaxed);
        let mut map = hubs().lock().unwrap_or_else(|e| e.into_inner());
        let key = (self.hub.port, self.hub.family);
        if map.get(&key).is_some_and(|w| w.strong_count() == 0) {
            map.remove(&key);
        }
    }
}

/// One node's subscription to a hub: its queue of datagrams.
#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) hub: Arc<HubHandle>,
    id: u64,
    pub(super) queue: mpsc::Receiver<Datagram>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut nodes = self.hub.hub.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|(id, _)| *id != self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// Subscribes to the hub of `port` and `family`, created (socket bound, thread started) if
    /// there is none.
    pub(super) fn subscribe(port: u16, family: Family) -> io::Result<Subscription> {
        let hub = Hub::join(port, family)?;
        let id = hub.hub.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(NODE_QUEUE);
        lock(&hub.hub.nodes).push((id, tx));
        Ok(Subscription { hub, id, queue: rx })
    }

    fn join(port: u16, family: Family) -> io::Result<Arc<HubHandle>> {
        let mut map = lock(hubs());
        if let Some(h) = map.get(&(port, family)).and_then(Weak::upgrade) {
            return Ok(h);
        }
        let socket = match family {
            Family::V4 => {
                let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                reuse(&s)?;
                s.set_broadcast(true)?;
                s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
                s
            }
            Family::V6 => {
                let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
                s.set_only_v6(true)?;
                reuse(&s)?;
                s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
                s
            }
        };
        let socket: std::net::UdpSocket = socket.into();
        socket.set_read_timeout(Some(HUB_POLL))?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        let hub = Arc::new(Hub {
            port,
            family,
            socket,
            nodes: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            joined: Mutex::new(HashSet::new()),
            senders: Mutex::new(HashMap::new()),
        });
        let thread_hub = hub.clone();
        let tag = match family {
            Family::V4 => "",
            Family::V6 => "-v6",
        };
        std::thread::Builder::new()
            .name(format!("zmesh-beacon-{port}{tag}"))
            .spawn(move || thread_hub.run())?;
        let handle = Arc::new(HubHandle { hub });
        map.insert((port, family), Arc::downgrade(&handle));
        Ok(handle)
    }

    /// Takes a membership of `group` on the interface holding `iface` (IPv4) or of index
    /// `ifindex` (IPv6), once.
    pub(super) fn join_group(
        &self,
        group: IpAddr,
        iface: Ipv4Addr,
        ifindex: u32,
    ) -> io::Result<()> {
        let key = match group {
            IpAddr::V4(_) => (group, u32::from(iface)),
            IpAddr::V6(_) => (group, ifindex),
        };
        let mut joined = lock(&self.joined);
        if joined.contains(&key) {
            return Ok(());
        }
        let r = match group {
            IpAddr::V4(g) => self.socket.join_multicast_v4(&g, &iface),
            IpAddr::V6(g) => self.socket.join_multicast_v6(&g, ifindex),
        };
        match r {
            // Already a member (another socket of ours joined first): as good.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        joined.insert(key);
        Ok(())
    }

    /// Sends a datagram from the hub's own socket (IPv4 broadcast).
    pub(super) fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
        self.socket.send_to(bytes, to).map(|_| ())
    }

    /// Sends an IPv4 multicast datagram to `group:port` out of the interface holding `iface`.
    pub(super) fn send_multicast_v4(
        &self,
        bytes: &[u8],
        group: Ipv4Addr,
        iface: Ipv4Addr,
        ttl: u32,
    ) -> io::Result<()> {
        let to = SocketAddr::from((group, self.port));
        self.with_sender(SenderKey::V4 { iface, ttl }, |s| s.send_to(bytes, to))
    }

    /// Sends an IPv6 multicast datagram to `group:port` out of interface `ifindex`, from
    /// `source` (an address of that interface; its scope is the interface).
    pub(super) fn send_multicast_v6(
        &self,
        bytes: &[u8],
        group: Ipv6Addr,
        ifindex: u32,
        source: Ipv6Addr,
    ) -> io::Result<()> {
        let to = SocketAddr::V6(SocketAddrV6::new(group, self.port, 0, ifindex));
        self.with_sender(SenderKey::V6 { ifindex, source }, |s| s.send_to(bytes, to))
    }

    fn with_sender(
        &self,
        key: SenderKey,
        send: impl FnOnce(&std::net::UdpSocket) -> io::Result<usize>,
    ) -> io::Result<()> {
        let mut senders = lock(&self.senders);
        let socket = match senders.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(sender(key)?),
        };
        let r = send(socket).map(|_| ());
        if r.is_err() {
            // The interface or address may be gone: a fresh socket next time.
            senders.remove(&key);
        }
        r
    }

    /// The receive loop: one `recvfrom`, one decode and one endpoint lookup per datagram, then a
    /// copy into every node's queue.
    fn run(self: Arc<Hub>) {
        let mut endpoints: HashMap<SocketAddr, Arc<str>> = HashMap::new();
        let mut recent = Recent::default();
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
            let decoded = Beacon::decode(&buf[..len]);
            if let Ok(b) = &decoded {
                if recent.again((from.ip(), b.uuid), &buf[..len], Instant::now()) {
                    continue;
                }
            }
            let endpoint = match decoded {
                Ok(b) if b.port != 0 => {
                    let addr = sighting_addr(from, b.port);
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
            let mut nodes = lock(&self.nodes);
            nodes.retain(|(_, q)| match q.try_send(datagram.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
    }
}

/// The last beacon heard from each (sender address, UUID), to drop copies of it.
#[derive(Default)]
struct Recent {
    last: HashMap<(IpAddr, uuid::Uuid), (Instant, Vec<u8>)>,
}

impl Recent {
    /// True if `bytes` from `key` were heard less than [`DUPLICATE_WINDOW`] before `now`;
    /// remembers them otherwise. Bounded like the endpoint cache.
    fn again(&mut self, key: (IpAddr, uuid::Uuid), bytes: &[u8], now: Instant) -> bool {
        if let Some((at, b)) = self.last.get_mut(&key) {
            if b.as_slice() == bytes && now.saturating_duration_since(*at) < DUPLICATE_WINDOW {
                return true;
            }
            *at = now;
            b.clear();
            b.extend_from_slice(bytes);
            return false;
        }
        if self.last.len() >= ENDPOINT_CACHE_MAX {
            self.last.clear();
        }
        self.last.insert(key, (now, bytes.to_vec()));
        false
    }
}

fn reuse(s: &Socket) -> io::Result<()> {
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    Ok(())
}

/// A multicast send socket for `key`: bound to the interface's address (ephemeral port), the
/// outgoing interface set, loopback on (nodes on this host hear it too).
fn sender(key: SenderKey) -> io::Result<std::net::UdpSocket> {
    let s = match key {
        SenderKey::V4 { iface, ttl } => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::from((iface, 0)).into())?;
            s.set_multicast_if_v4(&iface)?;
            s.set_multicast_ttl_v4(ttl)?;
            s.set_multicast_loop_v4(true)?;
            s
        }
        SenderKey::V6 { ifindex, source } => {
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_only_v6(true)?;
            let scope = if is_link_local(&source) { ifindex } else { 0 };
            s.bind(&SocketAddr::V6(SocketAddrV6::new(source, 0, 0, scope)).into())?;
            s.set_multicast_if_v6(ifindex)?;
            s.set_multicast_hops_v6(1)?;
            s.set_multicast_loop_v6(true)?;
            s
        }
    };
    let s: std::net::UdpSocket = s.into();
    s.set_write_timeout(Some(SEND_TIMEOUT))?;
    Ok(s)
}

/// `fe80::/10`.
pub(crate) fn is_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// Where a beacon from `from` advertising `port` says to connect: the sender's address (an
/// IPv4-mapped IPv6 address unmapped; a link-local IPv6 address keeps its scope, the interface
/// it was heard on) and the advertised port.
pub(super) fn sighting_addr(from: SocketAddr, port: u16) -> SocketAddr {
    match from {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, port)),
            None => {
                let scope = if is_link_local(a.ip()) {
                    a.scope_id()
                } else {
                    0
                };
                SocketAddr::V6(SocketAddrV6::new(*a.ip(), port, 0, scope))
            }
        },
        SocketAddr::V4(a) => SocketAddr::from((*a.ip(), port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_within_the_window_is_dropped_and_nothing_else() {
        let mut r = Recent::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let u = uuid::Uuid::new_v4();
        let t0 = Instant::now();
        let beacon = b"ZRE\x01 sixteen bytes!\x12\x34";
        assert!(!r.again((a, u), beacon, t0));
        // The multicast copy of the broadcast beacon, 1 ms later: dropped.
        assert!(r.again((a, u), beacon, t0 + Duration::from_millis(1)));
        // Same beacon from another address, or another node's on the same address: kept.
        assert!(!r.again((b, u), beacon, t0 + Duration::from_millis(2)));
        assert!(!r.again(
            (a, uuid::Uuid::new_v4()),
            beacon,
            t0 + Duration::from_millis(2)
        ));
        // Different content (a leave beacon) at once: kept.
        let leave = b"ZRE\x01 sixteen bytes!\x00\x00";
        assert!(!r.again((a, u), leave, t0 + Duration::from_millis(3)));
        // The next interval's beacon: kept.
        assert!(!r.again((a, u), beacon, t0 + Duration::from_secs(1)));
        assert!(!r.again((a, u), beacon, t0 + Duration::from_secs(2)));
    }
}
