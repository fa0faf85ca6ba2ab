//! The `layer_envelopes` input format: a byte code that is easy to write by hand (the seeds in
//! `examples/seeds.rs` are typed [`LayerStep`]s, [`encode`]d) and dense for a fuzzer (every byte
//! string is a script: each step starts with an opcode byte, missing bytes read as zero).
//!
//! ```text
//! input  = first_id u64 BE, then steps until the input ends
//! step   = opcode (byte % 18, in LayerStep's order), then its fields in order
//!          (Stop = 17 followed by 0x5A; 17 followed by any other byte is Deadline)
//! u8/u16/u64 = 1/2/8 bytes BE;  bool = byte & 1;  Option<T> = bool, then T if set
//! bytes/String = length byte, then that many bytes (String: lossy UTF-8)
//! EnvSpec = tag (byte % 6, in order), fields;  Corr = tag (byte % 3), field;  CapsChoice = byte % 4
//! ```

/// The byte after opcode 17 that makes it a stop (anything else: a deadline step).
const STOP_CONFIRM: u8 = 0x5A;

/// Reads the byte code; past the end every read is zero (and [`LayerStep::decode`] stops).
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Eight bytes, big-endian.
    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| acc << 8 | u64::from(self.u8()))
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    fn bytes(&mut self) -> Vec<u8> {
        let n = usize::from(self.u8()).min(self.data.len());
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        b.to_vec()
    }

    fn string(&mut self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    fn corr(&mut self) -> Corr {
        match self.u8() % 3 {
            0 => Corr::Ours(self.u8()),
            1 => Corr::Theirs(self.u8()),
            _ => Corr::Any(self.u64()),
        }
    }

    fn env(&mut self) -> EnvSpec {
        match self.u8() % 6 {
            0 => EnvSpec::Request {
                id: self.u8(),
                event: self.u8(),
                ttl_ms: self.bool().then(|| self.u16()),
                len: self.u8(),
            },
            1 => EnvSpec::Tick {
                event: self.u8(),
                len: self.u8(),
            },
            2 => EnvSpec::Reply {
                corr: self.corr(),
                payload: self.bytes(),
            },
            3 => EnvSpec::Error {
                corr: self.corr(),
                class: self.u8(),
                code: self.u16(),
                message: self.string(),
            },
            4 => EnvSpec::Cancel(self.corr()),
            _ => EnvSpec::Other {
                layer: self.u8(),
                kind: self.u8(),
                corr: self.bool().then(|| self.u64()),
            },
        }
    }
}

/// Writes the byte code ([`Reader`] in reverse).
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    fn u8(&mut self, b: u8) {
        self.0.push(b);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bool(&mut self, b: bool) {
        self.u8(u8::from(b));
    }
    fn bytes(&mut self, b: &[u8]) {
        let n = b.len().min(255);
        self.u8(n as u8);
        self.0.extend_from_slice(&b[..n]);
    }
    fn corr(&mut self, c: &Corr) {
        match *c {
            Corr::Ours(i) => {
                self.u8(0);
                self.u8(i)
            }
            Corr::Theirs(i) => {
                self.u8(1);
                self.u8(i)
            }
            Corr::Any(x) => {
                self.u8(2);
                self.u64(x)
            }
        }
    }
    fn env(&mut self, e: &EnvSpec) {
        match e {
            EnvSpec::Request {
                id,
                event,
                ttl_ms,
                len,
            } => {
                self.u8(0);
                self.u8(*id);
                self.u8(*event);
                self.bool(ttl_ms.is_some());
                if let Some(t) = ttl_ms {
                    self.u16(*t);
                }
                self.u8(*len);
            }
            EnvSpec::Tick { event, len } => {
                self.u8(1);
                self.u8(*event);
                self.u8(*len);
            }
            EnvSpec::Reply { corr, payload } => {
                self.u8(2);
                self.corr(corr);
                self.bytes(payload);
            }
            EnvSpec::Error {
                corr,
                class,
                code,
                message,
            } => {
                self.u8(3);
                self.corr(corr);
                self.u8(*class);
                self.u16(*code);
                self.bytes(message.as_bytes());
            }
            EnvSpec::Cancel(corr) => {
                self.u8(4);
                self.corr(corr);
            }
            EnvSpec::Other { layer, kind, corr } => {
                self.u8(5);
                self.u8(*layer);
                self.u8(*kind);
                self.bool(corr.is_some());
                if let Some(c) = corr {
                    self.u64(*c);
                }
            }
        }
    }
}

