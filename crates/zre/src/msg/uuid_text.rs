//! UUIDs as text, the way Zyre writes them above the wire.

use uuid::Uuid;

/// Formats a UUID the way Zyre does everywhere above the wire: 32 uppercase hex digits, no dashes.
pub fn uuid_to_string(u: &Uuid) -> String {
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    u.simple().encode_upper(&mut buf).to_owned()
}

/// Parses a UUID given as 32 hex digits (any case, Zyre style) or in the dashed form.
pub fn uuid_from_str(s: &str) -> Option<Uuid> {
    let s = s.trim();
    if s.len() != 32 && s.len() != 36 {
        return None;
    }
    Uuid::try_parse(s).ok()
}
