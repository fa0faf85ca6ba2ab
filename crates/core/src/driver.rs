//! The driver: the ZRE engine and every layer above it, composed, with the rules for carrying
//! their outputs out, and nothing that does I/O.
//!
//! The async node and the simulator both own one [`Driver`] and call the same methods, so the
//! output contract (what reaches the transport, in which order, what a refused send does, how a
//! stop drains) is written once, here, and the simulator runs it instead of re-modelling it:
//!
//! * Inputs go to the [`Engine`] (`driver.engine()`), commands to a layer (`driver.reqrep(..)`),
//!   timer expiries to [`Driver::handle_timeout`]; then the shell calls [`Driver::flush`].
//! * [`Driver::flush`] drains the engine's outputs into a [`Transport`] (the shell's outboxes:
//!   connect, send, disconnect) and its events into the layers and a [`Sink`]: ENTER, EXIT, JOIN
//!   and LEAVE reach every layer (before the application), a WHISPER/SHOUT whose single frame is
//!   an envelope from a peer that announced layers goes to the layer named in it (never to the
//!   application's lossy event queue), everything else goes to [`Sink::event`]. Layer frames go
//!   back into the engine as WHISPERs, or as SHOUTs to the group members that announced the
//!   layer (plain members are skipped); a send the transport refuses is reported to the engine
//!   ([`Engine::handle_send_failed`], which drops the peer as ZRE does). The loop runs until
//!   nothing is left.
//! * [`Driver::poll_timeout`] is the earliest deadline of the engine and every layer.
//! * [`Driver::stop`] ends the layers first (pending requests end with `Stopped`), then stops the
//!   engine (GOODBYEs, disconnects, STOP) and flushes: a shell that keeps disconnected outboxes
//!   open for a short linger delivers the GOODBYEs.
//!
//! Envelopes are recognised only from peers whose HELLO announced `X-ZMESH-CAPS`: bytes from a
//! plain ZRE peer are that peer's application data even if they happen to look like an envelope.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use tracing::debug;
use uuid::Uuid;
use zmesh_zre::{Config as EngineConfig, Engine, EngineError, Event, Frames, Output};

use crate::caps::{Caps, CAPS_HEADER};
use crate::envelope::{self, Envelope};
use crate::layer::{Input, Layer, PeerView, Recorded};
use crate::reqrep::{self, ReqRep};

/// The shell's per-peer outboxes, as the driver sees them.
pub trait Transport {
    /// Creates the outbox for `peer` (DEALER to `endpoint`; in secure mode a CURVE client with
    /// `public_key` as the server key). `false`: it could not be created (reported to the engine
    /// as a failed send).
    fn connect(&mut self, peer: Uuid, endpoint: &str, public_key: Option<&[u8; 32]>) -> bool;
    /// Queues one ZRE message on the peer's outbox. `false`: refused (full or closed).
    fn send(&mut self, peer: Uuid, frames: Frames) -> bool;
    /// Drops the peer's outbox (a stopping shell may keep it open for a linger first).
    fn disconnect(&mut self, peer: Uuid);
}

/// Where the driver hands what is for the application.
pub trait Sink<W> {
    /// A ZRE event for the application (its event queue).
    fn event(&mut self, event: Event);
    /// Something from the request/reply layer.
    fn reqrep(&mut self, delivery: reqrep::Delivery<W>);
}

/// Counters of the driver's own (all start at 0).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames that looked like envelopes from a zmesh peer but did not decode.
    pub bad_envelopes: u64,
    /// Envelopes for a layer this node does not run.
    pub unknown_layer: u64,
    /// Layer frames the engine refused (the peer had just gone, or an invalid group).
    pub layer_sends_dropped: u64,
}

/// Everything a node is, without I/O: the ZRE engine and the layers.
#[derive(Debug)]
pub struct Driver<W> {
    engine: Engine,
    reqrep: ReqRep<W>,
    /// Announced capabilities of the peers that entered (plain peers: [`Caps::NONE`]).
    caps: HashMap<Uuid, Caps>,
    out: Recorded<reqrep::Delivery<W>>,
    stats: Stats,
}

