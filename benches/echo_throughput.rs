//! Echo throughput: udsim's servers against the kernel's own limit and the peers a user would
//! pick instead, in one criterion group per mode so every ratio comes from one run.
//!
//! - `echo_pingpong/<server>/<payload>`: write one payload, read its echo, repeat (request/response).
//! - `echo_pipelined/<server>/<payload>`: a writer thread streams payloads while the bench thread
//!   reads the echo (throughput with the pipe kept full).
//!
//! Servers: `raw_thread` (a socketpair echoed by a thread: the kernel's limit, no bind/listen),
//! `raw_process` (the same echoed by a child process: the limit for two processes), `std_threads`,
//! `tokio`, `monoio` (io_uring; peers, run as this binary re-executed), `udsim_iterative`,
//! `udsim_event_loop`, `udsim_splice`, `udsim_uring` (the real `udsim serve` binary). Each is started, connected and checked byte for
//! byte once per group, on first use, outside the timed region (`iter_custom`), and killed at the
//! end of the group. Placement: see `UDSIM_BENCH_CPUS` in benches/README.md.

#[path = "common/mod.rs"]
mod common;

use common::{Kind, Placement, RawEcho, Server};
use criterion::{BenchmarkId, Criterion, Throughput};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PAYLOADS: &[usize] = &[64, 1024, 16 * 1024, 64 * 1024];
const FIXED_SERVERS: &[Kind] = &[
    Kind::RawThread,
    Kind::RawProcess,
    Kind::StdThreads,
    Kind::Tokio,
    Kind::Monoio,
    Kind::UdsimIterative,
    Kind::UdsimEventLoop,
    Kind::UdsimSplice,
    Kind::UdsimUring,
];
/// The servers of this run: the fixed set, and the baseline build when
/// `UDSIM_BENCH_BASELINE_BIN` names one.
fn servers() -> Vec<Kind> {
    let mut v = FIXED_SERVERS.to_vec();
    if common::baseline_bin().is_some() {
        v.push(Kind::UdsimEventLoopBaseline);
    }
    v
}

const GROUPS: &[&str] = &["echo_pingpong", "echo_pipelined"];

/// What keeps a server alive for the group (held only for its Drop).
#[allow(dead_code)]
enum Holder {
    Raw(RawEcho),
    Proc(Server),
}

/// The pipelined writer's orders (payload size, count) and its acknowledgements.
type Orders = (mpsc::Sender<(usize, u64)>, mpsc::Receiver<()>);

/// One server's connection for a group: started lazily, so a filtered run starts only what it
/// measures.
struct Live {
    conn: UnixStream,
    /// Pipelined mode: the writer thread's orders (payload size, count) and its acks.
    writer: Option<Orders>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    _holder: Holder,
}

impl Live {
    fn start(kind: Kind, p: &Placement, pipelined: bool) -> Live {
        let (conn, holder) = match kind {
            Kind::RawThread | Kind::RawProcess => {
                let mut raw = RawEcho::start(kind, p);
                // Live's drop shuts the connection down, which ends the echo; then RawEcho reaps it.
                let c = raw.client.take().expect("client");
                (c, Holder::Raw(raw))
            }
            _ => {
                let s = Server::start(kind, false, p);
                let mut c = s.connect();
                common::verify_echo(&mut c, kind.id());
                (c, Holder::Proc(s))
            }
        };
        let mut live = Live {
            conn,
            writer: None,
            writer_thread: None,
            _holder: holder,
        };
        if pipelined {
            let (order_tx, order_rx) = mpsc::channel::<(usize, u64)>();
            let (ack_tx, ack_rx) = mpsc::channel::<()>();
            let mut w = live.conn.try_clone().expect("clone");
            live.writer_thread = Some(std::thread::spawn(move || {
                let buf = payload_bytes(*PAYLOADS.iter().max().unwrap_or(&65536));
                while let Ok((len, count)) = order_rx.recv() {
                    for _ in 0..count {
                        w.write_all(&buf[..len]).expect("pipelined write");
                    }
                    let _ = ack_tx.send(());
                }
            }));
            live.writer = Some((order_tx, ack_rx));
        }
        live
    }

