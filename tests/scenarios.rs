//! The scenario library: every `scenarios/*.uds` runs through the checker and must agree with the kernel (and
//! with its written results); together the scenarios must cover every call in every state the model knows.

use std::collections::{BTreeMap, BTreeSet};
use udsim::check::{Checker, Names, Options};
use udsim::model::Model;
use udsim::script::{parse, CallKind, Script};

/// Every `scenarios/*.uds` as (file name, text), sorted.
fn library_texts() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "uds"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, text)
        })
        .collect()
}

fn library() -> Vec<(String, Script)> {
    library_texts()
        .into_iter()
        .map(|(name, text)| {
            let script = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, script)
        })
        .collect()
}

/// Scenarios that reach a point where the model deliberately stops: a pid it cannot know exists (242).
const DELIBERATE_STOPS: &[&str] = &["242-creds-explicit.uds"];

/// One test runs the library on the kernel (scenario 19 holds an abstract name, which is machine-global, so two
/// threads running it at once would collide): every scenario agrees, and every model rule is shown by one.
#[test]
fn every_scenario_agrees_with_the_kernel_and_every_rule_is_shown() {
    let lib = library();
    assert!(lib.len() >= 60, "only {} scenarios", lib.len());
    let mut ck = Checker::new().expect("checker");
    let mut failures = Vec::new();
    let mut shown = BTreeSet::new();
    for (name, script) in &lib {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios")
                .join(name),
        )
        .expect("readable");
        if let Some(why) = udsim::check::unmet(ck.params(), &udsim::check::requirements(&text)) {
            eprintln!("{name}: skipped, requires {why}");
            continue;
        }
        let run = ck.run(script, Options::default()).expect("runs");
        // A model that stops ("not modelled") where it should predict would pass on written results alone:
        // only the scenarios that show a deliberate stop may be partly modelled.
        let partial_ok = DELIBERATE_STOPS.contains(&name.as_str());
        if !run.agrees() || (run.unmodelled.is_some() && !partial_ok) {
            failures.push(format!("# == {name}\n{}", udsim::cli::transcript(&run)));
        }
        shown.extend(
            run.steps
                .iter()
                .filter_map(|s| s.prediction.as_ref().map(|p| p.rule.to_string())),
        );
    }
    assert!(
        failures.is_empty(),
        "{} scenarios disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let rules = model_rules();
    assert!(
        rules.len() > 30,
        "found only {} rules in the model source",
        rules.len()
    );
    // Rules a scenario cannot show on any host, each shown on the kernel by a named test instead:
    // EMFILE needs a low RLIMIT_NOFILE (tests/cli.rs, `emfile_is_predicted_at_the_right_line`), ETOOMANYREFS
    // that and an unprivileged user (`etoomanyrefs_is_predicted_for_an_unprivileged_sender`).
    const SHOWN_BY_TESTS: &[&str] = &[
        "emfile_past_rlimit_nofile",
        "rights_past_nofile_in_flight_is_etoomanyrefs",
    ];
    let missing: Vec<&String> = rules
        .iter()
        .filter(|r| !shown.contains(*r) && !SHOWN_BY_TESTS.contains(&r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "model rules no scenario shows on the kernel: {missing:?}"
    );
}

#[test]
fn every_scenario_line_has_its_result_written_in() {
    for (name, script) in library() {
        for l in &script.lines {
            assert!(
                l.expect.is_some(),
                "{name}: line {} has no result written in",
                l.line_no
            );
        }
    }
}

/// The states a socket can be in, as `Model::states_of` names them.
const STATES: &[&str] = &[
    "fresh",
    "bound",
    "listening",
    "listening-with-pending",
    "pending",
    "connected",
    "half-closed-rd",
    "half-closed-wr",
    "shut-both",
    "reset",
    "peer-closed",
    "closed",
];

const SEQPACKET_STATES: &[&str] = &[
    "seqpacket-fresh",
    "seqpacket-bound",
    "seqpacket-listening",
    "seqpacket-listening-with-pending",
    "seqpacket-pending",
    "seqpacket-connected",
    "seqpacket-half-closed-rd",
    "seqpacket-half-closed-wr",
    "seqpacket-shut-both",
    "seqpacket-reset",
    "seqpacket-peer-closed",
];

/// Datagram sockets have no listening or pending states.
const DGRAM_STATES: &[&str] = &[
    "dgram-fresh",
    "dgram-bound",
    "dgram-connected",
    "dgram-peer-closed",
    "dgram-unread-data",
];

#[test]
fn scenarios_cover_every_call_in_every_state() {
    let params = udsim::kernel::calibrate::params().expect("calibrate");
    let mut seen: BTreeMap<(CallKind, &str), BTreeSet<String>> = BTreeMap::new();
    let mut full_buffer = 0;
    for (name, script) in library() {
        let mut m = Model::new(params.clone());
        let mut names = Names::default();
        for l in &script.lines {
            let states = l.call.subject().map(|s| m.states_of(s)).unwrap_or_default();
            full_buffer += states.contains(&"full-buffer") as usize;
            for st in states {
                seen.entry((l.call.kind(), st))
                    .or_default()
                    .insert(name.clone());
            }
            let p = m.step(&l.call).expect("known names");
            let created = names.names_for(l, p.allowed.first().map_or(0, |o| o.new_fds()));
            m.name_new(&created);
            names.after(&created);
        }
    }
    // Every call that acts on a socket, in every state of every type.
    let calls = [
        CallKind::Bind,
        CallKind::Listen,
        CallKind::Accept,
        CallKind::Connect,
        CallKind::Write,
        CallKind::Read,
        CallKind::Send,
        CallKind::SendTo,
        CallKind::SendMsg,
        CallKind::Recv,
        CallKind::RecvFrom,
        CallKind::RecvMsg,
        CallKind::Shutdown,
        CallKind::Close,
        CallKind::GetSockName,
        CallKind::GetPeerName,
        CallKind::Poll,
        CallKind::GetSockOpt,
        CallKind::SetSockOpt,
        CallKind::Ioctl,
        CallKind::Dup,
        CallKind::Nonblock,
    ];
    let states: Vec<&str> = STATES
        .iter()
        .chain(SEQPACKET_STATES)
        .chain(DGRAM_STATES)
        .copied()
        .collect();
    let missing: Vec<String> = calls
        .iter()
        .flat_map(|c| states.iter().map(move |s| (*c, *s)))
        .filter(|(c, s)| {
            // v2 calls on a closed name were not in the v1 matrix; they answer EBADF like the rest.
            *s != "closed" || CallKind::V1.contains(c)
        })
        .filter(|k| !seen.contains_key(k))
        .map(|(c, s)| format!("{} in {s}", c.name()))
        .collect();
    assert!(
        missing.is_empty(),
        "no scenario runs: {}",
        missing.join(", ")
    );
    assert!(
        full_buffer > 0,
        "no scenario acts on a socket with a full send buffer"
    );
}

/// Rule names the model can give, read from its source (`Prediction::one/err/ok("rule", …)`).
fn model_rules() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model");
    let mut text = String::new();
    for e in std::fs::read_dir(dir).expect("model source").flatten() {
        if e.path().extension().is_none_or(|x| x != "rs") {
            continue;
        }
        text.push_str(&std::fs::read_to_string(e.path()).expect("model source"));
    }
    let mut rules = BTreeSet::new();
    for pat in [
        "Prediction::one(\"",
        "Prediction::err(\"",
        "Prediction::ok(\"",
    ] {
        for (i, _) in text.match_indices(pat) {
            let rest = &text[i + pat.len()..];
            if let Some(end) = rest.find('"') {
                rules.insert(rest[..end].to_string());
            }
        }
    }
    // Rules decided in a helper that returns (rule, errno) pairs.
    for (i, _) in text.match_indices("Err((\"") {
        let rest = &text[i + 6..];
        if let Some(end) = rest.find('"') {
            rules.insert(rest[..end].to_string());
        }
    }
    rules
}

