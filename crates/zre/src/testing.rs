//! The engine's output contract, checked: one model of what a correct output stream looks like,
//! shared by the engine's tests, the fuzz harness and the simulator (feature `testing`).
//!
//! The shell trusts the engine's outputs blindly (it queues frames, opens and closes outboxes,
//! delivers events), so the rules below are what every shell relies on. Writing them once here
//! means the three places that drive an engine check the same thing:
//!
//! * `Connect` only for a peer without an open outbox, never to ourselves, never to an empty
//!   endpoint, with the peer's key exactly when we are in secure mode; `Send` and `Disconnect`
//!   only for a peer with one;
//! * every `Send` decodes; on each outbox the sequence numbers run 1, 2, 3, ... (wrapping after
//!   65534 to 65535 or 0, as [`crate::sequence`] allows, to a zmesh peer only to 65535), the
//!   first message and only the first is our HELLO, carrying our current endpoint, name, groups
//!   and status and the `X-ZMESH` header;
//! * JOIN and LEAVE carry exactly the previous status + 1 on that outbox; GOODBYE, ELECT and
//!   LEADER only to peers whose HELLO advertised `X-ZMESH`, and GOODBYE only while stopping;
//! * events: ENTER only for a peer with an outbox that has not entered; EXIT, JOIN, LEAVE,
//!   WHISPER, SHOUT, EVASIVE, SILENT only for entered peers; JOIN only for a group the peer is
//!   not in, LEAVE only for one it is in; STOP last, with every outbox closed;
//! * the queries agree with the event stream ([`Contract::check_queries`]).
//!
//! Every check returns a description of the first violation instead of panicking, so the
//! simulator can print its seed and trace; tests and fuzzers unwrap it.

use std::collections::BTreeMap;

use bytes::Bytes;
use uuid::Uuid;

use crate::engine::{Engine, Event, Output};
use crate::msg::ZreMessage;
use crate::peer::ZMESH_HEADER;

/// What our HELLO must say, read from the engine before its outputs are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnFacts {
    /// Our UUID.
    pub uuid: Uuid,
    /// Our name.
    pub name: String,
    /// Our advertised endpoint.
    pub endpoint: String,
    /// Our groups, in join order.
    pub groups: Vec<String>,
    /// Our status counter.
    pub status: u8,
    /// Secure mode (we have a CURVE key): every `Connect` must carry the peer's key.
    pub secure: bool,
}

impl OwnFacts {
    /// The facts as the engine holds them now.
    pub fn of(engine: &Engine) -> OwnFacts {
        OwnFacts {
            uuid: engine.uuid(),
            name: engine.name().to_owned(),
            endpoint: engine.endpoint().to_owned(),
            groups: engine.own_groups(),
            status: engine.status(),
            secure: engine.is_secure(),
        }
    }
}

#[derive(Debug, Default)]
struct OutboxModel {
    last_seq: u16,
    sent_any: bool,
    /// The status our last JOIN/LEAVE (or HELLO) on this outbox carried.
    status: Option<u8>,
}

/// The model of one engine's output stream (module documentation).
#[derive(Debug, Default)]
pub struct Contract {
    own: OwnFacts,
    outboxes: BTreeMap<Uuid, OutboxModel>,
    /// Entered peers → their HELLO headers.
    entered: BTreeMap<Uuid, Vec<(String, String)>>,
    /// Group → members in the order their JOIN events arrived.
    groups: BTreeMap<String, Vec<Uuid>>,
    stopping: bool,
    stopped: bool,
}

impl Contract {
    /// A model for an engine with no peers.
    pub fn new(own: OwnFacts) -> Contract {
        Contract {
            own,
            ..Contract::default()
        }
    }

    /// Updates what our HELLO must say (call before draining outputs of a call that may have
    /// changed it: a join, a leave, a new endpoint).
    pub fn sync(&mut self, engine: &Engine) {
        self.own = OwnFacts::of(engine);
    }

    /// Declares that a polite stop is under way (GOODBYE becomes legal).
    pub fn stopping(&mut self) {
        self.stopping = true;
    }

    /// The HELLO headers of an entered peer.
    pub fn headers_of(&self, peer: &Uuid) -> Option<&[(String, String)]> {
        self.entered.get(peer).map(Vec::as_slice)
    }

    /// Peers with an open outbox.
    pub fn connected(&self) -> impl Iterator<Item = &Uuid> {
        self.outboxes.keys()
    }

    /// Checks one engine output.
    pub fn output(&mut self, out: &Output) -> Result<(), String> {
        match out {
            Output::Connect {
                peer,
                endpoint,
                public_key,
            } => self.connect(*peer, endpoint, public_key.as_ref()),
            Output::Send { peer, frames } => self.send(*peer, frames).map(|_| ()),
            Output::Disconnect { peer } => self.disconnect(*peer),
            Output::Event(e) => self.event(e),
        }
    }

