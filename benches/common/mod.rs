//! Shared by the echo benches: CPU placement, the servers under test (udsim's, run as the real
//! binary, and the peers, run as this bench binary re-executed), Drop guards that always kill
//! them, and the side files (`udsim-meta/`, `udsim-latency/`) that `udsim bench-report` reads
//! next to criterion's estimates.
#![allow(dead_code)]

use criterion::Criterion;
use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Buffer of every echo loop here (the peers and the raw limit): udsim's default bound.
pub const ECHO_BUF: usize = 64 * 1024;

/// Set in a re-executed bench binary: which peer server to be.
const PEER_ENV: &str = "UDSIM_BENCH_PEER";
const PEER_PATH_ENV: &str = "UDSIM_BENCH_PEER_PATH";
const PEER_FD_ENV: &str = "UDSIM_BENCH_PEER_FD";
const PEER_ANNOUNCE_ENV: &str = "UDSIM_BENCH_PEER_ANNOUNCE";

// ---------------------------------------------------------------------------------------------
// Placement

/// Where the bench and its servers run.
#[derive(Clone, Debug)]
pub struct Placement {
    /// CPUs of the bench process (client threads); inherited by everything it starts.
    pub client: Vec<usize>,
    /// CPUs of the servers (subprocesses and echo threads), when they differ from `client`.
    pub server: Option<Vec<usize>>,
}

impl Placement {
    pub fn describe(&self) -> String {
        let list = |v: &[usize]| {
            v.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match &self.server {
            None if self.client.len() == 1 => {
                format!("pinned: client and servers on CPU {}", list(&self.client))
            }
            None => format!(
                "free: client and servers float over CPUs {{{}}}",
                list(&self.client)
            ),
            Some(s) => format!(
                "split: client on CPU {{{}}}, servers on CPU {{{}}}",
                list(&self.client),
                list(s)
            ),
        }
    }
}

fn parse_cpus(var: &str, s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let range = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>(), b.parse::<usize>()),
            None => (part.parse::<usize>(), part.parse::<usize>()),
        };
        match range {
            (Ok(a), Ok(b)) if a <= b => out.extend(a..=b),
            _ => panic!("{var}={s:?}: expected CPU numbers like 0 or 0,1 or 0-1"),
        }
    }
    assert!(!out.is_empty(), "{var}={s:?} names no CPU");
    out
}

fn cpuset(cpus: &[usize]) -> CpuSet {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).expect("CPU number out of range");
    }
    set
}

/// Pins the calling thread (and so every thread and process it starts later).
pub fn pin_current_thread(cpus: &[usize]) {
    sched_setaffinity(Pid::from_raw(0), &cpuset(cpus))
        .unwrap_or_else(|e| panic!("sched_setaffinity({cpus:?}): {e}"));
}

/// Reads `UDSIM_BENCH_CPUS` (default `0`) and `UDSIM_BENCH_SERVER_CPUS` (default: same as the
/// client) and pins this process. Call first thing in `main`, before any thread exists.
pub fn apply_placement() -> Placement {
    let client = match std::env::var("UDSIM_BENCH_CPUS") {
        Ok(s) => parse_cpus("UDSIM_BENCH_CPUS", &s),
        Err(_) => vec![0],
    };
    let server = std::env::var("UDSIM_BENCH_SERVER_CPUS")
        .ok()
        .map(|s| parse_cpus("UDSIM_BENCH_SERVER_CPUS", &s));
    pin_current_thread(&client);
    Placement { client, server }
}

/// Pins a server-side thread started in this process (the raw limit's echo thread).
pub fn pin_server_thread(p: &Placement) {
    if let Some(s) = &p.server {
        pin_current_thread(s);
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion and side files

/// Whether criterion measures (cargo bench passes `--bench`) rather than smoke-tests (`--test`).
pub fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list")
}

/// The median (sorts `v`; NaN when empty).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
}

/// Criterion tuned for this machine; command-line flags still override.
pub fn criterion() -> Criterion {
    let measure = if quick() { 1 } else { 3 };
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(measure))
        // A shared 2-CPU VM: run-to-run drift of several percent is weather, not a change.
        .noise_threshold(0.07)
        .significance_level(0.01)
        .nresamples(20_000)
        .configure_from_args()
}

