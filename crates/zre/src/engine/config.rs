//! Node configuration: the timer defaults, the validation rules and the routing id, each written
//! once.

use std::time::Duration;

use uuid::Uuid;

use super::EngineError;
use crate::msg::{check_string, uuid_to_string, WireError};

/// Default evasive timeout (Zyre: 5000 ms).
pub const DEFAULT_EVASIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default expired timeout (Zyre: 30000 ms).
pub const DEFAULT_EXPIRED_TIMEOUT: Duration = Duration::from_secs(30);
/// Default proactive ping interval (see the liveness policy in `engine/liveness.rs`).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(2500);
/// Default for [`Config::endpoint_move_after`]: three of Zyre's 1 s beacon intervals.
pub const DEFAULT_ENDPOINT_MOVE_AFTER: Duration = Duration::from_secs(3);
/// Upper bound of the reap interval (Zyre: `min(evasive, expired, 1000 ms)`).
pub const MAX_REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Length of the identity frame a ZRE ROUTER sees: `0x01` + 16-byte UUID.
pub const IDENTITY_LEN: usize = 17;

/// The routing id our outboxes must present (`0x01` followed by our UUID): the shell sets it as the
/// ZMTP `Identity` property of every DEALER it creates for [`Output::Connect`].
///
/// [`Output::Connect`]: super::Output::Connect
pub fn routing_id(own: &Uuid) -> [u8; IDENTITY_LEN] {
    let mut id = [1u8; IDENTITY_LEN];
    id[1..].copy_from_slice(own.as_bytes());
    id
}

/// The UUID a ROUTER identity frame carries: the inverse of [`routing_id`]. `None` unless the frame
/// is exactly [`IDENTITY_LEN`] bytes; byte 0 is not checked (like C).
pub(crate) fn uuid_from_routing_id(identity: &[u8]) -> Option<Uuid> {
    let id = <[u8; IDENTITY_LEN]>::try_from(identity).ok()?;
    let mut raw = [0u8; 16];
    raw.copy_from_slice(&id[1..]);
    Some(Uuid::from_bytes(raw))
}

/// The validation rule for our advertised endpoint: it must fit a HELLO `string` field.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), WireError> {
    check_string("endpoint", endpoint)
}

/// The validation rule for a group name: it must fit a JOIN/LEAVE/SHOUT `string` field.
pub(crate) fn check_group(group: &str) -> Result<(), WireError> {
    check_string("group", group)
}

/// Node configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our UUID.
    pub uuid: Uuid,
    /// Our public name (≤ 255 bytes).
    pub name: String,
    /// Our HELLO headers (keys ≤ 255 bytes). `X-ZMESH` is added automatically if absent.
    pub headers: Vec<(String, String)>,
    /// Nothing heard for this long → EVASIVE (default 5 s).
    pub evasive_timeout: Duration,
    /// Nothing heard for this long → EXIT (default 30 s).
    pub expired_timeout: Duration,
    /// Proactively PING a ready peer not heard from for this long (default 2.5 s; zero disables,
    /// and also turns off beacon-aware liveness). Should be clearly below `evasive_timeout`.
    pub ping_interval: Duration,
    /// Our advertised endpoint, sent in HELLO (may be set later with [`Engine::set_endpoint`]).
    ///
    /// [`Engine::set_endpoint`]: super::Engine::set_endpoint
    pub endpoint: String,
    /// Our CURVE public key. `Some` puts the engine in **secure mode** (Zyre's `zyre_set_zcert`):
    /// the key goes in our HELLO as `X-PUBLICKEY`, every peer must be announced with a key, and
    /// every message must come over a connection authenticated with its sender's key (see
    /// "Secure mode" in the engine's module documentation). Default `None`.
    pub public_key: Option<[u8; 32]>,
    /// A known peer sighted at another endpoint than the one we talk to it on is **moved** there
    /// (its session restarted at the new endpoint: EXIT, then Connect + HELLO and ENTER again) once
    /// no source has named its current endpoint for this long (default 3 s; the node sets three
    /// beacon intervals; the peer's creation counts as a naming). Until then the current endpoint
    /// stands, so a node seen at several endpoints (several interfaces, IPv4 and IPv6) stays one
    /// peer on the first one seen. Zero moves at once (every sighting elsewhere restarts the
    /// session).
    pub endpoint_move_after: Duration,
}

impl Config {
    /// A configuration with the default timers, no headers and no endpoint yet.
    pub fn new(uuid: Uuid, name: impl Into<String>) -> Config {
        Config {
            uuid,
            name: name.into(),
            headers: Vec::new(),
            evasive_timeout: DEFAULT_EVASIVE_TIMEOUT,
            expired_timeout: DEFAULT_EXPIRED_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            endpoint: String::new(),
            public_key: None,
            endpoint_move_after: DEFAULT_ENDPOINT_MOVE_AFTER,
        }
    }

    /// Checks everything that would otherwise fail later on the wire.
    pub fn validate(&self) -> Result<(), EngineError> {
        check_string("name", &self.name)?;
        check_endpoint(&self.endpoint)?;
        for (k, _) in &self.headers {
            check_string("header key", k)?;
        }
        if self.evasive_timeout.is_zero() {
            return Err(EngineError::InvalidConfig("evasive_timeout must be > 0"));
        }
        if self.expired_timeout.is_zero() {
            return Err(EngineError::InvalidConfig("expired_timeout must be > 0"));
        }
        if self
            .public_key
            .is_some_and(|k| !crate::beacon::is_usable_key(&k))
        {
            return Err(EngineError::InvalidConfig(
                "public_key starts with a zero byte: Zyre (and zmesh) peers would ignore it",
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    /// A random UUID and, like Zyre, the first 6 characters of its string as name.
    fn default() -> Config {
        let uuid = Uuid::new_v4();
        let name = uuid_to_string(&uuid)[..6].to_owned();
        Config::new(uuid, name)
    }
}
