//! Harness for the sans-IO ZRE engine: `engine_messages`, and `engine_secure` (the same scripts
//! against an engine in secure mode).
//!
//! The input is decoded with [`arbitrary`] into a script of [`Step`]s — messages from a handful of
//! simulated peers (mostly well formed, with the right or a wrong sequence number and status),
//! raw frames, damaged messages, beacon sightings and departures, send failures, clock advances,
//! timer expiries and application commands — which is played against one [`Engine`] with a fixed
//! UUID. Simulated peers keep their own sequence/status counters so the fuzzer can reach deep
//! states (ready peers in groups, restarts, purges, elections) instead of dying at the first
//! sequence check.
//!
//! After every step all outputs are checked against the shared output contract
//! ([`zmesh_zre::testing::Contract`], the same checker the engine tests and the simulator use:
//! outboxes, sequences, HELLO first with our current facts, GOODBYE rules, event coherence, the
//! query API against the event stream) and drained into a [`Shadow`], the model of what only the
//! fuzzer knows — what each command must have sent:
//!
//! * JOIN/LEAVE commands send exactly one message to every connected peer, WHISPER to the one
//!   peer, SHOUT to exactly `peers_by_group()`; after `stop` nothing is connected and no input
//!   produces output any more;
//! * the timer makes progress: after `handle_timeout(now)`, `poll_timeout()` is `None` or later
//!   than `now` (otherwise the shell would spin).
//!
//! `engine_secure` plays the same scripts against an engine with a CURVE key. Every simulated
//! peer has a key ([`peer_key`]); spare bits of the script's choices make a message arrive on an
//! impostor's connection (another peer's key) or an unauthenticated one, a HELLO announce no key
//! or the wrong one in `X-PUBLICKEY`, a sighting carry another key or none. The contract then also
//! checks that every `Connect` carries a key, and the harness checks the binding of UUIDs to keys:
//! an event about the UUID a message claims (ENTER, JOIN, WHISPER, EXIT, ...) is produced only
//! if the message's connection key is the key that UUID is bound to.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use uuid::Uuid;
use zmesh_zre::testing::Contract;
use zmesh_zre::{
    routing_id, Config, Engine, EngineError, Event, Output, ZreMessage, IDENTITY_LEN, ZMESH_HEADER,
};

/// Our own UUID.
pub const OWN_UUID: Uuid = Uuid::from_u128(0x00AA_0000_0000_4000_8000_0000_0000_0001);
/// Our own endpoint (when the script does not clear it).
pub const OWN_ENDPOINT: &str = "tcp://127.0.0.1:5670";
/// The simulated peers.
pub const PEERS: [Uuid; 4] = [
    Uuid::from_u128(0x0B0B_0000_0000_4000_8000_0000_0000_0001),
    Uuid::from_u128(0x0B0B_0000_0000_4000_8000_0000_0000_0002),
    Uuid::from_u128(0x0B0B_0000_0000_4000_8000_0000_0000_0003),
    Uuid::from_u128(0x0000_0000_0000_0000_0000_0000_0000_0000),
];
/// Endpoints the script picks from: distinct ones, a shared one (purges), ours, empty, junk.
const ENDPOINTS: [&str; 8] = [
    "tcp://127.0.0.1:7001",
    "tcp://127.0.0.1:7002",
    "tcp://127.0.0.1:7003",
    "tcp://127.0.0.1:7000",
    OWN_ENDPOINT,
    "",
    "tcp://[::1]:7004",
    "not an endpoint",
];
/// Group names the script picks from, including edge cases (empty, 255 bytes, 256 bytes, UTF-8).
fn group(i: u8) -> String {
    match i % 8 {
        0 => "GLOBAL".into(),
        1 => "chat".into(),
        2 => "ops".into(),
        3 => String::new(),
        4 => "x".repeat(255),
        5 => "y".repeat(256),
        6 => "grüppe".into(),
        _ => "CHAT".into(),
    }
}

fn endpoint(i: u8) -> &'static str {
    ENDPOINTS[usize::from(i) % ENDPOINTS.len()]
}

fn peer(i: u8) -> Uuid {
    PEERS[usize::from(i) % PEERS.len()]
}

