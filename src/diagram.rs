//! `udsim diagram`: the abstract states of one socket (as `Model::states_of` names them) and the calls that
//! move it between them, each edge labelled with the call and its outcome. Derived from the enumeration's
//! transitions (never drawn by hand): each transition gives its subject socket an edge from the states it
//! was in to the states it is in after, and each descriptor the call created an edge from `start`. Edges
//! with the same ends are merged, their labels listed once each.

use crate::enumerate::{enumerate, universe_of, Enumeration};
use crate::script::CallKind;
use std::collections::{BTreeMap, BTreeSet};

/// `udsim diagram`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiagramArgs {
    /// The socket type drawn: stream, dgram or seqpacket.
    #[arg(long = "type", default_value = "stream")]
    pub ty: String,
    /// dot (Graphviz), mermaid, or svg (DOT piped through Graphviz `dot -Tsvg`, when it is installed).
    #[arg(long, default_value = "dot")]
    pub format: String,
    /// Depth of the enumeration the diagram is derived from (6 reaches accept on a stream socket).
    #[arg(long, default_value_t = 6)]
    pub depth: usize,
    /// Sockets the enumeration may create (1 to 4).
    #[arg(long, default_value_t = 2)]
    pub sockets: usize,
    /// Paths of the enumeration (0 to 3).
    #[arg(long, default_value_t = 1)]
    pub paths: usize,
    /// Also draw the calls that leave the socket's states as they were (errors, poll, reads of nothing).
    #[arg(long)]
    pub self_loops: bool,
    /// Leave out the buffer states (`full-buffer`, `unread-data`): connection states only.
    #[arg(long)]
    pub coarse: bool,
}

/// The states `--coarse` leaves out: what the buffers hold, not where the connection is.
pub const BUFFER_STATES: &[&str] = &["full-buffer", "unread-data"];

/// Whether `state` is a buffer state (of any type: `dgram-unread-data` too).
fn is_buffer_state(state: &str) -> bool {
    BUFFER_STATES.iter().any(|b| state.ends_with(b))
}

/// The node the edges of newly created descriptors start from.
pub const START: &str = "start";

