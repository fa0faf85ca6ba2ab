//! UDP discovery beacons (docs/zre.md §2.1), as pure functions over byte slices.
//!
//! A ZRE node announces itself with a small UDP datagram:
//!
//! ```text
//! offset size field
//!  0      3   "ZRE"
//!  3      1   version: 0x01 (plain) or 0x03 (node has a CURVE key)
//!  4     16   raw UUID of the sender
//! 20      2   TCP port of the sender's inbox, big-endian; 0 = "I am leaving"
//! 22     32   raw CURVE public key (version 0x03 only)
//! ```
//!
//! Version 0x01 beacons are 22 bytes, version 0x03 beacons 54 bytes. C Zyre copies a 22- or 54-byte
//! datagram into a zeroed struct and then looks at the version byte, so a 54-byte datagram with
//! version 0x01 is a valid v1 beacon (the trailing 32 bytes are ignored). [`Beacon::decode`]
//! reproduces exactly that acceptance rule. Whether a decoded beacon is welcome is a separate
//! rule, [`Beacon::admit`]: Zyre's secure-mode rules (a node takes only beacons of its own
//! version, and in secure mode only keys whose first byte is not zero), written once here.
//!
//! Nothing here allocates except the encoder's output vector, and nothing can panic on any input.

use thiserror::Error;
use uuid::Uuid;

/// Length of a version-0x01 beacon.
pub const BEACON_V1_LEN: usize = 22;
/// Length of a version-0x03 (CURVE) beacon.
pub const BEACON_V3_LEN: usize = 54;
/// Beacon version byte of a plain (non-CURVE) node. Zyre calls it `BEACON_VERSION_V2` because it
/// goes with ZRE v2 messages.
pub const BEACON_VERSION_V1: u8 = 0x01;
/// Beacon version byte of a node with a CURVE certificate.
pub const BEACON_VERSION_V3: u8 = 0x03;
/// The three protocol bytes every beacon starts with.
pub const BEACON_PREFIX: &[u8; 3] = b"ZRE";

/// Zyre's test for "this beacon carries a key" (`beacon.public_key[0] == 0` means no key, "to
/// avoid down-grade attacks"). A node in secure mode ignores keys that fail it, whatever source
/// they come from: an all-zero key would give an X25519 secret anyone can compute.
///
/// A side effect Zyre has too: a real key whose first byte happens to be 0 (1 in 256) is never
/// accepted, so `zmesh keygen` never makes one.
pub fn is_usable_key(key: &[u8; 32]) -> bool {
    key[0] != 0
}

/// Why a node ignores a well-formed beacon (Zyre's rules in `zyre_node_recv_beacon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BeaconRefusal {
    /// A beacon of the other security mode: plain nodes send version 1, secure nodes version 3,
    /// and each ignores the other's.
    #[error("beacon version {got:#04x} ignored (this node speaks {want:#04x})")]
    OtherVersion {
        /// The beacon's version.
        got: u8,
        /// Ours.
        want: u8,
    },
    /// A version-3 beacon whose key fails [`is_usable_key`] (a downgrade attempt).
    #[error("version 3 beacon without a usable public key ignored")]
    NoKey,
}

/// One decoded (or to-be-encoded) discovery beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Beacon {
    /// 1 (plain, 22 bytes) or 3 (CURVE, 54 bytes).
    pub version: u8,
    /// The sender's node UUID.
    pub uuid: Uuid,
    /// TCP port of the sender's inbox. `0` means the sender is leaving.
    pub port: u16,
    /// Raw 32-byte CURVE public key; `Some` only for version-3 beacons.
    pub public_key: Option<[u8; 32]>,
}

/// Why a datagram is not a beacon we can interpret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BeaconError {
    /// Fewer than 22 bytes: cannot even hold a v1 beacon.
    #[error("beacon too short: {0} bytes (need 22)")]
    TooShort(usize),
    /// Neither 22 nor 54 bytes (C Zyre ignores such datagrams).
    #[error("beacon has wrong length: {0} bytes (expected 22 or 54)")]
    WrongLength(usize),
    /// Does not start with `"ZRE"`.
    #[error("beacon does not start with \"ZRE\"")]
    BadPrefix,
    /// A version byte other than 0x01 or 0x03.
    #[error("unsupported beacon version {0:#04x}")]
    UnsupportedVersion(u8),
    /// A version-3 beacon of only 22 bytes: it cannot carry the public key.
    #[error("version 3 beacon without a public key (22 bytes)")]
    MissingPublicKey,
}

