//! The builder's discovery settings beyond beacons — gossip hub and hubs to join, static and DNS
//! peers — and starting the sources they make (`discovery/gossip.rs`, `discovery/peers.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use zmesh_zmtp::{CurveKeyPair, MechanismConfig};
use zmesh_zre::gossip::GossipConfig;

use super::NodeBuilder;
use crate::discovery::gossip::GossipSource;
use crate::discovery::peers::{self, PeerSpec, StaticNodes, DEFAULT_DNS_INTERVAL};
use crate::discovery::Source;
use crate::Error;

/// Discovery settings besides beacons.
#[derive(Debug, Clone)]
pub(super) struct DiscoveryConfig {
    gossip_bind: Option<String>,
    gossip_connect: Vec<String>,
    peers: Vec<PeerSpec>,
    dns_server: Option<SocketAddr>,
    dns_interval: Duration,
    gossip: GossipConfig,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            gossip_bind: None,
            gossip_connect: Vec::new(),
            peers: Vec::new(),
            dns_server: None,
            dns_interval: DEFAULT_DNS_INTERVAL,
            gossip: GossipConfig::default(),
        }
    }
}

/// What starting the sources produced.
pub(super) struct Started {
    pub(super) sources: Vec<Box<dyn Source>>,
    pub(super) gossip_endpoint: Option<String>,
}

impl DiscoveryConfig {
    pub(super) fn validate(&self) -> Result<(), Error> {
        let check = |what: &str, ep: &str| {
            ep.parse::<zmesh_zmtp::Endpoint>()
                .map(|_| ())
                .map_err(|e| Error::Config(format!("{what} {ep:?}: {e}")))
        };
        if let Some(ep) = &self.gossip_bind {
            check("gossip bind endpoint", ep)?;
        }
        for ep in &self.gossip_connect {
            crate::discovery::gossip::check_hub(ep)
                .map_err(|e| Error::Config(format!("gossip connect endpoint {ep:?}: {e}")))?;
        }
        if self.dns_interval.is_zero() {
            return Err(Error::Config("DNS interval must be > 0".into()));
        }
        Ok(())
    }

    /// Starts the gossip task (hub and/or client), the DNS resolver and the static-node source.
    pub(super) async fn start(
        &self,
        secure: Option<(CurveKeyPair, MechanismConfig)>,
    ) -> Result<Started, Error> {
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        let nodes: Vec<_> = self
            .peers
            .iter()
            .filter_map(|p| match p {
                PeerSpec::Node { uuid, addr } => Some((*uuid, *addr)),
                _ => None,
            })
            .collect();
        if !nodes.is_empty() {
            sources.push(Box::new(StaticNodes::new(nodes)));
        }
        let hub_specs: Vec<PeerSpec> = self
            .peers
            .iter()
            .filter(|p| !matches!(p, PeerSpec::Node { .. }))
            .cloned()
            .collect();
        let mut gossip_endpoint = None;
        if self.gossip_bind.is_some() || !self.gossip_connect.is_empty() || !hub_specs.is_empty() {
            // Literal endpoints are dialled at once; names wait for the resolver's first answer.
            let mut fixed = self.gossip_connect.clone();
            fixed.extend(
                hub_specs
                    .iter()
                    .filter(|p| !p.needs_dns())
                    .map(|p| p.to_string()),
            );
            let dns: Vec<PeerSpec> = hub_specs.into_iter().filter(|p| p.needs_dns()).collect();
            let source = GossipSource::start(
                self.gossip_bind.as_deref(),
                fixed.clone(),
                self.gossip.clone(),
                secure,
            )
            .await?;
            gossip_endpoint = source.bound().map(str::to_owned);
            if !dns.is_empty() {
                let resolver = peers::resolver(self.dns_server).map_err(Error::Config)?;
                tokio::spawn(peers::resolve_loop(
                    resolver,
                    dns,
                    fixed,
                    self.dns_interval,
                    source.remotes(),
                ));
            }
            sources.push(Box::new(source));
        }
        Ok(Started {
            sources,
            gossip_endpoint,
        })
    }
}

impl NodeBuilder {
    /// Makes the node a **zgossip hub** listening on `endpoint` (`tcp://ip:port`, `tcp://ip:*`
    /// for any port; see [`Node::gossip_endpoint`](crate::Node::gossip_endpoint)), Zyre's
    /// `zyre_gossip_bind`: nodes that join it learn each other's UUID and endpoint without UDP.
    pub fn gossip_bind(mut self, endpoint: impl Into<String>) -> Self {
        self.discovery.gossip_bind = Some(endpoint.into());
        self
    }

    /// Joins the zgossip hub at `endpoint` (a zmesh node's [`NodeBuilder::gossip_bind`], a Zyre
    /// node's `zyre_gossip_bind`, or czmq's `zgossip`), Zyre's `zyre_gossip_connect`. May be
    /// given several times. In secure mode, `endpoint|<Z85 public key>` dials a secure hub as a
    /// CURVE client of its key (`zyre_gossip_connect_curve`); a secure node's own hub is a CURVE
    /// server with the node's key pair.
    pub fn gossip_connect(mut self, endpoint: impl Into<String>) -> Self {
        self.discovery.gossip_connect.push(endpoint.into());
        self
    }

    /// A static peer: `UUID@tcp://ip:port` (a ZRE node, Zyre's `zyre_require_peer`),
    /// `tcp://host:port` (a gossip endpoint; host names are resolved, every address dialled) or
    /// `srv:<domain>` (the SRV records `_zre._tcp.<domain>`). May be given several times.
    pub fn peer(mut self, spec: PeerSpec) -> Self {
        self.discovery.peers.push(spec);
        self
    }

    /// The DNS server for [`NodeBuilder::peer`] names (queried over TCP); default: the system's
    /// resolver configuration.
    pub fn dns_server(mut self, server: SocketAddr) -> Self {
        self.discovery.dns_server = Some(server);
        self
    }

    /// How often peer names are resolved again (default [`DEFAULT_DNS_INTERVAL`]).
    pub fn dns_interval(mut self, interval: Duration) -> Self {
        self.discovery.dns_interval = interval;
        self
    }

    /// The zgossip timing (PING interval, link timeouts); default [`GossipConfig::default`].
    pub fn gossip_config(mut self, config: GossipConfig) -> Self {
        self.discovery.gossip = config;
        self
    }
}
