//! Filters over a peer's attributes (its HELLO headers and its zmesh options), used to pick the
//! peers a request or tick goes to ([`crate::routing`]).
//!
//! A [`Filter`] is a small expression tree: equality, inequality, presence, prefix, regular
//! expression (the `regex` crate: linear time, no back-references, so a filter from a user cannot
//! hang a node), one-of, numeric comparisons, group membership, and the combinators all-of and
//! any-of; plus a closure ([`Filter::predicate`]) for in-process use. Everything but the closure
//! has a textual form ([`parse`] / `Display`, the one syntax the CLI uses), so a filter can be
//! written on a command line, logged, and later sent to another node.
//!
//! **A missing key never matches**: `role!=sensor` is false for a peer without `role` (as in
//! Zeronode, whose filters require every key to exist), and so is `load<5` for a peer whose
//! `load` is not a number. A key is looked up in the peer's options first, then in its HELLO
//! headers ([`Attributes`]); options are the part a node can change at run time.

mod parse;

use std::fmt;
use std::sync::Arc;

pub use parse::{is_key_char, parse, ParseError};

/// What a filter can ask about a peer.
pub trait Attributes {
    /// The value of `key` (options first, then HELLO headers); `None` if the peer has neither.
    fn attr(&self, key: &str) -> Option<&str>;
    /// True if the peer is a member of `group`.
    fn in_group(&self, group: &str) -> bool;
}

/// A numeric comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// An in-process predicate over a peer's attributes (never sent anywhere, no textual form).
#[derive(Clone)]
pub struct Predicate(Arc<PredicateFn>);

/// The closure inside a [`Predicate`].
type PredicateFn = dyn Fn(&dyn Attributes) -> bool + Send + Sync;

impl fmt::Debug for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Predicate(..)")
    }
}

/// A condition on a peer. See the module docs; build one with the constructors or [`parse`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Filter {
    /// Every peer (`*`, or an empty filter).
    Everyone,
    /// `key=value`: the key exists and equals `value`.
    Eq(String, String),
    /// `key!=value`: the key exists and differs from `value`.
    Ne(String, String),
    /// `key`: the key exists.
    Exists(String),
    /// `key^=prefix`: the key exists and starts with `prefix`.
    Prefix(String, String),
    /// `key~regex`: the key exists and the regex matches somewhere in it (anchor with `^`/`$`).
    Regex(String, regex::Regex),
    /// `key=a|b|c`: the key exists and equals one of the values.
    OneOf(String, Vec<String>),
    /// `key<n`, `key<=n`, `key>n`, `key>=n`: the key exists, is a number, and compares so.
    Cmp(String, Cmp, f64),
    /// `@group`: the peer is a member of the group.
    Group(String),
    /// `a,b`: every one matches (an empty list: everyone).
    AllOf(Vec<Filter>),
    /// `a;b`: at least one matches (an empty list: no one).
    AnyOf(Vec<Filter>),
    /// A closure (in-process only).
    Predicate(Predicate),
}

impl Filter {
    /// `key=value`.
    pub fn eq(key: impl Into<String>, value: impl Into<String>) -> Filter {
        Filter::Eq(key.into(), value.into())
    }

    /// `key!=value`.
    pub fn ne(key: impl Into<String>, value: impl Into<String>) -> Filter {
        Filter::Ne(key.into(), value.into())
    }

    /// `key` exists.
    pub fn exists(key: impl Into<String>) -> Filter {
        Filter::Exists(key.into())
    }

    /// `key^=prefix`.
    pub fn prefix(key: impl Into<String>, prefix: impl Into<String>) -> Filter {
        Filter::Prefix(key.into(), prefix.into())
    }

    /// `key~regex`; fails if the regex does not compile.
    pub fn regex(key: impl Into<String>, re: &str) -> Result<Filter, regex::Error> {
        Ok(Filter::Regex(key.into(), regex::Regex::new(re)?))
    }

