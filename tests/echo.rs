//! The echo programs as a user runs them: real `udsim serve` / `udsim client` processes on real
//! Unix sockets in temp directories.
//!
//! No assertion depends on timing. Waits are for observable events (a status line, an echo, an
//! fd count) with a generous deadline (`HANG`) that only turns a hang into a failure. Every
//! spawned process is owned by a guard that kills and reaps it on drop, also when a test fails.

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_udsim");
/// Deadline for anything that should happen: only a hang guard, never a performance claim.
const HANG: Duration = Duration::from_secs(90);
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Processes

/// Which server engine a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Iterative,
    Readwrite,
    Splice,
    Uring,
}

impl Engine {
    fn args(self) -> &'static [&'static str] {
        match self {
            Engine::Iterative => &["--iterative"],
            Engine::Readwrite => &["--engine", "readwrite"],
            Engine::Splice => &["--engine", "splice"],
            Engine::Uring => &["--engine", "uring"],
        }
    }
}

/// A child process that is killed and reaped when dropped.
struct Proc {
    child: Child,
    reaped: Option<ExitStatus>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        // A binary copied a moment ago (`client_without_permission_says_eacces`) can be "busy" while a
        // child another test forked in between still holds the copy's write descriptor until it execs.
        let mut tries = 0;
        let child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                r => break r.expect("spawn udsim"),
            }
        };
        Proc {
            child,
            reaped: None,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill");
    }

    /// Waits for exit, killing the process if it outlives `HANG`.
    fn wait(&mut self) -> ExitStatus {
        if let Some(st) = self.reaped {
            return st;
        }
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.reaped = Some(st);
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let st = self.child.wait().expect("wait");
                self.reaped = Some(st);
                panic!("process {} hung; killed", self.pid());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kills `pids` with SIGKILL if still alive after `HANG`: a hang guard for blocking reads from a
/// child's pipes. Dropping it (before the children are reaped) disarms it.
struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    fn new(pids: Vec<i32>) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(HANG) {
                for pid in pids {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        });
        Watchdog {
            disarm: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running `udsim serve`, with its stderr lines readable in order.
struct Server {
    proc: Proc,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn serve_cmd(path: &Path, engine: Engine, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(engine.args())
        .args(extra)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

impl Server {
    /// Starts a server and waits until it listens.
    fn start(path: &Path, engine: Engine, extra: &[&str]) -> Server {
        let quiet = extra.contains(&"--quiet");
        Server::start_cmd(path, serve_cmd(path, engine, extra), quiet)
    }

    /// Spawns `cmd` and waits until it listens: by its status line, or (`quiet`) by connecting.
    fn start_cmd(path: &Path, mut cmd: Command, quiet: bool) -> Server {
        let mut proc = Proc::spawn(&mut cmd);
        let stderr = proc.child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let mut server = Server {
            proc,
            lines: rx,
            seen: Vec::new(),
        };
        if quiet {
            let deadline = Instant::now() + HANG;
            while UnixStream::connect(path).is_err() {
                assert!(
                    server.is_running(),
                    "server exited: {:?}",
                    server.rest_of_stderr()
                );
                assert!(Instant::now() < deadline, "server never listened");
                thread::sleep(Duration::from_millis(5));
            }
        } else {
            server.wait_line(|l| l == "Waiting to accept a connection...");
        }
        server
    }

    /// The next stderr line satisfying `pred` (earlier ones are kept in `seen`).
    fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + HANG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no expected line from the server ({e}); saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// All stderr lines after the process has exited.
    fn rest_of_stderr(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(HANG) {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    fn terminate(&mut self, sig: nix::sys::signal::Signal) -> ExitStatus {
        self.proc.signal(sig);
        self.proc.wait()
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.proc.pid())).expect("read /proc")
    }

    fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.proc.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }

    fn rss_kib(&self) -> u64 {
        let status = self.proc_file("status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// utime + stime in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = self.proc_file("stat");
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Waits until the server's open-fd count is `want` (hang guard only).
    fn wait_fd_count(&self, want: usize) {
        let deadline = Instant::now() + HANG;
        loop {
            let n = self.fd_count();
            if n == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fd count stuck at {n}, want {want}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn is_running(&mut self) -> bool {
        self.proc.child.try_wait().expect("try_wait").is_none()
    }
}

fn count_accepted(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with("Accepted socket fd = "))
        .count()
}

/// Runs `udsim client` with `input` on stdin; returns (status, stdout, stderr).
fn run_client(path: &Path, input: &[u8], extra: &[&str]) -> (ExitStatus, Vec<u8>, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("client")
        .args(extra)
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_with_input(&mut cmd, input)
}

/// `udsim client --quiet PATH` with piped stdin and stdout.
fn quiet_client(path: &Path, stderr: Stdio) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["client", "--quiet"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
    cmd
}

fn run_with_input(cmd: &mut Command, input: &[u8]) -> (ExitStatus, Vec<u8>, String) {
    let mut proc = Proc::spawn(cmd);
    let watchdog = Watchdog::new(vec![proc.pid()]);
    let mut stdin = proc.child.stdin.take().unwrap();
    let mut stdout = proc.child.stdout.take().unwrap();
    let mut stderr = proc.child.stderr.take().unwrap();
    let (out, err) = thread::scope(|s| {
        s.spawn(move || {
            let _ = stdin.write_all(input);
        });
        let err = s.spawn(move || {
            let mut e = String::new();
            let _ = stderr.read_to_string(&mut e);
            e
        });
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        (out, err.join().unwrap())
    });
    drop(watchdog);
    (proc.wait(), out, err)
}

fn udsim(args: &[&str]) -> (ExitStatus, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (st, _, err) = run_with_input(&mut cmd, b"");
    (st, err)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("udsim-echo")
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// In-test clients

/// splitmix64: deterministic test randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In 1..=max, skewed towards small sizes so both tiny and large chunks occur.
    fn chunk(&mut self, max: usize) -> usize {
        let cap = match self.next() % 4 {
            0 => 16,
            1 => 1024,
            _ => max,
        };
        1 + (self.next() as usize) % cap.min(max)
    }
}

/// `len` random bytes.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(HANG)).unwrap();
    s.set_write_timeout(Some(HANG)).unwrap();
    s
}

/// Sends `data` in random chunks while reading the echo in random sizes; half-closes after the
/// last byte and reads to EOF. Returns what came back.
fn exchange(sock: &UnixStream, data: &[u8], seed: u64) -> Vec<u8> {
    thread::scope(|s| {
        let mut w = sock;
        s.spawn(move || {
            let mut rng = Rng(seed);
            let mut off = 0;
            while off < data.len() {
                let n = rng.chunk(64 * KIB).min(data.len() - off);
                w.write_all(&data[off..off + n]).expect("client write");
                off += n;
            }
            w.shutdown(Shutdown::Write).expect("shutdown");
        });
        let mut rng = Rng(seed ^ 0xABCD);
        let mut got = Vec::with_capacity(data.len());
        let mut buf = vec![0u8; 64 * KIB];
        let mut r = sock;
        loop {
            let want = rng.chunk(64 * KIB);
            match r.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("client read: {e}"),
            }
        }
        got
    })
}

fn roundtrip(path: &Path, data: &[u8], seed: u64) -> Vec<u8> {
    exchange(&connect(path), data, seed)
}

/// `clients` concurrent clients, each sending `size` random bytes (a different slice of one
/// random pool, so crossed streams show) and checking its echo byte for byte.
fn concurrent_exact(path: &Path, clients: usize, size: usize) {
    let pool = random_bytes(2 * size, clients as u64);
    thread::scope(|s| {
        for i in 0..clients {
            let pool = &pool;
            s.spawn(move || {
                let off = (i * 7919) % size;
                let data = &pool[off..off + size];
                let got = roundtrip(path, data, i as u64);
                assert_eq!(got.len(), data.len(), "client {i}: echo length");
                assert!(got == data, "client {i}: echo differs");
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The seed's transcript

fn seed_transcript(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("server.sock");
    let print = engine != Engine::Splice;
    let mut cmd = serve_cmd(&path, engine, if print { &["--print"] } else { &[] });
    cmd.stdout(Stdio::piped());
    let mut server = Server::start_cmd(&path, cmd, false);
    let input = b"Hello, server\nThis is the client\nGoodbye\n";
    let (st, out, err) = run_client(&path, input, &[]);
    assert!(st.success(), "client failed: {err}");
    assert_eq!(out, input, "the client prints the echo");
    assert!(
        err.starts_with("Client socket fd = "),
        "client stderr: {err}"
    );
    server.wait_line(|l| l.starts_with("Accepted socket fd = "));
    assert!(server
        .terminate(nix::sys::signal::Signal::SIGTERM)
        .success());
    let lines = server.rest_of_stderr();
    assert!(lines[0].starts_with("Server socket fd = "), "{lines:?}");
    if print {
        let mut printed = Vec::new();
        let mut stdout = server.proc.child.stdout.take().unwrap();
        stdout.read_to_end(&mut printed).unwrap();
        assert_eq!(printed, input, "--print shows what the server read");
    }
    assert!(!path.exists(), "SIGTERM removes the socket");
}

#[test]
fn seed_transcript_iterative() {
    seed_transcript(Engine::Iterative);
}

#[test]
fn seed_transcript_readwrite() {
    seed_transcript(Engine::Readwrite);
}

#[test]
fn seed_transcript_splice() {
    seed_transcript(Engine::Splice);
}

#[test]
fn seed_transcript_uring() {
    seed_transcript(Engine::Uring);
}

#[test]
fn quiet_silences_status_lines_on_both_programs() {
    let dir = tempdir();
    let path = dir.path().join("q.sock");
    let mut cmd = serve_cmd(&path, Engine::Readwrite, &["--quiet"]);
    cmd.stderr(Stdio::piped());
    let mut server = Proc::spawn(&mut cmd);
    let deadline = Instant::now() + HANG;
    while UnixStream::connect(&path).is_err() {
        assert!(Instant::now() < deadline, "server never listened");
        thread::sleep(Duration::from_millis(10));
    }
    let (st, out, err) = run_client(&path, b"quiet\n", &["--quiet"]);
    assert!(st.success());
    assert_eq!(out, b"quiet\n");
    assert_eq!(err, "", "client --quiet prints nothing");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait().success());
    let mut err = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(err, "", "server --quiet prints nothing");
}

#[test]
fn empty_input_exits_zero_with_no_output() {
    let dir = tempdir();
    let path = dir.path().join("e.sock");
    let _server = Server::start(&path, Engine::Readwrite, &[]);
    let (st, out, err) = run_client(&path, b"", &[]);
    assert!(st.success(), "{err}");
    assert!(out.is_empty());
}

/// The client waits on stdin and the socket at once: each line typed comes back while stdin
/// is still open (an interactive session), and stdin's end then ends the exchange with exit 0.
#[test]
fn client_echoes_each_line_while_stdin_stays_open() {
    let dir = tempdir();
    let path = dir.path().join("i.sock");
    let _server = Server::start(&path, Engine::Readwrite, &[]);
    let mut proc = Proc::spawn(&mut quiet_client(&path, Stdio::null()));
    let watchdog = Watchdog::new(vec![proc.pid()]);
    let mut stdin = proc.child.stdin.take().unwrap();
    let mut stdout = proc.child.stdout.take().unwrap();
    for line in ["one\n", "two, longer\n", "3\n"] {
        stdin.write_all(line.as_bytes()).unwrap();
        let mut back = vec![0u8; line.len()];
        stdout.read_exact(&mut back).unwrap();
        assert_eq!(back, line.as_bytes());
    }
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    drop(watchdog);
    assert!(rest.is_empty(), "nothing after the last line: {rest:?}");
    assert!(proc.wait().success());
}

/// A regular file as stdin and as stdout (always "ready" to poll): 3 MiB, byte for byte.
#[test]
fn client_echoes_a_file_into_a_file() {
    let dir = tempdir();
    let path = dir.path().join("f.sock");
    let _server = Server::start(&path, Engine::Readwrite, &[]);
    let input = random_bytes(3 << 20, 31);
    let (inp, outp) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&inp, &input).unwrap();
    let mut proc = Proc::spawn(
        Command::new(BIN)
            .args(["client", "--quiet"])
            .arg(&path)
            .stdin(std::fs::File::open(&inp).unwrap())
            .stdout(std::fs::File::create(&outp).unwrap())
            .stderr(Stdio::null()),
    );
    let watchdog = Watchdog::new(vec![proc.pid()]);
    let st = proc.wait();
    drop(watchdog);
    assert!(st.success());
    assert!(std::fs::read(&outp).unwrap() == input, "the echo differs");
}

// ---------------------------------------------------------------------------------------------
// Load

#[test]
fn two_hundred_clients_1mib_byte_exact_readwrite() {
    let dir = tempdir();
    let path = dir.path().join("load.sock");
    let _server = Server::start(&path, Engine::Readwrite, &["--quiet"]);
    concurrent_exact(&path, 200, MIB);
}

#[test]
fn two_hundred_clients_1mib_byte_exact_uring() {
    let dir = tempdir();
    let path = dir.path().join("conc.sock");
    let _server = Server::start(&path, Engine::Uring, &["--quiet"]);
    concurrent_exact(&path, 200, MIB);
}

#[test]
fn two_hundred_clients_1mib_byte_exact_splice() {
    let dir = tempdir();
    let path = dir.path().join("load.sock");
    let _server = Server::start(&path, Engine::Splice, &[]);
    concurrent_exact(&path, 200, MIB);
}

/// A tiny buffer bound forces partial reads, partial writes and buffer compaction constantly.
fn small_buffer(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("small.sock");
    let _server = Server::start(&path, engine, &["--buffer-size", "1500"]);
    concurrent_exact(&path, 20, 256 * KIB);
}

#[test]
fn small_buffer_bound_byte_exact_readwrite() {
    small_buffer(Engine::Readwrite);
}

#[test]
fn small_buffer_bound_byte_exact_splice() {
    small_buffer(Engine::Splice);
}

#[test]
fn small_buffer_bound_byte_exact_uring() {
    small_buffer(Engine::Uring);
}

/// The "done when": 100 concurrent `udsim client` processes each get back 512 KiB.
fn client_processes(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("procs.sock");
    let _server = Server::start(&path, engine, &[]);
    let pool = random_bytes(1024 * KIB, 100);
    thread::scope(|s| {
        for i in 0..100usize {
            let (pool, path) = (&pool, &path);
            s.spawn(move || {
                let off = (i * 4099) % (512 * KIB);
                let data = &pool[off..off + 512 * KIB];
                let (st, out, err) = run_client(path, data, &["--quiet"]);
                assert!(st.success(), "client {i}: {err}");
                assert!(out == data, "client {i}: echo differs");
            });
        }
    });
}

#[test]
fn hundred_client_processes_512kib_readwrite() {
    client_processes(Engine::Readwrite);
}

#[test]
fn hundred_client_processes_512kib_splice() {
    client_processes(Engine::Splice);
}

#[test]
fn hundred_client_processes_512kib_uring() {
    client_processes(Engine::Uring);
}

// ---------------------------------------------------------------------------------------------
// Backpressure

/// A client that never reads its echo: it soon cannot write, other clients are served, the
/// server's memory stays bounded, and once it reads it gets back exactly what it sent.
fn stalled_reader(engine: Engine) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let dir = tempdir();
    let path = dir.path().join("stall.sock");
    let server = Server::start(&path, engine, &["--quiet"]);
    assert_eq!(roundtrip(&path, b"warm up", 1), b"warm up");
    let rss_before = server.rss_kib();

    let stalled = connect(&path);
    stalled.set_nonblocking(true).unwrap();
    let pattern = random_bytes(MIB, 7);
    let cap = 64 * MIB;
    let mut written = 0usize;
    // Write until the writes stop being taken: a 500 ms quiet spell means "stalled". On a slow
    // machine that can only under-count, which weakens but never breaks the bound below.
    while written < cap {
        let off = written % MIB;
        match (&stalled).write(&pattern[off..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(stalled.as_fd(), PollFlags::POLLOUT)];
                if poll(&mut fds, PollTimeout::from(500u16)).unwrap() == 0 {
                    break;
                }
            }
            Err(e) => panic!("stalled client write: {e}"),
        }
    }
    assert!(
        written < 8 * MIB,
        "backpressure: the server took {written} bytes from a client that reads nothing"
    );
    // Stalled means idle: a level-triggered loop that kept polling the stalled client's input
    // would spin here.
    let t0 = server.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let idle_ticks = server.cpu_ticks() - t0;
    assert!(
        idle_ticks <= 20,
        "server burnt {idle_ticks} ticks in a second with a stalled client"
    );

    concurrent_exact(&path, 16, MIB);
    let rss_after = server.rss_kib();
    eprintln!(
        "{engine:?}: stalled client wrote {written} bytes before blocking; server CPU {idle_ticks} ticks in the stalled second; VmRSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "server memory grew from {rss_before} KiB to {rss_after} KiB"
    );

    // Now read: the stalled client gets back exactly what it sent.
    stalled.set_nonblocking(false).unwrap();
    stalled.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    (&stalled).read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), written);
    for (k, chunk) in got.chunks(MIB).enumerate() {
        assert!(
            chunk == &pattern[..chunk.len()],
            "stalled echo differs in MiB {k}"
        );
    }
}

#[test]
fn stalled_reader_is_bounded_readwrite() {
    stalled_reader(Engine::Readwrite);
}

#[test]
fn stalled_reader_is_bounded_splice() {
    stalled_reader(Engine::Splice);
}

#[test]
fn stalled_reader_is_bounded_uring() {
    stalled_reader(Engine::Uring);
}

#[test]
fn max_clients_holds_extra_clients_in_the_backlog() {
    max_clients(Engine::Readwrite);
}

#[test]
fn max_clients_holds_extra_clients_in_the_backlog_uring() {
    max_clients(Engine::Uring);
}

fn max_clients(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("max.sock");
    let _server = Server::start(&path, engine, &["--max-clients", "2"]);
    let c1 = connect(&path);
    let c2 = connect(&path);
    let c3 = connect(&path);
    let mut buf = [0u8; 2];
    for c in [&c1, &c2] {
        (&*c).write_all(b"hi").unwrap();
        (&*c).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
    }
    (&c3).write_all(b"c3").unwrap();
    // Two more round trips on c2 give a wrongly accepted c3 time to be echoed.
    for _ in 0..2 {
        (&c2).write_all(b"hi").unwrap();
        (&c2).read_exact(&mut buf).unwrap();
    }
    c3.set_nonblocking(true).unwrap();
    let early = (&c3).read(&mut buf);
    assert!(
        matches!(&early, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "a third client was served with --max-clients 2: {early:?}"
    );
    c3.set_nonblocking(false).unwrap();
    drop(c1);
    (&c3).read_exact(&mut buf).unwrap();
    assert_eq!(
        &buf, b"c3",
        "the waiting client is served once a slot frees"
    );
}

// ---------------------------------------------------------------------------------------------
// Faults

/// Clients killed with SIGKILL mid-stream: the server keeps serving and its fd count returns
/// to its baseline.
fn sigkill_clients(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("kill.sock");
    let server = Server::start(&path, engine, &["--quiet"]);
    assert_eq!(roundtrip(&path, b"warm up", 1), b"warm up");
    let baseline = server.fd_count();
    let data = random_bytes(512 * KIB, 3);
    let mut clients = Vec::new();
    for _ in 0..12 {
        let mut cmd = Command::new(BIN);
        cmd.args(["client", "--quiet"])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        clients.push(Proc::spawn(&mut cmd));
    }
    let watchdog = Watchdog::new(clients.iter().map(Proc::pid).collect());
    thread::scope(|s| {
        for c in clients.iter_mut() {
            let mut stdin = c.child.stdin.take().unwrap();
            let data = &data;
            // Never finishes: the client dies first (EPIPE then ends the thread).
            s.spawn(move || {
                let _ = stdin.write_all(data);
            });
        }
        // Mid-stream: every client has had some echo back. Half are then never read again, so
        // their server buffers are full when they die.
        let mut outs = Vec::new();
        for c in clients.iter_mut() {
            let mut out = c.child.stdout.take().unwrap();
            let mut b = [0u8; 1];
            out.read_exact(&mut b).unwrap();
            assert_eq!(b[0], data[0]);
            outs.push(out);
        }
        for c in clients.iter() {
            c.signal(nix::sys::signal::Signal::SIGKILL);
        }
        drop(watchdog);
        for c in clients.iter_mut() {
            c.wait();
        }
        drop(outs);
    });
    server.wait_fd_count(baseline);
    assert_eq!(roundtrip(&path, &data, 5), data, "still serving");
    server.wait_fd_count(baseline);
}

#[test]
fn sigkilled_clients_leave_no_fds_readwrite() {
    sigkill_clients(Engine::Readwrite);
}

#[test]
fn sigkilled_clients_leave_no_fds_splice() {
    sigkill_clients(Engine::Splice);
}

#[test]
fn sigkilled_clients_leave_no_fds_uring() {
    sigkill_clients(Engine::Uring);
}

/// EMFILE: with RLIMIT_NOFILE = 16 (24 for the splice engine, which needs room for 4 clients'
/// sockets and pipes to start at all) and 40 clients, the server pauses accepting, burns no CPU
/// while paused, and serves every client as fds free up.
fn emfile(engine: Engine) {
    use nix::sys::resource::{setrlimit, Resource};
    let dir = tempdir();
    let path = dir.path().join("emfile.sock");
    let mut cmd = serve_cmd(&path, engine, &[]);
    let limit = if engine == Engine::Splice { 24 } else { 16 };
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(std::io::Error::from)
        });
    }
    let mut server = Server::start_cmd(&path, cmd, false);
    let t0_episode = Instant::now();
    let clients: Vec<UnixStream> = (0..40).map(|_| connect(&path)).collect();
    server.wait_line(|l| l.contains("too many open files (EMFILE)"));
    let accepted = count_accepted(&server.seen);
    assert!((1..40).contains(&accepted), "accepted {accepted}");

    let t0 = server.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let t1 = server.cpu_ticks();
    eprintln!(
        "{engine:?}: {accepted} accepted at EMFILE; CPU over an idle second: {} ticks",
        t1 - t0
    );
    assert!(
        t1 - t0 <= 20,
        "server burnt {} ticks in a second while out of fds",
        t1 - t0
    );

    for (i, c) in clients.iter().enumerate() {
        let msg = format!("client {i}\n");
        let mut w = c;
        w.write_all(msg.as_bytes()).unwrap();
        if i < accepted {
            let mut buf = vec![0u8; msg.len()];
            (&*c).read_exact(&mut buf).unwrap();
            assert_eq!(buf, msg.as_bytes());
        }
    }
    // Finish them in order: each close frees an fd, which admits the next one from the backlog.
    for (i, c) in clients.iter().enumerate() {
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        (&*c).read_to_end(&mut got).unwrap();
        // The first `accepted` already read their echo above.
        let want = if i < accepted {
            String::new()
        } else {
            format!("client {i}\n")
        };
        assert_eq!(got, want.as_bytes(), "client {i}");
    }
    drop(clients);
    assert!(server.is_running(), "the server survived EMFILE");
    assert_eq!(roundtrip(&path, b"after", 9), b"after");
    let secs = t0_episode.elapsed().as_secs_f64();
    assert!(server
        .terminate(nix::sys::signal::Signal::SIGTERM)
        .success());
    // Rate-limited: the first warning, then at most a count per second.
    let lines = server.rest_of_stderr();
    let warnings = lines.iter().filter(|l| l.starts_with("udsim: ")).count();
    assert!(
        warnings as f64 <= 2.0 + 2.0 * secs.ceil(),
        "{warnings} warnings in a {secs:.1} s EMFILE episode: {lines:?}"
    );
}

/// With a low RLIMIT_NOFILE (5 to 12 here) a server either fails at start with one line, exit 1,
/// leaving no socket file, or it can serve: 4 clients at once (one for `--iterative`). Before the
/// check it started at 8 and served nobody. At 5 (stdio, the signalfd and stderr's non-blocking
/// descriptor fill it) it must refuse.
fn too_few_fds_fail_at_start(engine: Engine) {
    use nix::sys::resource::{setrlimit, Resource};
    let clients = if engine == Engine::Iterative { 1 } else { 4 };
    let mut outcomes = Vec::new();
    for limit in 5..=12u64 {
        let dir = tempdir();
        let path = dir.path().join("few.sock");
        let mut cmd = serve_cmd(&path, engine, &["--quiet"]);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(std::io::Error::from)
            });
        }
        let mut proc = Proc::spawn(&mut cmd);
        let deadline = Instant::now() + HANG;
        let listening = loop {
            if let Some(st) = proc.child.try_wait().unwrap() {
                proc.reaped = Some(st);
                break false;
            }
            if UnixStream::connect(&path).is_ok() {
                break true;
            }
            assert!(Instant::now() < deadline, "neither exits nor listens");
            thread::sleep(Duration::from_millis(5));
        };
        if listening {
            // It started: then it serves `clients` clients at the same time.
            let socks: Vec<UnixStream> = (0..clients).map(|_| connect(&path)).collect();
            for (i, c) in socks.iter().enumerate() {
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let msg = format!("client {i}");
                (&*c).write_all(msg.as_bytes()).unwrap();
                let mut got = vec![0u8; msg.len()];
                (&*c).read_exact(&mut got).unwrap_or_else(|e| {
                    panic!("{engine:?}: started with RLIMIT_NOFILE {limit} but client {i} of {clients} is not served: {e}")
                });
                assert_eq!(got, msg.as_bytes());
            }
            drop(socks);
            proc.signal(nix::sys::signal::Signal::SIGTERM);
            assert!(proc.wait().success());
            outcomes.push((limit, "serves"));
        } else {
            let err = stderr_of(&mut proc);
            assert_eq!(proc.wait().code(), Some(1), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.contains(&format!(
                    "too few file descriptors: RLIMIT_NOFILE is {limit}"
                )),
                "{err}"
            );
            assert!(!path.exists());
            outcomes.push((limit, "refuses"));
        }
    }
    eprintln!("{engine:?}: {outcomes:?}");
    assert_eq!(outcomes[0], (5, "refuses"));
}

