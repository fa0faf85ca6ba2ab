//! Named services on a [`Node`]: the async face of [`zmesh_core::services`].
//!
//! * [`Node::offer`] offers a service and returns the [`Offered`] stream of [`IncomingCall`]s;
//!   each is answered with [`IncomingCall::reply`] or [`IncomingCall::error`], from any task
//!   (dropping one unanswered sends nothing: it counts as running until the caller's deadline,
//!   and the caller retries or times out). A
//!   duplicate of a call that is running or was answered within the de-dup window is never handed
//!   to the stream (the layer answers it). Dropping the stream withdraws the offer everywhere.
//! * [`Node::call`] returns a [`Call`] builder (timeout, retries, per-try timeout, path);
//!   awaiting it makes the call and resolves exactly once to a [`Reply`] or a [`CallFailed`],
//!   both with the [`CallInfo`] (tries, worker, broker, latency). Dropping the future does not
//!   cancel the call (it runs to its end; its outcome is then dropped).
//! * [`Node::services`] lists the services offered in the mesh and by whom;
//!   [`Node::service_stats`] asks every node that offers something (and brokers) for its
//!   counters (NATS micro's ping / info / stats in one).
//! * A broker node ([`NodeBuilder::broker`](super::NodeBuilder::broker)) relays calls;
//!   [`Node::drain`] lets it finish what it holds before a polite stop.
//!
//! Delivery contract: calls and their outcomes never pass through the lossy event queue; a
//! service stream holds at most the layer's running-call limit.

use std::collections::{BTreeMap, HashMap};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use zmesh_core::services::{self, CallError, CallInfo, CallKey, CallSpec, StatsBody, Via};

use super::shared::Shared;
use super::Node;
use crate::error::Error;

/// The outcome of a call as the shell hands it over.
type Outcome = (Result<Bytes, CallError>, CallInfo);

/// The shell's side of the services layer: where deliveries go.
#[derive(Default)]
pub(super) struct ServicesShell {
    next_token: u64,
    waiters: HashMap<u64, oneshot::Sender<Outcome>>,
    offers: HashMap<String, mpsc::UnboundedSender<IncomingCall>>,
    queries: HashMap<u64, mpsc::UnboundedSender<(Uuid, StatsBody)>>,
    /// Broker endpoints learned, for whoever dials them.
    pub(super) brokers_tx: Option<mpsc::UnboundedSender<Vec<String>>>,
}

impl ServicesShell {
    /// Hands one delivery over; returns a call to refuse (its service stream is gone).
    pub(super) fn deliver(
        &mut self,
        d: services::Delivery<u64>,
        shared: &Arc<Shared>,
    ) -> Option<CallKey> {
        match d {
            services::Delivery::Done {
                waiter,
                result,
                info,
                ..
            } => {
                if let Some(tx) = self.waiters.remove(&waiter) {
                    let _ = tx.send((result, info));
                }
            }
            services::Delivery::Call {
                key,
                service,
                payload,
                attempt,
                deadline,
            } => {
                let call = IncomingCall {
                    key,
                    service,
                    payload,
                    attempt,
                    deadline,
                    node: Arc::downgrade(shared),
                };
                let tx = self.offers.get(&call.service);
                match tx.map(|tx| tx.send(call)) {
                    Some(Ok(())) => {}
                    _ => return Some(key),
                }
            }
            services::Delivery::Stats { query, peer, stats } => {
                if let Some(tx) = self.queries.get(&query) {
                    let _ = tx.send((peer, stats));
                }
            }
            services::Delivery::Brokers { endpoints } => {
                if let Some(tx) = &self.brokers_tx {
                    let _ = tx.send(endpoints);
                }
            }
            services::Delivery::Ended { .. } => {}
            _ => {}
        }
        None
    }

    /// Ends every stream and waiter (the node stopped or aborted).
    pub(super) fn clear(&mut self) {
        self.offers.clear();
        self.queries.clear();
        self.brokers_tx = None;
        // Waiters still pending get `Stopped` from the layer at a polite stop; at an abort they
        // are dropped here (their futures resolve to `Stopped`).
        self.waiters.clear();
    }
}

/// A call handed to this worker: answer it once.
#[derive(Debug)]
pub struct IncomingCall {
    key: CallKey,
    service: String,
    payload: Bytes,
    attempt: u16,
    deadline: Instant,
    node: Weak<Shared>,
}

impl IncomingCall {
    /// The caller (the original one, through brokers).
    pub fn caller(&self) -> Uuid {
        self.key.caller
    }

    /// The call's message id (unique per caller).
    pub fn id(&self) -> u64 {
        self.key.id
    }

    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The request.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The retry count it arrived with (0: first try).
    pub fn attempt(&self) -> u16 {
        self.attempt
    }

    /// The caller stops waiting at this instant.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Answers with a payload. `Ok(false)`: the call had ended (deadline passed); nothing sent.
    pub fn reply(self, payload: impl Into<Bytes>) -> Result<bool, Error> {
        self.answer(Ok(payload.into()))
    }

