//! Shared pieces of the zmesh benchmark binaries (`zmtp-bench` and `zmesh-bench`).
//!
//! Both binaries measure the same two-process pattern: process A (the driver) and process B (the
//! binary re-executed with a hidden `--peer` flag) each own one end of a [`Link`], and the figures of
//! zmesh are put next to a plain tokio TCP baseline measured in the same run. What they share lives
//! here so that the baseline, the transport link and the statistics are one piece of code:
//!
//! * [`Link`]: one process's end of the link, generic enough for a node, the ZMTP transport and TCP.
//! * [`tcp_baseline`]: the plain tokio `u32`-length-prefixed TCP baseline.
//! * [`zmtp_link`]: the zmesh ZMTP transport alone (an `Inbox` plus an `Outbox`).
//! * [`rtt`]: the hello exchange and the timed round-trip / echo loops.
//! * [`stats`]: percentiles and medians.
//! * [`read_announce`]: how a driver learns where its peer process listens.

use std::io::{BufRead, BufReader};
use std::process::Child;

use bytes::Bytes;

pub mod rtt;
pub mod stats;
pub mod tcp_baseline;
pub mod zmtp_link;

/// One process's end of a two-process link: send to the other process, receive from it.
///
/// The benchmarks run on a current-thread runtime and never move a link across threads, so the
/// futures need not be `Send`; that is why plain `async fn` is fine here.
#[allow(async_fn_in_trait)]
pub trait Link {
    /// Queues one message for the other process (may buffer until [`Link::flush`]).
    async fn send(&mut self, msg: Bytes);
    /// Pushes buffered messages towards the other process.
    async fn flush(&mut self);
    /// The next message from the other process.
    async fn recv(&mut self) -> Bytes;
    /// Orderly shutdown: everything sent reaches the other process.
    async fn shutdown(self);
}

/// Reads the peer process's announcement line `<PREFIX> <value>` from its stdout and returns the
/// value. The stdout pipe is handed back to `child` so the peer never writes into a closed pipe.
pub fn read_announce(child: &mut Child, prefix: &str) -> String {
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("read peer announcement");
    child.stdout = Some(reader.into_inner());
    line.trim()
        .strip_prefix(prefix)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("peer announced {line:?}, expected {prefix} ..."))
}
