//! The control layer: what every zmesh node tells its zmesh peers about itself, and the
//! directory of what it was told — the ground routing decisions stand on ([`crate::routing`]).
//!
//! A node's routable **state** ([`wire::State`]) is its *options* (a key/value map, separate
//! from the HELLO headers, that it can change at any time) and the request and tick *patterns it
//! serves*. It is sent whole, as one STATE message (layer 1, capability `ctl`):
//!
//! * to a peer as soon as the peer comes up (its ENTER), so both sides know each other one
//!   one-way trip after they meet;
//! * to every zmesh peer at once whenever it changes, so a change is seen everywhere within one
//!   trip, and the next routing decision uses it. (Zeronode v2 sends options only in its
//!   handshake, so option-based routing there goes stale.)
//!
//! A whole state rather than deltas: a STATE is idempotent and self-contained, so a lost or
//! reordered one is repaired by the next, and a peer that re-enters (after a partition, a
//! restart) gets everything again. Each carries a version; an older version than the one held
//! is ignored.
//!
//! The directory ([`Control::peer`]) holds, for every peer that entered (plain ZRE peers
//! included), its name, HELLO headers, announced capabilities, the groups it is in, and — once
//! its first STATE arrived — its options and served patterns. A peer is **joined** (routable,
//! Zeronode's "JOINED = ROUTABLE") from its first STATE until it leaves; the application hears
//! [`Delivery::PeerJoined`], [`Delivery::OptionsChanged`] and [`Delivery::PeerLeft`].
//!
//! Delivery contract: STATE messages are at most once over the ZRE session (like every
//! WHISPER); the whole-state design makes a lost one harmless once the next change or re-entry
//! happens. Memory is bounded by the peers present times the wire limits
//! ([`wire::MAX_OPTIONS`], [`wire::MAX_VALUE`], [`wire::MAX_PATTERNS`]).

pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;
use tracing::debug;
use uuid::Uuid;

use crate::caps::Caps;
use crate::envelope::{self, Envelope};
use crate::filter::Attributes;
use crate::layer::{Input, Io, Layer};
use crate::pattern::Pattern;
pub use wire::{Options, State, StateError};

/// What the control layer hands to the application: peer events as Zeronode users know them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// A zmesh peer's first STATE arrived: it is routable.
    PeerJoined {
        /// The peer.
        peer: Uuid,
        /// Its options.
        options: Options,
    },
    /// A joined peer's options changed.
    OptionsChanged {
        /// The peer.
        peer: Uuid,
        /// Its new options.
        options: Options,
    },
    /// A joined peer left (its ZRE EXIT).
    PeerLeft {
        /// The peer.
        peer: Uuid,
    },
}

/// Application commands (the node calls the inherent methods; the simulator may use either).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Command {
    /// See [`Control::set_option`].
    SetOption {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// See [`Control::remove_option`].
    RemoveOption(String),
}

/// Counters of the layer (all start at 0).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// STATE messages sent.
    pub states_sent: u64,
    /// STATE messages applied.
    pub states_received: u64,
    /// STATE messages older than the one held (ignored).
    pub stale_states: u64,
    /// Control envelopes that were unusable (unknown kind, bad payload, from a peer not up).
    pub malformed: u64,
}

/// Everything known about one peer that entered.
#[derive(Debug, Clone)]
pub struct PeerRecord {
    /// Its public name.
    pub name: String,
    /// Its HELLO headers.
    pub headers: Vec<(String, String)>,
    /// The layers it announced.
    pub caps: Caps,
    /// The groups it is in.
    pub groups: BTreeSet<String>,
    state: Option<State>,
}

impl PeerRecord {
    /// True once its first STATE arrived (it is routable).
    pub fn is_joined(&self) -> bool {
        self.state.is_some()
    }

    /// Its options (empty until joined).
    pub fn options(&self) -> Option<&Options> {
        self.state.as_ref().map(|s| &s.options)
    }

