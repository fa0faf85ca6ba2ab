//! Machinery shared by inbox and outbox connections: the stream abstraction (TCP or Unix socket),
//! the batched write buffer, and the ZMTP handshake driver.
//!
//! Design: each connection is driven by ONE task that owns both halves of the socket and multiplexes
//! reading, writing and timers with `tokio::select!`. Every I/O operation used inside `select!` is a
//! single `read_buf` / `write_vectored` call, which is cancel-safe (either it completed or nothing
//! happened), so no partial state is lost when another branch wins.

use crate::codec::{check_greeting_prefix, encode_frame_header, Command, FrameDecoder, FLAG_MORE};
use crate::codec::{Greeting, Metadata, GREETING_LEN};
use crate::endpoint::Endpoint;
use crate::error::HandshakeError;
use crate::mechanism::Mechanism;
use crate::Frames;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{tcp, unix, TcpStream, UnixStream};

/// Bytes a quiet connection reads per `read` call. Small on purpose: every connection holds one
/// such buffer (a full mesh of 55 nodes has ~6,000 connections), and a busy connection grows its
/// chunk by doubling up to [`READ_CHUNK_MAX`] (see [`ReadPool`]).
pub(crate) const READ_CHUNK: usize = 8 * 1024;
/// Largest single reservation made for a big frame body (the rest grows as data actually arrives,
/// so a peer announcing a huge frame cannot make us allocate without sending the bytes).
const MAX_RESERVE: usize = 8 * 1024 * 1024;
/// Frames at least this large are written from their own buffer (vectored), not copied.
const VECTOR_THRESHOLD: usize = 8 * 1024;
/// Maximum buffers passed to one `write_vectored` call.
const MAX_IOV: usize = 64;

/// A connected stream: TCP or Unix-domain.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
        }
    }
}

/// Read half of a [`Stream`].
pub(crate) enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

/// Write half of a [`Stream`].
pub(crate) enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Unix(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, b),
            WriteHalf::Unix(w) => Pin::new(w).poll_write(cx, b),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteHalf::Unix(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Unix(w) => Pin::new(w).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Unix(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

impl WriteHalf {
    /// Wait until the socket may accept more bytes (cancel-safe).
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            WriteHalf::Tcp(w) => w.writable().await,
            WriteHalf::Unix(w) => w.writable().await,
        }
    }

    /// One non-blocking `writev` (a plain `send` for a single buffer, which the kernel handles
    /// with less work: it is the common case of a reply or a lone message); `WouldBlock` when the
    /// kernel buffer is full.
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match (self, bufs) {
            (WriteHalf::Tcp(w), [one]) => w.try_write(one),
            (WriteHalf::Unix(w), [one]) => w.try_write(one),
            (WriteHalf::Tcp(w), _) => w.try_write_vectored(bufs),
            (WriteHalf::Unix(w), _) => w.try_write_vectored(bufs),
        }
    }
}

/// Outgoing bytes of one connection, in order: `chunks`, then `staging`. Small frames are copied into
/// `staging`; a large body is queued as its own chunk (after the staging bytes before it, which
/// become a chunk too) so it goes out with `writev` without a copy. Written bytes are consumed from
/// the front; `staging` keeps its allocation, so a buffer that is reused costs no allocation.
#[derive(Default)]
pub(crate) struct OutBuf {
    chunks: VecDeque<Bytes>,
    staging: BytesMut,
}

