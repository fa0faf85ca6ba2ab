//! The services layer's messages (layer 4, capability `svc`): envelope kinds and the payload
//! codecs of OFFER, ERROR and STATS (`docs/protocol.md` §8 has the layout and the vectors).
//!
//! Every codec is a pure function with a typed error; decoding never panics and never reads past
//! the payload. One value has one encoding (what decodes re-encodes to the same bytes).

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// A node's offered services: `payload` = [`Offer`]. Sent whole to a peer when it comes up and to
/// every peer when it changes.
pub const OFFER: u8 = 1;
/// A call: `id` = the message id (the same on every retry), `attempt` = retry count, `ttl_ms` =
/// the time the caller still waits, `subject` = service, flag POSS_DUP on retries, `origin` =
/// the caller when a broker relays it; payload = the request.
pub const CALL: u8 = 2;
/// A reply: `corr` = the call's message id; `dest` = the caller when sent to a broker to relay,
/// `origin` = the worker when a broker relays it; payload = the result.
pub const REPLY: u8 = 3;
/// An error reply: like [`REPLY`], payload = [`ErrorBody`].
pub const ERROR: u8 = 4;
/// A stats query (ping, info and stats at once): `id` = the query id, no payload.
pub const STATS_QUERY: u8 = 5;
/// The answer to [`STATS_QUERY`]: `corr` = the query id, payload = [`StatsBody`].
pub const STATS: u8 = 6;
/// A broker's list of brokers it knows (gossip): payload = [`BrokerList`].
pub const BROKERS: u8 = 7;

/// Longest service name.
pub const MAX_NAME: usize = 64;
/// Most services one node offers.
pub const MAX_SERVICES: usize = 256;
/// Longest error message carried (longer ones are cut at a char boundary).
pub const MAX_MESSAGE: usize = 1024;
/// Most brokers in one [`BrokerList`].
pub const MAX_BROKERS: usize = 64;
/// Longest endpoint in a [`BrokerList`].
pub const MAX_ENDPOINT: usize = 255;

/// Why a payload is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its fields.
    #[error("truncated in {0}")]
    Truncated(&'static str),
    /// Bytes after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A name or message that is not valid (see [`validate_service`]).
    #[error("invalid service name {0:?}")]
    BadName(String),
    /// Text that is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// More entries than the limit.
    #[error("too many {0}")]
    TooMany(&'static str),
    /// An error class or role this version does not know.
    #[error("unknown {0} {1}")]
    Unknown(&'static str, u8),
    /// Entries out of order or repeated (one value, one encoding).
    #[error("{0} not sorted or repeated")]
    NotCanonical(&'static str),
}

/// Checks a service name: 1 to [`MAX_NAME`] bytes of `A-Z a-z 0-9 - _ .` (NATS micro's alphabet
/// plus the dot), not starting with a dot.
pub fn validate_service(name: &str) -> Result<(), WireError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(WireError::BadName(name.chars().take(80).collect()))
    }
}

/// The OFFER payload: `version u64 | role u8 | count u16 | (len u8 | name)*`, names sorted and
/// unique. Role 0 = a node offering its own services, 1 = a broker relaying them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// Bumped at every change; an older version than the one held is ignored.
    pub version: u64,
    /// True if the sender is a broker (its services are its workers').
    pub broker: bool,
    /// The services, sorted.
    pub services: Vec<String>,
}

impl Offer {
    /// Encodes (names must be valid, sorted, unique and at most [`MAX_SERVICES`]: the layer
    /// guarantees it).
    pub fn encode(&self) -> Bytes {
        let mut b =
            BytesMut::with_capacity(11 + self.services.iter().map(|s| 1 + s.len()).sum::<usize>());
        b.put_u64(self.version);
        b.put_u8(u8::from(self.broker));
        b.put_u16(self.services.len() as u16);
        for s in &self.services {
            b.put_u8(s.len() as u8);
            b.put_slice(s.as_bytes());
        }
        b.freeze()
    }

    /// Decodes.
    pub fn decode(p: &[u8]) -> Result<Offer, WireError> {
        let mut r = Reader::new(p);
        let version = r.u64("version")?;
        let broker = match r.u8("role")? {
            0 => false,
            1 => true,
            x => return Err(WireError::Unknown("role", x)),
        };
        let n = r.u16("count")? as usize;
        if n > MAX_SERVICES {
            return Err(WireError::TooMany("services"));
        }
        let mut services: Vec<String> = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u8("name length")? as usize;
            let name = r.str(len, "name")?;
            validate_service(&name)?;
            if services.last().is_some_and(|l| *l >= name) {
                return Err(WireError::NotCanonical("services"));
            }
            services.push(name);
        }
        r.end()?;
        Ok(Offer {
            version,
            broker,
            services,
        })
    }
}