    /// True if it advertised a request handler (`ticks`: a tick handler) matching `event`.
    pub fn serves(&self, event: &str, ticks: bool) -> bool {
        self.state.as_ref().is_some_and(|s| {
            let list = if ticks { &s.ticks } else { &s.requests };
            list.iter().any(|p| p.matches(event))
        })
    }

    /// Its state's version (0 until joined).
    pub fn version(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.version)
    }
}

impl Attributes for PeerRecord {
    /// Options first, then HELLO headers.
    fn attr(&self, key: &str) -> Option<&str> {
        if let Some(v) = self.state.as_ref().and_then(|s| s.options.get(key)) {
            return Some(v);
        }
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn in_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }
}

/// Why an option cannot be set.
pub type OptionError = StateError;

/// The control layer (module docs).
#[derive(Debug)]
pub struct Control {
    own: State,
    /// The encoded STATE envelope of `own` (rebuilt on change).
    frame: Bytes,
    peers: BTreeMap<Uuid, PeerRecord>,
    stats: Stats,
}

impl Default for Control {
    fn default() -> Control {
        Control::new(Options::new()).expect("no options are valid options")
    }
}

impl Control {
    /// A layer whose node starts with `options` (checked like [`Control::set_option`]).
    pub fn new(options: Options) -> Result<Control, OptionError> {
        check_options(&options)?;
        let own = State {
            version: 1,
            options,
            ..State::default()
        };
        Ok(Control {
            frame: encode(&own),
            own,
            peers: BTreeMap::new(),
            stats: Stats::default(),
        })
    }

    /// This node's state as its peers see it.
    pub fn own(&self) -> &State {
        &self.own
    }