    /// `key=a|b|c`.
    pub fn one_of<S: Into<String>>(
        key: impl Into<String>,
        values: impl IntoIterator<Item = S>,
    ) -> Filter {
        Filter::OneOf(key.into(), values.into_iter().map(Into::into).collect())
    }

    /// `key<n` and friends.
    pub fn cmp(key: impl Into<String>, op: Cmp, n: f64) -> Filter {
        Filter::Cmp(key.into(), op, n)
    }

    /// `@group`.
    pub fn group(group: impl Into<String>) -> Filter {
        Filter::Group(group.into())
    }

    /// All of `filters`.
    pub fn all_of(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::AllOf(filters.into_iter().collect())
    }

    /// Any of `filters`.
    pub fn any_of(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::AnyOf(filters.into_iter().collect())
    }

    /// A closure over the peer's attributes (in-process only; it has no textual form).
    pub fn predicate(f: impl Fn(&dyn Attributes) -> bool + Send + Sync + 'static) -> Filter {
        Filter::Predicate(Predicate(Arc::new(f)))
    }

    /// True if the filter has a textual form (it contains no closure).
    pub fn is_textual(&self) -> bool {
        match self {
            Filter::Predicate(_) => false,
            Filter::AllOf(v) | Filter::AnyOf(v) => v.iter().all(Filter::is_textual),
            _ => true,
        }
    }

    /// True if the peer described by `peer` matches.
    pub fn matches(&self, peer: &dyn Attributes) -> bool {
        match self {
            Filter::Everyone => true,
            Filter::Eq(k, v) => peer.attr(k) == Some(v.as_str()),
            Filter::Ne(k, v) => peer.attr(k).is_some_and(|x| x != v),
            Filter::Exists(k) => peer.attr(k).is_some(),
            Filter::Prefix(k, p) => peer.attr(k).is_some_and(|x| x.starts_with(p.as_str())),
            Filter::Regex(k, re) => peer.attr(k).is_some_and(|x| re.is_match(x)),
            Filter::OneOf(k, vs) => peer.attr(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Filter::Cmp(k, op, n) => peer
                .attr(k)
                .and_then(|x| x.trim().parse::<f64>().ok())
                .is_some_and(|x| op.holds(x, *n)),
            Filter::Group(g) => peer.in_group(g),
            Filter::AllOf(fs) => fs.iter().all(|f| f.matches(peer)),
            Filter::AnyOf(fs) => fs.iter().any(|f| f.matches(peer)),
            Filter::Predicate(p) => (p.0)(peer),
        }
    }
}

impl Default for Filter {
    /// [`Filter::Everyone`].
    fn default() -> Filter {
        Filter::Everyone
    }
}

impl PartialEq for Filter {
    /// Structural equality; regexes compare by their text, closures by identity.
    fn eq(&self, other: &Filter) -> bool {
        use Filter::*;
        match (self, other) {
            (Everyone, Everyone) => true,
            (Eq(a, b), Eq(c, d)) | (Ne(a, b), Ne(c, d)) | (Prefix(a, b), Prefix(c, d)) => {
                a == c && b == d
            }
            (Exists(a), Exists(b)) | (Group(a), Group(b)) => a == b,
            (Regex(a, r), Regex(b, s)) => a == b && r.as_str() == s.as_str(),
            (OneOf(a, v), OneOf(b, w)) => a == b && v == w,
            (Cmp(a, o, n), Cmp(b, p, m)) => a == b && o == p && n.to_bits() == m.to_bits(),
            (AllOf(v), AllOf(w)) | (AnyOf(v), AnyOf(w)) => v == w,
            (Predicate(p), Predicate(q)) => Arc::ptr_eq(&p.0, &q.0),
            _ => false,
        }
    }
}

impl std::str::FromStr for Filter {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Filter, ParseError> {
        parse(s)
    }
}

impl fmt::Display for Filter {
    /// The textual form ([`parse`] reads it back to an equal filter); a closure prints as
    /// `<closure>`, which does not parse.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        parse::display(self, f, true)
    }
}

#[cfg(test)]
mod tests;