impl OutBuf {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.staging.is_empty()
    }

    /// Take everything queued as a new buffer, keeping the staging allocation here: the bytes
    /// taken are a frozen slice of it, and once they are written and dropped the next `reserve`
    /// reuses the whole allocation instead of allocating (a writer that hands a 64 KiB buffer over
    /// per flush would otherwise allocate — and page-fault — a fresh one each time).
    pub(crate) fn take_all(&mut self) -> OutBuf {
        self.flush_staging();
        OutBuf {
            chunks: std::mem::take(&mut self.chunks),
            staging: BytesMut::new(),
        }
    }

    /// Drop everything queued (keeps the staging allocation).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.staging.clear();
    }

    /// Everything queued, in order, as one buffer (tests compare encodings with it).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut v: Vec<u8> = self.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        v.extend_from_slice(&self.staging);
        v
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum::<usize>() + self.staging.len()
    }

    fn flush_staging(&mut self) {
        if !self.staging.is_empty() {
            self.chunks.push_back(self.staging.split().freeze());
        }
    }

    /// Queue one frame.
    pub(crate) fn push_frame(&mut self, more: bool, command: bool, body: &Bytes) {
        encode_frame_header(more, command, body.len(), &mut self.staging);
        if body.len() >= VECTOR_THRESHOLD {
            self.flush_staging();
            self.chunks.push_back(body.clone());
        } else {
            self.staging.extend_from_slice(body);
        }
    }

    /// Queue a command.
    pub(crate) fn push_command(&mut self, body: &Bytes) {
        self.push_frame(false, true, body);
    }

    /// Queue a whole message as plain ZMTP frames (mechanisms that do not transform frames).
    pub(crate) fn push_plain(&mut self, frames: &Frames) {
        let n = frames.len();
        for (i, body) in frames.iter().enumerate() {
            self.push_frame(i + 1 < n, false, body);
        }
    }

    /// Queue a message given as a short first frame (copied; at most 255 bytes) and the frames
    /// that follow it, as plain ZMTP frames: the same bytes as [`OutBuf::push_plain`] on the
    /// whole message. A small message (the common one: a ZRE header and one small content
    /// frame) takes one reservation for all of its bytes.
    pub(crate) fn push_parts(&mut self, first: &[u8], rest: &[Bytes]) {
        debug_assert!(first.len() <= 255);
        let more = if rest.is_empty() { 0 } else { FLAG_MORE };
        if let [one] = rest {
            if one.len() <= 255 {
                self.staging.reserve(4 + first.len() + one.len());
                self.staging.put_slice(&[more, first.len() as u8]);
                self.staging.put_slice(first);
                self.staging.put_slice(&[0, one.len() as u8]);
                self.staging.put_slice(one);
                return;
            }
        }
        self.staging.reserve(2 + first.len());
        self.staging.put_slice(&[more, first.len() as u8]);
        self.staging.put_slice(first);
        let n = rest.len();
        for (i, body) in rest.iter().enumerate() {
            self.push_frame(i + 1 < n, false, body);
        }
    }

    /// Queue a whole message, passing frames through the mechanism's hook if it transforms frames
    /// (sealed straight into the staging buffer: nothing allocated per frame).
    pub(crate) fn push_message(
        &mut self,
        frames: &Frames,
        mech: &mut dyn Mechanism,
        transform: bool,
    ) -> Result<(), HandshakeError> {
        if !transform {
            self.push_plain(frames);
            return Ok(());
        }
        let n = frames.len();
        for (i, body) in frames.iter().enumerate() {
            mech.encode_frame_into(i + 1 < n, false, body, &mut self.staging)?;
        }
        Ok(())
    }

    /// Queue a command after the handshake: plain, or through the mechanism (CURVE sends PING and
    /// PONG inside MESSAGEs).
    pub(crate) fn push_command_via(
        &mut self,
        body: &Bytes,
        mech: &mut dyn Mechanism,
        transform: bool,
    ) -> Result<(), HandshakeError> {
        if transform {
            mech.encode_frame_into(false, true, body, &mut self.staging)
        } else {
            self.push_command(body);
            Ok(())
        }
    }

    /// Move everything queued in `other` behind our bytes.
    pub(crate) fn append(&mut self, other: &mut OutBuf) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            std::mem::swap(self, other);
            return;
        }
        self.flush_staging();
        other.flush_staging();
        self.chunks.append(&mut other.chunks);
    }

    /// The queued bytes as I/O slices (at most `MAX_IOV`), in order.
    fn slices<'a>(&'a self, out: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
        let mut n = 0;
        for c in self.chunks.iter().take(MAX_IOV) {
            out[n] = IoSlice::new(c);
            n += 1;
        }
        if n < MAX_IOV && !self.staging.is_empty() {
            out[n] = IoSlice::new(&self.staging);
            n += 1;
        }
        n
    }

    /// Drop `written` bytes from the front.
    fn consume(&mut self, mut written: usize) {
        while written > 0 {
            match self.chunks.front_mut() {
                Some(front) if written >= front.len() => {
                    written -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    front.advance(written);
                    return;
                }
                None => {
                    // An emptied `staging` is moved back to the start of its allocation by the
                    // next `reserve` (nothing to copy), so it is reused, not regrown.
                    self.staging.advance(written);
                    return;
                }
            }
        }
    }

    /// One `write_vectored` call (cancel-safe); consumes what was written.
    pub(crate) async fn write_some<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_some(Pin::new(&mut *w), cx)).await
    }

    /// Poll one `write_vectored` call; consumes what was written.
    pub(crate) fn poll_write_some<W: AsyncWrite>(
        &mut self,
        w: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = self.slices(&mut slices);
        match w.poll_write_vectored(cx, &slices[..n]) {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(k)) => {
                self.consume(k);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Write some bytes through a shared write half (cancel-safe: waits for writability, then one
    /// non-blocking `writev`); consumes what was written.
    pub(crate) async fn write_some_shared(&mut self, w: &WriteHalf) -> io::Result<()> {
        loop {
            w.writable().await?;
            match self.try_write(w) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Write as much as the kernel takes right now without waiting. `Ok(true)` when everything was
    /// written; `Ok(false)` when the socket would block with bytes left (or `WouldBlock` if nothing
    /// at all could be written).
    pub(crate) fn try_write(&mut self, w: &WriteHalf) -> io::Result<bool> {
        let mut first = true;
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = self.slices(&mut slices);
            match w.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => self.consume(k),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !first => return Ok(false),
                Err(e) => return Err(e),
            }
            first = false;
        }
        Ok(true)
    }

    /// Write everything (used during the handshake and for final flushes).
    pub(crate) async fn write_all<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        while !self.is_empty() {
            self.write_some(w).await?;
        }
        Ok(())
    }
}

/// Reserve read space: a normal chunk, or room for the rest of a large frame body.
pub(crate) fn reserve_read(buf: &mut BytesMut, dec: &FrameDecoder) {
    let want = dec
        .body_remaining(buf.len())
        .clamp(READ_CHUNK, MAX_RESERVE.max(READ_CHUNK));
    if buf.capacity() - buf.len() < want / 2 {
        buf.reserve(want);
    }
}

/// Signature (10 octets) plus the major version: the first stage of a greeting.
const GREETING_MAJOR_LEN: usize = 11;

/// Read until `rbuf` holds at least `want` greeting octets, checking the prefix as it arrives.
async fn read_greeting_part(
    rd: &mut ReadHalf,
    rbuf: &mut BytesMut,
    want: usize,
) -> Result<(), HandshakeError> {
    check_greeting_prefix(rbuf)?;
    while rbuf.len() < want {
        let n = rd.read_buf(rbuf).await?;
        check_greeting_prefix(rbuf)?;
        if n == 0 {
            return Err(HandshakeError::Io(
                "connection closed during greeting".into(),
            ));
        }
    }
    Ok(())
}

/// Largest read chunk of a busy connection (a quiet one reads `READ_CHUNK` at a time).
const READ_CHUNK_MAX: usize = 256 * 1024;
/// Read-buffer sizing for a busy connection.
///
/// The chunk size grows while reads fill it (a busy connection: fewer, bigger reads and batches)
/// and drops back when they don't. `BytesMut::reserve` reuses the buffer in place once every frame
/// split off it has been dropped, and allocates a fresh one otherwise.
pub(crate) struct ReadPool {
    chunk: usize,
}

impl ReadPool {
    pub(crate) fn new() -> Self {
        ReadPool { chunk: READ_CHUNK }
    }

    /// After a read of `n` bytes into a space of `room` bytes: adapt the chunk size.
    pub(crate) fn record(&mut self, n: usize, room: usize) {
        if n >= room / 4 * 3 {
            self.chunk = (self.chunk * 2).min(READ_CHUNK_MAX);
        } else if n < self.chunk / 8 {
            self.chunk = READ_CHUNK;
        }
    }

    /// Make room in `buf` for the next read; returns the room available.
    pub(crate) fn reserve(&mut self, buf: &mut BytesMut, dec: &FrameDecoder) -> usize {
        let want = dec
            .body_remaining(buf.len())
            .clamp(self.chunk, MAX_RESERVE.max(self.chunk));
        if buf.capacity() - buf.len() < want / 2 {
            buf.reserve(want);
        }
        buf.capacity() - buf.len()
    }
}

/// Parameters of one handshake.
pub(crate) struct HandshakeParams<'a> {
    /// Our socket type ("ROUTER" for the inbox, "DEALER" for outboxes).
    pub socket_type: &'static str,
    /// Socket types we accept from the peer.
    pub accept: &'static [&'static str],
    /// Our metadata for READY.
    pub metadata: Metadata,
    /// Maximum frame size.
    pub max_frame: usize,
    /// The mechanism state machine.
    pub mech: Box<dyn Mechanism>,
    /// For log lines.
    pub peer: &'a str,
}

