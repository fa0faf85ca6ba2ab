//! Secure mode: the peers' CURVE keys, and the rule that binds each UUID to the key it was
//! announced with (the overview and the threat it closes are in the engine's module
//! documentation, "Secure mode").
//!
//! # Where a key comes from, and what it must agree with
//!
//! | input | key it carries | rule in secure mode |
//! |---|---|---|
//! | sighting of an unknown UUID | the beacon's / source's key | must be usable ([`is_usable_key`]); the peer is created **bound to it** and its outbox uses it as the CURVE server key |
//! | sighting of a known UUID | same | must equal the bound key, else ignored ([`Stats::key_conflicts`]) |
//! | HELLO | the connection's authenticated key, and `X-PUBLICKEY` | the header must be present (else ignored, [`Stats::mode_mismatches`]), equal the connection's key, and equal the bound key if the UUID is known; an unknown UUID is created bound to it |
//! | any other message | the connection's authenticated key | must equal the sender's bound key ([`Stats::impersonations`]) |
//! | a new UUID at a known peer's endpoint | its key | purges that peer only if both keys are equal (`create_peer`) |
//!
//! A connection's key is proven by the CURVE handshake (the client's vouch), and checked by the
//! inbox's authenticator (the allow-list) before any message is read, so it is the one fact
//! about a sender that cannot be forged. The binding therefore reduces "who is UUID U" to "who
//! holds the secret key U was announced with".
//!
//! Plain mode (no key of our own) ignores sightings that carry a key: such a peer is a secure
//! node, whose inbox would refuse our plaintext connection anyway (Zyre's beacon version check
//! has the same effect). Keys are public values, so they are compared with `==`.
//!
//! What secure mode ignores is logged **once** at info level (then at debug), so a mixed
//! network's partition is visible without flooding the log.
//!
//! [`Stats::key_conflicts`]: super::Stats::key_conflicts
//! [`Stats::mode_mismatches`]: super::Stats::mode_mismatches
//! [`Stats::impersonations`]: super::Stats::impersonations

use tracing::{debug, info, warn};
use uuid::Uuid;

use super::Engine;
use crate::beacon::is_usable_key;

/// The HELLO header that carries a secure node's public key as 40 characters of Z85, as Zyre's
/// `SET PUBLICKEY` puts it there.
pub const PUBLICKEY_HEADER: &str = "X-PUBLICKEY";

/// Sets (or replaces) our `X-PUBLICKEY` header.
pub(super) fn set_header(headers: &mut Vec<(String, String)>, key: &[u8; 32]) {
    headers.retain(|(k, _)| k != PUBLICKEY_HEADER);
    headers.push((PUBLICKEY_HEADER.to_owned(), z85::encode(key)));
}

/// The key a HELLO's `X-PUBLICKEY` announces.
#[derive(Debug, PartialEq, Eq)]
enum HelloKey {
    /// No such header.
    Missing,
    /// Not 40 characters of Z85, or not a usable key.
    Bad,
    /// A usable key.
    Key([u8; 32]),
}

fn hello_key(headers: &[(String, String)]) -> HelloKey {
    let Some((_, text)) = headers.iter().find(|(k, _)| k == PUBLICKEY_HEADER) else {
        return HelloKey::Missing;
    };
    // Zyre sends exactly the 40-character text; z85 also decodes other lengths, so check first.
    if text.len() != 40 {
        return HelloKey::Bad;
    }
    match z85::decode(text)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
    {
        Some(k) if is_usable_key(&k) => HelloKey::Key(k),
        _ => HelloKey::Bad,
    }
}

/// Things secure mode says once at info level.
#[derive(Debug, Clone, Copy)]
enum Notice {
    KeylessSighting,
    KeyedSighting,
    KeylessHello,
    Unauthenticated,
    Impersonation,
}

/// Which [`Notice`]s were already logged.
#[derive(Debug, Default)]
pub(super) struct Notices {
    said: u8,
}

impl Notices {
    /// True the first time `n` is asked for.
    fn first(&mut self, n: Notice) -> bool {
        let bit = 1u8 << (n as u8);
        let first = self.said & bit == 0;
        self.said |= bit;
        first
    }
}

impl Engine {
    /// Whether a sighting's key fits our mode (secure: a usable key; plain: no key). Counts and
    /// logs what it refuses.
    pub(super) fn sighting_fits_mode(&mut self, uuid: Uuid, key: Option<&[u8; 32]>) -> bool {
        let secure = self.public_key.is_some();
        match key {
            Some(k) if secure && is_usable_key(k) => true,
            None if !secure => true,
            _ => {
                self.stats.mode_mismatches += 1;
                if secure {
                    if self.notices.first(Notice::KeylessSighting) {
                        info!("secure mode: ignoring peers announced without a CURVE key (version-1 beacons, keyless sightings); said once");
                    }
                    debug!(peer = %uuid, "sighting without a usable key ignored (secure mode)");
                } else {
                    if self.notices.first(Notice::KeyedSighting) {
                        info!("plain mode: ignoring peers announced with a CURVE key (secure nodes); said once");
                    }
                    debug!(peer = %uuid, "sighting with a key ignored (plain mode)");
                }
                false
            }
        }
    }

