//! The state shared by the node task and every [`Node`](super::Node) handle, and the shell's side
//! of the driver: real outboxes as its [`Transport`], the event queue and request channels as its
//! [`Sink`]. Everything protocol-shaped happens in [`Driver`]; this module only moves bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;
use tracing::{debug, warn};
use uuid::Uuid;
use zmesh_core::driver::{Driver, Sink, Transport};
use zmesh_core::reqrep::{self, HandlerId, InboundKey};
use zmesh_zmtp::{Outbox, OutboxConfig, SendError};

use super::emitter::EmitterShell;
use super::groups::{fan_out, GroupSub};
use super::requests::{CancelFlag, HandlerTx, Waiter};
use super::routing::RoutingShell;
use super::secure::Security;
use super::services::ServicesShell;
use crate::error::Error;
use crate::event::Event;
use crate::events::{EventQueue, UuidMap};
use crate::iface::SelectedInterface;

/// Counters of things that went wrong or were dropped; the node keeps running through all of them.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) dropped_events: AtomicU64,
    pub(super) bad_beacons: AtomicU64,
    pub(super) handshake_failures: AtomicU64,
    pub(super) send_failures: AtomicU64,
    pub(super) ipc_connects: AtomicU64,
    pub(super) tcp_connects: AtomicU64,
    pub(super) dropped_ticks: AtomicU64,
    /// Secure mode: sightings of keys the allow-list does not hold.
    pub(super) unlisted_sightings: AtomicU64,
    /// Beacons the system refused to send for a while (e.g. a firewall rule).
    pub(super) beacon_send_failures: AtomicU64,
    /// Inbox batches read by the application's `Events` (`receive.rs`).
    pub(super) inline_receives: AtomicU64,
}

pub(super) struct Shared {
    pub(super) uuid: Uuid,
    pub(super) name: String,
    pub(super) state: Mutex<State>,
    pub(super) stats: Stats,
    pub(super) runtime: tokio::runtime::Handle,
    /// Wakes the node task when a command moved the earliest deadline earlier.
    pub(super) wake: Notify,
    /// Secure mode's keys and allow-list (`secure.rs`); `None` = plain.
    pub(super) security: Option<Security>,
    /// The bound endpoint of our zgossip hub, if we are one.
    pub(super) gossip_endpoint: Option<String>,
    /// The same-host fast path (`samehost.rs`); `None` = TCP only.
    pub(super) same_host: Option<super::samehost::SameHost>,
    /// The inboxes, read by the node task and by the application's inline receive (`receive.rs`).
    pub(super) receive: super::receive::Receive,
}

pub(super) struct State {
    pub(super) driver: Driver<Waiter>,
    pub(super) outboxes: UuidMap<Outbox>,
    /// The application's event queue; closed once the node has stopped.
    pub(super) events: Arc<EventQueue>,
    /// Events of the current flush, handed to `events` together (one lock, one wake-up).
    pub(super) pending_events: VecDeque<Event>,
    /// Per-group event streams.
    pub(super) group_subs: Vec<GroupSub>,
    /// Capacity of the event queue (and of each group stream).
    pub(super) event_capacity: usize,
    /// Where each registered handler's requests and ticks go.
    pub(super) handlers: HashMap<HandlerId, HandlerTx>,
    /// Requests handed to handlers and not answered: their cancellation flags.
    pub(super) running: HashMap<InboundKey, Arc<CancelFlag>>,
    pub(super) next_handler: HandlerId,
    /// Gather streams and peer-event subscribers (`routing.rs`).
    pub(super) routing: RoutingShell,
    /// Event-emitter subscriptions (`emitter.rs`).
    pub(super) emitter: EmitterShell,
    /// Service streams, call waiters, stats queries (`services.rs`).
    pub(super) services: ServicesShell,
    pub(super) outbox_config: OutboxConfig,
    pub(super) identity: Bytes,
    pub(super) endpoint: Option<String>,
    pub(super) interface: Option<SelectedInterface>,
    /// Set once the node has stopped or aborted: commands then fail with [`Error::Stopped`].
    pub(super) stopped: bool,
    /// The deadline the node task's timer is armed for (`None`: none).
    pub(super) armed: Option<Instant>,
}