/// Who a message claims to come from (the ROUTER identity frame).
#[derive(Arbitrary, Debug)]
pub enum Who {
    /// One of [`PEERS`], with the correct `0x01` + UUID identity.
    Peer(u8),
    /// Our own UUID (self-connection).
    Own,
    /// A peer UUID behind another first byte (C does not check it).
    OddFirstByte(u8, u8),
    /// A truncated identity.
    Short(u8, u8),
    /// Any bytes.
    Raw(Vec<u8>),
}

/// Which sequence number a simulated peer puts on a message.
#[derive(Arbitrary, Debug)]
pub enum SeqChoice {
    /// The correct next one (1 for HELLO).
    Next,
    /// The previous one again.
    Repeat,
    /// One too far.
    Skip,
    /// Any value.
    Exact(u16),
}

/// Which status a simulated peer puts on JOIN/LEAVE/HELLO.
#[derive(Arbitrary, Debug)]
pub enum StatusChoice {
    /// Its own counter plus one (for HELLO: its counter).
    Next,
    /// Any value.
    Exact(u8),
}

/// A ZRE message from a simulated peer, with choices for the fields that matter.
#[derive(Arbitrary, Debug)]
pub enum MsgSpec {
    /// HELLO.
    Hello {
        /// Index into the endpoint list.
        endpoint: u8,
        /// Group indices.
        groups: Vec<u8>,
        /// Status carried.
        status: StatusChoice,
        /// Name.
        name: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Whether to advertise `X-ZMESH`.
        zmesh: bool,
    },
    /// WHISPER.
    Whisper(Vec<Vec<u8>>),
    /// SHOUT.
    Shout(u8, Vec<Vec<u8>>),
    /// JOIN.
    Join(u8, StatusChoice),
    /// LEAVE.
    Leave(u8, StatusChoice),
    /// PING.
    Ping,
    /// PING-OK.
    PingOk,
    /// ELECT.
    Elect(u8, String),
    /// LEADER.
    Leader(u8, String),
    /// GOODBYE.
    Goodbye,
}

/// One input to the engine.
#[derive(Arbitrary, Debug)]
pub enum Step {
    /// A message built from [`MsgSpec`].
    Message {
        /// Identity.
        from: Who,
        /// Sequence number choice.
        seq: SeqChoice,
        /// The message.
        msg: MsgSpec,
    },
    /// A message whose ZRE frame is cut to `cut` bytes and has one byte XORed.
    Damaged {
        /// Identity.
        from: Who,
        /// The message.
        msg: MsgSpec,
        /// New length of the ZRE frame (if shorter).
        cut: u16,
        /// Position and XOR mask of a flipped byte.
        flip: (u16, u8),
    },
    /// Raw frames.
    Raw {
        /// Identity.
        from: Who,
        /// Frames after the identity.
        frames: Vec<Vec<u8>>,
    },
    /// A beacon sighting.
    Sighting {
        /// Peer index (4 = our own UUID).
        peer: u8,
        /// Endpoint index.
        endpoint: u8,
    },
    /// A port-0 beacon.
    Departure(u8),
    /// The shell could not queue a message for a peer.
    SendFailed(u8),
    /// Time passes (milliseconds), then the timers run.
    Advance(u16),
    /// Jump to the engine's next deadline and run the timers.
    Deadline,
    /// Application: join a group.
    Join(u8),
    /// Application: leave a group.
    Leave(u8),
    /// Application: whisper to a peer.
    Whisper(u8, Vec<Vec<u8>>),
    /// Application: shout to a group.
    Shout(u8, Vec<Vec<u8>>),
    /// Application: change the advertised endpoint.
    SetEndpoint(u8),
    /// Application: stop.
    Stop,
}

/// Engine configuration choices.
#[derive(Arbitrary, Debug)]
pub struct Setup {
    /// Evasive timeout, 1..=256 × 50 ms.
    pub evasive: u8,
    /// Expired timeout, 1..=256 × 200 ms.
    pub expired: u8,
    /// Ping interval, 0..=255 × 50 ms (0 disables).
    pub ping: u8,
    /// Start without an endpoint.
    pub no_endpoint: bool,
    /// Configure `X-ZMESH` ourselves.
    pub own_zmesh_header: bool,
}

/// What a simulated peer has sent us so far.
#[derive(Default, Debug)]
struct Remote {
    seq: u16,
    status: u8,
}

/// Upper bound on steps per input, to keep executions fast.
const MAX_STEPS: usize = 200;

/// Our own CURVE key in `engine_secure`.
pub const OWN_KEY: [u8; 32] = [0xA1; 32];

