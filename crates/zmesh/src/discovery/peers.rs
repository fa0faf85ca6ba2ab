//! Static peers and DNS: where UDP does not reach, the peers are written down.
//!
//! A peer is given in one of three forms ([`PeerSpec`], docs/discovery.md):
//!
//! * `UUID@tcp://ip:port` — a ZRE node whose UUID is known: Zyre's `zyre_require_peer`. The node
//!   connects to it directly, like a beacon sighting repeated every beacon interval.
//! * `tcp://host:port` — only an endpoint. A ZRE inbox never answers on its socket, so a bare ZRE
//!   endpoint cannot tell us whose it is (a probe HELLO would make the peer see us twice and
//!   report a restart). So an endpoint-only peer is a **zgossip endpoint** — a node started with
//!   `gossip_bind` (zmesh or Zyre) — and the node joins it as a gossip client: the tuples it
//!   gets carry each node's UUID and ZRE endpoint. A host name may resolve to several addresses;
//!   each is dialled.
//! * `srv:<domain>` — the DNS SRV records `_zre._tcp.<domain>`: each target and port is such a
//!   gossip endpoint.
//!
//! Names are resolved again every [`DEFAULT_DNS_INTERVAL`] (answers that change change the set of
//! hubs dialled) with hickory-resolver, against the system's resolver configuration or a given
//! nameserver (queried over TCP, so DNS works where UDP is dropped).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use thiserror::Error;
use tokio::sync::watch;
use uuid::Uuid;

use super::{Heard, Sighting, Source};

/// How often DNS names are resolved again.
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(10);
/// The SRV service label zmesh looks up under a domain.
pub const SRV_PREFIX: &str = "_zre._tcp.";

/// One configured peer (see the module doc for the forms).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerSpec {
    /// `UUID@tcp://ip:port`: a ZRE node, connected to directly.
    Node {
        /// Its UUID.
        uuid: Uuid,
        /// Its ZRE endpoint.
        addr: SocketAddr,
    },
    /// `tcp://host:port`: a zgossip endpoint (host may be a DNS name).
    Gossip {
        /// Host name or IP literal.
        host: String,
        /// Port.
        port: u16,
    },
    /// `srv:<domain>`: the SRV records `_zre._tcp.<domain>`, each a zgossip endpoint.
    Srv(String),
}

/// Why a peer string is not usable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("peer {spec:?}: {why} (expected UUID@tcp://ip:port, tcp://host:port or srv:domain)")]
pub struct PeerSpecError {
    spec: String,
    why: &'static str,
}

impl FromStr for PeerSpec {
    type Err = PeerSpecError;

