use clap::{Parser, Subcommand};

/// udsim: an executable specification of Linux Unix-domain sockets, judged by the live kernel.
///
/// `check` and `explore` raise the soft limit on open descriptors (RLIMIT_NOFILE) to the hard limit at start.
#[derive(Debug, Parser)]
#[command(name = "udsim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scripts on the model and the kernel in lock-step and report the first disagreement.
    Check(udsim::cli::CheckArgs),
    /// Random call orderings through the checker, with statistics; shrinks any divergence.
    Explore(udsim::cli::ExploreArgs),
    /// Echo server over a Unix stream socket.
    Serve(udsim::echo::ServeArgs),
    /// Echo client: copies stdin to the socket, prints the echo.
    Client(udsim::echo::ClientArgs),
    /// What calibration measured on this host and kernel: the model's parameters.
    Params(udsim::cli::ParamsArgs),
    /// Every rule the model names, what it does, and the bundled scenarios that show it.
    Rules(udsim::cli::RulesArgs),
    /// Every call sequence up to a depth over a small universe, each distinct model state expanded once and
    /// every transition checked on the kernel.
    Enumerate(udsim::enumerate::EnumerateArgs),
    /// One socket's states and the calls between them, derived from the enumeration (dot, mermaid, svg).
    Diagram(udsim::diagram::DiagramArgs),
    /// The conformance report: one static HTML page (host, parameters, the call × state matrix per type, rules,
    /// diagrams) from the scenarios, an exploration and an enumeration run on this kernel.
    Report(udsim::report::ReportArgs),
    /// Run the echo (or other code) in the simulated world on the model; write its trace.
    Sim(udsim::sim::cli::SimArgs),
    /// The benchmark ratio table from criterion's saved estimates (run `cargo bench` first).
    BenchReport(udsim::bench_report::BenchReportArgs),
}

fn main() {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Check(_) | Command::Explore(_) | Command::Enumerate(_) | Command::Report(_)
    ) {
        // The soft limit on open descriptors up to the hard one, so long checks and explorations are not cut
        // short by a low default (`ulimit -n 1024`); the echo programs keep the limit they were given.
        raise_nofile();
    }
    let code = match cli.command {
        Command::Check(a) => udsim::cli::check(a),
        Command::Explore(a) => udsim::cli::explore_cmd(a),
        Command::Serve(a) => udsim::echo::run_serve(a),
        Command::Client(a) => udsim::echo::run_client(a),
        Command::BenchReport(a) => udsim::bench_report::run(a),
        Command::Enumerate(a) => udsim::enumerate::run(a),
        Command::Diagram(a) => udsim::diagram::run(a),
        Command::Params(a) => udsim::cli::params_cmd(a),
        Command::Rules(a) => udsim::cli::rules_cmd(a),
        Command::Sim(a) => udsim::sim::cli::run(a),
        Command::Report(a) => udsim::report::run(a),
    };
    std::process::exit(code);
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (best effort).
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
