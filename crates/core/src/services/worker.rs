//! The worker's side: calls handed to the application once, duplicates absorbed, the reply
//! cache (module docs of [`super`] state the guarantee).

use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::state::{encode, Services, Timer};
use super::wire::{self, ErrorBody, ErrorClass};
use super::{CallKey, Delivery};
use crate::envelope::{self, Envelope};
use crate::layer::Io;

/// One path a call arrived on: the peer to answer, and whether it relays (a broker: the answer
/// then names the caller in `dest`).
type Path = (Uuid, bool);

/// One de-duplication entry.
#[derive(Debug)]
pub(super) struct Entry {
    service: String,
    state: EntryState,
}

#[derive(Debug)]
enum EntryState {
    /// Handed to the application, not answered.
    Running {
        paths: Vec<Path>,
        deadline: Instant,
        started: Instant,
    },
    /// Answered (or expired unanswered: `answer` is `None`); kept until `expires`.
    Answered {
        answer: Option<(u8, Bytes)>,
        expires: Instant,
    },
}

impl Entry {
    pub(super) fn is_running(&self) -> bool {
        matches!(self.state, EntryState::Running { .. })
    }
}

/// How many paths a running call remembers (each retry through another broker adds one).
const MAX_PATHS: usize = 8;

impl<W> Services<W> {
    /// Calls handed to the application and not answered.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Entries in the reply cache (running and answered).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// A CALL arrived.
    pub(super) fn on_call(
        &mut self,
        from: Uuid,
        env: Envelope,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        let Some(service) = env.subject.clone() else {
            return self.malformed(from, "CALL without service");
        };
        if self.config.broker {
            return self.relay_call(from, env, service, now, io);
        }
        // Only a broker names another caller: from anyone else it would be a spoof (and would
        // read that caller's cached replies).
        if env.origin.is_some() && !self.peers.get(&from).is_some_and(|r| r.offer.broker) {
            return self.malformed(
                from,
                "CALL naming an origin from a peer that is not a broker",
            );
        }
        self.stats.calls_received += 1;
        let key = CallKey {
            caller: env.origin.unwrap_or(from),
            id: env.id,
        };
        let path = (from, env.origin.is_some());
        let ttl = Duration::from_millis(u64::from(
            env.ttl_ms
                .unwrap_or(self.config.default_timeout.as_millis() as u32),
        ));
        if let Some(entry) = self.cache.get_mut(&key) {
            self.stats.duplicates += 1;
            if let Some(s) = self.offered.get_mut(&entry.service) {
                s.duplicates += 1;
            }
            let mut rearm = None;
            match &mut entry.state {
                EntryState::Running {
                    paths, deadline, ..
                } => {
                    if !paths.contains(&path) && paths.len() < MAX_PATHS {
                        paths.push(path);
                    }
                    let later = now + ttl;
                    if later > *deadline {
                        *deadline = later;
                        rearm = Some(later);
                    }
                }
                EntryState::Answered { answer, .. } => {
                    if let Some((kind, payload)) = answer.clone() {
                        let frame = answer_frame(self.next_id, key, path, kind, payload);
                        self.next_id = self.next_id.wrapping_add(1);
                        io.send(from, frame);
                    }
                }
            }
            if let Some(at) = rearm {
                self.arm(at, Timer::Running(key));
            }
            return;
        }
        let refuse = if !self.offered.contains_key(&service) {
            Some((ErrorClass::NoService, "service not offered here"))
        } else if env.payload.len() > self.config.max_payload {
            Some((ErrorClass::Overloaded, "payload too large"))
        } else if self.running >= self.config.max_running {
            Some((ErrorClass::Overloaded, "too many calls running"))
        } else if self.cache.len() >= self.config.max_cached && !self.evict_one() {
            Some((ErrorClass::Overloaded, "reply cache full of running calls"))
        } else {
            None
        };
        if let Some((class, why)) = refuse {
            // Nothing ran, nothing is cached: a retry may be taken.
            if class == ErrorClass::Overloaded {
                self.stats.refused += 1;
            }
            let body = ErrorBody {
                class,
                code: 0,
                message: why.into(),
            };
            let frame = answer_frame(self.next_id, key, path, wire::ERROR, body.encode());
            self.next_id = self.next_id.wrapping_add(1);
            io.send(from, frame);
            return;
        }
        let deadline = now + ttl;
        self.cache.insert(
            key,
            Entry {
                service: service.clone(),
                state: EntryState::Running {
                    paths: vec![path],
                    deadline,
                    started: now,
                },
            },
        );
        self.running += 1;
        let s = self.offered.get_mut(&service).expect("offered");
        s.requests += 1;
        s.running += 1;
        self.arm(deadline, Timer::Running(key));
        io.deliver(Delivery::Call {
            key,
            service,
            payload: env.payload,
            attempt: env.attempt.unwrap_or(0),
            deadline,
        });
    }