/// The CURVE key of simulated peer `uuid` in `engine_secure` (first byte never 0).
pub fn peer_key(uuid: &Uuid) -> [u8; 32] {
    let mut k = [0x5A; 32];
    k[..16].copy_from_slice(uuid.as_bytes());
    k[0] |= 0x80;
    k
}

/// `engine_messages`: plays the script decoded from `data` (see the module documentation).
pub fn engine_messages(data: &[u8]) {
    run(data, false)
}

/// `engine_secure`: the same scripts against an engine in secure mode (module documentation).
pub fn engine_secure(data: &[u8]) {
    run(data, true)
}

/// The connection key a message from `who` arrives with in secure mode: its own, an
/// impostor's (bit 7 of the peer index) or none (bit 0 of an odd first byte).
fn conn_key(who: &Who, uuid: &Uuid) -> Option<[u8; 32]> {
    match who {
        Who::Peer(p) if p & 0x80 != 0 => Some(peer_key(&peer(p.wrapping_add(1)))),
        Who::OddFirstByte(b, _) if b & 1 == 1 => None,
        Who::Raw(_) => None,
        _ => Some(peer_key(uuid)),
    }
}

/// The `X-PUBLICKEY` a HELLO announces in secure mode, chosen by its name's length: the
/// sender's key, none, another peer's key, or junk.
fn announced_key(name: &str, uuid: &Uuid) -> Option<String> {
    match name.len() % 4 {
        0 | 1 => Some(z85::encode(peer_key(uuid))),
        2 => None,
        _ if name.is_empty() => None,
        _ => Some(z85::encode(peer_key(&Uuid::from_u128(uuid.as_u128() ^ 1)))),
    }
}

