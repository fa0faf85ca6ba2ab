//! Harness for the event emitter's codecs: `events_decode`.
//!
//! Byte 0 even: the rest is a SUBS payload ([`zmesh_core::events::Subs`]); odd: a CREDIT
//! payload. Checked besides "no panic": whatever decodes re-encodes to exactly the input, and a
//! SUBS keeps the pattern limit.

use zmesh_core::events::wire::{self, Subs};

/// `events_decode` (module docs).
pub fn events_decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(s) = Subs::decode(rest) {
            assert_eq!(&s.encode()[..], rest, "SUBS re-encodes differently: {s:?}");
            assert!(s.patterns.len() <= wire::MAX_SUBSCRIPTIONS);
        }
    } else if let Ok(allowed) = wire::decode_credit(rest) {
        assert_eq!(&wire::encode_credit(allowed)[..], rest);
    }
}
