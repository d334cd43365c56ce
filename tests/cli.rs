//! `udsim check` and `udsim explore` as a user runs them: transcripts, exit codes, clear errors.

use std::process::{Command, Output};

fn udsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_udsim"))
        .args(args)
        .output()
        .expect("run udsim")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn script_file(dir: &tempfile::TempDir, name: &str, body: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, body).expect("write script");
    p.display().to_string()
}

const SEED: &str = "socket(STREAM) -> srv
bind(srv, \"srv.sock\") -> 0
listen(srv, 1) -> 0
socket(STREAM) -> cli
connect(cli, \"srv.sock\") -> 0
write(cli, \"hello\\n\") -> 6
accept(srv) -> conn
read(conn, 64) -> \"hello\\n\"
close(cli) -> 0
read(conn, 64) -> \"\"
accept(srv) -> EAGAIN
";

#[test]
fn agreeing_script_prints_its_transcript_and_exits_0() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = script_file(&d, "seed.uds", SEED);
    let out = udsim(&["check", &f]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("read(conn, 64) -> \"hello\\n\""),
        "{stdout}"
    );
    assert!(stdout.contains("# ok: 11 lines agree"), "{stdout}");
}

#[test]
fn wrong_written_result_is_a_divergence_exit_1() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = script_file(
        &d,
        "wrong.uds",
        &SEED.replace("accept(srv) -> EAGAIN", "accept(srv) -> again"),
    );
    let out = udsim(&["check", &f]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("# DIVERGENCE at line 11: the kernel disagrees with the written result"),
        "{stdout}"
    );
    assert!(stdout.contains("#   kernel:        EAGAIN"), "{stdout}");
    assert!(
        stdout.contains("(rule accept_empty_queue_is_eagain)"),
        "{stdout}"
    );
}

#[test]
fn record_writes_the_kernels_results_in_and_reparses() {
    let d = tempfile::tempdir().expect("tempdir");
    let bare = "# header kept\nsocket(STREAM)\nbind(s0, \"srv.sock\")\nlisten(s0, 1)\nsocket(STREAM)\nconnect(s1, \"srv.sock\")\n\
                write(s1, \"hello\\n\")\naccept(s0)\nread(s2, 64)\naccept(s0)\n";
    let f = script_file(&d, "bare.uds", bare);
    let out = udsim(&["check", "--record", &f]);
    assert_eq!(out.status.code(), Some(0));
    let recorded = text(&out.stdout);
    assert!(
        recorded.starts_with("# header kept\nsocket(STREAM) -> s0\n"),
        "{recorded}"
    );
    assert!(
        recorded.contains("read(s2, 64) -> \"hello\\n\""),
        "{recorded}"
    );
    assert!(recorded.contains("accept(s0) -> EAGAIN"), "{recorded}");
    // Automatic names were written in; the recording is itself a script that agrees.
    assert!(recorded.contains("socket(STREAM) -> s0"), "{recorded}");
    let f2 = script_file(&d, "recorded.uds", &recorded);
    assert_eq!(udsim(&["check", &f2]).status.code(), Some(0));
}

#[test]
fn script_errors_exit_2_with_line_and_column() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = script_file(&d, "bad.uds", "socket(STREAM) -> a\nlisten(b, 1)\n");
    let out = udsim(&["check", &f]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 2, column 8: unknown socket name `b`"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // An automatic name that no socket got is found when the script runs.
    let f = script_file(&d, "auto.uds", "socket(STREAM)\nclose(s1)\n");
    let out = udsim(&["check", &f]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 2: unknown socket name `s1`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        udsim(&["check", "/nonexistent/dir/x.uds"]).status.code(),
        Some(2)
    );
    assert_eq!(
        udsim(&["explore", "--cases", "many"]).status.code(),
        Some(2)
    );
    assert_eq!(udsim(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn explore_reports_statistics_and_the_exact_prediction_rate() {
    let out = udsim(&["explore", "--seed", "3", "--cases", "50", "--max-ops", "30"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("50 scripts"), "{stdout}");
    assert!(stdout.contains("exact-prediction rate"), "{stdout}");
    assert!(stdout.contains("states reached"), "{stdout}");
    assert!(stdout.contains("no divergence"), "{stdout}");
}

#[test]
fn check_directory_runs_every_script() {
    let d = tempfile::tempdir().expect("tempdir");
    script_file(&d, "a.uds", SEED);
    script_file(&d, "b.uds", "socket(STREAM) -> x\npoll(x) -> OUT|HUP\n");
    script_file(&d, "ignored.txt", "not a script");
    let out = udsim(&["check", &d.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("2 scripts: 2 agree, 0 diverge, 0 with script errors"));
}

#[test]
fn relative_script_paths_keep_working_after_the_first_script() {
    // The executor changes the thread's working directory only for the duration of a path call.
    let d = tempfile::tempdir().expect("tempdir");
    script_file(&d, "a.uds", SEED);
    script_file(&d, "b.uds", SEED);
    let out = Command::new(env!("CARGO_BIN_EXE_udsim"))
        .args(["check", "a.uds", "b.uds"])
        .current_dir(d.path())
        .output()
        .expect("run udsim");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 scripts: 2 agree"));
}

#[test]
fn zero_scripts_is_an_error_not_a_green_run() {
    let d = tempfile::tempdir().expect("tempdir");
    let out = udsim(&["check", &d.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no .uds scripts found"));
    let f = script_file(
        &d,
        "only-comments.uds",
        "# nothing here\n\n# still nothing\n",
    );
    let out = udsim(&["check", &f]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("has no calls"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn directories_are_searched_recursively() {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(d.path().join("a/b")).expect("mkdir");
    script_file(&d, "a/b/seed.uds", SEED);
    script_file(&d, "a/top.uds", SEED);
    let out = udsim(&["check", &d.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let o = text(&out.stdout);
    assert!(o.contains("# checking 2 scripts"), "{o}");
    assert!(o.contains("# 2 scripts: 2 agree"), "{o}");
}

#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let d = tempfile::tempdir().expect("tempdir");
    for i in 0..20 {
        script_file(&d, &format!("s{i}.uds"), SEED);
    }
    for args in [
        vec!["check".to_string(), d.path().display().to_string()],
        vec!["explore".into(), "--cases".into(), "300".into()],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_udsim"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Read one chunk, then close our end, as `| head -1` does.
        let mut stdout = child.stdout.take().expect("stdout");
        let mut first = [0u8; 16];
        let _ = stdout.read(&mut first);
        drop(stdout);
        let out = child.wait_with_output().expect("wait");
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn emfile_is_predicted_at_the_right_line() {
    use std::fmt::Write as _;
    use std::os::unix::process::CommandExt;
    // 300 sockets, an accept, a socketpair and a dup under RLIMIT_NOFILE 64: the kernel says EMFILE from some
    // line on, and the model must say it at the same line (rule emfile_past_rlimit_nofile).
    let mut body = String::from("socket(STREAM) -> l\nbind(l, \"l.sock\")\nlisten(l, 5)\nsocket(STREAM) -> c\nconnect(c, \"l.sock\")\n");
    for _ in 0..300 {
        body.push_str("socket(DGRAM)\n");
    }
    let _ = write!(
        body,
        "accept(l)\nsocketpair(STREAM)\ndup(l)\nclose(c)\ndup(l)\n"
    );
    let d = tempfile::tempdir().expect("tempdir");
    let f = script_file(&d, "many.uds", &body);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_udsim"));
    cmd.args(["check", &f]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = nix::libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run udsim");
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{o}{}", text(&out.stderr));
    assert!(o.contains("socket(DGRAM) -> EMFILE"), "{o}");
    assert!(o.contains("accept(l) -> EMFILE"), "{o}");
    assert!(o.contains("socketpair(STREAM) -> EMFILE"), "{o}");
    assert!(
        o.lines().last().is_some_and(|l| l.contains("1 agree")),
        "{o}"
    );
}

#[test]
fn a_diverging_script_leaves_no_descriptors_to_the_next() {
    use std::os::unix::process::CommandExt;
    // Under RLIMIT_NOFILE 256: the first script opens 200 sockets and diverges; the second needs 200 more.
    let d = tempfile::tempdir().expect("tempdir");
    let mut first = String::from("socket(STREAM) -> a\n");
    first.push_str(&"socket(STREAM)\n".repeat(200));
    first.push_str("listen(a, 1) -> 0\n");
    script_file(&d, "1-diverges.uds", &first);
    let mut second = "socket(STREAM)\n".repeat(200);
    second.push_str("poll(s199) -> OUT|HUP\n");
    script_file(&d, "2-next.uds", &second);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_udsim"));
    cmd.args(["check", &d.path().display().to_string()]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = nix::libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run udsim");
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(o.contains("# 2 scripts: 1 agree, 1 diverge"), "{o}");
    assert!(!o.contains("EMFILE"), "{o}");
}

#[test]
fn explore_cases_and_verbose_are_not_silently_ignored_with_paths() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = script_file(&d, "seed.uds", SEED);
    let out = udsim(&["check", "--explore-cases", "5", &f]);
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{o}");
    assert!(o.contains("exploring 5 random scripts"), "{o}");
    assert!(o.contains("# 6 scripts: 6 agree"), "{o}");
    let out = udsim(&["check", "-v", &f]);
    assert!(
        text(&out.stderr).contains("-v changes nothing here"),
        "{}",
        text(&out.stderr)
    );
    let out = udsim(&["explore", "--cases", "0"]);
    assert!(
        text(&out.stdout).contains("0 scripts, no steps run"),
        "{}",
        text(&out.stdout)
    );
}