    /// Answers with an application error.
    pub fn error(self, code: u16, message: impl Into<String>) -> Result<bool, Error> {
        self.answer(Err((code, message.into())))
    }

    fn answer(self, result: Result<Bytes, (u16, String)>) -> Result<bool, Error> {
        let shared = self.node.upgrade().ok_or(Error::Stopped)?;
        let key = self.key;
        let (sent, _) =
            shared.command(|d| d.services(|s, io| s.reply(key, result, Instant::now(), io)))?;
        Ok(sent)
    }
}

/// The calls of one offered service; dropping it withdraws the offer.
#[derive(Debug)]
pub struct Offered {
    service: String,
    rx: mpsc::UnboundedReceiver<IncomingCall>,
    node: Weak<Shared>,
}

impl Offered {
    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The next call (`None` once the node stopped).
    pub async fn recv(&mut self) -> Option<IncomingCall> {
        std::future::poll_fn(|cx| self.rx.poll_recv(cx)).await
    }
}

impl Stream for Offered {
    type Item = IncomingCall;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<IncomingCall>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Offered {
    fn drop(&mut self) {
        if let Some(shared) = self.node.upgrade() {
            let service = self.service.clone();
            let _ = shared.command_state(|st| {
                st.services.offers.remove(&service);
                st.driver
                    .services(|s, io| s.withdraw(&service, Instant::now(), io))
            });
        }
    }
}

/// A call being prepared: set options, then `.await` it.
#[must_use = "a call is made when it is awaited"]
#[derive(Debug)]
pub struct Call {
    node: Node,
    spec: CallSpec,
}

impl Call {
    /// Total time to wait (default: 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.spec.timeout = Some(timeout);
        self
    }

    /// Retries after the first try (default 0).
    pub fn retries(mut self, n: u16) -> Self {
        self.spec.retries = n;
        self
    }

    /// Time one try waits before a retry (default: the timeout shared evenly among the tries).
    pub fn per_try(mut self, d: Duration) -> Self {
        self.spec.per_try = Some(d);
        self
    }

    /// Which paths: workers directly, through brokers, or both (default).
    pub fn via(mut self, via: Via) -> Self {
        self.spec.via = via;
        self
    }

    /// Makes the call now and returns the future of its outcome (what `.await` does, for
    /// callers that make many before awaiting any).
    pub fn send(self) -> CallFuture {
        self.into_future()
    }
}

/// A successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The worker's answer.
    pub payload: Bytes,
    /// Tries, worker, broker, latency.
    pub info: CallInfo,
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct CallFailed {
    /// Why.
    pub error: CallError,
    /// Tries, worker, broker, latency.
    pub info: CallInfo,
}

/// The outcome of a call (see [`Node::call`]).
#[derive(Debug)]
pub struct CallFuture {
    rx: Option<oneshot::Receiver<Outcome>>,
    immediate: Option<CallError>,
}

impl Future for CallFuture {
    type Output = Result<Reply, CallFailed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(error) = self.immediate.take() {
            return Poll::Ready(Err(CallFailed {
                error,
                info: CallInfo::default(),
            }));
        }
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Pending;
        };
        let out = match Pin::new(rx).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok((Ok(payload), info))) => Ok(Reply { payload, info }),
            Poll::Ready(Ok((Err(error), info))) => Err(CallFailed { error, info }),
            Poll::Ready(Err(_)) => Err(CallFailed {
                error: CallError::Stopped,
                info: CallInfo::default(),
            }),
        };
        self.rx = None;
        Poll::Ready(out)
    }
}

impl IntoFuture for Call {
    type Output = Result<Reply, CallFailed>;
    type IntoFuture = CallFuture;

    /// Makes the call now; the returned future waits for its outcome.
    fn into_future(self) -> CallFuture {
        let (tx, rx) = oneshot::channel();
        let shared = self.node.inner.shared.clone();
        let spec = self.spec;
        let r = shared.command_state(|st| {
            let token = st.services.next_token;
            st.services.next_token += 1;
            st.services.waiters.insert(token, tx);
            let r = st
                .driver
                .services(|s, io| s.call(Instant::now(), token, spec, io));
            if r.is_err() {
                st.services.waiters.remove(&token);
            }
            r
        });
        match r {
            Ok((Ok(_), _)) => CallFuture {
                rx: Some(rx),
                immediate: None,
            },
            Ok((Err(e), _)) => CallFuture {
                rx: None,
                immediate: Some(e),
            },
            Err(_) => CallFuture {
                rx: None,
                immediate: Some(CallError::Stopped),
            },
        }
    }
}

/// One service in the mesh and who offers it ([`Node::services`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The service.
    pub service: String,
    /// Peers offering it themselves.
    pub workers: Vec<Uuid>,
    /// Brokers relaying it.
    pub brokers: Vec<Uuid>,
}