/// Where criterion writes (`$CRITERION_HOME`, `$CARGO_TARGET_DIR/criterion`, else the target
/// directory this binary was built in).
pub fn criterion_home() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(h);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("criterion");
    }
    // target/<profile>/deps/<bench>-<hash>
    std::env::current_exe()
        .ok()
        .and_then(|e| e.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
}

fn write_json(path: &Path, v: &serde_json::Value) {
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let text = serde_json::to_string_pretty(v).expect("json");
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("warning: cannot write {}: {e}", path.display());
    }
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes a JSON file under criterion's directory (`rel` is relative to it).
pub fn write_side_file(rel: &str, v: &serde_json::Value) {
    write_json(&criterion_home().join(rel), v);
}

/// Records this run of a bench target: placement, machine, load, start time, and the groups it
/// owns (so the report can tell a figure of this run from a stale one).
pub fn write_meta(bench: &str, groups: &[&str], p: &Placement, extra: serde_json::Value) {
    if !measuring() {
        return;
    }
    let ncpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let v = serde_json::json!({
        "bench": bench,
        "groups": groups,
        "placement": p.describe(),
        "started_unix": unix_now(),
        "quick": quick(),
        "loadavg_at_start": first_line("/proc/loadavg"),
        "cpu_model": cpu_model(),
        "cpus_online": std::fs::read_to_string("/sys/devices/system/cpu/online")
            .map(|s| s.trim().to_string()).unwrap_or_default(),
        "cpus_allowed": ncpus,
        "kernel": first_line("/proc/sys/kernel/osrelease"),
        "extra": extra,
    });
    write_json(
        &criterion_home()
            .join("udsim-meta")
            .join(format!("{bench}.json")),
        &v,
    );
}

