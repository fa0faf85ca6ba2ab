//! Reaching brokers at fixed endpoints, with no beacon: the broker's UUID is derived from its
//! endpoint, so a node configured with `tcp://10.0.0.1:7000` knows whom it will meet there and
//! feeds the engine a sighting of that UUID at that endpoint, every beacon interval, like a
//! beacon would. The engine then connects, says HELLO, and the broker connects back: an ordinary
//! ZRE session, so everything above (the services layer, liveness, CURVE) works unchanged.
//!
//! Endpoints learned from brokers (the BROKERS gossip of the services layer) are added to the
//! set while the node runs. A broker endpoint is written `tcp://IP:PORT`, and in secure mode
//! `tcp://IP:PORT|Z85KEY` (the broker's public key, which the CURVE client needs; a broker
//! announces itself that way).
//!
//! This is deliberately small and kept here: a general "connect to this endpoint" discovery
//! source belongs to the discovery work, which can replace this one.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;
use zmesh_zmtp::curve::CurvePublicKey;

use crate::discovery::{Heard, Sighting, Source};

/// The UUID of the broker at `endpoint` (the endpoint without its key): a version-8 UUID of a
/// fixed 128-bit hash, the same on every node and platform.
pub fn broker_uuid(endpoint: &str) -> Uuid {
    let endpoint = endpoint.split('|').next().unwrap_or(endpoint);
    let mut h = [0u64; 2];
    for (i, seed) in [0xcbf2_9ce4_8422_2325u64, 0x8422_2325_cbf2_9ce4]
        .iter()
        .enumerate()
    {
        let mut x = *seed;
        for b in b"zmesh-broker:".iter().chain(endpoint.as_bytes()) {
            x ^= u64::from(*b);
            x = x.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Finalise (FNV alone mixes the last bytes poorly).
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        h[i] = x;
    }
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&h[0].to_be_bytes());
    bytes[8..].copy_from_slice(&h[1].to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// A broker endpoint, parsed: address, the endpoint string, and the key if given.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokerAddr {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `tcp://IP:PORT`.
    pub endpoint: String,
    /// Its CURVE public key (secure mode).
    pub key: Option<[u8; 32]>,
}

/// Parses `tcp://IP:PORT` or `tcp://IP:PORT|Z85KEY`.
pub fn parse_broker(s: &str) -> Result<BrokerAddr, String> {
    let (endpoint, key) = match s.split_once('|') {
        Some((e, k)) => {
            let key =
                CurvePublicKey::from_z85(k).map_err(|e| format!("broker key in {s:?}: {e}"))?;
            (e, Some(*key.as_bytes()))
        }
        None => (s, None),
    };
    let addr = super::endpoint_addr(endpoint)
        .ok_or_else(|| format!("broker endpoint {s:?}: expected tcp://IP:PORT"))?;
    Ok(BrokerAddr {
        addr,
        endpoint: format!("tcp://{addr}"),
        key,
    })
}

/// The discovery source of broker sightings (module docs).
#[derive(Debug)]
pub(super) struct BrokerSource {
    known: BTreeSet<BrokerAddr>,
    /// Endpoints this node itself listens on (a broker does not dial itself).
    own: Option<String>,
    learned: mpsc::UnboundedReceiver<Vec<String>>,
    tick: tokio::time::Interval,
    queue: VecDeque<Sighting>,
    /// True once the node announced its TCP port (its inbox is bound): a HELLO sent before
    /// would carry no endpoint, and the broker could not connect back.
    attached: bool,
}

impl BrokerSource {
    pub(super) fn new(
        configured: Vec<BrokerAddr>,
        own: Option<String>,
        learned: mpsc::UnboundedReceiver<Vec<String>>,
        interval: Duration,
    ) -> BrokerSource {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        BrokerSource {
            known: configured.into_iter().collect(),
            own,
            learned,
            tick,
            queue: VecDeque::new(),
            attached: false,
        }
    }

    fn sighting(b: &BrokerAddr) -> Sighting {
        let uuid = broker_uuid(&b.endpoint);
        match b.key {
            Some(k) => Sighting::seen_with_key(uuid, b.addr, k),
            None => Sighting::seen(uuid, b.addr),
        }
    }

    fn is_own(&self, b: &BrokerAddr) -> bool {
        self.own.as_deref() == Some(b.endpoint.as_str())
    }
}

impl Source for BrokerSource {
    fn kind(&self) -> &'static str {
        "brokers"
    }

    fn poll_heard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Heard>> {
        while let Poll::Ready(Some(list)) = self.learned.poll_recv(cx) {
            for s in list {
                match parse_broker(&s) {
                    Ok(b) => {
                        if !self.is_own(&b) && self.known.insert(b.clone()) && self.attached {
                            self.queue.push_back(Self::sighting(&b));
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "unusable broker endpoint learned"),
                }
            }
        }
        if self.tick.poll_tick(cx).is_ready() && self.attached {
            let all: Vec<Sighting> = self
                .known
                .iter()
                .filter(|b| !self.is_own(b))
                .map(Self::sighting)
                .collect();
            self.queue.extend(all);
        }
        match self.queue.pop_front() {
            Some(s) => Poll::Ready(Ok(Heard::Sighting(s))),
            None => Poll::Pending,
        }
    }

    fn announce(&mut self, tcp_port: u16) -> io::Result<()> {
        self.attached = tcp_port != 0;
        if !self.attached {
            self.queue.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_stable_and_ignores_the_key() {
        let a = broker_uuid("tcp://10.0.0.1:7000");
        assert_eq!(a, broker_uuid("tcp://10.0.0.1:7000|ignored"));
        assert_ne!(a, broker_uuid("tcp://10.0.0.1:7001"));
        assert_eq!(a.get_version_num(), 8);
        // Golden: the same on every platform and release.
        assert_eq!(a.to_string(), "37e97cd9-63cf-89bf-af62-131d0f1b0ab2");
    }

    #[test]
    fn parse() {
        let b = parse_broker("tcp://127.0.0.1:7000").unwrap();
        assert_eq!(b.endpoint, "tcp://127.0.0.1:7000");
        assert!(b.key.is_none());
        assert!(parse_broker("udp://x").is_err());
        assert!(parse_broker("tcp://127.0.0.1:7000|short").is_err());
    }
}
