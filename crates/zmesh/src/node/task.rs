//! The node task: owns the sockets (inbox, beacons), runs the timers, carries inputs into the
//! driver, and stops the node (politely or as a crash).

use std::io;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use zmesh_zmtp::{Inbox, Outbox};

use super::receive::{drain, Polled};
use super::shared::{Shared, State};
use super::{NodeBuilder, StopRequest, INBOX_BATCH, STOP_LINGER};
use crate::discovery::beacon::BeaconSocket;
use crate::discovery::endpoint_of;
use crate::discovery::plan::{self, RESCAN_INTERVAL};
use crate::discovery::{Heard, NodeView, Sighting, Source};
use crate::error::Error;
use crate::iface;

/// The background task that owns the sockets.
pub(super) struct NodeTask {
    pub(super) shared: Arc<Shared>,
    pub(super) config: NodeBuilder,
    /// The beacon source of the attached interface (re-created on re-attach).
    pub(super) beacon: Option<BeaconSocket>,
    /// Sources added with `NodeBuilder::discovery_source`, run from the start.
    pub(super) sources: Vec<Box<dyn Source>>,
    /// True once an interface is attached (inbox bound, beacon source created if IPv4).
    pub(super) attached: bool,
    /// Which source is polled first next time (so a flooded one cannot starve the others).
    pub(super) next_source: usize,
    /// Leave beacons heard, applied at the instant given (see [`DEPARTURE_GRACE`]).
    pub(super) departures: Vec<(uuid::Uuid, Instant)>,
    /// The inbox's TCP port, announced in beacons.
    pub(super) tcp_port: u16,
    /// The address the inbox is bound to.
    pub(super) bound: Option<IpAddr>,
    /// When the interfaces are read again.
    pub(super) next_rescan: Instant,
    /// When a refused beacon ([`transient_send_error`]) was last said at warn: at most once per
    /// [`REFUSED_WARN_EVERY`], at debug in between (each one is counted in the stats).
    pub(super) beacon_refused_warned: Option<Instant>,
}

/// How often a node whose beacons the system keeps refusing says so at warn.
const REFUSED_WARN_EVERY: Duration = Duration::from_secs(60);

/// Errors of a beacon send that say nothing about the sockets: the system refused this one
/// datagram (a firewall rule answers EPERM, a full queue ENOBUFS or EAGAIN). The node keeps its
/// sockets (it still hears its peers) and tries again at the next interval. Anything else (the
/// address or interface is gone) re-creates them.
fn transient_send_error(e: &io::Error) -> bool {
    /// Linux's ENOBUFS, which std leaves uncategorised.
    const ENOBUFS: i32 = 105;
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
    ) || (cfg!(target_os = "linux") && e.raw_os_error() == Some(ENOBUFS))
}

/// How long after a leave beacon the peer is removed: enough for the runtime to see the inbox
/// ready with the peer's last messages, which left before the beacon but may be read after it.
const DEPARTURE_GRACE: Duration = Duration::from_millis(20);

