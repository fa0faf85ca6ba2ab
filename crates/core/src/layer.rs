//! The seam every protocol above ZRE plugs into: a [`Layer`] is plain state driven by [`Input`]s and
//! an explicit `now`, and it acts only through an [`Io`].
//!
//! This is the shape of iroh-gossip's `proto::State::handle(InEvent, now)` and of quinn-proto: no
//! sockets, no clock, no tokio. The same layer value runs inside the node task (the async shell in
//! crate `zmesh` moves bytes and time) and inside the simulator (virtual clock, faulty virtual
//! network), so what the simulator proves is what production runs.
//!
//! * **Inputs** are what a layer can learn: a peer that speaks zmesh came up (with its HELLO
//!   headers and announced [`Caps`]) or went away, a peer joined or left a group, an [`Envelope`]
//!   addressed to this layer arrived, the layer's timer fired, or the application issued one of
//!   the layer's commands.
//! * **Outputs** go through [`Io`]: send a frame to a peer (a WHISPER), to a group (a SHOUT), or
//!   deliver something to the application. Frames are whole envelopes, so every layer's traffic
//!   travels in one content frame that plain ZRE peers never receive ([`crate::envelope`]).
//! * **Timers** are pulled, quinn-style: [`Layer::poll_timeout`] names the next instant the layer
//!   must be called with [`Input::Timeout`]. A pulled deadline cannot be lost or duplicated, and
//!   the shell arms one timer for all layers and the ZRE engine together.
//!
//! Delivery and back-pressure are each layer's business and each layer states its contract in its
//! module doc. What the seam guarantees is that layer traffic never passes through the
//! application's lossy event queue: envelopes are taken out of the ZRE event stream before it.

use std::time::Instant;

use bytes::Bytes;
use uuid::Uuid;

use crate::caps::Caps;
use crate::envelope::{self, Envelope};

/// What a layer knows about a peer when it comes up.
#[derive(Debug, Clone, Copy)]
pub struct PeerView<'a> {
    /// The peer's UUID.
    pub peer: Uuid,
    /// Its public name.
    pub name: &'a str,
    /// Its HELLO headers.
    pub headers: &'a [(String, String)],
    /// The layers it announced.
    pub caps: Caps,
}

/// One input to a layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input<'a, C> {
    /// A peer entered (ZRE ENTER). Plain ZRE peers come up too, with empty [`Caps`].
    PeerUp(PeerView<'a>),
    /// A peer that came up is gone (ZRE EXIT).
    PeerDown {
        /// The peer.
        peer: Uuid,
    },
    /// A peer joined a group.
    Joined {
        /// The peer.
        peer: Uuid,
        /// The group.
        group: &'a str,
    },
    /// A peer left a group.
    Left {
        /// The peer.
        peer: Uuid,
        /// The group.
        group: &'a str,
    },
    /// An envelope for this layer from `from` (WHISPER, or SHOUT to `group`).
    Envelope {
        /// The ZRE sender.
        from: Uuid,
        /// The group, if it came as a SHOUT.
        group: Option<&'a str>,
        /// The decoded envelope.
        envelope: Envelope,
    },
    /// `now` has reached the layer's [`Layer::poll_timeout`].
    Timeout,
    /// An application command.
    Command(C),
}

impl<'a> Input<'a, std::convert::Infallible> {
    /// The same input for a layer with commands of type `C` (an input without a command, as the
    /// driver broadcasts peer and group events to every layer).
    pub fn widen<C>(self) -> Input<'a, C> {
        match self {
            Input::PeerUp(v) => Input::PeerUp(v),
            Input::PeerDown { peer } => Input::PeerDown { peer },
            Input::Joined { peer, group } => Input::Joined { peer, group },
            Input::Left { peer, group } => Input::Left { peer, group },
            Input::Envelope {
                from,
                group,
                envelope,
            } => Input::Envelope {
                from,
                group,
                envelope,
            },
            Input::Timeout => Input::Timeout,
            Input::Command(never) => match never {},
        }
    }
}

/// Where a layer's outputs go.
pub trait Io<D> {
    /// Queue one envelope frame for one peer (it becomes a WHISPER).
    fn send(&mut self, peer: Uuid, frame: Bytes);
    /// Queue one envelope frame for every member of a group (it becomes a SHOUT).
    fn shout(&mut self, group: &str, frame: Bytes);
    /// Hand something to the application.
    fn deliver(&mut self, delivery: D);
}

/// A sans-IO protocol above ZRE.
pub trait Layer {
    /// The envelope layer byte this layer owns; the driver routes envelopes by it.
    const ID: envelope::Layer;
    /// Application commands.
    type Command;
    /// What the layer hands to the application.
    type Delivery;

    /// Handles one input at `now`; outputs go to `io`.
    fn handle(
        &mut self,
        input: Input<'_, Self::Command>,
        now: Instant,
        io: &mut impl Io<Self::Delivery>,
    );

    /// When the layer next needs [`Input::Timeout`]; `None` if it waits for nothing.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// An [`Io`] that records everything, for tests, the fuzz harness and the simulator.
#[derive(Debug)]
pub struct Recorded<D> {
    /// Frames sent to peers, in order.
    pub sent: Vec<(Uuid, Bytes)>,
    /// Frames shouted to groups, in order.
    pub shouted: Vec<(String, Bytes)>,
    /// Deliveries, in order.
    pub delivered: Vec<D>,
}

impl<D> Default for Recorded<D> {
    fn default() -> Self {
        Recorded {
            sent: Vec::new(),
            shouted: Vec::new(),
            delivered: Vec::new(),
        }
    }
}

impl<D> Io<D> for Recorded<D> {
    fn send(&mut self, peer: Uuid, frame: Bytes) {
        self.sent.push((peer, frame));
    }
    fn shout(&mut self, group: &str, frame: Bytes) {
        self.shouted.push((group.to_owned(), frame));
    }
    fn deliver(&mut self, delivery: D) {
        self.delivered.push(delivery);
    }
}

/// One side of [`pump_pair`]: a layer, its own UUID and what it recorded.
pub type Side<'a, L> = (&'a mut L, Uuid, &'a mut Recorded<<L as Layer>::Delivery>);

/// Wires two layers back to back (for tests): moves every frame one side sent to the other, as an
/// envelope from its sender, until neither sends more. A frame addressed to anyone but the other
/// side, or one that does not decode, is a bug in the layer under test: it panics.
pub fn pump_pair<L: Layer>(a: Side<'_, L>, b: Side<'_, L>, now: Instant) {
    let (a, a_id, ao) = a;
    let (b, b_id, bo) = b;
    loop {
        let to_b = std::mem::take(&mut ao.sent);
        let to_a = std::mem::take(&mut bo.sent);
        if to_a.is_empty() && to_b.is_empty() {
            return;
        }
        for (to, from, frames, layer, out) in [
            (b_id, a_id, to_b, &mut *b, &mut *bo),
            (a_id, b_id, to_a, &mut *a, &mut *ao),
        ] {
            for (peer, frame) in frames {
                assert_eq!(
                    peer, to,
                    "a frame went to a peer that is not the other side"
                );
                let envelope = Envelope::decode(&frame)
                    .expect("the layer sent an envelope that does not decode");
                let input = Input::Envelope {
                    from,
                    group: None,
                    envelope,
                };
                layer.handle(input, now, out);
            }
        }
    }
}
