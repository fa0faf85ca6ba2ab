//! The driver's output contract, checked (feature `testing`): the ZRE engine's contract
//! ([`zmesh_zre::testing::Contract`]) applied to what the driver hands its [`Transport`] and
//! [`Sink`], plus the rule the layers add: a frame that is a zmesh envelope goes only to peers
//! whose HELLO announced `X-ZMESH-CAPS`, so plain ZRE peers never receive one.
//!
//! Wrap the shell's transport and sink for each flush:
//!
//! ```text
//! checker.sync(driver.engine_ref());
//! driver.flush(now, &mut checker.transport(&mut t), &mut checker.sink(&mut s));
//! checker.result()?;
//! ```
//!
//! The simulator, the fuzz harness and the tests below use it, so the contract is written once.

use std::cell::RefCell;

use uuid::Uuid;
use zmesh_zre::testing::{Contract, OwnFacts};
use zmesh_zre::{Engine, Event, ZreMessage};

use crate::caps::CAPS_HEADER;
use crate::control;
use crate::driver::{Sink, Transport};
use crate::envelope;
use crate::reqrep;

/// One engine's contract and the first violation seen.
#[derive(Debug, Default)]
pub struct Checker {
    contract: RefCell<Contract>,
    violation: RefCell<Option<String>>,
}

impl Checker {
    /// A checker for the engine as it is now.
    pub fn new(engine: &Engine) -> Checker {
        Checker {
            contract: RefCell::new(Contract::new(OwnFacts::of(engine))),
            violation: RefCell::new(None),
        }
    }

    /// Reads what our HELLO must say from the engine (call before each flush).
    pub fn sync(&self, engine: &Engine) {
        self.contract.borrow_mut().sync(engine);
    }

    /// A polite stop is under way.
    pub fn stopping(&self) {
        self.contract.borrow_mut().stopping();
    }

    /// The first violation, if any.
    pub fn result(&self) -> Result<(), String> {
        match self.violation.borrow().clone() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// The queries of `engine` agree with the events seen.
    pub fn check_queries(&self, engine: &Engine) -> Result<(), String> {
        self.result()?;
        self.contract.borrow().check_queries(engine)
    }

    fn note(&self, r: Result<(), String>) {
        if let Err(e) = r {
            self.violation.borrow_mut().get_or_insert(e);
        }
    }

    /// `inner`, checked.
    pub fn transport<'a, T: Transport>(&'a self, inner: &'a mut T) -> CheckedTransport<'a, T> {
        CheckedTransport {
            checker: self,
            inner,
        }
    }

    /// `inner`, checked.
    pub fn sink<'a, S>(&'a self, inner: &'a mut S) -> CheckedSink<'a, S> {
        CheckedSink {
            checker: self,
            inner,
        }
    }
}

/// A [`Transport`] whose calls are checked against the contract, then forwarded.
#[derive(Debug)]
pub struct CheckedTransport<'a, T> {
    checker: &'a Checker,
    inner: &'a mut T,
}

impl<T: Transport> Transport for CheckedTransport<'_, T> {
    fn connect(&mut self, peer: Uuid, endpoint: &str, public_key: Option<&[u8; 32]>) -> bool {
        let r = self
            .checker
            .contract
            .borrow_mut()
            .connect(peer, endpoint, public_key);
        self.checker.note(r);
        self.inner.connect(peer, endpoint, public_key)
    }

    fn send(&mut self, peer: Uuid, frames: zmesh_zre::Frames) -> bool {
        let r = {
            let mut c = self.checker.contract.borrow_mut();
            c.send(peer, &frames).and_then(|msg| {
                let content = match &msg {
                    ZreMessage::Whisper { content } | ZreMessage::Shout { content, .. } => content,
                    _ => return Ok(()),
                };
                let is_layer = content.len() == 1 && envelope::is_envelope(&content[0]);
                let capable = c
                    .headers_of(&peer)
                    .is_some_and(|h| h.iter().any(|(k, _)| k == CAPS_HEADER));
                if is_layer && !capable {
                    return Err(format!(
                        "a layer envelope was sent to {peer}, which did not announce {CAPS_HEADER}"
                    ));
                }
                Ok(())
            })
        };
        self.checker.note(r);
        self.inner.send(peer, frames)
    }

    fn disconnect(&mut self, peer: Uuid) {
        let r = self.checker.contract.borrow_mut().disconnect(peer);
        self.checker.note(r);
        self.inner.disconnect(peer)
    }
}

/// A [`Sink`] whose events are checked against the contract, then forwarded.
#[derive(Debug)]
pub struct CheckedSink<'a, S> {
    checker: &'a Checker,
    inner: &'a mut S,
}

impl<W, S: Sink<W>> Sink<W> for CheckedSink<'_, S> {
    fn event(&mut self, event: Event) {
        let r = self.checker.contract.borrow_mut().event(&event);
        self.checker.note(r);
        // A layer message must never reach the application as a WHISPER/SHOUT.
        if let Event::Whisper { content, peer, .. } | Event::Shout { content, peer, .. } = &event {
            let announced = self
                .checker
                .contract
                .borrow()
                .headers_of(peer)
                .is_some_and(|h| h.iter().any(|(k, _)| k == CAPS_HEADER));
            if announced && content.len() == 1 && envelope::is_envelope(&content[0]) {
                self.checker.note(Err(format!(
                    "an envelope from {peer} reached the application event stream"
                )));
            }
        }
        self.inner.event(event)
    }

    fn reqrep(&mut self, delivery: reqrep::Delivery<W>) {
        self.inner.reqrep(delivery)
    }

    fn control(&mut self, delivery: control::Delivery) {
        self.inner.control(delivery)
    }

    fn events(&mut self, delivery: crate::events::Delivery) {
        self.inner.events(delivery)
    }

    fn services(&mut self, delivery: crate::services::Delivery<u64>) {
        self.inner.services(delivery)
    }
}
