//! Request/reply and ticks on a [`Node`]: the async face of [`zmesh_core::reqrep`].
//!
//! * [`Node::request`] returns a [`Request`] builder; awaiting it (it is `IntoFuture`) sends the
//!   request and waits for exactly one outcome: the reply payload or a [`RequestError`]
//!   (`zmesh_core::reqrep` documents what each outcome says about whether the handler ran).
//!   Dropping the future before it completes **cancels** the request: the responder is told and
//!   its handler sees [`IncomingRequest::cancelled`].
//! * [`Node::on_request`] registers a handler for an event pattern (`sensor.*`, `**`) and returns
//!   the [`Requests`] stream of matching requests; each [`IncomingRequest`] is answered with
//!   [`IncomingRequest::reply`] or [`IncomingRequest::error`], now or later, from any task.
//!   Dropping one unanswered sends nothing (the requester times out); dropping the stream removes
//!   the handler.
//! * [`Node::tick`] sends fire-and-forget; [`Node::on_tick`] receives them as [`Ticks`].
//!
//! Delivery contract: requests and their outcomes never pass through the lossy event queue. A
//! handler stream holds at most the node's running-request limit
//! ([`NodeBuilder::max_running_requests`](super::NodeBuilder::max_running_requests)); beyond it
//! the responder answers `Overloaded` without queueing. Ticks are at-most-once: a tick stream
//! holds [`TICK_QUEUE`] ticks, and ticks beyond that are dropped and counted
//! ([`NodeStats::dropped_ticks`](super::NodeStats::dropped_ticks)).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::{mpsc, oneshot, Notify};
use uuid::Uuid;
use zmesh_core::pattern::Pattern;
use zmesh_core::reqrep::{HandlerId, HandlerKind, InboundKey, RequestId, RequestSpec};

use super::shared::Shared;
use super::Node;
use crate::error::Error;
use crate::RequestError;

/// Ticks a [`Ticks`] stream holds before further ticks are dropped.
pub const TICK_QUEUE: usize = 4096;

/// What a pending request is completed with.
pub(super) type Waiter = oneshot::Sender<Result<Bytes, RequestError>>;

/// Set when a request handed to a handler will not be answered (cancelled, requester gone,
/// expired, node stopped).
#[derive(Debug, Default)]
pub(super) struct CancelFlag {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelFlag {
    pub(super) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Where a handler's deliveries go.
pub(super) enum HandlerTx {
    Request(mpsc::UnboundedSender<IncomingRequest>),
    Tick(mpsc::Sender<IncomingTick>),
}

impl HandlerTx {
    /// Hands a request to the handler; false if its stream is gone.
    pub(super) fn request(
        &self,
        shared: &Arc<Shared>,
        key: InboundKey,
        event: String,
        payload: Bytes,
        deadline: Instant,
        flag: Arc<CancelFlag>,
    ) -> bool {
        let HandlerTx::Request(tx) = self else {
            return false;
        };
        let req = IncomingRequest {
            key,
            event,
            payload,
            deadline,
            flag,
            node: Arc::downgrade(shared),
            answered: false,
        };
        match tx.send(req) {
            Ok(()) => true,
            Err(e) => {
                // Disarm: its Drop must not take the node lock we are holding.
                let mut req = e.0;
                req.answered = true;
                false
            }
        }
    }

    /// Hands a tick to the handler; false if it was dropped (stream full or gone).
    pub(super) fn tick(&self, peer: Uuid, event: String, payload: Bytes) -> bool {
        let HandlerTx::Tick(tx) = self else {
            return false;
        };
        tx.try_send(IncomingTick {
            peer,
            event,
            payload,
        })
        .is_ok()
    }
}

/// A request being prepared: set options, then `.await` it.
#[must_use = "a request is sent when it is awaited"]
#[derive(Debug)]
pub struct Request {
    node: Node,
    spec: RequestSpec,
}

impl Request {
    /// How long to wait for the reply (default: the node's, 10 s unless configured).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.spec.timeout = Some(timeout);
        self
    }

    /// Sends the request now and returns the future of its outcome (what `.await` does, for
    /// callers that send many before awaiting any).
    pub fn send(self) -> ReplyFuture {
        self.into_future()
    }
}

impl IntoFuture for Request {
    type Output = Result<Bytes, RequestError>;
    type IntoFuture = ReplyFuture;

