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

/// Runs `cmd` with RLIMIT_NOFILE (soft and hard) at `n`.
fn nofile(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = nix::libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
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
        // Results printed in order by the main thread while two checker threads run.
        vec![
            "check".to_string(),
            "--jobs".into(),
            "2".into(),
            "--format".into(),
            "json".into(),
            d.path().display().to_string(),
        ],
        vec![
            "explore".into(),
            "--jobs".into(),
            "2".into(),
            "--duration".into(),
            "3s".into(),
        ],
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
    nofile(&mut cmd, 64);
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
fn etoomanyrefs_is_predicted_for_an_unprivileged_sender() {
    use std::io::Write as _;
    use std::os::unix::process::CommandExt;
    // Under RLIMIT_NOFILE 24, as an unprivileged user (nobody when the test runs as root): with more than 24
    // descriptors in flight, a send with rights is ETOOMANYREFS on every type, after the send buffer's EAGAIN
    // and before the peer's EPIPE / ENOTCONN; a zero-length stream send carries none and succeeds, and so
    // do sends without rights past the limit (rule rights_past_nofile_in_flight_is_etoomanyrefs). Results as
    // recorded on 6.18.
    let mut body = String::from(
        "socketpair(STREAM) -> a, b\nsocketpair(DGRAM) -> c, d\nsocketpair(SEQPACKET) -> e, f\n",
    );
    for _ in 0..24 {
        body.push_str("sendmsg(a, \"x\", rights=[a]) -> 1\n");
    }
    body.push_str(
        "sendmsg(c, \"x\", rights=[c]) -> 1
sendmsg(a, \"x\", rights=[a]) -> ETOOMANYREFS
sendmsg(e, \"x\", rights=[e]) -> ETOOMANYREFS
sendmsg(c, \"x\", rights=[c]) -> ETOOMANYREFS
sendmsg(e, \"\", rights=[e]) -> ETOOMANYREFS
sendmsg(e, \"y\", flags=0) -> 1
send(c, \"y\", 0) -> 1
write(e, \"z\") -> 1
sendmsg(a, \"\", rights=[a]) -> 0
shutdown(a, WR) -> 0
sendmsg(a, \"x\", rights=[a]) -> EPIPE
recvmsg(b, 8) -> \"x\" from none rights=[r1]
recvmsg(b, 8) -> \"x\" from none rights=[r2]
sendmsg(c, \"x\", rights=[c]) -> 1
socket(DGRAM) -> g
sendmsg(g, \"x\", to=\"nowhere\", rights=[a]) -> ENOENT
",
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_udsim"));
    cmd.args(["check", "-"])
        .current_dir("/")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let root = nix::unistd::geteuid().is_root();
    // SAFETY: setrlimit, setgid and setuid are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = nix::libc::rlimit {
                rlim_cur: 24,
                rlim_max: 24,
            };
            if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if root && (nix::libc::setgid(65534) != 0 || nix::libc::setuid(65534) != 0) {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run udsim");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write the script");
    let out = child.wait_with_output().expect("udsim ends");
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{o}{}", text(&out.stderr));
    assert!(
        o.lines().last().is_some_and(|l| l.contains("1 agree")),
        "{o}"
    );
}

#[test]
fn a_diverging_script_leaves_no_descriptors_to_the_next() {
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
    nofile(&mut cmd, 256);
    let out = cmd.output().expect("run udsim");
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(o.contains("# 2 scripts: 1 agree, 1 diverge"), "{o}");
    assert!(!o.contains("EMFILE"), "{o}");
}

#[test]
fn a_script_that_runs_out_of_descriptors_is_blessed_and_reported() {
    // Under RLIMIT_NOFILE 24 a script dups until EMFILE (where depends on what the process holds itself), its
    // written results all say success: the rewrite and the --junit file come after it and must not meet its
    // EMFILE (each script's descriptors close when it ends).
    let d = tempfile::tempdir().expect("tempdir");
    let mut body = String::from("socketpair(STREAM) -> a, b\n");
    for i in 0..30 {
        body.push_str(&format!("dup(a) -> d{i}\n"));
    }
    let f = script_file(&d, "dups.uds", &body);
    let junit = d.path().join("junit.xml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_udsim"));
    cmd.args([
        "check",
        "--bless",
        &f,
        "--junit",
        &junit.display().to_string(),
    ]);
    nofile(&mut cmd, 24);
    let out = cmd.output().expect("run udsim");
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}{e}", text(&out.stdout));
    assert!(
        e.contains("lines rewritten with the kernel's results"),
        "{e}"
    );
    let blessed = std::fs::read_to_string(&f).expect("the script");
    let emfile = blessed.lines().filter(|l| l.ends_with("-> EMFILE")).count();
    assert!((1..30).contains(&emfile), "{blessed}");
    let xml = std::fs::read_to_string(&junit).expect("the --junit file was written");
    let doc = roxmltree::Document::parse(&xml).expect("JUnit XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 1, "{xml}");
    assert!(!cases[0].children().any(|c| c.is_element()), "{xml}");
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

// ---- Outputs for machines, selection, --bless, --jobs ----

fn udsim_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_udsim"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run udsim")
}

/// Each stdout line as a JSON value (panics on a line that is not JSON).
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", text(&out.stdout)))
        })
        .collect()
}

/// A directory with one script of each verdict: agree, diverge, partly-modelled, skipped, error.
fn verdict_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    script_file(&d, "1-agree.uds", SEED);
    script_file(
        &d,
        "2-diverge.uds",
        &SEED.replace("accept(srv) -> EAGAIN", "accept(srv) -> again"),
    );
    // An unknown pid in SCM_CREDENTIALS: the model does not say (which_pids_exist), nothing is written.
    script_file(
        &d,
        "3-partial.uds",
        "socketpair(STREAM) -> a, b\nsendmsg(a, \"c\", creds={pid=999999, uid=0, gid=0})\n",
    );
    script_file(
        &d,
        "4-skipped.uds",
        "# requires: no_such_parameter=1\nsocket(STREAM) -> a\n",
    );
    script_file(&d, "5-error.uds", "socket(STREAM) -> a\nlisten(b, 1)\n");
    d
}

#[test]
fn json_format_is_one_object_per_script_then_a_summary() {
    let d = verdict_dir();
    let out = udsim(&[
        "check",
        "--format",
        "json",
        "--explore-cases",
        "5",
        "--seed",
        "3",
        &d.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let v = json_lines(&out);
    assert_eq!(v.len(), 6, "{}", text(&out.stdout));
    let verdicts: Vec<&str> = v[..5]
        .iter()
        .map(|o| {
            assert_eq!(o["type"], "script");
            o["verdict"].as_str().expect("verdict")
        })
        .collect();
    assert_eq!(
        verdicts,
        ["agree", "diverge", "partly-modelled", "skipped", "error"]
    );
    assert!(v[0]["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("1-agree.uds")));
    assert_eq!(v[0]["lines"], 11);
    let dv = &v[1]["divergence"];
    assert_eq!(dv["line"], 11);
    assert_eq!(dv["call"], "accept(srv)");
    assert_eq!(dv["kernel"], "EAGAIN");
    assert_eq!(dv["model_allowed"], serde_json::json!(["EAGAIN"]));
    assert_eq!(dv["rule"], "accept_empty_queue_is_eagain");
    assert_eq!(dv["written"], "accept(srv) -> again");
    assert_eq!(dv["written_disagrees"], true);
    assert_eq!(dv["model_disagrees"], false);
    assert_eq!(v[1]["lines"], 11);
    assert_eq!(v[2]["not_modelled"]["rule"], "which_pids_exist");
    assert_eq!(v[2]["not_modelled"]["line"], 2);
    assert!(v[3]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("no_such_parameter=1")));
    assert_eq!(v[3]["lines"], 0);
    assert!(v[4]["error"]
        .as_str()
        .is_some_and(|r| r.contains("unknown socket name `b`")));
    let s = &v[5];
    assert_eq!(s["type"], "summary");
    assert_eq!(
        s["counts"],
        serde_json::json!({"agree": 6, "diverge": 1, "partly-modelled": 1, "skipped": 1, "error": 1})
    );
    assert_eq!(s["scripts"], 10);
    assert_eq!(s["exit_code"], 2);
    let x = &s["exploration"];
    assert_eq!(x["seed"], 3);
    assert_eq!(x["cases"], 5);
    assert!(x["ops"].as_u64().is_some_and(|n| n > 0), "{x}");
    assert!(x["outcomes"]["socket"]["created"]
        .as_u64()
        .is_some_and(|n| n > 0));
    assert!(x["divergence"].is_null());
    // Without an exploration there is none in the summary; an agreeing run exits 0.
    let f = script_file(&d, "1-agree.uds", SEED);
    let out = udsim(&["check", "--format", "json", &f]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_lines(&out);
    assert_eq!(v.len(), 2);
    assert!(v[1].get("exploration").is_none());
    assert_eq!(v[1]["exit_code"], 0);
}

#[test]
fn junit_report_parses_with_one_testcase_per_script_and_the_counts() {
    let d = verdict_dir();
    // A name XML must escape.
    script_file(&d, "6-<odd> & \"name\".uds", SEED);
    let xml_path = d.path().join("report.xml");
    let out = udsim(&[
        "check",
        "--junit",
        &xml_path.display().to_string(),
        "--format",
        "json",
        "--explore-cases",
        "3",
        &d.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // --junit combines with --format json: stdout is still JSON Lines.
    assert_eq!(json_lines(&out).len(), 7);
    let xml = std::fs::read_to_string(&xml_path).expect("report written");
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1);
    let suite = suites[0];
    let attr = |n: roxmltree::Node, a: &str| -> usize {
        n.attribute(a)
            .unwrap_or_else(|| panic!("no {a}"))
            .parse()
            .expect("a count")
    };
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    // Six scripts and the exploration.
    assert_eq!(cases.len(), 7);
    assert_eq!(attr(suite, "tests"), 7);
    assert_eq!(attr(suite, "failures"), 1);
    assert_eq!(attr(suite, "errors"), 1);
    assert_eq!(attr(suite, "skipped"), 1);
    assert_eq!(attr(root, "tests"), 7);
    let by_name = |name: &str| {
        *cases
            .iter()
            .find(|c| c.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no testcase {name}"))
    };
    let dir_class = d
        .path()
        .display()
        .to_string()
        .trim_start_matches('/')
        .replace('/', ".");
    let failing = by_name("2-diverge.uds");
    assert_eq!(failing.attribute("classname"), Some(dir_class.as_str()));
    let failure = child(failing, "failure").expect("<failure>");
    assert_eq!(
        failure.attribute("message"),
        Some("DIVERGENCE at line 11: the kernel disagrees with the written result")
    );
    let body = failure.text().unwrap_or("");
    assert!(
        body.contains("#   written:       accept(srv) -> again"),
        "{body}"
    );
    assert!(body.contains("accept(srv) -> EAGAIN"), "{body}");
    assert!(child(by_name("4-skipped.uds"), "skipped").is_some());
    assert!(child(by_name("5-error.uds"), "error").is_some());
    for ok in ["1-agree.uds", "3-partial.uds", "6-<odd> & \"name\".uds"] {
        let c = by_name(ok);
        assert!(
            child(c, "failure").is_none()
                && child(c, "error").is_none()
                && child(c, "skipped").is_none(),
            "{ok}"
        );
    }
    let explore = cases
        .iter()
        .find(|c| c.attribute("classname") == Some("udsim.explore"))
        .expect("the exploration's testcase");
    assert!(child(*explore, "failure").is_none());
    // An unwritable report path is a usage error before anything runs.
    let out = udsim(&[
        "check",
        "--junit",
        "/nonexistent/dir/r.xml",
        &d.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot write /nonexistent/dir/r.xml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn quiet_prints_only_failures_and_the_summary() {
    let d = verdict_dir();
    let out = udsim(&["check", "-q", &d.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let o = text(&out.stdout);
    let headers: Vec<&str> = o.lines().filter(|l| l.starts_with("# == ")).collect();
    // The divergence's transcript; the script error (found by the parser, so there is no transcript) is
    // on stderr, as always.
    assert_eq!(headers.len(), 1, "{o}");
    assert!(headers[0].ends_with("2-diverge.uds"), "{o}");
    assert!(
        text(&out.stderr).contains("5-error.uds: line 2, column 8: unknown socket name `b`"),
        "{}",
        text(&out.stderr)
    );
    assert!(!o.contains("# ok"), "{o}");
    assert!(!o.contains("# checking"), "{o}");
    assert!(!o.contains("skipped:"), "{o}");
    assert!(o.contains("# DIVERGENCE at line 11"), "{o}");
    assert!(
        o.lines().last().is_some_and(|l| l
            == "# 5 scripts: 1 agree, 1 partly modelled (past the model's coverage only written results were checked), 1 skipped (they require other kernel parameters), 1 diverge, 1 with script errors"),
        "{o}"
    );
    // With JSON: only the failing objects and the summary.
    let out = udsim(&[
        "check",
        "-q",
        "--format",
        "json",
        &d.path().display().to_string(),
    ]);
    let v = json_lines(&out);
    let kinds: Vec<&str> = v
        .iter()
        .map(|o| {
            o["verdict"]
                .as_str()
                .unwrap_or(o["type"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(kinds, ["diverge", "error", "summary"]);
    // An agreeing run under -q prints the summary line only.
    let f = script_file(&d, "1-agree.uds", SEED);
    let out = udsim(&["check", "-q", &f]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "# 1 scripts: 1 agree, 0 diverge, 0 with script errors\n"
    );
}

#[test]
fn list_and_name_filters_select_bundled_scenarios() {
    let out = udsim(&["check", "--list"]);
    assert_eq!(out.status.code(), Some(0));
    let all = text(&out.stdout);
    assert!(all.lines().count() > 100, "{all}");
    assert!(all.lines().all(|l| l
        .split_whitespace()
        .next()
        .is_some_and(|n| n.ends_with(".uds"))));
    assert!(
        all.lines()
            .any(|l| l.starts_with("28-backlog-0.uds  rule backlog_admits_n_plus_one")),
        "{all}"
    );
    let out = udsim(&["check", "--list", "backlog"]);
    let picked: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert!(
        picked.len() >= 5 && picked.len() < all.lines().count(),
        "{picked:?}"
    );
    assert!(picked.iter().all(|n| n.contains("backlog")));
    // The same word checks them; run where no file `backlog` exists, so the word is a filter.
    let d = tempfile::tempdir().expect("tempdir");
    let out = udsim_in(d.path(), &["check", "BackLog"]);
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{o}{}", text(&out.stderr));
    let checked: Vec<&str> = o
        .lines()
        .filter_map(|l| l.strip_prefix("# == scenarios/"))
        .collect();
    assert_eq!(checked, picked);
    assert!(
        o.contains(&format!(
            "# {} scripts: {} agree",
            picked.len(),
            picked.len()
        )),
        "{o}"
    );
    assert!(!o.contains("exploring"), "{o}");
    // A filter that selects nothing is an error; so is a missing path, told apart by its `/` or `.uds`.
    let out = udsim_in(d.path(), &["check", "no-such-scenario-xyz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no bundled scenario's name contains `no-such-scenario-xyz`"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let out = udsim_in(d.path(), &["check", "--list", "no-such-scenario-xyz"]);
    assert_eq!(out.status.code(), Some(2));
    for missing in ["./backlog", "backlog.uds"] {
        let out = udsim_in(d.path(), &["check", missing]);
        assert_eq!(out.status.code(), Some(2), "{missing}");
        assert!(
            text(&out.stderr).contains(&format!("cannot read {missing}")),
            "{missing}: {}",
            text(&out.stderr)
        );
    }
    // An existing file or directory wins over the filter of the same name.
    std::fs::create_dir(d.path().join("backlog")).expect("mkdir");
    script_file(&d, "backlog/mine.uds", SEED);
    let out = udsim_in(d.path(), &["check", "backlog"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("# 1 scripts: 1 agree"),
        "{}",
        text(&out.stdout)
    );
    // JSON listing.
    let out = udsim(&["check", "--list", "--format", "json", "backlog-0"]);
    let v = json_lines(&out);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["name"], "28-backlog-0.uds");
}

fn child<'a, 'i>(c: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    c.children().find(|n| n.has_tag_name(tag))
}

/// The statistics part of an exploration's output (everything but the timing line).
fn stats_part(o: &str) -> String {
    o.lines()
        .filter(|l| !l.contains("ops/s through model + kernel"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_seed_makes_its_exploration_reproducible() {
    let d = tempfile::tempdir().expect("tempdir");
    let f = script_file(&d, "seed.uds", SEED);
    let run = || {
        let out = udsim(&["check", "--explore-cases", "40", "--seed", "11", &f]);
        assert_eq!(out.status.code(), Some(0));
        text(&out.stdout)
    };
    // What a seed fixes: the scripts (so the transcript, the number of calls and the verdicts).
    // The outcome counts are the kernel's observations, and where descriptors are in flight its
    // collector runs when it runs (`in_flight_cycle_is_collected_asynchronously`: the model
    // allows both), so those counts may differ from run to run.
    let stable = |s: &str| {
        s.lines()
            .filter_map(|l| {
                if l.starts_with("40 scripts,") {
                    Some(l.split(", exact").next().unwrap_or(l).to_string())
                } else if l.starts_with("# 41 scripts") || l.starts_with("exploring ") {
                    Some(l.to_string())
                } else {
                    None
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let a = run();
    assert!(a.contains("exploring 40 random scripts (seed 11)"), "{a}");
    let transcript = |s: &str| s.split("exploring ").next().unwrap_or("").to_string();
    let b = run();
    assert_eq!(transcript(&a), transcript(&b));
    assert_eq!(stable(&a), stable(&b));
    assert!(stable(&a).contains("40 scripts, "), "{a}");
    // The same cases as `udsim explore --seed 11 --cases 40`: as many calls.
    let e = text(&udsim(&["explore", "--seed", "11", "--cases", "40"]).stdout);
    let ops = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("40 scripts,"))
            .map(|l| l.split(", exact").next().unwrap_or(l).to_string())
    };
    assert!(ops(&a).is_some(), "{a}");
    assert_eq!(ops(&a), ops(&e));
    let out = udsim(&["check", "--seed", "5", &f]);
    assert!(text(&out.stderr).contains("--seed changes nothing here"));
}

#[test]
fn explore_duration_runs_until_the_time_is_up() {
    let t = std::time::Instant::now();
    let out = udsim(&[
        "explore",
        "--duration",
        "2s",
        "--seed",
        "1",
        "--max-ops",
        "10",
    ]);
    let secs = t.elapsed().as_secs_f64();
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{o}{}", text(&out.stderr));
    assert!(
        o.starts_with("udsim explore: scripts of up to 10 calls for 2s, seed 1\n"),
        "{o}"
    );
    assert!(o.contains("no divergence"), "{o}");
    assert!((2.0..60.0).contains(&secs), "{secs}");
    let n: usize = o
        .lines()
        .find_map(|l| l.split_once(" scripts, ").map(|(n, _)| n.parse().ok()))
        .flatten()
        .expect("a count");
    assert!(n > 1, "{o}");
    // --cases with --duration: whichever comes first.
    let out = udsim(&["explore", "--duration", "1m", "--cases", "7", "--seed", "1"]);
    assert!(
        text(&out.stdout).contains("\n7 scripts, "),
        "{}",
        text(&out.stdout)
    );
    for bad in ["5x", "0s", "-3s", "", "s", "1.5.2m", "99999999999m"] {
        let out = udsim(&["explore", &format!("--duration={bad}")]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let e = text(&out.stderr);
        assert!(
            e.contains("--duration") && !e.contains("panicked"),
            "{bad:?}: {e}"
        );
    }
    let e = text(&udsim(&["explore", "--duration", "5x"]).stderr);
    assert!(e.contains("is not a duration"), "{e}");
}

#[test]
fn bless_fixes_a_wrong_result_keeps_comments_and_then_checks_clean() {
    let d = tempfile::tempdir().expect("tempdir");
    let body = "# seed.uds: a header comment\n\
                socket(STREAM) -> srv   # the listener\n\
                bind(srv, \"srv.sock\") -> 0\n\
                listen(srv, 1) -> 0\n\
                \n\
                # a comment between the lines\n\
                socket(STREAM) -> cli\n\
                connect(cli, \"srv.sock\") -> ECONNREFUSED   # wrong: it connects\n\
                write(cli, \"#hi\")\n\
                accept(srv) -> conn\n\
                  read(conn, 64) -> \"#hi\" # kept as written\n";
    let f = script_file(&d, "bless.uds", body);
    let before = udsim(&["check", &f]);
    assert_eq!(before.status.code(), Some(1));
    let out = udsim(&["check", "--bless", &f]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}{err}", text(&out.stdout));
    assert!(
        err.contains(&format!("udsim: blessed {f}: 2 lines rewritten")),
        "{err}"
    );
    let blessed = std::fs::read_to_string(&f).expect("read back");
    let want = body
        .replace(
            "connect(cli, \"srv.sock\") -> ECONNREFUSED   # wrong: it connects",
            "connect(cli, \"srv.sock\") -> 0   # wrong: it connects",
        )
        .replace("write(cli, \"#hi\")\n", "write(cli, \"#hi\") -> 3\n");
    assert_eq!(blessed, want);
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(d.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["bless.uds"]);
    let after = udsim(&["check", &f]);
    assert_eq!(after.status.code(), Some(0), "{}", text(&after.stdout));
    assert!(text(&after.stdout).contains("# ok: 8 lines agree"));
    // Blessing a clean file changes nothing and says so.
    let out = udsim(&["check", "--bless", &f]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("every written result holds; not rewritten"));
    assert_eq!(std::fs::read_to_string(&f).expect("read"), want);
}

#[test]
fn bless_never_rewrites_stdin_the_bundled_scenarios_or_a_broken_script() {
    let d = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["check", "--bless"],
        vec!["check", "--bless", "-"],
        vec!["check", "--bless", "backlog"],
    ] {
        let out = udsim_in(d.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = text(&out.stderr);
        assert!(
            e.contains("--bless") && !e.contains("panicked"),
            "{args:?}: {e}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A script error (an unknown name) leaves the file as it was.
    let bad = "socket(STREAM) -> a\nlisten(b, 1) -> 0\n";
    let f = script_file(&d, "bad.uds", bad);
    let out = udsim(&["check", "--bless", &f]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&f).expect("read"), bad);
    // A result that, written in, would make a later line name a socket no line creates: not rewritten.
    let g = "socket(STREAM) -> l\naccept(l) -> conn\nclose(conn) -> 0\n";
    let f = script_file(&d, "names.uds", g);
    let out = udsim(&["check", "--bless", &f]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&f).expect("read"), g);
}

#[test]
fn jobs_do_not_change_explore_statistics() {
    let run = |jobs: &str| {
        let out = udsim(&["explore", "--seed", "9", "--cases", "300", "--jobs", jobs]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        stats_part(&text(&out.stdout))
    };
    let one = run("1");
    assert!(one.contains("300 scripts,"), "{one}");
    assert_eq!(one, run("2"));
    assert_eq!(one, run("3"));
    let json = |jobs: &str| {
        let out = udsim(&[
            "explore", "--seed", "9", "--cases", "300", "--format", "json", "-j", jobs,
        ]);
        let mut v = json_lines(&out);
        assert_eq!(v.len(), 1);
        v.pop().map(|v| v["exploration"].clone())
    };
    assert_eq!(json("1"), json("2"));
    for bad in ["0", "x", "-1"] {
        assert_eq!(
            udsim(&["explore", "--jobs", bad]).status.code(),
            Some(2),
            "{bad}"
        );
        assert_eq!(
            udsim(&["check", "--jobs", bad]).status.code(),
            Some(2),
            "{bad}"
        );
    }
}

#[test]
fn jobs_do_not_change_check_output() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
    let run = |jobs: &str| {
        let out = udsim(&[
            "check",
            "--jobs",
            jobs,
            "--explore-cases",
            "100",
            "--seed",
            "4",
            dir,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        stats_part(&text(&out.stdout))
    };
    let one = run("1");
    assert!(
        one.contains("exploring 100 random scripts (seed 4)"),
        "{one}"
    );
    assert_eq!(one, run("2"));
    // And the bundled scenarios' brief output.
    let bundled = |jobs: &str| text(&udsim(&["check", "--explore-cases", "0", "-j", jobs]).stdout);
    assert_eq!(bundled("1"), bundled("2"));
}

#[test]
fn rules_lists_every_rule_with_its_description_and_scenarios() {
    let out = udsim(&["rules"]);
    assert_eq!(out.status.code(), Some(0));
    let o = text(&out.stdout);
    let first = o.lines().next().unwrap_or_default();
    let n: usize = first
        .strip_prefix("# ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("first line: {first}"));
    // One entry per rule of the model's table, each with its scenarios (or the lack of one) said.
    assert_eq!(n, udsim::model::rules::RULES.len());
    assert_eq!(o.matches("\n    shown by: ").count(), n, "{o}");
    let backlog = o
        .split("\nbacklog_admits_n_plus_one\n")
        .nth(1)
        .expect("the backlog rule is listed");
    let mut lines = backlog.lines();
    assert_eq!(
        lines.next(),
        Some("    the queue is full only when it holds more than the backlog.")
    );
    assert!(
        lines.next().is_some_and(|l| l.contains("backlog")),
        "{backlog}"
    );

    let one = udsim(&["rules", "backlog_admits"]);
    assert_eq!(one.status.code(), Some(0));
    assert!(text(&one.stdout).starts_with("# 1 rules, 1 decide"));
    let none = udsim(&["rules", "no_such_rule_anywhere"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none.stderr).contains("no rule's name contains `no_such_rule_anywhere`"));
}

#[test]
fn params_preset_prints_what_calibration_measured_in_full() {
    let out = udsim(&["params", "--preset"]);
    assert_eq!(out.status.code(), Some(0));
    let p = udsim::model::Params::from_preset(&text(&out.stdout)).expect("reads back");
    assert_eq!(p, udsim::kernel::calibrate::params().expect("calibration"));
    // The short form prints the truesize tables as their number of runs only.
    let short = text(&udsim(&["params"]).stdout);
    assert!(short.contains(&format!("truesize_runs {}\n", p.truesize_runs.len())));
}

/// `udsim sim echo --clients 8 --seed 1 --trace t.uds && udsim check t.uds`: the simulated echo
/// succeeds, says what each client received, and its trace agrees with the kernel.
#[test]
fn sim_echo_trace_agrees_with_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let out = udsim_in(
        dir.path(),
        &[
            "sim",
            "echo",
            "--clients",
            "8",
            "--seed",
            "1",
            "--trace",
            "t.uds",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        stdout.matches("received 100000, end of stream").count(),
        8,
        "{stdout}"
    );
    assert!(
        stdout.contains("every client got its echo exactly"),
        "{stdout}"
    );
    let trace = std::fs::read_to_string(dir.path().join("t.uds")).unwrap();
    assert!(trace.lines().filter(|l| l.starts_with("accept(")).count() == 8);
    let check = udsim_in(dir.path(), &["check", "t.uds"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stdout));
    assert!(text(&check.stdout).contains("1 agree, 0 diverge"));
    // A preset that does not exist is a usage error, and no trace is written.
    let bad = udsim_in(
        dir.path(),
        &["sim", "echo", "--preset", "nope", "--trace", "u.uds"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("no preset named"));
    assert!(!dir.path().join("u.uds").exists());
}

/// `udsim report`: the page and matrix.json agree on the matrix, every cell of the grid was checked,
/// the three types each get a matrix and a diagram; a file where the directory should be is a
/// one-line error (exit 2) and the file is left as it was.
#[test]
fn report_writes_a_page_whose_matrix_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let out = udsim_in(
        dir.path(),
        &[
            "report",
            "--out",
            "r",
            "--depth",
            "3",
            "--explore-cases",
            "10",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("everything agreed with the kernel"),
        "{stdout}"
    );
    let html = std::fs::read_to_string(dir.path().join("r/index.html")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r/matrix.json")).unwrap())
            .unwrap();
    let grid = json["grid_cells"].as_u64().unwrap() as usize;
    assert!(grid > 500, "grid of {grid} cells");
    assert_eq!(html.matches("class=\"cell ").count(), grid);
    assert_eq!(html.matches("class=\"cell empty").count(), 0);
    assert_eq!(json["unchecked"].as_array().unwrap().len(), 0);
    assert_eq!(json["checked_cells"].as_u64().unwrap() as usize, grid);
    for ty in ["stream", "dgram", "seqpacket"] {
        assert!(html.contains(&format!("data-type=\"{ty}\"")), "{ty} matrix");
    }
    assert_eq!(html.matches("<div class=\"diagram\">").count(), 3);
    // Every rule of the model is listed.
    assert_eq!(
        html.matches("<tr><td><code>").count()
            + html.matches("<tr class=\"unshown\"><td><code>").count(),
        udsim::model::rules::RULES.len()
    );

    std::fs::write(dir.path().join("f"), "keep").unwrap();
    let out = udsim_in(
        dir.path(),
        &["report", "--out", "f", "--explore-cases", "0"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("udsim report: cannot make f"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("f")).unwrap(),
        "keep"
    );
}
