//! `udsim bench-report`: the ratio table from criterion's saved estimates.
//!
//! Reads what `cargo bench` left under criterion's directory (`target/criterion` unless
//! `$CRITERION_HOME` or `$CARGO_TARGET_DIR` say otherwise):
//! - `<group>/<server>/<payload>/new/{benchmark,estimates}.json`, criterion's own files;
//! - `udsim-meta/<bench>.json`, written by each bench target: placement, machine, load, start time
//!   and the groups it owns, so a figure older than its bench's last run is flagged as stale;
//! - `udsim-latency/<group>/<server>.json`: per-connection percentiles of the accept bench.
//!
//! and prints Markdown: the figures, udsim ÷ raw limit and udsim ÷ best peer per payload and mode,
//! accept latency percentiles, the checker's figures, and each target of the benchmarks issue as
//! met or missed. Every ratio is taken between figures of one group, which one bench run measures.

use clap::{Args, ValueEnum};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Which of criterion's estimates stands for a benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Estimate {
    /// Median of the per-iteration sample means: robust to a noisy neighbour.
    Median,
    /// Mean of the per-iteration sample means.
    Mean,
    /// Criterion's headline: the slope of time over iterations (mean when there is none).
    Slope,
}

/// Arguments of `udsim bench-report`.
#[derive(Debug, Args)]
pub struct BenchReportArgs {
    /// Criterion's output directory (default: $CRITERION_HOME, $CARGO_TARGET_DIR/criterion, or
    /// target/criterion).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The estimate every figure and ratio uses.
    #[arg(long, value_enum, default_value = "median")]
    pub estimate: Estimate,
}

/// Echo servers in table order: (criterion function id, column title).
const ECHO_SERVERS: &[(&str, &str)] = &[
    ("raw_thread", "raw (thread)"),
    ("raw_process", "raw (process)"),
    ("std_threads", "std threads"),
    ("tokio", "tokio"),
    ("monoio", "monoio (io_uring)"),
    ("udsim_iterative", "udsim iterative"),
    ("udsim_event_loop", "udsim event loop"),
    ("udsim_splice", "udsim splice"),
    ("udsim_uring", "udsim uring"),
];
const UDSIM_ENGINES: &[(&str, &str)] = &[
    ("udsim_event_loop", "event loop"),
    ("udsim_splice", "splice"),
    ("udsim_uring", "uring"),
    ("udsim_iterative", "iterative"),
];
/// The kernel's limit for the echo topology, as the issue defines it.
const RAW: &str = "raw_thread";
const PEERS: &[&str] = &["std_threads", "tokio", "monoio"];
const ACCEPT_SERVERS: &[(&str, &str)] = &[
    ("std_iterative", "std iterative"),
    ("tokio", "tokio"),
    ("monoio", "monoio (io_uring)"),
    ("udsim_iterative", "udsim iterative"),
    ("udsim_event_loop", "udsim event loop"),
    ("udsim_splice", "udsim splice"),
    ("udsim_uring", "udsim uring"),
];

/// (group, function, value) of a criterion benchmark.
type Key = (String, String, String);

/// One benchmark's figure.
#[derive(Debug, Clone)]
struct Entry {
    /// Nanoseconds per iteration.
    ns: f64,
    /// Bytes or elements per iteration.
    per_iter: Option<(Unit, f64)>,
    /// When criterion wrote it.
    written: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Bytes,
    Elements,
}

impl Entry {
    /// Bytes or elements per second.
    fn rate(&self) -> Option<f64> {
        self.per_iter.map(|(_, n)| n * 1e9 / self.ns)
    }
}

/// Median ratios of the interleaved pass.
#[derive(Debug, Clone, Copy)]
struct Inter {
    vs_raw: f64,
    vs_peer: f64,
    vs_std: f64,
    /// Against the splice engine (absent in passes recorded before the uring engine).
    vs_splice: Option<f64>,
}

/// Everything read from disk.
#[derive(Default)]
struct Data {
    /// (group, function, value) → figure.
    entries: BTreeMap<Key, Entry>,
    /// bench target → its meta file.
    metas: BTreeMap<String, Value>,
    /// (group, server) → latency file.
    latency: BTreeMap<(String, String), Value>,
    /// The echo bench's interleaved pass (`udsim-meta/echo_interleaved.json`).
    interleaved: Option<Value>,
}