    /// Sends the request now; the returned future waits for its outcome.
    fn into_future(self) -> ReplyFuture {
        let (tx, rx) = oneshot::channel();
        let shared = self.node.inner.shared.clone();
        let peer = Some(self.spec.peer);
        let sent =
            shared.command(|d| d.reqrep(|rr, io| rr.request(Instant::now(), tx, self.spec, io)));
        let (id, immediate) = match sent {
            Ok((Ok(id), _)) => (Some(id), None),
            Ok((Err(e), _)) => (None, Some(RequestError::InvalidName(e))),
            Err(_) => (None, Some(RequestError::Stopped)),
        };
        ReplyFuture::new(Arc::downgrade(&shared), id, rx, immediate, peer)
    }
}

/// The outcome of a request; dropping it before it completes cancels the request.
#[must_use = "dropping the future cancels the request"]
#[derive(Debug)]
pub struct ReplyFuture {
    shared: Weak<Shared>,
    id: Option<RequestId>,
    rx: oneshot::Receiver<Result<Bytes, RequestError>>,
    immediate: Option<RequestError>,
    peer: Option<Uuid>,
    done: bool,
}

impl ReplyFuture {
    pub(super) fn new(
        shared: Weak<Shared>,
        id: Option<RequestId>,
        rx: oneshot::Receiver<Result<Bytes, RequestError>>,
        immediate: Option<RequestError>,
        peer: Option<Uuid>,
    ) -> ReplyFuture {
        ReplyFuture {
            shared,
            id,
            rx,
            immediate,
            peer,
            done: false,
        }
    }

