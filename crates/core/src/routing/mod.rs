//! Routing: which peer a request or tick goes to — one peer, **any** peer that matches a
//! [`Filter`], **all** of them, or the members of a group (Zeronode's targets, `requestAny`,
//! `requestAll`, `tickAny`, `tickAll`).
//!
//! Candidates come from the control layer's directory ([`crate::control`]): a peer is a
//! candidate for an event if it runs the request layer and the control layer (so a plain Zyre,
//! Pyre or zyre.js peer never is), it has **joined** (its STATE arrived), it **advertised a
//! handler** whose pattern matches the event (requests and ticks separately), and the filter
//! matches its options and HELLO headers. So `any` never picks a peer that would answer "no
//! handler", and finding no candidate fails at once with `NoResponders(NoMatch)`.
//!
//! **any** picks, among the candidates, the one with the fewest of *our* requests outstanding
//! to it, and among equals the next one after the previous pick in UUID order: round robin,
//! deterministic, not random (Zeronode and NATS queue groups pick at random, and their users
//! see it: nats-server#365, #1144, nats.go#610). Equal responders therefore get equal counts,
//! and a slow one — whose requests stay outstanding longer — gets proportionally fewer. Ticks
//! have no outstanding count; they rotate through the candidates (their own rotation, so
//! interleaved ticks do not disturb the requests').
//!
//! **all** sends one request to every candidate and gathers the outcomes
//! ([`ReqRep::gather`](crate::reqrep::ReqRep::gather)); a group is `all` with the filter
//! `@group`. The driver applies all of this ([`Driver::request_any`](crate::driver::Driver)
//! and friends); this module holds the rotation state and the textual [`Target`].

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use uuid::Uuid;

use crate::control::Control;
use crate::envelope::Layer;
use crate::filter::{self, Filter};
use crate::reqrep::HandlerKind;

/// The round-robin state of `any` (module docs).
#[derive(Debug, Default, Clone)]
pub struct Router {
    /// The previous pick for requests and for ticks.
    last: [Option<Uuid>; 2],
}

impl Router {
    /// The candidates for `event` (module docs), in UUID order.
    pub fn candidates<'a>(
        directory: &'a Control,
        filter: &'a Filter,
        event: &'a str,
        kind: HandlerKind,
    ) -> impl Iterator<Item = Uuid> + 'a {
        directory.peers().filter_map(move |(uuid, rec)| {
            let ok = rec.caps.has(Layer::CONTROL)
                && rec.caps.has(Layer::REQREP)
                && rec.serves(event, kind == HandlerKind::Tick)
                && filter.matches(rec);
            ok.then_some(uuid)
        })
    }

    /// Picks one of `loads` (candidate, outstanding requests), given in UUID order: the least
    /// loaded, the next after the previous pick among equals. `None` if there is none.
    pub fn pick(
        &mut self,
        kind: HandlerKind,
        loads: impl IntoIterator<Item = (Uuid, usize)>,
    ) -> Option<Uuid> {
        let slot = usize::from(kind == HandlerKind::Tick);
        let pick = least_loaded_after(loads, self.last[slot]);
        if pick.is_some() {
            self.last[slot] = pick;
        }
        pick
    }
}

/// Where a request or tick goes, as written on a command line.
///
/// ```text
/// any                  any peer that serves the event
/// any:FILTER           any peer that serves the event and matches FILTER
/// all | all:FILTER     every such peer
/// group:NAME           every member of the group that serves the event (all:@NAME)
/// NAME | UUID          one peer, by name or by UUID (32 hex digits, dashes allowed)
/// ```
///
/// FILTER is the syntax of [`crate::filter`] (`role=sensor,zone~^eu-`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Target {
    /// One peer by UUID.
    Peer(Uuid),
    /// One peer by name (names are not unique: the shell picks one).
    Name(String),
    /// Any peer that matches.
    Any(Filter),
    /// Every peer that matches.
    All(Filter),
}

/// Why a target does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The filter after `any:` / `all:` does not parse.
    #[error(transparent)]
    Filter(#[from] filter::ParseError),
    /// An empty target, or `group:` without a name.
    #[error("empty target")]
    Empty,
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Target, TargetError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TargetError::Empty);
        }
        for (word, all) in [("any", false), ("all", true)] {
            let rest = if s == word {
                Some("")
            } else {
                s.strip_prefix(word).and_then(|r| r.strip_prefix(':'))
            };
            if let Some(rest) = rest {
                // Positions in errors count from the start of the target.
                let offset = s.len() - rest.len();
                let f = filter::parse(rest).map_err(|mut e| {
                    e.pos += offset;
                    e
                })?;
                return Ok(if all { Target::All(f) } else { Target::Any(f) });
            }
        }
        if let Some(g) = s.strip_prefix("group:") {
            if g.is_empty() {
                return Err(TargetError::Empty);
            }
            return Ok(Target::All(Filter::group(g)));
        }
        if let Some(u) = zmesh_zre::uuid_from_str(s) {
            return Ok(Target::Peer(u));
        }
        Ok(Target::Name(s.to_owned()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Peer(u) => f.write_str(&zmesh_zre::uuid_to_string(u)),
            Target::Name(n) => f.write_str(n),
            Target::Any(Filter::Everyone) => f.write_str("any"),
            Target::All(Filter::Everyone) => f.write_str("all"),
            Target::Any(x) => write!(f, "any:{x}"),
            Target::All(x) => write!(f, "all:{x}"),
        }
    }
}

/// The balancing rule of every "any" choice (requests, ticks, service calls): among `loads`
/// (candidate, outstanding), given in UUID order, the least loaded; among equals the first after
/// `last` (the previous pick), wrapping around to the first. Round robin, never random, so a
/// fair share is exact and visible.
pub fn least_loaded_after(
    loads: impl IntoIterator<Item = (Uuid, usize)>,
    last: Option<Uuid>,
) -> Option<Uuid> {
    let mut best: Option<(usize, bool, Uuid)> = None;
    for (uuid, load) in loads {
        let after = last.is_some_and(|l| uuid > l);
        let better = match best {
            None => true,
            Some((bl, ba, _)) => load < bl || (load == bl && after && !ba),
        };
        if better {
            best = Some((load, after, uuid));
        }
    }
    best.map(|b| b.2)
}

#[cfg(test)]
mod tests;
