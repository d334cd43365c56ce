//! `udsim report --out DIR`: the conformance report, one self-contained static HTML page.
//!
//! It runs, on this kernel, the bundled scenarios, a seeded exploration and a bounded-exhaustive
//! enumeration of each socket type, fills the call × state matrix ([`crate::coverage`]) from all
//! three, and writes `DIR/index.html` (host and kernel, calibrated parameters, the matrix per type,
//! the rules with the scenarios that show them, the state diagrams) and `DIR/matrix.json` (the
//! same matrix for machines). Exit 0 when everything agreed with the kernel, 1 when something
//! diverged (the page says where), 2 when the report could not be made.

use crate::check::{requirements, unmet, Checker, Options};
use crate::coverage::{type_of, Cell, Matrix, Source};
use crate::enumerate::{enumerate, universe_of, Enumeration};
use crate::explore::case_script;
use crate::gen::Mix;
use crate::model::Params;
use crate::script::parse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Arguments of `udsim report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Directory to write `index.html` and `matrix.json` into (made if missing; other files in it are left alone).
    #[arg(long)]
    pub out: PathBuf,
    /// Depth of the enumeration of each type (2 sockets, 1 path).
    #[arg(long, default_value_t = 5)]
    pub depth: usize,
    /// Explored scripts (random call orderings, up to 40 calls each).
    #[arg(long, default_value_t = 300)]
    pub explore_cases: usize,
    /// Seed of the exploration.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

const TYPES: &[&str] = &["stream", "dgram", "seqpacket"];

/// What the runs found, besides the matrix.
#[derive(Default)]
struct Findings {
    scenarios_run: usize,
    scenarios_skipped: usize,
    scenarios_diverged: Vec<String>,
    explored: usize,
    explored_steps: usize,
    explored_diverged: usize,
    /// Per type: states, transitions, replays, diverging replays.
    enumerations: Vec<(String, usize, usize, usize, usize)>,
    /// Rule → the scenarios in which it decided a line.
    shown: BTreeMap<&'static str, Vec<String>>,
    diagrams: Vec<(String, String)>,
}

/// Text for HTML (attributes too).
fn esc(s: &str) -> String {
    crate::cli::report::escape(s, true)
}

/// `udsim report`.
pub fn run(args: ReportArgs) -> i32 {
    match make(&args) {
        Ok(diverged) => i32::from(diverged),
        Err(e) => {
            eprintln!("udsim report: {e}");
            2
        }
    }
}

fn make(args: &ReportArgs) -> Result<bool, String> {
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot make {}: {e}", args.out.display()))?;
    let mut ck = Checker::new().map_err(|e| e.to_string())?;
    let params = ck.params().clone();
    let mut matrix = Matrix::default();
    let mut f = Findings::default();
    let t0 = std::time::Instant::now();
    for (name, text) in crate::scenarios::SCENARIOS {
        if unmet(&params, &requirements(text)).is_some() {
            f.scenarios_skipped += 1;
            continue;
        }
        let script = parse(text).map_err(|e| format!("bundled scenario {name}: {e}"))?;
        let run = ck
            .run(&script, Options::default())
            .map_err(|e| e.to_string())?;
        f.scenarios_run += 1;
        if !run.agrees() {
            f.scenarios_diverged.push(name.to_string());
        }
        for p in run.steps.iter().filter_map(|s| s.prediction.as_ref()) {
            let v = f.shown.entry(p.rule).or_default();
            if v.last().map(String::as_str) != Some(*name) {
                v.push(name.to_string());
            }
        }
        matrix.add_run(&params, &run, Source::Scenario);
    }
    for i in 0..args.explore_cases {
        let script = case_script(&params, args.seed, i, 40, Mix::All);
        let run = ck
            .run(&script, Options::default())
            .map_err(|e| e.to_string())?;
        f.explored += 1;
        f.explored_steps += run.steps.len();
        f.explored_diverged += usize::from(run.divergence().is_some());
        matrix.add_run(&params, &run, Source::Explored);
    }
    for ty in TYPES {
        let u = universe_of(args.depth, 2, 1, ty, &params)?;
        let e = enumerate(&params, &u);
        let replays = e.replays(false);
        let mut bad: BTreeSet<usize> = BTreeSet::new();
        let mut diverging = 0;
        for r in &replays {
            let run = ck
                .run(&r.script, Options::default())
                .map_err(|e| e.to_string())?;
            if !run.agrees() {
                diverging += 1;
                bad.extend(r.transitions.iter().copied());
            }
        }
        matrix.add_enumeration(&e, |t| !bad.contains(&t));
        f.enumerations.push((
            ty.to_string(),
            e.states.len(),
            e.transitions.iter().filter(|t| t.to.is_some()).count(),
            replays.len(),
            diverging,
        ));
        f.diagrams
            .push((ty.to_string(), diagram_html(&e, ty, args.depth)));
    }
    let secs = t0.elapsed().as_secs_f64();
    let html = page(&params, &matrix, &f, args, secs);
    let index = args.out.join("index.html");
    std::fs::write(&index, html).map_err(|e| format!("cannot write {}: {e}", index.display()))?;
    let json = args.out.join("matrix.json");
    std::fs::write(&json, matrix_json(&matrix).to_string())
        .map_err(|e| format!("cannot write {}: {e}", json.display()))?;
    let cells = matrix.cells.len();
    let empty = matrix.empty_cells().len();
    let diverged = !f.scenarios_diverged.is_empty()
        || f.explored_diverged > 0
        || f.enumerations.iter().any(|x| x.4 > 0);
    use std::io::Write as _;
    // A closed stdout loses only this line.
    let _ = writeln!(
        std::io::stdout(),
        "udsim report: {} ({} matrix cells checked, {} grid cells nothing checked; {} scenarios, {} explored scripts, enumerations of depth {}; {})  in {secs:.1} s",
        index.display(),
        cells,
        empty,
        f.scenarios_run,
        f.explored,
        args.depth,
        if diverged { "something diverged" } else { "everything agreed with the kernel" }
    );
    Ok(diverged)
}

fn diagram_html(e: &Enumeration, ty: &str, depth: usize) -> String {
    let d = crate::diagram::diagram(e, false, true);
    let title = format!("udsim {ty} socket states (depth {depth}, 2 sockets, 1 path)");
    let dot = crate::diagram::to_dot(&d, &title);
    match crate::diagram::svg(&dot) {
        Ok(svg) => {
            // Drop the XML prolog and doctype: the SVG goes inline.
            let start = svg.find("<svg").unwrap_or(0);
            svg[start..].to_string()
        }
        Err(msg) => format!(
            "<p class=\"note\">{}</p><pre>{}</pre>",
            esc(&msg),
            esc(&dot)
        ),
    }
}

/// The matrix for machines: one object per checked cell.
fn matrix_json(m: &Matrix) -> serde_json::Value {
    let cells: Vec<serde_json::Value> = m
        .cells
        .iter()
        .map(|((s, k), c)| {
            serde_json::json!({
                "type": type_of(s),
                "state": s,
                "call": k.name(),
                "outcomes": c.outcomes,
                "scenario_lines": c.scenario,
                "explored_steps": c.explored,
                "enumerated_transitions": c.enumerated,
                "disagree": c.disagree,
            })
        })
        .collect();
    let empty: Vec<String> = m
        .empty_cells()
        .iter()
        .map(|(s, k)| format!("{} in {s}", k.name()))
        .collect();
    let calls = m.calls();
    let grid: usize = m
        .states()
        .iter()
        .map(|(ty, st)| st.len() * calls.get(ty).map_or(0, |c| c.len()))
        .sum();
    serde_json::json!({
        "cells": cells,
        "checked_cells": cells.len(),
        "grid_cells": grid,
        "unchecked": empty,
    })
}

fn cell_html(c: Option<&Cell>) -> String {
    let Some(c) = c.filter(|c| c.checked() > 0) else {
        return "<td class=\"cell empty\" title=\"nothing checked this cell\">·</td>".into();
    };
    let class = if c.disagree > 0 { "bad" } else { "ok" };
    let outcomes: Vec<String> = c.outcomes.iter().map(|o| esc(o)).collect();
    format!(
        "<td class=\"cell {class}\" title=\"scenario lines {} · explored steps {} · enumerated transitions {} · disagreements {}\"><span class=\"o\">{}</span><span class=\"n\">{}/{}/{}</span></td>",
        c.scenario,
        c.explored,
        c.enumerated,
        c.disagree,
        outcomes.join(" · "),
        c.scenario,
        c.explored,
        c.enumerated
    )
}

fn page(params: &Params, m: &Matrix, f: &Findings, args: &ReportArgs, secs: f64) -> String {
    let uts = nix::sys::utsname::uname().ok();
    let field = |g: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref()
            .map(|u| g(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>udsim conformance report</title>\n<style>{STYLE}</style></head><body>\n<h1>udsim conformance report</h1>\n"
    );
    let _ = write!(
        h,
        "<section id=\"host\"><h2>Host and kernel</h2><table class=\"kv\"><tr><th>kernel</th><td>{} {} {}</td></tr><tr><th>build</th><td>{}</td></tr><tr><th>host</th><td>{}</td></tr><tr><th>made</th><td data-unix=\"{now}\">{}</td></tr><tr><th>udsim</th><td>{}</td></tr><tr><th>took</th><td>{secs:.1} s</td></tr></table>\n<p>Other kernels (user-mode-linux 6.1, Linux 6.12 under qemu) are judged by <code>tools/uml-check</code> and <code>tools/qemu-check</code> in CI; this page shows this kernel only.</p></section>\n",
        esc(&field(|u| u.sysname())),
        esc(&field(|u| u.release())),
        esc(&field(|u| u.machine())),
        esc(&field(|u| u.version())),
        esc(&field(|u| u.nodename())),
        crate::bench_report::fmt_utc(now as f64),
        env!("CARGO_PKG_VERSION"),
    );
    h.push_str("<section id=\"params\"><h2>Calibrated parameters</h2><table class=\"kv\">");
    for (k, v) in params.named() {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    h.push_str("</table></section>\n");
    let _ = write!(
        h,
        "<section id=\"runs\"><h2>What was checked</h2><ul><li>bundled scenarios: {} run ({} skipped: they require other parameters), {} diverged{}</li><li>exploration: {} scripts (seed {}), {} steps, {} diverged</li>",
        f.scenarios_run,
        f.scenarios_skipped,
        f.scenarios_diverged.len(),
        if f.scenarios_diverged.is_empty() {
            String::new()
        } else {
            format!(": {}", esc(&f.scenarios_diverged.join(", ")))
        },
        f.explored,
        args.seed,
        f.explored_steps,
        f.explored_diverged
    );
    for (ty, states, transitions, replays, bad) in &f.enumerations {
        let _ = write!(
            h,
            "<li>enumeration of {ty} (depth {}, 2 sockets, 1 path): {states} states, {transitions} transitions, {replays} replay scripts on the kernel, {bad} diverged</li>",
            args.depth
        );
    }
    h.push_str("</ul></section>\n");
    h.push_str("<section id=\"matrix\"><h2>Call × state matrix</h2><p>Each cell: the outcomes the model predicts for the call on a socket in that state (over every line that reached it), and how many kernel-checked <b>scenario lines / explored steps / enumerated transitions</b> reached it. Green: the kernel agreed every time; red: it disagreed at least once; a dot: nothing checked it. A socket in several states at once (connected and unread-data) counts in each.</p><p><label>Filter calls: <input id=\"filter\" type=\"search\" placeholder=\"e.g. recv\"></label> <span id=\"shown\"></span></p>\n");
    let states = m.states();
    let calls = m.calls();
    for ty in TYPES {
        let (Some(st), Some(ks)) = (states.get(ty), calls.get(ty)) else {
            continue;
        };
        let _ = write!(
            h,
            "<h3>{ty}</h3><div class=\"scroll\"><table class=\"matrix\" data-type=\"{ty}\"><thead><tr><th>call \\ state</th>"
        );
        for s in st {
            let _ = write!(h, "<th>{}</th>", esc(s));
        }
        h.push_str("</tr></thead><tbody>");
        for k in ks {
            let _ = write!(h, "<tr data-call=\"{}\"><th>{}</th>", k.name(), k.name());
            for s in st {
                h.push_str(&cell_html(m.cells.get(&(*s, *k))));
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table></div>\n");
    }
    h.push_str("</section>\n<section id=\"rules\"><h2>Rules and the scenarios that show them</h2><table class=\"rules\"><thead><tr><th>rule</th><th>what it says</th><th>scenarios</th></tr></thead><tbody>");
    for (name, desc) in crate::model::rules::RULES {
        let shown = f.shown.get(name).map(|v| v.join(", ")).unwrap_or_default();
        let _ = write!(
            h,
            "<tr{}><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            if shown.is_empty() {
                " class=\"unshown\""
            } else {
                ""
            },
            esc(name),
            esc(desc),
            esc(&shown)
        );
    }
    h.push_str("</tbody></table></section>\n<section id=\"diagrams\"><h2>State diagrams</h2><p>Derived from the enumeration (<code>udsim diagram --coarse</code>); dashed edges are another socket's call.</p>");
    for (ty, d) in &f.diagrams {
        let _ = write!(h, "<h3>{ty}</h3><div class=\"diagram\">{d}</div>");
    }
    let _ = write!(h, "</section>\n<script>{SCRIPT}</script>\n</body></html>\n");
    h
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.6em}\
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:2px 5px;vertical-align:top}\
.kv th{text-align:left;background:#f4f4f4}.scroll{overflow-x:auto}.matrix th{background:#f4f4f4;font-weight:600;white-space:nowrap}\
.matrix td.cell{font-size:11px;min-width:5em}.cell.ok{background:#e3f6e3}.cell.bad{background:#f9d0d0}.cell.empty{background:#fafafa;color:#999;text-align:center}\
.cell .o{display:block}.cell .n{display:block;color:#555;font-family:monospace}.rules td{font-size:12px}.unshown{color:#a00}\
.diagram svg{max-width:100%;height:auto}.note{color:#a00}code{font-size:12px}";

const SCRIPT: &str = "(function(){var f=document.getElementById('filter'),s=document.getElementById('shown');\
var rows=Array.prototype.slice.call(document.querySelectorAll('table.matrix tbody tr'));\
function upd(){var q=f.value.trim().toLowerCase(),n=0;rows.forEach(function(r){var on=!q||r.getAttribute('data-call').indexOf(q)>=0;r.style.display=on?'':'none';if(on)n++;});\
s.textContent=n+' of '+rows.length+' rows, '+document.querySelectorAll('td.cell').length+' cells';}\
f.addEventListener('input',upd);upd();})();";
