//! `zmesh worker` / `zmesh call` / `zmesh services` / `zmesh broker` as black boxes on loopback:
//! replies on stdout, an exit status per outcome, `--json` with tries, worker, broker and
//! latency; a call through a broker at a fixed endpoint with no beacon; a worker SIGKILLed
//! mid-call (the retry reaches the other one).

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    33000 + (std::process::id() % 1000) as u16 * 20 + NEXT.fetch_add(1, Ordering::Relaxed) % 20
}

fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn zmesh(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zmesh"));
    c.args(["--iface", "lo", "--port", &port.to_string()]);
    c.args(args);
    c
}

/// A background process, killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(port: u16, args: &[&str]) -> Proc {
    Proc(
        zmesh(port, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn zmesh"),
    )
}

fn call(port: u16, extra: &[&str]) -> Output {
    let mut args = vec!["call", "--interval", "100"];
    if !extra.contains(&"--discover") {
        args.extend_from_slice(&["--discover", "10s"]);
    }
    args.extend_from_slice(extra);
    zmesh(port, &args).output().expect("run zmesh call")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn worker_call_exit_codes_and_services() {
    let p = port();
    let _echo = spawn(
        p,
        &[
            "worker",
            "--interval",
            "100",
            "--name",
            "w-echo",
            "echo",
            "--echo",
        ],
    );
    let _exec = spawn(
        p,
        &[
            "worker",
            "--interval",
            "100",
            "--name",
            "w-exec",
            "shout",
            "--exec",
            "x=$(cat); if [ \"$x\" = fail ]; then echo broken >&2; exit 9; fi; echo -n \"$x\" | tr a-z A-Z",
        ],
    );
    let out = call(p, &["echo", "hello"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"hello");

    let out = call(p, &["--json", "shout", "abc"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = json(&out);
    assert_eq!(v["outcome"], "reply");
    assert_eq!(v["payload"], "ABC");
    assert_eq!(v["tries"], 1);
    assert!(v["worker"].is_string());
    assert!(v["broker"].is_null());
    assert!(v["latency_us"].as_u64().unwrap() > 0);

    let out = call(p, &["--json", "shout", "fail"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let v = json(&out);
    assert_eq!(
        (v["code"].clone(), v["message"].clone()),
        (9.into(), "broken".into())
    );

    let out = call(p, &["--discover", "300ms", "nobody", "x"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let out = call(p, &["bad name", "x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let out = zmesh(
        p,
        &["--json", "services", "--interval", "100", "--wait", "1s"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines: Vec<Value> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let shout = lines
        .iter()
        .find(|l| l["service"] == "shout")
        .expect("shout listed");
    assert_eq!(shout["workers"][0]["name"], "w-exec");
    assert_eq!(shout["workers"][0]["requests"], 2);
    assert_eq!(shout["workers"][0]["errors"], 1);
    assert_eq!(shout["workers"][0]["last_error"], "broken");
}

#[test]
fn through_a_broker_with_no_beacon_and_a_worker_killed_mid_call() {
    let p = port();
    let ep = format!("tcp://127.0.0.1:{}", free_tcp());
    // The broker and everyone else on different beacon ports: they can only meet through it.
    let _broker = spawn(p, &["broker", "--interval", "100", "--bind", &ep]);
    let mut slow = spawn(
        p + 1,
        &[
            "worker",
            "--interval",
            "100",
            "--broker",
            &ep,
            "--delay",
            "1500ms",
            "job",
            "--echo",
        ],
    );
    let _fast = spawn(
        p + 2,
        &[
            "worker",
            "--interval",
            "100",
            "--broker",
            &ep,
            "job",
            "--echo",
        ],
    );
    // Warm up: both workers are behind the broker once two calls were answered by two workers.
    let started = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "workers never both answered"
        );
        let out = call(p + 3, &["--json", "--broker", &ep, "job", "warm"]);
        if out.status.code() == Some(0) {
            let v = json(&out);
            assert_eq!(v["payload"], "warm");
            assert!(v["broker"].is_string());
            seen.insert(v["worker"].as_str().unwrap().to_owned());
        }
    }
    // Calls in flight while the slow worker is killed: every one is answered (by the other).
    let children: Vec<Child> = (0..4)
        .map(|i| {
            zmesh(
                p + 3,
                &[
                    "--json",
                    "call",
                    "--interval",
                    "100",
                    "--discover",
                    "10s",
                    "--broker",
                    &ep,
                    "--retries",
                    "4",
                    "--per-try",
                    "3s",
                    "--timeout",
                    "15s",
                    "job",
                    &format!("k{i}"),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let _ = slow.0.kill();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(json(&out)["payload"], format!("k{i}"));
    }
    // `zmesh services` through the broker sees the surviving worker and its stats.
    let out = zmesh(
        p + 4,
        &[
            "--json",
            "services",
            "--interval",
            "100",
            "--wait",
            "2s",
            "--broker",
            &ep,
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let job: Value = out
        .stdout
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .find(|l| l["service"] == "job")
        .unwrap_or_else(|| panic!("job not listed: {out:?}"));
    assert_eq!(job["brokers"].as_array().unwrap().len(), 1, "{job}");
    let workers = job["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{job}");
    assert!(workers[0]["requests"].as_u64().unwrap() >= 1, "{job}");
}
