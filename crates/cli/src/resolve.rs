//! What the user named: a peer (by name, UUID or UUID prefix) and the interface (`--iface`).
//!
//! * A peer name two peers share is **ambiguous**: the error lists the candidates and asks for a
//!   UUID prefix instead of picking one silently.
//! * An interface that matches nothing is an error for one-shot commands (they would only wait
//!   and report nothing) and a notice, printed once, for long-running ones (the interface may
//!   come up later; the node attaches as soon as it does).
//! * One-shot commands that need someone (a responder, a worker, subscribers) wait for them with
//!   [`discover`], up to their `--discover` time.

use zmesh::iface::{self, InterfaceAddr};
use zmesh::{InterfaceSpec, Node, Uuid};

/// Shortest UUID prefix accepted in place of a name.
const MIN_PREFIX: usize = 4;

/// Why a peer could not be chosen.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerError {
    /// Nobody by that name, UUID or prefix (yet).
    Unknown(String),
    /// More than one peer matches; the candidates as `(UUID, name)`.
    Ambiguous(String, Vec<(String, String)>),
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Unknown(who) => write!(f, "no peer named {who:?}"),
            PeerError::Ambiguous(who, list) => {
                write!(f, "{} peers match {who:?}:", list.len())?;
                for (uuid, name) in list {
                    write!(f, " {uuid} ({name})")?;
                }
                write!(
                    f,
                    "; name one by a UUID prefix of at least {MIN_PREFIX} digits"
                )
            }
        }
    }
}

/// Picks the peer `who` names among `peers` (`(uuid, name)` of every known peer): a full UUID
/// (known or not: the node reports unknown UUIDs itself), else an exact name, else a UUID prefix
/// of at least [`MIN_PREFIX`] hex digits (any case).
pub fn pick(who: &str, peers: &[(Uuid, String)]) -> Result<Uuid, PeerError> {
    if let Some(u) = zmesh::uuid_from_str(who) {
        return Ok(u);
    }
    let named: Vec<&(Uuid, String)> = peers.iter().filter(|(_, n)| n == who).collect();
    let candidates = if named.is_empty()
        && who.len() >= MIN_PREFIX
        && who.chars().all(|c| c.is_ascii_hexdigit())
    {
        let prefix = who.to_ascii_uppercase();
        peers
            .iter()
            .filter(|(u, _)| zmesh::uuid_to_string(u).starts_with(&prefix))
            .collect()
    } else {
        named
    };
    match candidates.as_slice() {
        [] => Err(PeerError::Unknown(who.to_owned())),
        [(u, _)] => Ok(*u),
        many => {
            let mut list: Vec<(String, String)> = many
                .iter()
                .map(|(u, n)| (zmesh::uuid_to_string(u), n.clone()))
                .collect();
            list.sort();
            Err(PeerError::Ambiguous(who.to_owned(), list))
        }
    }
}

/// [`pick`] among the ready peers of `node`.
pub fn peer(node: &Node, who: &str) -> Result<Uuid, PeerError> {
    let peers: Vec<(Uuid, String)> = node
        .peers()
        .into_iter()
        .filter_map(|p| node.peer_name(p).map(|n| (p, n)))
        .collect();
    pick(who, &peers)
}

/// The interfaces there are, as `name address` items for messages.
fn available(addrs: &[InterfaceAddr]) -> String {
    let mut names: Vec<String> = addrs
        .iter()
        .filter(|a| a.up)
        .map(|a| format!("{} {}", a.name, a.net.addr()))
        .collect();
    names.dedup();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// `Err(message)` when no interface of this machine matches `spec` now.
pub fn interface(spec: &InterfaceSpec) -> Result<(), String> {
    let addrs = iface::list().map_err(|e| format!("cannot list network interfaces: {e}"))?;
    if iface::select(spec, &addrs).is_some() {
        return Ok(());
    }
    let what = match spec {
        InterfaceSpec::Auto => "no LAN interface (up, IPv4, broadcast, not loopback)".to_owned(),
        other => format!("no interface matches --iface {other}"),
    };
    Err(format!("{what}; interfaces here: {}", available(&addrs)))
}

/// [`interface`] for every spec (none: `auto`).
fn interfaces(specs: &[InterfaceSpec]) -> Result<(), String> {
    if specs.is_empty() {
        return interface(&InterfaceSpec::Auto);
    }
    specs.iter().try_for_each(interface)
}

/// For one-shot commands: the interfaces must exist now (clear error, exit status 2).
pub fn require_interface(specs: &[InterfaceSpec]) -> Result<(), zmesh::Error> {
    interfaces(specs).map_err(zmesh::Error::Config)
}

/// For long-running commands: says once, on stderr, that the node waits for its interface.
pub fn note_missing_interface(specs: &[InterfaceSpec]) {
    if let Err(why) = interfaces(specs) {
        eprintln!("zmesh: {why}; waiting for it to come up (Ctrl-C to stop)");
    }
}

/// Waits until `ready()` holds, or `within` passes, or the node's events end. `ready` is asked
/// again after every event (peers entering, options and offers arriving with their messages)
/// and every 20 ms besides (what peers announce changes the node's state without an event).
pub async fn discover(
    events: &mut zmesh::Events,
    within: std::time::Duration,
    ready: impl Fn() -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !ready() {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            ev = events.recv() => if ev.is_none() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn names_uuids_prefixes_and_ambiguity() {
        let a = u(0xAAAA_0000_0000_0000_0000_0000_0000_0001);
        let b1 = u(0xBBBB_1000_0000_0000_0000_0000_0000_0002);
        let b2 = u(0xBBBB_2000_0000_0000_0000_0000_0000_0003);
        let peers = vec![(a, "alice".into()), (b1, "bob".into()), (b2, "bob".into())];
        assert_eq!(pick("alice", &peers), Ok(a));
        assert_eq!(pick(&zmesh::uuid_to_string(&b2), &peers), Ok(b2));
        let err = pick("bob", &peers).unwrap_err();
        let PeerError::Ambiguous(_, list) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(list.len(), 2);
        let msg = err.to_string();
        assert!(msg.contains(&zmesh::uuid_to_string(&b1)), "{msg}");
        assert!(msg.contains(&zmesh::uuid_to_string(&b2)), "{msg}");
        assert!(msg.contains("prefix"), "{msg}");
        // A prefix picks one (any case); a shared prefix is ambiguous; too short is a name.
        assert_eq!(pick("bbbb1", &peers), Ok(b1));
        assert_eq!(pick("BBBB2", &peers), Ok(b2));
        assert!(matches!(
            pick("BBBB", &peers),
            Err(PeerError::Ambiguous(..))
        ));
        assert_eq!(pick("aaa", &peers), Err(PeerError::Unknown("aaa".into())));
        assert_eq!(
            pick("carol", &peers),
            Err(PeerError::Unknown("carol".into()))
        );
    }

    #[test]
    fn an_interface_that_is_not_there() {
        assert!(interface(&"lo".parse().unwrap()).is_ok());
        for bad in ["nosuch0", "999.1.1.1", "10.99.0.0/16"] {
            let err = interface(&bad.parse().unwrap()).unwrap_err();
            assert!(err.contains("no interface matches"), "{err}");
            assert!(err.contains("lo 127.0.0.1"), "{err}");
        }
    }
}