fn run(data: &[u8], secure: bool) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let mut config = Config::new(OWN_UUID, "fuzz");
    config.evasive_timeout = Duration::from_millis(50 * (1 + u64::from(setup.evasive)));
    config.expired_timeout = Duration::from_millis(200 * (1 + u64::from(setup.expired)));
    config.ping_interval = Duration::from_millis(50 * u64::from(setup.ping));
    if !setup.no_endpoint {
        config.endpoint = OWN_ENDPOINT.into();
    }
    if setup.own_zmesh_header {
        config.headers.push((ZMESH_HEADER.into(), "7".into()));
    }
    if secure {
        config.public_key = Some(OWN_KEY);
    }
    let mut now = Instant::now();
    let mut engine = Engine::try_new(config, now).expect("valid config");
    let mut shadow = Shadow::default();
    let mut remotes: BTreeMap<Uuid, Remote> = BTreeMap::new();

    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        let Ok(step) = Step::arbitrary(&mut u) else {
            break;
        };
        let connected_before: BTreeSet<Uuid> = shadow.connected.keys().copied().collect();
        let mut expect = Expect::Nothing;
        let mut claimed: Option<Claim> = None;
        match step {
            Step::Message { from, seq, mut msg } => {
                let (identity, uuid) = identity(&from);
                let key = secure.then(|| conn_key(&from, &uuid)).flatten();
                if secure {
                    if let MsgSpec::Hello { name, headers, .. } = &mut msg {
                        if let Some(k) = announced_key(name, &uuid) {
                            headers.push(("X-PUBLICKEY".into(), k));
                        }
                    }
                    claimed = Some(Claim {
                        uuid,
                        before: engine.peer(uuid).and_then(|p| p.public_key),
                        key,
                    });
                }
                let r = remotes.entry(uuid).or_default();
                let Some(frames) = build(r, &seq, &msg) else {
                    continue;
                };
                engine.handle_message_with_key(now, &identity, frames.into_iter().collect(), key);
            }
            Step::Damaged {
                from,
                msg,
                cut,
                flip,
            } => {
                let (identity, uuid) = identity(&from);
                let r = remotes.entry(uuid).or_default();
                let Some(mut frames) = build(r, &SeqChoice::Next, &msg) else {
                    continue;
                };
                let mut first = frames[0].to_vec();
                first.truncate(usize::from(cut));
                if !first.is_empty() {
                    let i = usize::from(flip.0) % first.len();
                    first[i] ^= flip.1;
                }
                frames[0] = Bytes::from(first);
                engine.handle_message(now, &identity, frames.into());
            }
            Step::Raw { from, frames } => {
                let (identity, _) = identity(&from);
                engine.handle_message(
                    now,
                    &identity,
                    frames.into_iter().map(Bytes::from).collect(),
                );
            }
            Step::Sighting {
                peer: p,
                endpoint: e,
            } => {
                let uuid = if p % 5 == 4 { OWN_UUID } else { peer(p) };
                // Secure mode: its own key, another peer's (bit 7), or none (bit 6).
                let key = match e {
                    _ if !secure || e & 0x40 != 0 => None,
                    _ if e & 0x80 != 0 => Some(peer_key(&peer(p.wrapping_add(1)))),
                    _ => Some(peer_key(&uuid)),
                };
                engine.handle_sighting_with_key(now, uuid, endpoint(e), key);
            }
            Step::Departure(p) => engine.handle_departure(now, peer(p)),
            Step::SendFailed(p) => engine.handle_send_failed(now, peer(p)),
            Step::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms));
                timeout(&mut engine, now);
            }
            Step::Deadline => {
                if let Some(t) = engine.poll_timeout() {
                    now = now.max(t);
                }
                timeout(&mut engine, now);
            }
            Step::Join(g) => {
                let g = group(g);
                match engine.try_join(&g) {
                    Ok(true) => {
                        shadow.own_groups.push(g.clone());
                        shadow.status = shadow.status.wrapping_add(1);
                        expect = Expect::ToEach(
                            connected_before.clone(),
                            ZreMessage::Join {
                                group: g,
                                status: shadow.status,
                            },
                        );
                    }
                    Ok(false) => assert!(shadow.own_groups.contains(&g)),
                    Err(EngineError::Stopped) => assert!(shadow.stopped),
                    Err(EngineError::Wire(_)) => assert!(g.len() > 255),
                    Err(e) => panic!("join({g:?}): unexpected error {e}"),
                }
            }
            Step::Leave(g) => {
                let g = group(g);
                match engine.try_leave(&g) {
                    Ok(true) => {
                        let pos = shadow.own_groups.iter().position(|x| *x == g);
                        shadow
                            .own_groups
                            .remove(pos.expect("left a group we were not in"));
                        shadow.status = shadow.status.wrapping_add(1);
                        expect = Expect::ToEach(
                            connected_before.clone(),
                            ZreMessage::Leave {
                                group: g,
                                status: shadow.status,
                            },
                        );
                    }
                    Ok(false) => assert!(!shadow.own_groups.contains(&g)),
                    Err(EngineError::Stopped) => assert!(shadow.stopped),
                    Err(e) => panic!("leave({g:?}): unexpected error {e}"),
                }
            }
            Step::Whisper(p, content) => {
                let uuid = peer(p);
                let content: Vec<Bytes> = content.into_iter().map(Bytes::from).collect();
                match engine.whisper(uuid, content.clone()) {
                    Ok(()) => {
                        assert!(shadow.connected.contains_key(&uuid));
                        expect = Expect::ToEach(
                            BTreeSet::from([uuid]),
                            ZreMessage::Whisper {
                                content: content.into(),
                            },
                        );
                    }
                    Err(EngineError::EmptyContent) => assert!(content.is_empty()),
                    Err(EngineError::UnknownPeer(x)) => {
                        assert_eq!(x, uuid);
                        assert!(!shadow.connected.contains_key(&uuid));
                    }
                    Err(EngineError::Stopped) => assert!(shadow.stopped),
                    Err(e) => panic!("whisper: unexpected error {e}"),
                }
            }
            Step::Shout(g, content) => {
                let g = group(g);
                let members: BTreeSet<Uuid> = engine.peers_by_group(&g).into_iter().collect();
                let content: Vec<Bytes> = content.into_iter().map(Bytes::from).collect();
                match engine.shout(&g, content.clone()) {
                    Ok(n) => {
                        assert_eq!(n, members.len());
                        expect = Expect::ToEach(
                            members,
                            ZreMessage::Shout {
                                group: g,
                                content: content.into(),
                            },
                        );
                    }
                    Err(EngineError::EmptyContent) => assert!(content.is_empty()),
                    Err(EngineError::Wire(_)) => assert!(g.len() > 255),
                    Err(EngineError::Stopped) => assert!(shadow.stopped),
                    Err(e) => panic!("shout: unexpected error {e}"),
                }
            }
            Step::SetEndpoint(e) => {
                let e = endpoint(e);
                engine.try_set_endpoint(e.into()).expect("short endpoint");
                assert_eq!(engine.endpoint(), e);
            }
            Step::Stop => engine.stop(now),
        }
        let stopped_before = shadow.stopped;
        let mut sends = Vec::new();
        let mut produced = 0usize;
        shadow.contract.sync(&engine);
        if engine.is_stopped() {
            shadow.contract.stopping();
        }
        while let Some(out) = engine.poll_output() {
            produced += 1;
            if let Err(v) = shadow.contract.output(&out) {
                panic!("output contract violated: {v}");
            }
            if let (Some(c), Output::Event(ev)) = (&claimed, &out) {
                if ev.peer() == Some(c.uuid) {
                    let bound = engine.peer(c.uuid).and_then(|p| p.public_key).or(c.before);
                    assert!(
                        c.key.is_some() && bound == c.key,
                        "{ev:?} from a message on a connection keyed {:?}, UUID bound to {bound:?}",
                        c.key
                    );
                }
            }
            shadow.apply(&engine, out, &mut sends);
        }
        if stopped_before {
            assert_eq!(produced, 0, "a stopped engine produced output");
        }
        if let Expect::ToEach(targets, msg) = expect {
            let got: BTreeSet<Uuid> = sends.iter().map(|(p, _)| *p).collect();
            assert_eq!(got, targets, "{} went to the wrong peers", msg.name());
            assert_eq!(sends.len(), targets.len(), "{} sent twice", msg.name());
            for (_, m) in &sends {
                assert_eq!(m, &msg);
            }
        }
        if let Err(v) = shadow.contract.check_queries(&engine) {
            panic!("queries disagree with the events: {v}");
        }
        shadow.check_queries(&engine);
    }
}