    /// Checks a `Connect` (with the server key it carries).
    pub fn connect(
        &mut self,
        peer: Uuid,
        endpoint: &str,
        public_key: Option<&[u8; 32]>,
    ) -> Result<(), String> {
        if peer == self.own.uuid {
            return Err("Connect to ourselves".into());
        }
        if public_key.is_some() != self.own.secure {
            return Err(format!(
                "Connect to {peer} with key {:?} while secure mode is {}",
                public_key.is_some(),
                self.own.secure
            ));
        }
        if endpoint.is_empty() {
            return Err(format!("Connect to {peer} without endpoint"));
        }
        if self.outboxes.insert(peer, OutboxModel::default()).is_some() {
            return Err(format!("Connect for {peer}, which already has an outbox"));
        }
        Ok(())
    }

    /// Checks a `Send`; returns the decoded message.
    pub fn send(&mut self, peer: Uuid, frames: &[Bytes]) -> Result<ZreMessage, String> {
        let Some(ob) = self.outboxes.get_mut(&peer) else {
            return Err(format!("Send to {peer} without an outbox"));
        };
        let (seq, msg) = ZreMessage::decode(frames)
            .map_err(|e| format!("undecodable frames sent to {peer}: {e}"))?;
        let zmesh_peer = self
            .entered
            .get(&peer)
            .is_some_and(|h| h.iter().any(|(k, _)| k == ZMESH_HEADER));
        let in_turn = match crate::sequence::step(ob.last_seq, seq) {
            crate::sequence::Step::Next => true,
            crate::sequence::Step::Shows(w) => !zmesh_peer || w == crate::sequence::SeqWrap::U16,
            crate::sequence::Step::Gap => false,
        };
        if !in_turn {
            return Err(format!(
                "sequence {seq} after {} on the outbox to {peer}",
                ob.last_seq
            ));
        }
        let is_hello = matches!(msg, ZreMessage::Hello { .. });
        if is_hello == ob.sent_any {
            return Err(format!(
                "{} as message {seq} to {peer}: HELLO must be first and only first",
                msg.name()
            ));
        }
        ob.last_seq = seq;
        ob.sent_any = true;
        let extensions = self
            .entered
            .get(&peer)
            .is_some_and(|h| h.iter().any(|(k, _)| k == ZMESH_HEADER));
        match &msg {
            ZreMessage::Hello {
                endpoint,
                groups,
                status,
                name,
                headers,
            } => {
                let own = &self.own;
                if endpoint != &own.endpoint
                    || groups != &own.groups
                    || *status != own.status
                    || name != &own.name
                {
                    return Err(format!(
                        "HELLO to {peer} says ({endpoint}, {name}, {groups:?}, {status}), we are \
                         ({}, {}, {:?}, {})",
                        own.endpoint, own.name, own.groups, own.status
                    ));
                }
                if !headers.iter().any(|(k, _)| k == ZMESH_HEADER) {
                    return Err("HELLO without X-ZMESH".into());
                }
                ob.status = Some(*status);
            }
            ZreMessage::Join { status, .. } | ZreMessage::Leave { status, .. } => {
                let want = ob.status.map(|s| s.wrapping_add(1));
                if want.is_some_and(|w| w != *status) {
                    return Err(format!(
                        "{} to {peer} with status {status}, want {want:?}",
                        msg.name()
                    ));
                }
                ob.status = Some(*status);
            }
            ZreMessage::Goodbye if !self.stopping => {
                return Err(format!("GOODBYE to {peer} outside stop"));
            }
            ZreMessage::Goodbye | ZreMessage::Elect { .. } | ZreMessage::Leader { .. }
                if !extensions =>
            {
                return Err(format!(
                    "{} to {peer}, which did not advertise X-ZMESH",
                    msg.name()
                ));
            }
            _ => {}
        }
        Ok(msg)
    }

    /// Checks a `Disconnect`.
    pub fn disconnect(&mut self, peer: Uuid) -> Result<(), String> {
        match self.outboxes.remove(&peer) {
            Some(_) => Ok(()),
            None => Err(format!("Disconnect for {peer} without an outbox")),
        }
    }

