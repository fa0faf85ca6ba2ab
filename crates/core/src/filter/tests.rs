use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Default)]
struct Peer {
    attrs: BTreeMap<String, String>,
    groups: BTreeSet<String>,
}

impl Attributes for Peer {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
    fn in_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }
}

fn peer(kv: &[(&str, &str)], groups: &[&str]) -> Peer {
    Peer {
        attrs: kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn m(filter: &str, p: &Peer) -> bool {
    parse(filter).unwrap().matches(p)
}

#[test]
fn every_operator() {
    let s = peer(
        &[("role", "sensor"), ("zone", "eu-west"), ("load", " 0.25 ")],
        &["G"],
    );
    assert!(m("", &s) && m("*", &s) && m("  *  ", &s));
    assert!(m("role=sensor", &s));
    assert!(!m("role=db", &s));
    assert!(m("role!=db", &s));
    assert!(!m("role!=sensor", &s));
    assert!(m("zone", &s));
    assert!(m("zone^=eu-", &s));
    assert!(!m("zone^=us-", &s));
    assert!(m("zone~^eu-", &s));
    assert!(m("zone~west$", &s));
    assert!(!m("zone~^west", &s));
    assert!(m("role=db|sensor|cache", &s));
    assert!(!m("role=db|cache", &s));
    assert!(m("load<0.5", &s) && m("load<=0.25", &s) && m("load>=0.25", &s));
    assert!(!m("load>0.25", &s) && !m("load<0.1", &s));
    assert!(m("@G", &s) && !m("@H", &s));
    assert!(m("role=sensor,zone~^eu-", &s));
    assert!(!m("role=sensor,zone~^us-", &s));
    assert!(m("role=db;zone~^eu-", &s));
    assert!(!m("role=db;zone~^us-", &s));
    assert!(m("role=db,zone=x;@G", &s), "',' binds tighter than ';'");
    assert!(!m("role=db,(zone=x;@G)", &s));
    assert!(m("role=sensor,(zone=x;@G)", &s));
    let closure = Filter::predicate(|p| p.attr("role").is_some_and(|r| r.len() == 6));
    assert!(closure.matches(&s));
    assert!(!closure.is_textual());
    assert_eq!(closure.to_string(), "<closure>");
}

#[test]
fn a_missing_key_never_matches() {
    let bare = peer(&[("load", "high")], &[]);
    for f in [
        "role=x", "role!=x", "role", "role^=x", "role~.*", "role=a|b", "role<1", "role>=1",
        "load<5", "load>5", // not a number
    ] {
        assert!(!m(f, &bare), "{f} matched a peer without the key");
    }
}

#[test]
fn quoting_and_escapes() {
    let p = peer(&[("name", "web-1"), ("v", "a,b"), ("e", "")], &["a b"]);
    assert!(m(r#"name~"^(web|api)-[0-9]+$""#, &p));
    assert!(m(r"v=a\,b", &p));
    assert!(m(r#"v="a,b""#, &p));
    assert!(m(r#"e="""#, &p));
    assert!(m(r#"@"a b""#, &p));
    assert_eq!(Filter::eq("v", "a,b").to_string(), r#"v="a,b""#);
    assert_eq!(Filter::eq("e", "").to_string(), r#"e="""#);
}

#[test]
fn typed_errors() {
    for (text, pos) in [
        ("role=x,", 7),
        ("(role=x", 7),
        ("load<abc", 5),
        ("zone~(", 5),
        ("=x", 0),
        ("@", 1),
        ("a=\"open", 3),
        ("a b", 2),
        ("a)", 1),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.pos, pos, "{text}: {e}");
    }
}

#[test]
fn canonical_text() {
    for text in [
        "role=sensor,zone~^eu-",
        "a=1;(b=2,c)",
        "(a=1;b=2),c",
        "a=x|y|z",
        "load>=0.5,@workers",
        "((a,b);c),d!=e",
        r#"k~"^(a|b)$""#,
    ] {
        let f = parse(text).unwrap();
        assert_eq!(f.to_string(), text);
        assert_eq!(parse(&f.to_string()).unwrap(), f);
    }
}

fn arb_key() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_.-]{0,6}"
}

fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,5}",
        ".{0,6}",
        Just(String::new()),
        Just("a,b|c;d(e)\\\"".to_owned())
    ]
}

fn arb_leaf() -> impl Strategy<Value = Filter> {
    prop_oneof![
        (arb_key(), arb_value()).prop_map(|(k, v)| Filter::Eq(k, v)),
        (arb_key(), arb_value()).prop_map(|(k, v)| Filter::Ne(k, v)),
        arb_key().prop_map(Filter::Exists),
        (arb_key(), arb_value()).prop_map(|(k, v)| Filter::Prefix(k, v)),
        (arb_key(), "[a-z^$.*]{1,5}").prop_filter_map("regex", |(k, r)| Filter::regex(k, &r).ok()),
        (arb_key(), proptest::collection::vec(arb_value(), 2..4))
            .prop_map(|(k, v)| Filter::OneOf(k, v)),
        (arb_key(), -1e6f64..1e6, 0..4u8).prop_map(|(k, n, op)| {
            let op = [Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge][op as usize];
            Filter::Cmp(k, op, n)
        }),
        "[a-zA-Z]{1,5}".prop_map(Filter::Group),
    ]
}

fn arb_filter() -> impl Strategy<Value = Filter> {
    arb_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::AllOf),
            proptest::collection::vec(inner, 2..4).prop_map(Filter::AnyOf),
        ]
    })
}

fn arb_peer() -> impl Strategy<Value = Peer> {
    (
        proptest::collection::btree_map(
            arb_key(),
            prop_oneof![arb_value(), "-?[0-9]{1,3}(\\.[0-9])?"],
            0..6,
        ),
        proptest::collection::btree_set("[a-zA-Z]{1,5}", 0..3),
    )
        .prop_map(|(attrs, groups)| Peer { attrs, groups })
}

proptest! {
    #[test]
    fn text_round_trip(f in arb_filter(), p in arb_peer()) {
        let text = f.to_string();
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&back, &f, "{}", text);
        prop_assert_eq!(back.to_string(), text);
        prop_assert_eq!(back.matches(&p), f.matches(&p));
    }

    #[test]
    fn any_text_parses_or_typed_error(s in ".{0,40}") {
        if let Ok(f) = parse(&s) {
            // Whatever parses has a canonical form that parses to the same filter.
            prop_assert_eq!(parse(&f.to_string()).unwrap(), f);
        }
    }
}
