//! Capabilities: which layers a peer speaks, announced once in its HELLO headers.
//!
//! HELLO headers are fixed for the life of a ZRE session, which is exactly right for "which
//! protocols does this node understand". A zmesh node adds `X-ZMESH-CAPS: req` (a comma list of
//! tokens, one per layer it runs); a layer sends envelopes only to peers whose list has its token,
//! so plain Zyre, Pyre and zyre.js peers (no header) and older zmesh nodes never see one. Anything
//! that changes at run time (options, subscriptions, offers) travels as layer messages instead.

use crate::envelope::Layer;

/// The HELLO header that lists a node's layers.
pub const CAPS_HEADER: &str = "X-ZMESH-CAPS";

/// The token a layer is announced with, written once here.
pub fn token(layer: Layer) -> Option<&'static str> {
    Some(match layer {
        Layer::CONTROL => "ctl",
        Layer::REQREP => "req",
        Layer::EVENTS => "ev",
        Layer::SERVICES => "svc",
        Layer::ELECTION => "elect",
        Layer::LOG => "log",
        Layer::FILES => "files",
        _ => return None,
    })
}

/// The set of layers a peer announced (a bit per layer byte below 64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Caps(u64);

impl Caps {
    /// No layer: a plain ZRE peer.
    pub const NONE: Caps = Caps(0);

    /// The capabilities announced in a HELLO's headers (unknown tokens are ignored: they are
    /// layers of a newer version).
    pub fn from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Caps {
        let mut caps = Caps::NONE;
        for (k, v) in headers {
            if k != CAPS_HEADER {
                continue;
            }
            for t in v.split(',').map(str::trim) {
                if let Some(l) = (1..64u8).map(Layer).find(|l| token(*l) == Some(t)) {
                    caps = caps.with(l);
                }
            }
        }
        caps
    }

    /// These capabilities plus `layer`.
    pub fn with(self, layer: Layer) -> Caps {
        if layer.0 < 64 {
            Caps(self.0 | 1 << layer.0)
        } else {
            self
        }
    }

    /// True if `layer` was announced.
    pub fn has(self, layer: Layer) -> bool {
        layer.0 < 64 && self.0 & (1 << layer.0) != 0
    }

    /// The header value announcing these capabilities (`req,ev`), in layer order.
    pub fn header_value(self) -> String {
        (1..64u8)
            .map(Layer)
            .filter(|l| self.has(*l))
            .filter_map(token)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let c = Caps::NONE.with(Layer::REQREP).with(Layer::EVENTS);
        assert_eq!(c.header_value(), "req,ev");
        let parsed = Caps::from_headers([("X-ZMESH", "1"), (CAPS_HEADER, " req , ev,future")]);
        assert_eq!(parsed, c);
        assert!(!Caps::from_headers([("X-ZMESH", "1")]).has(Layer::REQREP));
    }
}
