//! Secure mode in the shell: the node's CURVE key pair and allow-list turned into transport
//! settings, Zyre-style (`zyre_set_zcert`).
//!
//! * The **inbox** is a CURVE server with the node's key pair; its authenticator is the
//!   allow-list when there is one, else [`AllowAny`] (every CURVE client is accepted, and the
//!   traffic is still encrypted: libzmq's behaviour without a ZAP handler).
//! * Every **outbox** is a CURVE client with the node's key pair and, as the server key, the key
//!   the engine bound the peer to ([`zmesh_zre::Output::Connect`] carries it), so an outbox
//!   completes its handshake only with the holder of the announced key.
//! * **Sightings** of keys the allow-list does not hold are dropped before the engine sees them:
//!   a node does not connect (and send its HELLO) to a peer it would not let connect back, so an
//!   unlisted node gets no ENTER on either side, and no handshake is spent on it.
//! * The engine gets the node's public key (secure mode: version-3 beacons, `X-PUBLICKEY`, the
//!   binding of UUIDs to keys) and, with every message, the key the inbox authenticated for its
//!   connection ([`zmesh_zmtp::Inbox::peer_key`]).
//!
//! Reloading the allow-list ([`AllowList::reload`] on a clone the application kept) changes who
//! may connect and which sightings count from then on; connections already established stay.

use std::sync::Arc;

use zmesh_zmtp::curve::{
    AllowAny, AllowList, CurveConfig, CurveKeyPair, CurvePublicKey, CurveStats,
};
use zmesh_zmtp::{MechanismConfig, OutboxConfig};

/// The node's CURVE settings (immutable once the node starts).
#[derive(Debug, Clone)]
pub(super) struct Security {
    keys: CurveKeyPair,
    allow: Option<AllowList>,
    /// The inbox's server configuration (its counters are the node's refusal counters).
    server: CurveConfig,
}

impl Security {
    pub(super) fn new(keys: CurveKeyPair, allow: Option<AllowList>) -> Security {
        let server = match &allow {
            Some(list) => CurveConfig::server(keys.clone()).with_authenticator(list.clone()),
            None => CurveConfig::server(keys.clone()).with_authenticator(AllowAny),
        };
        Security {
            keys,
            allow,
            server,
        }
    }

    /// Our public key.
    pub(super) fn public_key(&self) -> CurvePublicKey {
        self.keys.public()
    }

    /// The inbox's mechanism: CURVE server.
    pub(super) fn inbox_mechanism(&self) -> MechanismConfig {
        MechanismConfig::Curve(self.server.clone())
    }

    /// An outbox configuration for a peer whose inbox holds `server_key`: `base` with CURVE as
    /// client.
    pub(super) fn outbox_config(&self, base: &OutboxConfig, server_key: &[u8; 32]) -> OutboxConfig {
        OutboxConfig {
            mechanism: MechanismConfig::Curve(CurveConfig::client(
                self.keys.clone(),
                CurvePublicKey::from_bytes(*server_key),
            )),
            ..base.clone()
        }
    }

    /// Whether a sighting with this key may reach the engine: with an allow-list, only listed
    /// keys (keyless sightings go on, for the engine to count as another mode's).
    pub(super) fn admits(&self, key: Option<&[u8; 32]>) -> bool {
        match (&self.allow, key) {
            (Some(list), Some(k)) => list.contains(&CurvePublicKey::from_bytes(*k)),
            _ => true,
        }
    }

    /// The inbox's CURVE counters (clients refused by the allow-list, broken handshakes).
    pub(super) fn stats(&self) -> Arc<CurveStats> {
        self.server.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outboxes_are_clients_of_the_announced_key_and_the_list_filters_sightings() {
        let keys = CurveKeyPair::generate();
        let listed = CurveKeyPair::generate().public();
        let other = CurveKeyPair::generate().public();
        let list = AllowList::from_keys([listed]);
        let s = Security::new(keys.clone(), Some(list.clone()));
        assert_eq!(s.public_key(), keys.public());
        let cfg = s.outbox_config(&OutboxConfig::default(), listed.as_bytes());
        match cfg.mechanism {
            MechanismConfig::Curve(c) => {
                assert_eq!(c.server_key(), Some(listed));
                assert_eq!(c.public_key(), keys.public());
            }
            m => panic!("not CURVE: {m:?}"),
        }
        assert!(
            matches!(s.inbox_mechanism(), MechanismConfig::Curve(c) if c.server_key().is_none())
        );
        assert!(s.admits(Some(listed.as_bytes())));
        assert!(!s.admits(Some(other.as_bytes())));
        assert!(s.admits(None));
        // The list is shared: a key added later (or by a reload) counts at once.
        list.insert(other);
        assert!(s.admits(Some(other.as_bytes())));
        // Without a list every key is admitted.
        let open = Security::new(keys, None);
        assert!(open.admits(Some(other.as_bytes())));
    }
}