impl Beacon {
    /// A plain (version 1) beacon announcing `port` (0 = leaving).
    pub fn v1(uuid: Uuid, port: u16) -> Beacon {
        Beacon {
            version: BEACON_VERSION_V1,
            uuid,
            port,
            public_key: None,
        }
    }

    /// A CURVE (version 3) beacon carrying the node's raw public key.
    pub fn v3(uuid: Uuid, port: u16, public_key: [u8; 32]) -> Beacon {
        Beacon {
            version: BEACON_VERSION_V3,
            uuid,
            port,
            public_key: Some(public_key),
        }
    }

    /// The beacon version a node sends: 3 in secure mode (it has a CURVE key), 1 otherwise.
    pub fn version_for(secure: bool) -> u8 {
        if secure {
            BEACON_VERSION_V3
        } else {
            BEACON_VERSION_V1
        }
    }

    /// Whether a node in `secure` mode takes this beacon, as Zyre decides: the version must be
    /// the node's own ([`Beacon::version_for`]), and in secure mode the key must pass
    /// [`is_usable_key`]. Leave beacons (port 0) follow the same rule.
    pub fn admit(&self, secure: bool) -> Result<(), BeaconRefusal> {
        let want = Beacon::version_for(secure);
        if self.version != want {
            return Err(BeaconRefusal::OtherVersion {
                got: self.version,
                want,
            });
        }
        if secure && !self.public_key.as_ref().is_some_and(is_usable_key) {
            return Err(BeaconRefusal::NoKey);
        }
        Ok(())
    }

    /// Returns true if this beacon announces a departure (port 0).
    pub fn is_leaving(&self) -> bool {
        self.port == 0
    }

    /// Serialises the beacon.
    ///
    /// The layout follows the version byte: version 3 produces 54 bytes (the key, or 32 zero bytes
    /// if `public_key` is `None` — receivers treat a zero first key byte as "no key" and drop it);
    /// every other version produces 22 bytes and ignores `public_key`. The version byte is written
    /// as given, so tests can produce odd beacons on purpose.
    pub fn encode(&self) -> Vec<u8> {
        let len = if self.version == BEACON_VERSION_V3 {
            BEACON_V3_LEN
        } else {
            BEACON_V1_LEN
        };
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(BEACON_PREFIX);
        out.push(self.version);
        out.extend_from_slice(self.uuid.as_bytes());
        out.extend_from_slice(&self.port.to_be_bytes());
        if len == BEACON_V3_LEN {
            out.extend_from_slice(&self.public_key.unwrap_or([0u8; 32]));
        }
        out
    }