/// The capabilities this build of the driver announces.
pub fn own_caps() -> Caps {
    Caps::NONE.with(envelope::Layer::REQREP)
}

impl<W> Driver<W> {
    /// A driver for an engine with `config` (its HELLO gains `X-ZMESH-CAPS`) and the layers'
    /// configurations.
    pub fn new(
        mut config: EngineConfig,
        reqrep: reqrep::Config,
        now: Instant,
    ) -> Result<Driver<W>, EngineError> {
        config.headers.retain(|(k, _)| k != CAPS_HEADER);
        config
            .headers
            .push((CAPS_HEADER.to_owned(), own_caps().header_value()));
        Ok(Driver {
            engine: Engine::try_new(config, now)?,
            reqrep: ReqRep::new(reqrep),
            caps: HashMap::new(),
            out: Recorded::default(),
            stats: Stats::default(),
        })
    }

    /// The ZRE engine, for inputs (sightings, messages, send failures) and queries.
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The ZRE engine, for queries.
    pub fn engine_ref(&self) -> &Engine {
        &self.engine
    }

    /// Runs `f` on the request/reply layer with the driver's output buffer; call
    /// [`Driver::flush`] afterwards.
    pub fn reqrep<R>(
        &mut self,
        f: impl FnOnce(&mut ReqRep<W>, &mut Recorded<reqrep::Delivery<W>>) -> R,
    ) -> R {
        f(&mut self.reqrep, &mut self.out)
    }

    /// The request/reply layer, for queries.
    pub fn reqrep_ref(&self) -> &ReqRep<W> {
        &self.reqrep
    }