/// The node's outboxes as the driver's transport. While stopping, `linger` keeps disconnected
/// outboxes so their last messages (GOODBYEs) drain.
pub(super) struct Outboxes<'a> {
    pub(super) map: &'a mut UuidMap<Outbox>,
    pub(super) config: &'a OutboxConfig,
    pub(super) identity: &'a Bytes,
    pub(super) runtime: &'a tokio::runtime::Handle,
    pub(super) stats: &'a Stats,
    pub(super) linger: Option<&'a mut Vec<Outbox>>,
    pub(super) security: Option<&'a Security>,
    pub(super) same_host: Option<&'a super::samehost::SameHost>,
}

impl Transport for Outboxes<'_> {
    fn connect(&mut self, peer: Uuid, endpoint: &str, public_key: Option<&[u8; 32]>) -> bool {
        // Secure mode: a CURVE client of the key the engine bound the peer to.
        let config = match (self.security, public_key) {
            (None, None) => self.config.clone(),
            (Some(s), Some(key)) => s.outbox_config(self.config, key),
            // The engine's contract rules this out; refuse rather than connect insecurely.
            _ => {
                warn!(%peer, "connect without a key in secure mode (or with one in plain mode) refused");
                return false;
            }
        };
        // Same host (and network namespace), listening: over its Unix socket. The choice is made
        // here, before the session's first message, and holds for the whole session.
        let ipc = self.same_host.and_then(|s| s.route(peer));
        let endpoint = ipc.as_deref().unwrap_or(endpoint);
        // Outboxes spawn their task on the node's runtime, whatever thread we are on.
        let _guard = self.runtime.enter();
        match Outbox::connect(endpoint, self.identity.clone(), config) {
            Ok(outbox) => {
                debug!(%peer, endpoint, "connecting to peer");
                let counter = if ipc.is_some() {
                    &self.stats.ipc_connects
                } else {
                    &self.stats.tcp_connects
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.map.insert(peer, outbox);
                true
            }
            Err(e) => {
                debug!(%peer, endpoint, error = %e, "cannot connect to peer");
                false
            }
        }
    }

    fn send(&mut self, peer: Uuid, frames: zmesh_zre::Frames) -> bool {
        let Some(outbox) = self.map.get(&peer) else {
            return true;
        };
        match outbox.try_send(frames) {
            Ok(()) => true,
            Err(e) => refused(self.stats, peer, &e),
        }
    }

    fn disconnect(&mut self, peer: Uuid) {
        if let Some(o) = self.map.remove(&peer) {
            if let Some(keep) = self.linger.as_mut() {
                keep.push(o);
            }
        }
    }
}

/// An event for the application: to the per-group streams it concerns, and into `events`
/// (handed to the event queue after the flush). [`Sink::event`], and the receive path's direct
/// hand-over ([`Driver::handle_message_with`]).
#[inline]
pub(super) fn app_event(
    events: &mut VecDeque<Event>,
    group_subs: &mut Vec<GroupSub>,
    stats: &Stats,
    event: zmesh_zre::Event,
) {
    let event: Event = event.into();
    if !group_subs.is_empty() {
        let dropped = fan_out(group_subs, &event);
        if dropped > 0 {
            stats.dropped_events.fetch_add(dropped, Ordering::Relaxed);
        }
    }
    events.push_back(event);
}

/// Counts and logs a message an outbox refused; false (the transport's answer to the engine).
fn refused(stats: &Stats, peer: Uuid, e: &SendError) -> bool {
    let why = match e {
        SendError::Full(_) => "queue full",
        SendError::Closed(_) => "closed",
    };
    debug!(%peer, why, "message to peer not queued; dropping peer");
    stats.send_failures.fetch_add(1, Ordering::Relaxed);
    false
}

/// The application side of the driver: the lossy event queue (ZRE events only) and the
/// request/reply channels (never lossy: they are bounded by the layer's limits).
pub(super) struct AppSink<'a> {
    pub(super) events: &'a mut VecDeque<Event>,
    pub(super) group_subs: &'a mut Vec<GroupSub>,
    pub(super) handlers: &'a HashMap<HandlerId, HandlerTx>,
    pub(super) running: &'a mut HashMap<InboundKey, Arc<CancelFlag>>,
    pub(super) routing: &'a mut RoutingShell,
    pub(super) emitter: &'a mut EmitterShell,
    pub(super) services: &'a mut ServicesShell,
    pub(super) shared: &'a Arc<Shared>,
    /// Requests whose handler's stream is gone: abandoned after the flush.
    pub(super) abandoned: Vec<InboundKey>,
    /// Calls whose service stream is gone: refused after the flush.
    pub(super) refused_calls: Vec<zmesh_core::services::CallKey>,
}

