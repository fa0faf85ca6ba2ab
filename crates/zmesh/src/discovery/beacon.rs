//! The UDP beacon source: Zyre's discovery, on every interface, over IPv4 and IPv6.
//!
//! The protocol engine does not care *how* a peer was found; it only consumes [`Sighting`]s — "a
//! node with this UUID accepts ZRE connections at this endpoint" or "this node is leaving". This
//! module turns UDP beacons into sightings, exactly as Zyre sends them (22-byte version-1 beacons
//! on port 5670; in secure mode 54-byte version-3 beacons carrying the node's CURVE public key).
//! A node takes only beacons of its own version, and in secure mode only usable keys (Zyre's
//! rule, [`Beacon::admit`]); it says once in its log that it ignores the other mode's beacons.
//!
//! A [`BeaconSocket`] sends each beacon to every [`Target`] the node has (one or more per
//! interface it beacons on, re-computed by the node when its interfaces change):
//!
//! * [`Target::Broadcast`]: the directed broadcast address of an IPv4 subnet (Zyre's default;
//!   `127.255.255.255` on loopback);
//! * [`Target::Multicast4`]: an IPv4 multicast group (`--multicast`, TTL 1 by default: the
//!   beacon stays on the link like a broadcast) out of one interface; what czmq's `zbeacon`
//!   does when `ZSYS_IPV4_MCAST_ADDRESS` is set;
//! * [`Target::Multicast6`]: an IPv6 link-local multicast group (`ff02::1` by default, `--ipv6`)
//!   out of one interface, from that interface's preferred address (a global or unique-local
//!   one when it has one, else its link-local one).
//!
//! The receiver builds the peer's endpoint from the datagram's source address and the beacon's
//! port (as Zyre does): `tcp://10.0.0.5:49152`, `tcp://[fd00::5]:49152`, and for a link-local
//! source `tcp://[fe80::5%3]:49152`, the scope being the index of the interface the beacon was
//! heard on (what libzmq and Rust's `SocketAddrV6` both parse). The receive sockets are shared
//! by every node of the process (`hub.rs`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use tracing::{debug, info};
use uuid::Uuid;
use zmesh_zre::{Beacon, BeaconRefusal};

use super::hub::{sighting_addr, Family, Hub, Subscription};
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

/// One place a node's beacons go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// IPv4 directed broadcast to this address (the subnet's broadcast address).
    Broadcast(Ipv4Addr),
    /// IPv4 multicast to `group`, out of the interface holding `iface`, with this TTL.
    Multicast4 {
        /// The group, e.g. `239.255.90.82`.
        group: Ipv4Addr,
        /// An IPv4 address of the outgoing interface.
        iface: Ipv4Addr,
        /// Time to live (hops); 1 keeps the beacon on the link.
        ttl: u32,
    },
    /// IPv6 multicast to `group` out of interface `ifindex`, sent from `source`.
    Multicast6 {
        /// The group, e.g. `ff02::1`.
        group: Ipv6Addr,
        /// The outgoing interface's index (the group's scope).
        ifindex: u32,
        /// An address of that interface; receivers connect to it.
        source: Ipv6Addr,
    },
}

impl Target {
    fn family(&self) -> Family {
        match self {
            Target::Broadcast(_) | Target::Multicast4 { .. } => Family::V4,
            Target::Multicast6 { .. } => Family::V6,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Broadcast(b) => write!(f, "broadcast {b}"),
            Target::Multicast4 { group, iface, ttl } => {
                write!(f, "multicast {group} via {iface} (ttl {ttl})")
            }
            Target::Multicast6 {
                group,
                ifindex,
                source,
            } => write!(f, "multicast {group}%{ifindex} from {source}"),
        }
    }
}

/// The UDP beacon source of one node: subscriptions to its port's shared receive sockets (one
/// per address family in use) and the targets it announces itself to.
#[derive(Debug)]
pub struct BeaconSocket {
    port: u16,
    v4: Option<Subscription>,
    v6: Option<Subscription>,
    /// Which subscription is polled first next time.
    next: bool,
    targets: Vec<Target>,
    own_uuid: Uuid,
    /// Our CURVE public key: `Some` = secure mode (version-3 beacons).
    own_key: Option<[u8; 32]>,
    /// The other mode's beacons were reported once in the log.
    said_refused: bool,
}

impl BeaconSocket {
    /// A beacon source on `port` without targets yet ([`BeaconSocket::set_targets`]): version-3
    /// beacons with `own_key` (secure mode), else version 1.
    pub fn new(port: u16, own_uuid: Uuid, own_key: Option<[u8; 32]>) -> BeaconSocket {
        BeaconSocket {
            port,
            v4: None,
            v6: None,
            next: false,
            targets: Vec::new(),
            own_uuid,
            own_key,
            said_refused: false,
        }
    }

