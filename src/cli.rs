//! The `check` and `explore` subcommands.

mod bless;
pub(crate) mod report;

use crate::check::{
    describe, recorded_script, run_ordered, transcript_line, CheckError, Checker, Options, Run,
    Stop,
};
use crate::explore::{explore_plan, Plan, Stats};
use crate::script::{fmt_script, parse};
use clap::{Args, ValueEnum};
use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// A closed stdout (`udsim check | head -1`) ends a run quietly, with the exit status of what was checked so
// far unknown: 0, as a reader that stopped reading asked for no more. The run stops and returns (rather than
// calling process::exit), so the executors' private directories are removed.

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_DIVERGED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// How results are printed on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Transcripts and a summary line, for people (the default).
    #[default]
    Text,
    /// JSON Lines: one object per script, then one summary object (see `udsim check --help`).
    Json,
}

/// `--jobs N`: a whole number from 1 up.
fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("the number of jobs must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "`{s}` is not a number of jobs (a whole number from 1 up)"
        )),
    }
}

/// `--duration`: a number of seconds or minutes: `90s`, `1.5m`, `60` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let scale = match unit.trim() {
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        _ => {
            return Err(format!(
                "`{s}` is not a duration: write seconds or minutes, e.g. 90s, 1.5m or 60 (seconds)"
            ))
        }
    };
    let v: f64 = num.parse().map_err(|_| {
        format!("`{s}` is not a duration: write seconds or minutes, e.g. 90s, 1.5m or 60 (seconds)")
    })?;
    let secs = v * scale;
    if secs <= 0.0 {
        return Err(format!("`{s}`: the duration must be more than 0"));
    }
    // About 30 years: anything longer is a typo, and the deadline must fit an Instant.
    if secs > 1e9 {
        return Err(format!("`{s}`: the duration is too long"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

const CHECK_HELP: &str = "\
Arguments: an argument that exists on disk, is `-`, contains a `/` or ends in `.uds` is a PATH (a missing
one is an error); any other word is a FILTER that selects the bundled scenarios whose file name contains it
(ignoring case; one that selects none is an error; `udsim check --list WORD` shows what it selects). So
`udsim check backlog` runs the bundled backlog scenarios, `udsim check ./backlog` the file or directory
`backlog`. With no arguments: every bundled scenario, then a short exploration.

Output: `--format text` (the default) prints transcripts and a summary line. `--format json` prints JSON
Lines on stdout: one object per script, in order, with \"type\": \"script\", \"path\", \"verdict\" (agree,
diverge, partly-modelled, skipped, error), \"lines\" (lines run), and for a divergence \"divergence\":
{\"line\", \"call\", \"kernel\", \"model_allowed\", \"rule\", \"written\", …}; then one object with
\"type\": \"summary\", \"counts\" per verdict (as the text summary counts them, explored scripts included),
\"exploration\" (its statistics, when one ran) and \"exit_code\". `--junit FILE` also writes JUnit XML, one
<testcase> per script. `-q` prints only failures and the summary (in either format).

Exit status: 0 when model and kernel agree everywhere, 1 on a divergence, 2 on a usage, script or environment error
(the executor could not run, or the host changed under the run).";

/// Arguments of `udsim check`.
#[derive(Debug, Args)]
#[command(after_long_help = CHECK_HELP)]
pub struct CheckArgs {
    /// Scripts (.uds files, `-` for standard input), directories of them, or name filters for the bundled
    /// scenarios (`--help` says how they are told apart). None: the bundled scenarios plus a short
    /// exploration.
    #[arg(value_name = "PATH|FILTER")]
    pub paths: Vec<PathBuf>,
    /// Print each script with the kernel's results written in (continues past a divergence; the header comment
    /// of the script is kept).
    #[arg(long, conflicts_with_all = ["bless", "junit", "quiet"])]
    pub record: bool,
    /// Rewrite each script FILE named (or found in a directory named) in place with the kernel's results
    /// written in where its written result is wrong or missing, keeping every comment and every line that
    /// holds; then check the rewritten file. Atomic (a temporary file in the same directory, renamed over
    /// it); never standard input or the bundled scenarios. Says on stderr which files were rewritten.
    #[arg(long)]
    pub bless: bool,
    /// How many random scripts to explore after the scripts: 300 after the bundled scenarios (when no paths are
    /// given), none after scripts named on the command line unless asked for.
    #[arg(long)]
    pub explore_cases: Option<usize>,
    /// Seed of the exploration's random generator (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print every bundled scenario's transcript, not only the failing ones (scripts named on the command line
    /// always print theirs).
    #[arg(long, short, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only failures (divergences, script errors) and the summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write a JUnit XML report to FILE: one `testcase` per script (classname: its directory, name: its
    /// file name) and one for the exploration; `failure` for a divergence, `error` for a script error,
    /// `skipped` for a skipped script.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// List the bundled scenarios (name and the first line of the header comment), or those the FILTER words
    /// select; check nothing.
    #[arg(long, conflicts_with_all = ["record", "bless", "junit", "explore_cases", "seed", "verbose", "quiet", "jobs"])]
    pub list: bool,
    /// Scripts checked at once, each thread with its own executor and descriptor table (default: the number
    /// of CPUs; one where scripts cannot have network namespaces or descriptor tables of their own).
    /// Output, verdicts and statistics are the same whatever N.
    #[arg(long, short, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,
}

/// Arguments of `udsim explore`.
#[derive(Debug, Args)]
pub struct ExploreArgs {
    /// Seed of the random generator (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of scripts [default: 1000; with --duration: as many as fit, or at most N if given].
    #[arg(long)]
    pub cases: Option<usize>,
    /// Run until this much time is up instead of a fixed number of scripts: seconds or minutes, e.g. 90s,
    /// 1.5m, 60 (seconds). The scripts run are always cases 0..n of the seed.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Calls per script.
    #[arg(long, default_value_t = 40)]
    pub max_ops: usize,
    /// What the scripts are made of: `all` (every call of the language) or `rights` (half the steps send and
    /// receive descriptors and credentials, close names and release sockets, so cycles in flight and the
    /// collector are reached often).
    #[arg(long, value_enum, default_value_t = crate::gen::Mix::All)]
    pub mix: crate::gen::Mix,
    /// Where to write the minimal diverging script (default: `udsim-divergence-<seed>-<case>.uds`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Scripts run at once (default: the number of CPUs, as for `udsim check`). Case i's script depends only
    /// on the seed and i, so the statistics for a given seed and --cases are the same whatever N.
    #[arg(long, short, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Output format on stdout: `json` prints one summary object (statistics, speed, any divergence).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
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

/// One script to check: its name as printed, its text (or why it could not be read), and the file it came
/// from (`None` for standard input and the bundled scenarios).
struct Item {
    name: String,
    text: Result<Cow<'static, str>, String>,
    file: Option<PathBuf>,
}

/// Whether a command-line argument names a path (else it is a filter on the bundled scenarios' names).
fn names_a_path(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let b = p.as_os_str().as_bytes();
    b == b"-"
        || std::fs::symlink_metadata(p).is_ok()
        || b.contains(&b'/')
        || b.ends_with(b".uds")
        || p.to_str().is_none()
}

/// Whether the bundled scenario `name` is selected by the filter `word` (substring, ignoring ASCII case).
fn selects(word: &str, name: &str) -> bool {
    name.to_ascii_lowercase()
        .contains(&word.to_ascii_lowercase())
}

const BUNDLED: &str = "the bundled scenarios";

fn no_match(word: &str) -> String {
    format!(
        "no file or directory `{word}`, and no bundled scenario's name contains `{word}` (`udsim check --list` lists them)"
    )
}

/// The scripts the command line names, in order.
fn collect_items(args: &CheckArgs) -> Result<Vec<Item>, String> {
    if args.paths.is_empty() {
        if args.bless {
            return Err(
                "--bless rewrites script files in place: name them (it never rewrites the bundled scenarios or standard input unasked)"
                    .into(),
            );
        }
        return Ok(crate::scenarios::SCENARIOS
            .iter()
            .map(|(n, t)| Item {
                name: format!("scenarios/{n}"),
                text: Ok(Cow::Borrowed(*t)),
                file: None,
            })
            .collect());
    }
    let mut items = Vec::new();
    let mut picked = std::collections::HashSet::new();
    let mut blessed = std::collections::HashSet::new();
    let mut file = |p: PathBuf, items: &mut Vec<Item>| {
        if args.bless {
            // The same file twice (named and found in a directory) is rewritten once.
            let key = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            if !blessed.insert(key) {
                return;
            }
        }
        items.push(Item {
            name: p.display().to_string(),
            text: std::fs::read_to_string(&p)
                .map(Cow::Owned)
                .map_err(|e| format!("cannot read {}: {e}", p.display())),
            file: Some(p),
        });
    };
    for p in &args.paths {
        if p.as_os_str() == "-" {
            if args.bless {
                return Err(
                    "--bless cannot rewrite standard input (`-`): name the file (or use --record to print the recorded script)"
                        .into(),
                );
            }
            let mut s = String::new();
            let text = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map(|_| Cow::Owned(s))
                .map_err(|e| format!("cannot read -: {e}"));
            items.push(Item {
                name: "-".into(),
                text,
                file: None,
            });
        } else if names_a_path(p) {
            let meta =
                std::fs::metadata(p).map_err(|e| format!("cannot read {}: {}", p.display(), e))?;
            if meta.is_dir() {
                let mut v = Vec::new();
                walk_dir(p, &mut v)?;
                v.sort();
                for f in v {
                    file(f, &mut items);
                }
            } else {
                file(p.clone(), &mut items);
            }
        } else {
            let word = p.to_string_lossy();
            if args.bless {
                return Err(format!(
                    "--bless never rewrites {BUNDLED} (`{word}` names no file, so it is a filter on their names): name the file, e.g. scenarios/NAME.uds"
                ));
            }
            let mut any = false;
            for (n, t) in crate::scenarios::SCENARIOS {
                if selects(&word, n) {
                    any = true;
                    if picked.insert(*n) {
                        items.push(Item {
                            name: format!("scenarios/{n}"),
                            text: Ok(Cow::Borrowed(*t)),
                            file: None,
                        });
                    }
                }
            }
            if !any {
                return Err(no_match(&word));
            }
        }
    }
    // Zero scripts checked is no success: a CI job pointed at the wrong directory must not go green.
    if items.is_empty() {
        return Err(format!(
            "no .uds scripts found in {}",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(items)
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

/// What became of one script, as the summary counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Agree,
    /// Agreed, but the model did not cover every line (those were checked against written results only).
    PartlyModelled,
    /// Not run: the script requires host parameters this kernel does not have.
    Skipped,
    Diverge,
    /// The script could not be read or parsed, has no calls, or names a socket no line created.
    Error,
}

impl Verdict {
    /// The name in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Agree => "agree",
            Verdict::PartlyModelled => "partly-modelled",
            Verdict::Skipped => "skipped",
            Verdict::Diverge => "diverge",
            Verdict::Error => "error",
        }
    }

    fn is_failure(self) -> bool {
        matches!(self, Verdict::Diverge | Verdict::Error)
    }
}

/// One script's result, made by the thread that checked it and printed in order by the main thread.
pub struct Report {
    name: String,
    verdict: Verdict,
    /// What `--format text` prints on stdout for it (as it always has).
    text: String,
    /// Lines for stderr.
    errs: Vec<String>,
    run: Option<Run>,
    /// Where in `text` the run's transcript goes (it is written out only as it is printed: a long script's
    /// transcript is never held whole).
    transcript_at: Option<usize>,
    /// The text that ran, when it is not the script's own (`--bless` checks the rewritten text).
    source: Option<String>,
    /// Why it was skipped, or its error.
    reason: Option<String>,
    secs: f64,
    /// With `--bless`: how many lines were rewritten.
    blessed: Option<usize>,
}

impl Report {
    fn error(name: &str, reason: String) -> Report {
        Report {
            name: name.to_string(),
            verdict: Verdict::Error,
            text: String::new(),
            errs: vec![format!("udsim: {reason}")],
            run: None,
            transcript_at: None,
            source: None,
            reason: Some(reason),
            secs: 0.0,
            blessed: None,
        }
    }

    /// Writes the transcript of its run (the lines as they ran, then how the run ended); `text` is the
    /// script's text. Nothing if it did not run.
    fn write_transcript(&self, text: &str, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        if run.lean {
            let text = self.source.as_deref().unwrap_or(text);
            crate::check::write_lean_transcript(run, text, out)?;
            out.write_all(describe(run).as_bytes())
        } else {
            out.write_all(transcript(run).as_bytes())
        }
    }

    /// The transcript of its run, if it ran.
    fn transcript(&self, text: &str) -> Option<String> {
        let mut v = Vec::new();
        self.run.as_ref()?;
        self.write_transcript(text, &mut v).ok()?;
        Some(
            String::from_utf8(v)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        )
    }
}

#[derive(Default)]
pub struct Tally {
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

    fn total(&self) -> usize {
        self.agree + self.partial + self.skipped + self.diverge + self.errors
    }

    fn count(&mut self, v: Verdict) {
        match v {
            Verdict::Agree => self.agree += 1,
            Verdict::PartlyModelled => self.partial += 1,
            Verdict::Skipped => self.skipped += 1,
            Verdict::Diverge => self.diverge += 1,
            Verdict::Error => self.errors += 1,
        }
    }
}

/// How scripts are checked and their text output laid out.
#[derive(Clone, Copy)]
struct Ctx {
    record: bool,
    bless: bool,
    /// Bundled scenarios without `-v`: a one-line `# ok` for those that agree.
    brief: bool,
    /// `--record` prints `# == NAME` before each script (more than one script may be printed).
    record_header: bool,
}

/// Checks one script.
fn evaluate(ck: &mut Checker, item: &Item, cx: &Ctx) -> Result<Report, CheckError> {
    let start = Instant::now();
    let mut r = match &item.text {
        Err(e) => Report::error(&item.name, e.clone()),
        Ok(text) if cx.bless => bless_one(ck, item, text, cx)?,
        Ok(text) => evaluate_text(ck, &item.name, text, cx)?,
    };
    r.secs = start.elapsed().as_secs_f64();
    Ok(r)
}

/// Checks one script's text; `text` is what `--format text` has always printed for it. Except with
/// `--record`, the text is parsed twice, a line at a time (first to find any error before anything runs,
/// then to run it), and the run is lean: a long script is checked in memory that does not grow with it.
fn evaluate_text(ck: &mut Checker, name: &str, text: &str, cx: &Ctx) -> Result<Report, CheckError> {
    use std::fmt::Write as _;
    let mut calls = 0usize;
    for line in crate::script::lines(text) {
        if let Err(e) = line {
            return Ok(Report::error(name, format!("{name}: {e}")));
        }
        calls += 1;
    }
    if calls == 0 {
        return Ok(Report::error(
            name,
            format!("{name}: the script has no calls (only blank lines and comments)"),
        ));
    }
    let mut r = Report {
        name: name.to_string(),
        verdict: Verdict::Agree,
        text: String::new(),
        errs: Vec::new(),
        run: None,
        transcript_at: None,
        source: None,
        reason: None,
        secs: 0.0,
        blessed: None,
    };
    if let Some(why) = crate::check::unmet(ck.params(), &crate::check::requirements(text)) {
        r.verdict = Verdict::Skipped;
        r.text = format!("# == {name}\n# skipped: the script requires {why}\n\n");
        r.reason = Some(format!("the script requires {why}"));
        return Ok(r);
    }
    let run = if cx.record {
        let script = match parse(text) {
            Ok(s) => s,
            Err(e) => return Ok(Report::error(name, format!("{name}: {e}"))),
        };
        ck.run(&script, Options::recording())?
    } else {
        let lines = crate::script::lines(text).map_while(Result::ok);
        ck.run_lines(
            lines,
            Options {
                record: false,
                lean: true,
            },
        )?
    };
    let out = &mut r.text;
    if cx.record {
        if cx.record_header {
            let _ = writeln!(out, "# == {name}");
        }
        // The script's header comment is kept, so `--record draft.uds > scenarios/x.uds` keeps its story.
        for l in text
            .lines()
            .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            let _ = writeln!(out, "{l}");
        }
        out.push_str(&fmt_script(&recorded_script(&run)));
        out.push_str(&describe(&run));
    }
    if !cx.record && (!cx.brief || !run.agrees()) {
        let _ = writeln!(out, "# == {name}");
        r.transcript_at = Some(out.len());
    }
    match &run.stop {
        None if run.unmodelled.is_some() => {
            r.verdict = Verdict::PartlyModelled;
            if !cx.record {
                if cx.brief {
                    let _ = writeln!(out, "# == {name}");
                    r.transcript_at = Some(out.len());
                }
                let _ = writeln!(
                    out,
                    "# partly modelled: {} lines agree with their written results\n",
                    run.lines
                );
            }
        }
        None => {
            r.verdict = Verdict::Agree;
            if cx.brief && !cx.record {
                let _ = writeln!(out, "# ok   {name} ({} lines)", run.lines);
            } else if !cx.record {
                let _ = writeln!(out, "# ok: {} lines agree\n", run.lines);
            }
        }
        Some(Stop::Divergence(_)) => {
            r.verdict = Verdict::Diverge;
            out.push('\n');
        }
        Some(Stop::ScriptError { line_no, msg }) => {
            r.verdict = Verdict::Error;
            r.reason = Some(format!("line {line_no}: {msg}"));
            r.errs.push(format!("udsim: {name}: line {line_no}: {msg}"));
        }
    }
    r.run = Some(run);
    Ok(r)
}

/// `--bless` on one file: record its run, rewrite the lines whose written result the kernel does not
/// satisfy, write the file atomically, and check the rewritten text. A script that does not parse, has no
/// calls, is skipped here or stops on a script error is left as it is and reported as checking it would be.
fn bless_one(ck: &mut Checker, item: &Item, text: &str, cx: &Ctx) -> Result<Report, CheckError> {
    let name = &item.name;
    let Some(path) = &item.file else {
        return Ok(Report::error(
            name,
            format!("{name}: --bless rewrites files only"),
        ));
    };
    let check = Ctx {
        bless: false,
        ..*cx
    };
    let not_blessed = |mut r: Report| {
        r.errs
            .push(format!("udsim: {name}: not rewritten (--bless)"));
        Ok(r)
    };
    let script = match parse(text) {
        Ok(s) if !s.lines.is_empty() => s,
        _ => return not_blessed(evaluate_text(ck, name, text, &check)?),
    };
    if crate::check::unmet(ck.params(), &crate::check::requirements(text)).is_some() {
        return not_blessed(evaluate_text(ck, name, text, &check)?);
    }
    let rec = ck.run(&script, Options::recording())?;
    if matches!(rec.stop, Some(Stop::ScriptError { .. })) {
        return not_blessed(evaluate_text(ck, name, text, &check)?);
    }
    let (new, n) = bless::rewrite(text, &rec);
    let note = if n == 0 {
        format!("udsim: {name}: every written result holds; not rewritten")
    } else {
        // Written in, a result can make a later line wrong (a name the line no longer creates).
        if let Err(e) = parse(&new) {
            return Ok(Report::error(
                name,
                format!("{name}: not rewritten: with the kernel's results written in, {e}"),
            ));
        }
        if let Err(e) = bless::write_atomic(path, &new) {
            return Ok(Report::error(
                name,
                format!("cannot rewrite {}: {e}", path.display()),
            ));
        }
        let s = if n == 1 { "" } else { "s" };
        format!("udsim: blessed {name}: {n} line{s} rewritten with the kernel's results")
    };
    let mut r = evaluate_text(ck, name, &new, &check)?;
    r.source = Some(new);
    r.errs.insert(0, note);
    r.blessed = Some(n);
    Ok(r)
}

/// Prints results in order, counts them and keeps what `--junit` needs.
struct Sink {
    format: Format,
    quiet: bool,
    tally: Tally,
    junit: Option<Vec<report::Case>>,
    /// Stdout was closed by its reader: stop quietly.
    closed: bool,
}

impl Sink {
    fn text(&self) -> bool {
        self.format == Format::Text
    }

    /// Writes to stdout; false once stdout is closed.
    fn put(&mut self, s: &str) -> bool {
        if !self.closed && !s.is_empty() {
            let mut o = std::io::stdout().lock();
            if o.write_all(s.as_bytes()).and_then(|()| o.flush()).is_err() {
                self.closed = true;
            }
        }
        !self.closed
    }

    /// Writes `head`, the transcript of `r`'s run (`text`: the script's text) and `tail` to stdout, the
    /// transcript a line at a time; false once stdout is closed.
    fn stream(&mut self, head: &str, r: &Report, text: &str, tail: &str) -> bool {
        if !self.closed {
            let mut o = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
            let written = o
                .write_all(head.as_bytes())
                .and_then(|()| r.write_transcript(text, &mut o))
                .and_then(|()| o.write_all(tail.as_bytes()))
                .and_then(|()| o.flush());
            self.closed = written.is_err();
        }
        !self.closed
    }

    /// One JSON line, serialised straight to stdout (a long transcript is not copied again).
    fn json(&mut self, v: &serde_json::Value) -> bool {
        if !self.closed {
            let mut o = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
            let written = serde_json::to_writer(&mut o, v)
                .map_err(std::io::Error::from)
                .and_then(|()| o.write_all(b"\n"))
                .and_then(|()| o.flush());
            self.closed = written.is_err();
        }
        !self.closed
    }

    /// One script's report (`text`: the script's text); false once stdout is closed.
    fn script(&mut self, r: Report, text: &str) -> bool {
        self.tally.count(r.verdict);
        let shown = !self.quiet || r.verdict.is_failure();
        match self.format {
            // `-q`: the transcript of a failure.
            Format::Text if self.quiet => match r.verdict {
                Verdict::Diverge if r.run.is_some() => {
                    self.stream(&format!("# == {}\n", r.name), &r, text, "\n");
                }
                Verdict::Error if r.run.is_some() => {
                    self.stream(&format!("# == {}\n", r.name), &r, text, "");
                }
                _ => {}
            },
            Format::Text => match r.transcript_at {
                Some(at) => {
                    let (head, tail) = r.text.split_at(at.min(r.text.len()));
                    self.stream(head, &r, text, tail);
                }
                None => {
                    self.put(&r.text);
                }
            },
            Format::Json if shown => {
                let t = r.transcript(text);
                self.json(&report::script_json(&r, t));
            }
            Format::Json => {}
        }
        let mut e = std::io::stderr().lock();
        for l in &r.errs {
            let _ = writeln!(e, "{l}");
        }
        if let Some(cases) = &mut self.junit {
            let t = r.transcript(text);
            cases.push(report::case_of(&r, t));
        }
        !self.closed
    }
}

/// How many threads check scripts: `asked`, or the number of CPUs, at most `work`, and only as many as can
/// run at once without changing a result: each thread beside the calling one needs a descriptor table of its
/// own (see `kernel::private_fd_table`; it also gives each its own RLIMIT_NOFILE budget) and, where the
/// process cannot make network namespaces, scripts would share the host's abstract names.
fn resolve_jobs(asked: Option<usize>, work: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let want = asked.unwrap_or(cpus).min(work.max(1));
    if want <= 1 {
        return 1;
    }
    let why = if !crate::kernel::thread_isolated() {
        "scripts here share the host's network namespace, so their abstract names would collide"
    } else if !crate::kernel::private_fd_tables_work() {
        "this kernel gives threads no descriptor tables of their own (close_range with CLOSE_RANGE_UNSHARE), so scripts would see each other's descriptors"
    } else {
        return want;
    };
    if asked.is_some() {
        eprintln!("udsim: running one script at a time, not {want}: {why}");
    }
    1
}

/// `udsim check --list`.
fn list(args: &CheckArgs) -> i32 {
    let words: Vec<String> = args
        .paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for w in &words {
        if !crate::scenarios::SCENARIOS
            .iter()
            .any(|(n, _)| selects(w, n))
        {
            return fail(no_match(w));
        }
    }
    let mut o = std::io::stdout().lock();
    for (n, t) in crate::scenarios::SCENARIOS {
        if !words.is_empty() && !words.iter().any(|w| selects(w, n)) {
            continue;
        }
        let title = t
            .lines()
            .map_while(|l| l.trim_start().strip_prefix('#'))
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        let line = match args.format {
            Format::Text if title.is_empty() => format!("{n}\n"),
            Format::Text => format!("{n}  {title}\n"),
            Format::Json => report::line(&serde_json::json!({
                "type": "scenario",
                "name": n,
                "title": title,
            })),
        };
        if o.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    EXIT_OK
}

/// `udsim check`.
pub fn check(args: CheckArgs) -> i32 {
    if args.list {
        return list(&args);
    }
    if args.record && args.format == Format::Json {
        return fail(
            "--record prints scripts, not reports: it does not combine with --format json",
        );
    }
    let items = match collect_items(&args) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    // The report file is made (and so its path proved writable) before anything runs.
    let junit = match &args.junit {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Some((p.clone(), f)),
            Err(e) => return fail(format!("cannot write {}: {e}", p.display())),
        },
        None => None,
    };
    let mut ck = match Checker::new() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let bundled = args.paths.is_empty();
    let cases = if args.record {
        0
    } else {
        args.explore_cases.unwrap_or(if bundled { 300 } else { 0 })
    };
    let cx = Ctx {
        record: args.record,
        bless: args.bless,
        brief: bundled && !args.verbose,
        record_header: args.paths.len() != 1
            || args.paths[0].is_dir()
            || !names_a_path(&args.paths[0]),
    };
    let mut sink = Sink {
        format: args.format,
        quiet: args.quiet,
        tally: Tally::default(),
        junit: junit.as_ref().map(|_| Vec::new()),
        closed: false,
    };
    if !bundled && args.verbose {
        eprintln!(
            "udsim: -v changes nothing here: scripts named on the command line always print their transcripts"
        );
    }
    if args.seed.is_some() && cases == 0 {
        eprintln!(
            "udsim: --seed changes nothing here: no exploration runs (--explore-cases N asks for one)"
        );
    }
    let start = Instant::now();
    if !bundled && items.len() > 1 && !args.record && sink.text() && !args.quiet {
        sink.put(&format!("# checking {} scripts\n", items.len()));
    }
    let jobs = resolve_jobs(args.jobs, items.len().max(cases));
    let n = items.len();
    let res = run_ordered(
        &mut ck,
        jobs.min(n),
        &|i| i < n,
        |ck, i| evaluate(ck, &items[i], &cx),
        |i, r| sink.script(r, items[i].text.as_deref().unwrap_or_default()),
    );
    let mut explored = None;
    let res = res.and_then(|_| {
        if cases == 0 || sink.closed {
            return Ok(());
        }
        let seed = args.seed.unwrap_or_else(clock_seed);
        explored = Some(explore_after(&mut ck, &mut sink, seed, cases, jobs)?);
        Ok(())
    });
    if sink.closed {
        return EXIT_OK;
    }
    let secs = start.elapsed().as_secs_f64();
    if let Err(e) = res {
        eprintln!("udsim: {e}");
        if let (Some((p, f)), Some(cases)) = (junit, &mut sink.junit) {
            cases.push(report::Case {
                classname: "udsim".into(),
                name: "checker".into(),
                secs: 0.0,
                outcome: report::CaseOutcome::Error {
                    message: e.to_string(),
                    body: e.to_string(),
                },
                out: None,
            });
            write_junit(&p, f, cases, secs);
        }
        // Not a divergence: the run could not go on (an executor failure, a host tuned during the run).
        return EXIT_USAGE;
    }
    let t = &sink.tally;
    let code = t.code();
    if !args.record {
        match args.format {
            Format::Text => {
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
                let line = format!(
                    "# {} scripts: {} agree{partial}{skipped}, {} diverge, {} with script errors\n",
                    t.total(),
                    t.agree,
                    t.diverge,
                    t.errors
                );
                sink.put(&line);
            }
            Format::Json => {
                let mut s = serde_json::Map::new();
                s.insert("type".into(), "summary".into());
                s.insert("command".into(), "check".into());
                s.insert("scripts".into(), t.total().into());
                s.insert("counts".into(), report::counts_json(t));
                if let Some(x) = &explored {
                    s.insert("exploration".into(), x.json());
                }
                s.insert("jobs".into(), jobs.into());
                s.insert("seconds".into(), rounded(secs));
                s.insert("exit_code".into(), code.into());
                sink.json(&serde_json::Value::Object(s));
            }
        }
    }
    if let (Some((p, f)), Some(cases)) = (junit, &sink.junit) {
        if !write_junit(&p, f, cases, secs) {
            return EXIT_USAGE;
        }
    }
    if sink.closed {
        return EXIT_OK;
    }
    code
}

fn rounded(secs: f64) -> serde_json::Value {
    serde_json::json!((secs * 1e3).round() / 1e3)
}

fn write_junit(path: &Path, mut f: std::fs::File, cases: &[report::Case], secs: f64) -> bool {
    let xml = report::junit_xml("udsim check", cases, secs);
    match f.write_all(xml.as_bytes()).and_then(|()| f.flush()) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("udsim: cannot write {}: {e}", path.display());
            false
        }
    }
}

/// What an exploration saw, for the summary.
struct Explored {
    seed: u64,
    stats: Stats,
    found: Option<FoundReport>,
}

impl Explored {
    fn json(&self) -> serde_json::Value {
        let mut v = report::stats_json(self.seed, &self.stats);
        v["divergence"] = self
            .found
            .as_ref()
            .map_or(serde_json::Value::Null, |f| f.json());
        v
    }
}

/// The exploration part of `udsim check`: `cases` random scripts, counted in the tally.
fn explore_after(
    ck: &mut Checker,
    sink: &mut Sink,
    seed: u64,
    cases: usize,
    jobs: usize,
) -> Result<Explored, CheckError> {
    let start = Instant::now();
    if sink.text() && !sink.quiet {
        sink.put(&format!("exploring {cases} random scripts (seed {seed})\n"));
    }
    let mut stats = Stats::default();
    let plan = Plan {
        seed,
        cases: Some(cases),
        until: None,
        max_ops: 40,
        jobs: jobs.min(cases),
        mix: crate::gen::Mix::All,
    };
    let found = explore_plan(ck, &plan, &mut stats, |_| {})?;
    if sink.text() && !sink.quiet {
        sink.put(&stats.report());
    }
    let found = match found {
        None => {
            sink.tally.agree += stats.cases;
            None
        }
        Some(f) => {
            sink.tally.agree += stats.cases - 1;
            sink.tally.diverge += 1;
            let fr = report_found(ck, seed, &f, None)?;
            let human = fr.human();
            if sink.text() {
                sink.put(&human);
            } else {
                eprint!("{human}");
            }
            Some(fr)
        }
    };
    if let Some(junit) = &mut sink.junit {
        junit.push(report::Case {
            classname: "udsim.explore".into(),
            name: format!("seed {seed}, {} scripts", stats.cases),
            secs: start.elapsed().as_secs_f64(),
            outcome: match &found {
                None => report::CaseOutcome::Pass,
                Some(f) => report::CaseOutcome::Failure {
                    message: format!(
                        "divergence in case {} (seed {seed}); minimal script: {}",
                        f.case,
                        f.file
                            .as_deref()
                            .map_or("not written".into(), |p| p.display().to_string())
                    ),
                    body: f.human(),
                },
            },
            out: None,
        });
    }
    Ok(Explored { seed, stats, found })
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// A shrunk divergence of an exploration.
struct FoundReport {
    seed: u64,
    case: usize,
    /// Where the minimal script was written (`None`: it could not be; said on stderr).
    file: Option<PathBuf>,
    /// The minimal script's text as written.
    script: String,
    run: Run,
    /// Whether the script diverged again when it ran alone (if not, `run` is the exploration's own run).
    reproduced: bool,
}

/// Said when a divergence does not happen again with the script run alone.
const NOT_REPRODUCED: &str = "# NOT REPRODUCED: run again alone, the script agreed; the divergence depends on what ran before or beside it in the exploration, or on timing. The exploration's own run:";

impl FoundReport {
    /// What the text output prints for it.
    fn human(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.file {
            let what = if self.reproduced {
                "minimal script"
            } else {
                "script"
            };
            s.push_str(&format!("{what} written to {}\n", p.display()));
        }
        if !self.reproduced {
            s.push_str(NOT_REPRODUCED);
            s.push('\n');
        }
        s.push_str(&transcript(&self.run));
        s.push('\n');
        s
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "seed": self.seed,
            "case": self.case,
            "file": self.file.as_ref().map(|p| p.display().to_string()),
            "script": self.script,
            "reproduced": self.reproduced,
            "divergence": report::divergence_json(&self.run),
            "transcript": transcript(&self.run),
        })
    }
}