/// An established ZMTP connection, ready for messages.
pub(crate) struct Conn {
    pub rd: ReadHalf,
    pub wr: WriteHalf,
    /// Read buffer; may already hold frames that followed the peer's READY.
    pub rbuf: BytesMut,
    pub dec: FrameDecoder,
    pub out: OutBuf,
    pub mech: Box<dyn Mechanism>,
    /// Cached `mech.transforms_frames()`.
    pub transform: bool,
    /// The peer's metadata from the handshake.
    pub peer_meta: Metadata,
    /// The peer's ZMTP minor version (0 = ZMTP 3.0, which has no PING/PONG: no heartbeats then).
    pub peer_minor: u8,
    /// The peer's long-term key proven by the handshake (CURVE); `None` for NULL.
    pub peer_key: Option<crate::curve::CurvePublicKey>,
}

/// Run the greeting and mechanism handshake on a fresh stream. The caller wraps this in the handshake
/// timeout. On a refusal after the greeting we send an ERROR command with the reason (best effort).
pub(crate) async fn handshake(
    stream: Stream,
    p: HandshakeParams<'_>,
) -> Result<Conn, HandshakeError> {
    let (mut rd, mut wr) = stream.into_split();
    let mut mech = p.mech;
    // 1. Greetings, staged like libzmq (RFC 37 allows it): first the signature and major version
    //    (11 octets), then, once the peer's first 11 octets arrived, the rest. libzmq closes as
    //    soon as it has seen a mechanism it does not speak, but it only sends its own mechanism
    //    after our major version: staging lets us learn which mechanism it wanted (and report
    //    `MechanismMismatch` rather than a bare EOF). What arrives is checked as it arrives, so
    //    garbage or an old ZMTP peer is refused without waiting for 64 bytes.
    let ours = Greeting::new(mech.name(), mech.as_server()).encode();
    wr.write_all(&ours[..GREETING_MAJOR_LEN]).await?;
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    read_greeting_part(&mut rd, &mut rbuf, GREETING_MAJOR_LEN).await?;
    // A peer that refuses us may already be closing; what it sent is still worth reading, so a
    // failure to send the rest only counts if the peer's greeting does not arrive either.
    let rest_sent = wr.write_all(&ours[GREETING_MAJOR_LEN..]).await;
    match read_greeting_part(&mut rd, &mut rbuf, GREETING_LEN).await {
        Ok(()) => {}
        Err(e) => return Err(rest_sent.err().map(HandshakeError::from).unwrap_or(e)),
    }
    let peer_greeting = Greeting::decode(rbuf[..GREETING_LEN].try_into().expect("64 bytes"))?;
    rbuf.advance(GREETING_LEN);

    let mut out = OutBuf::default();
    let result = async {
        let theirs = peer_greeting.mechanism_name();
        if theirs != mech.name() {
            return Err(HandshakeError::MechanismMismatch {
                ours: mech.name().to_string(),
                theirs,
            });
        }
        // 2. Mechanism handshake.
        let mut dec = FrameDecoder::new(p.max_frame);
        let mut step = mech.start(&p.metadata, &peer_greeting)?;
        let peer_meta = loop {
            // 3. Once the peer's metadata is known, check socket-type compatibility before sending
            //    the final step (a server's READY): an incompatible peer gets ERROR instead.
            let done = step.peer_metadata.take();
            if let Some(meta) = &done {
                let theirs = meta
                    .get("Socket-Type")
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                if !p.accept.iter().any(|t| t.eq_ignore_ascii_case(&theirs)) {
                    return Err(HandshakeError::IncompatibleSocketType {
                        ours: p.socket_type.to_string(),
                        theirs,
                    });
                }
            }
            for c in &step.send {
                out.push_command(c);
            }
            out.write_all(&mut wr).await?;
            if let Some(meta) = done {
                break meta;
            }
            let frame = loop {
                if let Some(f) = dec.decode(&mut rbuf)? {
                    break f;
                }
                reserve_read(&mut rbuf, &dec);
                if rd.read_buf(&mut rbuf).await? == 0 {
                    return Err(HandshakeError::Io(
                        "connection closed during handshake".into(),
                    ));
                }
            };
            if !frame.command {
                return Err(HandshakeError::Malformed(
                    "message frame before handshake completed".into(),
                ));
            }
            step = mech.on_command(frame.body)?;
        };
        Ok((dec, peer_meta))
    }
    .await;

    match result {
        Ok((dec, peer_meta)) => {
            let transform = mech.transforms_frames();
            let peer_key = mech.peer_public_key();
            Ok(Conn {
                rd,
                wr,
                rbuf,
                dec,
                out,
                mech,
                transform,
                peer_meta,
                peer_minor: peer_greeting.minor,
                peer_key,
            })
        }
        Err(e) => {
            if !matches!(e, HandshakeError::Io(_) | HandshakeError::PeerError(_)) {
                tracing::debug!(peer = p.peer, reason = %e, "refusing ZMTP peer, sending ERROR");
                // A key the authenticator refused gets ZAP's status "400", as libzmq sends it: a
                // libzmq client then reports an authentication failure (HANDSHAKE_FAILED_AUTH).
                let reason = match &e {
                    HandshakeError::Curve(crate::curve::CurveError::Unauthorized(_)) => {
                        "400".to_string()
                    }
                    _ => e.to_string(),
                };
                let mut err_out = OutBuf::default();
                err_out.push_command(&Command::Error(reason).encode());
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), err_out.write_all(&mut wr))
                        .await;
            }
            Err(e)
        }
    }
}

