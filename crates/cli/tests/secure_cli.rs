//! Secure mode from the shell, as black boxes on loopback: `zmesh keygen`, `--curve-secret`,
//! `--allow`, and bad input (exit status 2 with a message naming the file).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    41000 + (std::process::id() % 1000) as u16 * 20 + NEXT.fetch_add(1, Ordering::Relaxed) % 20
}

fn zmesh(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zmesh"));
    c.args(["--iface", "lo"]);
    // 0: a command that starts no node (keygen, bad input); it gets no --port (0 is refused).
    if port != 0 {
        c.args(["--port", &port.to_string()]);
    }
    c.args(args);
    c
}

/// A fresh directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("zmesh-secure-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keygen(path: &str) -> String {
    let out = zmesh(0, &["keygen", path]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(key.len(), 40, "{key}");
    key
}

fn replier(port: u16, name: &str, security: &[&str]) -> Proc {
    let mut args: Vec<&str> = security.to_vec();
    args.extend_from_slice(&["reply", "--name", name, "--interval", "100", "--echo"]);
    Proc(
        zmesh(port, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn request(port: u16, security: &[&str], target: &str, discover: &str) -> std::process::Output {
    let mut args: Vec<&str> = security.to_vec();
    args.extend_from_slice(&[
        "request",
        "--interval",
        "100",
        "--discover",
        discover,
        target,
        "echo.x",
        "secret-payload",
    ]);
    zmesh(port, &args).output().unwrap()
}

#[test]
fn secure_nodes_talk_and_unlisted_or_plain_ones_do_not() {
    let keys = Dir::new("keys");
    let allowed = Dir::new("allowed");
    for n in ["srv", "cli", "stranger"] {
        keygen(&keys.path(&format!("{n}.key")));
    }
    for n in ["srv", "cli"] {
        std::fs::copy(
            keys.0.join(format!("{n}.key")),
            allowed.0.join(format!("{n}.key")),
        )
        .unwrap();
    }
    let allow = allowed.0.display().to_string();
    let (srv, cli, stranger) = (
        keys.path("srv.key_secret"),
        keys.path("cli.key"),
        keys.path("stranger.key_secret"),
    );
    let p = port();
    let _srv = replier(p, "srv", &["--curve-secret", &srv, "--allow", &allow]);

    // A listed client (given its public file: the secret beside it is used).
    let out = request(
        p,
        &["--curve-secret", &cli, "--allow", &allow],
        "srv",
        "10s",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"secret-payload");
    // Without --allow on the client side: still secure, still accepted by the server's list.
    let out = request(p, &["--curve-secret", &cli], "srv", "10s");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // An unlisted key and a plain node never discover the server: no responders (exit 4).
    let out = request(p, &["--curve-secret", &stranger], "srv", "2s");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let out = request(p, &[], "srv", "2s");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}

#[test]
fn bad_key_files_are_clear_errors() {
    let d = Dir::new("bad");
    let missing = d.path("missing.key");
    let garbage = d.path("garbage");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let pub_only = d.path("pub.key");
    keygen(&pub_only);
    std::fs::remove_file(Path::new(&format!("{pub_only}_secret"))).unwrap();
    let nodir = d.path("nodir");
    let good = d.path("good.key");
    keygen(&good);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--curve-secret", &missing], "missing.key"),
        (vec!["--curve-secret", &garbage], "garbage"),
        (vec!["--curve-secret", &pub_only], "pub.key"),
        (vec!["--allow", &d.0.to_str().unwrap()], "--curve-secret"),
        (vec!["--curve-secret", &good, "--allow", &nodir], "nodir"),
        // keygen never overwrites.
        (vec!["keygen", &good], "exists"),
    ];
    for (args, needle) in cases {
        let mut args = args.clone();
        if args[0] != "keygen" {
            args.extend_from_slice(&["peers", "--wait", "0.1"]);
        }
        let out = zmesh(0, &args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
