//! `udsim enumerate` and `udsim diagram`: exact counts for a small universe, canonical states merging
//! symmetric ones, replay scripts the checker agrees with, usage errors, and diagrams that parse.

use std::collections::BTreeSet;
use std::process::Command;
use udsim::check::{Checker, Options};
use udsim::enumerate::{enumerate, universe_of};
use udsim::model::Model;
use udsim::script::{fmt_script, parse, Addr, Call, SockSpec, STREAM};

fn udsim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_udsim"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn params() -> udsim::model::Params {
    udsim::kernel::calibrate::params().expect("calibrate")
}

#[test]
fn counts_at_depth_3_are_exact_and_deterministic_and_grow_with_depth() {
    let p = params();
    let u = universe_of(3, 2, 1, "stream", &p).expect("universe");
    let a = enumerate(&p, &u);
    assert_eq!(a.states.len(), 54);
    assert_eq!(a.expanded, 15);
    assert_eq!(a.by_depth(), vec![1, 2, 12, 39]);
    assert_eq!(a.transitions.len(), 303);
    assert!(a.unmodelled().is_empty());
    assert_eq!(a.replays(false).len(), 114);
    assert_eq!(a.replays(true).len(), 303);
    let b = enumerate(&p, &u);
    assert_eq!(b.states.len(), a.states.len());
    assert_eq!(b.transitions.len(), a.transitions.len());
    let scripts = |e: &udsim::enumerate::Enumeration| -> Vec<String> {
        e.states
            .iter()
            .map(|s| fmt_script(&udsim::script::Script::from_calls(s.calls.clone())))
            .collect()
    };
    assert_eq!(scripts(&a), scripts(&b), "same states, same order");
    let deeper = enumerate(&p, &universe_of(4, 2, 1, "stream", &p).expect("universe"));
    assert_eq!(deeper.states.len(), 165);
    assert!(deeper.states.len() > a.states.len());
}

fn model_after(p: &udsim::model::Params, calls: &[Call], names: &[&str]) -> Model {
    let mut m = Model::new(p.clone());
    let mut made = 0;
    for c in calls {
        let pred = m.step(c).expect("known names");
        let n = pred.allowed.first().map_or(0, |o| o.new_fds());
        let new: Vec<String> = (0..n).map(|i| names[made + i].to_string()).collect();
        m.name_new(&new);
        made += n;
    }
    m
}

#[test]
fn canonicalisation_merges_symmetric_states_and_keeps_others_apart() {
    let p = params();
    let paths: [&[u8]; 2] = [b"a.sock", b"b.sock"];
    let names = ["s0", "s1"];
    let sock = Call::Socket(SockSpec::of(STREAM));
    let bind = |n: &str, path: &str| Call::Bind(n.into(), Addr::Path(path.as_bytes().to_vec()));
    // Two identical sockets, the first or the second bound: one state up to renaming.
    let first = model_after(
        &p,
        &[sock.clone(), sock.clone(), bind("s0", "a.sock")],
        &names,
    );
    let second = model_after(
        &p,
        &[sock.clone(), sock.clone(), bind("s1", "a.sock")],
        &names,
    );
    assert_ne!(
        first.canonical_as(&names, &paths),
        second.canonical_as(&names, &paths),
        "without renaming they differ"
    );
    assert_eq!(
        first.canonical(&names, &paths),
        second.canonical(&names, &paths)
    );
    // Bound to a.sock or to b.sock: one state up to renaming the paths.
    let other_path = model_after(
        &p,
        &[sock.clone(), sock.clone(), bind("s1", "b.sock")],
        &names,
    );
    assert_eq!(
        first.canonical(&names, &paths),
        other_path.canonical(&names, &paths)
    );
    // Both bound, in either order of binding: one state.
    let ab = model_after(
        &p,
        &[
            sock.clone(),
            sock.clone(),
            bind("s0", "a.sock"),
            bind("s1", "b.sock"),
        ],
        &names,
    );
    let ba = model_after(
        &p,
        &[
            sock.clone(),
            sock.clone(),
            bind("s1", "a.sock"),
            bind("s0", "b.sock"),
        ],
        &names,
    );
    assert_eq!(ab.canonical(&names, &paths), ba.canonical(&names, &paths));
    // Different states stay apart: one socket bound vs two unbound; bound vs listening.
    let unbound = model_after(&p, &[sock.clone(), sock.clone()], &names);
    assert_ne!(
        first.canonical(&names, &paths),
        unbound.canonical(&names, &paths)
    );
    let listening = model_after(
        &p,
        &[
            sock.clone(),
            sock.clone(),
            bind("s0", "a.sock"),
            Call::Listen("s0".into(), 0),
        ],
        &names,
    );
    assert_ne!(
        first.canonical(&names, &paths),
        listening.canonical(&names, &paths)
    );
    // In the enumeration, "socket, socket, bind either" is one state at depth 3.
    let e = enumerate(&p, &universe_of(3, 2, 1, "stream", &p).expect("universe"));
    let reach = |script: &[Call]| {
        e.states.iter().position(|s| {
            let m = model_after(&p, &s.calls, &names);
            let n = model_after(&p, script, &names);
            m.canonical(&names, &paths[..1]) == n.canonical(&names, &paths[..1])
        })
    };
    let i = reach(&[sock.clone(), sock.clone(), bind("s0", "a.sock")]);
    let j = reach(&[sock.clone(), sock.clone(), bind("s1", "a.sock")]);
    assert!(i.is_some());
    assert_eq!(i, j);
}