/// One node's answer to [`Node::service_stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeServiceStats {
    /// The node.
    pub peer: Uuid,
    /// Time from the query to its answer.
    pub rtt: Duration,
    /// Its counters.
    pub stats: StatsBody,
}

impl Node {
    /// Offers `service` (module docs); fails for an invalid name, an already offered service or
    /// a stopped node.
    pub fn offer(&self, service: &str) -> Result<Offered, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = &self.inner.shared;
        let (r, _) = shared.command_state(|st| {
            if st.services.offers.contains_key(service) {
                return Err(Error::Config(format!(
                    "service {service} is already offered"
                )));
            }
            st.driver
                .services(|s, io| s.offer(service, io))
                .map_err(|e| Error::Config(e.to_string()))?;
            st.services.offers.insert(service.to_owned(), tx);
            Ok(())
        })?;
        r?;
        Ok(Offered {
            service: service.to_owned(),
            rx,
            node: Arc::downgrade(shared),
        })
    }

    /// Prepares a call of `service` with `payload` (module docs); `.await` it.
    pub fn call(&self, service: &str, payload: impl Into<Bytes>) -> Call {
        Call {
            node: self.clone(),
            spec: CallSpec::new(service, payload),
        }
    }

    /// The services offered in the mesh, by service name.
    pub fn services(&self) -> Vec<ServiceEntry> {
        let state = self.inner.shared.lock();
        let mut map: BTreeMap<String, ServiceEntry> = BTreeMap::new();
        for (peer, broker, list) in state.driver.services_ref().directory() {
            for s in list {
                let e = map.entry(s.clone()).or_insert_with(|| ServiceEntry {
                    service: s.clone(),
                    workers: Vec::new(),
                    brokers: Vec::new(),
                });
                if broker {
                    e.brokers.push(peer);
                } else {
                    e.workers.push(peer);
                }
            }
        }
        map.into_values().collect()
    }

    /// Asks every peer that offers a service or is a broker for its counters (brokers pass the
    /// question on to their workers), and waits up to `wait` for the answers (this node's own
    /// come first, rtt 0; with brokers it waits the whole `wait`, not knowing how many answer).
    pub async fn service_stats(&self, wait: Duration) -> Result<Vec<NodeServiceStats>, Error> {
        let shared = self.inner.shared.clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let ((own, ids, via_brokers), _) = shared.command_state(|st| {
            let own = st.driver.services_ref().own_stats(Instant::now());
            let targets: Vec<(Uuid, bool)> = st
                .driver
                .services_ref()
                .directory()
                .filter(|(_, broker, list)| *broker || !list.is_empty())
                .map(|(p, broker, _)| (p, broker))
                .collect();
            let via_brokers = targets.iter().any(|t| t.1);
            let peers: Vec<Uuid> = targets.into_iter().map(|t| t.0).collect();
            let ids: Vec<u64> = st
                .driver
                .services(|s, io| peers.iter().filter_map(|p| s.query_stats(*p, io)).collect());
            for id in &ids {
                st.services.queries.insert(*id, tx.clone());
            }
            (own, ids, via_brokers)
        })?;
        drop(tx);
        let mut out = vec![NodeServiceStats {
            peer: self.uuid(),
            rtt: Duration::ZERO,
            stats: own,
        }];
        // Brokers pass the query on to workers we cannot count: then wait the whole time.
        let expect = if via_brokers { usize::MAX } else { ids.len() };
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() - 1 < expect {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                // A worker behind two brokers answers through both: keep the first.
                Ok(Some((peer, stats))) => {
                    if !out.iter().any(|o| o.peer == peer) {
                        out.push(NodeServiceStats {
                            peer,
                            rtt: start.elapsed(),
                            stats,
                        });
                    }
                }
                _ => break,
            }
        }
        let mut st = shared.lock();
        for id in ids {
            st.services.queries.remove(&id);
        }
        Ok(out)
    }

    /// Broker endpoints this node knows (configured, its own, and learned from brokers).
    pub fn brokers(&self) -> Vec<String> {
        let state = self.inner.shared.lock();
        state
            .driver
            .services_ref()
            .brokers()
            .map(str::to_owned)
            .collect()
    }

    /// Adds broker endpoints this node should know (and, a broker, tell its peers about).
    pub fn add_brokers(&self, endpoints: &[String]) -> Result<(), Error> {
        self.inner
            .shared
            .command(|d| d.services(|s, io| s.add_brokers(endpoints, io)))?;
        Ok(())
    }

    /// A broker stopping politely: withdraws its offer, refuses new calls and waits (up to
    /// `wait`) until it holds no call. Returns true if it drained in time.
    pub async fn drain(&self, wait: Duration) -> Result<bool, Error> {
        let shared = self.inner.shared.clone();
        shared.command(|d| d.services(|s, io| s.drain(io)))?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if shared.lock().driver.services_ref().is_drained() {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The services layer's counters.
    pub fn service_counters(&self) -> services::Stats {
        self.inner
            .shared
            .lock()
            .driver
            .services_ref()
            .stats()
            .clone()
    }
}
