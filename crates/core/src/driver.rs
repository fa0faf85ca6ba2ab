//! The driver: the ZRE engine and every layer above it, composed, with the rules for carrying
//! their outputs out, and nothing that does I/O.
//!
//! The async node and the simulator both own one [`Driver`] and call the same methods, so the
//! output contract (what reaches the transport, in which order, what a refused send does, how a
//! stop drains) is written once, here, and the simulator runs it instead of re-modelling it:
//!
//! * Inputs go to the [`Engine`] (`driver.engine()`), commands to a layer (`driver.reqrep(..)`,
//!   `driver.control(..)`) or to routing (`driver.request_any(..)` and friends, module
//!   `routes`), timer expiries to [`Driver::handle_timeout`]; then the shell calls
//!   [`Driver::flush`].
//! * The layers it runs — [`Control`] (options, handler advertisement, peer directory),
//!   [`ReqRep`] (requests, ticks, gathers), [`Emitter`] (events) and [`Services`] (named
//!   services, calls with retries, brokers) — each sit in one slot ([`Hosted`]: the layer and
//!   its output buffer). Peer and group events reach every slot; an envelope reaches the slot
//!   whose layer byte it carries; the earliest deadline is the minimum over the engine and the
//!   slots. Adding a layer is adding a slot (`Driver::slots`) and a [`Sink`] method. The
//!   request handlers registered on [`ReqRep`] are advertised through [`Control`] at every
//!   flush that finds them changed.
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
use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use tracing::debug;
use uuid::Uuid;
use zmesh_zre::{Config as EngineConfig, Engine, EngineError, Event, Frames, Output};

use crate::caps::{Caps, CAPS_HEADER};
use crate::control::{self, Control, Options};
use crate::envelope::{self, Envelope};
use crate::events::{self, Emitter};
use crate::layer::{Input, Layer, PeerView, Recorded};
use crate::reqrep::{self, HandlerKind, ReqRep};
use crate::routing::Router;
use crate::services::{self, Services};

mod routes;

pub use routes::Routed;

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
    /// A peer event from the control layer.
    fn control(&mut self, delivery: control::Delivery);
    /// Something from the event emitter.
    fn events(&mut self, delivery: events::Delivery);
    /// Something from the services layer (its calls' waiters are tokens the shell chose).
    fn services(&mut self, delivery: services::Delivery<u64>);
}

/// The configuration of the layers a driver runs.
#[derive(Debug, Clone, Default)]
pub struct LayerConfig {
    /// Request/reply limits.
    pub reqrep: reqrep::Config,
    /// The node's options at start ([`Control::new`]).
    pub options: Options,
    /// Event emitter limits and credit window.
    pub events: events::Config,
    /// Services: call limits, backoff, reply cache, broker role.
    pub services: services::Config,
}

impl From<reqrep::Config> for LayerConfig {
    fn from(reqrep: reqrep::Config) -> LayerConfig {
        LayerConfig {
            reqrep,
            ..LayerConfig::default()
        }
    }
}

/// Why a driver cannot be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The engine refused its configuration.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An initial option is not valid.
    #[error("invalid option: {0}")]
    Option(#[from] control::OptionError),
}

/// One layer and its output buffer.
#[derive(Debug)]
pub struct Hosted<L: Layer> {
    layer: L,
    out: Recorded<L::Delivery>,
}

impl<L: Layer> Hosted<L> {
    fn new(layer: L) -> Hosted<L> {
        Hosted {
            layer,
            out: Recorded::default(),
        }
    }
}

/// What the driver does with every slot alike (object-safe: the slots differ in types).
/// A slot's frames to send: to peers, to groups.
type SlotFrames<'a> = (&'a mut Vec<(Uuid, Bytes)>, &'a mut Vec<(String, Bytes)>);

trait Slot {
    fn id(&self) -> envelope::Layer;
    fn input(&mut self, input: Input<'_, Infallible>, now: Instant);
    fn deadline(&self) -> Option<Instant>;
    fn frames(&mut self) -> SlotFrames<'_>;
}

impl<L: Layer> Slot for Hosted<L> {
    fn id(&self) -> envelope::Layer {
        L::ID
    }
    fn input(&mut self, input: Input<'_, Infallible>, now: Instant) {
        self.layer.handle(input.widen(), now, &mut self.out);
    }
    fn deadline(&self) -> Option<Instant> {
        self.layer.poll_timeout()
    }
    fn frames(&mut self) -> SlotFrames<'_> {
        (&mut self.out.sent, &mut self.out.shouted)
    }
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
    control: Hosted<Control>,
    reqrep: Hosted<ReqRep<W>>,
    events: Hosted<Emitter>,
    services: Hosted<Services<u64>>,
    /// Announced capabilities of the peers that entered (plain peers: [`Caps::NONE`]).
    caps: HashMap<Uuid, Caps>,
    router: Router,
    /// The [`ReqRep::handlers_generation`] the control layer advertises.
    advertised: u64,
    stats: Stats,
}

