//! The echo property test of the design card: proptest generates echo workloads (clients, message
//! sizes and chunking, stalled readers, aborts, the server's buffer bound, the scheduler's seed),
//! and for each
//! (a) the simulated run's trace agrees with the kernel, call for call (`udsim check` on it);
//! (b) the same workload against the real `udsim serve` process, with real `udsim client`
//!     processes in a temp directory, gives every client exactly the bytes and the end the
//!     simulation predicted;
//! (c) the echo invariants hold in the simulation (every byte echoed once, in order; the
//!     per-connection bound never passed; every connection closed by the server).
//! Failures shrink to a minimal workload and print its trace. A relay with a planted bug (it
//! drops the rest of a partial write) is found and shrunk.

use nix::errno::Errno;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use udsim::check::{describe, Checker, Options};
use udsim::echo::relay::{Drain, Fill, Relay, RelayCore};
use udsim::echo::tap::Tap;
use udsim::model::Params;
use udsim::net::Stream;
use udsim::sim::echo::{
    check_invariants, client_data, simulate, simulate_with, ClientPlan, EchoRun, End, Workload,
};
use udsim::sim::SimStream;

const BIN: &str = env!("CARGO_BIN_EXE_udsim");
const MAX_LEN: usize = 300_000;

fn plan() -> impl Strategy<Value = ClientPlan> {
    (
        prop_oneof![0..64usize, 0..4096usize, 0..MAX_LEN],
        // Sends and receives per client: a workload is about interleavings, not about copying
        // 300 kB a byte at a time; shrinking makes them fewer (larger chunks).
        prop_oneof![1..4usize, 1..=256usize],
        prop_oneof![1..4usize, 1..=256usize],
        proptest::option::weighted(0.25, (0..MAX_LEN, 1..400u64)),
        proptest::option::weighted(0.15, 0..MAX_LEN),
        any::<u64>(),
    )
        .prop_map(|(len, sends, reads, stall, abort_after, key)| ClientPlan {
            len,
            chunk: len.div_ceil(sends).max(1),
            read: len.div_ceil(reads).max(1),
            stall: stall.map(|(at, t)| (at.min(len), t)),
            abort_after,
            key: Some(key),
        })
}

fn workload() -> impl Strategy<Value = Workload> {
    (
        proptest::collection::vec(plan(), 1..=6),
        prop_oneof![1..256usize, 1..=65536usize, Just(65536usize)],
        any::<u64>(),
    )
        .prop_map(|(clients, buffer, seed)| {
            let longest = clients.iter().map(|c| c.len).max().unwrap_or(0);
            Workload {
                buffer: buffer.max(longest / 256).max(1),
                clients,
                seed,
            }
        })
}

/// The trace's first and last lines, data cut, for a failure message.
fn trace_excerpt(run: &EchoRun) -> String {
    let lines: Vec<String> = run
        .trace_text
        .lines()
        .map(|l| {
            if l.len() > 160 {
                format!("{} … ({} chars)", &l[..l.floor_char_boundary(150)], l.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    if lines.len() <= 80 {
        lines.join("\n")
    } else {
        format!(
            "{}\n# … {} lines …\n{}",
            lines[..40].join("\n"),
            lines.len() - 80,
            lines[lines.len() - 40..].join("\n")
        )
    }
}

/// What a real client process gave: the bytes it wrote to stdout, and whether it exited 0
/// (None: killed by us after its planned abort point).
struct RealClient {
    received: Vec<u8>,
    ok: Option<bool>,
}

/// Runs the workload against the real server and real client processes.
fn run_real(w: &Workload) -> Result<Vec<RealClient>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sock = dir.path().join("echo.sock");
    let mut server = Command::new(BIN)
        .args(["serve", "--buffer-size", &w.buffer.to_string()])
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut err = BufReader::new(server.stderr.take().expect("piped"));
    // It says so once it listens.
    let mut said = String::new();
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).map_err(|e| e.to_string())?;
        said.push_str(&line);
        if line.contains("Waiting to accept") {
            break;
        }
        if n == 0 || said.len() > 4096 {
            let _ = server.kill();
            return Err(format!("the server did not start: {said:?}"));
        }
    }
    // Keep draining its status lines.
    let drain = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = err.read_to_end(&mut sink);
    });
    let mut handles = Vec::new();
    for (i, plan) in w.clients.iter().enumerate() {
        let plan = plan.clone();
        let sock = sock.clone();
        handles.push(std::thread::spawn(move || real_client(i, &plan, &sock)));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(
            h.join()
                .map_err(|_| "a client thread panicked".to_string())??,
        );
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = server.wait().map_err(|e| e.to_string())?;
    let _ = drain.join();
    if !status.success() {
        return Err(format!("the server exited with {status}"));
    }
    Ok(out)
}

