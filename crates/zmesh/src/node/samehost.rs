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

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

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
    /// tells for sure. Files younger than a second are left alone (a node starting beside us
    /// may be between its `bind` and its `listen`).
    fn remove_stale(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let young = |p: &Path| {
            std::fs::symlink_metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().map_or(true, |age| age < Duration::from_secs(1)))
        };
        let prefix = format!("{}-", self.host);
        for e in entries.flatten() {
            let path = e.path();
            let ours = e
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".sock"));
            if ours && is_socket(&path) && !young(&path) && !listening(&path) {
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

/// What `/proc/net/unix` said at one moment: the paths a socket listened on.
struct Listening {
    read_at: SystemTime,
    paths: HashSet<String>,
}

/// One view of `/proc/net/unix` per network namespace, shared by every node of the process.
///
/// The table lists every Unix socket of the namespace, connections included: in a mesh of N
/// nodes on one host it has ~N² lines, so reading it for every connect made a mesh's start
/// cost O(N³) (100 nodes with every source on never finished). A file is created by `bind`,
/// microseconds before `listen`, so a view read [`SETTLED`] after a file's modification time
/// says for sure whether it listened then; the table is read again only for files newer than
/// the view (each new node's socket costs at most one read per process).
static VIEWS: Mutex<Option<HashMap<String, Listening>>> = Mutex::new(None);

/// How long after its file's creation a socket has surely reached `listen` (file times are
/// only as fine as the kernel's coarse clock, a few ms).
const SETTLED: Duration = Duration::from_millis(20);

/// True if a socket of this network namespace listens on `path` (`/proc/net/unix`: flag
/// `__SO_ACCEPTCON`, 0x10000). A file left by a crashed node has no listener.
fn listening(path: &Path) -> bool {
    let want = path.as_os_str().to_string_lossy().into_owned();
    let Ok(modified) = std::fs::symlink_metadata(path).and_then(|m| m.modified()) else {
        return false;
    };
    let netns = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut views = VIEWS.lock().unwrap_or_else(|e| e.into_inner());
    let views = views.get_or_insert_with(HashMap::new);
    if let Some(v) = views.get(&netns) {
        if v.paths.contains(&want) || modified + SETTLED < v.read_at {
            return v.paths.contains(&want);
        }
    }
    let read_at = SystemTime::now();
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let paths = listening_paths(&table);
    let yes = paths.contains(&want);
    views.insert(netns, Listening { read_at, paths });
    yes
}

/// The paths a socket listens on, from the text of `/proc/net/unix`.
fn listening_paths(table: &str) -> HashSet<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let listens = f.len() >= 8
                && u32::from_str_radix(f[3], 16).is_ok_and(|flags| flags & 0x10000 != 0);
            listens.then(|| f[7].to_string())
        })
        .collect()
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
        let paths = listening_paths(table);
        assert!(paths.contains("/tmp/zmesh-0/a.sock"));
        assert!(!paths.contains("/tmp/zmesh-0/b.sock"));
        assert!(!paths.contains("/tmp/zmesh-0/c.sock"));
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
        // (Files younger than a second may belong to a node starting now: age the leftovers.)
        for p in [s.path_of(stale), other.clone()] {
            let st = std::process::Command::new("touch")
                .args(["-m", "-d", "@1000000000"])
                .arg(&p)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let _ = SameHost::new(Some("h".into()), Some(dir.clone())).unwrap();
        assert!(!s.path_of(stale).exists());
        assert!(s.path_of(live).exists());
        assert!(other.exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