fn default_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(h);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("criterion");
    }
    PathBuf::from("target").join("criterion")
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn mtime(path: &Path) -> f64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn load_entry(new_dir: &Path, est: Estimate) -> Result<Option<(Key, Entry)>, String> {
    let bench = read_json(&new_dir.join("benchmark.json"))?;
    let est_path = new_dir.join("estimates.json");
    let estimates = read_json(&est_path)?;
    let point = |k: &str| estimates[k]["point_estimate"].as_f64();
    let ns = match est {
        Estimate::Median => point("median"),
        Estimate::Mean => point("mean"),
        Estimate::Slope => point("slope").or_else(|| point("mean")),
    };
    let Some(ns) = ns.filter(|v| *v > 0.0) else {
        return Ok(None);
    };
    let s = |k: &str| bench[k].as_str().unwrap_or("").to_string();
    let per_iter = match &bench["throughput"] {
        Value::Object(m) => m.iter().next().and_then(|(k, v)| {
            let n = v.as_f64()?;
            match k.as_str() {
                "Bytes" | "BytesDecimal" => Some((Unit::Bytes, n)),
                "Elements" => Some((Unit::Elements, n)),
                _ => None,
            }
        }),
        _ => None,
    };
    let key = (s("group_id"), s("function_id"), s("value_str"));
    Ok(Some((
        key,
        Entry {
            ns,
            per_iter,
            written: mtime(&est_path),
        },
    )))
}

fn walk(dir: &Path, est: Estimate, data: &mut Data, depth: usize) -> Result<(), String> {
    if depth > 6 {
        return Ok(());
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        let name = e.file_name();
        if name == "new" {
            if p.join("estimates.json").is_file() && p.join("benchmark.json").is_file() {
                if let Some((k, v)) = load_entry(&p, est)? {
                    data.entries.insert(k, v);
                }
            }
        } else if name != "base" && name != "change" && name != "report" {
            walk(&p, est, data, depth + 1)?;
        }
    }
    Ok(())
}

fn load(dir: &Path, est: Estimate) -> Result<Data, String> {
    let mut data = Data::default();
    walk(dir, est, &mut data, 0)?;
    if let Ok(rd) = std::fs::read_dir(dir.join("udsim-meta")) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                let v = read_json(&p)?;
                if p.file_stem().is_some_and(|s| s == "echo_interleaved") {
                    data.interleaved = Some(v);
                } else if let Some(b) = v["bench"].as_str() {
                    data.metas.insert(b.to_string(), v.clone());
                }
            }
        }
    }
    if let Ok(groups) = std::fs::read_dir(dir.join("udsim-latency")) {
        for g in groups.flatten() {
            let Ok(files) = std::fs::read_dir(g.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|x| x == "json") {
                    let v = read_json(&p)?;
                    let group = v["group"].as_str().unwrap_or("").to_string();
                    let server = v["server"].as_str().unwrap_or("").to_string();
                    data.latency.insert((group, server), v);
                }
            }
        }
    }
    Ok(data)
}

impl Data {
    fn meta_of_group(&self, group: &str) -> Option<&Value> {
        self.metas.values().find(|m| {
            m["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().any(|g| g.as_str() == Some(group)))
        })
    }

    /// A figure, with whether it predates its bench target's last run (stale).
    fn get(&self, group: &str, function: &str, value: &str) -> Option<(&Entry, bool)> {
        let e = self
            .entries
            .get(&(group.to_string(), function.to_string(), value.to_string()))?;
        let started = self
            .meta_of_group(group)
            .and_then(|m| m["started_unix"].as_f64())
            .unwrap_or(0.0);
        Some((e, e.written + 1.0 < started))
    }

    /// The interleaved pass' figures for one cell and server, if the pass belongs to the echo
    /// bench's last run: (ratio vs raw, ratio vs best peer, ratio vs std threads, bytes/s).
    fn inter(&self, mode: &str, payload: &str, server: &str) -> Option<Inter> {
        let v = self.interleaved.as_ref()?;
        let started = self
            .metas
            .get("echo_throughput")
            .and_then(|m| m["started_unix"].as_f64())
            .unwrap_or(0.0);
        if v["written_unix"].as_f64().unwrap_or(0.0) + 1.0 < started {
            return None;
        }
        let cell = v["cells"]
            .as_array()?
            .iter()
            .find(|c| c["mode"] == mode && c["payload"] == payload)?;
        let s = &cell["servers"][server];
        Some(Inter {
            vs_raw: s["ratio_vs_raw"].as_f64()?,
            vs_peer: s["ratio_vs_best_peer"].as_f64()?,
            vs_std: s["ratio_vs_std_threads"].as_f64()?,
            vs_splice: s["ratio_vs_splice"].as_f64(),
        })
    }

    fn latency(&self, group: &str, server: &str) -> Option<&Value> {
        let v = self.latency.get(&(group.to_string(), server.to_string()))?;
        let started = self
            .meta_of_group(group)
            .and_then(|m| m["started_unix"].as_f64())
            .unwrap_or(0.0);
        (v["written_unix"].as_f64().unwrap_or(0.0) + 1.0 >= started).then_some(v)
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn fmt_bytes_rate(bps: f64) -> String {
    let mib = bps / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.2} GiB/s", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB/s")
    }
}

