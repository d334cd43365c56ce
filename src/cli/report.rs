//! Outputs for machines: `--format json` (JSON Lines, built with serde_json) and `--junit FILE` (JUnit XML).

use super::{Report, Verdict};
use crate::check::Run;
use crate::explore::Stats;
use crate::script::{fmt_call, fmt_line, fmt_outcome, Line};
use serde_json::{json, Map, Value};

/// The first divergence of a run: line, call, kernel outcome, what the model allowed and its rule, the
/// written result. `None` if the run did not diverge.
pub fn divergence_json(run: &Run) -> Option<Value> {
    let d = run.divergence()?;
    let step = run.step(d.step)?;
    let call = &step.line.call;
    let model = d.model.as_ref().filter(|m| m.is_modelled());
    let written = step.line.expect.as_ref().map(|e| {
        fmt_line(&Line {
            call: call.clone(),
            expect: Some(e.clone()),
            line_no: 0,
        })
    });
    let what = match (d.model_disagrees, d.expectation_fails) {
        (true, true) => "the kernel disagrees with the model and with the written result",
        (true, false) => "the kernel disagrees with the model",
        _ => "the kernel disagrees with the written result",
    };
    Some(json!({
        "line": (d.line_no > 0).then_some(d.line_no),
        "step": d.step + 1,
        "what": what,
        "call": fmt_call(call),
        "kernel": fmt_outcome(call, &d.kernel, &step.created),
        "model_allowed": model.map(|m| {
            m.allowed
                .iter()
                .map(|o| fmt_outcome(call, o, &step.created))
                .collect::<Vec<_>>()
        }),
        "rule": model.map(|m| m.rule),
        "written": written,
        "model_disagrees": d.model_disagrees,
        "written_disagrees": d.expectation_fails,
    }))
}

/// Where the model stopped covering a run (`NOT MODELLED from line N`).
fn not_modelled_json(run: &Run) -> Option<Value> {
    let (i, rule) = run.unmodelled?;
    let line = &run.step(i)?.line;
    Some(json!({
        "line": line.line_no,
        "call": fmt_call(&line.call),
        "rule": rule,
    }))
}

/// One script's object (`transcript`: its run's transcript).
pub fn script_json(r: &Report, transcript: Option<String>) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), "script".into());
    o.insert("path".into(), r.name.clone().into());
    o.insert("verdict".into(), r.verdict.name().into());
    o.insert(
        "lines".into(),
        r.run.as_ref().map_or(0, |run| run.lines).into(),
    );
    if let Some(run) = &r.run {
        o.insert("exact".into(), run.exact.into());
        if let Some(d) = divergence_json(run) {
            o.insert("divergence".into(), d);
        }
        if let Some(n) = not_modelled_json(run) {
            o.insert("not_modelled".into(), n);
        }
        if r.verdict == Verdict::Diverge {
            o.insert("transcript".into(), transcript.unwrap_or_default().into());
        }
    }
    match r.verdict {
        Verdict::Skipped => {
            o.insert("reason".into(), r.reason.clone().into());
        }
        Verdict::Error => {
            o.insert("error".into(), r.reason.clone().into());
        }
        _ => {}
    }
    if let Some(n) = r.blessed {
        o.insert("blessed_lines".into(), n.into());
    }
    o.insert("seconds".into(), json!((r.secs * 1e6).round() / 1e6));
    Value::Object(o)
}

/// An exploration's statistics.
pub fn stats_json(seed: u64, stats: &Stats) -> Value {
    let outcomes: Map<String, Value> = stats
        .outcomes
        .iter()
        .map(|(k, m)| {
            let classes: Map<String, Value> =
                m.iter().map(|(c, n)| (c.clone(), (*n).into())).collect();
            (k.name().to_string(), Value::Object(classes))
        })
        .collect();
    let states: Map<String, Value> = stats
        .states
        .iter()
        .map(|(s, n)| (s.to_string(), (*n).into()))
        .collect();
    json!({
        "seed": seed,
        "cases": stats.cases,
        "ops": stats.ops,
        "exact": stats.exact,
        "exact_rate": stats.exact_rate(),
        "inexact": stats.inexact,
        "in_flight_steps": stats.in_flight,
        "awaiting_collector_steps": stats.awaiting_collector,
        "outcomes": outcomes,
        "states": states,
    })
}

/// Counts per verdict, with the names the script objects use.
pub fn counts_json(t: &super::Tally) -> Value {
    json!({
        "agree": t.agree,
        "diverge": t.diverge,
        "partly-modelled": t.partial,
        "skipped": t.skipped,
        "error": t.errors,
    })
}

/// One line of JSON (a closed stdout is the caller's business).
pub fn line(v: &Value) -> String {
    let mut s = serde_json::to_string(v).unwrap_or_else(|e| {
        // Only non-string map keys or a failing Serialize impl make this fail; neither exists here.
        serde_json::to_string(&json!({"type": "error", "error": e.to_string()})).unwrap_or_default()
    });
    s.push('\n');
    s
}

/// One `<testcase>`.
pub struct Case {
    pub classname: String,
    pub name: String,
    pub secs: f64,
    pub outcome: CaseOutcome,
    /// `<system-out>`: what the text output said about a passing script worth a note (partly modelled).
    pub out: Option<String>,
}