/// Secure mode: the UUID a message claims, its bound key before the step, and the key of the
/// connection the message came over.
struct Claim {
    uuid: Uuid,
    before: Option<[u8; 32]>,
    key: Option<[u8; 32]>,
}

/// Messages a command must produce: this message to exactly these peers.
enum Expect {
    Nothing,
    ToEach(BTreeSet<Uuid>, ZreMessage),
}

/// Runs the timers and checks that they make progress.
fn timeout(engine: &mut Engine, now: Instant) {
    engine.handle_timeout(now);
    if let Some(t) = engine.poll_timeout() {
        assert!(
            t > now,
            "poll_timeout() not after handle_timeout(now): would spin"
        );
    }
}

/// The identity frame for `who` and the UUID whose simulated counters the message uses.
fn identity(who: &Who) -> (Vec<u8>, Uuid) {
    match who {
        Who::Peer(p) => (routing_id(&peer(*p)).to_vec(), peer(*p)),
        Who::Own => (routing_id(&OWN_UUID).to_vec(), OWN_UUID),
        Who::OddFirstByte(b, p) => {
            let mut id = routing_id(&peer(*p));
            id[0] = *b;
            (id.to_vec(), peer(*p))
        }
        Who::Short(n, p) => {
            let id = routing_id(&peer(*p));
            let n = usize::from(*n) % IDENTITY_LEN;
            (id[..n].to_vec(), peer(*p))
        }
        Who::Raw(bytes) => (bytes.clone(), Uuid::nil()),
    }
}