/// Polls the beacon source and every added source, starting at a rotating index; returns which
/// one spoke (`None`: the beacon) and what it heard.
fn poll_sources(
    beacon: &mut Option<BeaconSocket>,
    sources: &mut [Box<dyn Source>],
    start: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<(Option<usize>, io::Result<Heard>)> {
    let n = sources.len() + 1;
    for k in 0..n {
        let i = (*start + k) % n;
        let polled = if i == sources.len() {
            beacon.as_mut().map(|b| (None, b.poll_heard(cx)))
        } else {
            Some((Some(i), sources[i].poll_heard(cx)))
        };
        if let Some((who, Poll::Ready(r))) = polled {
            *start = (i + 1) % n;
            return Poll::Ready((who, r));
        }
    }
    Poll::Pending
}

async fn recv_opt<T, F: std::future::Future<Output = T>>(f: Option<F>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

impl NodeTask {
    pub(super) async fn run(mut self, mut stop_rx: mpsc::Receiver<StopRequest>) {
        let mut beacon_tick = tokio::time::interval(self.config.beacon_interval);
        beacon_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned_no_iface = false;
        if let Some(s) = &self.shared.same_host {
            let ep = format!("ipc://{}", s.path_of(self.shared.uuid).display());
            match Inbox::bind(&ep, self.config.inbox.clone()).await {
                Ok(i) => self.shared.receive.lock().ipc = Some(i),
                // Peers find no listener there and use TCP.
                Err(e) => debug!(endpoint = %ep, error = %e, "same-host inbox not bound"),
            }
        }
        // One timer for the engine's deadline, re-armed only when the deadline moves: a busy node
        // turns this loop once per inbox batch, and a fresh timer each turn would cost a timer
        // registration (and removal) each time.
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        let done = loop {
            let deadline = {
                let mut state = self.shared.lock();
                let deadline = state.driver.poll_timeout();
                state.armed = deadline;
                deadline
            };
            if deadline != armed {
                if let Some(d) = deadline {
                    sleep.as_mut().reset(d.into());
                }
                armed = deadline;
            }
            tokio::select! {
                reply = stop_rx.recv() => break reply,
                // A command moved the earliest deadline earlier: re-arm.
                _ = self.shared.wake.notified() => {}
                // Each inbox's input is carried into the driver inside the poll (`receive.rs`).
                polled = std::future::poll_fn(|cx| self.shared.receive.poll_node(&self.shared, true, cx)) => {
                    if let Polled::Closed = polled {
                        warn!("same-host inbox closed unexpectedly; peers use TCP from now on");
                    }
                },
                polled = std::future::poll_fn(|cx| self.shared.receive.poll_node(&self.shared, false, cx)) => {
                    if let Polled::Closed = polled {
                        warn!("inbox closed unexpectedly; rebinding");
                        self.detach();
                    }
                },
                // Sources are heard only once attached: a sighting acted on before our inbox is
                // bound would send peers a HELLO without our endpoint, which they drop.
                (who, heard) = std::future::poll_fn(|cx| {
                    poll_sources(&mut self.beacon, &mut self.sources, &mut self.next_source, cx)
                }), if self.attached => match heard {
                    Ok(Heard::Sighting(sighting)) => self.on_sighting(sighting),
                    // Our own beacons loop back to us; that is not bad input.
                    Ok(Heard::Own) => {}
                    Ok(Heard::Garbage(reason)) => {
                        self.shared.stats.bad_beacons.fetch_add(1, Ordering::Relaxed);
                        debug!(%reason, "discovery input dropped");
                    }
                    Err(e) => match who {
                        None => {
                            debug!(error = %e, "beacon receive error; re-creating next interval");
                            self.detach();
                        }
                        Some(i) => {
                            let s = self.sources.remove(i);
                            warn!(source = s.kind(), error = %e, "discovery source failed; dropped");
                        }
                    },
                },
                _ = recv_opt(
                    self.departures.iter().map(|(_, at)| *at).min().map(|at| tokio::time::sleep_until(at.into()))
                ) => self.apply_departures(),
                _ = &mut sleep, if armed.is_some() => {
                    self.shared.in_task(|d, now| d.handle_timeout(now));
                    // Fire again only once the engine names a deadline (even the same one).
                    armed = None;
                }
                _ = beacon_tick.tick() => {
                    if !self.attached || Instant::now() >= self.next_rescan {
                        match self.attach().await {
                            Ok(true) => warned_no_iface = false,
                            Ok(false) => {
                                if !warned_no_iface {
                                    warn!(interface = %self.config.interface, "no usable network interface yet; will retry");
                                    warned_no_iface = true;
                                }
                            }
                            Err(e) => warn!(error = %e, "cannot attach to interface; will retry"),
                        }
                    }
                    self.announce();
                }
            }
        };
        let polite = done.as_ref().map(|r| r.polite).unwrap_or(true);
        if polite {
            self.shutdown().await;
        } else {
            self.crash();
        }
        if let Some(reply) = done {
            let _ = reply.done.send(());
        }
        // Later stop() calls find the channel closed and return at once.
        stop_rx.close();
        while let Ok(reply) = stop_rx.try_recv() {
            let _ = reply.done.send(());
        }
    }

    /// Reads the interfaces and applies the plan (`discovery/plan.rs`): (re)binds the inbox when
    /// its address must change, updates the HELLO endpoint, and points the beacons at every
    /// selected interface. Ok(false) = nothing usable yet.
    async fn attach(&mut self) -> Result<bool, Error> {
        self.next_rescan = Instant::now() + RESCAN_INTERVAL;
        let addrs = iface::list_cached()?;
        let Some(plan) = plan::plan(&self.config.interfaces, &addrs, &self.config.beacon_opts)
        else {
            if let Some(b) = &mut self.beacon {
                let _ = b.set_targets(Vec::new());
            }
            self.attached = false;
            return Ok(false);
        };
        if self.shared.receive.lock().tcp.is_none() || self.bound != Some(plan.bind) {
            // Keep our port across a re-bind when we can: peers still know it.
            let keep = (self.tcp_port != 0).then_some(self.tcp_port);
            let port = self.config.tcp_port.or(keep);
            let host = match plan.bind {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            };
            let bind = |p: Option<u16>| {
                let port = p.map(|p| p.to_string()).unwrap_or_else(|| "*".into());
                format!("tcp://{host}:{port}")
            };
            if let Some(old) = self.shared.receive.lock().tcp.take() {
                old.close();
            }
            let inbox = match Inbox::bind(&bind(port), self.config.inbox.clone()).await {
                Ok(i) => i,
                Err(_) if self.config.tcp_port.is_none() && port.is_some() => {
                    Inbox::bind(&bind(None), self.config.inbox.clone()).await?
                }
                Err(e) => return Err(e.into()),
            };
            let bound = inbox.endpoint().to_string();
            self.tcp_port = bound
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| Error::Config(format!("bound endpoint without port: {bound}")))?;
            self.shared.receive.lock().tcp = Some(inbox);
            self.bound = Some(plan.bind);
        }
        let mut primary = plan.primary;
        primary.set_port(self.tcp_port);
        let advertised = self
            .config
            .advertised_endpoint
            .clone()
            .unwrap_or_else(|| endpoint_of(primary).to_string());
        let changed = {
            let mut state = self.shared.lock();
            let changed = state.endpoint.as_deref() != Some(advertised.as_str());
            if changed {
                state.driver.engine().try_set_endpoint(advertised.clone())?;
                state.endpoint = Some(advertised.clone());
            }
            state.interface = Some(plan.interface.clone());
            changed
        };
        let targets = if self.config.beacons {
            plan.targets.clone()
        } else {
            Vec::new()
        };
        let beacon = match self.beacon.take() {
            Some(b) => b,
            None => BeaconSocket::new(
                self.config.beacon_port,
                self.shared.uuid,
                self.shared
                    .security
                    .as_ref()
                    .map(|s| *s.public_key().as_bytes()),
            ),
        };
        let mut beacon = beacon;
        let retarget = beacon.targets() != targets.as_slice();
        if retarget {
            beacon.set_targets(targets)?;
        }
        if changed || retarget || !self.attached {
            let targets: Vec<String> = beacon.targets().iter().map(|t| t.to_string()).collect();
            info!(
                node = %self.shared.name,
                interface = %plan.interface,
                endpoint = %advertised,
                addresses = ?plan.addrs,
                beacons = ?targets,
                beacon_port = self.config.beacon_port,
                sources = self.sources.len() + usize::from(!targets.is_empty()),
                "zmesh node attached"
            );
        }
        self.beacon = (!beacon.targets().is_empty()).then_some(beacon);
        self.attached = true;
        Ok(true)
    }

    /// Drops the beacon source so the next beacon tick re-attaches (interface went away, a send
    /// or receive failed).
    fn detach(&mut self) {
        self.beacon = None;
        self.attached = false;
    }

    /// The port our beacons announce: the advertised endpoint's when there is one (peers must
    /// reach us where our HELLO says, e.g. through a NAT or a proxy: a beacon naming the bound
    /// port would name another endpoint, and the engine would move the peer there), else the
    /// inbox's.
    fn announced_port(&self) -> u16 {
        self.config
            .advertised_endpoint
            .as_deref()
            .and_then(|e| e.rsplit(':').next())
            .and_then(|p| p.trim_end_matches(']').parse().ok())
            .unwrap_or(self.tcp_port)
    }

    /// Announces our TCP port through every source (once the inbox is bound).
    fn announce(&mut self) {
        if self.tcp_port == 0 {
            return;
        }
        let port = self.announced_port();
        if let Some(beacon) = &mut self.beacon {
            match beacon.announce(port) {
                Ok(()) => {}
                Err(e) if transient_send_error(&e) => {
                    self.shared
                        .stats
                        .beacon_send_failures
                        .fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    if self
                        .beacon_refused_warned
                        .is_some_and(|at| now < at + REFUSED_WARN_EVERY)
                    {
                        debug!(error = %e, "beacon not sent");
                    } else {
                        warn!(error = %e, "beacon not sent (refused by the system); still listening, trying again each interval (said at most once a minute)");
                        self.beacon_refused_warned = Some(now);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "beacon send failed; re-creating sockets next interval");
                    self.detach();
                }
            }
        }
        if !self.sources.is_empty() {
            let (endpoint, peers) = {
                let state = self.shared.lock();
                (state.endpoint.clone(), state.driver.engine_ref().peers())
            };
            if let Some(endpoint) = endpoint {
                let key = self
                    .shared
                    .security
                    .as_ref()
                    .map(|s| *s.public_key().as_bytes());
                let view = NodeView {
                    uuid: self.shared.uuid,
                    endpoint: &endpoint,
                    public_key: key.as_ref(),
                    peers: &peers,
                };
                for s in &mut self.sources {
                    s.observe(&view);
                }
            }
        }
        for s in &mut self.sources {
            if let Err(e) = s.announce(port) {
                debug!(source = s.kind(), error = %e, "announce failed");
            }
        }
    }

    /// Closes both inboxes (a stop, a crash).
    fn close_inboxes(&self) {
        let mut rx = self.shared.receive.lock();
        for ipc in [false, true] {
            if let Some(inbox) = rx.get(ipc).take() {
                inbox.close();
            }
        }
    }

    fn on_sighting(&mut self, sighting: Sighting) {
        match sighting {
            Sighting::Seen {
                uuid,
                endpoint,
                public_key,
                ..
            } => {
                if let Some(s) = &self.shared.security {
                    if !s.admits(public_key.as_ref()) {
                        self.shared
                            .stats
                            .unlisted_sightings
                            .fetch_add(1, Ordering::Relaxed);
                        debug!(peer = %uuid, "sighting of a key not on the allow-list ignored");
                        return;
                    }
                }
                self.shared.in_task(|d, now| {
                    d.engine()
                        .handle_sighting_with_key(now, uuid, &endpoint, public_key)
                });
            }
            Sighting::Left { uuid } => {
                // The leave beacon (UDP) can overtake the peer's last messages (TCP): they are in
                // our socket already (the peer sends its beacon only after its outbox drained),
                // but the runtime may not have seen the socket ready yet. So the departure is
                // applied a moment later, after the inbox has been read.
                if !self.departures.iter().any(|(u, _)| *u == uuid) {
                    self.departures
                        .push((uuid, Instant::now() + DEPARTURE_GRACE));
                }
            }
        }
    }

    /// Applies the departures whose grace has passed, after delivering what the inbox holds.
    fn apply_departures(&mut self) {
        let now = Instant::now();
        if !self.departures.iter().any(|(_, at)| *at <= now) {
            return;
        }
        {
            let mut rx = self.shared.receive.lock();
            for ipc in [false, true] {
                while rx.get(ipc).is_some()
                    && drain(&self.shared, &mut rx, ipc, None, false) == INBOX_BATCH
                {
                }
            }
        }
        let (due, later): (Vec<_>, Vec<_>) =
            self.departures.drain(..).partition(|(_, at)| *at <= now);
        self.departures = later;
        for (uuid, _) in due {
            self.shared
                .in_task(|d, now| d.engine().handle_departure(now, uuid));
        }
    }

    /// Drops everything at once, telling nobody.
    fn crash(&mut self) {
        let mut state = self.shared.lock();
        state.outboxes.clear();
        state.events.close();
        state.stopped = true;
        end_handlers(&mut state);
        drop(state);
        self.close_inboxes();
        self.beacon = None;
        info!(node = %self.shared.name, "zmesh node aborted");
    }

    async fn shutdown(&mut self) {
        let now = Instant::now();
        let outboxes: Vec<Outbox> = {
            let mut state = self.shared.lock();
            state.stopped = true;
            // The driver ends the layers (pending requests: Stopped), says GOODBYE and
            // disconnects; disconnected outboxes are kept here so the GOODBYEs drain.
            let mut keep: Vec<Outbox> = Vec::new();
            self.shared
                .drive(&mut state, Some(&mut keep), |driver, transport, sink| {
                    driver.stop(now, transport, sink)
                });
            end_handlers(&mut state);
            keep.extend(state.outboxes.drain().map(|(_, o)| o));
            keep
        };
        // Linger on every outbox at once, so a stop takes at most STOP_LINGER however many peers.
        let closes: Vec<_> = outboxes
            .into_iter()
            .map(|o| tokio::spawn(o.close(Some(STOP_LINGER))))
            .collect();
        for close in closes {
            let _ = close.await;
        }
        if let Some(beacon) = &mut self.beacon {
            // Port 0 = "I am leaving": peers see EXIT at once. Sent only after the outboxes have
            // drained: the UDP beacon would otherwise overtake the last messages (and GOODBYEs)
            // still queued on TCP, and peers would drop them as coming from a peer that already
            // left. Sent once, like C Zyre: a second one makes Pyre log "We don't know peer id"
            // and zyre.js emit a second EXIT without a name; if the one is lost, zmesh peers
            // still have the GOODBYE and the closed connection, and every peer the expiry.
            if let Err(e) = beacon.announce(0) {
                debug!(error = %e, "leave beacon not sent");
            }
        }
        for s in &mut self.sources {
            let _ = s.announce(0);
        }
        self.close_inboxes();
        self.beacon = None;
        // The application's event stream ends after the STOP event.
        self.shared.lock().events.close();
        info!(node = %self.shared.name, "zmesh node stopped");
    }
}

/// Ends every handler stream and tells running handlers their answer goes nowhere.
fn end_handlers(state: &mut State) {
    state.handlers.clear();
    state.group_subs.clear();
    state.routing.clear();
    state.emitter.clear();
    state.services.clear();
    for (_, flag) in state.running.drain() {
        flag.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_sends_keep_the_sockets_and_lost_addresses_do_not() {
        let e = |k| io::Error::from(k);
        assert!(transient_send_error(&e(io::ErrorKind::PermissionDenied)));
        assert!(transient_send_error(&e(io::ErrorKind::WouldBlock)));
        assert!(transient_send_error(&io::Error::from_raw_os_error(105)));
        assert!(!transient_send_error(&e(io::ErrorKind::AddrNotAvailable)));
        assert!(!transient_send_error(&e(io::ErrorKind::NetworkUnreachable)));
        assert!(!transient_send_error(&io::Error::from_raw_os_error(19))); // ENODEV
    }
}