fn real_client(i: usize, plan: &ClientPlan, sock: &std::path::Path) -> Result<RealClient, String> {
    let mut child: Child = Command::new(BIN)
        .args(["client", "-q"])
        .arg(sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let data = client_data(i, plan.len);
    let mut stdin = child.stdin.take().expect("piped");
    let chunk = plan.chunk;
    let writer = std::thread::spawn(move || {
        for c in data.chunks(chunk.max(1)) {
            if stdin.write_all(c).is_err() {
                break;
            }
        }
        // Dropping stdin is the end of input: the client half-closes.
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stalled = false;
    let abort = plan.aborts_at();
    loop {
        if let Some((at, _)) = plan.stall {
            if !stalled && received.len() >= at {
                stalled = true;
                // A reader that stops: the client's stdout pipe fills, it stops reading its
                // socket, and the server's bound holds the rest.
                std::thread::sleep(Duration::from_millis(30));
            }
        }
        let mut want = buf.len();
        if let Some(k) = abort {
            if received.len() >= k {
                let _ = child.kill();
                let _ = child.wait();
                let _ = writer.join();
                return Ok(RealClient { received, ok: None });
            }
            want = want.min(k - received.len());
        }
        match stdout.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = writer.join();
    Ok(RealClient {
        received,
        ok: Some(status.success()),
    })
}

fn check_workload(
    checker: &RefCell<Checker>,
    params: &Params,
    w: &Workload,
) -> Result<(), TestCaseError> {
    let run = simulate(params.clone(), w, true)
        .map_err(|e| TestCaseError::fail(format!("the simulation stopped: {e}")))?;
    // (c) the echo's invariants in the simulation.
    check_invariants(w, &run)
        .map_err(|e| TestCaseError::fail(format!("{e}\ntrace:\n{}", trace_excerpt(&run))))?;
    // (a) the trace, replayed on the kernel, agrees call for call.
    let r = checker
        .borrow_mut()
        .run(&run.trace, Options::default())
        .map_err(|e| TestCaseError::fail(format!("the checker failed: {e}")))?;
    prop_assert!(
        r.fully_agrees() && r.steps.len() == run.trace.lines.len(),
        "the kernel disagrees with the simulated trace:\n{}",
        describe(&r)
    );
    // (b) the real server and clients: every client gets what the simulation predicted.
    let real = run_real(w).map_err(TestCaseError::fail)?;
    for (i, (sim, real)) in run.clients.iter().zip(&real).enumerate() {
        prop_assert_eq!(
            sim.received.len(),
            real.received.len(),
            "client {}: the simulation predicted {} bytes, the real client got {}",
            i,
            sim.received.len(),
            real.received.len()
        );
        prop_assert!(sim.received == real.received, "client {i}: different bytes");
        match (sim.end, real.ok) {
            (End::Eof, Some(true)) | (End::Aborted, None) => {}
            (s, r) => prop_assert!(false, "client {i}: simulated end {s:?}, real exit {r:?}"),
        }
    }
    Ok(())
}

/// (a), (b) and (c) on 200 generated workloads.
#[test]
fn echo_workloads_agree_with_the_kernel_and_the_real_programs() {
    let checker = RefCell::new(Checker::new().expect("an executor"));
    let params = checker.borrow().params().clone();
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&workload(), |w| check_workload(&checker, &params, &w));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The relay of the real server with a planted bug: when a send takes only part of what is
/// pending, the rest is dropped.
#[derive(Debug)]
struct DropsPartialWrites {
    buf: Vec<u8>,
    bound: usize,
}

impl RelayCore for DropsPartialWrites {
    const ENGINE: &'static str = "planted bug";
    fn create(bound: usize) -> Result<Self, Errno> {
        Ok(DropsPartialWrites {
            buf: Vec::new(),
            bound,
        })
    }
    fn pending(&self) -> usize {
        self.buf.len()
    }
    fn wants_read(&self) -> bool {
        self.buf.len() < self.bound
    }
    fn recycle(&mut self) -> bool {
        self.buf.is_empty()
    }
}

impl Relay<SimStream> for DropsPartialWrites {
    fn fill(&mut self, sock: &SimStream, _tap: &mut Tap) -> Result<Fill, Errno> {
        let mut tmp = vec![0u8; self.bound - self.buf.len()];
        match sock.recv(&mut tmp) {
            Ok(0) => Ok(Fill::Eof),
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(Fill::Got {
                    n,
                    short: n < tmp.len(),
                })
            }
            Err(Errno::EAGAIN) => Ok(Fill::WouldBlock),
            Err(e) => Err(e),
        }
    }
    fn drain(&mut self, sock: &SimStream) -> Result<Drain, Errno> {
        match sock.send(&self.buf) {
            Ok(n) => {
                // The bug: the unsent rest of a partial write is forgotten.
                self.buf.clear();
                Ok(Drain::Sent(n))
            }
            Err(Errno::EAGAIN) => Ok(Drain::WouldBlock),
            Err(e) => Err(e),
        }
    }
}

#[test]
fn a_planted_relay_bug_is_found_and_shrunk_to_a_small_workload() {
    let params = udsim::kernel::calibrate::params().expect("calibration");
    // A fixed RNG: the search and its shrinking are the same on every run.
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 2000,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let result = runner.run(&workload(), |w| {
        let run = simulate_with::<DropsPartialWrites>(params.clone(), &w, true)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_invariants(&w, &run).map_err(TestCaseError::fail)
    });
    let Err(TestError::Fail(why, minimal)) = result else {
        panic!("the planted bug was not found: {result:?}");
    };
    let run = simulate_with::<DropsPartialWrites>(params.clone(), &minimal, true).unwrap();
    eprintln!(
        "minimal workload: {minimal:?}\n{why}\n{} calls:\n{}",
        run.stats.calls,
        trace_excerpt(&run)
    );
    assert_eq!(
        minimal.clients.len(),
        1,
        "shrunk to one client: {minimal:?}"
    );
    assert!(
        run.stats.calls <= 50,
        "shrunk to a few calls, not {}",
        run.stats.calls
    );
    // The correct relay passes the same workload.
    let good = simulate(params, &minimal, false).unwrap();
    check_invariants(&minimal, &good).unwrap();
}
