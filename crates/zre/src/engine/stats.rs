//! The engine's problem and traffic counters.

/// Counters of everything unusual the engine saw (all start at 0).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Messages accepted from ready peers (including HELLO).
    pub messages_received: u64,
    /// Messages produced as [`Output::Send`].
    ///
    /// [`Output::Send`]: super::Output::Send
    pub messages_sent: u64,
    /// Frames that failed to decode.
    pub malformed: u64,
    /// Identity frames that were not 17 bytes.
    pub bad_identity: u64,
    /// Non-HELLO messages from unknown or not-ready peers.
    pub not_hello_first: u64,
    /// Sequence errors (peer removed).
    pub sequence_gaps: u64,
    /// JOIN/LEAVE with a wrong status (peer removed).
    pub status_mismatches: u64,
    /// HELLO from a ready peer (peer re-created).
    pub restarts: u64,
    /// Peers disconnected because another UUID appeared at their endpoint.
    pub purged: u64,
    /// Messages, sightings or HELLOs that would connect us to ourselves.
    pub self_connections: u64,
    /// Messages from purged peers (ignored).
    pub from_disconnected: u64,
    /// HELLOs (or sightings) with an unusable (empty) endpoint.
    pub bad_endpoint: u64,
    /// ELECT/LEADER received and ignored.
    pub elections_ignored: u64,
    /// GOODBYEs received.
    pub goodbyes: u64,
    /// Port-0 beacons / departures for known peers.
    pub departures: u64,
    /// PINGs sent.
    pub pings_sent: u64,
    /// PINGs received.
    pub pings_received: u64,
    /// Peers removed by the expired timer.
    pub expired: u64,
    /// Send failures reported by the shell.
    pub send_failures: u64,
    /// Not-ready peers forgotten because they kept talking on an old session (lost HELLO).
    pub stale_sessions: u64,
    /// Input of the other security mode, ignored: in secure mode a sighting without a usable
    /// key, a HELLO without `X-PUBLICKEY`, a message on an unauthenticated connection; in plain
    /// mode a sighting that carries a key.
    pub mode_mismatches: u64,
    /// Secure mode: messages (HELLO included) refused because the connection's authenticated key
    /// is not the key the sender's UUID was announced with, or the HELLO's `X-PUBLICKEY` does
    /// not match (a peer claiming another's UUID).
    pub impersonations: u64,
    /// Secure mode: sightings of a known UUID with another key than the one it was announced
    /// with (ignored; the first announcement stands until the peer is gone).
    pub key_conflicts: u64,
    /// Peers moved to a new endpoint (sighted elsewhere while their endpoint went unannounced:
    /// an address change; see [`Config::endpoint_move_after`]).
    ///
    /// [`Config::endpoint_move_after`]: super::Config::endpoint_move_after
    pub moved: u64,
}