/// Encodes `spec` as the simulated peer `r` would, updating its counters. `None` if the spec
/// cannot be encoded (a string over 255 bytes, no content).
fn build(r: &mut Remote, seq: &SeqChoice, spec: &MsgSpec) -> Option<Vec<Bytes>> {
    let is_hello = matches!(spec, MsgSpec::Hello { .. });
    let next_status = |r: &Remote, s: &StatusChoice| match s {
        StatusChoice::Next => r.status.wrapping_add(1),
        StatusChoice::Exact(v) => *v,
    };
    let msg = match spec {
        MsgSpec::Hello {
            endpoint: e,
            groups,
            status,
            name,
            headers,
            zmesh,
        } => {
            let mut headers = headers.clone();
            if *zmesh {
                headers.push((ZMESH_HEADER.into(), "1".into()));
            }
            ZreMessage::Hello {
                endpoint: endpoint(*e).into(),
                groups: groups.iter().map(|g| group(*g)).collect(),
                status: match status {
                    StatusChoice::Next => r.status,
                    StatusChoice::Exact(v) => *v,
                },
                name: name.clone(),
                headers,
            }
        }
        MsgSpec::Whisper(c) => ZreMessage::Whisper {
            content: c.iter().cloned().map(Bytes::from).collect(),
        },
        MsgSpec::Shout(g, c) => ZreMessage::Shout {
            group: group(*g),
            content: c.iter().cloned().map(Bytes::from).collect(),
        },
        MsgSpec::Join(g, s) => ZreMessage::Join {
            group: group(*g),
            status: next_status(r, s),
        },
        MsgSpec::Leave(g, s) => ZreMessage::Leave {
            group: group(*g),
            status: next_status(r, s),
        },
        MsgSpec::Ping => ZreMessage::Ping,
        MsgSpec::PingOk => ZreMessage::PingOk,
        MsgSpec::Elect(g, c) => ZreMessage::Elect {
            group: group(*g),
            challenger: c.clone(),
        },
        MsgSpec::Leader(g, l) => ZreMessage::Leader {
            group: group(*g),
            leader: l.clone(),
        },
        MsgSpec::Goodbye => ZreMessage::Goodbye,
    };
    let base = if is_hello { 0 } else { r.seq };
    let sequence = match seq {
        SeqChoice::Next => base.wrapping_add(1),
        SeqChoice::Repeat => base,
        SeqChoice::Skip => base.wrapping_add(2),
        SeqChoice::Exact(v) => *v,
    };
    let frames = msg.encode(sequence).ok()?;
    r.seq = sequence;
    match &msg {
        ZreMessage::Hello { status, .. } => r.status = *status,
        ZreMessage::Join { status, .. } | ZreMessage::Leave { status, .. } => r.status = *status,
        _ => {}
    }
    Some(frames.to_vec())
}

/// Per-outbox state the shell would hold.
/// An open outbox (what it carried is checked by the shared contract).
#[derive(Debug, Default)]
struct Outbox;

/// The independent model of the engine's output stream (module documentation).
#[derive(Default, Debug)]
pub struct Shadow {
    /// The shared output contract (`zmesh_zre::testing`): outboxes, sequences, HELLO first,
    /// GOODBYE rules, event coherence, queries. The rest of this model covers what only the
    /// fuzzer knows: what each command must have sent.
    contract: Contract,
    connected: BTreeMap<Uuid, Outbox>,
    /// Entered peers → whether their HELLO advertised `X-ZMESH`.
    entered: BTreeMap<Uuid, bool>,
    /// Group → members in the order their JOIN events arrived.
    groups: BTreeMap<String, Vec<Uuid>>,
    own_groups: Vec<String>,
    status: u8,
    stopped: bool,
}

impl Shadow {
    /// Applies one output (already checked against the shared contract) to the command model.
    /// Sends are appended to `sends`.
    fn apply(&mut self, _engine: &Engine, out: Output, sends: &mut Vec<(Uuid, ZreMessage)>) {
        match out {
            Output::Connect { peer, .. } => {
                self.connected.insert(peer, Outbox);
            }
            Output::Send { peer, frames } => {
                let (_, msg) = ZreMessage::decode(&frames).expect("checked by the contract");
                sends.push((peer, msg));
            }
            Output::Disconnect { peer } => {
                self.connected.remove(&peer);
            }
            Output::Event(e) => self.event(e),
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Enter { peer, headers, .. } => {
                let ext = headers.iter().any(|(k, _)| k == ZMESH_HEADER);
                self.entered.insert(peer, ext);
            }
            Event::Exit { peer, .. } => {
                self.entered.remove(&peer);
                for members in self.groups.values_mut() {
                    members.retain(|m| *m != peer);
                }
                self.groups.retain(|_, m| !m.is_empty());
            }
            Event::Join { peer, group, .. } => self.groups.entry(group).or_default().push(peer),
            Event::Leave { peer, group, .. } => {
                if let Some(members) = self.groups.get_mut(&group) {
                    members.retain(|m| *m != peer);
                    if members.is_empty() {
                        self.groups.remove(&group);
                    }
                }
            }
            Event::Stop { .. } => {
                self.stopped = true;
                self.entered.clear();
                self.groups.clear();
            }
            _ => {}
        }
    }

    /// What the shared contract cannot know: our own groups and status follow the commands,
    /// and groups nobody joined have no members.
    fn check_queries(&self, engine: &Engine) {
        assert_eq!(engine.is_stopped(), self.stopped);
        assert_eq!(engine.own_groups(), self.own_groups);
        assert_eq!(engine.status(), self.status);
        for i in 0..8 {
            let g = group(i);
            if !self.groups.contains_key(&g) {
                assert!(engine.peers_by_group(&g).is_empty());
            }
        }
    }
}