/// Rewrites this run's meta file with `change` applied (nothing when not measuring, or no meta file).
fn update_meta(bench: &str, change: impl FnOnce(&mut serde_json::Value)) {
    if !measuring() {
        return;
    }
    let path = criterion_home()
        .join("udsim-meta")
        .join(format!("{bench}.json"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    change(&mut v);
    write_json(&path, &v);
}

/// Adds `key` to the `extra` of this run's meta file (figures measured after criterion's).
pub fn add_meta(bench: &str, key: &str, value: serde_json::Value) {
    update_meta(bench, |v| v["extra"][key] = value);
}

/// Records the load when a bench target ends (the report shows it beside the start's).
pub fn finish_meta(bench: &str) {
    update_meta(bench, |v| {
        v["finished_unix"] = serde_json::json!(unix_now());
        v["loadavg_at_end"] = serde_json::json!(first_line("/proc/loadavg"));
    });
}

/// Per-connection latencies of one server in one group, kept outside criterion (which keeps only
/// per-sample means) so the report can give percentiles.
#[derive(Default)]
pub struct Latencies {
    first_call: Option<Instant>,
    warmup: Duration,
    /// Samples taken during criterion's warm-up (used only if the measurement took none, as in
    /// `--quick`).
    warm: Vec<u64>,
    measured: Vec<u64>,
    /// Wall time and count of whole connection cycles (socket → close), for connections/s.
    cycle_time: Duration,
    cycles: u64,
}

impl Latencies {
    pub fn new(warmup: Duration) -> Self {
        Latencies {
            warmup,
            ..Default::default()
        }
    }

    /// Starts one `iter_custom` call; returns whether its samples are past the warm-up.
    pub fn begin(&mut self) -> bool {
        let first = *self.first_call.get_or_insert_with(Instant::now);
        first.elapsed() >= self.warmup
    }

    pub fn record(&mut self, past_warmup: bool, ns: u64) {
        if past_warmup {
            self.measured.push(ns);
        } else {
            self.warm.push(ns);
        }
    }

    pub fn cycles(&mut self, past_warmup: bool, n: u64, wall: Duration) {
        if past_warmup || self.measured.is_empty() {
            self.cycle_time += wall;
            self.cycles += n;
        }
    }

    pub fn write(&mut self, group: &str, server: &str, p: &Placement) {
        if !measuring() {
            return;
        }
        let v = if self.measured.is_empty() {
            &mut self.warm
        } else {
            &mut self.measured
        };
        if v.is_empty() {
            return;
        }
        v.sort_unstable();
        let pct = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        let cps = if self.cycle_time.is_zero() {
            0.0
        } else {
            self.cycles as f64 / self.cycle_time.as_secs_f64()
        };
        let json = serde_json::json!({
            "group": group,
            "server": server,
            "placement": p.describe(),
            "written_unix": unix_now(),
            "n": v.len(),
            "p50_ns": pct(0.50),
            "p99_ns": pct(0.99),
            "p999_ns": pct(0.999),
            "max_ns": v[v.len() - 1],
            "mean_ns": mean,
            "connections_per_s": cps,
        });
        write_json(
            &criterion_home()
                .join("udsim-latency")
                .join(group)
                .join(format!("{server}.json")),
            &json,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

/// The echo servers the benches compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The kernel's limit: a socketpair, an echo thread in this process, no bind/listen.
    RawThread,
    /// The same with the echo in a child process (the two-process topology of every server).
    RawProcess,
    /// std::os::unix::net, a thread per connection.
    StdThreads,
    /// std::os::unix::net, one client at a time (blocking accept loop).
    StdIterative,
    /// tokio UnixStream, default multi-thread runtime, a task per connection.
    Tokio,
    /// monoio UnixStream on its io_uring driver: one thread, a task per connection (the io_uring
    /// runtime a performance-minded user would pick).
    Monoio,
    /// `udsim serve --iterative`.
    UdsimIterative,
    /// `udsim serve` (event loop, read/write relay).
    UdsimEventLoop,
    /// `udsim serve --engine splice`.
    UdsimSplice,
    /// `udsim serve --engine uring`.
    UdsimUring,
    /// `udsim serve` (event loop) from the binary in `UDSIM_BENCH_BASELINE_BIN`: an earlier build
    /// measured in the same run, chunk beside chunk, to judge a change against it.
    UdsimEventLoopBaseline,
}

impl Kind {
    pub fn id(self) -> &'static str {
        match self {
            Kind::RawThread => "raw_thread",
            Kind::RawProcess => "raw_process",
            Kind::StdThreads => "std_threads",
            Kind::StdIterative => "std_iterative",
            Kind::Tokio => "tokio",
            Kind::Monoio => "monoio",
            Kind::UdsimIterative => "udsim_iterative",
            Kind::UdsimEventLoop => "udsim_event_loop",
            Kind::UdsimSplice => "udsim_splice",
            Kind::UdsimUring => "udsim_uring",
            Kind::UdsimEventLoopBaseline => "udsim_event_loop_baseline",
        }
    }
}

/// The udsim binary under test (`UDSIM_BENCH_BIN` overrides the one cargo built).
pub fn udsim_bin() -> PathBuf {
    std::env::var_os("UDSIM_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_udsim")))
}

/// The earlier udsim binary a run compares against (`UDSIM_BENCH_BASELINE_BIN`), if any.
pub fn baseline_bin() -> Option<PathBuf> {
    std::env::var_os("UDSIM_BENCH_BASELINE_BIN").map(PathBuf::from)
}

/// A server subprocess: killed (SIGTERM, then SIGKILL) and its temp dir removed on drop. It also
/// gets SIGKILL if the bench dies first (PR_SET_PDEATHSIG).
pub struct Server {
    pub kind: Kind,
    child: Child,
    /// Piped stderr when the server announces its accepts.
    stderr: Option<ChildStderr>,
    /// Bytes read from `stderr` and not yet consumed as a line.
    pending: Vec<u8>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn prepare(cmd: &mut Command, server_cpus: Option<Vec<usize>>) {
    // SAFETY: the closure only makes async-signal-safe system calls (prctl, sched_setaffinity).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if let Some(cpus) = &server_cpus {
                let mut set = CpuSet::new();
                for &c in cpus {
                    set.set(c)?;
                }
                sched_setaffinity(Pid::from_raw(0), &set)?;
            }
            Ok(())
        });
    }
}

