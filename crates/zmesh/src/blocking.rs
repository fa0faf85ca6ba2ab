//! A blocking facade over [`crate::Node`], for programs without an async runtime: plain threads
//! call [`Node::whisper`], [`Events::recv_timeout`] and friends the way Zyre's users call
//! `zyre_whisper` and `zyre_recv`.
//!
//! [`Node::start`] builds a small tokio runtime of its own (one worker thread) that runs the
//! node's tasks; the calls here block the calling thread until the async call they wrap is done.
//! It is the same node as the async API (same wire behaviour, same events, same request/reply),
//! and [`Node::as_async`] reaches the async handle for anything not wrapped here.
//!
//! The handles are `Send`: one thread can receive events while others send. Do not call them
//! from inside an async runtime (blocking there would stall it; tokio panics instead).
//!
//! ```no_run
//! use std::time::Duration;
//! use zmesh::blocking::{Node, RecvTimeoutError};
//! use zmesh::Event;
//!
//! let (node, mut events) = Node::start(zmesh::Node::builder().name("plain").interface("lo".parse().unwrap()))?;
//! node.join("CHAT")?;
//! loop {
//!     match events.recv_timeout(Duration::from_secs(1)) {
//!         Ok(Event::Enter { peer, name, .. }) => node.whisper(peer, vec![format!("hi {name}").into()])?,
//!         Ok(Event::Whisper { name, content, .. }) => println!("{name}: {content:?}"),
//!         Ok(_) | Err(RecvTimeoutError::Timeout) => {}
//!         Err(_) => break, // stopped
//!     }
//! }
//! node.stop();
//! # Ok::<(), zmesh::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Runtime;
use uuid::Uuid;

use crate::{Error, Event, NodeBuilder, PeerInfo, RequestError};

/// A node driven from plain threads. Cloning gives another handle to the same node. When the
/// last handle (node and events) is dropped without [`Node::stop`], the node is stopped politely
/// then.
#[derive(Clone, Debug)]
pub struct Node {
    inner: Arc<Inner>,
}

/// What every handle shares: the runtime must outlive the node's tasks, so both live here.
#[derive(Debug)]
struct Inner {
    node: crate::Node,
    rt: Runtime,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A polite stop (idempotent) before the runtime and its tasks go away; skipped when
        // dropped inside some async runtime, where blocking is not allowed.
        if tokio::runtime::Handle::try_current().is_err() {
            self.rt.block_on(self.node.stop());
        }
    }
}

/// The node's events, received by blocking.
#[derive(Debug)]
pub struct Events {
    events: crate::Events,
    /// Keeps the runtime (and the node) alive while events are read.
    inner: Arc<Inner>,
}

/// Why [`Events::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No event within the timeout; the node is still running.
    #[error("no event within the timeout")]
    Timeout,
    /// The node stopped and every event, STOP included, was received.
    #[error("the node has stopped")]
    Stopped,
}

impl Node {
    /// Starts a node configured by `builder` (see [`crate::Node::builder`]) on a runtime of its
    /// own, and returns it with its event stream.
    pub fn start(builder: NodeBuilder) -> Result<(Node, Events), Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("zmesh-blocking")
            .enable_all()
            .build()?;
        let (node, events) = rt.block_on(builder.start())?;
        let inner = Arc::new(Inner { node, rt });
        Ok((
            Node {
                inner: inner.clone(),
            },
            Events { events, inner },
        ))
    }

    /// The async handle of the same node, for what this facade does not wrap.
    pub fn as_async(&self) -> &crate::Node {
        &self.inner.node
    }

    /// Runs `f` to completion on the node's runtime, blocking this thread.
    ///
    /// (Calls that do not block still enter the runtime's context, so whatever they may spawn
    /// lands on it.)
    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.inner.rt.block_on(f)
    }

    /// Our UUID.
    pub fn uuid(&self) -> Uuid {
        self.inner.node.uuid()
    }

    /// Our public name.
    pub fn name(&self) -> &str {
        self.inner.node.name()
    }

    /// Our endpoint, once an interface is attached.
    pub fn endpoint(&self) -> Option<String> {
        self.inner.node.endpoint()
    }

    /// Joins a group (see [`crate::Node::join`]).
    pub fn join(&self, group: &str) -> Result<(), Error> {
        let _rt = self.inner.rt.enter();
        self.inner.node.join(group)
    }

    /// Leaves a group.
    pub fn leave(&self, group: &str) -> Result<(), Error> {
        let _rt = self.inner.rt.enter();
        self.inner.node.leave(group)
    }

    /// Sends a message to one peer without waiting (see [`crate::Node::whisper`]).
    pub fn whisper(&self, peer: Uuid, content: Vec<Bytes>) -> Result<(), Error> {
        let _rt = self.inner.rt.enter();
        self.inner.node.whisper(peer, content)
    }

    /// Sends a message to one peer, blocking while its outgoing queue is full instead of failing
    /// (see [`crate::Node::whisper_wait`]).
    pub fn whisper_wait(&self, peer: Uuid, content: Vec<Bytes>) -> Result<(), Error> {
        self.block(self.inner.node.whisper_wait(peer, content))
    }

    /// Sends a message to every peer in `group`; returns how many peers it was queued for.
    pub fn shout(&self, group: &str, content: Vec<Bytes>) -> Result<usize, Error> {
        let _rt = self.inner.rt.enter();
        self.inner.node.shout(group, content)
    }

    /// The peers we have a session with.
    pub fn peers(&self) -> Vec<Uuid> {
        self.inner.node.peers()
    }

    /// What we know about one peer.
    pub fn peer_info(&self, peer: Uuid) -> Option<PeerInfo> {
        self.inner.node.peer_info(peer)
    }

    /// A peer's name.
    pub fn peer_name(&self, peer: Uuid) -> Option<String> {
        self.inner.node.peer_name(peer)
    }

    /// Sends a request to a zmesh peer and blocks until its reply or its error (at most
    /// `timeout`; see [`crate::Node::request`] for the outcomes).
    pub fn request(
        &self,
        peer: Uuid,
        event: &str,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let req = self
            .inner
            .node
            .request(peer, event, payload)
            .timeout(timeout);
        self.block(async move { req.send().await })
    }

    /// Stops politely (leave beacon, GOODBYE) and blocks until done. Idempotent; the event stream
    /// then ends after its STOP event.
    pub fn stop(&self) {
        self.block(self.inner.node.stop())
    }
}

impl Events {
    /// Blocks until the next event; `None` once the node has stopped and STOP was received.
    pub fn recv(&mut self) -> Option<Event> {
        let Events { events, inner } = self;
        inner.rt.block_on(events.recv())
    }

    /// Blocks until the next event, at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let Events { events, inner } = self;
        inner.rt.block_on(async {
            match tokio::time::timeout(timeout, events.recv()).await {
                Ok(Some(ev)) => Ok(ev),
                Ok(None) => Err(RecvTimeoutError::Stopped),
                Err(_) => Err(RecvTimeoutError::Timeout),
            }
        })
    }

    /// An event if one is ready, without blocking.
    pub fn try_recv(&mut self) -> Option<Event> {
        let _rt = self.inner.rt.enter();
        self.events.try_recv()
    }
}