/// A socket's states as one node name: `connected+unread-data`.
fn node(states: &[&'static str], coarse: bool) -> String {
    let v: Vec<&str> = states
        .iter()
        .copied()
        .filter(|s| !coarse || !is_buffer_state(s))
        .collect();
    v.join("+")
}

/// The diagram: nodes, and per (from, to, by another socket's call) the labels (call and outcome), sorted.
/// An edge "by another socket's call" is a side effect: the socket's peer closed, a client joined its queue.
#[derive(Clone, Debug, Default)]
pub struct Diagram {
    pub nodes: BTreeSet<String>,
    pub edges: BTreeMap<(String, String, bool), BTreeSet<String>>,
}

/// The diagram of an enumeration's transitions.
pub fn diagram(e: &Enumeration, self_loops: bool, coarse: bool) -> Diagram {
    let mut d = Diagram::default();
    let mut add = |from: String, to: String, side: bool, label: String| {
        if from == to && !self_loops {
            return;
        }
        d.nodes.insert(from.clone());
        d.nodes.insert(to.clone());
        d.edges.entry((from, to, side)).or_default().insert(label);
    };
    for t in e.transitions.iter().filter(|t| t.to.is_some()) {
        let outcome = &t.outcome;
        let kind = t.call.kind();
        let call = call_label(&t.call);
        if let Some((before, after)) = &t.subject {
            if !before.is_empty() {
                add(
                    node(before, coarse),
                    node(after, coarse),
                    false,
                    format!("{call} {outcome}"),
                );
            }
        }
        for (before, after) in &t.others {
            add(
                node(before, coarse),
                node(after, coarse),
                true,
                format!("other: {call} {outcome}"),
            );
        }
        for c in &t.created {
            let via = match kind {
                CallKind::Accept => "accept (the new socket)".to_string(),
                _ => call.clone(),
            };
            add(START.to_string(), node(c, coarse), false, via);
        }
    }
    d
}

/// The call's kind with the argument that matters for the outcome (backlog, shutdown direction, size).
fn call_label(c: &crate::script::Call) -> String {
    use crate::script::Call;
    match c {
        Call::Listen(_, b) => format!("listen({b})"),
        Call::Shutdown(_, h) => {
            format!(
                "shutdown({})",
                ["RD", "WR", "RDWR"].get(h.0 as usize).unwrap_or(&"?")
            )
        }
        Call::Write(_, d) | Call::SendTo(_, d, ..) if d.len() > 1 => {
            format!("{}(big)", c.kind().name())
        }
        Call::Read(_, n) if *n > 1 => "read(big)".into(),
        _ => c.kind().name().to_string(),
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The diagram in Graphviz DOT.
pub fn to_dot(d: &Diagram, title: &str) -> String {
    let ids: BTreeMap<&String, usize> = d.nodes.iter().zip(0..).collect();
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"monospace\"];\n  edge [fontname=\"monospace\", fontsize=9];\n",
        dot_escape(title)
    );
    for (n, i) in &ids {
        let shape = if n.as_str() == START {
            ", shape=circle"
        } else {
            ""
        };
        out.push_str(&format!("  n{i} [label=\"{}\"{shape}];\n", dot_escape(n)));
    }
    for ((a, b, side), labels) in &d.edges {
        let label: Vec<String> = labels.iter().map(|l| dot_escape(l)).collect();
        out.push_str(&format!(
            "  n{} -> n{} [label=\"{}\"{}];\n",
            ids[a],
            ids[b],
            label.join("\\n"),
            if *side { ", style=dashed" } else { "" }
        ));
    }
    out.push_str("}\n");
    out
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// The diagram as a Mermaid flowchart.
pub fn to_mermaid(d: &Diagram) -> String {
    let ids: BTreeMap<&String, usize> = d.nodes.iter().zip(0..).collect();
    let mut out = String::from("flowchart LR\n");
    for (n, i) in &ids {
        if n.as_str() == START {
            out.push_str(&format!("  n{i}((\"{}\"))\n", mermaid_escape(n)));
        } else {
            out.push_str(&format!("  n{i}[\"{}\"]\n", mermaid_escape(n)));
        }
    }
    for ((a, b, side), labels) in &d.edges {
        let label: Vec<String> = labels.iter().map(|l| mermaid_escape(l)).collect();
        out.push_str(&format!(
            "  n{} {}|\"{}\"| n{}\n",
            ids[a],
            if *side { "-.->" } else { "-->" },
            label.join("<br/>"),
            ids[b]
        ));
    }
    out
}

/// `udsim diagram`: prints the diagram; exit 2 on a usage error (or svg without Graphviz).
pub fn run(args: DiagramArgs) -> i32 {
    let format = args.format.to_ascii_lowercase();
    if !["dot", "mermaid", "svg"].contains(&format.as_str()) {
        eprintln!(
            "udsim diagram: unknown --format `{}` (dot, mermaid, svg)",
            args.format
        );
        return 2;
    }
    if args.ty.contains(',') {
        eprintln!("udsim diagram: --type takes one socket type (stream, dgram or seqpacket)");
        return 2;
    }
    let params = match crate::kernel::calibrate::params() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("udsim diagram: cannot calibrate the model on this kernel: {e}");
            return 2;
        }
    };
    let u = match universe_of(args.depth, args.sockets, args.paths, &args.ty, &params) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("udsim diagram: {}", e.replace("--types", "--type"));
            return 2;
        }
    };
    let e = enumerate(&params, &u);
    let d = diagram(&e, args.self_loops, args.coarse);
    let title = format!(
        "udsim {} socket states (depth {}, {} sockets, {} paths)",
        args.ty.to_ascii_lowercase(),
        u.depth,
        u.sockets,
        u.paths.len()
    );
    let text = match format.as_str() {
        "mermaid" => to_mermaid(&d),
        "dot" => to_dot(&d, &title),
        _ => match svg(&to_dot(&d, &title)) {
            Ok(s) => s,
            Err(msg) => {
                eprintln!("udsim diagram: {msg}");
                return 2;
            }
        },
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return 2;
    }
    0
}

/// DOT rendered by Graphviz (`dot -Tsvg`).
pub fn svg(dot: &str) -> Result<String, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("--format svg needs Graphviz `dot` on PATH ({e}); use --format dot and render it elsewhere")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot.as_bytes())
            .map_err(|e| format!("writing to dot: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("running dot: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "dot failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| "dot wrote something that is not UTF-8".into())
}