/// Why a call failed on the far side (ERROR payload byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The handler answered with an error (final: it ran).
    Handler,
    /// The node does not offer the service (any more): try another.
    NoService,
    /// The worker's (or broker's) limits are reached; nothing ran: try another.
    Overloaded,
    /// A broker lost the worker it had relayed the call to: it may have run; retry.
    WorkerLost,
    /// A broker is stopping and takes no new call: try another.
    Draining,
}

impl ErrorClass {
    fn to_byte(self) -> u8 {
        match self {
            ErrorClass::Handler => 0,
            ErrorClass::NoService => 1,
            ErrorClass::Overloaded => 2,
            ErrorClass::WorkerLost => 3,
            ErrorClass::Draining => 4,
        }
    }

    fn from_byte(b: u8) -> Result<ErrorClass, WireError> {
        Ok(match b {
            0 => ErrorClass::Handler,
            1 => ErrorClass::NoService,
            2 => ErrorClass::Overloaded,
            3 => ErrorClass::WorkerLost,
            4 => ErrorClass::Draining,
            x => return Err(WireError::Unknown("error class", x)),
        })
    }
}

/// The ERROR payload: `class u8 | code u16 | len u16 | message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// Who failed.
    pub class: ErrorClass,
    /// Application error code (0 unless `class` is `Handler`).
    pub code: u16,
    /// Human-readable reason (at most [`MAX_MESSAGE`] bytes).
    pub message: String,
}

impl ErrorBody {
    /// Encodes (the message is cut to [`MAX_MESSAGE`] bytes at a char boundary).
    pub fn encode(&self) -> Bytes {
        let msg = cut(&self.message, MAX_MESSAGE);
        let mut b = BytesMut::with_capacity(5 + msg.len());
        b.put_u8(self.class.to_byte());
        b.put_u16(self.code);
        b.put_u16(msg.len() as u16);
        b.put_slice(msg.as_bytes());
        b.freeze()
    }

    /// Decodes.
    pub fn decode(p: &[u8]) -> Result<ErrorBody, WireError> {
        let mut r = Reader::new(p);
        let class = ErrorClass::from_byte(r.u8("class")?)?;
        let code = r.u16("code")?;
        let n = r.u16("message length")? as usize;
        if n > MAX_MESSAGE {
            return Err(WireError::TooMany("message bytes"));
        }
        let message = r.str(n, "message")?;
        r.end()?;
        Ok(ErrorBody {
            class,
            code,
            message,
        })
    }
}

/// One service's counters, as a worker reports them (NATS micro's `stats_response` endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// The service.
    pub name: String,
    /// Calls handed to the handler (duplicates absorbed are not counted here).
    pub requests: u64,
    /// Handler errors.
    pub errors: u64,
    /// Total processing time of answered calls, nanoseconds.
    pub processing_ns: u64,
    /// Duplicates answered from the reply cache or joined to a running call.
    pub duplicates: u64,
    /// Calls running now.
    pub running: u32,
    /// The last handler error's message ("" if none).
    pub last_error: String,
}

impl ServiceStats {
    /// Average processing time of an answered call, nanoseconds (0 if none).
    pub fn average_ns(&self) -> u64 {
        let answered = self.requests.saturating_sub(u64::from(self.running));
        self.processing_ns.checked_div(answered).unwrap_or(0)
    }
}

/// The STATS payload: `role u8 | uptime_ms u64 | relayed u64 | count u16 | service*`, service =
/// `len u8 | name | requests u64 | errors u64 | processing_ns u64 | duplicates u64 | running u32
/// | len u16 | last_error`, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsBody {
    /// True if the sender is a broker.
    pub broker: bool,
    /// Time since its services layer started, milliseconds.
    pub uptime_ms: u64,
    /// Calls it relayed (brokers).
    pub relayed: u64,
    /// Its services.
    pub services: Vec<ServiceStats>,
}