    /// Checks an application event.
    pub fn event(&mut self, e: &Event) -> Result<(), String> {
        if self.stopped {
            return Err(format!("event after STOP: {e:?}"));
        }
        let need_entered = |s: &Contract, p: &Uuid, what: &str| {
            if s.entered.contains_key(p) {
                Ok(())
            } else {
                Err(format!("{what} for {p}, which has not entered"))
            }
        };
        match e {
            Event::Enter { peer, headers, .. } => {
                if !self.outboxes.contains_key(peer) {
                    return Err(format!("ENTER of {peer} without an outbox"));
                }
                if self.entered.insert(*peer, headers.clone()).is_some() {
                    return Err(format!("ENTER twice for {peer}"));
                }
            }
            Event::Exit { peer, .. } => {
                if self.entered.remove(peer).is_none() {
                    return Err(format!("EXIT for {peer}, which has not entered"));
                }
                for members in self.groups.values_mut() {
                    members.retain(|m| m != peer);
                }
                self.groups.retain(|_, m| !m.is_empty());
            }
            Event::Join { peer, group, .. } => {
                need_entered(self, peer, "JOIN")?;
                let members = self.groups.entry(group.clone()).or_default();
                if members.contains(peer) {
                    return Err(format!("JOIN of {group:?} for {peer}, already a member"));
                }
                members.push(*peer);
            }
            Event::Leave { peer, group, .. } => {
                need_entered(self, peer, "LEAVE")?;
                let pos = self
                    .groups
                    .get(group)
                    .and_then(|m| m.iter().position(|x| x == peer));
                let Some(pos) = pos else {
                    return Err(format!("LEAVE of {group:?} for {peer}, not a member"));
                };
                let members = self.groups.get_mut(group).expect("found above");
                members.remove(pos);
                if members.is_empty() {
                    self.groups.remove(group);
                }
            }
            Event::Whisper { peer, .. } => need_entered(self, peer, "WHISPER")?,
            Event::Shout { peer, .. } => need_entered(self, peer, "SHOUT")?,
            Event::Evasive { peer, .. } => need_entered(self, peer, "EVASIVE")?,
            Event::Silent { peer, .. } => need_entered(self, peer, "SILENT")?,
            Event::Stop { uuid, .. } => {
                if *uuid != self.own.uuid {
                    return Err(format!("STOP names {uuid}, not us"));
                }
                if !self.outboxes.is_empty() {
                    return Err(format!("{} outboxes open at STOP", self.outboxes.len()));
                }
                self.stopped = true;
                self.entered.clear();
                self.groups.clear();
            }
        }
        Ok(())
    }

    /// The engine's queries must agree with the event stream seen so far.
    pub fn check_queries(&self, engine: &Engine) -> Result<(), String> {
        let entered: Vec<Uuid> = self.entered.keys().copied().collect();
        if engine.peers() != entered {
            return Err(format!(
                "peers() = {:?}, events say {entered:?}",
                engine.peers()
            ));
        }
        if engine.is_stopped() != self.stopped {
            return Err("is_stopped() disagrees with STOP".into());
        }
        let names: Vec<String> = self.groups.keys().cloned().collect();
        if engine.peer_groups() != names {
            return Err(format!(
                "peer_groups() = {:?}, events say {names:?}",
                engine.peer_groups()
            ));
        }
        for (g, members) in &self.groups {
            if &engine.peers_by_group(g) != members {
                return Err(format!(
                    "peers_by_group({g:?}) = {:?}, events say {members:?}",
                    engine.peers_by_group(g)
                ));
            }
        }
        for p in &entered {
            let Some(info) = engine.peer(*p) else {
                return Err(format!("entered peer {p} has no info"));
            };
            let mut mine: Vec<&String> = self
                .groups
                .iter()
                .filter(|(_, m)| m.contains(p))
                .map(|(g, _)| g)
                .collect();
            let mut theirs: Vec<&String> = info.groups.iter().collect();
            mine.sort();
            theirs.sort();
            if !info.ready || mine != theirs {
                return Err(format!("peer({p}) = {info:?}, events say groups {mine:?}"));
            }
        }
        if self.stopped && (engine.poll_timeout().is_some() || !engine.peers().is_empty()) {
            return Err("a stopped engine still has peers or timers".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::engine::Config;

    /// The contract catches what it claims to: a send without outbox, a sequence gap, a second
    /// HELLO, an event for a peer that never entered.
    #[test]
    fn violations_are_caught() {
        let engine = Engine::new(
            Config {
                endpoint: "tcp://127.0.0.1:1".into(),
                ..Config::new(Uuid::from_u128(1), "me")
            },
            Instant::now(),
        );
        let mut c = Contract::new(OwnFacts::of(&engine));
        let p = Uuid::from_u128(2);
        let hello = |seq| {
            ZreMessage::Hello {
                endpoint: "tcp://127.0.0.1:1".into(),
                groups: vec![],
                status: 0,
                name: "me".into(),
                headers: vec![(ZMESH_HEADER.into(), "1".into())],
            }
            .encode(seq)
            .unwrap()
        };
        assert!(c.send(p, &hello(1)).is_err(), "send without outbox");
        assert!(
            c.connect(p, "tcp://127.0.0.1:2", Some(&[1; 32])).is_err(),
            "keyed connect in plain mode"
        );
        c.connect(p, "tcp://127.0.0.1:2", None).unwrap();
        assert!(
            c.connect(p, "tcp://127.0.0.1:2", None).is_err(),
            "double connect"
        );
        c.send(p, &hello(1)).unwrap();
        assert!(c.send(p, &hello(2)).is_err(), "second HELLO");
        let ping = |seq| ZreMessage::Ping.encode(seq).unwrap();
        assert!(c.send(p, &ping(4)).is_err(), "gap");
        let whisper = Event::Whisper {
            peer: p,
            name: "p".into(),
            content: vec![].into(),
        };
        assert!(c.event(&whisper).is_err(), "whisper before enter");
        c.disconnect(p).unwrap();
        assert!(c.disconnect(p).is_err(), "double disconnect");
        c.check_queries(&engine).unwrap();
    }
}