    /// This node's options.
    pub fn options(&self) -> &Options {
        &self.own.options
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What is known about a peer that entered.
    pub fn peer(&self, peer: Uuid) -> Option<&PeerRecord> {
        self.peers.get(&peer)
    }

    /// Every peer that entered, in UUID order.
    pub fn peers(&self) -> impl Iterator<Item = (Uuid, &PeerRecord)> {
        self.peers.iter().map(|(u, r)| (*u, r))
    }

    /// Sets one option and tells every zmesh peer (unchanged values send nothing).
    pub fn set_option(
        &mut self,
        key: &str,
        value: &str,
        io: &mut impl Io<Delivery>,
    ) -> Result<(), OptionError> {
        wire::validate_key(key)?;
        wire::validate_value(value)?;
        if self.own.options.get(key).map(String::as_str) == Some(value) {
            return Ok(());
        }
        if !self.own.options.contains_key(key) && self.own.options.len() >= wire::MAX_OPTIONS {
            return Err(StateError::TooMany(wire::MAX_OPTIONS, "options"));
        }
        self.own.options.insert(key.to_owned(), value.to_owned());
        self.changed(io);
        Ok(())
    }

    /// Removes one option and tells every zmesh peer; false if it was not set.
    pub fn remove_option(&mut self, key: &str, io: &mut impl Io<Delivery>) -> bool {
        if self.own.options.remove(key).is_none() {
            return false;
        }
        self.changed(io);
        true
    }

    /// Sets the request and tick patterns this node serves (the request/reply layer's handlers)
    /// and tells every zmesh peer if they changed.
    pub fn set_served(
        &mut self,
        requests: Vec<Pattern>,
        ticks: Vec<Pattern>,
        io: &mut impl Io<Delivery>,
    ) {
        if self.own.requests == requests && self.own.ticks == ticks {
            return;
        }
        self.own.requests = requests;
        self.own.ticks = ticks;
        self.changed(io);
    }

    fn changed(&mut self, io: &mut impl Io<Delivery>) {
        self.own.version += 1;
        self.frame = encode(&self.own);
        let targets: Vec<Uuid> = self
            .peers
            .iter()
            .filter(|(_, r)| r.caps.has(envelope::Layer::CONTROL))
            .map(|(u, _)| *u)
            .collect();
        for peer in targets {
            self.send_state(peer, io);
        }
    }

    fn send_state(&mut self, peer: Uuid, io: &mut impl Io<Delivery>) {
        self.stats.states_sent += 1;
        io.send(peer, self.frame.clone());
    }

    fn on_state(&mut self, from: Uuid, env: Envelope, io: &mut impl Io<Delivery>) {
        let Some(record) = self.peers.get_mut(&from) else {
            self.malformed(from, "STATE from a peer that is not up".into());
            return;
        };
        let state = match State::decode(&env.payload) {
            Ok(s) => s,
            Err(e) => {
                self.malformed(from, format!("bad STATE: {e}"));
                return;
            }
        };
        let before = record.state.take();
        let stale = before.as_ref().is_some_and(|b| b.version >= state.version);
        if stale {
            record.state = before;
            self.stats.stale_states += 1;
            debug!(peer = %from, "stale STATE ignored");
            return;
        }
        self.stats.states_received += 1;
        let delivery = match &before {
            None => Some(Delivery::PeerJoined {
                peer: from,
                options: state.options.clone(),
            }),
            Some(b) if b.options != state.options => Some(Delivery::OptionsChanged {
                peer: from,
                options: state.options.clone(),
            }),
            Some(_) => None,
        };
        record.state = Some(state);
        if let Some(d) = delivery {
            io.deliver(d);
        }
    }

    fn malformed(&mut self, from: Uuid, why: String) {
        self.stats.malformed += 1;
        debug!(peer = %from, why, "malformed control envelope dropped");
    }

    /// Forgets every peer (the node stops); nothing is sent or delivered.
    pub fn stop(&mut self) {
        self.peers.clear();
    }
}

fn check_options(options: &Options) -> Result<(), OptionError> {
    if options.len() > wire::MAX_OPTIONS {
        return Err(StateError::TooMany(wire::MAX_OPTIONS, "options"));
    }
    for (k, v) in options {
        wire::validate_key(k)?;
        wire::validate_value(v)?;
    }
    Ok(())
}

fn encode(state: &State) -> Bytes {
    // The version names the message: unique per node within this layer.
    let mut env = Envelope::new(envelope::Layer::CONTROL, wire::STATE, state.version);
    env.payload = state.encode();
    env.encode().expect("a STATE envelope has no subject")
}

impl Layer for Control {
    const ID: envelope::Layer = envelope::Layer::CONTROL;
    type Command = Command;
    type Delivery = Delivery;

    fn handle(&mut self, input: Input<'_, Command>, _now: Instant, io: &mut impl Io<Delivery>) {
        match input {
            Input::PeerUp(view) => {
                self.peers.insert(
                    view.peer,
                    PeerRecord {
                        name: view.name.to_owned(),
                        headers: view.headers.to_vec(),
                        caps: view.caps,
                        groups: BTreeSet::new(),
                        state: None,
                    },
                );
                if view.caps.has(envelope::Layer::CONTROL) {
                    self.send_state(view.peer, io);
                }
            }
            Input::PeerDown { peer } => {
                if self.peers.remove(&peer).is_some_and(|r| r.is_joined()) {
                    io.deliver(Delivery::PeerLeft { peer });
                }
            }
            Input::Joined { peer, group } => {
                if let Some(r) = self.peers.get_mut(&peer) {
                    r.groups.insert(group.to_owned());
                }
            }
            Input::Left { peer, group } => {
                if let Some(r) = self.peers.get_mut(&peer) {
                    r.groups.remove(group);
                }
            }
            Input::Envelope { from, envelope, .. } => match envelope.kind {
                wire::STATE => self.on_state(from, envelope, io),
                k => self.malformed(from, format!("unknown control kind {k}")),
            },
            Input::Timeout => {}
            Input::Command(Command::SetOption { key, value }) => {
                let _ = self.set_option(&key, &value, io);
            }
            Input::Command(Command::RemoveOption(key)) => {
                self.remove_option(&key, io);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