    fn from_str(s: &str) -> Result<PeerSpec, PeerSpecError> {
        let err = |why| PeerSpecError {
            spec: s.to_owned(),
            why,
        };
        let s = s.trim();
        if let Some(domain) = s.strip_prefix("srv:") {
            if domain.is_empty() || domain.contains(char::is_whitespace) {
                return Err(err("empty or invalid domain"));
            }
            return Ok(PeerSpec::Srv(domain.trim_end_matches('.').to_owned()));
        }
        if let Some((uuid, ep)) = s.split_once('@') {
            let uuid = zmesh_zre::uuid_from_str(uuid).ok_or_else(|| err("bad UUID"))?;
            let addr = crate::endpoint_addr(ep).ok_or_else(|| err("bad tcp://ip:port endpoint"))?;
            return Ok(PeerSpec::Node { uuid, addr });
        }
        let rest = s.strip_prefix("tcp://").ok_or_else(|| err("not tcp://"))?;
        if let Ok(addr) = rest.parse::<SocketAddr>() {
            return Ok(PeerSpec::Gossip {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("no port"))?;
        let port: u16 = port.parse().map_err(|_| err("bad port"))?;
        if port == 0 || host.is_empty() || host.contains(['/', '[', ']', '*']) {
            return Err(err("bad host or port"));
        }
        Ok(PeerSpec::Gossip {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerSpec::Node { uuid, addr } => {
                write!(f, "{}@tcp://{addr}", zmesh_zre::uuid_to_string(uuid))
            }
            PeerSpec::Gossip { host, port } => match host.parse::<IpAddr>() {
                Ok(ip) => write!(f, "tcp://{}", SocketAddr::new(ip, *port)),
                Err(_) => write!(f, "tcp://{host}:{port}"),
            },
            PeerSpec::Srv(d) => write!(f, "srv:{d}"),
        }
    }
}

impl PeerSpec {
    /// Whether finding this peer needs DNS.
    pub fn needs_dns(&self) -> bool {
        match self {
            PeerSpec::Node { .. } => false,
            PeerSpec::Gossip { host, .. } => host.parse::<IpAddr>().is_err(),
            PeerSpec::Srv(_) => true,
        }
    }
}

/// A source of sightings of `UUID@endpoint` peers, repeated every beacon interval (as a beacon
/// would be, so a peer that restarts is found again).
#[derive(Debug)]
pub struct StaticNodes {
    nodes: Vec<(Uuid, SocketAddr)>,
    queue: Vec<Sighting>,
    waker: Option<Waker>,
}

impl StaticNodes {
    /// A source for these nodes.
    pub fn new(nodes: Vec<(Uuid, SocketAddr)>) -> StaticNodes {
        StaticNodes {
            nodes,
            queue: Vec::new(),
            waker: None,
        }
    }
}

impl Source for StaticNodes {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn poll_heard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Heard>> {
        match self.queue.pop() {
            Some(s) => Poll::Ready(Ok(Heard::Sighting(s))),
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn announce(&mut self, tcp_port: u16) -> io::Result<()> {
        if tcp_port != 0 && self.queue.is_empty() {
            self.queue
                .extend(self.nodes.iter().map(|(u, a)| Sighting::seen(*u, *a)));
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
        Ok(())
    }
}

/// Builds the resolver: the system's configuration, or `server` (queried over TCP).
pub fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let builder = match server {
        Some(addr) => {
            let mut conn = ConnectionConfig::tcp();
            conn.port = addr.port();
            let mut ns = NameServerConfig::tcp(addr.ip());
            ns.connections = vec![conn];
            let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
        None => {
            TokioResolver::builder_tokio().map_err(|e| format!("system DNS configuration: {e}"))?
        }
    };
    let mut builder = builder;
    // Re-resolution must see changes: no answer is cached longer than the interval.
    builder.options_mut().positive_max_ttl = Some(Duration::from_secs(1));
    builder.options_mut().negative_max_ttl = Some(Duration::from_secs(1));
    builder.options_mut().timeout = Duration::from_secs(2);
    builder.options_mut().attempts = 1;
    builder.build().map_err(|e| e.to_string())
}

/// Resolves every spec once into the set of gossip endpoints (`tcp://ip:port`). Names that do not
/// resolve are logged and skipped.
pub async fn resolve_all(r: &TokioResolver, specs: &[PeerSpec]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for spec in specs {
        match spec {
            PeerSpec::Node { .. } => {}
            PeerSpec::Gossip { host, port } => resolve_host(r, host, *port, &mut out).await,
            PeerSpec::Srv(domain) => {
                let name = format!("{SRV_PREFIX}{domain}.");
                match r.srv_lookup(name.as_str()).await {
                    Ok(l) => {
                        for rec in l.answers() {
                            if let RData::SRV(srv) = &rec.data {
                                let target = srv.target.to_utf8();
                                resolve_host(r, &target, srv.port, &mut out).await;
                            }
                        }
                    }
                    Err(e) => tracing::debug!(%name, error = %e, "SRV lookup failed"),
                }
            }
        }
    }
    out
}

async fn resolve_host(r: &TokioResolver, host: &str, port: u16, out: &mut BTreeSet<String>) {
    if let Ok(ip) = host.parse::<IpAddr>() {
        out.insert(format!("tcp://{}", SocketAddr::new(ip, port)));
        return;
    }
    let fqdn = if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    };
    match r.lookup_ip(fqdn.as_str()).await {
        Ok(ips) => {
            for ip in ips.iter() {
                out.insert(format!("tcp://{}", SocketAddr::new(ip, port)));
            }
        }
        Err(e) => tracing::debug!(%host, error = %e, "DNS lookup failed"),
    }
}

/// Re-resolves `specs` every `interval` and hands the union with `fixed` to the gossip source;
/// ends when the source is gone.
pub(crate) async fn resolve_loop(
    resolver: TokioResolver,
    specs: Vec<PeerSpec>,
    fixed: Vec<String>,
    interval: Duration,
    remotes: watch::Sender<Vec<String>>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = remotes.closed() => return,
        }
        let mut set = resolve_all(&resolver, &specs).await;
        set.extend(fixed.iter().cloned());
        let list: Vec<String> = set.into_iter().collect();
        remotes.send_if_modified(|cur| {
            if *cur != list {
                tracing::debug!(hubs = ?list, "gossip endpoints from DNS changed");
                *cur = list;
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_specs_parse_and_print() {
        let u = Uuid::new_v4();
        let s = format!("{}@tcp://10.1.2.3:5670", zmesh_zre::uuid_to_string(&u));
        let p: PeerSpec = s.parse().unwrap();
        assert_eq!(
            p,
            PeerSpec::Node {
                uuid: u,
                addr: "10.1.2.3:5670".parse().unwrap()
            }
        );
        assert_eq!(p.to_string(), s);
        let g: PeerSpec = "tcp://hub.example:5670".parse().unwrap();
        assert!(g.needs_dns());
        assert_eq!(g.to_string(), "tcp://hub.example:5670");
        let v6: PeerSpec = "tcp://[fd00::1]:9".parse().unwrap();
        assert!(!v6.needs_dns());
        assert_eq!(v6.to_string(), "tcp://[fd00::1]:9");
        assert_eq!(
            "srv:mesh.test.".parse::<PeerSpec>().unwrap(),
            PeerSpec::Srv("mesh.test".into())
        );
        for bad in [
            "",
            "udp://1.2.3.4:5",
            "tcp://host",
            "tcp://host:0",
            "tcp://host:x",
            "nope@tcp://1.2.3.4:5",
            "srv:",
            "tcp://*:5",
        ] {
            assert!(bad.parse::<PeerSpec>().is_err(), "{bad:?} accepted");
        }
    }
}
