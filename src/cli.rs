//! The `check` and `explore` subcommands.

use crate::check::{
    describe, recorded_script, transcript_line, CheckError, Checker, Options, Run, Stop,
};
use crate::explore::{explore, Stats};
use crate::script::{fmt_script, parse, Script};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Writes a line to stdout; a closed stdout (`udsim check | head -1`) ends the run quietly, with the exit
/// status of what was checked so far unknown: 0, as a reader that stopped reading asked for no more.
macro_rules! outln {
    ($($t:tt)*) => {{
        let mut o = std::io::stdout().lock();
        if writeln!(o, $($t)*).is_err() {
            std::process::exit(EXIT_OK);
        }
    }};
}

/// `print!` that ends quietly on a closed stdout.
macro_rules! out {
    ($($t:tt)*) => {{
        let mut o = std::io::stdout().lock();
        if write!(o, $($t)*).and_then(|()| o.flush()).is_err() {
            std::process::exit(EXIT_OK);
        }
    }};
}

/// A write to stdout that failed (a closed pipe) ends the run quietly.
fn quit_on_err(r: std::io::Result<()>) {
    if r.is_err() {
        std::process::exit(EXIT_OK);
    }
}

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_DIVERGED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Arguments of `udsim check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Scripts (.uds files, `-` for standard input) or directories of them. None: the bundled scenarios plus a
    /// short exploration.
    pub paths: Vec<PathBuf>,
    /// Print each script with the kernel's results written in (continues past a divergence; the header comment
    /// of the script is kept).
    #[arg(long)]
    pub record: bool,
    /// How many random scripts to explore after the scripts: 300 after the bundled scenarios (when no paths are
    /// given), none after scripts named on the command line unless asked for.
    #[arg(long)]
    pub explore_cases: Option<usize>,
    /// Print every bundled scenario's transcript, not only the failing ones (scripts named on the command line
    /// always print theirs).
    #[arg(long, short)]
    pub verbose: bool,
}

/// Arguments of `udsim explore`.
#[derive(Debug, Args)]
pub struct ExploreArgs {
    /// Seed of the random generator (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of scripts.
    #[arg(long, default_value_t = 1000)]
    pub cases: usize,
    /// Calls per script.
    #[arg(long, default_value_t = 40)]
    pub max_ops: usize,
    /// Where to write the minimal diverging script (default: `udsim-divergence-<seed>-<case>.uds`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("udsim: {msg}");
    EXIT_USAGE
}

/// The transcript of a run: each line with the kernel's outcome, then the divergence as comments.
pub fn transcript(run: &Run) -> String {
    let mut out = String::new();
    for st in &run.steps {
        out.push_str(&transcript_line(st));
        out.push('\n');
    }
    out.push_str(&describe(run));
    out
}

fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            files.push(p.clone());
            continue;
        }
        let meta =
            std::fs::metadata(p).map_err(|e| format!("cannot read {}: {}", p.display(), e))?;
        if meta.is_dir() {
            let mut v = Vec::new();
            walk_dir(p, &mut v)?;
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Every `.uds` file under `dir`, subdirectories included.
fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {}", dir.display(), e))?;
    for e in entries.flatten() {
        let path = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_dir(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "uds") {
            out.push(path);
        }
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    agree: usize,
    /// Agreed, but the model did not cover every line (those were checked against written results only).
    partial: usize,
    /// Not run: the script requires host parameters this kernel does not have.
    skipped: usize,
    diverge: usize,
    errors: usize,
}

impl Tally {
    fn code(&self) -> i32 {
        if self.errors > 0 {
            EXIT_USAGE
        } else if self.diverge > 0 {
            EXIT_DIVERGED
        } else {
            EXIT_OK
        }
    }
}

fn run_one(
    ck: &mut Checker,
    name: &str,
    text: &str,
    args: &CheckArgs,
    quiet: bool,
    t: &mut Tally,
) -> Result<(), CheckError> {
    let script = match parse(text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udsim: {name}: {e}");
            t.errors += 1;
            return Ok(());
        }
    };
    if script.lines.is_empty() {
        eprintln!("udsim: {name}: the script has no calls (only blank lines and comments)");
        t.errors += 1;
        return Ok(());
    }
    if let Some(why) = crate::check::unmet(ck.params(), &crate::check::requirements(text)) {
        t.skipped += 1;
        let mut out = std::io::stdout().lock();
        quit_on_err(writeln!(
            out,
            "# == {name}\n# skipped: the script requires {why}\n"
        ));
        return Ok(());
    }
    let run = ck.run(
        &script,
        Options {
            record: args.record,
        },
    )?;
    let mut out = std::io::stdout().lock();
    if args.record {
        if args.paths.len() != 1 || std::path::Path::new(&args.paths[0]).is_dir() {
            quit_on_err(writeln!(out, "# == {name}"));
        }
        // The script's header comment is kept, so `--record draft.uds > scenarios/x.uds` keeps its story.
        for l in text
            .lines()
            .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            quit_on_err(writeln!(out, "{l}"));
        }
        quit_on_err(write!(out, "{}", fmt_script(&recorded_script(&run))));
        quit_on_err(write!(out, "{}", describe(&run)));
    } else if !quiet || !run.agrees() {
        quit_on_err(writeln!(out, "# == {name}"));
        quit_on_err(write!(out, "{}", transcript(&run)));
    }
    match &run.stop {
        None if run.unmodelled.is_some() => {
            t.partial += 1;
            if !args.record {
                if quiet {
                    quit_on_err(writeln!(out, "# == {name}"));
                    quit_on_err(write!(out, "{}", transcript(&run)));
                }
                let _ = writeln!(
                    out,
                    "# partly modelled: {} lines agree with their written results\n",
                    run.steps.len()
                );
            }
        }
        None => {
            t.agree += 1;
            if quiet && !args.record {
                quit_on_err(writeln!(out, "# ok   {name} ({} lines)", run.steps.len()));
            } else if !args.record {
                quit_on_err(writeln!(out, "# ok: {} lines agree\n", run.steps.len()));
            }
        }
        Some(Stop::Divergence(_)) => {
            t.diverge += 1;
            let _ = writeln!(out);
        }
        Some(Stop::ScriptError { line_no, msg }) => {
            t.errors += 1;
            eprintln!("udsim: {name}: line {line_no}: {msg}");
        }
    }
    Ok(())
}

/// A script file's text; `-` is standard input.
fn read_script(f: &Path) -> std::io::Result<String> {
    if f.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(f)
    }
}

/// `udsim check`.
pub fn check(args: CheckArgs) -> i32 {
    let mut ck = match Checker::new() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut t = Tally::default();
    let res = if args.paths.is_empty() {
        check_bundled(&mut ck, &args, &mut t)
    } else {
        let files = match collect(&args.paths) {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        // Zero scripts checked is no success: a CI job pointed at the wrong directory must not go green.
        if files.is_empty() {
            return fail(format!(
                "no .uds scripts found in {}",
                args.paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if args.verbose {
            eprintln!(
                "udsim: -v changes nothing here: scripts named on the command line always print their transcripts"
            );
        }
        if files.len() > 1 && !args.record {
            outln!("# checking {} scripts", files.len());
        }
        files
            .iter()
            .try_for_each(|f| match read_script(f) {
                Ok(text) => run_one(
                    &mut ck,
                    &f.display().to_string(),
                    &text,
                    &args,
                    false,
                    &mut t,
                ),
                Err(e) => {
                    eprintln!("udsim: cannot read {}: {e}", f.display());
                    t.errors += 1;
                    Ok(())
                }
            })
            .and_then(|()| explore_after(&mut ck, &args, &mut t, args.explore_cases.unwrap_or(0)))
    };
    if let Err(e) = res {
        eprintln!("udsim: {e}");
        return EXIT_DIVERGED;
    }
    if !args.record {
        let partial = if t.partial > 0 {
            format!(
                ", {} partly modelled (past the model's coverage only written results were checked)",
                t.partial
            )
        } else {
            String::new()
        };
        let skipped = if t.skipped > 0 {
            format!(
                ", {} skipped (they require other kernel parameters)",
                t.skipped
            )
        } else {
            String::new()
        };
        outln!(
            "# {} scripts: {} agree{partial}{skipped}, {} diverge, {} with script errors",
            t.agree + t.partial + t.skipped + t.diverge + t.errors,
            t.agree,
            t.diverge,
            t.errors
        );
    }
    t.code()
}

fn check_bundled(ck: &mut Checker, args: &CheckArgs, t: &mut Tally) -> Result<(), CheckError> {
    for (name, text) in crate::scenarios::SCENARIOS {
        run_one(
            ck,
            &format!("scenarios/{name}"),
            text,
            args,
            !args.verbose,
            t,
        )?;
    }
    explore_after(ck, args, t, args.explore_cases.unwrap_or(300))
}

/// The exploration part of `udsim check`: `cases` random scripts, counted in the tally.
fn explore_after(
    ck: &mut Checker,
    args: &CheckArgs,
    t: &mut Tally,
    cases: usize,
) -> Result<(), CheckError> {
    if cases == 0 || args.record {
        return Ok(());
    }
    let seed = clock_seed();
    outln!("exploring {} random scripts (seed {seed})", cases);
    let mut stats = Stats::default();
    let found = explore(ck, seed, cases, 40, &mut stats, |_| {})?;
    out!("{}", stats.report());
    match found {
        None => t.agree += stats.cases,
        Some(f) => {
            t.agree += stats.cases - 1;
            t.diverge += 1;
            report_found(ck, seed, &f.script, f.case, None)?;
        }
    }
    Ok(())
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Shrinks a diverging script, writes it to a file and prints it with its divergence.
fn report_found(
    ck: &mut Checker,
    seed: u64,
    script: &Script,
    case: usize,
    out: Option<&Path>,
) -> Result<(), CheckError> {
    eprintln!("divergence in case {case} (seed {seed}); shrinking…");
    let min = crate::shrink::shrink(ck, script)?.unwrap_or_else(|| script.clone());
    let run = ck.run(&min, Options::default())?;
    let default = PathBuf::from(format!("udsim-divergence-{seed}-{case}.uds"));
    let path = out.unwrap_or(&default);
    let text = format!(
        "# minimal script: model and kernel disagree (udsim explore --seed {seed}, case {case})\n{}",
        fmt_script(&min)
    );
    match std::fs::write(path, &text) {
        Ok(()) => outln!("minimal script written to {}", path.display()),
        Err(e) => eprintln!("udsim: cannot write {}: {e}", path.display()),
    }
    outln!("{}", transcript(&run));
    Ok(())
}

/// `udsim explore`.
pub fn explore_cmd(args: ExploreArgs) -> i32 {
    let mut ck = match Checker::new() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let seed = args.seed.unwrap_or_else(clock_seed);
    outln!(
        "udsim explore: {} scripts of up to {} calls, seed {seed}",
        args.cases,
        args.max_ops
    );
    let tty = std::io::stderr().is_terminal();
    let start = std::time::Instant::now();
    let mut stats = Stats::default();
    let cases = args.cases;
    let found = explore(&mut ck, seed, cases, args.max_ops, &mut stats, |done| {
        if tty && (done % 20 == 0 || done == cases) {
            let width = 40;
            let filled = done * width / cases.max(1);
            eprint!(
                "\r[{}{}] {done}/{cases}",
                "=".repeat(filled),
                " ".repeat(width - filled)
            );
            if done == cases {
                eprintln!();
            }
        }
    });
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            eprintln!("udsim: {e}");
            return EXIT_DIVERGED;
        }
    };
    let secs = start.elapsed().as_secs_f64();
    out!("{}", stats.report());
    outln!(
        "{:.1} s, {:.0} ops/s through model + kernel",
        secs,
        stats.ops as f64 / secs.max(1e-9)
    );
    match found {
        None => {
            outln!("no divergence");
            EXIT_OK
        }
        Some(f) => {
            if tty {
                eprintln!();
            }
            if let Err(e) = report_found(&mut ck, seed, &f.script, f.case, args.out.as_deref()) {
                eprintln!("udsim: {e}");
            }
            EXIT_DIVERGED
        }
    }
}

/// `udsim params`: the calibrated host parameters, one per line (`name value`), as `# requires:` lines name them.
pub fn params_cmd() -> i32 {
    match crate::kernel::calibrate::params() {
        Ok(p) => {
            let mut out = std::io::stdout().lock();
            for (k, v) in p.named() {
                if writeln!(out, "{k} {v}").is_err() {
                    break;
                }
            }
            EXIT_OK
        }
        Err(e) => fail(format!("cannot calibrate the model on this kernel: {e}")),
    }
}