    /// Joins this process's receive socket for `0.0.0.0:port` and sends beacons to
    /// `broadcast:port` (one IPv4 interface).
    #[cfg(test)]
    pub fn bind(
        port: u16,
        broadcast: Ipv4Addr,
        own_uuid: Uuid,
        own_key: Option<[u8; 32]>,
    ) -> io::Result<BeaconSocket> {
        let mut s = BeaconSocket::new(port, own_uuid, own_key);
        s.set_targets(vec![Target::Broadcast(broadcast)])?;
        Ok(s)
    }

    /// The targets beacons go to now.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Where beacons go from now on: subscribes to the receive socket of each family used and
    /// joins each multicast group on its interface. A target whose group cannot be joined (the
    /// interface has gone) is kept, logged, and retried at the next call.
    pub fn set_targets(&mut self, targets: Vec<Target>) -> io::Result<()> {
        for t in &targets {
            let sub = match t.family() {
                Family::V4 => &mut self.v4,
                Family::V6 => &mut self.v6,
            };
            if sub.is_none() {
                *sub = Some(Hub::subscribe(self.port, t.family())?);
            }
            let hub = &sub.as_ref().expect("just subscribed").hub.hub;
            let joined = match *t {
                Target::Broadcast(_) => Ok(()),
                Target::Multicast4 { group, iface, .. } => hub.join_group(group.into(), iface, 0),
                Target::Multicast6 { group, ifindex, .. } => {
                    hub.join_group(group.into(), Ipv4Addr::UNSPECIFIED, ifindex)
                }
            };
            if let Err(e) = joined {
                debug!(target = %t, error = %e, "cannot join the beacon group (yet)");
            }
        }
        self.targets = targets;
        Ok(())
    }

    /// Sends one beacon announcing `tcp_port` (0 = leaving) to every target: version 1, or
    /// version 3 with our key in secure mode. Fails only if every target failed.
    pub fn send(&self, tcp_port: u16) -> io::Result<()> {
        let beacon = Beacon {
            version: Beacon::version_for(self.own_key.is_some()),
            uuid: self.own_uuid,
            port: tcp_port,
            public_key: self.own_key,
        }
        .encode();
        let mut last_err = None;
        let mut sent = 0;
        for t in &self.targets {
            let sub = match t.family() {
                Family::V4 => &self.v4,
                Family::V6 => &self.v6,
            };
            let Some(sub) = sub else { continue };
            let hub = &sub.hub.hub;
            let r = match *t {
                Target::Broadcast(b) => hub.send_to(&beacon, SocketAddr::from((b, self.port))),
                Target::Multicast4 { group, iface, ttl } => {
                    hub.send_multicast_v4(&beacon, group, iface, ttl)
                }
                Target::Multicast6 {
                    group,
                    ifindex,
                    source,
                } => hub.send_multicast_v6(&beacon, group, ifindex, source),
            };
            match r {
                Ok(()) => sent += 1,
                Err(e) => {
                    debug!(target = %t, error = %e, "beacon not sent");
                    last_err = Some(e);
                }
            }
        }
        match last_err {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(()),
        }
    }

    /// The next datagram, interpreted. Cancel-safe.
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Result<Sighting, BeaconDropReason>>> {
        self.next = !self.next;
        let order = if self.next { [0, 1] } else { [1, 0] };
        for k in order {
            let sub = if k == 0 { &mut self.v4 } else { &mut self.v6 };
            let Some(sub) = sub else { continue };
            let Poll::Ready(d) = sub.queue.poll_recv(cx) else {
                continue;
            };
            let Some(d) = d else {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "beacon hub stopped",
                )));
            };
            return Poll::Ready(Ok(interpret_with(
                &d.bytes[..d.len],
                d.from,
                self.own_uuid,
                self.own_key.is_some(),
                |addr| match &d.endpoint {
                    Some((a, e)) if *a == addr => e.clone(),
                    _ => endpoint_of(addr),
                },
            )));
        }
        Poll::Pending
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
    let addr = sighting_addr(from, beacon.port);
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
    use std::time::Duration;

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
        for i in 0..2 {
            if i > 0 {
                // A copy within the window would be dropped as a duplicate (hub.rs).
                tokio::time::sleep(super::super::hub::DUPLICATE_WINDOW).await;
            }
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
        let hub_of = |s: &BeaconSocket| s.v4.as_ref().unwrap().hub.clone();
        assert!(
            Arc::ptr_eq(&hub_of(&a), &hub_of(&b)),
            "two hubs for one port"
        );
        let hub = Arc::downgrade(&hub_of(&a).hub);
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
        assert_eq!(hub_of(&c).hub.port, port);
    }

    /// Nodes on two different runtimes share the hub and both hear a beacon (loopback only).
    #[test]
    fn a_hub_serves_nodes_on_several_runtimes() {
        let port = free_udp_port();
        let bcast = Ipv4Addr::new(127, 255, 255, 255);
        let mut listeners = Vec::new();
        for _ in 0..2 {
            // A sender of its own per runtime: one node's beacon sent twice at once would be
            // one beacon (the hub drops the copy).
            let sender = Uuid::new_v4();
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