    /// Parses a datagram with C Zyre's acceptance rule: exactly 22 or 54 bytes, `"ZRE"` prefix,
    /// version 1 (any trailing 32 bytes ignored) or version 3 (54 bytes, key returned).
    pub fn decode(b: &[u8]) -> Result<Beacon, BeaconError> {
        if b.len() < BEACON_V1_LEN {
            return Err(BeaconError::TooShort(b.len()));
        }
        if &b[..3] != BEACON_PREFIX {
            return Err(BeaconError::BadPrefix);
        }
        if b.len() != BEACON_V1_LEN && b.len() != BEACON_V3_LEN {
            return Err(BeaconError::WrongLength(b.len()));
        }
        let version = b[3];
        let mut raw = [0u8; 16];
        raw.copy_from_slice(&b[4..20]);
        let uuid = Uuid::from_bytes(raw);
        let port = u16::from_be_bytes([b[20], b[21]]);
        let public_key = match version {
            BEACON_VERSION_V1 => None,
            BEACON_VERSION_V3 => {
                if b.len() != BEACON_V3_LEN {
                    return Err(BeaconError::MissingPublicKey);
                }
                let mut key = [0u8; 32];
                key.copy_from_slice(&b[22..54]);
                Some(key)
            }
            other => return Err(BeaconError::UnsupportedVersion(other)),
        };
        Ok(Beacon {
            version,
            uuid,
            port,
            public_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The example of docs/zre.md §2.1.
    const GOLDEN: [u8; 22] = [
        0x5A, 0x52, 0x45, 0x01, 0x3A, 0x07, 0xFC, 0x75, 0x40, 0x0A, 0x5B, 0x36, 0xF3, 0x19, 0x33,
        0x3F, 0xA8, 0x49, 0x2A, 0x52, 0xC0, 0x00,
    ];

    fn golden_uuid() -> Uuid {
        Uuid::from_u128(0x3A07FC75400A5B36F319333FA8492A52)
    }

    #[test]
    fn golden_v1_encode_and_decode() {
        let b = Beacon::v1(golden_uuid(), 49152);
        assert_eq!(b.encode(), GOLDEN.to_vec());
        assert_eq!(Beacon::decode(&GOLDEN).unwrap(), b);
        assert!(!b.is_leaving());
    }

    /// A version-3 beacon as Zyre's `beacon_t` lays it out ("ZRE", 0x03, uuid, port in network
    /// order, key), packed by Python's `struct` (`b"ZRE\x03" + uuid + pack(">H", 49152) + key`)
    /// with libzmq's test public key `Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID` (decoded by
    /// pyzmq's `z85.decode`), independently of this codec.
    const GOLDEN_V3: [u8; 54] = [
        0x5A, 0x52, 0x45, 0x03, 0x3A, 0x07, 0xFC, 0x75, 0x40, 0x0A, 0x5B, 0x36, 0xF3, 0x19, 0x33,
        0x3F, 0xA8, 0x49, 0x2A, 0x52, 0xC0, 0x00, 0xBB, 0x88, 0x47, 0x1D, 0x65, 0xE2, 0x65, 0x9B,
        0x30, 0xC5, 0x5A, 0x53, 0x21, 0xCE, 0xBB, 0x5A, 0xAB, 0x2B, 0x70, 0xA3, 0x98, 0x64, 0x5C,
        0x26, 0xDC, 0xA2, 0xB2, 0xFC, 0xB4, 0x3F, 0xC5, 0x18,
    ];

    fn golden_key() -> [u8; 32] {
        GOLDEN_V3[22..].try_into().unwrap()
    }

    #[test]
    fn golden_v3_encode_and_decode() {
        let b = Beacon::v3(golden_uuid(), 49152, golden_key());
        assert_eq!(b.encode(), GOLDEN_V3.to_vec());
        assert_eq!(Beacon::decode(&GOLDEN_V3).unwrap(), b);
        assert_eq!(b.admit(true), Ok(()));
        // The leave beacon of a secure node is a 54-byte version-3 beacon with port 0.
        let mut leave = GOLDEN_V3;
        leave[20] = 0;
        leave[21] = 0;
        let l = Beacon::decode(&leave).unwrap();
        assert!(l.is_leaving());
        assert_eq!(l.admit(true), Ok(()));
        assert_eq!(Beacon::v3(golden_uuid(), 0, golden_key()).encode(), leave);
    }

    #[test]
    fn each_mode_takes_only_its_own_version() {
        let v1 = Beacon::decode(&GOLDEN).unwrap();
        let v3 = Beacon::decode(&GOLDEN_V3).unwrap();
        assert_eq!(v1.admit(false), Ok(()));
        assert_eq!(v3.admit(true), Ok(()));
        assert_eq!(
            v1.admit(true),
            Err(BeaconRefusal::OtherVersion { got: 1, want: 3 })
        );
        assert_eq!(
            v3.admit(false),
            Err(BeaconRefusal::OtherVersion { got: 3, want: 1 })
        );
        // Zyre's downgrade guard: a key whose first byte is 0 counts as no key.
        let mut zero = GOLDEN_V3;
        zero[22] = 0;
        let z = Beacon::decode(&zero).unwrap();
        assert_eq!(z.admit(true), Err(BeaconRefusal::NoKey));
        assert_eq!(
            Beacon::v3(golden_uuid(), 1, [0; 32]).admit(true),
            Err(BeaconRefusal::NoKey)
        );
        assert_eq!(Beacon::version_for(true), BEACON_VERSION_V3);
        assert_eq!(Beacon::version_for(false), BEACON_VERSION_V1);
    }

    #[test]
    fn leaving_beacon_has_port_zero() {
        let mut dg = GOLDEN;
        dg[20] = 0;
        dg[21] = 0;
        let b = Beacon::decode(&dg).unwrap();
        assert!(b.is_leaving());
        assert_eq!(Beacon::v1(golden_uuid(), 0).encode(), dg.to_vec());
    }

    #[test]
    fn v3_carries_the_key() {
        let key: [u8; 32] = core::array::from_fn(|i| i as u8 + 1);
        let b = Beacon::v3(golden_uuid(), 0xC001, key);
        let bytes = b.encode();
        assert_eq!(bytes.len(), BEACON_V3_LEN);
        assert_eq!(bytes[3], 0x03);
        assert_eq!(&bytes[22..], &key);
        assert_eq!(Beacon::decode(&bytes).unwrap(), b);
    }

    #[test]
    fn v1_with_trailing_32_bytes_is_accepted_like_c() {
        let mut dg = GOLDEN.to_vec();
        dg.extend_from_slice(&[0xEE; 32]);
        let b = Beacon::decode(&dg).unwrap();
        assert_eq!(b, Beacon::v1(golden_uuid(), 49152));
    }

    #[test]
    fn rejections() {
        assert_eq!(Beacon::decode(&[]), Err(BeaconError::TooShort(0)));
        assert_eq!(
            Beacon::decode(&GOLDEN[..21]),
            Err(BeaconError::TooShort(21))
        );
        let mut bad = GOLDEN;
        bad[0] = b'X';
        assert_eq!(Beacon::decode(&bad), Err(BeaconError::BadPrefix));
        let mut long = GOLDEN.to_vec();
        long.push(0);
        assert_eq!(Beacon::decode(&long), Err(BeaconError::WrongLength(23)));
        let mut v2 = GOLDEN;
        v2[3] = 0x02;
        assert_eq!(Beacon::decode(&v2), Err(BeaconError::UnsupportedVersion(2)));
        let mut v3short = GOLDEN;
        v3short[3] = 0x03;
        assert_eq!(Beacon::decode(&v3short), Err(BeaconError::MissingPublicKey));
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Beacon::decode(&b);
        }

        #[test]
        fn prefixed_bytes_never_panic(ver in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 0..60)) {
            let mut b = b"ZRE".to_vec();
            b.push(ver);
            b.extend_from_slice(&rest);
            if let Ok(beacon) = Beacon::decode(&b) {
                prop_assert!(b.len() == BEACON_V1_LEN || b.len() == BEACON_V3_LEN);
                prop_assert_eq!(beacon.version, ver);
            }
        }

        #[test]
        fn round_trip(uuid in any::<u128>(), port in any::<u16>(), key in proptest::option::of(any::<[u8; 32]>())) {
            let b = match key {
                Some(k) => Beacon::v3(Uuid::from_u128(uuid), port, k),
                None => Beacon::v1(Uuid::from_u128(uuid), port),
            };
            prop_assert_eq!(Beacon::decode(&b.encode()).unwrap(), b);
        }

        /// Every accepted version-3 datagram is 54 bytes, carries its last 32 bytes as the key,
        /// and is admitted in secure mode exactly when that key's first byte is not 0 (and never
        /// in plain mode).
        #[test]
        fn v3_datagrams_and_the_secure_mode_rule(uuid in any::<[u8; 16]>(), port in any::<u16>(), key in any::<[u8; 32]>()) {
            let mut dg = b"ZRE\x03".to_vec();
            dg.extend_from_slice(&uuid);
            dg.extend_from_slice(&port.to_be_bytes());
            dg.extend_from_slice(&key);
            let b = Beacon::decode(&dg).unwrap();
            prop_assert_eq!(b, Beacon::v3(Uuid::from_bytes(uuid), port, key));
            prop_assert_eq!(b.encode(), dg.clone());
            prop_assert_eq!(b.admit(true).is_ok(), key[0] != 0);
            prop_assert!(b.admit(false).is_err());
            prop_assert!(Beacon::decode(&dg[..BEACON_V1_LEN]).is_err());
        }
    }
}