impl Server {
    /// Starts a listening server; `announce` pipes its stderr so [`Server::wait_accepted`] can see
    /// each "Accepted socket fd = N" line (otherwise it runs quiet).
    pub fn start(kind: Kind, announce: bool, p: &Placement) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("udsim-bench-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().join("echo.sock");
        let mut cmd = match kind {
            Kind::UdsimIterative
            | Kind::UdsimEventLoop
            | Kind::UdsimSplice
            | Kind::UdsimUring
            | Kind::UdsimEventLoopBaseline => {
                let bin = if kind == Kind::UdsimEventLoopBaseline {
                    baseline_bin().expect("UDSIM_BENCH_BASELINE_BIN is set for the baseline")
                } else {
                    udsim_bin()
                };
                let mut c = Command::new(bin);
                c.arg("serve");
                if !announce {
                    c.arg("--quiet");
                }
                match kind {
                    Kind::UdsimIterative => {
                        c.arg("--iterative");
                    }
                    Kind::UdsimSplice => {
                        c.args(["--engine", "splice"]);
                    }
                    Kind::UdsimUring => {
                        c.args(["--engine", "uring"]);
                    }
                    _ => {}
                }
                c.arg(&path);
                c
            }
            Kind::StdThreads | Kind::StdIterative | Kind::Tokio | Kind::Monoio => {
                let mut c = Command::new(std::env::current_exe().expect("current_exe"));
                c.env(PEER_ENV, kind.id()).env(PEER_PATH_ENV, &path);
                if announce {
                    c.env(PEER_ANNOUNCE_ENV, "1");
                }
                c
            }
            Kind::RawThread | Kind::RawProcess => {
                panic!("{kind:?} is not a listening server")
            }
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(if announce {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
        prepare(&mut cmd, p.server.clone());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.id()));
        let stderr = child.stderr.take();
        let mut server = Server {
            kind,
            child,
            stderr,
            pending: Vec::new(),
            path,
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until a connect succeeds (the probe connection is echo-checked and closed).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{} exited at start: {st}", self.kind.id());
            }
            if let Ok(mut s) = UnixStream::connect(&self.path) {
                verify_echo(&mut s, self.kind.id());
                if self.stderr.is_some() {
                    self.wait_accepted();
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen within 10 s",
                self.kind.id()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Reads the server's stderr up to the next "Accepted socket fd" line. Returns the instant
    /// the first read holding the line's start returned: every server writes the line with one
    /// write(2) right after accept returns, so that read marks accept's return.
    pub fn wait_accepted(&mut self) -> Instant {
        const MARK: &[u8] = b"Accepted socket fd";
        let kind = self.kind.id();
        let r = self
            .stderr
            .as_mut()
            .expect("server started without announce");
        let mut seen: Option<Instant> = None;
        let mut chunk = [0u8; 512];
        loop {
            // A whole line in the buffer: consume it; done if it was the accept line.
            if let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                if line.starts_with(MARK) {
                    return seen.unwrap_or_else(Instant::now);
                }
                continue;
            }
            let n = match r.read(&mut chunk) {
                Ok(0) => panic!("{kind} closed its stderr"),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("{kind}: reading stderr: {e}"),
            };
            let now = Instant::now();
            self.pending.extend_from_slice(&chunk[..n]);
            // The accept line has begun: its first piece is in, possibly after earlier lines.
            if seen.is_none() && self.pending.windows(MARK.len()).any(|w| w == MARK) {
                seen = Some(now);
            }
        }
    }

    pub fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.path)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.kind.id()))
    }
}