    /// A sighting of a known peer with another key than its bound one (secure mode).
    pub(super) fn key_conflict(&mut self, uuid: Uuid) {
        self.stats.key_conflicts += 1;
        debug!(peer = %uuid, "sighting with another key than the peer's; ignored");
    }

    /// A message on a connection without an authenticated key, in secure mode.
    pub(super) fn unauthenticated(&mut self, uuid: Uuid) {
        self.stats.mode_mismatches += 1;
        if self.notices.first(Notice::Unauthenticated) {
            info!("secure mode: ignoring messages on connections without a CURVE key; said once");
        }
        debug!(peer = %uuid, "message on an unauthenticated connection ignored");
    }

    /// A message refused because its sender is not who it claims to be.
    pub(super) fn impersonation(&mut self, uuid: Uuid, why: &'static str) {
        self.stats.impersonations += 1;
        if self.notices.first(Notice::Impersonation) {
            warn!(peer = %uuid, why, "secure mode: refused a message whose sender's key does not match its UUID (further ones at debug level)");
        }
        debug!(peer = %uuid, why, "message refused: key does not match the UUID");
    }

    /// The secure-mode checks of a HELLO arriving on a connection authenticated as `conn_key`.
    /// `Ok(key)` is the key to bind the peer to (`None` in plain mode); `Err` = refused (counted
    /// and logged).
    pub(super) fn check_hello_key(
        &mut self,
        uuid: Uuid,
        headers: &[(String, String)],
        conn_key: Option<&[u8; 32]>,
    ) -> Result<Option<[u8; 32]>, ()> {
        if self.public_key.is_none() {
            return Ok(None);
        }
        let Some(conn_key) = conn_key else {
            self.unauthenticated(uuid);
            return Err(());
        };
        let announced = match hello_key(headers) {
            HelloKey::Key(k) => k,
            HelloKey::Missing => {
                self.stats.mode_mismatches += 1;
                if self.notices.first(Notice::KeylessHello) {
                    info!("secure mode: ignoring HELLOs without X-PUBLICKEY (security downgrade); said once");
                }
                debug!(peer = %uuid, "HELLO without X-PUBLICKEY ignored");
                return Err(());
            }
            HelloKey::Bad => {
                self.impersonation(uuid, "X-PUBLICKEY is not a usable Z85 key");
                return Err(());
            }
        };
        if announced != *conn_key {
            self.impersonation(uuid, "X-PUBLICKEY is not the connection's key");
            return Err(());
        }
        if let Some(bound) = self.peers.get(&uuid).and_then(|p| p.public_key) {
            if bound != announced {
                self.impersonation(
                    uuid,
                    "X-PUBLICKEY is not the key this UUID was announced with",
                );
                return Err(());
            }
        }
        Ok(Some(announced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_key_parsing() {
        let key: [u8; 32] = core::array::from_fn(|i| i as u8 + 1);
        let text = z85::encode(key);
        let h = |v: &str| vec![(PUBLICKEY_HEADER.to_string(), v.to_string())];
        assert_eq!(hello_key(&h(&text)), HelloKey::Key(key));
        assert_eq!(hello_key(&[]), HelloKey::Missing);
        assert_eq!(hello_key(&h("")), HelloKey::Bad);
        assert_eq!(hello_key(&h(&text[..39])), HelloKey::Bad);
        assert_eq!(hello_key(&h(&format!("{text}x"))), HelloKey::Bad);
        assert_eq!(hello_key(&h(&"~".repeat(40))), HelloKey::Bad);
        assert_eq!(hello_key(&h(&z85::encode([0u8; 32]))), HelloKey::Bad);
        // libzmq's test key, as Zyre would send it.
        assert!(matches!(
            hello_key(&h("Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID")),
            HelloKey::Key(k) if k[0] == 0xBB && k[31] == 0x18
        ));
    }

    #[test]
    fn our_header_is_set_once() {
        let mut headers = vec![(PUBLICKEY_HEADER.to_string(), "stale".to_string())];
        set_header(&mut headers, &[7; 32]);
        assert_eq!(headers.len(), 1);
        assert_eq!(hello_key(&headers), HelloKey::Key([7; 32]));
    }

    #[test]
    fn notices_are_said_once_each() {
        let mut n = Notices::default();
        assert!(n.first(Notice::KeylessHello));
        assert!(!n.first(Notice::KeylessHello));
        assert!(n.first(Notice::Impersonation));
        assert!(n.first(Notice::KeylessSighting));
        assert!(!n.first(Notice::Impersonation));
    }
}