/// Shrinks a diverging script and writes it to a file (single-threaded, on the main checker).
fn report_found(
    ck: &mut Checker,
    seed: u64,
    found: &crate::explore::Found,
    out: Option<&Path>,
) -> Result<FoundReport, CheckError> {
    let (script, case) = (&found.script, found.case);
    eprintln!("divergence in case {case} (seed {seed}); shrinking…");
    let min = crate::shrink::shrink(ck, script)?.unwrap_or_else(|| script.clone());
    let again = ck.run(&min, Options::default())?;
    let reproduced = again.model_diverged();
    let default = PathBuf::from(format!("udsim-divergence-{seed}-{case}.uds"));
    let path = out.unwrap_or(&default);
    let (text, run) = if reproduced {
        let text = format!(
            "# minimal script: model and kernel disagree (udsim explore --seed {seed}, case {case})\n{}",
            fmt_script(&min)
        );
        (text, again)
    } else {
        // The evidence is the exploration's run: its transcript, kept as comments after the script.
        let shown: String = transcript(&found.run)
            .lines()
            .map(|l| format!("# {l}\n"))
            .collect();
        let text = format!(
            "# script: model and kernel disagreed in the exploration (udsim explore --seed {seed}, case {case})\n{}{NOT_REPRODUCED}\n{shown}",
            fmt_script(script)
        );
        (text, found.run.clone())
    };
    let file = match std::fs::write(path, &text) {
        Ok(()) => Some(path.to_path_buf()),
        Err(e) => {
            eprintln!("udsim: cannot write {}: {e}", path.display());
            None
        }
    };
    Ok(FoundReport {
        seed,
        case,
        file,
        script: text,
        run,
        reproduced,
    })
}

