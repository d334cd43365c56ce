//! A host tuned during a run (issue: the checker as a CI tool, defect 7): calibration measured
//! `net.core.wmem_default` at start; when an administrator changes it while scripts run, the next socket the
//! executor creates has other buffers than the model's, and the checker must say so as an environment error
//! naming the parameter, not report model-rule divergences.
//!
//! This changes a machine-wide sysctl for about a second, so it is its own test binary (cargo runs test
//! binaries one at a time) with a single test; it needs root, and restores the value however it ends.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SYSCTL: &str = "/proc/sys/net/core/wmem_default";

/// Puts the sysctl back when dropped (also on a failed assertion).
struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

#[test]
fn wmem_default_changed_during_a_run_is_an_environment_error_naming_it() {
    let Ok(old) = std::fs::read_to_string(SYSCTL) else {
        eprintln!("SKIPPED: {SYSCTL} is not readable");
        return;
    };
    if std::fs::write(SYSCTL, &old).is_err() {
        eprintln!("SKIPPED: {SYSCTL} is not writable (needs root)");
        return;
    }
    let _restore = Restore(old.clone());
    let old: usize = old.trim().parse().expect("a number");
    let new = if old == 100_000 { 120_000 } else { 100_000 };

    let tmp = tempfile::tempdir().expect("temp dir");
    let script = tmp.path().join("drift.uds");
    // The marker file tells the test the script runs (calibration is over); the three reads wait 3 s, in which
    // the sysctl changes; the socket after them is the first one created under the new value.
    std::fs::write(
        &script,
        "mkfile(\"drift-marker\") -> 0\n\
         socketpair(STREAM, BLOCKING) -> a, b\n\
         setsockopt(b, SO_RCVTIMEO, 1000ms) -> 0\n\
         read(b, 10) -> EAGAIN after timeout\n\
         read(b, 10) -> EAGAIN after timeout\n\
         read(b, 10) -> EAGAIN after timeout\n\
         socket(STREAM) -> s\n",
    )
    .expect("write script");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    let child = Command::new(env!("CARGO_BIN_EXE_udsim"))
        .args(["check", script.to_str().expect("utf-8 path")])
        .env("TMPDIR", &work)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("udsim runs");
    let marker_seen = |dir: &Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("drift-marker").exists())
    };
    let start = Instant::now();
    while !marker_seen(&work) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the script never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(SYSCTL, new.to_string()).expect("set sysctl");
    let out = child.wait_with_output().expect("udsim ends");
    drop(_restore);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("environment error") && text.contains("net.core.wmem_default"),
        "{text}"
    );
    assert!(
        text.contains(&format!("SO_SNDBUF is {new}")) && text.contains(&old.to_string()),
        "{text}"
    );
    assert!(
        !text.contains("model allowed"),
        "reported as a divergence: {text}"
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
}
