//! zgossip, czmq's gossip discovery protocol, as Zyre uses it for networks without UDP
//! broadcast (docs/gossip.md): the message codec ([`msg`]) and the sans-IO protocol state of a
//! hub and/or client ([`state`]).

pub mod msg;
pub mod state;

pub use msg::{GossipMsg, GossipMsgError, GOSSIP_MAX_KEY, GOSSIP_SIGNATURE, GOSSIP_VERSION};
pub use state::{
    Gossip, GossipConfig, GossipOutput, GossipStats, LinkId, Role, DEFAULT_GOSSIP_PING,
};