    fn pingpong(&mut self, out: &[u8], back: &mut [u8], iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            self.conn.write_all(out).expect("write");
            self.conn.read_exact(back).expect("read echo");
        }
        start.elapsed()
    }

    fn pipelined(&mut self, len: usize, back: &mut [u8], iters: u64) -> Duration {
        let (orders, acks) = self.writer.as_ref().expect("writer");
        let mut left = len as u64 * iters;
        let start = Instant::now();
        orders.send((len, iters)).expect("writer gone");
        while left > 0 {
            let want = left.min(back.len() as u64) as usize;
            let n = self.conn.read(&mut back[..want]).expect("read echo");
            assert!(n > 0, "server closed the connection");
            left -= n as u64;
        }
        let t = start.elapsed();
        acks.recv().expect("writer ack");
        t
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.writer = None; // ends the writer's loop
        let _ = self.conn.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

fn payload_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn label(n: usize) -> String {
    if n >= 1024 {
        format!("{}KiB", n / 1024)
    } else {
        format!("{n}B")
    }
}

fn group(c: &mut Criterion, p: &Placement, name: &str, pipelined: bool) {
    let mut g = c.benchmark_group(name);
    let servers = servers();
    let mut lives: Vec<Option<Live>> = servers.iter().map(|_| None).collect();
    let out = payload_bytes(*PAYLOADS.iter().max().unwrap_or(&65536));
    let mut back = vec![0u8; out.len()];
    for &len in PAYLOADS {
        g.throughput(Throughput::Bytes(len as u64));
        for (i, &kind) in servers.iter().enumerate() {
            let id = BenchmarkId::new(kind.id(), label(len));
            g.bench_with_input(id, &len, |b, &len| {
                b.iter_custom(|iters| {
                    let live = lives[i].get_or_insert_with(|| Live::start(kind, p, pipelined));
                    if pipelined {
                        live.pipelined(len, &mut back, iters)
                    } else {
                        live.pingpong(&out[..len], &mut back[..len], iters)
                    }
                })
            });
        }
    }
    g.finish();
    drop(lives);
}

/// Criterion's positional arguments (benchmark filters), skipping the values of its options.
fn filters() -> Vec<String> {
    const WITH_VALUE: &[&str] = &[
        "--measurement-time",
        "--warm-up-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--profile-time",
        "--noise-threshold",
        "--significance-level",
        "--confidence-level",
        "--nresamples",
        "--color",
        "--output-format",
        "--plotting-backend",
        "--format",
        "--logfile",
    ];
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            out.push(a);
        }
    }
    out
}

/// Rounds of the interleaved pass (`--quick`: fewer).
fn rounds() -> usize {
    if common::quick() {
        8
    } else {
        25
    }
}

/// Time one chunk of a cell aims at, measured on the raw limit.
const CHUNK: Duration = Duration::from_millis(5);

