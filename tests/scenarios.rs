//! The scenario library: every `scenarios/*.uds` runs through the checker and must agree with the kernel (and
//! with its written results); together the scenarios must cover every call in every state the model knows.

use std::collections::{BTreeMap, BTreeSet};
use udsim::check::{Checker, Options};
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

/// Every call that acts on a socket.
const SOCKET_CALLS: &[CallKind] = &[
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
    use udsim::check::{requirements, unmet};
    use udsim::model::params::PRESETS;
    use udsim::model::Params;

    let texts = library_texts();
    let mut failures = Vec::new();
    let mut anywhere = std::collections::HashSet::new();
    for (preset, _) in PRESETS {
        let params = Params::preset(preset).expect("bundled preset");
        let (mut checked, mut lines) = (0, 0);
        for (name, text) in &texts {
            if unmet(&params, &requirements(text)).is_some() {
                continue;
            }
            checked += 1;
            anywhere.insert(name.clone());
            lines += model_agrees_with_written(preset, &params, name, text, &mut failures);
        }
        // Each kernel's share of the library is most of it (the rest require another kernel's side).
        assert!(
            checked > 400 && lines > 5000,
            "{preset}: only {checked} scenarios, {lines} lines checked"
        );
    }
    // A scenario recorded under a host setting no recorded kernel has (e.g. `protected_hardlinks=false`):
    // under this host's preset with the settings it requires.
    let (host, host_text) = PRESETS[0];
    let mut others = 0;
    for (name, text) in texts.iter().filter(|(n, _)| !anywhere.contains(n)) {
        let reqs = requirements(text);
        let mut lines: Vec<String> = host_text
            .lines()
            .filter(|l| {
                !reqs
                    .iter()
                    .any(|(k, _)| l.split_whitespace().next() == Some(k.as_str()))
            })
            .map(str::to_string)
            .collect();
        lines.extend(reqs.iter().map(|(k, v)| format!("{k} {v}")));
        let params = Params::from_preset(&lines.join("\n"))
            .unwrap_or_else(|e| panic!("{name}: its requirements on {host}: {e}"));
        assert_eq!(unmet(&params, &reqs), None, "{name}");
        model_agrees_with_written(
            &format!("{host} as required"),
            &params,
            name,
            text,
            &mut failures,
        );
        others += 1;
    }
    assert!(
        others >= 1,
        "the library has a scenario of a setting no recorded kernel has"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Steps the model alone through a scenario; a line whose written result does not admit every outcome the model
/// allows is a failure (the first of the scenario). Returns the lines checked.
fn model_agrees_with_written(
    preset: &str,
    params: &udsim::model::Params,
    name: &str,
    text: &str,
    failures: &mut Vec<String>,
) -> usize {
    let script = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let predictions = udsim::check::model_only(params, &script)
        .unwrap_or_else(|e| panic!("{preset}: {name}: {e}"));
    let mut lines = 0;
    for (l, p) in script.lines.iter().zip(&predictions) {
        if !p.is_modelled() {
            if !DELIBERATE_STOPS.contains(&name) {
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
    lines
}

/// The call × state matrix filled by the scenario library, stepped by the model alone.
fn library_matrix(params: &udsim::model::Params) -> udsim::coverage::Matrix {
    let mut m = udsim::coverage::Matrix::default();
    for (_, script) in library() {
        m.add_script(params, &script, udsim::coverage::Source::Scenario);
    }
    m
}

/// The coverage gate: the call × state matrix (`udsim::coverage`, the one `udsim report` draws)
/// filled by the scenario library, over every state the model reaches — in the scenarios or in a
/// bounded-exhaustive enumeration of each type (depth 5, 2 sockets, 1 path) — and every call that
/// acts on a socket. A reachable cell no scenario line fills fails.
#[test]
fn scenarios_fill_every_reachable_cell_of_the_matrix() {
    use udsim::coverage::{type_of, Matrix};
    let params = udsim::kernel::calibrate::params().expect("calibrate");
    let scen = library_matrix(&params);
    let mut reached = scen.states();
    // The states every type is known to have, reached or not (a scenario deleted cannot hide one).
    for &st in STATES.iter().chain(SEQPACKET_STATES).chain(DGRAM_STATES) {
        reached.entry(type_of(st)).or_default().insert(st);
    }
    for ty in ["stream", "dgram", "seqpacket"] {
        let u = udsim::enumerate::universe_of(5, 2, 1, ty, &params).expect("universe");
        let e = udsim::enumerate::enumerate(&params, &u);
        let mut m = Matrix::default();
        m.add_enumeration(&e, |_| true);
        for (t, states) in m.states() {
            reached.entry(t).or_default().extend(states);
        }
    }
    let mut missing = Vec::new();
    for states in reached.values() {
        for &s in states {
            for &k in SOCKET_CALLS {
                if scen.cells.get(&(s, k)).is_none_or(|c| c.scenario == 0) {
                    missing.push(format!("{} in {s} ({})", k.name(), type_of(s)));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} reachable cells no scenario fills: {}",
        missing.len(),
        missing.join(", ")
    );
}

/// The call the matrix scenarios make on subject `s` for each kind (non-blocking sockets only:
/// `nonblock(s, 1)` keeps them so).
fn matrix_call(k: CallKind, s: &str) -> String {
    match k {
        CallKind::Bind => format!("bind({s}, \"z.sock\")"),
        CallKind::Listen => format!("listen({s}, 1)"),
        CallKind::Accept => format!("accept({s})"),
        CallKind::Connect => format!("connect({s}, \"a.sock\")"),
        CallKind::Write => format!("write({s}, \"x\")"),
        CallKind::Read => format!("read({s}, 1)"),
        CallKind::Send => format!("send({s}, \"x\", 0)"),
        CallKind::SendTo => format!("sendto({s}, \"x\", \"a.sock\")"),
        CallKind::SendMsg => format!("sendmsg({s}, \"x\", flags=0)"),
        CallKind::Recv => format!("recv({s}, 1, 0)"),
        CallKind::RecvFrom => format!("recvfrom({s}, 1)"),
        CallKind::RecvMsg => format!("recvmsg({s}, 1)"),
        CallKind::Shutdown => format!("shutdown({s}, RDWR)"),
        CallKind::Close => format!("close({s})"),
        CallKind::GetSockName => format!("getsockname({s})"),
        CallKind::GetPeerName => format!("getpeername({s})"),
        CallKind::Poll => format!("poll({s})"),
        CallKind::GetSockOpt => format!("getsockopt({s}, SO_ERROR)"),
        CallKind::SetSockOpt => format!("setsockopt({s}, SO_RCVBUF, 5000)"),
        CallKind::Ioctl => format!("ioctl({s}, SIOCINQ)"),
        CallKind::Dup => format!("dup({s})"),
        CallKind::Nonblock => format!("nonblock({s}, 1)"),
        other => panic!("no matrix call for {}", other.name()),
    }
}

/// Writes `scenarios/5NN-matrix-STATE.uds` for every state with reachable cells no scenario
/// fills: per missing call, the enumeration's shortest script to a socket in that state (its
/// names renamed `cK_i` for section K), the call, then the section's sockets closed and its
/// files unlinked; every result recorded on this kernel. Run it, then review the files:
/// `cargo test --test scenarios write_matrix_scenarios -- --ignored`.
#[test]
#[ignore]
fn write_matrix_scenarios() {
    use udsim::script::fmt_call;
    let params = udsim::kernel::calibrate::params().expect("calibrate");
    let scen = library_matrix(&params);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    // After the matrix scenarios already written (501 on).
    let mut number = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .split('-')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .filter(|n| (501..600).contains(n))
        .max()
        .map_or(501, |n| n + 1);
    let mut ck = Checker::new().expect("checker");
    for ty in ["stream", "dgram", "seqpacket"] {
        let u = udsim::enumerate::universe_of(5, 2, 1, ty, &params).expect("universe");
        let e = udsim::enumerate::enumerate(&params, &u);
        // state → call kinds missing, in the order of the first transition that reaches the state.
        let mut by_state: BTreeMap<&'static str, Vec<CallKind>> = BTreeMap::new();
        let mut first: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (i, t) in e.transitions.iter().enumerate() {
            if let (Some((before, _)), Some(_)) = (&t.subject, t.to) {
                for &st in before {
                    first.entry(st).or_insert(i);
                }
            }
        }
        for &st in first.keys() {
            for &k in SOCKET_CALLS {
                if scen.cells.get(&(st, k)).is_none_or(|c| c.scenario == 0) {
                    by_state.entry(st).or_default().push(k);
                }
            }
        }
        for (st, kinds) in by_state {
            let t = &e.transitions[first[st]];
            let from = &e.states[t.from];
            let subject = t.call.subject().expect("a subject").clone();
            let mut text = String::new();
            for (sec, &k) in kinds.iter().enumerate() {
                let rename = |n: &str| format!("c{sec}_{}", n.trim_start_matches('s'));
                let mut m = Model::new(params.clone());
                let mut made = 0;
                text.push_str(&format!("# {} in {st}\n{UNLINK}", k.name()));
                let mut mine = Vec::new();
                for c in &from.calls {
                    let mut c2 = c.clone();
                    if let Some(n) = c2.subject_mut() {
                        *n = rename(n);
                    }
                    let p = m.step(c).expect("model steps the prefix");
                    let n = p.allowed[0].new_fds();
                    let names: Vec<String> = (made..made + n).map(|i| format!("s{i}")).collect();
                    m.name_new(&names);
                    made += n;
                    let renamed: Vec<String> = names.iter().map(|x| rename(x)).collect();
                    mine.extend(renamed.iter().cloned());
                    if renamed.is_empty() {
                        text.push_str(&format!("{}\n", fmt_call(&c2)));
                    } else {
                        text.push_str(&format!("{} -> {}\n", fmt_call(&c2), renamed.join(", ")));
                    }
                }
                text.push_str(&format!("{}\n", matrix_call(k, &rename(&subject))));
                for n in &mine {
                    text.push_str(&format!("close({n})\n"));
                }
            }
            write_matrix_file(
                &mut ck,
                &params,
                &dir,
                &mut number,
                ty,
                st,
                kinds.len(),
                "by the enumeration's shortest script: depth 5, 2 sockets, 1 path",
                text,
            );
        }
    }
    // States the depth-5 enumeration does not reach, which scenarios do: reached by a hand-written
    // prefix each (host-independent: SO_SNDBUF 0 is the kernel's floor, 4608).
    for (st, ty, prefix, subject, names) in HAND_PREFIXES {
        let missing: Vec<CallKind> = SOCKET_CALLS
            .iter()
            .copied()
            .filter(|k| scen.cells.get(&(*st, *k)).is_none_or(|c| c.scenario == 0))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let mut text = String::new();
        for (sec, &k) in missing.iter().enumerate() {
            let p = format!("c{sec}_");
            text.push_str(&format!("# {} in {st}\n{UNLINK}", k.name()));
            text.push_str(&prefix.replace("{p}", &p));
            text.push_str(&format!("{}\n", matrix_call(k, &format!("{p}{subject}"))));
            for n in *names {
                text.push_str(&format!("close({p}{n})\n"));
            }
        }
        write_matrix_file(
            &mut ck,
            &params,
            &dir,
            &mut number,
            ty,
            st,
            missing.len(),
            "by a written prefix: SO_SNDBUF 0, the kernel's floor of 4608 bytes, then one large message, or a peer that disconnected with our datagram unread",
            text,
        );
    }
}

/// Each section starts with its files gone.
const UNLINK: &str = "unlink(\"a.sock\")\nunlink(\"b.sock\")\nunlink(\"z.sock\")\n";

/// (state, type, prefix with `{p}` before each name, subject, names to close).
const HAND_PREFIXES: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "dgram-full-buffer",
        "dgram",
        "socket(DGRAM) -> {p}r\nbind({p}r, \"a.sock\")\nsocket(DGRAM) -> {p}s\nsetsockopt({p}s, SO_SNDBUF, 0)\nsendto({p}s, \"x\" * 4576, \"a.sock\")\n",
        "s",
        &["r", "s"],
    ),
    (
        "dgram-reset",
        "dgram",
        "socket(DGRAM) -> {p}a\nbind({p}a, \"a.sock\")\nsocket(DGRAM) -> {p}b\nbind({p}b, \"b.sock\")\nconnect({p}a, \"b.sock\")\nconnect({p}b, \"a.sock\")\nwrite({p}b, \"unread\")\nconnect({p}a, {family=AF_UNSPEC})\n",
        "b",
        &["a", "b"],
    ),
    (
        "seqpacket-full-buffer",
        "seqpacket",
        "socketpair(SEQPACKET) -> {p}a, {p}b\nsetsockopt({p}a, SO_SNDBUF, 0)\nwrite({p}a, \"x\" * 4576)\n",
        "a",
        &["a", "b"],
    ),
];

/// Records `text` on the kernel and writes it as the next matrix scenario.
#[allow(clippy::too_many_arguments)]
fn write_matrix_file(
    ck: &mut Checker,
    params: &udsim::model::Params,
    dir: &std::path::Path,
    number: &mut usize,
    ty: &str,
    st: &str,
    sections: usize,
    how: &str,
    mut text: String,
) {
    text.push_str(UNLINK);
    let script = parse(&text).unwrap_or_else(|e| panic!("{st}: {e}\n{text}"));
    let run = ck.run(&script, Options::recording()).expect("kernel runs");
    let recorded = udsim::check::recorded_script(&run);
    // The recorded script keeps each line's number: put the section comments back.
    let comments: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with('#'))
        .map(|(i, l)| (i + 1, l))
        .collect();
    // What the other recorded kernels' models say differently: those lines hold on kernels with this
    // host's calibrated behaviour only, so the file requires it.
    let mut requires = vec![
        format!("sndbuf={}", params.sndbuf),
        format!("max_dgram_qlen={}", params.max_dgram_qlen),
    ];
    let mine = params.named();
    for (preset, _) in udsim::model::params::PRESETS {
        let other = udsim::model::Params::preset(preset).expect("preset");
        let preds = udsim::check::model_only(&other, &recorded).expect("model steps it");
        let differs = recorded.lines.iter().zip(&preds).any(|(l, p)| {
            l.expect
                .as_ref()
                .is_some_and(|e| p.allowed.iter().any(|o| !e.admits(o)))
        });
        if differs {
            // The behaviours (calibrated true/false) this host and that kernel differ in, each tried
            // alone: the ones whose flip alone changes a written result are required.
            for ((k, v), (_, w)) in mine.iter().zip(other.named()) {
                if !(v == "true" || v == "false") || *v == w {
                    continue;
                }
                let flipped = params
                    .to_preset()
                    .lines()
                    .map(|l| {
                        if l.split_whitespace().next() == Some(k) {
                            format!("{k} {w}")
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let alt = udsim::model::Params::from_preset(&flipped).expect("preset text");
                let preds = udsim::check::model_only(&alt, &recorded).expect("model steps it");
                let matters = recorded.lines.iter().zip(&preds).any(|(l, p)| {
                    l.expect
                        .as_ref()
                        .is_some_and(|e| p.allowed.iter().any(|o| !e.admits(o)))
                });
                let req = format!("{k}={v}");
                if matters && !requires.contains(&req) {
                    requires.push(req);
                }
            }
        }
    }
    let mut out = format!(
        "# The call × state matrix: calls on a {ty} socket in state `{st}` that no other scenario\n\
         # makes. Each section reaches the state ({how}), makes one call, closes its sockets.\n\
         # Generated by `cargo test --test scenarios write_matrix_scenarios -- --ignored`, recorded on\n\
         # the kernel.\n\
         # requires: {}\n",
        requires.join(", ")
    );
    let mut next = 0;
    for l in &recorded.lines {
        while next < comments.len() && comments[next].0 < l.line_no {
            out.push_str(comments[next].1);
            out.push('\n');
            next += 1;
        }
        out.push_str(&udsim::script::fmt_line(l));
        out.push('\n');
    }
    let name = format!("{number}-matrix-{st}.uds");
    *number += 1;
    std::fs::write(dir.join(&name), out).expect("write");
    eprintln!(
        "wrote {name}: {} calls, {sections} sections",
        recorded.lines.len()
    );
}

/// A lean run (what `udsim check` does with a file: the lines streamed in, no steps kept) prints the same
/// transcript as a full run, for scripts mixing written results with bare calls (whose transcript lines
/// come from the recorded results alone).
#[test]
fn lean_runs_print_the_transcripts_full_runs_print() {
    use udsim::script::{fmt_call, fmt_line, lines};
    let mut ck = Checker::new().expect("calibrates");
    let mut compared = 0;
    for (name, text) in library_texts().into_iter().step_by(3) {
        let script = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Every other line bare (unless it names a descriptor): its transcript line is the call and the
        // kernel's result.
        let mixed: String = script
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let names_nothing = l.expect.as_ref().is_none_or(|e| e.names().is_empty());
                if i % 2 == 1 && names_nothing {
                    format!("{}\n", fmt_call(&l.call))
                } else {
                    format!("{}\n", fmt_line(l))
                }
            })
            .collect();
        let full = ck
            .run(&parse(&mixed).expect("reparses"), Options::default())
            .expect("runs");
        let lean_opts = Options {
            lean: true,
            ..Options::default()
        };
        let lean = ck
            .run_lines(lines(&mixed).map_while(Result::ok), lean_opts)
            .expect("runs");
        assert!(lean.steps.is_empty(), "{name}: a lean run keeps no steps");
        assert_eq!(lean.lines, full.steps.len(), "{name}");
        let mut t = Vec::new();
        udsim::check::write_lean_transcript(&lean, &mixed, &mut t).expect("writes");
        let lean_text = String::from_utf8(t).expect("utf-8") + &udsim::check::describe(&lean);
        assert_eq!(lean_text, udsim::cli::transcript(&full), "{name}");
        compared += 1;
    }
    assert!(compared > 100, "{compared} scenarios compared");
}
