//! Interop with czmq's own zgossip (Debian `libczmq-dev` 4.2.1), on loopback: a zmesh client at a
//! czmq hub, and czmq clients at a zmesh hub. `interop/zgossip_peer.c` drives czmq's `zgossip`
//! actor; the test compiles it (cc + pkg-config) into the target directory.
//!
//! What is proved:
//! * a czmq hub receives a zmesh node's tuple exactly as Zyre publishes it (UUID in upper-case
//!   hex = endpoint);
//! * a zmesh client left idle for 3 s at a czmq hub (whose client timeout is 1 s, and whose own
//!   clients then silently stop receiving: prior-art A.2) still receives a tuple published
//!   afterwards: it meets a node it can only have learned from that tuple;
//! * a zmesh hub serves czmq clients: a czmq client gets the hub's tuple, the hub accepts a czmq
//!   client's tuple (and meets that node), and forwards it to a czmq client idle for 3 s.
//!
//! Run: `bash scripts/test.sh -p zmesh -- gossip_czmq` (installs libczmq-dev), or
//! `cargo test -p zmesh --test gossip_czmq -- --include-ignored` with libczmq-dev present.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zmesh::{Node, NodeBuilder};

mod loopback;
use loopback::{builder, is_enter, port, wait_for};

const T: Duration = Duration::from_secs(15);

/// Builds `interop/zgossip_peer.c` once per test binary.
fn peer_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/zgossip_peer.c");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("zgossip_peer");
        let flags = Command::new("pkg-config")
            .args(["--cflags", "--libs", "libczmq", "libzmq"])
            .output()
            .expect("pkg-config (install libczmq-dev: scripts/install-test-deps.sh)");
        assert!(
            flags.status.success(),
            "libczmq-dev is missing: run through scripts/test.sh (installs it)"
        );
        let flags = String::from_utf8(flags.stdout).unwrap();
        let ok = Command::new("cc")
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .args(flags.split_whitespace())
            .status()
            .expect("cc");
        assert!(ok.success(), "compiling {} failed", src.display());
        out
    })
    .clone()
}

/// One czmq zgossip actor, driven through its stdin, killed on drop.
struct Czmq {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Czmq {
    fn start() -> Czmq {
        let mut child = Command::new(peer_bin())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start zgossip_peer");
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut c = Czmq {
            child,
            stdin,
            lines,
        };
        c.expect(|l| l == "READY", "READY");
        c
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits (blocking) for a line matching `f`.
    fn expect(&mut self, f: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if f(&l) => return l,
                Ok(_) => continue,
                Err(_) => panic!("czmq peer: no {what} within {T:?}"),
            }
        }
    }

    /// Waits for `DELIVER key value` (off the async runtime's threads).
    async fn deliver(&mut self, key: &str, value: &str) {
        let want = format!("DELIVER {key} {value}");
        tokio::task::block_in_place(|| self.expect(|l| l == want, &want));
    }
}

impl Drop for Czmq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn quiet(name: &str) -> NodeBuilder {
    builder(name, port()).beacons(false)
}

async fn endpoint(n: &Node) -> String {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if let Some(ep) = n.endpoint() {
            return ep;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node never attached"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs libczmq-dev: run through scripts/test.sh"]
async fn a_zmesh_client_works_with_a_czmq_hub_even_when_idle() {
    let hub_ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut hub = Czmq::start();
    hub.send(&format!("bind {hub_ep}"));
    let (a, mut ea) = quiet("a").gossip_connect(&hub_ep).start().await.unwrap();
    let a_ep = endpoint(&a).await;
    hub.deliver(&zmesh::uuid_to_string(&a.uuid()), &a_ep).await;
    // The control: a client that pings only every 10 s, as idle as czmq's own clients.
    let slow = zmesh_zre::gossip::GossipConfig {
        ping_interval: Duration::from_secs(10),
        remote_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let (a2, mut ea2) = quiet("a2")
        .gossip_connect(&hub_ep)
        .gossip_config(slow)
        .start()
        .await
        .unwrap();
    let a2_ep = endpoint(&a2).await;
    hub.deliver(&zmesh::uuid_to_string(&a2.uuid()), &a2_ep)
        .await;
    // Idle far beyond czmq's 1 s client timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // B knows nobody; only a tuple published now through the hub can bring A to it.
    let (b, mut eb) = quiet("b").start().await.unwrap();
    let b_ep = endpoint(&b).await;
    let mut c = Czmq::start();
    c.send(&format!("connect {hub_ep}"));
    c.send(&format!(
        "publish {} {b_ep}",
        zmesh::uuid_to_string(&b.uuid())
    ));
    wait_for(&mut ea, "a enters b (tuple via the czmq hub)", |e| {
        is_enter(e, b.uuid())
    })
    .await;
    wait_for(&mut eb, "b enters a", |e| is_enter(e, a.uuid())).await;
    // The czmq client got a's tuple too.
    c.deliver(&zmesh::uuid_to_string(&a.uuid()), &a_ep).await;
    // The slow client was dropped by the czmq hub: the tuple that reached `a` never reaches it
    // (so the test above can fail: pinging is what kept `a` served).
    let late = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(e) = ea2.recv().await {
            if is_enter(&e, b.uuid()) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        !matches!(late, Ok(true)),
        "an idle client heard of b: czmq's hub no longer drops idle clients?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs libczmq-dev: run through scripts/test.sh"]
async fn a_zmesh_hub_serves_czmq_clients() {
    let (h, mut eh) = quiet("hub")
        .gossip_bind("tcp://127.0.0.1:*")
        .start()
        .await
        .unwrap();
    let hub_ep = h.gossip_endpoint().unwrap();
    let h_ep = endpoint(&h).await;
    let mut listener = Czmq::start();
    listener.send(&format!("connect {hub_ep}"));
    listener
        .deliver(&zmesh::uuid_to_string(&h.uuid()), &h_ep)
        .await;
    // The czmq client never pings: idle for 3 s, it must still be served.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (b, _eb) = quiet("b").start().await.unwrap();
    let b_ep = endpoint(&b).await;
    let bkey = zmesh::uuid_to_string(&b.uuid());
    let mut publisher = Czmq::start();
    publisher.send(&format!("connect {hub_ep}"));
    publisher.send(&format!("publish {bkey} {b_ep}"));
    wait_for(&mut eh, "hub enters b (czmq client's tuple)", |e| {
        is_enter(e, b.uuid())
    })
    .await;
    listener.deliver(&bkey, &b_ep).await;
}
