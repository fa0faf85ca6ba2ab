//! `faultproxy` — a TCP proxy that delays every byte by a random latency, for fault-injection tests.
//!
//! ```text
//! faultproxy --listen 10.77.0.12:16861 --target 10.77.0.12:16851 --delay-ms 100 --jitter-ms 50
//! ```
//!
//! This kernel has no `tc netem`, so the tests put this proxy in front of a node's inbox (inside the
//! node's network namespace, via `ip netns exec`) and make the node advertise the proxy's address.
//! Every connection accepted on `--listen` is forwarded to `--target`; each chunk read in either
//! direction is held for `delay ± jitter` (uniform) before it is written on.
//!
//! # Design
//!
//! Per direction, a reader task stamps each chunk with its release time and queues it; a writer task
//! sleeps until that time and writes it. A TCP stream cannot be reordered, so a release time is never
//! earlier than the previous chunk's: jitter stretches and compresses gaps, it does not reorder bytes
//! (that is what a real network's jitter looks like through TCP, too). The queue is bounded: when the
//! writer falls behind, the reader stops reading and TCP flow control pushes back on the sender.
//! Closing one direction (EOF) is forwarded after the queued bytes, as a half-close.
//!
//! The proxy prints one JSON line on stdout when it listens (`{"event":"LISTENING","addr":…}`), so a
//! test harness can wait for it, and logs connection ends to stderr.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks queued per direction before the reader stops reading (back-pressure bound).
const QUEUED_CHUNKS: usize = 256;
/// Largest chunk read at once.
const CHUNK: usize = 64 * 1024;

/// Command-line options.
#[derive(Debug, Clone, Copy)]
struct Options {
    listen: SocketAddr,
    target: SocketAddr,
    delay: Duration,
    jitter: Duration,
}

fn usage() -> ! {
    eprintln!(
        "usage: faultproxy --listen IP:PORT --target IP:PORT [--delay-ms N] [--jitter-ms N]\n\
         Forwards TCP connections from --listen to --target, holding every chunk for\n\
         delay +- jitter milliseconds (uniform), in order."
    );
    std::process::exit(2);
}

fn parse_args() -> Options {
    let mut listen = None;
    let mut target = None;
    let mut delay = 0u64;
    let mut jitter = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        let bad = |what: &str| -> ! {
            eprintln!("faultproxy: bad {what}: {value:?}");
            usage()
        };
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().unwrap_or_else(|_| bad("--listen"))),
            "--target" => target = Some(value.parse().unwrap_or_else(|_| bad("--target"))),
            "--delay-ms" => delay = value.parse().unwrap_or_else(|_| bad("--delay-ms")),
            "--jitter-ms" => jitter = value.parse().unwrap_or_else(|_| bad("--jitter-ms")),
            _ => usage(),
        }
    }
    let (Some(listen), Some(target)) = (listen, target) else {
        usage()
    };
    if jitter > delay {
        eprintln!("faultproxy: --jitter-ms must not exceed --delay-ms");
        usage();
    }
    Options {
        listen,
        target,
        delay: Duration::from_millis(delay),
        jitter: Duration::from_millis(jitter),
    }
}

/// A random latency in `delay ± jitter`.
fn latency(opts: &Options) -> Duration {
    if opts.jitter.is_zero() {
        return opts.delay;
    }
    let j = opts.jitter.as_micros() as i64;
    let offset = rand::thread_rng().gen_range(-j..=j);
    let us = opts.delay.as_micros() as i64 + offset;
    Duration::from_micros(us.max(0) as u64)
}

/// Reads chunks from `from`, stamps each with its release time and queues it for the writer.
/// An empty chunk means EOF.
async fn read_side(mut from: OwnedReadHalf, tx: mpsc::Sender<(Instant, Vec<u8>)>, opts: Options) {
    let mut last = Instant::now();
    loop {
        let mut buf = vec![0u8; CHUNK];
        // A read error ends the direction like EOF does.
        let n: usize = from.read(&mut buf).await.unwrap_or_default();
        buf.truncate(n);
        // Never earlier than the previous chunk: bytes of one stream stay in order.
        let release = (Instant::now() + latency(&opts)).max(last);
        last = release;
        if tx.send((release, buf)).await.is_err() || n == 0 {
            return;
        }
    }
}

/// Writes queued chunks to `to` at their release times; forwards EOF as a half-close.
async fn write_side(mut to: OwnedWriteHalf, mut rx: mpsc::Receiver<(Instant, Vec<u8>)>) {
    while let Some((release, chunk)) = rx.recv().await {
        tokio::time::sleep_until(release).await;
        if chunk.is_empty() {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

async fn serve(client: TcpStream, peer: SocketAddr, opts: Options) {
    let server = match TcpStream::connect(opts.target).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("faultproxy: {peer}: cannot connect to {}: {e}", opts.target);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let (up_tx, up_rx) = mpsc::channel(QUEUED_CHUNKS);
    let (down_tx, down_rx) = mpsc::channel(QUEUED_CHUNKS);
    let _ = tokio::join!(
        read_side(cr, up_tx, opts),
        write_side(sw, up_rx),
        read_side(sr, down_tx, opts),
        write_side(cw, down_rx),
    );
    eprintln!("faultproxy: {peer}: connection closed");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let opts = parse_args();
    let listener = match TcpListener::bind(opts.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("faultproxy: cannot listen on {}: {e}", opts.listen);
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    println!(
        "{{\"event\":\"LISTENING\",\"addr\":\"{addr}\",\"target\":\"{}\",\"delay_ms\":{},\"jitter_ms\":{}}}",
        opts.target,
        opts.delay.as_millis(),
        opts.jitter.as_millis()
    );
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(serve(stream, peer, opts));
            }
            Err(e) => {
                eprintln!("faultproxy: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
