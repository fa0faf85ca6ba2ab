//! The 16-bit ZRE message sequence, and the two ways ZRE implementations wrap it.
//!
//! Every ZRE message carries a `number-2` sequence per (sender → receiver) peer object: HELLO is
//! 1, every further message the previous one's successor, and the receiver drops the sender at the
//! first gap. What "successor" means after 65534 depends on the implementation:
//!
//! | implementation | after 65534 | after 65535 |
//! |---|---|---|
//! | Zyre (C), gyre (Go), zmesh | 65535 | 0 |
//! | Pyre (`(x + 1) % 65535`), zyre.js (same) | 0 | never sent |
//!
//! Each implementation checks what it receives with its own rule, so a zmesh ↔ Pyre or zyre.js
//! session used to break after ~65.5 k messages one way: each side saw a gap and dropped the other
//! (see `docs/zre.md` §4.4, "Sequence wrap").
//!
//! What the engine does about it:
//!
//! * **Receiving**: after 65534 both 65535 and 0 are accepted ([`step`]); every other number must
//!   be exactly the next one, as before. Which of the two came shows the peer's [`SeqWrap`].
//! * **Sending**: after 65534 the engine sends what the peer expects where that can be known: a
//!   zmesh peer (its HELLO carries `X-ZMESH`) wraps like C; a peer whose own sequence has been
//!   seen to wrap wraps the way it was seen to. A plain ZRE peer that has not wrapped yet cannot be
//!   told apart (Pyre, zyre.js and C Zyre send the same HELLO): it is assumed to wrap like Pyre and
//!   zyre.js ([`PLAIN_PEER_WRAP`]), the two plain implementations zmesh is tested against. A C
//!   Zyre peer that has not wrapped its own sequence by the time zmesh wraps then sees a gap and
//!   reconnects once (EXIT, then ENTER again on its next beacon).
//!
//! This module is hand-written because the rule is ZRE's: no crate knows it.

/// How a ZRE implementation continues its message sequence after 65534.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SeqWrap {
    /// Plain 16-bit wrapping: 65534 → 65535 → 0 (Zyre C, gyre, zmesh).
    U16,
    /// `(x + 1) % 65535`: 65534 → 0, 65535 is never used (Pyre, zyre.js).
    Mod65535,
}

/// What the engine assumes for a plain (non-zmesh) peer until it has seen that peer's own
/// sequence wrap. See the module documentation for why.
pub const PLAIN_PEER_WRAP: SeqWrap = SeqWrap::Mod65535;

/// The last sequence number before the two wraps part ways.
const FORK: u16 = u16::MAX - 1;

impl SeqWrap {
    /// The sequence number that follows `seq` under this wrap rule.
    pub fn next(self, seq: u16) -> u16 {
        match self {
            SeqWrap::Mod65535 if seq >= FORK => 0,
            _ => seq.wrapping_add(1),
        }
    }
}

/// What a received sequence number says, given the previous one from the same peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The next number under both rules (no gap, nothing learned).
    Next,
    /// The next number under exactly one rule, which the peer therefore follows.
    Shows(SeqWrap),
    /// Neither rule's next number: messages were lost.
    Gap,
}

/// Checks that `got` follows `prev` under either wrap rule (the receiver's check).
pub fn step(prev: u16, got: u16) -> Step {
    if prev == FORK {
        match got {
            u16::MAX => Step::Shows(SeqWrap::U16),
            0 => Step::Shows(SeqWrap::Mod65535),
            _ => Step::Gap,
        }
    } else if got == prev.wrapping_add(1) {
        Step::Next
    } else {
        Step::Gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_rules_agree_except_at_the_fork() {
        for s in (0..FORK).chain([u16::MAX]) {
            assert_eq!(SeqWrap::U16.next(s), s.wrapping_add(1));
            if s != u16::MAX {
                assert_eq!(SeqWrap::Mod65535.next(s), s + 1);
                assert_eq!(step(s, s + 1), Step::Next);
            }
        }
        assert_eq!(SeqWrap::U16.next(FORK), u16::MAX);
        assert_eq!(SeqWrap::Mod65535.next(FORK), 0);
        // A Mod65535 sender never produces 65535; if it somehow had it, it goes on at 0.
        assert_eq!(SeqWrap::Mod65535.next(u16::MAX), 0);
        assert_eq!(step(u16::MAX, 0), Step::Next);
    }

    #[test]
    fn the_fork_shows_the_rule_and_anything_else_is_a_gap() {
        assert_eq!(step(FORK, u16::MAX), Step::Shows(SeqWrap::U16));
        assert_eq!(step(FORK, 0), Step::Shows(SeqWrap::Mod65535));
        assert_eq!(step(FORK, 1), Step::Gap);
        assert_eq!(step(FORK, FORK), Step::Gap);
        assert_eq!(step(5, 7), Step::Gap);
        assert_eq!(step(5, 5), Step::Gap);
        assert_eq!(step(u16::MAX, 1), Step::Gap);
        // Only at the fork is 0 accepted out of turn.
        assert_eq!(step(FORK - 1, 0), Step::Gap);
    }

    #[test]
    fn a_sender_under_either_rule_never_shows_a_gap() {
        for rule in [SeqWrap::U16, SeqWrap::Mod65535] {
            let mut s = 1u16;
            for _ in 0..140_000u32 {
                let n = rule.next(s);
                assert_ne!(step(s, n), Step::Gap, "{rule:?} {s} -> {n}");
                s = n;
            }
        }
    }
}
