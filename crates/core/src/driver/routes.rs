//! Routed requests and ticks on the driver: `any`, `all` (a gather), and the candidate list
//! ([`crate::routing`] has the rules).

use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::Driver;
use crate::filter::Filter;
use crate::pattern::{self, NameError};
use crate::reqrep::{
    GatherId, GatherSpec, HandlerKind, NoResponders, RequestError, RequestId, RequestSpec,
    TickError,
};
use crate::routing::Router;

/// A request to route: what to send, not where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// Event name.
    pub event: String,
    /// Argument.
    pub payload: Bytes,
    /// `None`: the layer's default timeout.
    pub timeout: Option<Duration>,
}

impl<W> Driver<W> {
    /// The peers that match `filter` and serve `event` (requests, or ticks), in UUID order.
    pub fn candidates(&self, filter: &Filter, event: &str, kind: HandlerKind) -> Vec<Uuid> {
        Router::candidates(&self.control.layer, filter, event, kind).collect()
    }

    /// Sends a request to **any** candidate (least outstanding, round robin among equals) and
    /// returns its id and the peer chosen. With no candidate it ends at once with
    /// `NoResponders(NoMatch)` (its `Done` is delivered, peer `None`). Fails only for an invalid
    /// event name.
    pub fn request_any(
        &mut self,
        now: Instant,
        waiter: W,
        filter: &Filter,
        routed: Routed,
    ) -> Result<(RequestId, Option<Uuid>), NameError> {
        pattern::validate_name(&routed.event)?;
        let peer = self.pick(filter, &routed.event, HandlerKind::Request);
        let out = &mut self.reqrep.out;
        let rr = &mut self.reqrep.layer;
        let Some(peer) = peer else {
            let error = RequestError::NoResponders(NoResponders::NoMatch);
            return Ok((rr.refuse(waiter, error, out), None));
        };
        let spec = RequestSpec {
            peer,
            event: routed.event,
            payload: routed.payload,
            timeout: routed.timeout,
        };
        Ok((rr.request(now, waiter, spec, out)?, Some(peer)))
    }

    /// Sends a request to **all** candidates and gathers their outcomes
    /// ([`ReqRep::gather`](crate::reqrep::ReqRep::gather); `spec.peers` is replaced by the
    /// candidates). Returns the gather's id and each peer asked with its request id.
    pub fn request_all(
        &mut self,
        now: Instant,
        filter: &Filter,
        mut spec: GatherSpec,
    ) -> Result<(GatherId, Vec<(Uuid, RequestId)>), NameError> {
        pattern::validate_name(&spec.event)?;
        spec.peers = self.candidates(filter, &spec.event, HandlerKind::Request);
        self.reqrep.layer.gather(now, spec, &mut self.reqrep.out)
    }

    /// Sends a tick to **any** candidate (tick handlers; rotating); returns the peer.
    pub fn tick_any(
        &mut self,
        filter: &Filter,
        event: &str,
        payload: Bytes,
    ) -> Result<Uuid, TickError> {
        pattern::validate_name(event).map_err(TickError::Name)?;
        let peer = self
            .pick(filter, event, HandlerKind::Tick)
            .ok_or(TickError::Request(RequestError::NoResponders(
                NoResponders::NoMatch,
            )))?;
        self.reqrep
            .layer
            .tick(peer, event, payload, &mut self.reqrep.out)?;
        Ok(peer)
    }

    /// Sends a tick to **all** candidates (tick handlers); returns the peers it went to.
    pub fn tick_all(
        &mut self,
        filter: &Filter,
        event: &str,
        payload: Bytes,
    ) -> Result<Vec<Uuid>, TickError> {
        pattern::validate_name(event).map_err(TickError::Name)?;
        let peers = self.candidates(filter, event, HandlerKind::Tick);
        if peers.is_empty() {
            return Err(TickError::Request(RequestError::NoResponders(
                NoResponders::NoMatch,
            )));
        }
        for peer in &peers {
            self.reqrep
                .layer
                .tick(*peer, event, payload.clone(), &mut self.reqrep.out)?;
        }
        Ok(peers)
    }

    fn pick(&mut self, filter: &Filter, event: &str, kind: HandlerKind) -> Option<Uuid> {
        let rr = &self.reqrep.layer;
        let loads = Router::candidates(&self.control.layer, filter, event, kind)
            .map(|p| (p, rr.pending_to(p)));
        self.router.pick(kind, loads)
    }
}