/// The interleaved pass: every server measured in short chunks, round after round, rotating the
/// order, so each ratio compares chunks taken milliseconds apart. Criterion measures one server
/// after another for seconds each; on a shared machine the load can change in between, and this
/// pass is what the ratio targets are judged on. Writes `udsim-meta/echo_interleaved.json`.
fn interleaved(p: &Placement) {
    if !common::measuring() {
        return;
    }
    let f = filters();
    if !f.is_empty() && !f.iter().any(|x| x.contains("interleaved")) {
        return;
    }
    let out = payload_bytes(*PAYLOADS.iter().max().unwrap_or(&65536));
    let mut back = vec![0u8; out.len()];
    let rounds = rounds();
    let mut cells = Vec::new();
    let all = servers();
    for (mode, pipelined) in [("pingpong", false), ("pipelined", true)] {
        let mut lives: Vec<Live> = all.iter().map(|&k| Live::start(k, p, pipelined)).collect();
        let mut run = |live: &mut Live, len: usize, iters: u64| -> Duration {
            if pipelined {
                live.pipelined(len, &mut back, iters)
            } else {
                live.pingpong(&out[..len], &mut back[..len], iters)
            }
        };
        for &len in PAYLOADS {
            // Chunk size: iterations the raw limit needs for CHUNK (after a warm-up).
            for live in lives.iter_mut() {
                run(live, len, 64);
            }
            let mut iters = 1u64;
            loop {
                let t = run(&mut lives[0], len, iters);
                if t >= CHUNK || iters >= 1 << 24 {
                    break;
                }
                iters *= 2;
            }
            for live in lives.iter_mut() {
                run(live, len, iters); // warm-up
            }
            // rates[round][server]: bytes/s.
            let n = all.len();
            let mut rates: Vec<Vec<f64>> = Vec::with_capacity(rounds);
            for r in 0..rounds {
                let mut row = vec![0f64; n];
                for k in 0..n {
                    let i = (k + r) % n;
                    let t = run(&mut lives[i], len, iters);
                    row[i] = (len as u64 * iters) as f64 / t.as_secs_f64();
                }
                rates.push(row);
            }
            let idx = |kind: Kind| all.iter().position(|&k| k == kind);
            let idx = |kind: Kind| idx(kind).expect("server");
            let baseline = all.iter().position(|&k| k == Kind::UdsimEventLoopBaseline);
            let splice = all.iter().position(|&k| k == Kind::UdsimSplice);
            let raw = idx(Kind::RawThread);
            let peers = [idx(Kind::StdThreads), idx(Kind::Tokio), idx(Kind::Monoio)];
            let mut servers = serde_json::Map::new();
            for (i, kind) in all.iter().enumerate() {
                let mut vs_raw: Vec<f64> =
                    (0..rounds).map(|r| rates[r][i] / rates[r][raw]).collect();
                let mut vs_peer: Vec<f64> = (0..rounds)
                    .map(|r| rates[r][i] / peers.iter().map(|&j| rates[r][j]).fold(0.0, f64::max))
                    .collect();
                let std = peers[0];
                let mut vs_std: Vec<f64> =
                    (0..rounds).map(|r| rates[r][i] / rates[r][std]).collect();
                let mut rate: Vec<f64> = rates.iter().map(|row| row[i]).collect();
                let mut entry = serde_json::json!({
                    "median_bytes_per_s": common::median(&mut rate),
                    "ratio_vs_raw": common::median(&mut vs_raw),
                    "ratio_vs_best_peer": common::median(&mut vs_peer),
                    "ratio_vs_std_threads": common::median(&mut vs_std),
                });
                if let Some(sp) = splice {
                    let mut vs_splice: Vec<f64> =
                        (0..rounds).map(|r| rates[r][i] / rates[r][sp]).collect();
                    entry["ratio_vs_splice"] = serde_json::json!(common::median(&mut vs_splice));
                }
                if let Some(b) = baseline {
                    let mut vs_base: Vec<f64> =
                        (0..rounds).map(|r| rates[r][i] / rates[r][b]).collect();
                    entry["ratio_vs_baseline"] = serde_json::json!(common::median(&mut vs_base));
                }
                servers.insert(kind.id().to_string(), entry);
            }
            cells.push(serde_json::json!({
                "mode": mode,
                "payload": label(len),
                "iters_per_chunk": iters,
                "servers": servers,
            }));
        }
        drop(lives);
    }
    let v = serde_json::json!({
        "placement": p.describe(),
        "written_unix": common::unix_now(),
        "rounds": rounds,
        "chunk_ms": CHUNK.as_secs_f64() * 1e3,
        "cells": cells,
    });
    common::write_side_file("udsim-meta/echo_interleaved.json", &v);
}

fn main() {
    common::maybe_run_peer();
    let placement = common::apply_placement();
    common::write_meta(
        "echo_throughput",
        GROUPS,
        &placement,
        serde_json::json!({ "payloads": PAYLOADS }),
    );
    let mut c = common::criterion();
    group(&mut c, &placement, GROUPS[0], false);
    group(&mut c, &placement, GROUPS[1], true);
    interleaved(&placement);
    c.final_summary();
    common::finish_meta("echo_throughput");
}
