//! The zgossip protocol state without I/O: one struct for a node that is a hub (server links),
//! a client of hubs (remote links), or both — exactly czmq's `zgossip` actor, whose every node
//! is a ROUTER server plus DEALER remotes.
//!
//! The shell owns the sockets and the clock. It tells the state about links coming up and
//! going down, hands it every received frame body and the current `now`, calls
//! [`Gossip::handle_timeout`] at [`Gossip::poll_timeout`], and carries out the [`GossipOutput`]s
//! (send these bytes on that link, close that link, the application learned a tuple).
//!
//! Behaviour (czmq `zgossip.c`, `zgossip.xml`, with the fixes of the prior-art note e.3):
//! * **server link** (a client connected to us): HELLO → we send every known tuple; PUBLISH →
//!   stored and forwarded if new; PING → PONG; a message before HELLO (other than PING) or an
//!   undecodable one → INVALID and the link is closed (czmq's "terminate"); silence longer than
//!   [`GossipConfig::server_timeout`] (60 s, czmq's engine default — not the 1 s czmq's hub sets,
//!   which drops idle clients) → the link is closed.
//! * **remote link** (we connected to a hub): on link up we send HELLO and every known tuple; we
//!   send PING every [`GossipConfig::ping_interval`] (500 ms: czmq's hub forgets a client silent
//!   for 1 s); INVALID → HELLO and every tuple again; PUBLISH → stored and forwarded if new; a
//!   hub silent for [`GossipConfig::remote_timeout`] → the link is closed (the shell redials).
//! * a tuple is **new** if its key is unknown or its value changed; a new tuple is delivered to
//!   the application and forwarded to every server link that said HELLO and every remote link,
//!   except the one it came from (czmq also sends it back there; the sender drops it as a
//!   duplicate, so skipping is equivalent).
//! * zgossip has no message to withdraw a tuple (czmq's draft UNPUBLISH is not in the stable
//!   protocol). [`Gossip::forget`] drops a tuple locally — when its node has left the mesh — so
//!   that it is no longer sent to clients that join later.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::msg::GossipMsg;

/// Identifies one link in the shell (any number the shell likes, unique while the link lives).
pub type LinkId = u64;

/// Timing of the protocol; defaults written once here.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// How often a remote link sends PING. Default 500 ms.
    pub ping_interval: Duration,
    /// A remote link with nothing received for this long is closed. Default 5 s.
    pub remote_timeout: Duration,
    /// A server link with nothing received for this long is closed. Default 60 s.
    pub server_timeout: Duration,
    /// The ttl put in our PUBLISH messages (informational). Default 0, what czmq sends.
    pub ttl: u32,
}

/// Default [`GossipConfig::ping_interval`].
pub const DEFAULT_GOSSIP_PING: Duration = Duration::from_millis(500);

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            ping_interval: DEFAULT_GOSSIP_PING,
            remote_timeout: Duration::from_secs(5),
            server_timeout: Duration::from_secs(60),
            ttl: 0,
        }
    }
}