/// A duration as the header prints it: `60s`, `1.5s`, `2m`.
fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 && s % 60.0 == 0.0 {
        format!("{}m", s / 60.0)
    } else {
        format!("{s}s")
    }
}

/// `udsim explore`.
/// How the explore header names a mix (nothing for the default).
fn mix_word(mix: crate::gen::Mix) -> &'static str {
    match mix {
        crate::gen::Mix::All => "",
        crate::gen::Mix::Rights => "rights-heavy ",
    }
}

pub fn explore_cmd(args: ExploreArgs) -> i32 {
    let mut ck = match Checker::new() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if args
        .duration
        .is_some_and(|d| Instant::now().checked_add(d).is_none())
    {
        return fail("--duration is too long");
    }
    let seed = args.seed.unwrap_or_else(clock_seed);
    let json = args.format == Format::Json;
    // Writes to stdout; a closed stdout ends the run quietly (returning, so the executor's directory is
    // removed, as a process::exit would not).
    let say = |s: &str| {
        let mut o = std::io::stdout().lock();
        o.write_all(s.as_bytes()).and_then(|()| o.flush()).is_ok()
    };
    let cases = match (args.cases, args.duration) {
        (Some(n), _) => Some(n),
        (None, None) => Some(1000),
        (None, Some(_)) => None,
    };
    if !json {
        let header = match (cases, args.duration) {
            (Some(n), None) => format!(
                "udsim explore: {n} {}scripts of up to {} calls, seed {seed}\n",
                mix_word(args.mix),
                args.max_ops
            ),
            (n, Some(d)) => format!(
                "udsim explore: {}{}scripts of up to {} calls for {}, seed {seed}\n",
                n.map_or(String::new(), |n| format!("up to {n} ")),
                mix_word(args.mix),
                args.max_ops,
                fmt_duration(d)
            ),
            (None, None) => String::new(),
        };
        if !say(&header) {
            return EXIT_OK;
        }
    }
    let jobs = resolve_jobs(args.jobs, cases.unwrap_or(usize::MAX));
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let until = args.duration.and_then(|d| start.checked_add(d));
    let mut stats = Stats::default();
    let plan = Plan {
        seed,
        cases,
        until,
        max_ops: args.max_ops,
        jobs,
        mix: args.mix,
    };
    let width = 40;
    let found = explore_plan(&mut ck, &plan, &mut stats, |done| {
        if !tty {
            return;
        }
        match (args.duration, cases) {
            (None, Some(cases)) if done % 20 == 0 || done == cases => {
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
            (Some(d), _) if done % 20 == 0 => {
                let t = start.elapsed().as_secs_f64();
                let filled = ((t / d.as_secs_f64()) * width as f64).min(width as f64) as usize;
                eprint!(
                    "\r[{}{}] {done} scripts, {t:.0}/{:.0} s",
                    "=".repeat(filled),
                    " ".repeat(width - filled),
                    d.as_secs_f64()
                );
            }
            _ => {}
        }
    });
    if tty && args.duration.is_some() {
        eprintln!();
    }
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            // Not a divergence: the run could not go on (an executor failure, a host tuned during the run).
            eprintln!("udsim: {e}");
            return EXIT_USAGE;
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let ops_per_sec = stats.ops as f64 / secs.max(1e-9);
    if !json
        && !say(&format!(
            "{}{:.1} s, {:.0} ops/s through model + kernel\n",
            stats.report(),
            secs,
            ops_per_sec
        ))
    {
        return EXIT_OK;
    }
    let (code, found) = match found {
        None => {
            if !json && !say("no divergence\n") {
                return EXIT_OK;
            }
            (EXIT_OK, None)
        }
        Some(f) => {
            if tty && args.duration.is_none() {
                eprintln!();
            }
            match report_found(&mut ck, seed, &f, args.out.as_deref()) {
                Ok(fr) => {
                    if json {
                        eprint!("{}", fr.human());
                    } else if !say(&fr.human()) {
                        return EXIT_OK;
                    }
                    (EXIT_DIVERGED, Some(fr))
                }
                Err(e) => {
                    eprintln!("udsim: {e}");
                    (EXIT_DIVERGED, None)
                }
            }
        }
    };
    if json {
        let diverged = usize::from(code == EXIT_DIVERGED);
        let mut x = report::stats_json(seed, &stats);
        x["divergence"] = found.as_ref().map_or(serde_json::Value::Null, |f| f.json());
        let v = serde_json::json!({
            "type": "summary",
            "command": "explore",
            "scripts": stats.cases,
            "counts": {
                "agree": stats.cases - diverged.min(stats.cases),
                "diverge": diverged,
                "partly-modelled": 0,
                "skipped": 0,
                "error": 0,
            },
            "exploration": x,
            "jobs": jobs,
            "seconds": rounded(secs),
            "ops_per_sec": ops_per_sec.round(),
            "exit_code": code,
        });
        if !say(&report::line(&v)) {
            return EXIT_OK;
        }
    }
    code
}

/// `udsim params`: the calibrated host parameters, one per line (`name value`), as `# requires:` lines name them.
/// Arguments of `udsim params`.
#[derive(Debug, Args)]
pub struct ParamsArgs {
    /// Print every parameter in full (the truesize tables as `first:truesize` runs), in the form
    /// `Params::from_preset` reads: a preset of this host for running the model without calibration.
    #[arg(long)]
    pub preset: bool,
}

pub fn params_cmd(args: ParamsArgs) -> i32 {
    match crate::kernel::calibrate::params() {
        Ok(p) => {
            let text = if args.preset {
                p.to_preset()
            } else {
                p.named()
                    .iter()
                    .map(|(k, v)| format!("{k} {v}\n"))
                    .collect()
            };
            // A closed stdout ends quietly (exit 0).
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            EXIT_OK
        }
        Err(e) => fail(format!("cannot calibrate the model on this kernel: {e}")),
    }
}

/// Arguments of `udsim rules`.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// Only rules whose name contains this word.
    pub filter: Option<String>,
}

