//! The stop signal of a long-running command: SIGINT (Ctrl-C) and SIGTERM both mean "stop
//! politely" (leave beacon, GOODBYE), for every command.
//!
//! A [`StopSignal`] is created **once per command**, before its loop, and polled first in every
//! turn of the loop's `select!`. Creating a `tokio::signal::ctrl_c()` future inside the loop (as
//! `chat` and `listen` once did) registers a new listener per turn: a signal that arrives while
//! the loop is busy elsewhere is seen by no listener, so under load Ctrl-C was ignored for
//! seconds. The listeners here are registered when the `StopSignal` is built, so a signal that
//! arrives at any later moment completes [`StopSignal::recv`].

use std::io;

/// SIGINT and SIGTERM, registered at construction.
pub struct StopSignal {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    /// A signal was already seen (later `recv`s complete at once).
    fired: bool,
}

impl StopSignal {
    /// Registers the listeners. Must be called inside the tokio runtime.
    pub fn new() -> io::Result<StopSignal> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignal {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
                fired: false,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignal { fired: false })
        }
    }

    /// Completes at the first SIGINT or SIGTERM received since [`StopSignal::new`] (at once if one
    /// was already seen). Cancel-safe: use it in `select!`.
    pub async fn recv(&mut self) {
        if self.fired {
            return;
        }
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        self.fired = true;
    }
}