/// The model alone, with no kernel, against every result written in the library, under every recorded kernel's
/// parameters (`Params::PRESETS`: this host's 6.18, UML's 6.1, qemu's 6.12) for the scenarios whose
/// `# requires:` hold there: each written result must be exactly what the model predicts (every outcome the
/// model allows is one the line admits, and it allows one). A model that allows everything, or predicts wrongly,
/// fails here even on a machine without AF_UNIX.
#[test]
fn every_written_result_is_what_the_model_predicts_on_every_recorded_kernel() {
    use udsim::check::{model_only, requirements, unmet};
    use udsim::model::params::PRESETS;
    use udsim::model::Params;

    let texts = library_texts();
    let mut failures = Vec::new();
    for (preset, _) in PRESETS {
        let params = Params::preset(preset).expect("bundled preset");
        let (mut checked, mut lines) = (0, 0);
        for (name, text) in &texts {
            if unmet(&params, &requirements(text)).is_some() {
                continue;
            }
            let script = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            checked += 1;
            let predictions =
                model_only(&params, &script).unwrap_or_else(|e| panic!("{preset}: {name}: {e}"));
            for (l, p) in script.lines.iter().zip(&predictions) {
                if !p.is_modelled() {
                    if !DELIBERATE_STOPS.contains(&name.as_str()) {
                        failures.push(format!(
                            "{preset}: {name} line {}: not modelled ({})",
                            l.line_no, p.rule
                        ));
                    }
                    break;
                }
                let e = l
                    .expect
                    .as_ref()
                    .expect("every line has its result written in");
                lines += 1;
                if let Some(o) = p.allowed.iter().find(|o| !e.admits(o)) {
                    failures.push(format!(
                        "{preset}: {name} line {}: `{}` is written, the model says {o:?} (rule {})",
                        l.line_no,
                        udsim::script::fmt_call(&l.call),
                        p.rule
                    ));
                    break;
                }
            }
        }
        // Each kernel's share of the library is most of it (the rest require another kernel's side).
        assert!(
            checked > 400 && lines > 5000,
            "{preset}: only {checked} scenarios, {lines} lines checked"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