#[test]
fn replay_scripts_are_valid_scripts_the_checker_agrees_with() {
    let p = params();
    let e = enumerate(
        &p,
        &universe_of(3, 2, 1, "stream,dgram", &p).expect("universe"),
    );
    let mut ck = Checker::new().expect("checker");
    let mut checked = 0;
    for (i, t) in e.transitions.iter().enumerate().step_by(7) {
        if t.to.is_none() {
            continue;
        }
        let text = fmt_script(&e.transition_script(i));
        let script = parse(&text).unwrap_or_else(|err| panic!("{text}: {err}"));
        assert_eq!(script.lines.len(), e.states[t.from].depth() + 1);
        let run = ck.run(&script, Options::default()).expect("runs");
        assert!(run.fully_agrees(), "{}", udsim::cli::transcript(&run));
        let last = run.steps.last().expect("a step");
        assert!(
            t.prediction
                .allows(&udsim::enumerate::abridge(&last.kernel)),
            "transition {i}: the kernel's outcome is the one enumerated:\n{text}"
        );
        checked += 1;
    }
    assert!(checked > 20, "checked {checked}");
    // The batched replays parse too, and check every modelled transition's call.
    for r in e.replays(false).iter().take(40) {
        let text = fmt_script(&r.script);
        let script = parse(&text).expect("parses");
        assert!(ck
            .run(&script, Options::default())
            .expect("runs")
            .fully_agrees());
    }
}