    /// The request's id (`None` if it was refused before being sent).
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The peer the request went to (for [`Node::request_any`](super::Node::request_any): the
    /// one chosen; `None` if nobody matched).
    pub fn peer(&self) -> Option<Uuid> {
        self.peer
    }
}

impl Future for ReplyFuture {
    type Output = Result<Bytes, RequestError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(e) = self.immediate.take() {
            self.done = true;
            return Poll::Ready(Err(e));
        }
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(r) => {
                self.done = true;
                // The layer always completes the waiter; a dropped one means the node is gone.
                Poll::Ready(r.unwrap_or(Err(RequestError::Stopped)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for ReplyFuture {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let (Some(id), Some(shared)) = (self.id, self.shared.upgrade()) {
            let _ = shared.command(|d| d.reqrep(|rr, io| rr.cancel(id, io)));
        }
    }
}

/// A request for one of this node's handlers. Answer it once, from any task.
#[derive(Debug)]
pub struct IncomingRequest {
    key: InboundKey,
    event: String,
    payload: Bytes,
    deadline: Instant,
    flag: Arc<CancelFlag>,
    node: Weak<Shared>,
    answered: bool,
}

impl IncomingRequest {
    /// The requester.
    pub fn peer(&self) -> Uuid {
        self.key.peer
    }

    /// The event name.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The argument.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// When the requester stops waiting (an answer after it is not sent).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the answer would go nowhere: the requester cancelled or left, the deadline
    /// passed, or this node stopped.
    pub fn is_cancelled(&self) -> bool {
        self.flag.cancelled.load(Ordering::Acquire)
    }

    /// Completes when [`IncomingRequest::is_cancelled`] becomes true (for long handlers to stop
    /// early).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.flag.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Answers with a payload.
    pub fn reply(mut self, payload: impl Into<Bytes>) {
        self.answer(Ok(payload.into()));
    }

    /// Answers with an application error; the requester gets [`RequestError::Handler`].
    pub fn error(mut self, code: u16, message: impl Into<String>) {
        self.answer(Err((code, message.into())));
    }

    fn answer(&mut self, result: Result<Bytes, (u16, String)>) {
        self.answered = true;
        let key = self.key;
        if let Some(shared) = self.node.upgrade() {
            let _ = shared.command(|d| {
                d.reqrep(|rr, io| rr.reply(key, result, io));
            });
            shared.lock().running.remove(&key);
        }
    }
}

impl Drop for IncomingRequest {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let key = self.key;
        if let Some(shared) = self.node.upgrade() {
            let _ = shared.command(|d| d.reqrep(|rr, _| rr.abandon(key)));
            shared.lock().running.remove(&key);
        }
    }
}

/// A tick for one of this node's tick handlers.
#[derive(Debug, Clone)]
pub struct IncomingTick {
    /// The sender.
    pub peer: Uuid,
    /// The event name.
    pub event: String,
    /// The argument.
    pub payload: Bytes,
}

/// Unregisters a handler when its stream is dropped.
#[derive(Debug)]
struct Registration {
    node: Weak<Shared>,
    id: HandlerId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(shared) = self.node.upgrade() {
            let id = self.id;
            let _ = shared.command(|d| d.reqrep(|rr, _| rr.unregister(id)));
            shared.lock().handlers.remove(&id);
        }
    }
}

/// The requests matching one handler's pattern. Dropping it removes the handler.
#[derive(Debug)]
pub struct Requests {
    rx: mpsc::UnboundedReceiver<IncomingRequest>,
    _registration: Registration,
}

impl Requests {
    /// The next request; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<IncomingRequest> {
        self.rx.recv().await
    }
}

impl Stream for Requests {
    type Item = IncomingRequest;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// The ticks matching one tick handler's pattern. Dropping it removes the handler.
#[derive(Debug)]
pub struct Ticks {
    rx: mpsc::Receiver<IncomingTick>,
    _registration: Registration,
}

impl Ticks {
    /// The next tick; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<IncomingTick> {
        self.rx.recv().await
    }
}

impl Stream for Ticks {
    type Item = IncomingTick;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Node {
    /// Prepares a request for `event` to `peer`; `.await` it for the reply. See the module docs
    /// of [`zmesh_core::reqrep`] for every outcome and what it says about the handler.
    ///
    /// ```no_run
    /// # async fn demo(node: zmesh::Node, peer: zmesh::Uuid) {
    /// use std::time::Duration;
    /// match node.request(peer, "sensor.read", "temp").timeout(Duration::from_secs(2)).await {
    ///     Ok(reply) => println!("{reply:?}"),
    ///     Err(e) => eprintln!("no reading: {e}"),
    /// }
    /// # }
    /// ```
    pub fn request(
        &self,
        peer: Uuid,
        event: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Request {
        Request {
            node: self.clone(),
            spec: RequestSpec {
                peer,
                event: event.into(),
                payload: payload.into(),
                timeout: None,
            },
        }
    }

    /// Sends a tick (nobody answers). Fails at once if the peer is unknown or does not speak
    /// zmesh requests, or the payload is too large.
    pub fn tick(&self, peer: Uuid, event: &str, payload: impl Into<Bytes>) -> Result<(), Error> {
        let payload = payload.into();
        let (r, _) = self
            .inner
            .shared
            .command(|d| d.reqrep(|rr, io| rr.tick(peer, event, payload, io)))?;
        r.map_err(Error::from)
    }

    /// Registers a request handler for `pattern` (exact, `*` one segment, `**` any number) and
    /// returns its stream of requests. The first handler registered that matches answers.
    pub fn on_request(&self, pattern: &str) -> Result<Requests, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let registration = self.register(pattern, HandlerKind::Request, HandlerTx::Request(tx))?;
        Ok(Requests {
            rx,
            _registration: registration,
        })
    }

    /// Registers a tick handler for `pattern`; every matching tick handler gets each tick.
    pub fn on_tick(&self, pattern: &str) -> Result<Ticks, Error> {
        let (tx, rx) = mpsc::channel(TICK_QUEUE);
        let registration = self.register(pattern, HandlerKind::Tick, HandlerTx::Tick(tx))?;
        Ok(Ticks {
            rx,
            _registration: registration,
        })
    }

    fn register(
        &self,
        pattern: &str,
        kind: HandlerKind,
        tx: HandlerTx,
    ) -> Result<Registration, Error> {
        let pattern = Pattern::parse(pattern).map_err(Error::from)?;
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        if state.stopped {
            return Err(Error::Stopped);
        }
        let id = state.next_handler;
        state.next_handler += 1;
        state.handlers.insert(id, tx);
        state.driver.reqrep(|rr, _| rr.register(id, pattern, kind));
        Ok(Registration {
            node: Arc::downgrade(shared),
            id,
        })
    }
}
