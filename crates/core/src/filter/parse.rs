//! The textual filter syntax — the one place it is defined (the CLI's `--help` points here and
//! to `docs/protocol.md` §6, which copies this table).
//!
//! ```text
//! filter := "" | "*" | or                  empty or `*`: every peer
//! or     := and (";" and)*                 any of
//! and    := term ("," term)*               all of (binds tighter than `;`)
//! term   := "(" or ")"                     grouping
//!         | "@" value                      member of a group
//!         | key                            the key exists
//!         | key "=" value ("|" value)*     equals (one of, with `|`)
//!         | key "!=" value                 exists and differs
//!         | key "^=" value                 exists and starts with
//!         | key "~" value                  exists and the regex matches (`regex` crate syntax)
//!         | key ("<" | "<=" | ">" | ">=") number
//! key    := one or more characters other than white space and = ! ^ ~ < > , ; ( ) | @ " \ *
//! value  := "\"" any characters, with \" and \\ escaped "\""
//!         | bare: characters up to an unescaped , ; ( ) | (a backslash escapes the next one),
//!           white space around it trimmed
//! ```
//!
//! Examples: `role=sensor,zone~^eu-` (a sensor in an `eu-` zone), `role=db|cache` (one of),
//! `load<0.5;@standby` (lightly loaded, or in group `standby`), `gpu,(zone=a;zone=b)`,
//! `name~"^(web|api)-[0-9]+$"` (quote a regex that uses `|`, `(` or `,`).
//!
//! `Display` writes the canonical form, which parses back to an equal filter (composite
//! sub-filters in parentheses, values quoted only when they must be).

use std::fmt;

use thiserror::Error;

use super::{Cmp, Filter};

/// Why a filter text does not parse: what was expected, at which byte.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad filter at byte {pos}: {what}")]
pub struct ParseError {
    /// Byte offset in the text.
    pub pos: usize,
    /// What was wrong.
    pub what: String,
}

/// True for the characters a key is made of (see the module docs).
pub fn is_key_char(c: char) -> bool {
    !c.is_whitespace() && !"=!^~<>,;()|@\"\\*".contains(c)
}

/// Characters that end a bare value.
fn ends_bare(c: char) -> bool {
    ",;()|".contains(c)
}

/// Parses the textual form (module docs).
pub fn parse(text: &str) -> Result<Filter, ParseError> {
    let mut p = Parser { s: text, pos: 0 };
    p.ws();
    if p.rest().is_empty() {
        return Ok(Filter::Everyone);
    }
    if p.rest().trim() == "*" {
        return Ok(Filter::Everyone);
    }
    let f = p.or()?;
    p.ws();
    if !p.rest().is_empty() {
        return Err(p.err("unexpected text after the filter"));
    }
    Ok(f)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn err(&self, what: impl Into<String>) -> ParseError {
        ParseError {
            pos: self.pos,
            what: what.into(),
        }
    }

    fn ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    fn eat(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Filter, ParseError> {
        let mut v = vec![self.and()?];
        loop {
            self.ws();
            if !self.eat(";") {
                break;
            }
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Filter::AnyOf(v)
        })
    }

    fn and(&mut self) -> Result<Filter, ParseError> {
        let mut v = vec![self.term()?];
        loop {
            self.ws();
            if !self.eat(",") {
                break;
            }
            v.push(self.term()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Filter::AllOf(v)
        })
    }

    fn term(&mut self) -> Result<Filter, ParseError> {
        self.ws();
        if self.eat("(") {
            let f = self.or()?;
            self.ws();
            if !self.eat(")") {
                return Err(self.err("expected ')'"));
            }
            return Ok(f);
        }
        if self.eat("@") {
            let g = self.value()?;
            if g.is_empty() {
                return Err(self.err("expected a group name after '@'"));
            }
            return Ok(Filter::Group(g));
        }
        let start = self.pos;
        let key_len: usize = self
            .rest()
            .chars()
            .take_while(|c| is_key_char(*c))
            .map(char::len_utf8)
            .sum();
        if key_len == 0 {
            return Err(self.err("expected a key, '@group' or '('"));
        }
        self.pos += key_len;
        let key = self.s[start..self.pos].to_owned();
        self.ws();
        // Longest operators first.
        for (op, cmp) in [
            ("<=", Some(Cmp::Le)),
            (">=", Some(Cmp::Ge)),
            ("<", Some(Cmp::Lt)),
            (">", Some(Cmp::Gt)),
        ] {
            if self.eat(op) {
                let at = self.pos;
                let v = self.value()?;
                let n: f64 = v.trim().parse().map_err(|_| ParseError {
                    pos: at,
                    what: format!("{v:?} is not a number"),
                })?;
                return Ok(Filter::Cmp(key, cmp.expect("comparison"), n));
            }
        }
        if self.eat("!=") {
            return Ok(Filter::Ne(key, self.value()?));
        }
        if self.eat("^=") {
            return Ok(Filter::Prefix(key, self.value()?));
        }
        if self.eat("~") {
            let at = self.pos;
            let v = self.value()?;
            let re = regex::Regex::new(&v).map_err(|e| ParseError {
                pos: at,
                what: format!("bad regex: {e}"),
            })?;
            return Ok(Filter::Regex(key, re));
        }
        if self.eat("=") {
            let mut vs = vec![self.value()?];
            loop {
                self.ws();
                if !self.eat("|") {
                    break;
                }
                vs.push(self.value()?);
            }
            return Ok(if vs.len() == 1 {
                Filter::Eq(key, vs.remove(0))
            } else {
                Filter::OneOf(key, vs)
            });
        }
        Ok(Filter::Exists(key))
    }

    fn value(&mut self) -> Result<String, ParseError> {
        self.ws();
        if self.eat("\"") {
            let mut out = String::new();
            let mut chars = self.rest().char_indices();
            loop {
                match chars.next() {
                    None => return Err(self.err("unterminated quoted value")),
                    Some((i, '"')) => {
                        self.pos += i + 1;
                        return Ok(out);
                    }
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c)) => out.push(c),
                        None => return Err(self.err("unterminated quoted value")),
                    },
                    Some((_, c)) => out.push(c),
                }
            }
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices().peekable();
        let mut end = self.rest().len();
        while let Some((i, c)) = chars.next() {
            if ends_bare(c) {
                end = i;
                break;
            }
            if c == '\\' {
                match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => return Err(self.err("a backslash at the end of the filter")),
                }
            } else {
                out.push(c);
            }
        }
        self.pos += end;
        Ok(out.trim().to_owned())
    }
}

