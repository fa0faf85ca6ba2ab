//! Harness for the routing codecs: `routing_decode`.
//!
//! Byte 0 picks what the rest is: even, a control-layer STATE payload
//! ([`zmesh_core::control::State`], what every zmesh peer sends about itself); odd, a routing
//! target / filter text ([`zmesh_core::routing::Target`], what CLI users type). Checked besides
//! "no panic":
//!
//! * a STATE that decodes re-encodes to exactly the input, and satisfies the limits the
//!   decoder promises (option count, key and value rules, pattern count);
//! * a target that parses prints to a canonical text that parses back to an equal target, and
//!   that text is a fixed point; a filter evaluates without panicking on a peer that has every
//!   key and one that has none.

use zmesh_core::control::wire::{self, State};
use zmesh_core::filter::{Attributes, Filter};
use zmesh_core::routing::Target;

struct Peer(bool);

impl Attributes for Peer {
    fn attr(&self, _key: &str) -> Option<&str> {
        self.0.then_some("1.5")
    }
    fn in_group(&self, _group: &str) -> bool {
        self.0
    }
}

/// `routing_decode` (module docs).
pub fn routing_decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(state) = State::decode(rest) else {
            return;
        };
        assert_eq!(
            &state.encode()[..],
            rest,
            "STATE re-encodes differently: {state:?}"
        );
        assert!(state.options.len() <= wire::MAX_OPTIONS);
        assert!(
            state.requests.len() <= wire::MAX_PATTERNS && state.ticks.len() <= wire::MAX_PATTERNS
        );
        for (k, v) in &state.options {
            assert!(wire::validate_key(k).is_ok() && wire::validate_value(v).is_ok());
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(target) = text.parse::<Target>() else {
        return;
    };
    let canonical = target.to_string();
    let again: Target = canonical
        .parse()
        .unwrap_or_else(|e| panic!("{canonical:?} (from {text:?}) does not parse: {e}"));
    assert_eq!(again, target, "{text:?} -> {canonical:?}");
    assert_eq!(again.to_string(), canonical);
    if let Target::Any(f) | Target::All(f) = &target {
        let f: &Filter = f;
        let _ = f.matches(&Peer(true));
        let _ = f.matches(&Peer(false));
    }
}
