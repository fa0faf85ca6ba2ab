//! The README's library example is `examples/readme.rs`, word for word, and it does something
//! visible when run as two instances: each sees the other enter, answer its request, join, whisper
//! and shout.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const EXAMPLE: &str = include_str!("../examples/readme.rs");
const README: &str = include_str!("../../../README.md");

#[test]
fn readme_example_is_the_example_file() {
    let block = format!("```rust,no_run\n{EXAMPLE}```");
    assert!(
        README.contains(&block),
        "README.md must contain examples/readme.rs verbatim in a ```rust,no_run block"
    );
}

/// Every link of the README points inside the repository, at something that exists.
#[test]
fn readme_links_stay_inside_the_repository() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut rest = README;
    let mut links = 0;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let end = after.find(')').expect("closing parenthesis of a link");
        let target = after[..end].split('#').next().unwrap();
        assert!(
            !target.contains("://") && !target.starts_with("..") && !target.starts_with('/'),
            "README links outside the repository: {target}"
        );
        assert!(
            root.join(target).exists(),
            "README links to a missing {target}"
        );
        links += 1;
        rest = &after[end..];
    }
    assert!(links >= 3, "only {links} links found");
}

/// The built example: `target/<profile>/examples/readme`, beside this test's `deps/`.
fn example_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/readme");
    assert!(
        bin.exists(),
        "{} is not built: run `cargo test -p zmesh` (or scripts/test.sh), which builds the examples",
        bin.display()
    );
    bin
}

struct Instance(Child, mpsc::Receiver<String>);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(name: &str) -> Instance {
    let mut child = Command::new(example_bin())
        .arg(name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Instance(child, rx)
}

#[test]
fn two_instances_of_the_readme_example_talk() {
    let (a, b) = (
        format!("alice-{}", std::process::id()),
        format!("bob-{}", std::process::id()),
    );
    let ia = start(&a);
    let ib = start(&b);
    for (inst, me, other) in [(&ia, &a, &b), (&ib, &b, &a)] {
        let mut want = vec![
            format!("{other} entered"),
            format!("{other} answered: hello {me}, {other} here"),
            format!("{other} joined CHAT"),
            format!("{other} whispers: hi {me}, from {other}"),
            format!("{other} shouts to CHAT: welcome to CHAT, {me}"),
        ];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !want.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = inst
                .1
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("{me}: still waiting for {want:?}: {e:?}"));
            want.retain(|w| *w != line);
        }
    }
}