impl StatsBody {
    /// Encodes (the layer guarantees valid, sorted names; messages are cut to [`MAX_MESSAGE`]).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(u8::from(self.broker));
        b.put_u64(self.uptime_ms);
        b.put_u64(self.relayed);
        b.put_u16(self.services.len() as u16);
        for s in &self.services {
            b.put_u8(s.name.len() as u8);
            b.put_slice(s.name.as_bytes());
            b.put_u64(s.requests);
            b.put_u64(s.errors);
            b.put_u64(s.processing_ns);
            b.put_u64(s.duplicates);
            b.put_u32(s.running);
            let e = cut(&s.last_error, MAX_MESSAGE);
            b.put_u16(e.len() as u16);
            b.put_slice(e.as_bytes());
        }
        b.freeze()
    }

    /// Decodes.
    pub fn decode(p: &[u8]) -> Result<StatsBody, WireError> {
        let mut r = Reader::new(p);
        let broker = match r.u8("role")? {
            0 => false,
            1 => true,
            x => return Err(WireError::Unknown("role", x)),
        };
        let uptime_ms = r.u64("uptime")?;
        let relayed = r.u64("relayed")?;
        let n = r.u16("count")? as usize;
        if n > MAX_SERVICES {
            return Err(WireError::TooMany("services"));
        }
        let mut services: Vec<ServiceStats> = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u8("name length")? as usize;
            let name = r.str(len, "name")?;
            validate_service(&name)?;
            if services.last().is_some_and(|l| l.name >= name) {
                return Err(WireError::NotCanonical("services"));
            }
            let requests = r.u64("requests")?;
            let errors = r.u64("errors")?;
            let processing_ns = r.u64("processing")?;
            let duplicates = r.u64("duplicates")?;
            let running = r.u32("running")?;
            let elen = r.u16("error length")? as usize;
            if elen > MAX_MESSAGE {
                return Err(WireError::TooMany("message bytes"));
            }
            let last_error = r.str(elen, "last error")?;
            services.push(ServiceStats {
                name,
                requests,
                errors,
                processing_ns,
                duplicates,
                running,
                last_error,
            });
        }
        r.end()?;
        Ok(StatsBody {
            broker,
            uptime_ms,
            relayed,
            services,
        })
    }
}

/// The BROKERS payload: `count u8 | (len u8 | endpoint)*`, sorted and unique: the endpoints of
/// the brokers the sender knows (itself included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerList {
    /// Endpoints (`tcp://host:port`), sorted.
    pub endpoints: Vec<String>,
}

impl BrokerList {
    /// Encodes (at most [`MAX_BROKERS`] endpoints of at most [`MAX_ENDPOINT`] bytes, sorted:
    /// the layer guarantees it).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(self.endpoints.len() as u8);
        for e in &self.endpoints {
            b.put_u8(e.len() as u8);
            b.put_slice(e.as_bytes());
        }
        b.freeze()
    }

    /// Decodes.
    pub fn decode(p: &[u8]) -> Result<BrokerList, WireError> {
        let mut r = Reader::new(p);
        let n = r.u8("count")? as usize;
        if n > MAX_BROKERS {
            return Err(WireError::TooMany("brokers"));
        }
        let mut endpoints: Vec<String> = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u8("endpoint length")? as usize;
            let e = r.str(len, "endpoint")?;
            if e.is_empty() {
                return Err(WireError::Truncated("endpoint"));
            }
            if endpoints.last().is_some_and(|l| *l >= e) {
                return Err(WireError::NotCanonical("endpoints"));
            }
            endpoints.push(e);
        }
        r.end()?;
        Ok(BrokerList { endpoints })
    }
}