/// The capabilities this build of the driver announces.
pub fn own_caps() -> Caps {
    Caps::NONE
        .with(envelope::Layer::CONTROL)
        .with(envelope::Layer::REQREP)
        .with(envelope::Layer::EVENTS)
        .with(envelope::Layer::SERVICES)
}

impl<W> Driver<W> {
    /// A driver for an engine with `config` (its HELLO gains `X-ZMESH-CAPS`) and the layers'
    /// configurations.
    pub fn new(
        mut config: EngineConfig,
        layers: impl Into<LayerConfig>,
        now: Instant,
    ) -> Result<Driver<W>, DriverError> {
        let layers = layers.into();
        config.headers.retain(|(k, _)| k != CAPS_HEADER);
        config
            .headers
            .push((CAPS_HEADER.to_owned(), own_caps().header_value()));
        Ok(Driver {
            engine: Engine::try_new(config, now)?,
            control: Hosted::new(Control::new(layers.options)?),
            reqrep: Hosted::new(ReqRep::new(layers.reqrep)),
            events: Hosted::new(Emitter::new(layers.events)),
            services: Hosted::new(Services::new(layers.services)),
            caps: HashMap::new(),
            router: Router::default(),
            advertised: 0,
            stats: Stats::default(),
        })
    }

    /// Every slot, for what the driver does to all layers alike.
    fn slots(&mut self) -> [&mut dyn Slot; 4] {
        [
            &mut self.control,
            &mut self.reqrep,
            &mut self.events,
            &mut self.services,
        ]
    }

    /// The ZRE engine, for inputs (sightings, messages, send failures) and queries.
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// One message from the inbox ([`Engine::handle_message_with_key`]), with application data
    /// (a WHISPER or SHOUT that is not layer traffic) handed to `app` at once when nothing is
    /// pending ahead of it, instead of passing through the engine's outputs and
    /// [`Driver::flush`] to [`Sink::event`]: `app` must do what the sink's `event` does. Every
    /// other event and output waits for the flush, as with the engine's own method, and order
    /// is kept: an event is only handed over directly while no output is pending.
    pub fn handle_message_with(
        &mut self,
        now: Instant,
        identity: &[u8],
        frames: Frames,
        conn_key: Option<[u8; 32]>,
        app: impl FnOnce(Event),
    ) {
        self.engine
            .handle_message_with(now, identity, frames, conn_key, offer_app_data(app));
    }

    /// [`Driver::handle_message_with`] for a two-frame message given as its first frame
    /// (borrowed) and its second ([`Engine::handle_message_parts_with`]).
    pub fn handle_message_parts_with(
        &mut self,
        now: Instant,
        identity: &[u8],
        first: &[u8],
        body: Bytes,
        conn_key: Option<[u8; 32]>,
        app: impl FnOnce(Event),
    ) {
        self.engine.handle_message_parts_with(
            now,
            identity,
            first,
            body,
            conn_key,
            offer_app_data(app),
        );
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
        f(&mut self.reqrep.layer, &mut self.reqrep.out)
    }

    /// The request/reply layer, for queries.
    pub fn reqrep_ref(&self) -> &ReqRep<W> {
        &self.reqrep.layer
    }

    /// Runs `f` on the control layer (options) with its output buffer; call [`Driver::flush`]
    /// afterwards.
    pub fn control<R>(
        &mut self,
        f: impl FnOnce(&mut Control, &mut Recorded<control::Delivery>) -> R,
    ) -> R {
        f(&mut self.control.layer, &mut self.control.out)
    }

    /// Runs `f` on the event emitter with its output buffer; call [`Driver::flush`] afterwards.
    pub fn events<R>(
        &mut self,
        f: impl FnOnce(&mut Emitter, &mut Recorded<events::Delivery>) -> R,
    ) -> R {
        f(&mut self.events.layer, &mut self.events.out)
    }

    /// The event emitter, for queries.
    pub fn events_ref(&self) -> &Emitter {
        &self.events.layer
    }

    /// Runs `f` on the services layer with its output buffer; call [`Driver::flush`]
    /// afterwards.
    pub fn services<R>(
        &mut self,
        f: impl FnOnce(&mut Services<u64>, &mut Recorded<services::Delivery<u64>>) -> R,
    ) -> R {
        f(&mut self.services.layer, &mut self.services.out)
    }