impl Sink<Waiter> for AppSink<'_> {
    fn event(&mut self, event: zmesh_zre::Event) {
        app_event(self.events, self.group_subs, &self.shared.stats, event);
    }

    fn reqrep(&mut self, delivery: reqrep::Delivery<Waiter>) {
        match delivery {
            reqrep::Delivery::Done { waiter, result, .. } => {
                // The requester may have stopped waiting (dropped future): nothing to do.
                let _ = waiter.send(result);
            }
            reqrep::Delivery::Request {
                handler,
                key,
                event,
                payload,
                deadline,
            } => {
                let flag = Arc::new(CancelFlag::default());
                let handled = self.handlers.get(&handler).is_some_and(|tx| {
                    tx.request(self.shared, key, event, payload, deadline, flag.clone())
                });
                if handled {
                    self.running.insert(key, flag);
                } else {
                    self.abandoned.push(key);
                }
            }
            reqrep::Delivery::Tick {
                handler,
                peer,
                event,
                payload,
            } => {
                if let Some(tx) = self.handlers.get(&handler) {
                    if !tx.tick(peer, event, payload) {
                        self.shared
                            .stats
                            .dropped_ticks
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            reqrep::Delivery::Ended { key, .. } => {
                if let Some(flag) = self.running.remove(&key) {
                    flag.cancel();
                }
            }
            d => self.routing.gather(d),
        }
    }

    fn control(&mut self, delivery: zmesh_core::control::Delivery) {
        self.routing.control(delivery, &self.shared.stats);
    }

    fn events(&mut self, delivery: zmesh_core::events::Delivery) {
        self.emitter.deliver(delivery, self.shared);
    }

    fn services(&mut self, delivery: zmesh_core::services::Delivery<u64>) {
        if let Some(key) = self.services.deliver(delivery, self.shared) {
            self.refused_calls.push(key);
        }
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in zmesh; keep serving with the data as is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carries every pending output of the driver out: outboxes, events, request channels.
    /// Returns the peers whose outbox refused a message (the engine has dropped them).
    pub(super) fn flush(
        self: &Arc<Self>,
        state: &mut State,
        linger: Option<&mut Vec<Outbox>>,
    ) -> Vec<Uuid> {
        self.drive(state, linger, |driver, transport, sink| {
            driver.flush_with(&mut Instant::now, transport, sink)
        })
    }

    /// Runs `f` on the driver with the node's outboxes as its transport (keeping disconnected
    /// ones in `linger` when given) and the application as its sink, then hands the events to
    /// the queue. The one place the shell meets the driver: `flush` and the polite stop use it.
    pub(super) fn drive<R>(
        self: &Arc<Self>,
        state: &mut State,
        linger: Option<&mut Vec<Outbox>>,
        f: impl FnOnce(&mut Driver<Waiter>, &mut Outboxes<'_>, &mut AppSink<'_>) -> R,
    ) -> R {
        let State {
            driver,
            outboxes,
            pending_events,
            group_subs,
            handlers,
            running,
            routing,
            emitter,
            services,
            outbox_config,
            identity,
            ..
        } = state;
        let mut transport = Outboxes {
            map: outboxes,
            config: outbox_config,
            identity,
            runtime: &self.runtime,
            stats: &self.stats,
            linger,
            security: self.security.as_ref(),
            same_host: self.same_host.as_ref(),
        };
        let mut sink = AppSink {
            events: pending_events,
            group_subs,
            handlers,
            running,
            routing,
            emitter,
            services,
            shared: self,
            abandoned: Vec::new(),
            refused_calls: Vec::new(),
        };
        let r = f(driver, &mut transport, &mut sink);
        let abandoned = std::mem::take(&mut sink.abandoned);
        if !abandoned.is_empty() {
            driver.reqrep(|rr, _| abandoned.into_iter().for_each(|k| rr.abandon(k)));
        }
        let refused = std::mem::take(&mut sink.refused_calls);
        if !refused.is_empty() {
            // The service was withdrawn as the call arrived: answer it rather than let the
            // caller wait for its timeout (sent at the next flush).
            let now = Instant::now();
            driver.services(|s, io| {
                for key in refused {
                    s.reply(key, Err((503, "service withdrawn".into())), now, io);
                }
            });
        }
        self.push_events(state);
        r
    }

    fn push_events(&self, state: &mut State) {
        let dropped = state.events.push_all(&mut state.pending_events) as u64;
        if dropped > 0 {
            let before = self
                .stats
                .dropped_events
                .fetch_add(dropped, Ordering::Relaxed);
            // Warn at 1, 2, 4, 8, … drops in total.
            if (before + dropped).ilog2() != before.checked_ilog2().unwrap_or(u32::MAX) {
                warn!(
                    dropped = before + dropped,
                    "event queue full: application is not reading events; dropping"
                );
            }
        }
    }

    /// Runs an application command on the driver under one lock, then flushes its outputs;
    /// fails once the node has stopped. The node task is woken only if the command moved the
    /// earliest deadline earlier than the one its timer is armed for (a request with a short
    /// timeout); a WHISPER never does, so it costs the node task nothing.
    pub(super) fn command<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Driver<Waiter>) -> R,
    ) -> Result<(R, Vec<Uuid>), Error> {
        self.command_state(|state| f(&mut state.driver))
    }

    /// [`Shared::command`] with the whole state (a command that also registers where its
    /// deliveries go, before the flush hands them out).
    pub(super) fn command_state<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State) -> R,
    ) -> Result<(R, Vec<Uuid>), Error> {
        let mut state = self.lock();
        if state.stopped {
            return Err(Error::Stopped);
        }
        let r = f(&mut state);
        let failed = self.flush_after_command(state);
        Ok((r, failed))
    }

    /// The end of every command: flush, then wake the node task if the command moved the
    /// earliest deadline earlier than the one its timer is armed for.
    fn flush_after_command(self: &Arc<Self>, mut state: MutexGuard<'_, State>) -> Vec<Uuid> {
        let failed = self.flush(&mut state, None);
        // Only a layer's deadline can move earlier through a command (the engine's only ever
        // move later on a send), and it is cheap to read; a WHISPER finds none.
        let due = state.driver.layers_poll_timeout();
        let wake = match (due, state.armed) {
            (Some(due), Some(armed)) => due < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        failed
    }

    /// WHISPER, the application's hot path: under one lock the engine numbers the message and
    /// it is encoded straight into the peer's outbox ([`Engine::whisper_with`]), with no output
    /// queued, no frame built and no flush. Only if the engine has outputs afterwards (some were
    /// pending, so the message queued behind them; or the outbox refused it and the peer was
    /// removed) does the ordinary end of a command run. Returns the engine's answer and whether
    /// the peer's outbox refused the message.
    ///
    /// [`Engine::whisper_with`]: zmesh_zre::Engine::whisper_with
    pub(super) fn whisper(
        self: &Arc<Self>,
        peer: Uuid,
        content: &[Bytes],
    ) -> Result<(Result<(), zmesh_zre::EngineError>, bool), Error> {
        let mut state = self.lock();
        if state.stopped {
            return Err(Error::Stopped);
        }
        let mut overflow = false;
        let State {
            driver, outboxes, ..
        } = &mut *state;
        let r = driver
            .engine()
            .whisper_with(peer, content, |peer, header, content| {
                let Some(outbox) = outboxes.get(&peer) else {
                    return true;
                };
                match outbox.try_send_parts(header, content) {
                    Ok(()) => true,
                    Err(e) => {
                        overflow = true;
                        refused(&self.stats, peer, &e)
                    }
                }
            });
        if state.driver.engine_ref().has_output() {
            overflow |= self.flush_after_command(state).contains(&peer);
        }
        Ok((r, overflow))
    }

    /// Runs network input or a timer tick on the driver and flushes its outputs, for the node
    /// task itself (it re-reads the deadline on its next turn).
    pub(super) fn in_task<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Driver<Waiter>, Instant) -> R,
    ) -> (R, Vec<Uuid>) {
        let now = Instant::now();
        let mut state = self.lock();
        let r = f(&mut state.driver, now);
        let failed = self.flush(&mut state, None);
        (r, failed)
    }
}