    /// Answers a call handed to the application: the reply (or the handler's error code and
    /// message) goes to every path the call arrived on, and is cached for the window. False if
    /// the call is not running (answered, expired, withdrawn): nothing is sent.
    pub fn reply(
        &mut self,
        key: CallKey,
        result: Result<Bytes, (u16, String)>,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) -> bool {
        let Some(entry) = self.cache.get_mut(&key) else {
            self.stats.replies_after_end += 1;
            return false;
        };
        let EntryState::Running { paths, started, .. } = &mut entry.state else {
            self.stats.replies_after_end += 1;
            return false;
        };
        let (paths, started) = (std::mem::take(paths), *started);
        let (kind, payload) = match &result {
            Ok(p) => (wire::REPLY, p.clone()),
            Err((code, message)) => (
                wire::ERROR,
                ErrorBody {
                    class: ErrorClass::Handler,
                    code: *code,
                    message: message.clone(),
                }
                .encode(),
            ),
        };
        if let Some(s) = self.offered.get_mut(&entry.service) {
            s.running = s.running.saturating_sub(1);
            s.processing_ns = s
                .processing_ns
                .saturating_add(now.saturating_duration_since(started).as_nanos() as u64);
            if let Err((_, message)) = &result {
                s.errors += 1;
                s.last_error = message.clone();
            }
        }
        for path in paths {
            let frame = answer_frame(self.next_id, key, path, kind, payload.clone());
            self.next_id = self.next_id.wrapping_add(1);
            io.send(path.0, frame);
        }
        self.running -= 1;
        self.cached_bytes += payload.len();
        let expires = now + self.config.dedup_window;
        entry.state = EntryState::Answered {
            answer: Some((kind, payload)),
            expires,
        };
        self.answered.push_back((expires, key));
        while self.cached_bytes > self.config.max_cached_bytes && self.evict_one() {}
        true
    }

    /// Evicts the oldest answered entry; false if there is none.
    fn evict_one(&mut self) -> bool {
        while let Some((expires, key)) = self.answered.pop_front() {
            if self.remove_answered(key, Some(expires)) {
                self.stats.evicted += 1;
                return true;
            }
        }
        false
    }

    /// Removes `key` if it is answered (and, if given, expires at `expires`).
    fn remove_answered(&mut self, key: CallKey, expires: Option<Instant>) -> bool {
        let hit = match self.cache.get(&key).map(|e| &e.state) {
            Some(EntryState::Answered { expires: e, .. }) => expires.is_none_or(|x| x == *e),
            _ => false,
        };
        if hit {
            if let Some(Entry {
                state:
                    EntryState::Answered {
                        answer: Some((_, p)),
                        ..
                    },
                ..
            }) = self.cache.remove(&key)
            {
                self.cached_bytes -= p.len();
            }
        }
        hit
    }

    /// Drops answered entries whose window has passed.
    pub(super) fn expire_answered(&mut self, now: Instant) {
        while let Some(&(expires, key)) = self.answered.front() {
            if expires > now {
                break;
            }
            self.answered.pop_front();
            self.remove_answered(key, Some(expires));
        }
    }

    /// A running call's deadline passed: the application is told, and the entry is kept as
    /// answered-with-nothing for the window (a late duplicate is absorbed, not re-run).
    pub(super) fn running_timer(
        &mut self,
        key: CallKey,
        at: Instant,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        let due = matches!(
            self.cache.get(&key).map(|e| &e.state),
            Some(EntryState::Running { deadline, .. }) if *deadline == at
        );
        if due {
            self.expire_running(key, now, io);
        }
    }

    fn expire_running(&mut self, key: CallKey, now: Instant, io: &mut impl Io<Delivery<W>>) {
        let Some(entry) = self.cache.get_mut(&key) else {
            return;
        };
        let expires = now + self.config.dedup_window;
        entry.state = EntryState::Answered {
            answer: None,
            expires,
        };
        if let Some(s) = self.offered.get_mut(&entry.service) {
            s.running = s.running.saturating_sub(1);
        }
        self.running -= 1;
        self.answered.push_back((expires, key));
        io.deliver(Delivery::Ended { key });
    }

    /// Ends the running calls of a withdrawn service.
    pub(super) fn end_running_of(
        &mut self,
        service: &str,
        now: Instant,
        io: &mut impl Io<Delivery<W>>,
    ) {
        let mut keys: Vec<CallKey> = self
            .cache
            .iter()
            .filter(|(_, e)| e.is_running() && e.service == service)
            .map(|(k, _)| *k)
            .collect();
        keys.sort_unstable();
        for key in keys {
            self.expire_running(key, now, io);
        }
    }
}

/// A REPLY/ERROR frame for `key` along `path`.
fn answer_frame(id: u64, key: CallKey, path: Path, kind: u8, payload: Bytes) -> Bytes {
    let mut env = Envelope::new(envelope::Layer::SERVICES, kind, id);
    env.corr = Some(key.id);
    if path.1 {
        env.dest = Some(key.caller);
    }
    env.payload = payload;
    encode(&env)
}