#[test]
fn enumerate_command_reports_counts_and_agrees() {
    let (code, out, err) = udsim(&["enumerate", "--depth", "3", "--jobs", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("states: 54 distinct (15 expanded; by depth 1, 2, 12, 39)"),
        "{out}"
    );
    assert!(out.contains("transitions: 303 (303 modelled"), "{out}");
    assert!(out.contains("scripts: 114 run on the kernel"), "{out}");
    assert!(out.contains("; 0 diverge"), "{out}");
    let (code, out, err) = udsim(&[
        "enumerate",
        "--depth",
        "3",
        "--types",
        "dgram,seqpacket",
        "--jobs",
        "2",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("states: 106 distinct"), "{out}");
    assert!(out.contains("2 jobs"), "{out}");
    let (code, out, _) = udsim(&["enumerate", "--depth", "4", "--model-only"]);
    assert_eq!(code, 0);
    assert!(out.contains("states: 165 distinct"), "{out}");
    assert!(!out.contains("scripts:"), "{out}");
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &["enumerate", "--sockets", "0"][..],
        &["enumerate", "--sockets", "9"],
        &["enumerate", "--paths", "7"],
        &["enumerate", "--depth", "99"],
        &["enumerate", "--types", "stream,raw"],
        &["enumerate", "--jobs", "0"],
        &["enumerate", "--depth", "x"],
        &["enumerate", "--bogus"],
        &["diagram", "--format", "png"],
        &["diagram", "--type", "bogus"],
        &["diagram", "--type", "stream,dgram"],
        &["diagram", "--sockets", "5"],
    ] {
        let (code, out, err) = udsim(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(!err.trim().is_empty(), "{args:?}: no message");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Every state name `Model::states_of` gives.
fn model_state_names() -> BTreeSet<String> {
    let base = udsim::model::STATE_NAMES;
    let mut v = BTreeSet::new();
    for b in base {
        v.insert(b.to_string());
        v.insert(format!("dgram-{b}"));
        v.insert(format!("seqpacket-{b}"));
    }
    v
}

/// Checks a DOT diagram: balanced braces, node declarations, every edge between declared nodes; returns the
/// node labels and the number of edges.
fn check_dot(dot: &str) -> (BTreeSet<String>, usize) {
    assert!(dot.starts_with("digraph "), "{dot}");
    assert_eq!(dot.matches('{').count(), dot.matches('}').count(), "{dot}");
    assert!(dot.trim_end().ends_with('}'));
    let mut ids = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let mut edges = Vec::new();
    for l in dot.lines().map(str::trim) {
        if let Some((lhs, rest)) = l.split_once(" -> ") {
            let rhs = rest.split_whitespace().next().expect("edge end");
            assert!(rest.contains("[label=\"") && l.ends_with("];"), "{l}");
            edges.push((lhs.to_string(), rhs.to_string()));
        } else if l.starts_with('n') && l.contains(" [label=\"") {
            let (id, rest) = l.split_once(' ').expect("node");
            ids.insert(id.to_string());
            let label = rest
                .trim_start_matches("[label=\"")
                .split('"')
                .next()
                .expect("label");
            labels.insert(label.to_string());
        }
    }
    for (a, b) in &edges {
        assert!(ids.contains(a) && ids.contains(b), "edge {a} -> {b}");
    }
    (labels, edges.len())
}

#[test]
fn diagrams_parse_and_name_only_model_states() {
    let names = model_state_names();
    for ty in ["stream", "dgram", "seqpacket"] {
        for extra in [&[][..], &["--coarse"][..]] {
            let mut args = vec!["diagram", "--type", ty, "--format", "dot", "--depth", "5"];
            args.extend(extra);
            let (code, dot, err) = udsim(&args);
            assert_eq!(code, 0, "{err}");
            let (labels, edges) = check_dot(&dot);
            assert!(edges >= 10, "{ty}: {edges} edges\n{dot}");
            assert!(labels.contains("start"));
            for l in labels.iter().filter(|l| *l != "start") {
                for part in l.split('+') {
                    assert!(names.contains(part), "{ty}: `{part}` is no model state");
                    if !extra.is_empty() {
                        assert!(!part.ends_with("unread-data") && !part.ends_with("full-buffer"));
                    }
                }
            }
            if ty == "stream" {
                for s in [
                    "fresh",
                    "bound",
                    "listening",
                    "pending",
                    "connected",
                    "closed",
                ] {
                    assert!(labels.contains(s), "stream diagram lacks {s}:\n{dot}");
                }
                assert!(dot.contains("listen(0) 0"), "{dot}");
            }
        }
    }
    // Mermaid: every edge's ends are declared nodes.
    let (code, m, _) = udsim(&["diagram", "--type", "stream", "--format", "mermaid"]);
    assert_eq!(code, 0);
    assert!(m.starts_with("flowchart LR\n"));
    let mut ids = BTreeSet::new();
    let mut edges = 0;
    for l in m.lines().skip(1).map(str::trim) {
        if l.contains("-->|") || l.contains("-.->|") {
            let a = l.split_whitespace().next().expect("from");
            let b = l.rsplit(' ').next().expect("to");
            assert!(ids.contains(a) && ids.contains(b), "{l}");
            edges += 1;
        } else {
            let id: String = l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            ids.insert(id);
        }
    }
    assert!(edges >= 10);
    // SVG through Graphviz, where it is installed.
    let have_dot = Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if have_dot {
        let (code, svg, err) = udsim(&["diagram", "--type", "stream", "--format", "svg"]);
        assert_eq!(code, 0, "{err}");
        let (_, dot, _) = udsim(&["diagram", "--type", "stream", "--format", "dot"]);
        let (labels, edges) = check_dot(&dot);
        // Valid XML with an <svg> root whose nodes are the DOT's states and whose edges are its edges.
        let opts = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(&svg, opts)
            .expect("the SVG is well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let group = |class: &str| {
            doc.descendants()
                .filter(|n| n.tag_name().name() == "g" && n.attribute("class") == Some(class))
                .collect::<Vec<_>>()
        };
        let svg_labels: BTreeSet<String> = group("node")
            .iter()
            .flat_map(|g| g.descendants().filter(|n| n.tag_name().name() == "text"))
            .filter_map(|t| t.text().map(str::to_string))
            .collect();
        assert_eq!(svg_labels, labels, "the SVG's states are the diagram's");
        assert_eq!(
            group("edge").len(),
            edges,
            "the SVG's edges are the diagram's"
        );
    }
}
