//! Event names and the patterns that match them (handlers now; topics and routing later).
//!
//! A name is a non-empty, dot-separated list of non-empty segments (`sensor.temp.read`) of at most
//! [`MAX_NAME`] bytes, without `*`. A pattern is the same with two wildcards that stand for whole
//! segments: `*` matches exactly one segment, `**` any number of segments (zero included). So
//! `sensor.*` matches `sensor.temp` but not `sensor` or `sensor.temp.read`, `sensor.**` matches all
//! three, and `**` matches everything (nanomitter's catch-all `*` is `**` here; NATS's `a.>` is
//! `a.*.**`). Globs are first-class rather than regular expressions because they can be checked,
//! sent to other nodes and compared; a pattern is matched in O(segments²) at worst, never
//! exponential time.
//!
//! Validation rules live here once; the layers and the node call [`validate_name`] and
//! [`Pattern::parse`].

use std::fmt;

use thiserror::Error;

/// Longest event name or pattern, in bytes.
pub const MAX_NAME: usize = 255;

/// Why a name or pattern is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty name.
    #[error("empty name")]
    Empty,
    /// Longer than [`MAX_NAME`] bytes.
    #[error("name of {0} bytes exceeds {MAX_NAME}")]
    TooLong(usize),
    /// `a..b`, a leading or trailing dot.
    #[error("empty segment in {0:?}")]
    EmptySegment(String),
    /// A `*` inside a segment (`ab*`), or any `*` in a plain name.
    #[error("wildcard must be a whole segment ('*' or '**') of a pattern: {0:?}")]
    Wildcard(String),
}

fn check_common(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME {
        return Err(NameError::TooLong(s.len()));
    }
    if s.split('.').any(str::is_empty) {
        return Err(NameError::EmptySegment(s.to_owned()));
    }
    Ok(())
}

/// Checks a concrete event name (no wildcards).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    check_common(name)?;
    if name.contains('*') {
        return Err(NameError::Wildcard(name.to_owned()));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Lit(String),
    One,
    Many,
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
    segs: Vec<Seg>,
}

impl Pattern {
    /// Parses and validates a pattern.
    pub fn parse(text: &str) -> Result<Pattern, NameError> {
        check_common(text)?;
        let mut segs: Vec<Seg> = Vec::new();
        for s in text.split('.') {
            let seg = match s {
                "*" => Seg::One,
                "**" => Seg::Many,
                s if s.contains('*') => return Err(NameError::Wildcard(text.to_owned())),
                s => Seg::Lit(s.to_owned()),
            };
            // `**.**` means the same as `**`.
            if seg == Seg::Many && segs.last() == Some(&Seg::Many) {
                continue;
            }
            segs.push(seg);
        }
        Ok(Pattern {
            text: text.to_owned(),
            segs,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if the pattern has no wildcard (it matches one name only).
    pub fn is_exact(&self) -> bool {
        self.segs.iter().all(|s| matches!(s, Seg::Lit(_)))
    }

    /// True if `name` (a valid name) matches.
    pub fn matches(&self, name: &str) -> bool {
        if self.is_exact() {
            return self.text == name;
        }
        let parts: Vec<&str> = name.split('.').collect();
        // reach[j]: the pattern prefix seen so far matches parts[..j].
        let mut reach = vec![false; parts.len() + 1];
        reach[0] = true;
        for seg in &self.segs {
            let mut next = vec![false; parts.len() + 1];
            match seg {
                Seg::Many => {
                    let mut any = false;
                    for j in 0..=parts.len() {
                        any |= reach[j];
                        next[j] = any;
                    }
                }
                Seg::One => {
                    next[1..].copy_from_slice(&reach[..parts.len()]);
                }
                Seg::Lit(l) => {
                    for j in 0..parts.len() {
                        next[j + 1] = reach[j] && parts[j] == l;
                    }
                }
            }
            reach = next;
        }
        reach[parts.len()]
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Pattern::parse(p).unwrap().matches(n)
    }

    #[test]
    fn wildcards() {
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "a.c"));
        assert!(m("a.*", "a.b"));
        assert!(!m("a.*", "a"));
        assert!(!m("a.*", "a.b.c"));
        assert!(m("a.**", "a"));
        assert!(m("a.**", "a.b.c"));
        assert!(!m("a.**", "b.a"));
        assert!(m("**", "x.y.z"));
        assert!(m("*", "x"));
        assert!(!m("*", "x.y"));
        assert!(m("a.**.z", "a.z"));
        assert!(m("a.**.z", "a.b.c.z"));
        assert!(!m("a.**.z", "a.b.c"));
        assert!(m("*.**.*", "a.b"));
        assert!(!m("*.**.*", "a"));
        assert!(m("**.**.x", "x"));
    }

    #[test]
    fn validation() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert!(matches!(
            validate_name("a..b"),
            Err(NameError::EmptySegment(_))
        ));
        assert!(matches!(validate_name("a.*"), Err(NameError::Wildcard(_))));
        assert!(matches!(Pattern::parse("a*"), Err(NameError::Wildcard(_))));
        assert!(matches!(Pattern::parse("***"), Err(NameError::Wildcard(_))));
        assert_eq!(
            validate_name(&"x".repeat(256)),
            Err(NameError::TooLong(256))
        );
        assert!(Pattern::parse("a.b").unwrap().is_exact());
        assert!(!Pattern::parse("a.*").unwrap().is_exact());
    }

    #[test]
    fn many_stars_stay_polynomial() {
        let p = Pattern::parse(&["**", "a"].repeat(40).join(".")).unwrap();
        let name = vec!["b"; 120].join(".");
        assert!(!p.matches(&name));
    }
}