/// Encodes a script: the first request id, then the steps.
pub fn encode(first_id: u64, steps: &[LayerStep]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(first_id);
    for s in steps {
        s.encode(&mut w);
    }
    w.0
}

impl LayerStep {
    /// Decodes one step; `None` at the end of the input.
    pub fn decode(r: &mut Reader<'_>) -> Option<LayerStep> {
        if r.data.is_empty() {
            return None;
        }
        Some(match r.u8() % 18 {
            0 => LayerStep::Hello(
                r.u8(),
                match r.u8() % 4 {
                    0 => CapsChoice::Req,
                    1 => CapsChoice::Other,
                    2 => CapsChoice::Empty,
                    _ => CapsChoice::Plain,
                },
            ),
            1 => LayerStep::Envelope(r.u8(), r.env()),
            2 => LayerStep::Damaged {
                peer: r.u8(),
                env: r.env(),
                cut: r.u8(),
                flip: (r.u8(), r.u8()),
            },
            3 => LayerStep::Raw(r.u8(), r.bool(), r.bytes()),
            4 => LayerStep::Goodbye(r.u8()),
            5 => LayerStep::Departure(r.u8()),
            6 => LayerStep::SendFailed(r.u8()),
            7 => LayerStep::Refuse,
            8 => LayerStep::Request {
                peer: r.u8(),
                event: r.u8(),
                len: r.u8(),
                timeout_ms: r.bool().then(|| r.u16()),
            },
            9 => LayerStep::Tick(r.u8(), r.u8(), r.bool()),
            10 => LayerStep::Cancel(r.u8(), r.bool()),
            11 => LayerStep::Register {
                id: r.u8(),
                pattern: r.u8(),
                tick: r.bool(),
                via_handle: r.bool(),
            },
            12 => LayerStep::Unregister(r.u8()),
            13 => LayerStep::Reply {
                which: r.u8(),
                error: r.bool(),
                len: r.u8(),
                via_handle: r.bool(),
            },
            14 => LayerStep::Abandon(r.u8()),
            15 => LayerStep::Advance(r.u16()),
            16 => LayerStep::Deadline,
            // A confirmation byte, so that random bytes rarely stop the node early.
            _ if r.u8() == STOP_CONFIRM => LayerStep::Stop,
            _ => LayerStep::Deadline,
        })
    }

    /// Appends the step's byte code.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            LayerStep::Hello(p, c) => {
                w.u8(0);
                w.u8(*p);
                w.u8(*c as u8);
            }
            LayerStep::Envelope(p, e) => {
                w.u8(1);
                w.u8(*p);
                w.env(e);
            }
            LayerStep::Damaged {
                peer,
                env,
                cut,
                flip,
            } => {
                w.u8(2);
                w.u8(*peer);
                w.env(env);
                w.u8(*cut);
                w.u8(flip.0);
                w.u8(flip.1);
            }
            LayerStep::Raw(p, magic, b) => {
                w.u8(3);
                w.u8(*p);
                w.bool(*magic);
                w.bytes(b);
            }
            LayerStep::Goodbye(p) => {
                w.u8(4);
                w.u8(*p)
            }
            LayerStep::Departure(p) => {
                w.u8(5);
                w.u8(*p)
            }
            LayerStep::SendFailed(p) => {
                w.u8(6);
                w.u8(*p)
            }
            LayerStep::Refuse => w.u8(7),
            LayerStep::Request {
                peer,
                event,
                len,
                timeout_ms,
            } => {
                w.u8(8);
                w.u8(*peer);
                w.u8(*event);
                w.u8(*len);
                w.bool(timeout_ms.is_some());
                if let Some(t) = timeout_ms {
                    w.u16(*t);
                }
            }
            LayerStep::Tick(p, e, v) => {
                w.u8(9);
                w.u8(*p);
                w.u8(*e);
                w.bool(*v);
            }
            LayerStep::Cancel(i, v) => {
                w.u8(10);
                w.u8(*i);
                w.bool(*v);
            }
            LayerStep::Register {
                id,
                pattern,
                tick,
                via_handle,
            } => {
                w.u8(11);
                w.u8(*id);
                w.u8(*pattern);
                w.bool(*tick);
                w.bool(*via_handle);
            }
            LayerStep::Unregister(id) => {
                w.u8(12);
                w.u8(*id)
            }
            LayerStep::Reply {
                which,
                error,
                len,
                via_handle,
            } => {
                w.u8(13);
                w.u8(*which);
                w.bool(*error);
                w.u8(*len);
                w.bool(*via_handle);
            }
            LayerStep::Abandon(i) => {
                w.u8(14);
                w.u8(*i)
            }
            LayerStep::Advance(ms) => {
                w.u8(15);
                w.u16(*ms)
            }
            LayerStep::Deadline => w.u8(16),
            LayerStep::Stop => {
                w.u8(17);
                w.u8(STOP_CONFIRM)
            }
        }
    }
}