/// Which side of a link we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A client connected to our hub.
    Server,
    /// We connected to a hub.
    Remote,
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GossipOutput {
    /// Send this frame body on the link.
    Send(LinkId, Vec<u8>),
    /// Close the link (the shell reports [`Gossip::link_down`] or just drops it).
    Close(LinkId),
    /// A new tuple reached us (not one of our own).
    Deliver {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

/// Counters for tests and statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Frames that did not decode, or arrived out of turn.
    pub bad_messages: u64,
    /// Tuples received that were already known.
    pub duplicates: u64,
    /// Links closed for silence.
    pub timeouts: u64,
}

#[derive(Debug)]
struct Link {
    role: Role,
    /// A server link's client said HELLO.
    hello: bool,
    last_recv: Instant,
    next_ping: Instant,
}

#[derive(Debug, Clone)]
struct Tuple {
    value: String,
    /// Ours (published by this node) rather than learned.
    own: bool,
}

/// The zgossip protocol state of one node (see the module doc).
#[derive(Debug)]
pub struct Gossip {
    cfg: GossipConfig,
    tuples: HashMap<String, Tuple>,
    links: HashMap<LinkId, Link>,
    out: std::collections::VecDeque<GossipOutput>,
    stats: GossipStats,
}

impl Gossip {
    /// An empty state.
    pub fn new(cfg: GossipConfig) -> Gossip {
        Gossip {
            cfg,
            tuples: HashMap::new(),
            links: HashMap::new(),
            out: Default::default(),
            stats: GossipStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> GossipStats {
        self.stats
    }

    /// The value known for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.tuples.get(key).map(|t| t.value.as_str())
    }

    /// Number of known tuples (own and learned).
    pub fn len(&self) -> usize {
        self.tuples.len()
    }

    /// No tuple known.
    pub fn is_empty(&self) -> bool {
        self.tuples.is_empty()
    }

    /// Number of live links.
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// Publishes (or re-publishes with a new value) one of our own tuples: stored and sent to
    /// every link. Publishing the same value again does nothing.
    pub fn publish(&mut self, key: &str, value: &str) {
        if let Some(t) = self.tuples.get(key) {
            if t.value == value && t.own {
                return;
            }
        }
        self.tuples.insert(
            key.to_owned(),
            Tuple {
                value: value.to_owned(),
                own: true,
            },
        );
        self.forward(key, value, None);
    }

    /// Drops a tuple locally (its node left): it is no longer sent to links that say HELLO later.
    /// Returns whether it was known.
    pub fn forget(&mut self, key: &str) -> bool {
        self.tuples.remove(key).is_some()
    }

    /// A link is up (accepted: [`Role::Server`]; dialled: [`Role::Remote`]).
    pub fn link_up(&mut self, id: LinkId, role: Role, now: Instant) {
        self.links.insert(
            id,
            Link {
                role,
                hello: false,
                last_recv: now,
                next_ping: now + self.cfg.ping_interval,
            },
        );
        if role == Role::Remote {
            self.greet(id);
        }
    }

    /// A link is gone.
    pub fn link_down(&mut self, id: LinkId) {
        self.links.remove(&id);
    }

    /// A frame body arrived on a link.
    pub fn handle_message(&mut self, id: LinkId, body: &[u8], now: Instant) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        link.last_recv = now;
        let role = link.role;
        let msg = match GossipMsg::decode(body) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_messages += 1;
                tracing::debug!(link = id, error = %e, "bad zgossip message");
                if role == Role::Server {
                    self.refuse(id);
                }
                return;
            }
        };
        match (role, msg) {
            (Role::Server, GossipMsg::Hello) => {
                if let Some(l) = self.links.get_mut(&id) {
                    l.hello = true;
                }
                self.send_all_tuples(id);
            }
            (Role::Server, GossipMsg::Ping) => self.send(id, &GossipMsg::Pong),
            (Role::Server, GossipMsg::Publish { key, value, .. }) if link_said_hello(link) => {
                self.accept(id, key, value)
            }
            (Role::Remote, GossipMsg::Publish { key, value, .. }) => self.accept(id, key, value),
            (Role::Remote, GossipMsg::Pong) => {}
            (Role::Remote, GossipMsg::Invalid) => {
                tracing::debug!(link = id, "hub answered INVALID; greeting again");
                self.greet(id);
            }
            (role, m) => {
                self.stats.bad_messages += 1;
                tracing::debug!(
                    link = id,
                    ?role,
                    msg = m.name(),
                    "zgossip message out of turn"
                );
                if role == Role::Server {
                    self.refuse(id);
                }
            }
        }
    }

    /// The earliest instant [`Gossip::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.links
            .values()
            .map(|l| match l.role {
                Role::Remote => l.next_ping.min(l.last_recv + self.cfg.remote_timeout),
                Role::Server => l.last_recv + self.cfg.server_timeout,
            })
            .min()
    }

    /// Sends due PINGs and closes silent links.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut ping = Vec::new();
        let mut close = Vec::new();
        for (&id, l) in &mut self.links {
            let limit = match l.role {
                Role::Remote => self.cfg.remote_timeout,
                Role::Server => self.cfg.server_timeout,
            };
            if now >= l.last_recv + limit {
                close.push(id);
            } else if l.role == Role::Remote && now >= l.next_ping {
                l.next_ping = now + self.cfg.ping_interval;
                ping.push(id);
            }
        }
        for id in ping {
            self.send(id, &GossipMsg::Ping);
        }
        for id in close {
            self.stats.timeouts += 1;
            tracing::debug!(link = id, "zgossip link silent too long; closing");
            self.links.remove(&id);
            self.out.push_back(GossipOutput::Close(id));
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<GossipOutput> {
        self.out.pop_front()
    }

    fn accept(&mut self, from: LinkId, key: String, value: String) {
        match self.tuples.get(&key) {
            Some(t) if t.value == value => {
                self.stats.duplicates += 1;
                return;
            }
            // Our own key comes back (e.g. a stale value from before a restart): ours wins, and
            // the network is told again.
            Some(t) if t.own => {
                let v = t.value.clone();
                self.forward(&key, &v, None);
                return;
            }
            _ => {}
        }
        self.tuples.insert(
            key.clone(),
            Tuple {
                value: value.clone(),
                own: false,
            },
        );
        self.forward(&key, &value, Some(from));
        self.out.push_back(GossipOutput::Deliver { key, value });
    }

    fn forward(&mut self, key: &str, value: &str, except: Option<LinkId>) {
        let msg = GossipMsg::Publish {
            key: key.to_owned(),
            value: value.to_owned(),
            ttl: self.cfg.ttl,
        };
        let Ok(bytes) = msg.encode() else {
            tracing::debug!(key, "zgossip key too long to forward");
            return;
        };
        let mut ids: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(id, l)| Some(**id) != except && (l.role == Role::Remote || l.hello))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            self.out.push_back(GossipOutput::Send(id, bytes.clone()));
        }
    }

    fn greet(&mut self, id: LinkId) {
        self.send(id, &GossipMsg::Hello);
        self.send_all_tuples(id);
    }

    fn send_all_tuples(&mut self, id: LinkId) {
        let mut keys: Vec<&String> = self.tuples.keys().collect();
        keys.sort_unstable();
        for k in keys {
            let msg = GossipMsg::Publish {
                key: k.clone(),
                value: self.tuples[k].value.clone(),
                ttl: self.cfg.ttl,
            };
            if let Ok(b) = msg.encode() {
                self.out.push_back(GossipOutput::Send(id, b));
            }
        }
    }

    fn send(&mut self, id: LinkId, msg: &GossipMsg) {
        if let Ok(b) = msg.encode() {
            self.out.push_back(GossipOutput::Send(id, b));
        }
    }

    fn refuse(&mut self, id: LinkId) {
        self.send(id, &GossipMsg::Invalid);
        self.links.remove(&id);
        self.out.push_back(GossipOutput::Close(id));
    }
}

