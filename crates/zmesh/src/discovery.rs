//! Discovery: where a node learns that peers exist.
//!
//! The protocol engine does not care *how* a peer was found; it only consumes [`Sighting`]s — "a node
//! with this UUID accepts ZRE connections at this endpoint" or "this node is leaving". This module
//! provides the first source of sightings, UDP beacons ([`BeaconSocket`]), exactly as Zyre sends them
//! (22-byte version-1 beacons on port 5670 to the interface's directed broadcast address). Later
//! sources (IPv4 multicast, IPv6, gossip, static seed lists) produce the same [`Sighting`] values, so the
//! node and the engine stay unchanged when they are added.
//!
//! Several nodes per host share the beacon port: every socket sets `SO_REUSEADDR` and `SO_REUSEPORT`
//! and binds `0.0.0.0:<port>`; Linux delivers each broadcast datagram to every such socket. A node
//! ignores its own beacons by UUID.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use uuid::Uuid;
use zmesh_zre::Beacon;

/// One observation of a peer by a discovery source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sighting {
    /// A node with this UUID accepts ZRE connections at `endpoint` (`tcp://ip:port`).
    Seen {
        /// The peer's UUID.
        uuid: Uuid,
        /// Where to connect, built from the beacon's source address and advertised port.
        endpoint: String,
    },
    /// The node announced it is leaving (a port-0 beacon).
    Left {
        /// The peer's UUID.
        uuid: Uuid,
    },
}

/// Why a received datagram was not a usable beacon. Counted and logged by the node, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum BeaconDropReason {
    /// Not a ZRE beacon at all, or malformed.
    #[error("undecodable beacon: {0}")]
    Undecodable(#[from] zmesh_zre::BeaconError),
    /// A beacon of another version (e.g. a CURVE node's 0x03 beacon) than the one we send.
    #[error("beacon version {0} ignored")]
    OtherVersion(u8),
    /// Our own beacon, looped back.
    #[error("own beacon")]
    Own,
    /// Sent from an IPv6 address (not supported yet).
    #[error("beacon from an IPv6 address")]
    Ipv6Source,
}

/// The UDP socket a node beacons on and listens to beacons with.
#[derive(Debug)]
pub struct BeaconSocket {
    socket: UdpSocket,
    target: SocketAddrV4,
    own_uuid: Uuid,
}

impl BeaconSocket {
    /// Binds `0.0.0.0:port` (shared with other nodes on this host) and prepares to send beacons to
    /// `broadcast:port`.
    pub fn bind(port: u16, broadcast: Ipv4Addr, own_uuid: Uuid) -> io::Result<BeaconSocket> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.set_broadcast(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        Ok(BeaconSocket {
            socket,
            target: SocketAddrV4::new(broadcast, port),
            own_uuid,
        })
    }

    /// Sends one version-1 beacon announcing `tcp_port` (0 = leaving).
    pub async fn send(&self, tcp_port: u16) -> io::Result<()> {
        let beacon = Beacon {
            version: 1,
            uuid: self.own_uuid,
            port: tcp_port,
            public_key: None,
        };
        self.socket.send_to(&beacon.encode(), self.target).await?;
        Ok(())
    }

    /// Waits for the next datagram and interprets it. Cancel-safe.
    pub async fn recv(&self) -> io::Result<Result<Sighting, BeaconDropReason>> {
        // ZRE beacons are at most 54 bytes; a larger buffer lets us tell "too long" from "truncated".
        let mut buf = [0u8; 256];
        let (n, from) = self.socket.recv_from(&mut buf).await?;
        Ok(interpret(&buf[..n], from, self.own_uuid))
    }
}

/// Turns one received datagram into a sighting (pure; unit-tested).
pub fn interpret(
    datagram: &[u8],
    from: SocketAddr,
    own_uuid: Uuid,
) -> Result<Sighting, BeaconDropReason> {
    let beacon = Beacon::decode(datagram)?;
    if beacon.version != 1 {
        return Err(BeaconDropReason::OtherVersion(beacon.version));
    }
    if beacon.uuid == own_uuid {
        return Err(BeaconDropReason::Own);
    }
    let ip = match from {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => v4,
            None => return Err(BeaconDropReason::Ipv6Source),
        },
    };
    if beacon.port == 0 {
        Ok(Sighting::Left { uuid: beacon.uuid })
    } else {
        Ok(Sighting::Seen {
            uuid: beacon.uuid,
            endpoint: format!("tcp://{ip}:{}", beacon.port),
        })
    }
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
                endpoint: "tcp://10.77.0.12:49152".into()
            }
        );
        assert!(matches!(
            interpret(&dg, from(), uuid),
            Err(BeaconDropReason::Own)
        ));
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
            Err(BeaconDropReason::OtherVersion(3))
        ));
    }
}
