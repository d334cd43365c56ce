//! `udsim sim echo`: the seed's echo in the simulated world, with a summary and the trace.

use super::echo::{check_invariants, simulate, ClientPlan, End, Workload};
use crate::cli::{EXIT_DIVERGED, EXIT_OK, EXIT_USAGE};
use crate::model::Params;
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

/// Arguments of `udsim sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    pub what: SimWhat,
}

/// What to simulate.
#[derive(Debug, Subcommand)]
pub enum SimWhat {
    /// The echo server (the event loop's connection work and relay) and N clients that behave
    /// as `udsim client`, on the model; exit 0 when every client got its echo exactly.
    Echo(EchoArgs),
}

/// Arguments of `udsim sim echo`.
#[derive(Debug, Args)]
#[command(
    after_help = "The trace is a script: `udsim check FILE` replays it on the kernel, \
which must give every result the simulation recorded. Exit status: 0 every client got its echo \
exactly; 1 an echo invariant failed; 2 usage, or the simulation could not run."
)]
pub struct EchoArgs {
    /// Number of clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub clients: u32,
    /// The scheduler's seed: one seed is one interleaving.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bytes each client sends.
    #[arg(long, default_value_t = 100_000)]
    pub bytes: usize,
    /// The server's per-connection buffer bound (as `udsim serve --buffer-size`).
    #[arg(long, default_value_t = crate::echo::DEFAULT_BUFFER,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=(1 << 30)))]
    pub buffer_size: usize,
    /// Write the trace (every call with the model's result) to FILE.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Use a recorded host's parameters (`linux-6.18-host`, ...) instead of calibrating on this
    /// kernel (a trace made so agrees with the kernel only on that host).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
}

pub fn run(args: SimArgs) -> i32 {
    match args.what {
        SimWhat::Echo(a) => echo(a),
    }
}

fn echo(a: EchoArgs) -> i32 {
    let (params, origin) = match &a.preset {
        Some(name) => match Params::preset(name) {
            Some(p) => (p, format!("preset {name}")),
            None => {
                eprintln!("udsim: no preset named {name:?}");
                return EXIT_USAGE;
            }
        },
        None => match crate::kernel::calibrate::params() {
            Ok(p) => (p, "calibrated on this kernel".to_string()),
            Err(e) => {
                eprintln!("udsim: cannot calibrate the model on this kernel: {e}");
                return EXIT_USAGE;
            }
        },
    };
    let w = Workload {
        clients: (0..a.clients).map(|_| ClientPlan::plain(a.bytes)).collect(),
        buffer: a.buffer_size,
        seed: a.seed,
    };
    let run = match simulate(params, &w, a.trace.is_some()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("udsim: the simulation stopped: {e}");
            return EXIT_USAGE;
        }
    };
    let verdict = check_invariants(&w, &run);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# simulated echo: {} clients x {} bytes, server buffer {} bytes, seed {}, parameters {origin}",
        a.clients, a.bytes, a.buffer_size, a.seed
    );
    let sent: usize = run.clients.iter().map(|c| c.sent).sum();
    let got: usize = run.clients.iter().map(|c| c.received.len()).sum();
    let _ = writeln!(
        out,
        "# {} calls in {} scheduler steps; {sent} bytes sent, {got} echoed",
        run.stats.calls, run.stats.steps
    );
    for (i, c) in run.clients.iter().enumerate() {
        let end = match c.end {
            End::Eof => "end of stream".to_string(),
            End::Reset => "reset".to_string(),
            End::Aborted => "aborted".to_string(),
            End::Failed(e) => format!("failed: {e}"),
        };
        let _ = writeln!(
            out,
            "# client {i}: sent {}, received {}, {end}",
            c.sent,
            c.received.len()
        );
    }
    match &verdict {
        Ok(()) => out.push_str("# every client got its echo exactly, in order\n"),
        Err(e) => {
            let _ = writeln!(out, "# ECHO INVARIANT FAILED: {e}");
        }
    }
    if let Some(path) = &a.trace {
        let text = format!(
            "# udsim sim echo --clients {} --seed {} --bytes {} --buffer-size {}: the trace (parameters {origin})\n{}",
            a.clients, a.seed, a.bytes, a.buffer_size, run.trace_text
        );
        if let Err(e) = std::fs::write(path, &text) {
            eprintln!("udsim: cannot write the trace to {}: {e}", path.display());
            return EXIT_USAGE;
        }
        let _ = writeln!(
            out,
            "# trace: {} ({} lines); replay it on the kernel with: udsim check {}",
            path.display(),
            run.trace.lines.len(),
            path.display()
        );
    }
    // A closed stdout ends quietly.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    if verdict.is_ok() {
        EXIT_OK
    } else {
        EXIT_DIVERGED
    }
}