/// What an established connection's receive side saw in a chunk of decoded frames.
pub(crate) enum Incoming {
    /// Nothing special.
    Nothing,
    /// The peer sent ERROR (fatal).
    PeerError(String),
    /// Our answer could not be encoded (fatal; CURVE nonces exhausted).
    Failed(String),
}

impl Incoming {
    /// Why the connection must close, if it must.
    pub(crate) fn fatal(self) -> Option<String> {
        match self {
            Incoming::Nothing => None,
            Incoming::PeerError(r) => Some(format!("peer sent ERROR: {r}")),
            Incoming::Failed(r) => Some(r),
        }
    }
}

/// Handle a command received after the handshake: answer PING with PONG, report ERROR, ignore the rest.
pub(crate) fn handle_command(
    body: &Bytes,
    out: &mut OutBuf,
    peer: &str,
    mech: &mut dyn Mechanism,
    transform: bool,
) -> Incoming {
    match Command::peek_name(body) {
        Some(b"PING") => match Command::decode(body) {
            Ok(Command::Ping { context, .. }) => {
                let pong = Command::Pong { context }.encode();
                if let Err(e) = out.push_command_via(&pong, mech, transform) {
                    return Incoming::Failed(e.to_string());
                }
            }
            _ => tracing::debug!(peer, "ignoring malformed PING"),
        },
        Some(b"PONG") => {}
        Some(b"ERROR") => {
            let reason = match Command::decode(body) {
                Ok(Command::Error(r)) => r,
                _ => "malformed ERROR".to_string(),
            };
            return Incoming::PeerError(reason);
        }
        _ => tracing::debug!(peer, "ignoring unexpected command after handshake"),
    }
    Incoming::Nothing
}