pub enum CaseOutcome {
    Pass,
    Failure { message: String, body: String },
    Error { message: String, body: String },
    Skipped { message: String },
}

/// `classname` and `name` of a script: the directory (with `.` for `/`) and the file name.
pub fn case_names(path: &str) -> (String, String) {
    if path == "-" {
        return ("stdin".into(), "-".into());
    }
    let (dir, file) = match path.rsplit_once('/') {
        Some((d, f)) => (d, f),
        None => ("", path),
    };
    let dir = dir.trim_start_matches("./").trim_matches('/');
    let classname = if dir.is_empty() {
        "udsim".to_string()
    } else {
        dir.replace('/', ".")
    };
    (classname, file.to_string())
}

/// The `<testcase>` of a script's report (`transcript`: its run's transcript).
pub fn case_of(r: &Report, transcript: Option<String>) -> Case {
    let (classname, name) = case_names(&r.name);
    let body = || match &transcript {
        Some(t) => format!("# == {}\n{t}", r.name),
        None => String::new(),
    };
    let outcome = match r.verdict {
        Verdict::Agree | Verdict::PartlyModelled => CaseOutcome::Pass,
        Verdict::Skipped => CaseOutcome::Skipped {
            message: r.reason.clone().unwrap_or_default(),
        },
        Verdict::Diverge => CaseOutcome::Failure {
            message: r
                .run
                .as_ref()
                .and_then(divergence_json)
                .map(|d| {
                    let at = d["line"]
                        .as_u64()
                        .map_or_else(|| format!("step {}", d["step"]), |l| format!("line {l}"));
                    format!("DIVERGENCE at {at}: {}", d["what"].as_str().unwrap_or(""))
                })
                .unwrap_or_else(|| "divergence".into()),
            body: body(),
        },
        Verdict::Error => CaseOutcome::Error {
            message: r.reason.clone().unwrap_or_default(),
            body: {
                let mut b = r.errs.join("\n");
                b.push('\n');
                b.push_str(&body());
                b
            },
        },
    };
    let out = match (r.verdict, &r.run) {
        (Verdict::PartlyModelled, Some(run)) => Some(crate::check::describe(run)),
        _ => None,
    };
    Case {
        classname,
        name,
        secs: r.secs,
        outcome,
        out,
    }
}

/// Text as XML character data or an attribute value: the five special characters escaped, line ends kept
/// in attributes, and characters XML 1.0 cannot hold at all (C0 controls other than tab, line feed and
/// carriage return; U+FFFE, U+FFFF) replaced by U+FFFD.
pub fn escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\'' if attr => out.push_str("&apos;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The JUnit XML document: one `<testsuite>` with a `<testcase>` per script (and one for the exploration).
pub fn junit_xml(suite: &str, cases: &[Case], secs: f64) -> String {
    use std::fmt::Write as _;
    let count = |f: fn(&CaseOutcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count();
    let failures = count(|o| matches!(o, CaseOutcome::Failure { .. }));
    let errors = count(|o| matches!(o, CaseOutcome::Error { .. }));
    let skipped = count(|o| matches!(o, CaseOutcome::Skipped { .. }));
    let counts = format!(
        "tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{secs:.3}\"",
        cases.len()
    );
    let suite = escape(suite, true);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(x, "<testsuites name=\"{suite}\" {counts}>");
    let _ = writeln!(x, "  <testsuite name=\"{suite}\" {counts}>");
    for c in cases {
        let _ = write!(
            x,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            escape(&c.classname, true),
            escape(&c.name, true),
            c.secs
        );
        if matches!(c.outcome, CaseOutcome::Pass) && c.out.is_none() {
            x.push_str("/>\n");
            continue;
        }
        x.push_str(">\n");
        match &c.outcome {
            CaseOutcome::Pass => {}
            CaseOutcome::Failure { message, body } => {
                let _ = writeln!(
                    x,
                    "      <failure type=\"divergence\" message=\"{}\">{}</failure>",
                    escape(message, true),
                    escape(body, false)
                );
            }
            CaseOutcome::Error { message, body } => {
                let _ = writeln!(
                    x,
                    "      <error type=\"script-error\" message=\"{}\">{}</error>",
                    escape(message, true),
                    escape(body, false)
                );
            }
            CaseOutcome::Skipped { message } => {
                let _ = writeln!(x, "      <skipped message=\"{}\"/>", escape(message, true));
            }
        }
        if let Some(o) = &c.out {
            let _ = writeln!(x, "      <system-out>{}</system-out>", escape(o, false));
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_makes_any_text_well_formed() {
        assert_eq!(
            escape("a<b>&\"c'\n\u{1}", true),
            "a&lt;b&gt;&amp;&quot;c&apos;&#10;\u{fffd}"
        );
        assert_eq!(escape("x\ty\nz\r", false), "x\ty\nz&#13;");
    }

    #[test]
    fn case_names_split_the_path() {
        assert_eq!(
            case_names("scenarios/28-backlog-0.uds"),
            ("scenarios".into(), "28-backlog-0.uds".into())
        );
        assert_eq!(case_names("/tmp/a/b.uds"), ("tmp.a".into(), "b.uds".into()));
        assert_eq!(case_names("b.uds"), ("udsim".into(), "b.uds".into()));
        assert_eq!(case_names("-"), ("stdin".into(), "-".into()));
    }
}