    /// The services layer, for queries.
    pub fn services_ref(&self) -> &Services<u64> {
        &self.services.layer
    }

    /// The control layer (the peer directory), for queries.
    pub fn control_ref(&self) -> &Control {
        &self.control.layer
    }

    /// The earliest deadline of the layers alone (a command can move only these earlier).
    pub fn layers_poll_timeout(&self) -> Option<Instant> {
        [
            self.control.deadline(),
            self.reqrep.deadline(),
            self.events.deadline(),
            self.services.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The driver's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The earliest instant the engine or a layer needs [`Driver::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.engine.poll_timeout(), self.layers_poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs whatever timers are due at `now` (harmless if none is); then [`Driver::flush`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        for slot in self.slots() {
            if slot.deadline().is_some_and(|t| t <= now) {
                slot.input(Input::Timeout, now);
            }
        }
    }

    /// Advertises the request/reply handlers through the control layer if they changed.
    fn advertise(&mut self) {
        let rr = &self.reqrep.layer;
        if rr.handlers_generation() == self.advertised {
            return;
        }
        self.advertised = rr.handlers_generation();
        let requests = rr.handler_patterns(HandlerKind::Request);
        let ticks = rr.handler_patterns(HandlerKind::Tick);
        self.control
            .layer
            .set_served(requests, ticks, &mut self.control.out);
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
            self.advertise();
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
            for d in self.control.out.delivered.drain(..) {
                sink.control(d);
            }
            for d in self.reqrep.out.delivered.drain(..) {
                sink.reqrep(d);
            }
            for d in self.events.out.delivered.drain(..) {
                sink.events(d);
            }
            for d in self.services.out.delivered.drain(..) {
                sink.services(d);
            }
            let mut sent = Vec::new();
            let mut shouted = Vec::new();
            for slot in self.slots() {
                let (s, g) = slot.frames();
                sent.append(s);
                shouted.append(g);
            }
            if sent.is_empty() && shouted.is_empty() && new_failures.is_empty() {
                break;
            }
            for (peer, frame) in sent {
                if self.engine.whisper(peer, vec![frame]).is_err() {
                    self.stats.layer_sends_dropped += 1;
                }
            }
            for (group, frame) in shouted {
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
        self.reqrep.layer.stop(&mut self.reqrep.out);
        self.control.layer.stop();
        self.events.layer.stop();
        self.services.layer.stop(now, &mut self.services.out);
        self.caps.clear();
        self.engine.stop(now);
        self.flush(now, transport, sink);
    }

    fn route(&mut self, now: &mut impl FnMut() -> Instant, event: Event, sink: &mut impl Sink<W>) {
        match &event {
            // The hot path: application data touches no layer and reads no clock.
            Event::Whisper { .. } | Event::Shout { .. } if is_app_data(&event) => {
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
                let now = now();
                for slot in self.slots() {
                    slot.input(Input::PeerUp(view), now);
                }
            }
            Event::Exit { peer, .. } => {
                self.caps.remove(peer);
                let now = now();
                for slot in self.slots() {
                    slot.input(Input::PeerDown { peer: *peer }, now);
                }
            }
            Event::Join { peer, group, .. } => {
                let now = now();
                for slot in self.slots() {
                    slot.input(Input::Joined { peer: *peer, group }, now);
                }
            }
            Event::Leave { peer, group, .. } => {
                let now = now();
                for slot in self.slots() {
                    slot.input(Input::Left { peer: *peer, group }, now);
                }
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
        let layer = env.layer;
        let input = Input::Envelope {
            from,
            group,
            envelope: env,
        };
        if let Some(slot) = self.slots().into_iter().find(|s| s.id() == layer) {
            slot.input(input, now);
            return;
        }
        self.stats.unknown_layer += 1;
        debug!(peer = %from, "envelope for a layer we do not run dropped");
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;

#[cfg(test)]
mod routes_tests;

/// What the engine's direct hand-over calls: application data goes to `app`, anything else back
/// to the engine (`Err`), to be queued as an output.
fn offer_app_data(app: impl FnOnce(Event)) -> impl FnOnce(Event) -> Result<(), Event> {
    move |event| {
        if is_app_data(&event) {
            app(event);
            Ok(())
        } else {
            Err(event)
        }
    }
}

/// A WHISPER or SHOUT for the application: not layer traffic (one frame with the envelope's
/// magic prefix), so no layer sees it.
fn is_app_data(event: &Event) -> bool {
    match event {
        Event::Whisper { content, .. } | Event::Shout { content, .. } => {
            !(content.len() == 1 && envelope::is_envelope(&content[0]))
        }
        _ => false,
    }
}