fn fmt_count_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

fn fmt_ratio(r: f64) -> String {
    format!("{r:.2}×")
}

/// Criterion's value_str for a payload ("64B", "16KiB") back to bytes, for ordering.
fn payload_bytes(v: &str) -> u64 {
    if let Some(k) = v.strip_suffix("KiB") {
        k.parse::<u64>().map(|k| k * 1024).unwrap_or(u64::MAX)
    } else if let Some(b) = v.strip_suffix('B') {
        b.parse().unwrap_or(u64::MAX)
    } else {
        u64::MAX
    }
}

fn pretty_payload(v: &str) -> String {
    if let Some(k) = v.strip_suffix("KiB") {
        format!("{k} KiB")
    } else if let Some(b) = v.strip_suffix('B') {
        format!("{b} B")
    } else {
        v.to_string()
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn fmt_utc(secs: f64) -> String {
    let s = secs as i64;
    let days = s.div_euclid(86_400);
    let rem = s.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

fn load_of(s: &str) -> String {
    s.split_whitespace().next().unwrap_or("?").to_string()
}

fn describe_run(m: &Value) -> String {
    let mut s = format!(
        "placement **{}**; run started {}",
        m["placement"].as_str().unwrap_or("unknown"),
        fmt_utc(m["started_unix"].as_f64().unwrap_or(0.0))
    );
    if let (Some(a), Some(b)) = (m["started_unix"].as_f64(), m["finished_unix"].as_f64()) {
        let _ = write!(s, ", took {:.0} s", b - a);
    }
    let _ = write!(
        s,
        ", load average {} at start",
        load_of(m["loadavg_at_start"].as_str().unwrap_or("?"))
    );
    if let Some(e) = m["loadavg_at_end"].as_str() {
        let _ = write!(s, ", {} at end", load_of(e));
    }
    if m["quick"].as_bool() == Some(true) {
        s.push_str("; **quick mode** (indicative only)");
    }
    s
}

/// Targets of the issue, collected while the tables are printed.
struct Targets(Vec<String>);

impl Targets {
    fn add(&mut self, met: bool, what: String) {
        let mark = if met { "met" } else { "MISSED" };
        self.0.push(format!("- **{mark}**: {what}"));
    }
    fn missing(&mut self, what: &str) {
        self.0.push(format!("- **not measured**: {what}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Sections

fn echo_section(d: &Data, out: &mut String, t: &mut Targets) {
    for (group, title) in [
        (
            "echo_pingpong",
            "Ping-pong (write a payload, read its echo)",
        ),
        (
            "echo_pipelined",
            "Pipelined (a writer thread streams payloads, a reader thread takes the echo)",
        ),
    ] {
        let mut payloads: Vec<String> = d
            .entries
            .keys()
            .filter(|(g, _, _)| g == group)
            .map(|(_, _, v)| v.clone())
            .collect();
        payloads.sort_by_key(|v| payload_bytes(v));
        payloads.dedup();
        if payloads.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {title}\n");
        if let Some(m) = d.meta_of_group(group) {
            let _ = writeln!(out, "{}.\n", describe_run(m));
        }
        let servers: Vec<&(&str, &str)> = ECHO_SERVERS
            .iter()
            .filter(|(f, _)| payloads.iter().any(|p| d.get(group, f, p).is_some()))
            .collect();
        let mut stale = false;
        // Figures.
        let _ = write!(out, "| payload |");
        for (_, name) in &servers {
            let _ = write!(out, " {name} |");
        }
        let _ = write!(out, "\n|---|");
        for _ in &servers {
            let _ = write!(out, "---:|");
        }
        out.push('\n');
        for p in &payloads {
            let _ = write!(out, "| {} |", pretty_payload(p));
            for (f, _) in &servers {
                match d.get(group, f, p) {
                    Some((e, old)) => {
                        stale |= old;
                        let mark = if old { " †" } else { "" };
                        let rate = e.rate().map(fmt_bytes_rate).unwrap_or_default();
                        if group == "echo_pingpong" {
                            let _ =
                                write!(out, " {rate}<br>{} per round trip{mark} |", fmt_ns(e.ns));
                        } else {
                            let _ = write!(out, " {rate}{mark} |");
                        }
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        out.push('\n');
        // Ratios.
        let _ = writeln!(
            out,
            "Ratios of throughput (higher is better; for ping-pong, 1 ÷ the ratio of round-trip times). \
             Raw limit = socketpair echoed by a thread; best peer = the fastest of std threads, tokio and monoio.\n"
        );
        let _ = write!(out, "| payload |");
        for (_, e) in UDSIM_ENGINES {
            let _ = write!(out, " {e} ÷ raw | {e} ÷ best peer |");
        }
        let _ = write!(out, "\n|---|");
        for _ in UDSIM_ENGINES {
            out.push_str("---:|---:|");
        }
        out.push('\n');
        for p in &payloads {
            let _ = write!(out, "| {} |", pretty_payload(p));
            let raw = d.get(group, RAW, p).and_then(|(e, _)| e.rate());
            let best = PEERS
                .iter()
                .filter_map(|f| {
                    d.get(group, f, p)
                        .and_then(|(e, _)| e.rate().map(|r| (r, *f)))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            for (f, _) in UDSIM_ENGINES {
                let r = d.get(group, f, p).and_then(|(e, _)| e.rate());
                let cell = |base: Option<f64>| match (r, base) {
                    (Some(r), Some(b)) => fmt_ratio(r / b),
                    _ => "–".to_string(),
                };
                let peer = match (r, best) {
                    (Some(r), Some((b, who))) => {
                        format!("{} ({})", fmt_ratio(r / b), who.replace('_', " "))
                    }
                    _ => "–".to_string(),
                };
                let _ = write!(out, " {} | {} |", cell(raw), peer);
            }
            out.push('\n');
        }
        out.push('\n');
        if stale {
            let _ = writeln!(
                out,
                "† from an earlier run than the rest of this group (re-run the whole bench target).\n"
            );
        }
        echo_targets(d, group, t);
    }
}

fn echo_targets(d: &Data, group: &str, t: &mut Targets) {
    let place = d
        .meta_of_group(group)
        .and_then(|m| m["placement"].as_str())
        .unwrap_or("unknown placement")
        .to_string();
    let rate = |f: &str, p: &str| d.get(group, f, p).and_then(|(e, _)| e.rate());
    let best = |p: &str| {
        PEERS
            .iter()
            .filter_map(|f| rate(f, p).map(|r| (r, *f)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    // Criterion's figure of a ratio, shown beside the interleaved one (or alone without it).
    let crit = |x: Option<f64>| match x {
        Some(x) => format!("criterion: {x:.2}×"),
        None => "criterion: –".to_string(),
    };
    if group == "echo_pingpong" {
        let c = match (rate("udsim_event_loop", "64B"), rate(RAW, "64B")) {
            (Some(u), Some(r)) => Some(r / u),
            _ => None,
        };
        let i = d
            .inter("pingpong", "64B", "udsim_event_loop")
            .map(|x| 1.0 / x.vs_raw);
        match i.or(c) {
            Some(x) => {
                t.add(
                    x <= 1.05,
                    format!(
                    "ping-pong 64 B: udsim event loop round trip = {x:.3}× the raw socketpair's \
                     (target ≤ 1.05×; {}; {place})",
                    if i.is_some() { format!("interleaved, {}", crit(c)) } else { crit(c) }
                ),
                )
            }
            None => t.missing("ping-pong 64 B (udsim event loop, raw socketpair)"),
        }
    } else {
        let c = match (rate("udsim_splice", "64KiB"), best("64KiB")) {
            (Some(u), Some((b, _))) => Some(u / b),
            _ => None,
        };
        let i = d
            .inter("pipelined", "64KiB", "udsim_splice")
            .map(|x| x.vs_peer);
        match i.or(c) {
            Some(x) => {
                t.add(
                    x >= 1.3,
                    format!(
                    "pipelined 64 KiB: udsim splice = {x:.2}× the best of std threads, tokio and monoio \
                     (target ≥ 1.3×; {}; {place})",
                    if i.is_some() { format!("interleaved, {}", crit(c)) } else { crit(c) }
                ),
                )
            }
            None => t.missing("pipelined 64 KiB (udsim splice, std, tokio)"),
        }
        for p in ["64B", "1KiB"] {
            for (f, name) in [
                ("udsim_event_loop", "event loop"),
                ("udsim_splice", "splice"),
            ] {
                let c = match (rate(f, p), rate("std_threads", p)) {
                    (Some(u), Some(s)) => Some(u / s),
                    _ => None,
                };
                let i = d.inter("pipelined", p, f).map(|x| x.vs_std);
                match i.or(c) {
                    Some(x) => t.add(
                        x >= 1.0,
                        format!(
                            "pipelined {}: udsim {name} = {x:.2}× std threads (target ≥ 1×; {}; {place})",
                            pretty_payload(p),
                            if i.is_some() { format!("interleaved, {}", crit(c)) } else { crit(c) }
                        ),
                    ),
                    None => t.missing(&format!("pipelined {} ({name}, std threads)", pretty_payload(p))),
                }
            }
        }
    }
}

/// The io_uring engine's targets (issue 14), judged on the interleaved pass only: its ratios
/// against the raw limit, the splice engine and the best peer come from chunks milliseconds apart.
fn uring_targets(d: &Data, t: &mut Targets) {
    let place = d
        .meta_of_group("echo_pingpong")
        .and_then(|m| m["placement"].as_str())
        .unwrap_or("unknown placement")
        .to_string();
    let u = |mode: &str, p: &str| d.inter(mode, p, "udsim_uring");
    match u("pingpong", "64B") {
        Some(x) => t.add(
            x.vs_raw >= 1.0,
            format!(
                "ping-pong 64 B: udsim uring round trip = {:.3}× the raw socketpair's (target ≤ 1.00×; interleaved; {place})",
                1.0 / x.vs_raw
            ),
        ),
        None => t.missing("ping-pong 64 B (udsim uring, raw socketpair; interleaved)"),
    }
    match u("pingpong", "64KiB").and_then(|x| x.vs_splice) {
        Some(r) => t.add(
            r >= 1.0,
            format!("ping-pong 64 KiB: udsim uring = {r:.2}× udsim splice (target ≥ 1×; interleaved; {place})"),
        ),
        None => t.missing("ping-pong 64 KiB (udsim uring, udsim splice; interleaved)"),
    }
    match (
        u("pipelined", "64KiB"),
        d.inter("pipelined", "64KiB", "udsim_splice"),
    ) {
        (Some(x), Some(s)) => {
            let goal = s.vs_peer.max(1.5);
            t.add(
                x.vs_peer >= goal,
                format!(
                    "pipelined 64 KiB: udsim uring = {:.2}× the best of std threads, tokio and monoio (target ≥ {goal:.2}×: 1.5× or the splice engine's {:.2}×, whichever is higher; interleaved; {place})",
                    x.vs_peer, s.vs_peer
                ),
            )
        }
        _ => t.missing("pipelined 64 KiB (udsim uring, udsim splice, peers; interleaved)"),
    }
}

/// The interleaved pass: the ratios the targets are judged on.
fn interleaved_section(d: &Data, out: &mut String) {
    let Some(v) = &d.interleaved else {
        return;
    };
    if d.inter("pingpong", "64B", RAW).is_none() && d.inter("pipelined", "64B", RAW).is_none() {
        let _ = writeln!(
            out,
            "(The interleaved pass on file is older than the echo bench's last run; not shown.)\n"
        );
        return;
    }
    let _ = writeln!(out, "### Echo ratios, interleaved\n");
    let _ = writeln!(
        out,
        "Criterion measures one server after another for seconds each, and on a shared machine the \
         load can change in between. After the criterion groups the echo bench also measures every \
         server in {}-ms chunks, round after round ({} rounds, order rotated), and takes the median \
         of each round's ratio: chunks compared are milliseconds apart. These are the ratios the \
         targets are judged on; placement **{}**.\n",
        v["chunk_ms"].as_f64().unwrap_or(0.0),
        v["rounds"],
        v["placement"].as_str().unwrap_or("unknown")
    );
    let _ = write!(out, "| mode | payload |");
    for (_, e) in UDSIM_ENGINES {
        let _ = write!(out, " {e} ÷ raw | {e} ÷ best peer |");
    }
    let _ = write!(out, " tokio ÷ std |\n|---|---|");
    for _ in UDSIM_ENGINES {
        out.push_str("---:|---:|");
    }
    out.push_str("---:|\n");
    for mode in ["pingpong", "pipelined"] {
        for p in ["64B", "1KiB", "16KiB", "64KiB"] {
            if d.inter(mode, p, RAW).is_none() {
                continue;
            }
            let _ = write!(out, "| {mode} | {} |", pretty_payload(p));
            for (f, _) in UDSIM_ENGINES {
                match d.inter(mode, p, f) {
                    Some(x) => {
                        let _ =
                            write!(out, " {} | {} |", fmt_ratio(x.vs_raw), fmt_ratio(x.vs_peer));
                    }
                    None => out.push_str(" – | – |"),
                }
            }
            match d.inter(mode, p, "tokio") {
                Some(x) => {
                    let _ = write!(out, " {} |", fmt_ratio(x.vs_std));
                }
                None => out.push_str(" – |"),
            }
            out.push('\n');
        }
    }
    out.push('\n');
}

fn accept_section(d: &Data, out: &mut String, t: &mut Targets) {
    let groups = [
        ("accept_connect", "connect → accept returned"),
        ("accept_first_byte", "connect → first echoed byte"),
    ];
    let present: Vec<_> = groups
        .iter()
        .filter(|(g, _)| {
            ACCEPT_SERVERS
                .iter()
                .any(|(s, _)| d.latency(g, s).is_some())
        })
        .collect();
    if present.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Accept latency (one connection at a time)\n");
    if let Some(m) = d.meta_of_group("accept_connect") {
        let _ = writeln!(out, "{}.\n", describe_run(m));
    }
    let _ = write!(out, "| server |");
    for (_, title) in &present {
        let _ = write!(out, " {title}: p50 / p99 / p99.9 | conn/s |");
    }
    let _ = write!(out, "\n|---|");
    for _ in &present {
        out.push_str("---:|---:|");
    }
    out.push('\n');
    for (s, name) in ACCEPT_SERVERS {
        let _ = write!(out, "| {name} |");
        for (g, _) in &present {
            match d.latency(g, s) {
                Some(v) => {
                    let f = |k: &str| fmt_ns(v[k].as_f64().unwrap_or(0.0));
                    let _ = write!(
                        out,
                        " {} / {} / {} | {} |",
                        f("p50_ns"),
                        f("p99_ns"),
                        f("p999_ns"),
                        fmt_count_rate(v["connections_per_s"].as_f64().unwrap_or(0.0))
                    );
                }
                None => out.push_str(" – | – |"),
            }
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nconnect → accept: each server writes \"Accepted socket fd = N\" to a stderr pipe right after \
         accept returns (one write(2), as udsim writes its status lines), and the client times \
         connect → the line arriving: the same pipe write and wake-up for every server. conn/s: whole cycles (socket, connect, wait, close) per second of wall time.\n"
    );
    let p50 = |s: &str| {
        d.latency("accept_connect", s)
            .and_then(|v| v["p50_ns"].as_f64())
    };
    let place = d
        .meta_of_group("accept_connect")
        .and_then(|m| m["placement"].as_str())
        .unwrap_or("unknown placement");
    match (p50("udsim_event_loop"), p50("std_iterative")) {
        (Some(u), Some(s)) => t.add(
            u <= s,
            format!(
                "connect → accept p50: udsim event loop {} vs the iterative std server's {} ({:.2}×; target ≤ 1×; {place})",
                fmt_ns(u),
                fmt_ns(s),
                u / s
            ),
        ),
        _ => t.missing("connect → accept p50 (udsim event loop, std iterative)"),
    }
    match (p50("udsim_uring"), p50("std_iterative")) {
        (Some(u), Some(s)) => t.add(
            u <= 0.95 * s,
            format!(
                "connect → accept p50: udsim uring {} vs the iterative std server's {} ({:.2}×; target ≤ 0.95×; {place})",
                fmt_ns(u),
                fmt_ns(s),
                u / s
            ),
        ),
        _ => t.missing("connect → accept p50 (udsim uring, std iterative)"),
    }
    let cps = |s: &str| {
        d.latency("accept_connect", s)
            .and_then(|v| v["connections_per_s"].as_f64())
    };
    match (cps("udsim_uring"), cps("udsim_event_loop")) {
        (Some(u), Some(e)) => t.add(
            u >= 1.2 * e,
            format!(
                "connect → accept connections/s: udsim uring {} vs the event loop's {} ({:.2}×; target ≥ 1.2×; {place})",
                fmt_count_rate(u),
                fmt_count_rate(e),
                u / e
            ),
        ),
        _ => t.missing("connect → accept connections/s (udsim uring, udsim event loop)"),
    }
}

fn checker_section(d: &Data, out: &mut String, t: &mut Targets) {
    let g = "checker";
    let get = |f: &str| d.get(g, f, "").map(|(e, _)| e);
    if ["model_steps", "check_ops", "kernel_only_ops", "parse_lines"]
        .iter()
        .all(|f| get(f).is_none())
    {
        return;
    }
    let _ = writeln!(out, "### Checker\n");
    let meta = d.meta_of_group(g);
    if let Some(m) = meta {
        let x = &m["extra"];
        let _ = writeln!(
            out,
            "{}. Corpus: {} generated scripts (seeds 0.., ≤ {} calls each; {} diverging skipped), {} calls.\n",
            describe_run(m),
            x["scripts"],
            x["max_ops"],
            x["diverging_skipped"],
            x["ops"]
        );
    }
    let _ = writeln!(out, "| figure | rate | per element |\n|---|---:|---:|");
    let rows = [
        ("model_steps", "model: `Model::step`", "steps"),
        ("check_ops", "checker: model + kernel in lock-step", "calls"),
        ("kernel_only_ops", "kernel executor alone", "calls"),
        ("parse_lines", "`script::parse`", "lines"),
    ];
    for (f, what, unit) in rows {
        if let Some(e) = get(f) {
            let (rate, per) = match (e.rate(), e.per_iter) {
                (Some(r), Some((_, n))) => {
                    (format!("{} {unit}", fmt_count_rate(r)), fmt_ns(e.ns / n))
                }
                _ => ("–".into(), fmt_ns(e.ns)),
            };
            let _ = writeln!(out, "| {what} | {rate} | {per} |");
        }
    }
    if let (Some(e), Some(bytes)) = (
        get("parse_lines"),
        meta.and_then(|m| m["extra"]["parse_bytes"].as_f64()),
    ) {
        let _ = writeln!(
            out,
            "| `script::parse` (bytes) | {} | |",
            fmt_bytes_rate(bytes * 1e9 / e.ns)
        );
    }
    out.push('\n');
    let place = meta
        .and_then(|m| m["placement"].as_str())
        .unwrap_or("unknown placement");
    match get("model_steps").and_then(Entry::rate) {
        Some(r) => t.add(
            r >= 5e6,
            format!(
                "model: {} steps/s (target ≥ 5 M/s; {place})",
                fmt_count_rate(r).trim_end_matches("/s")
            ),
        ),
        None => t.missing("model steps/s"),
    }
    // Issue 8's goal (v1's was 0.5×), judged on the interleaved pass where the run has one: criterion
    // measures the two seconds apart, and this host's speed changes in between.
    let inter = meta
        .map(|m| &m["extra"]["interleaved"])
        .filter(|v| v["ratio"].is_f64());
    match (
        inter,
        get("check_ops").and_then(Entry::rate),
        get("kernel_only_ops").and_then(Entry::rate),
    ) {
        (Some(v), crit_c, crit_k) => {
            let r = v["ratio"].as_f64().unwrap_or(0.0);
            let crit = match (crit_c, crit_k) {
                (Some(c), Some(k)) => format!("; criterion, one after the other: {:.2}×", c / k),
                _ => String::new(),
            };
            t.add(
                r >= 0.8,
                format!(
                    "checker: {} calls/s = {r:.2}× kernel-only {} (target ≥ 0.8×; interleaved, {} rounds, \
                     per-round range {:.2}–{:.2}×{crit}; {place})",
                    fmt_count_rate(v["check_calls_per_s"].as_f64().unwrap_or(0.0)).trim_end_matches("/s"),
                    fmt_count_rate(v["kernel_only_calls_per_s"].as_f64().unwrap_or(0.0))
                        .trim_end_matches("/s"),
                    v["rounds"],
                    v["ratio_min"].as_f64().unwrap_or(0.0),
                    v["ratio_max"].as_f64().unwrap_or(0.0),
                ),
            )
        }
        (None, Some(c), Some(k)) => t.add(
            c >= 0.8 * k,
            format!(
                "checker: {} calls/s = {:.2}× kernel-only {} (target ≥ 0.8×; criterion, one after the other; {place})",
                fmt_count_rate(c).trim_end_matches("/s"),
                c / k,
                fmt_count_rate(k).trim_end_matches("/s")
            ),
        ),
        _ => t.missing("checker vs kernel-only calls/s"),
    }
}

/// Builds the whole report.
fn report(d: &Data, est: Estimate) -> String {
    let mut out = String::new();
    let mut t = Targets(Vec::new());
    let _ = writeln!(out, "## udsim benchmark report\n");
    if let Some(m) = d.metas.values().next() {
        let _ = writeln!(
            out,
            "Machine: {}, CPUs online {}, Linux {}. Figures: criterion's {} per iteration; every ratio \
             is between figures of one criterion group, measured in one run.\n",
            m["cpu_model"].as_str().unwrap_or("unknown CPU"),
            m["cpus_online"].as_str().unwrap_or("?"),
            m["kernel"].as_str().unwrap_or("?"),
            match est {
                Estimate::Median => "median",
                Estimate::Mean => "mean",
                Estimate::Slope => "slope",
            }
        );
    }
    echo_section(d, &mut out, &mut t);
    if d.interleaved.is_some() {
        uring_targets(d, &mut t);
    }
    interleaved_section(d, &mut out);
    accept_section(d, &mut out, &mut t);
    checker_section(d, &mut out, &mut t);
    if !t.0.is_empty() {
        let _ = writeln!(out, "### Targets\n");
        for l in &t.0 {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

/// Runs `udsim bench-report`; returns the exit status.
pub fn run(args: BenchReportArgs) -> i32 {
    let dir = args.dir.unwrap_or_else(default_dir);
    let data = match load(&dir, args.estimate) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("udsim: {e}");
            return 1;
        }
    };
    if data.entries.is_empty() {
        eprintln!(
            "udsim: no criterion estimates under {}; run `cargo bench` first (see benches/README.md)",
            dir.display()
        );
        return 1;
    }
    print!("{}", report(&data, args.estimate));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(fmt_utc(0.0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_utc(951_782_400.0), "2000-02-29 00:00 UTC");
    }

    fn checker_data(interleaved: Option<f64>) -> Data {
        let mut d = Data::default();
        let entry = |calls_per_s: f64| Entry {
            ns: 1e9,
            per_iter: Some((Unit::Elements, calls_per_s)),
            written: 10.0,
        };
        for (f, rate) in [("check_ops", 90e3), ("kernel_only_ops", 100e3)] {
            d.entries
                .insert(("checker".into(), f.into(), String::new()), entry(rate));
        }
        let mut meta = serde_json::json!({
            "bench": "checker", "groups": ["checker"], "started_unix": 1.0,
            "placement": "pinned", "extra": {},
        });
        if let Some(r) = interleaved {
            meta["extra"]["interleaved"] = serde_json::json!({
                "rounds": 10, "ratio": r, "ratio_min": r - 0.02, "ratio_max": r + 0.02,
                "check_calls_per_s": 75e3, "kernel_only_calls_per_s": 100e3,
            });
        }
        d.metas.insert("checker".into(), meta);
        d
    }

    fn checker_targets(d: &Data) -> Vec<String> {
        let mut t = Targets(Vec::new());
        checker_section(d, &mut String::new(), &mut t);
        t.0.into_iter()
            .filter(|l| l.contains("kernel-only"))
            .collect()
    }

    #[test]
    fn the_checker_ratio_is_judged_on_the_interleaved_pass_where_there_is_one() {
        // Criterion alone: 0.90× meets 0.8×.
        let t = checker_targets(&checker_data(None));
        assert_eq!(t.len(), 1);
        assert!(
            t[0].starts_with("- **met**") && t[0].contains("0.90×"),
            "{t:?}"
        );
        // The interleaved pass' 0.75× decides over criterion's 0.90×, which is shown beside it.
        let t = checker_targets(&checker_data(Some(0.75)));
        assert!(t[0].starts_with("- **MISSED**"), "{t:?}");
        assert!(
            t[0].contains("= 0.75×") && t[0].contains("one after the other: 0.90×"),
            "{t:?}"
        );
        let t = checker_targets(&checker_data(Some(0.8)));
        assert!(t[0].starts_with("- **met**"), "{t:?}");
    }

    #[test]
    fn payload_order() {
        let mut v = vec!["64KiB", "64B", "1KiB", "16KiB"];
        v.sort_by_key(|p| payload_bytes(p));
        assert_eq!(v, ["64B", "1KiB", "16KiB", "64KiB"]);
    }
}