fn stop_child(child: &mut Child) {
    let pid = Pid::from_raw(child.id() as i32);
    if let Ok(None) = child.try_wait() {
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// The kernel's limit: one end of a socketpair for the client, the other echoed by a thread of
/// this process or by a child process. Dropping it closes the client end and reaps the echo.
pub struct RawEcho {
    pub client: Option<UnixStream>,
    thread: Option<std::thread::JoinHandle<()>>,
    child: Option<Child>,
}

impl RawEcho {
    pub fn start(kind: Kind, p: &Placement) -> RawEcho {
        let (client, far) = UnixStream::pair().expect("socketpair");
        let mut raw = RawEcho {
            client: Some(client),
            thread: None,
            child: None,
        };
        match kind {
            Kind::RawThread => {
                let p = p.clone();
                raw.thread = Some(std::thread::spawn(move || {
                    pin_server_thread(&p);
                    echo_blocking(far);
                }));
            }
            Kind::RawProcess => {
                let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
                let fd = far.as_raw_fd();
                cmd.env(PEER_ENV, "raw_fd").env(PEER_FD_ENV, fd.to_string());
                cmd.stdin(Stdio::null()).stdout(Stdio::null());
                prepare(&mut cmd, p.server.clone());
                // SAFETY: fcntl is async-signal-safe; `far` outlives the spawn.
                unsafe {
                    cmd.pre_exec(move || {
                        let b = BorrowedFd::borrow_raw(fd);
                        nix::fcntl::fcntl(
                            b,
                            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                        )?;
                        Ok(())
                    });
                }
                raw.child = Some(cmd.spawn().expect("spawn raw echo"));
                drop(far);
            }
            _ => panic!("{kind:?} is not a raw echo"),
        }
        verify_echo(raw.client.as_mut().expect("client"), kind.id());
        raw
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        drop(self.client.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(mut c) = self.child.take() {
            // EOF ends it; SIGTERM/SIGKILL only if it lingers.
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            stop_child(&mut c);
        }
    }
}

/// Sends a patterned 100 KiB and checks the echo byte for byte (outside any timed region).
pub fn verify_echo(s: &mut UnixStream, who: &str) {
    let msg: Vec<u8> = (0..100 * 1024u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let mut w = s.try_clone().expect("clone");
    let m2 = msg.clone();
    let t = std::thread::spawn(move || w.write_all(&m2));
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{who}: reading the echo: {e}"));
    t.join()
        .expect("writer")
        .unwrap_or_else(|e| panic!("{who}: writing: {e}"));
    assert!(got == msg, "{who} echoed different bytes");
}

/// The minimal echo: read up to 64 KiB, write it all back, until EOF or an error.
pub fn echo_blocking(mut s: impl Read + Write) {
    let mut buf = vec![0u8; ECHO_BUF];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Peers (this binary re-executed)

/// If this process was started as a peer server, serve forever (until killed) and never return.
pub fn maybe_run_peer() {
    let Ok(kind) = std::env::var(PEER_ENV) else {
        return;
    };
    let announce = std::env::var_os(PEER_ANNOUNCE_ENV).is_some();
    let path = || PathBuf::from(std::env::var_os(PEER_PATH_ENV).expect("peer path"));
    match kind.as_str() {
        "raw_fd" => {
            let fd: i32 = std::env::var(PEER_FD_ENV)
                .ok()
                .and_then(|s| s.parse().ok())
                .expect("peer fd");
            // SAFETY: the parent passed this fd to us (FD_CLOEXEC cleared) and nothing else owns it.
            let owned: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
            echo_blocking(UnixStream::from(owned));
        }
        "std_threads" => {
            let l = UnixListener::bind(path()).expect("bind");
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                announce_accept(announce, s.as_raw_fd());
                std::thread::spawn(move || echo_blocking(s));
            }
        }
        "std_iterative" => {
            let l = UnixListener::bind(path()).expect("bind");
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                announce_accept(announce, s.as_raw_fd());
                echo_blocking(s);
            }
        }
        "tokio" => run_tokio(path(), announce),
        "monoio" => run_monoio(path(), announce),
        other => panic!("unknown peer {other}"),
    }
    std::process::exit(0);
}

/// The accept line, written as udsim writes its status lines: formatted first, then one write(2).
fn announce_accept(announce: bool, fd: i32) {
    if announce {
        let line = format!("Accepted socket fd = {fd}\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn run_tokio(path: PathBuf, announce: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let l = tokio::net::UnixListener::bind(path).expect("bind");
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            announce_accept(announce, s.as_raw_fd());
            tokio::spawn(async move {
                let mut buf = vec![0u8; ECHO_BUF];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// The same echo on monoio's io_uring driver (owned buffers: each read hands the buffer to the
/// kernel and gets it back with the count).
fn run_monoio(path: PathBuf, announce: bool) {
    use monoio::buf::IoBuf;
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .build()
        .expect("monoio io_uring runtime");
    rt.block_on(async move {
        // monoio's default options set SO_REUSEPORT, which AF_UNIX refuses (EOPNOTSUPP).
        let opts = monoio::net::ListenerOpts::new()
            .reuse_port(false)
            .reuse_addr(false);
        let l = monoio::net::UnixListener::bind_with_config(path, &opts).expect("bind");
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            announce_accept(announce, s.as_raw_fd());
            monoio::spawn(async move {
                let mut buf = vec![0u8; ECHO_BUF];
                loop {
                    let (r, b) = s.read(buf).await;
                    let n = match r {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let (r, b) = s.write_all(b.slice(..n)).await;
                    if r.is_err() {
                        return;
                    }
                    buf = b.into_inner();
                }
            });
        }
    });
}
