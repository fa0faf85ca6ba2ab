//! Same-host fast path: nodes on one host (and one network namespace) talk over Unix sockets
//! (`ipc://`) instead of TCP loopback.
//!
//! How (docs/protocol.md, "Same-host fast path"):
//!
//! * Every node binds a second inbox, a Unix socket named after **this host's identity** and its
//!   own UUID, `<dir>/<host>-<uuid>.sock`, in a directory only its user can enter
//!   (`$XDG_RUNTIME_DIR/zmesh`, else `/tmp/zmesh-<euid>`), and says so in its HELLO:
//!   `X-ZMESH-IPC: ipc://<path>` and `X-ZMESH-HOST: <host>`. Plain ZRE peers ignore the headers.
//! * The host identity is a hash of `/proc/sys/kernel/random/boot_id`, `/etc/machine-id` and
//!   the network namespace (`/proc/self/ns/net`): two nodes share it only when they run on the
//!   same boot of the same machine in the same network namespace (containers and the test
//!   namespaces, which stand for other hosts, differ).
//! * When the engine asks to connect to a peer, the shell looks for `<dir>/<our host>-<peer
//!   uuid>.sock` **listening** in our network namespace (`/proc/net/unix`): only then does the
//!   outbox go to the socket. Missing (another host, another user, the peer turned it off), not a
//!   socket, or stale (a crashed node's file, nobody listening): TCP, as always.
//! * The choice is made once per connection, before the first message: a session never mixes
//!   transports, so nothing can overtake anything.

use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// HELLO header naming the node's Unix-socket inbox (`ipc:///path`).
pub const IPC_HEADER: &str = "X-ZMESH-IPC";
/// HELLO header carrying the node's host identity (16 hex digits).
pub const HOST_HEADER: &str = "X-ZMESH-HOST";

/// Longest usable socket path (`sun_path` is 108 bytes with the terminating NUL).
const MAX_PATH: usize = 107;

/// This node's side of the fast path: where sockets live and this host's identity.
#[derive(Debug, Clone)]
pub(crate) struct SameHost {
    host: String,
    dir: PathBuf,
}

impl SameHost {
    /// The fast path with the given identity and directory (defaults: [`host_id`] and
    /// [`default_dir`]); the directory is created (mode 0700) if missing and must belong to us
    /// and be closed to others. `None` (with a debug log) when that cannot be had.
    pub(crate) fn new(host: Option<String>, dir: Option<PathBuf>) -> Option<SameHost> {
        let dir = dir.unwrap_or_else(default_dir);
        if let Err(e) = private_dir(&dir) {
            tracing::debug!(dir = %dir.display(), error = %e, "same-host fast path off");
            return None;
        }
        let s = SameHost {
            host: host.unwrap_or_else(host_id),
            dir,
        };
        let probe = s.path_of(Uuid::nil());
        if probe.as_os_str().len() > MAX_PATH {
            tracing::debug!(path = %probe.display(), "same-host fast path off: path too long");
            return None;
        }
        s.remove_stale();
        Some(s)
    }

    /// Removes the sockets of this host identity nobody listens on any more (left by killed
    /// nodes). Only this identity's: they belong to our network namespace, so `/proc/net/unix`
    /// tells for sure. A socket caught between its creation and its `listen` would lose its
    /// file, and its peers would use TCP: safe.
    fn remove_stale(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
            return;
        };
        let prefix = format!("{}-", self.host);
        for e in entries.flatten() {
            let path = e.path();
            let ours = e
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".sock"));
            if ours && is_socket(&path) && !listening_in(&table, &path.to_string_lossy()) {
                tracing::debug!(path = %path.display(), "stale same-host socket removed");
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// This host's identity, as sent in [`HOST_HEADER`].
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The socket of node `uuid` on this host.
    pub(crate) fn path_of(&self, uuid: Uuid) -> PathBuf {
        self.dir
            .join(format!("{}-{}.sock", self.host, uuid.simple()))
    }

    /// The `ipc://` endpoint to reach `peer` by, if it listens on this host; `None`: use TCP.
    pub(crate) fn route(&self, peer: Uuid) -> Option<String> {
        let path = self.path_of(peer);
        if !is_socket(&path) || !listening(&path) {
            return None;
        }
        Some(format!("ipc://{}", path.display()))
    }
}

/// `$XDG_RUNTIME_DIR/zmesh`, else `/tmp/zmesh-<euid>`.
pub(crate) fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("zmesh"),
        _ => std::env::temp_dir().join(format!("zmesh-{}", euid())),
    }
}

fn euid() -> u32 {
    // /proc/self is owned by the process's effective user.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// Creates `dir` (0700) if missing; refuses one that is not ours or that others may write to.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let md = std::fs::symlink_metadata(dir)?;
    if !md.is_dir() || md.uid() != euid() || md.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not a directory of ours closed to others",
        ));
    }
    Ok(())
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// True if a socket of this network namespace listens on `path` (`/proc/net/unix`: flag
/// `__SO_ACCEPTCON`, 0x10000). A file left by a crashed node has no listener.
fn listening(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let want = path.as_os_str().to_string_lossy();
    listening_in(&table, &want)
}

fn listening_in(table: &str, path: &str) -> bool {
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() >= 8
            && f[7] == path
            && u32::from_str_radix(f[3], 16).is_ok_and(|flags| flags & 0x10000 != 0)
    })
}

/// This host's identity: FNV-1a (64 bit) of the boot id, the machine id and the network
/// namespace, in hex. Unreadable parts count as empty.
pub(crate) fn host_id() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let netns = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let parts = [
        read("/proc/sys/kernel/random/boot_id"),
        read("/etc/machine-id"),
        netns,
    ];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in &parts {
        for b in part.trim().bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_unix_listening_flag() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 123 /tmp/zmesh-0/a.sock\n\
            0000000000000000: 00000002 00000000 00000000 0001 03 124 /tmp/zmesh-0/b.sock\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 125\n";
        assert!(listening_in(table, "/tmp/zmesh-0/a.sock"));
        assert!(!listening_in(table, "/tmp/zmesh-0/b.sock"));
        assert!(!listening_in(table, "/tmp/zmesh-0/c.sock"));
    }

    #[test]
    fn host_id_is_stable_hex() {
        let a = host_id();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, host_id());
    }

    #[test]
    fn a_listening_socket_routes_a_stale_one_does_not() {
        let dir = std::env::temp_dir().join(format!("zmesh-samehost-{}", std::process::id()));
        let s = SameHost::new(Some("h".into()), Some(dir.clone())).unwrap();
        let (live, stale, missing) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let _l = std::os::unix::net::UnixListener::bind(s.path_of(live)).unwrap();
        drop(std::os::unix::net::UnixListener::bind(s.path_of(stale)).unwrap());
        assert_eq!(
            s.route(live),
            Some(format!("ipc://{}", s.path_of(live).display()))
        );
        assert_eq!(s.route(stale), None, "file left, nobody listening");
        assert_eq!(s.route(missing), None);
        // The next node of this identity clears the leftover, not the live socket nor another
        // identity's.
        let other = dir.join(format!("x-{}.sock", stale.simple()));
        drop(std::os::unix::net::UnixListener::bind(&other).unwrap());
        let _ = SameHost::new(Some("h".into()), Some(dir.clone())).unwrap();
        assert!(!s.path_of(stale).exists());
        assert!(s.path_of(live).exists());
        assert!(other.exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
