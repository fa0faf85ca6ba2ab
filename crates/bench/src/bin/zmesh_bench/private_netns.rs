//! `--all-sources` runs inside a network namespace of its own.
//!
//! Every source on means IPv4 multicast and IPv6 link-local multicast beacons besides broadcast.
//! Pinned to `lo` they would not leave the machine, but the project's rule is stricter: the new
//! sources run only inside namespaces we created. So the benchmark re-executes itself under
//! `ip netns exec` in a fresh namespace `zmb-src-<pid>` holding nothing but its own `lo` (up, with
//! multicast on), and removes it afterwards, whatever the outcome: SIGINT and SIGTERM are passed on
//! to the child and the namespace is removed once it has exited; namespaces left by a run killed
//! with SIGKILL (their pid gone) are removed by the next run. Root only; anyone else gets a clear
//! error.

use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// Set in the re-executed child: it already runs inside the private namespace.
const INSIDE: &str = "ZMESH_BENCH_PRIVATE_NETNS";

/// Runs `ip` with `args`; a failure is an error naming the command.
fn ip(args: &[&str]) -> Result<(), String> {
    let st = Command::new("ip")
        .args(args)
        .status()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {st}", args.join(" ")))
    }
}

/// Prefix of the private namespaces; the rest is the pid of the run that made it.
const PREFIX: &str = "zmb-src-";

/// The private namespace, deleted on drop.
struct Namespace(String);

impl Namespace {
    fn create() -> Result<Namespace, String> {
        remove_orphans();
        let name = format!("{PREFIX}{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Namespace(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "multicast", "on"])?;
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.0]) {
            eprintln!("zmesh-bench: could not remove namespace {}: {e}", self.0);
        }
    }
}

/// Removes the namespaces of earlier runs whose process is gone (killed with SIGKILL).
fn remove_orphans() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// The signal to pass on to the child (0 = none yet).
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(sig: libc::c_int) {
    PENDING.store(sig, Ordering::Relaxed);
}

/// Runs `cmd` and waits for it; SIGINT or SIGTERM received meanwhile is passed on to it.
fn run_forwarding_signals(cmd: &mut Command) -> Result<std::process::ExitStatus, String> {
    let mut child = cmd.spawn().map_err(|e| format!("ip netns exec: {e}"))?;
    // SAFETY: `remember` only stores into an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            remember as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            remember as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    loop {
        if let Some(st) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            return Ok(st);
        }
        let sig = PENDING.swap(0, Ordering::Relaxed);
        if sig != 0 {
            // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With `--all-sources`, outside the private namespace: runs this very invocation again inside a
/// fresh one and exits with its status. Returns (and the caller goes on) when there is nothing to
/// do: no `--all-sources`, or already inside.
pub fn reexec_if_needed(all_sources: bool) {
    if !all_sources || std::env::var_os(INSIDE).is_some() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "zmesh-bench: --all-sources runs in a private network namespace (multicast and IPv6 \
             beacons never leave it) and needs root to create one"
        );
        std::process::exit(2);
    }
    let status = Namespace::create().and_then(|ns| {
        eprintln!(
            "zmesh-bench: --all-sources: running inside namespace {}",
            ns.0
        );
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        run_forwarding_signals(
            Command::new("ip")
                .args(["netns", "exec", &ns.0])
                .arg(exe)
                .args(std::env::args_os().skip(1))
                .env(INSIDE, "1"),
        )
    });
    match status {
        Ok(st) => std::process::exit(st.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("zmesh-bench: {e}");
            std::process::exit(2);
        }
    }
}