/// `udsim rules`: every rule the model names (read from its source), what the source says it does, and the
/// bundled scenarios in which it decides a line (the model alone steps each scenario that holds on this
/// kernel's parameters, or on the recorded 6.18 host's where calibration cannot run).
pub fn rules_cmd(args: RulesArgs) -> i32 {
    use crate::model::{params::Params, rules::RULES};
    use std::fmt::Write as _;
    let (params, whose) = match crate::kernel::calibrate::params() {
        Ok(p) => (p, "this kernel's calibrated parameters"),
        Err(e) => {
            eprintln!("udsim: cannot calibrate ({e}); using the recorded preset linux-6.18-host");
            match Params::preset("linux-6.18-host") {
                Some(p) => (p, "the recorded linux-6.18-host parameters"),
                None => return fail("no bundled preset"),
            }
        }
    };
    let mut shown: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    let mut stepped = 0;
    for (name, text) in crate::scenarios::SCENARIOS {
        if crate::check::unmet(&params, &crate::check::requirements(text)).is_some() {
            continue;
        }
        let Ok(script) = parse(text) else { continue };
        let Ok(preds) = crate::check::model_only(&params, &script) else {
            continue;
        };
        stepped += 1;
        for p in preds {
            let v = shown.entry(p.rule).or_default();
            if v.last() != Some(name) {
                v.push(name);
            }
        }
    }
    let want = |n: &str| args.filter.as_deref().is_none_or(|f| n.contains(f));
    let rules: Vec<&(&str, &str)> = RULES.iter().filter(|(n, _)| want(n)).collect();
    if rules.is_empty() {
        return fail(format!(
            "no rule's name contains `{}` (udsim rules lists them all)",
            args.filter.unwrap_or_default()
        ));
    }
    let with = rules.iter().filter(|(n, _)| shown.contains_key(n)).count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} rules, {} decide a line of a bundled scenario ({} scenarios stepped by the model alone on {whose})",
        rules.len(),
        with,
        stepped
    );
    for (name, desc) in rules {
        let _ = writeln!(out, "{name}");
        if !desc.is_empty() {
            let _ = writeln!(out, "    {desc}");
        }
        match shown.get(name) {
            Some(v) => {
                let more = v.len().saturating_sub(3);
                let list = v.iter().take(3).copied().collect::<Vec<_>>().join(", ");
                if more > 0 {
                    let _ = writeln!(out, "    shown by: {list} (+{more} more)");
                } else {
                    let _ = writeln!(out, "    shown by: {list}");
                }
            }
            None => {
                let _ = writeln!(out, "    shown by: no bundled scenario");
            }
        }
    }
    // A closed stdout ends quietly (exit 0).
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    EXIT_OK
}