    /// The driver's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The earliest instant the engine or a layer needs [`Driver::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.engine.poll_timeout(), self.reqrep.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs whatever timers are due at `now` (harmless if none is); then [`Driver::flush`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        if self.reqrep.poll_timeout().is_some_and(|t| t <= now) {
            self.reqrep.handle(Input::Timeout, now, &mut self.out);
        }
    }

    /// Carries every pending output out (module docs). Returns the peers whose outbox refused a
    /// message (the engine has dropped them).
    pub fn flush(
        &mut self,
        now: Instant,
        transport: &mut impl Transport,
        sink: &mut impl Sink<W>,
    ) -> Vec<Uuid> {
        self.flush_with(&mut || now, transport, sink)
    }

    /// [`Driver::flush`] with the clock read only if something needs the time (an event for a
    /// layer, a refused send): a WHISPER's flush then reads no clock at all.
    pub fn flush_with(
        &mut self,
        clock: &mut dyn FnMut() -> Instant,
        transport: &mut impl Transport,
        sink: &mut impl Sink<W>,
    ) -> Vec<Uuid> {
        let mut cached = None;
        let mut now = || *cached.get_or_insert_with(&mut *clock);
        let mut failed = Vec::new();
        loop {
            let mut new_failures = Vec::new();
            while let Some(output) = self.engine.poll_output() {
                match output {
                    Output::Connect {
                        peer,
                        endpoint,
                        public_key,
                    } => {
                        if !transport.connect(peer, &endpoint, public_key.as_ref()) {
                            new_failures.push(peer);
                        }
                    }
                    Output::Send { peer, frames } => {
                        if !transport.send(peer, frames) {
                            new_failures.push(peer);
                        }
                    }
                    Output::Disconnect { peer } => transport.disconnect(peer),
                    Output::Event(event) => self.route(&mut now, event, sink),
                }
            }
            for d in self.out.delivered.drain(..) {
                sink.reqrep(d);
            }
            if self.out.sent.is_empty() && self.out.shouted.is_empty() && new_failures.is_empty() {
                break;
            }
            for (peer, frame) in std::mem::take(&mut self.out.sent) {
                if self.engine.whisper(peer, vec![frame]).is_err() {
                    self.stats.layer_sends_dropped += 1;
                }
            }
            for (group, frame) in std::mem::take(&mut self.out.shouted) {
                // Only to the members that announced the layer (byte 4 of the envelope).
                let layer = envelope::Layer(frame.get(4).copied().unwrap_or(0));
                let caps = &self.caps;
                let keep = |p: &Uuid| caps.get(p).is_some_and(|c| c.has(layer));
                if self.engine.shout_to(&group, vec![frame], keep).is_err() {
                    self.stats.layer_sends_dropped += 1;
                }
            }
            for peer in &new_failures {
                self.engine.handle_send_failed(now(), *peer);
            }
            failed.extend(new_failures);
        }
        failed
    }

    /// Stops politely: layers end what they hold, then the engine says GOODBYE and disconnects;
    /// everything is flushed. Idempotent.
    pub fn stop(&mut self, now: Instant, transport: &mut impl Transport, sink: &mut impl Sink<W>) {
        if self.engine.is_stopped() {
            return;
        }
        self.reqrep.stop(&mut self.out);
        self.caps.clear();
        self.engine.stop(now);
        self.flush(now, transport, sink);
    }

    fn route(&mut self, now: &mut impl FnMut() -> Instant, event: Event, sink: &mut impl Sink<W>) {
        match &event {
            // The hot path: application data touches no layer and reads no clock.
            Event::Whisper { content, .. } | Event::Shout { content, .. }
                if !(content.len() == 1 && envelope::is_envelope(&content[0])) =>
            {
                sink.event(event);
                return;
            }
            Event::Enter {
                peer,
                name,
                headers,
                ..
            } => {
                let caps = Caps::from_headers(headers.iter().map(|(k, v)| (&**k, &**v)));
                if headers.iter().any(|(k, _)| k == CAPS_HEADER) {
                    self.caps.insert(*peer, caps);
                }
                let view = PeerView {
                    peer: *peer,
                    name,
                    headers,
                    caps,
                };
                self.reqrep
                    .handle(Input::PeerUp(view), now(), &mut self.out);
            }
            Event::Exit { peer, .. } => {
                self.caps.remove(peer);
                self.reqrep
                    .handle(Input::PeerDown { peer: *peer }, now(), &mut self.out);
            }
            Event::Join { peer, group, .. } => {
                let input = Input::Joined { peer: *peer, group };
                self.reqrep.handle(input, now(), &mut self.out);
            }
            Event::Leave { peer, group, .. } => {
                let input = Input::Left { peer: *peer, group };
                self.reqrep.handle(input, now(), &mut self.out);
            }
            Event::Whisper { peer, content, .. } | Event::Shout { peer, content, .. }
                if content.len() == 1
                    && envelope::is_envelope(&content[0])
                    && self.caps.contains_key(peer) =>
            {
                let group = match &event {
                    Event::Shout { group, .. } => Some(group.as_str()),
                    _ => None,
                };
                self.envelope(now(), *peer, group, &content[0]);
                return;
            }
            _ => {}
        }
        sink.event(event);
    }

    fn envelope(&mut self, now: Instant, from: Uuid, group: Option<&str>, frame: &Bytes) {
        let env = match Envelope::decode(frame) {
            Ok(env) => env,
            Err(e) => {
                self.stats.bad_envelopes += 1;
                debug!(peer = %from, error = %e, "bad envelope dropped");
                return;
            }
        };
        let input = Input::Envelope {
            from,
            group,
            envelope: env,
        };
        match input {
            Input::Envelope { ref envelope, .. } if envelope.layer == ReqRep::<W>::ID => {
                self.reqrep.handle(input, now, &mut self.out)
            }
            _ => {
                self.stats.unknown_layer += 1;
                debug!(peer = %from, "envelope for a layer we do not run dropped");
            }
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