/// `s` cut to at most `max` bytes at a char boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A bounds-checked cursor.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(WireError::Truncated(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_be_bytes(a))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(a))
    }

    fn str(&mut self, n: usize, what: &'static str) -> Result<String, WireError> {
        let b = self.take(n, what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| WireError::NotUtf8(what))
    }

    fn end(&self) -> Result<(), WireError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The vectors of docs/protocol.md §8.
    #[test]
    fn golden_offer() {
        let o = Offer {
            version: 3,
            broker: false,
            services: vec!["echo".into(), "math.add".into()],
        };
        let want = "0000000000000003 00 0002 04 6563686f 08 6d6174682e616464".replace(' ', "");
        assert_eq!(hex(&o.encode()), want);
        assert_eq!(Offer::decode(&o.encode()).unwrap(), o);
    }

    #[test]
    fn golden_error() {
        let e = ErrorBody {
            class: ErrorClass::Handler,
            code: 500,
            message: "boom".into(),
        };
        assert_eq!(hex(&e.encode()), "0001f40004626f6f6d");
        assert_eq!(ErrorBody::decode(&e.encode()).unwrap(), e);
        let d = ErrorBody {
            class: ErrorClass::Draining,
            code: 0,
            message: String::new(),
        };
        assert_eq!(hex(&d.encode()), "0400000000");
    }

    #[test]
    fn golden_stats() {
        let s = StatsBody {
            broker: false,
            uptime_ms: 1000,
            relayed: 0,
            services: vec![ServiceStats {
                name: "echo".into(),
                requests: 2,
                errors: 1,
                processing_ns: 3000,
                duplicates: 1,
                running: 0,
                last_error: "x".into(),
            }],
        };
        let want = concat!(
            "00",
            "00000000000003e8",
            "0000000000000000",
            "0001",
            "04",
            "6563686f",
            "0000000000000002",
            "0000000000000001",
            "0000000000000bb8",
            "0000000000000001",
            "00000000",
            "0001",
            "78"
        );
        assert_eq!(hex(&s.encode()), want);
        assert_eq!(StatsBody::decode(&s.encode()).unwrap(), s);
        assert_eq!(s.services[0].average_ns(), 1500);
    }

    #[test]
    fn golden_brokers() {
        let l = BrokerList {
            endpoints: vec!["tcp://10.0.0.1:5670".into()],
        };
        assert_eq!(
            hex(&l.encode()),
            format!("0113{}", hex(b"tcp://10.0.0.1:5670"))
        );
        assert_eq!(BrokerList::decode(&l.encode()).unwrap(), l);
    }

    #[test]
    fn typed_errors() {
        assert_eq!(Offer::decode(b""), Err(WireError::Truncated("version")));
        let mut b = Offer {
            version: 1,
            broker: false,
            services: vec!["b".into(), "a".into()],
        }
        .encode()
        .to_vec();
        assert_eq!(Offer::decode(&b), Err(WireError::NotCanonical("services")));
        b[8] = 7;
        assert_eq!(Offer::decode(&b), Err(WireError::Unknown("role", 7)));
        let bad = Offer {
            version: 1,
            broker: false,
            services: vec!["a b".into()],
        }
        .encode();
        assert!(matches!(Offer::decode(&bad), Err(WireError::BadName(_))));
        assert_eq!(
            ErrorBody::decode(b"\x09\x00\x00\x00\x00"),
            Err(WireError::Unknown("error class", 9))
        );
        assert_eq!(
            ErrorBody::decode(b"\x00\x00\x00\x00\x00z"),
            Err(WireError::Trailing(1))
        );
        assert_eq!(
            ErrorBody::decode(b"\x00\x00\x00\x00\x02\xff\xfe"),
            Err(WireError::NotUtf8("message"))
        );
        assert!(validate_service("echo-1_a.b").is_ok());
        assert!(validate_service("").is_err());
        assert!(validate_service(".x").is_err());
        assert!(validate_service(&"a".repeat(MAX_NAME + 1)).is_err());
    }

    fn arb_names() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set("[a-z0-9_.-]{1,12}", 0..6)
            .prop_map(|s| s.into_iter().filter(|n| !n.starts_with('.')).collect())
    }

    proptest! {
        #[test]
        fn offer_round_trip(version in any::<u64>(), broker in any::<bool>(), services in arb_names()) {
            let o = Offer { version, broker, services };
            prop_assert_eq!(Offer::decode(&o.encode()).unwrap(), o);
        }

        #[test]
        fn stats_round_trip(names in arb_names(), n in any::<(u64, u64, u64, u64, u32)>(), err in ".{0,20}", up in any::<u64>()) {
            let s = StatsBody {
                broker: up % 2 == 0,
                uptime_ms: up,
                relayed: n.0,
                services: names.into_iter().map(|name| ServiceStats {
                    name, requests: n.0, errors: n.1, processing_ns: n.2, duplicates: n.3,
                    running: n.4, last_error: err.clone(),
                }).collect(),
            };
            prop_assert_eq!(StatsBody::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn error_round_trip(class in 0u8..5, code in any::<u16>(), message in ".{0,40}") {
            let e = ErrorBody { class: ErrorClass::from_byte(class).unwrap(), code, message };
            prop_assert_eq!(ErrorBody::decode(&e.encode()).unwrap(), e);
        }

        #[test]
        fn any_bytes_decode_or_typed_error(b in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(o) = Offer::decode(&b) { prop_assert_eq!(&o.encode()[..], &b[..]); }
            if let Ok(e) = ErrorBody::decode(&b) { prop_assert_eq!(&e.encode()[..], &b[..]); }
            if let Ok(s) = StatsBody::decode(&b) { prop_assert_eq!(&s.encode()[..], &b[..]); }
            if let Ok(l) = BrokerList::decode(&b) { prop_assert_eq!(&l.encode()[..], &b[..]); }
        }
    }
}
