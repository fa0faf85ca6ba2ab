//! Replays the saved fuzz corpus and every crash regression on stable Rust, without cargo-fuzz.
//!
//! For each target in [`zmesh_fuzz_harness::TARGETS`], every file in `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` is fed to the same harness function the fuzz target uses. A panic
//! is caught per file so that one run reports *all* failing inputs (by path and panic message),
//! then the test fails. The corpus directories must exist and be non-empty, so that an accidental
//! deletion of the corpus cannot turn this test into one that checks nothing.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Regular files directly inside `dir`, sorted (missing directory = none).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".into()
    }
}

/// Runs `harness` on every file; returns the number of inputs and the failures.
fn replay(harness: fn(&[u8]), paths: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for path in paths {
        let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| harness(&data))) {
            failures.push(format!("{}: {}", path.display(), panic_message(&*p)));
        }
    }
    failures
}

#[test]
fn corpus_and_regressions_replay_without_panics() {
    let root = fuzz_dir();
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for (name, harness) in zmesh_fuzz_harness::TARGETS {
        let corpus = files(&root.join("corpus").join(name));
        let regressions = files(&root.join("regressions").join(name));
        assert!(
            !corpus.is_empty(),
            "no corpus for {name} in {}",
            root.join("corpus").display()
        );
        failures.extend(replay(*harness, &corpus));
        failures.extend(replay(*harness, &regressions));
        summary.push(format!(
            "{name}: {} corpus + {} regression inputs",
            corpus.len(),
            regressions.len()
        ));
    }
    eprintln!("{}", summary.join("\n"));
    assert!(
        failures.is_empty(),
        "{} input(s) panic:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every fuzz target in fuzz/fuzz_targets has a harness in TARGETS and vice versa, so a new target
/// cannot be added without its corpus being replayed here.
#[test]
fn every_fuzz_target_is_replayed() {
    let mut on_disk: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = zmesh_fuzz_harness::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}
