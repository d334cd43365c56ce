//! `udsim check` on a long script: its memory does not grow with the script's length (issue 11: a 100 MB
//! script once peaked at 43× its size). One test in its own binary, so that the peak resident size of this
//! process's children is the checker's own.

use std::io::Write;
use std::process::{Command, Stdio};

/// Peak resident size, in bytes, of the largest child this process has reaped.
fn children_peak_rss() -> u64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    // Linux reports ru_maxrss in KiB.
    u64::try_from(u.max_rss()).unwrap_or(0) * 1024
}

#[test]
fn a_long_script_is_checked_in_at_most_three_times_its_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.uds");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    writeln!(f, "socketpair(STREAM) -> a, b").unwrap();
    let mut size = 0u64;
    // Written results and bare calls (whose results a transcript must print from the run).
    while size < 30 << 20 {
        let chunk = "write(a, \"hello world\") -> 11\nread(b, 11) -> \"hello world\"\nwrite(b, \"x\")\nread(a, 1)\npoll(a) -> OUT\n";
        f.write_all(chunk.as_bytes()).unwrap();
        size += chunk.len() as u64;
    }
    // The last line diverges, so the whole transcript is printed.
    writeln!(f, "read(b, 1) -> \"z\"").unwrap();
    f.flush().unwrap();
    drop(f);
    let size = std::fs::metadata(&path).unwrap().len();
    for args in [&[][..], &["-q"][..], &["--format", "json"][..]] {
        let st = Command::new(env!("CARGO_BIN_EXE_udsim"))
            .arg("check")
            .args(args)
            .arg(&path)
            .stdout(Stdio::null())
            .status()
            .expect("runs");
        assert_eq!(st.code(), Some(1), "{args:?}: the last line diverges");
        let peak = children_peak_rss();
        assert!(
            peak <= 3 * size,
            "{args:?}: a {size}-byte script peaked at {peak} bytes resident (more than 3× its size)"
        );
    }
}