fn link_said_hello(l: &Link) -> bool {
    l.hello
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(g: &mut Gossip) -> Vec<GossipOutput> {
        std::iter::from_fn(|| g.poll_output()).collect()
    }

    fn msgs(out: &[GossipOutput], link: LinkId) -> Vec<GossipMsg> {
        out.iter()
            .filter_map(|o| match o {
                GossipOutput::Send(l, b) if *l == link => Some(GossipMsg::decode(b).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn publish(k: &str, v: &str) -> Vec<u8> {
        GossipMsg::Publish {
            key: k.into(),
            value: v.into(),
            ttl: 0,
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn hub_serves_tuples_and_forwards() {
        let t0 = Instant::now();
        let mut hub = Gossip::new(GossipConfig::default());
        hub.publish("HUB", "tcp://h:1");
        hub.link_up(1, Role::Server, t0);
        hub.link_up(2, Role::Server, t0);
        hub.handle_message(1, &GossipMsg::Hello.encode().unwrap(), t0);
        let out = drain(&mut hub);
        assert_eq!(
            msgs(&out, 1),
            vec![GossipMsg::Publish {
                key: "HUB".into(),
                value: "tcp://h:1".into(),
                ttl: 0
            }]
        );
        hub.handle_message(2, &GossipMsg::Hello.encode().unwrap(), t0);
        drain(&mut hub);
        hub.handle_message(1, &publish("A", "tcp://a:1"), t0);
        let out = drain(&mut hub);
        assert!(out.contains(&GossipOutput::Deliver {
            key: "A".into(),
            value: "tcp://a:1".into()
        }));
        assert_eq!(msgs(&out, 2).len(), 1, "forwarded to the other client");
        assert!(msgs(&out, 1).is_empty(), "not echoed to the sender");
        // Duplicate: nothing.
        hub.handle_message(2, &publish("A", "tcp://a:1"), t0);
        assert!(drain(&mut hub).is_empty());
        assert_eq!(hub.stats().duplicates, 1);
        // PING -> PONG.
        hub.handle_message(2, &GossipMsg::Ping.encode().unwrap(), t0);
        assert_eq!(msgs(&drain(&mut hub), 2), vec![GossipMsg::Pong]);
    }

    #[test]
    fn publish_before_hello_is_invalid() {
        let t0 = Instant::now();
        let mut hub = Gossip::new(GossipConfig::default());
        hub.link_up(1, Role::Server, t0);
        hub.handle_message(1, &publish("A", "x"), t0);
        let out = drain(&mut hub);
        assert_eq!(msgs(&out, 1), vec![GossipMsg::Invalid]);
        assert!(out.contains(&GossipOutput::Close(1)));
        assert!(hub.get("A").is_none());
        hub.link_up(2, Role::Server, t0);
        hub.handle_message(2, b"garbage", t0);
        assert!(drain(&mut hub).contains(&GossipOutput::Close(2)));
        assert_eq!(hub.stats().bad_messages, 2);
    }

    #[test]
    fn client_greets_pings_and_regreets_on_invalid() {
        let t0 = Instant::now();
        let cfg = GossipConfig::default();
        let mut c = Gossip::new(cfg.clone());
        c.publish("ME", "tcp://me:1");
        assert!(drain(&mut c).is_empty(), "no link yet");
        c.link_up(7, Role::Remote, t0);
        let hello = vec![
            GossipMsg::Hello,
            GossipMsg::Publish {
                key: "ME".into(),
                value: "tcp://me:1".into(),
                ttl: 0,
            },
        ];
        assert_eq!(msgs(&drain(&mut c), 7), hello);
        assert_eq!(c.poll_timeout(), Some(t0 + cfg.ping_interval));
        // Pings keep coming while the hub answers.
        let mut now = t0;
        for _ in 0..4 {
            now = c.poll_timeout().unwrap();
            c.handle_timeout(now);
            assert_eq!(msgs(&drain(&mut c), 7), vec![GossipMsg::Ping]);
            c.handle_message(7, &GossipMsg::Pong.encode().unwrap(), now);
        }
        assert!(
            now >= t0 + Duration::from_secs(2),
            "idle for more than czmq's 1 s"
        );
        c.handle_message(7, &GossipMsg::Invalid.encode().unwrap(), now);
        assert_eq!(msgs(&drain(&mut c), 7), hello);
        // A silent hub is dropped.
        let late = now + cfg.remote_timeout;
        c.handle_timeout(late);
        assert!(drain(&mut c).contains(&GossipOutput::Close(7)));
        assert_eq!(c.links(), 0);
    }

    #[test]
    fn forgotten_tuples_are_not_served_to_late_clients() {
        let t0 = Instant::now();
        let mut hub = Gossip::new(GossipConfig::default());
        hub.link_up(1, Role::Server, t0);
        hub.handle_message(1, &GossipMsg::Hello.encode().unwrap(), t0);
        hub.handle_message(1, &publish("A", "tcp://a:1"), t0);
        assert!(hub.forget("A"));
        drain(&mut hub);
        hub.link_up(2, Role::Server, t0);
        hub.handle_message(2, &GossipMsg::Hello.encode().unwrap(), t0);
        assert!(msgs(&drain(&mut hub), 2).is_empty());
    }

    #[test]
    fn own_key_wins_over_a_stale_value() {
        let t0 = Instant::now();
        let mut c = Gossip::new(GossipConfig::default());
        c.publish("ME", "tcp://new:1");
        c.link_up(1, Role::Remote, t0);
        drain(&mut c);
        c.handle_message(1, &publish("ME", "tcp://old:1"), t0);
        let out = drain(&mut c);
        assert!(!out
            .iter()
            .any(|o| matches!(o, GossipOutput::Deliver { .. })));
        assert_eq!(c.get("ME"), Some("tcp://new:1"));
        assert_eq!(msgs(&out, 1).len(), 1, "ours is re-sent");
    }
}