#[test]
fn too_few_fds_fail_at_start_iterative() {
    too_few_fds_fail_at_start(Engine::Iterative);
}

#[test]
fn too_few_fds_fail_at_start_readwrite() {
    too_few_fds_fail_at_start(Engine::Readwrite);
}

#[test]
fn too_few_fds_fail_at_start_splice() {
    too_few_fds_fail_at_start(Engine::Splice);
}

#[test]
fn too_few_fds_fail_at_start_uring() {
    too_few_fds_fail_at_start(Engine::Uring);
}

#[test]
fn emfile_pauses_without_spinning_and_recovers_readwrite() {
    emfile(Engine::Readwrite);
}

#[test]
fn emfile_pauses_without_spinning_and_recovers_splice() {
    emfile(Engine::Splice);
}

#[test]
fn emfile_pauses_without_spinning_and_recovers_uring() {
    emfile(Engine::Uring);
}

// ---------------------------------------------------------------------------------------------
// Signals

fn signal_cleanup(engine: Engine, sig: nix::sys::signal::Signal) {
    let dir = tempdir();
    let path = dir.path().join("sig.sock");
    let mut server = Server::start(&path, engine, &[]);
    // A client connected mid-stream when the signal arrives is closed, not left hanging.
    let c = connect(&path);
    (&c).write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    (&c).read_exact(&mut buf).unwrap();
    assert!(server.terminate(sig).success(), "exit 0 on {sig}");
    assert!(!path.exists(), "{sig} leaves no socket file");
    let mut rest = Vec::new();
    (&c).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn sigterm_removes_socket_iterative() {
    signal_cleanup(Engine::Iterative, nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigterm_removes_socket_readwrite() {
    signal_cleanup(Engine::Readwrite, nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigterm_removes_socket_splice() {
    signal_cleanup(Engine::Splice, nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigterm_removes_socket_uring() {
    signal_cleanup(Engine::Uring, nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_removes_socket_readwrite() {
    signal_cleanup(Engine::Readwrite, nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigint_removes_socket_uring() {
    signal_cleanup(Engine::Uring, nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigterm_leaves_a_file_that_replaced_the_socket() {
    let dir = tempdir();
    let path = dir.path().join("swap.sock");
    let mut server = Server::start(&path, Engine::Readwrite, &[]);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"not yours").unwrap();
    assert!(server
        .terminate(nix::sys::signal::Signal::SIGTERM)
        .success());
    assert_eq!(std::fs::read(&path).unwrap(), b"not yours");
}

// ---------------------------------------------------------------------------------------------
// Path safety

fn refuses(path: &Path, why: &str) {
    let (st, err) = udsim(&["serve", path.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("udsim: cannot bind \""), "{err}");
    assert!(err.contains(why), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn regular_file_at_path_survives() {
    let dir = tempdir();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"precious").unwrap();
    refuses(&path, "a regular file is already there");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn directory_at_path_survives() {
    let dir = tempdir();
    let path = dir.path().join("d");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside"), b"x").unwrap();
    refuses(&path, "a directory is already there");
    assert_eq!(std::fs::read(path.join("inside")).unwrap(), b"x");
}

#[test]
fn symlink_at_path_survives() {
    let dir = tempdir();
    let target = dir.path().join("target.txt");
    std::fs::write(&target, b"t").unwrap();
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    refuses(&link, "a symbolic link is already there");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"t");
    // Also a symlink to a dead socket: the link is not a socket, so it stays.
    let dead = dir.path().join("dead.sock");
    drop(UnixListener::bind(&dead).unwrap());
    let link2 = dir.path().join("link2.sock");
    std::os::unix::fs::symlink(&dead, &link2).unwrap();
    refuses(&link2, "a symbolic link is already there");
    assert!(std::fs::symlink_metadata(&link2)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn live_server_at_path_is_left_alone() {
    let dir = tempdir();
    let path = dir.path().join("live.sock");
    let _first = Server::start(&path, Engine::Readwrite, &["--quiet"]);
    let ino = std::fs::metadata(&path).unwrap().ino();
    refuses(&path, "a server is already listening there");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    assert_eq!(roundtrip(&path, b"still me", 2), b"still me");
}

#[test]
fn dead_socket_at_path_is_taken_over() {
    let dir = tempdir();
    let path = dir.path().join("dead.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
    let mut server = Server::start(&path, Engine::Readwrite, &[]);
    assert!(server
        .seen
        .iter()
        .any(|l| l.starts_with("Removed dead socket")));
    assert_eq!(roundtrip(&path, b"new owner", 3), b"new owner");
    assert!(server
        .terminate(nix::sys::signal::Signal::SIGTERM)
        .success());
    assert!(!path.exists());
}

#[test]
fn socket_mode_is_0600_unless_mode_says_otherwise() {
    let dir = tempdir();
    let a = dir.path().join("a.sock");
    let _sa = Server::start(&a, Engine::Readwrite, &[]);
    assert_eq!(
        std::fs::metadata(&a).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let b = dir.path().join("b.sock");
    let _sb = Server::start(&b, Engine::Readwrite, &["--mode", "660"]);
    assert_eq!(
        std::fs::metadata(&b).unwrap().permissions().mode() & 0o777,
        0o660
    );
}

#[test]
fn allow_uid_rejects_unlisted_peers() {
    allow_uid(Engine::Readwrite, Engine::Splice);
}

#[test]
fn allow_uid_rejects_unlisted_peers_uring() {
    allow_uid(Engine::Uring, Engine::Uring);
}

fn allow_uid(engine: Engine, second: Engine) {
    let dir = tempdir();
    let me = nix::unistd::getuid().as_raw();
    let other = if me == 4242 { 4243 } else { 4242 };
    let path = dir.path().join("uid.sock");
    let mut server = Server::start(&path, engine, &["--allow-uid", &other.to_string()]);
    let (_, out, _) = run_client(&path, b"let me in\n", &[]);
    assert!(out.is_empty(), "a rejected peer gets no echo");
    let line = server.wait_line(|l| l.contains("rejected"));
    assert!(line.contains(&format!("peer uid {me}")), "{line}");
    // Listed uids get through.
    let path2 = dir.path().join("uid2.sock");
    let _ok = Server::start(
        &path2,
        second,
        &[
            "--allow-uid",
            &other.to_string(),
            "--allow-uid",
            &me.to_string(),
        ],
    );
    assert_eq!(roundtrip(&path2, b"welcome", 4), b"welcome");
}

// ---------------------------------------------------------------------------------------------
// Errors: one line, exit 1 (runtime) or 2 (usage), never a panic

#[test]
fn client_without_server_says_enoent() {
    let dir = tempdir();
    let path = dir.path().join("nobody.sock");
    let (st, out, err) = run_client(&path, b"x", &[]);
    assert_eq!(st.code(), Some(1));
    assert!(out.is_empty());
    assert_eq!(
        err,
        format!("udsim: cannot connect to {path:?}: no such file or directory (ENOENT)\n")
    );
}

#[test]
fn client_to_dead_socket_says_econnrefused() {
    let dir = tempdir();
    let path = dir.path().join("x.sock");
    drop(UnixListener::bind(&path).unwrap());
    let (st, _, err) = run_client(&path, b"x", &[]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(
        err,
        format!("udsim: cannot connect to {path:?}: connection refused (ECONNREFUSED)\n")
    );
}

#[test]
fn client_without_permission_says_eacces() {
    let dir = tempdir();
    let path = dir.path().join("private.sock");
    let _server = Server::start(&path, Engine::Readwrite, &["--quiet"]);
    let root = nix::unistd::getuid().is_root();
    let bin = if root {
        // As root, run the client as nobody: the directory is searchable by all, the 0600 socket
        // is root's. A copy of the binary in that directory is executable by nobody wherever
        // the build tree lives.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.path().join("udsim");
        std::fs::copy(BIN, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    } else {
        Path::new(BIN).to_path_buf()
    };
    let mut cmd = Command::new(bin);
    cmd.arg("client")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if root {
        cmd.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let (st, _, err) = run_with_input(&mut cmd, b"x");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(st.code(), Some(1));
    assert_eq!(
        err,
        format!("udsim: cannot connect to {path:?}: permission denied (EACCES)\n")
    );
}

#[test]
fn serve_in_missing_directory_says_enoent() {
    let dir = tempdir();
    let path = dir.path().join("missing").join("s.sock");
    let (st, err) = udsim(&["serve", "--quiet", path.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(
        err,
        format!("udsim: cannot bind {path:?}: no such file or directory (ENOENT)\n")
    );
}

#[test]
fn path_too_long_says_enametoolong() {
    let long = format!("/tmp/{}.sock", "x".repeat(120));
    for args in [vec!["serve", long.as_str()], vec!["client", long.as_str()]] {
        let (st, err) = udsim(&args);
        assert_eq!(st.code(), Some(1), "{err}");
        assert!(
            err.ends_with(": file name too long (ENAMETOOLONG)\n"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
    }
    assert!(!Path::new(&long).exists());
}

#[test]
fn bad_arguments_exit_2_without_panicking() {
    let bad: &[&[&str]] = &[
        &["serve"],
        &["serve", "--max-clients", "0", "x.sock"],
        &["serve", "--allow-uid", "root", "x.sock"],
        &["serve", "--mode", "888", "x.sock"],
        &["serve", "--mode", "+7", "x.sock"],
        &["serve", "--mode", "-7", "x.sock"],
        &["serve", "--mode", "", "x.sock"],
        &["serve", "--iterative", "--engine", "splice", "x.sock"],
        &["serve", "--iterative", "--max-clients", "3", "x.sock"],
        &["serve", "--memory-limit", "0", "x.sock"],
        &["serve", "--memory-limit", "12X", "x.sock"],
        &["serve", "--memory-limit", "99999999999G", "x.sock"],
        &["serve", "--idle-timeout", "0", "x.sock"],
        &["serve", "--idle-timeout", "-1", "x.sock"],
        &["serve", "--idle-timeout", "NaN", "x.sock"],
        &["serve", "--idle-timeout", "1e9", "x.sock"],
        &["client"],
    ];
    for &args in bad {
        let (st, err) = udsim(args);
        assert_eq!(st.code(), Some(2), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    let (st, err) = udsim(&["serve", "--print", "--engine", "splice", "x.sock"]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!Path::new("x.sock").exists());
}

// ---------------------------------------------------------------------------------------------
// Property: random client workloads against the real server

#[derive(Debug, Clone)]
enum Ending {
    /// Half-close after the last chunk and read the echo to EOF.
    HalfClose,
    /// Close abruptly after this many chunks, without reading everything.
    Abort(usize),
}

#[derive(Debug, Clone)]
struct Plan {
    chunks: Vec<usize>,
    ending: Ending,
}

fn plan() -> impl Strategy<Value = Plan> {
    let chunks = prop::collection::vec(prop_oneof![1usize..64, 1usize..70_000], 0..8);
    let ending = prop_oneof![
        3 => Just(Ending::HalfClose),
        1 => (0usize..8).prop_map(Ending::Abort),
    ];
    (chunks, ending).prop_map(|(chunks, ending)| Plan { chunks, ending })
}

fn run_plan(path: &Path, plan: &Plan, seed: u64) -> Result<(), TestCaseError> {
    let total: usize = plan.chunks.iter().sum();
    let data = random_bytes(total, seed);
    let sock = connect(path);
    match plan.ending {
        Ending::HalfClose => {
            let got = thread::scope(|s| {
                let mut w = &sock;
                let data = &data;
                s.spawn(move || {
                    let mut off = 0;
                    for &n in &plan.chunks {
                        w.write_all(&data[off..off + n]).expect("write");
                        off += n;
                    }
                    w.shutdown(Shutdown::Write).expect("shutdown");
                });
                let mut got = Vec::new();
                (&sock).read_to_end(&mut got).expect("read");
                got
            });
            prop_assert_eq!(got.len(), data.len());
            prop_assert!(got == data, "echo differs");
        }
        Ending::Abort(k) => {
            let mut off = 0;
            for &n in plan.chunks.iter().take(k) {
                // Bounded so that an unread echo can never block this writer.
                let n = n.min(16 * KIB);
                (&sock).write_all(&data[off..off + n]).expect("write");
                off += n;
            }
            drop(sock);
        }
    }
    Ok(())
}

fn random_workloads(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("prop.sock");
    let mut server = Server::start(&path, engine, &["--quiet"]);
    assert_eq!(roundtrip(&path, b"warm up", 1), b"warm up");
    let baseline = server.fd_count();
    let mut runner = TestRunner::new(PropConfig {
        cases: 24,
        failure_persistence: None,
        ..PropConfig::default()
    });
    let result = runner.run(
        &(prop::collection::vec(plan(), 1..10), any::<u64>()),
        |(plans, seed)| {
            let results: Vec<Result<(), TestCaseError>> = thread::scope(|s| {
                let handles: Vec<_> = plans
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let path = &path;
                        s.spawn(move || run_plan(path, p, seed ^ i as u64))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for r in results {
                r?;
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(server.is_running());
    server.wait_fd_count(baseline);
}

#[test]
fn random_workloads_iterative() {
    random_workloads(Engine::Iterative);
}

#[test]
fn random_workloads_readwrite() {
    random_workloads(Engine::Readwrite);
}

#[test]
fn random_workloads_splice() {
    random_workloads(Engine::Splice);
}

#[test]
fn random_workloads_uring() {
    random_workloads(Engine::Uring);
}

// ---------------------------------------------------------------------------------------------
// A short echo is never silent (issue 12, defect 1)

/// Bytes this socket sent that the peer has not read yet (SIOCOUTQ; for AF_UNIX the memory the
/// queued skbs charge, so 0 exactly when the peer has read everything).
fn unread_by_peer(sock: &UnixStream) -> usize {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one c_int through the pointer.
    let rc = unsafe {
        nix::libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            nix::libc::TIOCOUTQ,
            &mut n,
        )
    };
    assert_eq!(rc, 0, "SIOCOUTQ");
    n as usize
}

/// A server that reads everything, echoes only the first half and closes cleanly (EOF, no
/// reset): `udsim client` must not exit 0 with half the echo.
#[test]
fn client_fails_on_a_short_echo() {
    let dir = tempdir();
    let path = dir.path().join("short.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let input = random_bytes(100_000, 12);
    let fake = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(&got[..got.len() / 2]).unwrap();
    });
    let (st, out, err) = run_client(&path, &input, &["--quiet"]);
    fake.join().unwrap();
    assert_eq!(out.len(), 50_000);
    assert_eq!(st.code(), Some(1), "a short echo exits 1: {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(
        err.contains("50000 of 100000 bytes missing"),
        "says how many bytes are missing: {err:?}"
    );
}

/// On SIGTERM the event loop stops reading but finishes echoing what it has already read: a
/// client whose whole input the server holds (a large --buffer-size, so the server's own socket
/// queue is empty) gets every byte back, then EOF.
fn sigterm_drains(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("drain.sock");
    let mut server = Server::start(&path, engine, &["--quiet", "--buffer-size", "1048576"]);
    let data = random_bytes(768 * KIB, 13);
    let sock = connect(&path);
    (&sock).write_all(&data).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    // Until the server has read all of it (the echo cannot all fit in our receive queue, so most
    // of it is then pending in the server).
    let deadline = Instant::now() + HANG;
    while unread_by_peer(&sock) > 0 {
        assert!(
            Instant::now() < deadline,
            "the server never read everything"
        );
        thread::sleep(Duration::from_millis(5));
    }
    server.proc.signal(nix::sys::signal::Signal::SIGTERM);
    let mut got = Vec::new();
    let r = (&sock).read_to_end(&mut got);
    assert!(r.is_ok(), "{engine:?}: {r:?} after {} bytes", got.len());
    assert_eq!(
        got.len(),
        data.len(),
        "{engine:?}: every byte read is echoed"
    );
    assert!(got == data);
    assert!(server.proc.wait().success());
    assert!(!path.exists());
}

#[test]
fn sigterm_finishes_echoing_what_was_read_readwrite() {
    sigterm_drains(Engine::Readwrite);
}

#[test]
fn sigterm_finishes_echoing_what_was_read_splice() {
    sigterm_drains(Engine::Splice);
}

#[test]
fn sigterm_finishes_echoing_what_was_read_uring() {
    sigterm_drains(Engine::Uring);
}

/// The reproduction: 400,000 bytes through `udsim client` whose stdout is read only late,
/// the server SIGTERMed meanwhile. Whatever happens, exit 0 means the whole echo arrived.
fn sigterm_mid_echo_is_never_silent(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("repro.sock");
    let mut server = Server::start(&path, engine, &["--quiet"]);
    let input = random_bytes(400_000, 14);
    let mut client = Proc::spawn(&mut quiet_client(&path, Stdio::piped()));
    let watchdog = Watchdog::new(vec![client.pid(), server.proc.pid()]);
    let mut stdin = client.child.stdin.take().unwrap();
    let mut stdout = client.child.stdout.take().unwrap();
    let mut stderr = client.child.stderr.take().unwrap();
    let (out, err) = thread::scope(|s| {
        s.spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let err = s.spawn(move || {
            let mut e = String::new();
            let _ = stderr.read_to_string(&mut e);
            e
        });
        thread::sleep(Duration::from_millis(600));
        server.proc.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(server.proc.wait().success());
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        (out, err.join().unwrap())
    });
    drop(watchdog);
    let st = client.wait();
    eprintln!(
        "{engine:?}: client {st}, {} of 400000 bytes, stderr {err:?}",
        out.len()
    );
    if st.success() {
        assert!(out == random_bytes(400_000, 14), "exit 0 with a wrong echo");
    } else {
        assert_eq!(st.code(), Some(1));
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(
            err.contains("missing") || err.contains("before the end of input"),
            "{err:?}"
        );
    }
}

#[test]
fn sigterm_mid_echo_is_never_silent_readwrite() {
    sigterm_mid_echo_is_never_silent(Engine::Readwrite);
}

#[test]
fn sigterm_mid_echo_is_never_silent_splice() {
    sigterm_mid_echo_is_never_silent(Engine::Splice);
}

#[test]
fn sigterm_mid_echo_is_never_silent_uring() {
    sigterm_mid_echo_is_never_silent(Engine::Uring);
}

// ---------------------------------------------------------------------------------------------
// Every catchable fatal signal removes the socket (issue 12, defect 5)

/// SIGHUP stops the server like SIGTERM: exit 0, socket removed.
fn sighup_stops_gracefully(engine: Engine) {
    signal_cleanup(engine, nix::sys::signal::Signal::SIGHUP);
}

#[test]
fn sighup_removes_socket_iterative() {
    sighup_stops_gracefully(Engine::Iterative);
}

#[test]
fn sighup_removes_socket_readwrite() {
    sighup_stops_gracefully(Engine::Readwrite);
}

#[test]
fn sighup_removes_socket_splice() {
    sighup_stops_gracefully(Engine::Splice);
}

#[test]
fn sighup_removes_socket_uring() {
    sighup_stops_gracefully(Engine::Uring);
}

/// SIGUSR1, SIGUSR2, SIGALRM, SIGQUIT and a real-time signal still kill the server (its parent
/// sees the signal), but only after it removed its socket.
#[test]
fn other_fatal_signals_remove_the_socket_first() {
    use std::os::unix::process::ExitStatusExt;
    let rt = nix::libc::SIGRTMIN() + 3;
    let sigs = [
        nix::libc::SIGUSR1,
        nix::libc::SIGUSR2,
        nix::libc::SIGALRM,
        nix::libc::SIGQUIT,
        rt,
    ];
    for (i, &signo) in sigs.iter().enumerate() {
        for engine in [
            Engine::Iterative,
            Engine::Readwrite,
            Engine::Splice,
            Engine::Uring,
        ] {
            let dir = tempdir();
            let path = dir.path().join("fatal.sock");
            let mut cmd = serve_cmd(&path, engine, &["--quiet"]);
            // SIGQUIT dumps core: not into the source tree.
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
                        .map_err(std::io::Error::from)
                });
            }
            let mut server = Server::start_cmd(&path, cmd, true);
            let c = connect(&path);
            (&c).write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            (&c).read_exact(&mut buf).unwrap();
            // SAFETY: kill(2) with a plain signal number.
            let rc = unsafe { nix::libc::kill(server.proc.pid(), signo) };
            assert_eq!(rc, 0);
            let st = server.proc.wait();
            assert_eq!(st.signal(), Some(signo), "{engine:?} #{i}: {st}");
            assert!(
                !path.exists(),
                "{engine:?}: signal {signo} left the socket file"
            );
            let mut rest = Vec::new();
            (&c).read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Startup: exactly one server listens (issue 12, defect 2)

/// Whether `strace` can run here (tests that need it skip, saying why, when it cannot).
fn have_strace() -> bool {
    match Command::new("strace").arg("-V").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            eprintln!("SKIPPED: strace is not installed (apt-get install -y strace)");
            false
        }
    }
}

/// Kills, on drop, every process whose command line names `dir` (a unique temp dir): the
/// servers strace started, which strace's death would otherwise leave running.
struct KillUnder(std::path::PathBuf);

impl Drop for KillUnder {
    fn drop(&mut self) {
        let needle = self.0.to_string_lossy().into_owned();
        let me = std::process::id();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Waits (hang guard: `within`) for the process to exit; None if it is still running.
fn exit_within(proc: &mut Proc, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = proc.child.try_wait().expect("try_wait") {
            proc.reaped = Some(st);
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn stderr_of(proc: &mut Proc) -> String {
    let mut err = String::new();
    if let Some(mut e) = proc.child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// The first server is held between bind and listen for a second (strace delays its listen
/// call); a second one started meanwhile must not take the bound-but-not-yet-listening socket
/// for a dead one.
fn bind_to_listen_window(engine: Engine) {
    if !have_strace() {
        return;
    }
    let dir = tempdir();
    let _reaper = KillUnder(dir.path().to_path_buf());
    let path = dir.path().join("race.sock");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-o", "/dev/null", "-e", "trace=listen"])
        .args(["-e", "inject=listen:delay_enter=1000000"])
        .arg(BIN)
        .arg("serve")
        .args(engine.args())
        .arg("--quiet")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut first = Proc::spawn(&mut cmd);
    let deadline = Instant::now() + HANG;
    while !path.exists() {
        assert!(
            first.child.try_wait().unwrap().is_none(),
            "first server died"
        );
        assert!(Instant::now() < deadline, "first server never bound");
        thread::sleep(Duration::from_millis(2));
    }
    let mut cmd = serve_cmd(&path, engine, &["--quiet"]);
    let mut second = Proc::spawn(&mut cmd);
    // The delay is one second: well within this, the second server has decided.
    let st = exit_within(&mut second, Duration::from_secs(30));
    assert!(
        st.is_some(),
        "{engine:?}: the second server is still running: two servers listen on one path"
    );
    let err = stderr_of(&mut second);
    assert_eq!(st.unwrap().code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("a server is already listening there"), "{err}");
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "first server died"
    );
    assert_eq!(roundtrip(&path, b"the first one", 1), b"the first one");
}

#[test]
fn second_server_waits_out_the_bind_to_listen_window_readwrite() {
    bind_to_listen_window(Engine::Readwrite);
}

#[test]
fn second_server_waits_out_the_bind_to_listen_window_uring() {
    bind_to_listen_window(Engine::Uring);
}

#[test]
fn second_server_waits_out_the_bind_to_listen_window_iterative() {
    bind_to_listen_window(Engine::Iterative);
}

/// 100 servers started at once on one path: exactly one listens, the other 99 exit 1 with the
/// "already listening" line, and the survivor serves.
#[test]
fn hundred_simultaneous_starts_leave_one_listener() {
    for round in 0..3 {
        let dir = tempdir();
        let path = dir.path().join("many.sock");
        let mut procs: Vec<Proc> = (0..100)
            .map(|_| {
                let mut cmd = serve_cmd(&path, Engine::Readwrite, &["--quiet"]);
                Proc::spawn(&mut cmd)
            })
            .collect();
        // Until one is left, or none has exited for five seconds (two that both listen).
        let deadline = Instant::now() + HANG;
        let (mut last, mut since) = (usize::MAX, Instant::now());
        loop {
            let mut running = 0;
            for p in procs.iter_mut() {
                if p.child.try_wait().unwrap().is_none() {
                    running += 1;
                }
            }
            if running != last {
                (last, since) = (running, Instant::now());
            }
            if running <= 1 || since.elapsed() > Duration::from_secs(5) {
                break;
            }
            assert!(Instant::now() < deadline, "servers still starting");
            thread::sleep(Duration::from_millis(20));
        }
        // Settle: a server that would listen a second time has had ample time to.
        thread::sleep(Duration::from_millis(300));
        let mut live = Vec::new();
        let mut errs = Vec::new();
        for (i, p) in procs.iter_mut().enumerate() {
            match p.child.try_wait().unwrap() {
                None => live.push(i),
                Some(st) => {
                    p.reaped = Some(st);
                    errs.push((i, st, stderr_of(p)));
                }
            }
        }
        assert_eq!(
            live.len(),
            1,
            "round {round}: {} servers still running",
            live.len()
        );
        for (i, st, err) in errs {
            assert_eq!(st.code(), Some(1), "round {round}, server {i}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("a server is already listening there"), "{err}");
        }
        assert_eq!(roundtrip(&path, b"the one", 2), b"the one");
    }
}

/// A bind failure is one line also without --quiet (no "Server socket fd" line before it).
#[test]
fn bind_error_is_one_line_without_quiet() {
    let dir = tempdir();
    let path = dir.path().join("missing").join("s.sock");
    let (st, err) = udsim(&["serve", path.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(
        err,
        format!("udsim: cannot bind {path:?}: no such file or directory (ENOENT)\n")
    );
}

// ---------------------------------------------------------------------------------------------
// A stalled stdout or stderr never stops the server (issue 12, defect 3)

/// A server whose stdout and stderr are pipes that nobody reads (the read ends are held open,
/// so writes would block rather than fail). Returns the process and the read ends.
fn serve_into_stalled_pipes(path: &Path, engine: Engine, extra: &[&str]) -> (Proc, OwnedPipes) {
    // Close-on-exec, so that no other test's child inherits them.
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut cmd = serve_cmd(path, engine, extra);
    cmd.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
    let mut proc = Proc::spawn(&mut cmd);
    drop(cmd);
    let deadline = Instant::now() + HANG;
    while UnixStream::connect(path).is_err() {
        assert!(proc.child.try_wait().unwrap().is_none(), "server exited");
        assert!(Instant::now() < deadline, "server never listened");
        thread::sleep(Duration::from_millis(5));
    }
    (proc, OwnedPipes(vec![err_r, out_r]))
}

struct OwnedPipes(#[allow(dead_code)] Vec<std::os::fd::OwnedFd>);

/// A round trip that gives up (test failure, not a hang) after 20 s.
fn roundtrip_within(path: &Path, data: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_write_timeout(Some(Duration::from_secs(20)))?;
    thread::scope(|sc| {
        let w = &s;
        let h = sc.spawn(move || -> std::io::Result<()> {
            let mut w = w;
            w.write_all(data)?;
            w.shutdown(Shutdown::Write)
        });
        let mut got = Vec::new();
        let r = (&s).read_to_end(&mut got);
        h.join().unwrap()?;
        r.map(|_| got)
    })
}

/// SIGTERM must end the server promptly even with its output stalled: exit 0, socket removed.
fn sigterm_exits_promptly(mut proc: Proc, path: &Path) {
    let t0 = Instant::now();
    proc.signal(nix::sys::signal::Signal::SIGTERM);
    let st = exit_within(&mut proc, Duration::from_secs(20));
    eprintln!("SIGTERM to exit: {:?}", t0.elapsed());
    assert!(st.is_some(), "SIGTERM ignored: the server is blocked");
    assert!(st.unwrap().success());
    assert!(!path.exists());
}

/// Status lines ("Accepted socket fd = N", one per client) into a stderr pipe nobody reads:
/// 5,000 clients (the pipe holds about 2,800 lines) are all served.
fn stalled_stderr(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("err.sock");
    let (proc, _pipes) = serve_into_stalled_pipes(&path, engine, &[]);
    for i in 0..5000 {
        let got = roundtrip_within(&path, b"x")
            .unwrap_or_else(|e| panic!("{engine:?}: client {i} not served: {e}"));
        assert_eq!(got, b"x");
    }
    sigterm_exits_promptly(proc, &path);
}

#[test]
fn stalled_stderr_never_stops_the_server_iterative() {
    stalled_stderr(Engine::Iterative);
}

#[test]
fn stalled_stderr_never_stops_the_server_readwrite() {
    stalled_stderr(Engine::Readwrite);
}

#[test]
fn stalled_stderr_never_stops_the_server_splice() {
    stalled_stderr(Engine::Splice);
}

#[test]
fn stalled_stderr_never_stops_the_server_uring() {
    stalled_stderr(Engine::Uring);
}

/// `--print` into a stdout pipe nobody reads: 4 MiB are echoed all the same (what does not fit
/// is dropped from the copy, never from the echo).
fn stalled_print(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("out.sock");
    let (proc, _pipes) = serve_into_stalled_pipes(&path, engine, &["--print", "--quiet"]);
    let data = random_bytes(4 * MIB, 31);
    for i in 0..3 {
        let got = roundtrip_within(&path, &data)
            .unwrap_or_else(|e| panic!("{engine:?}: client {i} not served: {e}"));
        assert!(got == data, "{engine:?}: echo differs");
    }
    sigterm_exits_promptly(proc, &path);
}

#[test]
fn stalled_print_never_stops_the_server_iterative() {
    stalled_print(Engine::Iterative);
}

#[test]
fn stalled_print_never_stops_the_server_readwrite() {
    stalled_print(Engine::Readwrite);
}

#[test]
fn stalled_print_never_stops_the_server_uring() {
    stalled_print(Engine::Uring);
}

// ---------------------------------------------------------------------------------------------
// Repeated warnings are rate-limited (issue 12, defect 4)

/// The rejected-connection count in a warning line: 1 for a "rejected connection" line, N for
/// an "N more connections rejected" line, 0 otherwise.
fn rejected_in(line: &str) -> u64 {
    if line.starts_with("udsim: rejected connection") {
        1
    } else if line.contains(" more connections rejected") {
        line.trim_start_matches("udsim: ")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    } else {
        0
    }
}

/// 20,000 connections refused by --allow-uid: every one is accounted for, in a few lines per
/// second of flood instead of one line each.
fn rejection_flood(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("flood.sock");
    let me = nix::unistd::getuid().as_raw();
    let other = if me == 4242 { 4243 } else { 4242 };
    let mut server = Server::start(
        &path,
        engine,
        &["--quiet", "--allow-uid", &other.to_string()],
    );
    let total = 20_000u64;
    let t0 = Instant::now();
    for _ in 0..total {
        drop(connect(&path));
    }
    // Until every rejection is accounted for (the last count comes when its second is over);
    // Server::start's readiness probe was one more connection.
    let total = total + 1;
    let mut counted = 0;
    let mut lines = 0;
    while counted < total {
        let line = server.wait_line(|_| true);
        counted += rejected_in(&line);
        lines += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("{engine:?}: {total} rejections in {secs:.2} s gave {lines} lines");
    assert_eq!(counted, total);
    assert!(
        (lines as f64) <= 3.0 + 2.0 * secs.ceil(),
        "{lines} lines for {total} rejections in {secs:.2} s"
    );
    assert!(server
        .terminate(nix::sys::signal::Signal::SIGTERM)
        .success());
}

#[test]
fn rejection_flood_is_rate_limited_readwrite() {
    rejection_flood(Engine::Readwrite);
}

#[test]
fn rejection_flood_is_rate_limited_uring() {
    rejection_flood(Engine::Uring);
}

#[test]
fn rejection_flood_is_rate_limited_iterative() {
    rejection_flood(Engine::Iterative);
}

// ---------------------------------------------------------------------------------------------
// A global memory bound and an idle timeout (issue 12, "also")

/// `--memory-limit 4M` with 1 MiB buffers: room for four buffers, one of them kept for the
/// next client, so three clients are served at once and a fourth waits in the backlog until one
/// leaves.
#[test]
fn memory_limit_holds_extra_clients_in_the_backlog() {
    memory_limit(Engine::Readwrite);
}

#[test]
fn memory_limit_holds_extra_clients_in_the_backlog_uring() {
    memory_limit(Engine::Uring);
}

fn memory_limit(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("mem.sock");
    let _server = Server::start(
        &path,
        engine,
        &["--buffer-size", "1048576", "--memory-limit", "4M"],
    );
    let served: Vec<UnixStream> = (0..3).map(|_| connect(&path)).collect();
    let mut buf = [0u8; 2];
    for c in &served {
        (&*c).write_all(b"hi").unwrap();
        (&*c).read_exact(&mut buf).unwrap();
    }
    let fourth = connect(&path);
    (&fourth).write_all(b"c4").unwrap();
    for _ in 0..2 {
        (&served[1]).write_all(b"hi").unwrap();
        (&served[1]).read_exact(&mut buf).unwrap();
    }
    fourth.set_nonblocking(true).unwrap();
    let early = (&fourth).read(&mut buf);
    assert!(
        matches!(&early, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "a fourth client was served within a 4 MiB bound of 1 MiB buffers: {early:?}"
    );
    fourth.set_nonblocking(false).unwrap();
    drop(served);
    (&fourth).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"c4");
}

/// A per-connection bound that the global bound cannot hold twice is refused at start.
#[test]
fn memory_limit_below_two_buffers_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("mem.sock");
    let p = path.to_str().unwrap();
    let (st, err) = udsim(&[
        "serve",
        "--buffer-size",
        "1048576",
        "--memory-limit",
        "1M",
        p,
    ]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("holds fewer than 2 connection buffers"),
        "{err}"
    );
    assert!(!path.exists());
}

/// `--idle-timeout 2`: a client that goes silent is closed after about two seconds, not before;
/// a client that keeps talking (a byte every 100 ms, 20 times closer than the timeout) is not.
fn idle_timeout(engine: Engine) {
    let dir = tempdir();
    let path = dir.path().join("idle.sock");
    let _server = Server::start(&path, engine, &["--quiet", "--idle-timeout", "2"]);
    let idle = connect(&path);
    let t0 = Instant::now();
    (&idle).write_all(b"hi").unwrap();
    let mut buf = [0u8; 2];
    (&idle).read_exact(&mut buf).unwrap();
    // Waits for the server to close the silent client, while (event loops) another one talks.
    let closed = thread::spawn(move || {
        let mut rest = Vec::new();
        (&idle).read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        t0.elapsed()
    });
    if engine != Engine::Iterative {
        // The talker: a byte every 100 ms for 4 s, all echoed (the iterative server has only the
        // one client at a time).
        let talker = connect(&path);
        for _ in 0..40 {
            (&talker).write_all(b"t").unwrap();
            (&talker).read_exact(&mut buf[..1]).unwrap();
            thread::sleep(Duration::from_millis(100));
        }
    }
    let after = closed.join().unwrap();
    assert!(
        after >= Duration::from_secs(2),
        "{engine:?}: closed after {after:?}, before the timeout"
    );
    eprintln!("{engine:?}: idle client closed after {after:?}");
}

#[test]
fn idle_timeout_closes_silent_clients_iterative() {
    idle_timeout(Engine::Iterative);
}

#[test]
fn idle_timeout_closes_silent_clients_readwrite() {
    idle_timeout(Engine::Readwrite);
}

#[test]
fn idle_timeout_closes_silent_clients_splice() {
    idle_timeout(Engine::Splice);
}

#[test]
fn idle_timeout_closes_silent_clients_uring() {
    idle_timeout(Engine::Uring);
}

/// Without --idle-timeout a silent client stays connected (2 s here) and is then served.
#[test]
fn no_idle_timeout_by_default() {
    let dir = tempdir();
    let path = dir.path().join("noidle.sock");
    let _server = Server::start(&path, Engine::Readwrite, &["--quiet"]);
    let c = connect(&path);
    thread::sleep(Duration::from_secs(2));
    (&c).write_all(b"still here").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    (&c).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"still here");
}

/// The unprivileged reproduction: with `-q` and stderr into a pipe nobody reads, 1,000
/// connections from uid 65534 (nobody) that `--allow-uid` rejects neither freeze the server for
/// the allowed user nor stop SIGTERM. Needs root (to run the flood as nobody); skipped otherwise.
#[test]
fn rejected_flood_from_another_user_never_freezes_the_server() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("SKIPPED: needs root to run the flood as uid 65534");
        return;
    }
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("udsim");
    std::fs::copy(BIN, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("uid.sock");
    let (proc, _pipes) = serve_into_stalled_pipes(
        &path,
        Engine::Readwrite,
        &["--quiet", "--mode", "666", "--allow-uid", "0"],
    );
    let script = format!(
        "i=0; while [ $i -lt 1000 ]; do {} client -q {} </dev/null >/dev/null 2>&1; i=$((i+1)); done",
        copy.display(),
        path.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut flood = Proc::spawn(&mut cmd);
    assert!(flood.wait().success(), "the flood ran");
    let got = roundtrip_within(&path, b"root is allowed").expect("the allowed user is served");
    assert_eq!(got, b"root is allowed");
    sigterm_exits_promptly(proc, &path);
}

/// The socket's directory removed while the server runs: SIGTERM still exits 0 with no warning
/// (the exit-time lock on the directory finds nothing to remove).
#[test]
fn sigterm_after_the_directory_was_removed() {
    let dir = tempdir();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("gone.sock");
    let mut server = Server::start(&path, Engine::Readwrite, &[]);
    std::fs::remove_dir_all(&sub).unwrap();
    assert!(server
        .terminate(nix::sys::signal::Signal::SIGTERM)
        .success());
    let lines = server.rest_of_stderr();
    assert!(
        !lines.iter().any(|l| l.starts_with("udsim: ")),
        "no warning: {lines:?}"
    );
}

/// A pseudo-terminal whose master nobody reads: the stalled terminal of the title (^S
/// has the same effect). Returns (master, slave); writes to the slave block once the terminal's
/// buffer is full.
fn stalled_terminal() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use nix::libc;
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc pty calls; each fd returned is owned exactly once.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let name = libc::ptsname(m);
        assert!(!name.is_null());
        let s = libc::open(name, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(s >= 0, "open the pty slave");
        (
            std::os::fd::OwnedFd::from_raw_fd(m),
            std::os::fd::OwnedFd::from_raw_fd(s),
        )
    }
}

/// Status lines to a terminal nobody reads: 5,000 clients are served and SIGTERM exits 0.
#[test]
fn stalled_terminal_never_stops_the_server() {
    let dir = tempdir();
    let path = dir.path().join("tty.sock");
    let (_master, slave) = stalled_terminal();
    let mut cmd = serve_cmd(&path, Engine::Readwrite, &[]);
    cmd.stderr(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave));
    let mut proc = Proc::spawn(&mut cmd);
    drop(cmd);
    let deadline = Instant::now() + HANG;
    while UnixStream::connect(&path).is_err() {
        assert!(proc.child.try_wait().unwrap().is_none(), "server exited");
        assert!(Instant::now() < deadline, "server never listened");
        thread::sleep(Duration::from_millis(5));
    }
    for i in 0..5000 {
        let got =
            roundtrip_within(&path, b"x").unwrap_or_else(|e| panic!("client {i} not served: {e}"));
        assert_eq!(got, b"x");
    }
    sigterm_exits_promptly(proc, &path);
}

// ---------------------------------------------------------------------------------------------
// --engine uring without io_uring (issue 14)

/// A seccomp filter, installed between fork and exec, that makes io_uring_setup(2) (425 on
/// x86_64) fail with `errno`; every other system call is allowed.
#[cfg(target_arch = "x86_64")]
fn deny_io_uring(cmd: &mut Command, errno: i32) {
    use nix::libc;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const SYS_IO_URING_SETUP: u32 = 425;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        f(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        f(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        f(RET_K, 0, 0, RET_ALLOW),
        f(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        f(JEQ_K, 0, 1, SYS_IO_URING_SETUP),
        f(RET_K, 0, 0, RET_ERRNO | errno as u32),
        f(RET_K, 0, 0, RET_ALLOW),
    ];
    // SAFETY: prctl(2) is async-signal-safe; the filter is moved into the closure and lives as
    // long as the Command; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Without io_uring (here a seccomp filter makes io_uring_setup fail, as a sandbox or
/// `kernel.io_uring_disabled` would) `--engine uring` exits 1 with one line naming the cause and
/// leaves no socket file; the same filter does not stop the epoll engine, so the refusal is the
/// io_uring path's own.
#[cfg(target_arch = "x86_64")]
#[test]
fn uring_without_io_uring_is_one_line_exit_1() {
    for (errno, name) in [(nix::libc::ENOSYS, "ENOSYS"), (nix::libc::EPERM, "EPERM")] {
        let dir = tempdir();
        let path = dir.path().join("nouring.sock");
        let mut cmd = serve_cmd(&path, Engine::Uring, &[]);
        deny_io_uring(&mut cmd, errno);
        let mut proc = Proc::spawn(&mut cmd);
        let err = stderr_of(&mut proc);
        assert_eq!(proc.wait().code(), Some(1), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(
            err.starts_with("udsim: ")
                && err.contains("io_uring is not available")
                && err.contains(&format!("({name})")),
            "{name}: {err}"
        );
        assert!(!path.exists(), "{name}: socket file left behind");

        let mut cmd = serve_cmd(&path, Engine::Readwrite, &[]);
        deny_io_uring(&mut cmd, errno);
        let _server = Server::start_cmd(&path, cmd, false);
        assert_eq!(roundtrip(&path, b"still epoll", 3), b"still epoll");
    }
}