/// Writes `v` so that [`Parser::value`] reads it back.
fn value(v: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let bare = !v.is_empty()
        && v.trim() == v
        && !v.starts_with('"')
        && !v.chars().any(|c| ends_bare(c) || c == '\\');
    if bare {
        return f.write_str(v);
    }
    f.write_str("\"")?;
    for c in v.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

/// The canonical text of `filter`; `top`: not inside a combinator (no parentheses needed).
pub(super) fn display(filter: &Filter, f: &mut fmt::Formatter<'_>, top: bool) -> fmt::Result {
    let list = |v: &[Filter], sep: &str, f: &mut fmt::Formatter<'_>| -> fmt::Result {
        if !top {
            f.write_str("(")?;
        }
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                f.write_str(sep)?;
            }
            display(x, f, false)?;
        }
        if !top {
            f.write_str(")")?;
        }
        Ok(())
    };
    match filter {
        Filter::Everyone => f.write_str("*"),
        Filter::Eq(k, v) => {
            write!(f, "{k}=")?;
            value(v, f)
        }
        Filter::Ne(k, v) => {
            write!(f, "{k}!=")?;
            value(v, f)
        }
        Filter::Exists(k) => f.write_str(k),
        Filter::Prefix(k, v) => {
            write!(f, "{k}^=")?;
            value(v, f)
        }
        Filter::Regex(k, re) => {
            write!(f, "{k}~")?;
            value(re.as_str(), f)
        }
        Filter::OneOf(k, vs) => {
            write!(f, "{k}=")?;
            for (i, v) in vs.iter().enumerate() {
                if i > 0 {
                    f.write_str("|")?;
                }
                value(v, f)?;
            }
            Ok(())
        }
        Filter::Cmp(k, op, n) => write!(f, "{k}{}{n}", op.symbol()),
        Filter::Group(g) => {
            f.write_str("@")?;
            value(g, f)
        }
        Filter::AllOf(v) if v.is_empty() => f.write_str("*"),
        Filter::AnyOf(v) if v.is_empty() => f.write_str("<nobody>"),
        Filter::AllOf(v) => list(v, ",", f),
        Filter::AnyOf(v) => list(v, ";", f),
        Filter::Predicate(_) => f.write_str("<closure>"),
    }
}