/// Heartbeat state for a connection, if configured and the peer speaks ZMTP 3.1 or later (3.0 peers
/// know no PING).
pub(crate) fn heartbeat_for(
    hb: Option<&crate::Heartbeat>,
    peer_minor: u8,
) -> Option<HeartbeatState> {
    if peer_minor >= 1 {
        hb.map(HeartbeatState::new)
    } else {
        None
    }
}

/// Heartbeat state for a connection (our own PINGs).
pub(crate) struct HeartbeatState {
    pub interval: tokio::time::Interval,
    pub timeout: Duration,
    pub ttl_ds: u16,
    pub last_recv: tokio::time::Instant,
}

impl HeartbeatState {
    pub(crate) fn new(hb: &crate::Heartbeat) -> Self {
        let mut interval = tokio::time::interval_at(
            tokio::time::Instant::now() + hb.interval,
            hb.interval.max(Duration::from_millis(1)),
        );
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        HeartbeatState {
            interval,
            timeout: hb.timeout,
            ttl_ds: (hb.ttl.as_millis() / 100).min(u16::MAX as u128) as u16,
            last_recv: tokio::time::Instant::now(),
        }
    }

    /// On a tick: `Err` if the peer has been silent too long, else queue a PING.
    pub(crate) fn on_tick(
        &mut self,
        out: &mut OutBuf,
        mech: &mut dyn Mechanism,
        transform: bool,
    ) -> Result<(), String> {
        if self.last_recv.elapsed() > self.timeout {
            return Err("heartbeat timeout".into());
        }
        let ping = Command::Ping {
            ttl_ds: self.ttl_ds,
            context: Bytes::new(),
        }
        .encode();
        out.push_command_via(&ping, mech, transform)
            .map_err(|e| e.to_string())
    }
}

/// Await the next heartbeat tick, or forever when heartbeats are off.
pub(crate) async fn hb_tick(hb: &mut Option<HeartbeatState>) {
    match hb {
        Some(h) => {
            h.interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Dials `ep` (outboxes and duplex links alike): a Unix socket, or the first address of a TCP
/// endpoint that answers, with `TCP_NODELAY`.
pub(crate) async fn dial(ep: &Endpoint) -> Result<Stream, HandshakeError> {
    match ep {
        Endpoint::Ipc(p) => Ok(Stream::Unix(UnixStream::connect(p).await?)),
        Endpoint::Tcp { .. } => {
            let addrs = ep
                .resolve()
                .await
                .map_err(|e| HandshakeError::Io(e.to_string()))?;
            let mut last = None;
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(Stream::Tcp(s));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last
                .map(HandshakeError::from)
                .unwrap_or_else(|| HandshakeError::Io("no address".into())))
        }
    }
}