/// What a HELLO announces.
#[derive(Debug, Clone, Copy)]
pub enum CapsChoice {
    /// `X-ZMESH-CAPS: req` (a zmesh peer).
    Req,
    /// `X-ZMESH-CAPS: ev,future` (zmesh, without requests).
    Other,
    /// `X-ZMESH-CAPS:` empty.
    Empty,
    /// No capabilities header (a plain ZRE peer).
    Plain,
}

/// Which id an answer or a CANCEL refers to.
#[derive(Debug, Clone)]
pub enum Corr {
    /// The n-th REQUEST we sent (to anybody).
    Ours(u8),
    /// The n-th REQUEST this script sent us.
    Theirs(u8),
    /// Any id.
    Any(u64),
}

/// An envelope from a simulated peer.
#[derive(Debug, Clone)]
pub enum EnvSpec {
    /// REQUEST.
    Request {
        /// Its id (repeats are duplicates).
        id: u8,
        /// Event index.
        event: u8,
        /// `None`: no ttl field (malformed).
        ttl_ms: Option<u16>,
        /// Payload length.
        len: u8,
    },
    /// TICK.
    Tick {
        /// Event index.
        event: u8,
        /// Payload length.
        len: u8,
    },
    /// REPLY.
    Reply {
        /// What it answers.
        corr: Corr,
        /// Payload.
        payload: Vec<u8>,
    },
    /// ERROR (class byte 0–3 is valid).
    Error {
        /// What it answers.
        corr: Corr,
        /// Class byte.
        class: u8,
        /// Code.
        code: u16,
        /// Message.
        message: String,
    },
    /// CANCEL.
    Cancel(Corr),
    /// Any layer and kind, with or without corr.
    Other {
        /// Layer byte.
        layer: u8,
        /// Kind byte.
        kind: u8,
        /// Correlation.
        corr: Option<u64>,
    },
}

/// One step of the script.
#[derive(Debug, Clone)]
pub enum LayerStep {
    /// HELLO (sequence 1) from a peer.
    Hello(u8, CapsChoice),
    /// A WHISPER with one envelope frame.
    Envelope(u8, EnvSpec),
    /// The same, cut to `cut` bytes and one byte XORed.
    Damaged {
        /// Peer.
        peer: u8,
        /// The envelope.
        env: EnvSpec,
        /// New length, if shorter.
        cut: u8,
        /// Position and mask.
        flip: (u8, u8),
    },
    /// A WHISPER with one arbitrary frame (after the magic if `magic`).
    Raw(u8, bool, Vec<u8>),
    /// GOODBYE from a peer.
    Goodbye(u8),
    /// A port-0 beacon from a peer.
    Departure(u8),
    /// The shell reports a send failure for a peer.
    SendFailed(u8),
    /// The transport refuses the next send.
    Refuse,
    /// Application: request.
    Request {
        /// Target.
        peer: u8,
        /// Event index.
        event: u8,
        /// Payload length (over 32 is too large).
        len: u8,
        /// Timeout in ms (`None`: the default; 65535: `Duration::MAX`).
        timeout_ms: Option<u16>,
    },
    /// Application: tick.
    Tick(u8, u8, bool),
    /// Application: cancel one of our requests (or an id that ended).
    Cancel(u8, bool),
    /// Application: register a handler.
    Register {
        /// Handler id (a few).
        id: u8,
        /// Pattern index.
        pattern: u8,
        /// A tick handler.
        tick: bool,
        /// Through `Layer::handle`.
        via_handle: bool,
    },
    /// Application: unregister.
    Unregister(u8),
    /// Application: answer the n-th running request (or another key).
    Reply {
        /// Which.
        which: u8,
        /// An error instead of a payload.
        error: bool,
        /// Payload length.
        len: u8,
        /// Through `Layer::handle`.
        via_handle: bool,
    },
    /// Application: abandon the n-th running request.
    Abandon(u8),
    /// Time passes (ms), then due timers run.
    Advance(u16),
    /// Jump to the next deadline and run the timers.
    Deadline,
    /// Stop.
    Stop,
}
