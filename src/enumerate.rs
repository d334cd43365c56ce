//! `udsim enumerate`: every call sequence up to a depth over a small universe (a few sockets of the chosen
//! types, a few paths, two data sizes, two backlogs), breadth first, with the model's states canonicalised
//! (`Model::canonical`: sockets and paths renamed, queued bytes as lengths) so that each distinct state is
//! expanded once. Every transition (state, call) → outcome the model predicts is then checked against the
//! kernel by replaying the shortest script to the state plus the call through the checker.
//!
//! Replays are batched: the calls that leave the model's state exactly as it was (poll, most errors) are
//! checked one after another in one script from their state; a call that discovers a new state which is
//! expanded in turn is checked by that state's own scripts (they start with it); every other transition
//! gets a script of its own. `--one-per-transition` turns the batching off.

use crate::check::{auto_name, run_ordered, CheckError, Checker, Options};
use crate::model::canon::Canon;
use crate::model::{Model, Params, Prediction};
use crate::script::{
    fmt_script, Addr, Call, How, Outcome, Payload, Script, SockSpec, Value, DGRAM, SEQPACKET,
    STREAM,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// `udsim enumerate`.
#[derive(Debug, Clone, clap::Args)]
pub struct EnumerateArgs {
    /// Longest call sequence enumerated.
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    /// How many sockets socket / socketpair may create (accepted sockets come on top), 1 to 4.
    #[arg(long, default_value_t = 2)]
    pub sockets: usize,
    /// How many socket paths (`a.sock`, `b.sock`, `c.sock`), 0 to 3.
    #[arg(long, default_value_t = 1)]
    pub paths: usize,
    /// Socket types, comma-separated: stream, dgram, seqpacket.
    #[arg(long, default_value = "stream")]
    pub types: String,
    /// Threads checking replays on the kernel (default: the number of CPUs).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Enumerate the model only; check nothing on the kernel.
    #[arg(long)]
    pub model_only: bool,
    /// One replay per transition (no batching), to compare.
    #[arg(long)]
    pub one_per_transition: bool,
    /// How many divergences to shrink and print (the others are counted).
    #[arg(long, default_value_t = 5)]
    pub max_shrink: usize,
    /// Directory the shrunk divergences are written to (`udsim-enumerate-divergence-N.uds`).
    #[arg(long, default_value = ".")]
    pub out: std::path::PathBuf,
}

/// The small universe of calls enumerated.
#[derive(Clone, Debug)]
pub struct Universe {
    pub depth: usize,
    pub sockets: usize,
    pub types: Vec<i32>,
    pub paths: Vec<Vec<u8>>,
    /// The data a send carries: `x` repeated (every byte alike, so the canonical state may keep lengths
    /// only), one byte and enough to fill a send buffer.
    pub data: Vec<Payload>,
    /// Read sizes: one byte and enough to drain a full buffer.
    pub reads: Vec<usize>,
    pub backlogs: Vec<i32>,
}

/// Paths a universe draws on.
pub const PATHS: &[&[u8]] = &[b"a.sock", b"b.sock", b"c.sock"];

impl Universe {
    /// A universe; the large size is twice the default send buffer (a stream write of it fills the buffer
    /// and is cut short; a datagram of it is too long).
    pub fn new(depth: usize, sockets: usize, paths: usize, types: &[i32], params: &Params) -> Self {
        let big = 2 * params.sndbuf.max(1);
        Universe {
            depth,
            sockets,
            types: types.to_vec(),
            paths: PATHS[..paths.min(PATHS.len())]
                .iter()
                .map(|p| p.to_vec())
                .collect(),
            data: [1, big].iter().map(|&n| vec![b'x'; n].into()).collect(),
            reads: vec![1, big],
            backlogs: vec![0, 1],
        }
    }

    /// The calls tried in a state: creating sockets while fewer than `sockets` were made, unlinking each
    /// path, and on each open name every call of the universe (calls on closed names are all EBADF and are
    /// not tried).
    fn calls(&self, model: &Model, names: &[String], made: usize) -> Vec<Call> {
        let mut v = Vec::new();
        for &ty in &self.types {
            if made < self.sockets {
                v.push(Call::Socket(SockSpec::of(ty)));
            }
            if made + 2 <= self.sockets {
                v.push(Call::Socketpair(SockSpec::of(ty)));
            }
        }
        for p in &self.paths {
            v.push(Call::Unlink(p.clone()));
        }
        for n in names {
            let Some(s) = model.sock_of(n) else { continue };
            let ty = s.ty;
            for p in &self.paths {
                v.push(Call::Bind(n.clone(), Addr::Path(p.clone())));
            }
            if ty != DGRAM {
                for &b in &self.backlogs {
                    v.push(Call::Listen(n.clone(), b));
                }
                v.push(Call::Accept(n.clone(), false, None));
            }
            for p in &self.paths {
                v.push(Call::Connect(n.clone(), Addr::Path(p.clone())));
            }
            for d in &self.data {
                v.push(Call::Write(n.clone(), Payload::clone(d)));
                if ty == DGRAM {
                    for p in &self.paths {
                        v.push(Call::SendTo(
                            n.clone(),
                            Payload::clone(d),
                            Addr::Path(p.clone()),
                            None,
                        ));
                    }
                }
            }
            for &r in &self.reads {
                v.push(Call::Read(n.clone(), r));
            }
            for h in [How::RD, How::WR, How::RDWR] {
                v.push(Call::Shutdown(n.clone(), h));
            }
            v.push(Call::Poll(n.clone()));
            v.push(Call::Close(n.clone()));
        }
        v
    }

    fn path_refs(&self) -> Vec<&[u8]> {
        self.paths.iter().map(|p| p.as_slice()).collect()
    }
}

/// One distinct state.
#[derive(Clone, Debug)]
pub struct State {
    /// The shortest call sequence found to it (breadth first).
    pub calls: Vec<Call>,
    /// Names in creation order.
    pub names: Vec<String>,
    /// Sockets socket / socketpair made.
    pub made: usize,
    /// The transition that discovered it (`None` for the initial state).
    pub parent: Option<usize>,
}

impl State {
    pub fn depth(&self) -> usize {
        self.calls.len()
    }
}

/// The longest received data a transition keeps (the rest is all `x`; its length stays in `ret`).
pub const KEPT_DATA: usize = 16;

/// An outcome with received data cut to `KEPT_DATA` bytes: what a transition stores (a read of a full
/// buffer returns hundreds of kilobytes, tens of thousands of times over).
pub fn abridge(o: &Outcome) -> Outcome {
    let mut o = o.clone();
    if let Value::Recv(r) = &mut o.value {
        r.data = r.data[..r.data.len().min(KEPT_DATA)].to_vec();
    }
    o
}

/// One transition: a call from a state, what the model predicts, where it leads.
#[derive(Clone, Debug)]
pub struct Transition {
    pub from: usize,
    pub call: Call,
    /// What the model predicts, received data abridged (`abridge`).
    pub prediction: Prediction,
    /// The predicted outcomes' classes (`explore::outcome_class`, before abridging), joined by ` or `.
    pub outcome: String,
    /// The state after (`None`: the model does not say what the call does; not expanded).
    pub to: Option<usize>,
    /// The model's state after is exactly the state before (not only up to renaming).
    pub self_loop: bool,
    /// The subject socket's states (`Model::states_of`) before and after.
    pub subject: Option<(Vec<&'static str>, Vec<&'static str>)>,
    /// The states of each descriptor the call created, after it.
    pub created: Vec<Vec<&'static str>>,
    /// Other names whose states the call changed (a peer closed, a listener's queue grew): before, after.
    pub others: Vec<(Vec<&'static str>, Vec<&'static str>)>,
}

/// The whole enumeration.
#[derive(Clone, Debug)]
pub struct Enumeration {
    pub universe: Universe,
    pub states: Vec<State>,
    pub transitions: Vec<Transition>,
    /// How many states were expanded (those below the depth limit).
    pub expanded: usize,
}

type Key = (usize, Canon);

/// Enumerates the model, breadth first (nothing runs on the kernel).
pub fn enumerate(params: &Params, u: &Universe) -> Enumeration {
    let paths = u.path_refs();
    let key = |m: &Model, names: &[String], made: usize| -> Key {
        let ns: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        (made, m.canonical(&ns, &paths))
    };
    let exact = |m: &Model, names: &[String]| -> Canon {
        let ns: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        m.canonical_as(&ns, &paths)
    };
    let root = Model::new(params.clone());
    let mut seen: HashMap<Key, usize> = HashMap::new();
    seen.insert(key(&root, &[], 0), 0);
    let mut states = vec![State {
        calls: Vec::new(),
        names: Vec::new(),
        made: 0,
        parent: None,
    }];
    // Models of states still to expand, by state index.
    let mut models: HashMap<usize, Model> = HashMap::from([(0, root)]);
    let mut transitions = Vec::new();
    let mut expanded = 0;
    let mut next = 0;
    while next < states.len() {
        let sid = next;
        next += 1;
        if states[sid].depth() >= u.depth {
            continue;
        }
        let Some(model) = models.remove(&sid) else {
            continue;
        };
        expanded += 1;
        let (names, made) = (states[sid].names.clone(), states[sid].made);
        let before = exact(&model, &names);
        for call in u.calls(&model, &names, made) {
            let mut m = model.clone();
            let Ok(mut p) = m.step(&call) else { continue };
            let classes: Vec<String> = p
                .allowed
                .iter()
                .map(|o| crate::explore::outcome_class(&call, o))
                .collect();
            let outcome = classes.join(" or ");
            for o in &mut p.allowed {
                if matches!(o.value, Value::Recv(_)) {
                    *o = abridge(o);
                }
            }
            let subject_before = call.subject().map(|s| model.states_of(s));
            let tid = transitions.len();
            if !p.is_modelled() {
                transitions.push(Transition {
                    from: sid,
                    call,
                    prediction: p,
                    outcome,
                    to: None,
                    self_loop: false,
                    subject: None,
                    created: Vec::new(),
                    others: Vec::new(),
                });
                continue;
            }
            let n = p.allowed[0].new_fds();
            let mut names2 = names.clone();
            let new: Vec<String> = (0..n).map(|i| auto_name(names.len() + i)).collect();
            m.name_new(&new);
            names2.extend(new.iter().cloned());
            let made2 = made
                + match call {
                    Call::Socket(_) | Call::Socketpair(_) => n,
                    _ => 0,
                };
            let self_loop = made2 == made && exact(&m, &names2) == before;
            let k = key(&m, &names2, made2);
            let to = match seen.get(&k) {
                Some(&t) => t,
                None => {
                    let t = states.len();
                    seen.insert(k, t);
                    let mut calls = states[sid].calls.clone();
                    calls.push(call.clone());
                    states.push(State {
                        calls,
                        names: names2.clone(),
                        made: made2,
                        parent: Some(tid),
                    });
                    if states[t].depth() < u.depth {
                        models.insert(t, m.clone());
                    }
                    t
                }
            };
            let subject = call
                .subject()
                .zip(subject_before)
                .map(|(s, b)| (b, m.states_of(s)));
            let created = new.iter().map(|c| m.states_of(c)).collect();
            let others = names
                .iter()
                .filter(|n| Some(*n) != call.subject())
                .map(|n| (model.states_of(n), m.states_of(n)))
                .filter(|(b, a)| b != a && !b.is_empty())
                .collect();
            transitions.push(Transition {
                from: sid,
                call,
                prediction: p,
                outcome,
                to: Some(to),
                self_loop,
                subject,
                created,
                others,
            });
        }
    }
    Enumeration {
        universe: u.clone(),
        states,
        transitions,
        expanded,
    }
}

/// A script to run on the kernel and the transitions it checks.
#[derive(Clone, Debug)]
pub struct Replay {
    pub script: Script,
    pub transitions: Vec<usize>,
}

impl Enumeration {
    /// Distinct states at each depth.
    pub fn by_depth(&self) -> Vec<usize> {
        let mut v = vec![0; self.universe.depth + 1];
        for s in &self.states {
            v[s.depth()] += 1;
        }
        v
    }

    /// Transitions the model does not cover, by the rule it names.
    pub fn unmodelled(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for t in self.transitions.iter().filter(|t| t.to.is_none()) {
            *m.entry(t.prediction.rule).or_insert(0) += 1;
        }
        m
    }

    /// Modelled transitions whose prediction allows several outcomes.
    pub fn inexact(&self) -> usize {
        self.transitions
            .iter()
            .filter(|t| t.to.is_some() && !t.prediction.is_exact())
            .count()
    }

    /// The shortest script to transition `t`'s state, then its call.
    pub fn transition_script(&self, t: usize) -> Script {
        let tr = &self.transitions[t];
        let mut calls = self.states[tr.from].calls.clone();
        calls.push(tr.call.clone());
        Script::from_calls(calls)
    }

    /// Whether transition `t` discovered a state that is expanded in turn.
    fn discovers_expanded(&self, t: usize) -> bool {
        self.transitions[t].to.is_some_and(|to| {
            self.states[to].parent == Some(t) && self.states[to].depth() < self.universe.depth
        })
    }

    /// The replays that check every modelled transition on the kernel: batched (see the module's comment),
    /// or one per transition.
    pub fn replays(&self, one_per_transition: bool) -> Vec<Replay> {
        let mut out = Vec::new();
        if one_per_transition {
            for (i, t) in self.transitions.iter().enumerate() {
                if t.to.is_some() {
                    out.push(Replay {
                        script: self.transition_script(i),
                        transitions: vec![i],
                    });
                }
            }
            return out;
        }
        let mut from: Vec<Vec<usize>> = vec![Vec::new(); self.states.len()];
        for (i, t) in self.transitions.iter().enumerate() {
            if t.to.is_some() {
                from[t.from].push(i);
            }
        }
        // Per state, its own replays; `covered`: some replay starts with its shortest script.
        let mut own: Vec<Vec<Replay>> = vec![Vec::new(); self.states.len()];
        let mut covered = vec![false; self.states.len()];
        for sid in (0..self.states.len()).rev() {
            let st = &self.states[sid];
            let mut loops = Vec::new();
            for &t in &from[sid] {
                let tr = &self.transitions[t];
                if tr.self_loop {
                    loops.push(t);
                } else if self.discovers_expanded(t) && covered[tr.to.unwrap_or(0)] {
                    // Checked by the new state's replays, which start with this call.
                    covered[sid] = true;
                } else {
                    own[sid].push(Replay {
                        script: self.transition_script(t),
                        transitions: vec![t],
                    });
                }
            }
            if !loops.is_empty() {
                let mut calls = st.calls.clone();
                calls.extend(loops.iter().map(|&t| self.transitions[t].call.clone()));
                own[sid].push(Replay {
                    script: Script::from_calls(calls),
                    transitions: loops,
                });
            }
            if !own[sid].is_empty() {
                covered[sid] = true;
            }
        }
        // Breadth first.
        for r in own {
            out.extend(r);
        }
        out
    }
}

fn parse_types(s: &str) -> Result<Vec<i32>, String> {
    let mut v = Vec::new();
    for t in s.split(',').map(|t| t.trim().to_ascii_lowercase()) {
        let ty = match t.as_str() {
            "stream" => STREAM,
            "dgram" => DGRAM,
            "seqpacket" => SEQPACKET,
            other => {
                return Err(format!(
                    "unknown socket type `{other}` in --types (stream, dgram, seqpacket)"
                ))
            }
        };
        if !v.contains(&ty) {
            v.push(ty);
        }
    }
    Ok(v)
}

/// The universe the arguments describe, or a usage error.
pub fn universe_of(
    depth: usize,
    sockets: usize,
    paths: usize,
    types: &str,
    params: &Params,
) -> Result<Universe, String> {
    if !(1..=4).contains(&sockets) {
        return Err(format!("--sockets must be 1 to 4 (got {sockets})"));
    }
    if paths > PATHS.len() {
        return Err(format!(
            "--paths must be 0 to {} (got {paths})",
            PATHS.len()
        ));
    }
    if depth > 12 {
        return Err(format!("--depth must be at most 12 (got {depth})"));
    }
    let types = parse_types(types)?;
    Ok(Universe::new(depth, sockets, paths, &types, params))
}

fn type_names(types: &[i32]) -> String {
    let v: Vec<&str> = types
        .iter()
        .map(|&t| crate::script::type_name(t).unwrap_or("?"))
        .collect();
    v.join(",").to_ascii_lowercase()
}

/// `udsim enumerate`: exit 0 when the kernel agrees with every transition, 1 on a divergence, 2 on a usage
/// error or when the checker cannot run.
pub fn run(args: EnumerateArgs) -> i32 {
    let params = match crate::kernel::calibrate::params() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("udsim enumerate: cannot calibrate the model on this kernel: {e}");
            return 2;
        }
    };
    if args.jobs == Some(0) {
        eprintln!("udsim enumerate: --jobs must be at least 1");
        return 2;
    }
    let u = match universe_of(args.depth, args.sockets, args.paths, &args.types, &params) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("udsim enumerate: {e}");
            return 2;
        }
    };
    let t0 = Instant::now();
    println!(
        "udsim enumerate: types {}, {} sockets, {} paths, depth {}, data sizes {}, backlogs {}",
        type_names(&u.types),
        u.sockets,
        u.paths.len(),
        u.depth,
        u.data
            .iter()
            .map(|d| d.len().to_string())
            .collect::<Vec<_>>()
            .join(" and "),
        u.backlogs
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(" and "),
    );
    let e = enumerate(&params, &u);
    let model_secs = t0.elapsed().as_secs_f64();
    let modelled = e.transitions.iter().filter(|t| t.to.is_some()).count();
    let by_depth: Vec<String> = e.by_depth().iter().map(|n| n.to_string()).collect();
    println!(
        "states: {} distinct ({} expanded; by depth {})",
        e.states.len(),
        e.expanded,
        by_depth.join(", ")
    );
    let loops = e.transitions.iter().filter(|t| t.self_loop).count();
    println!(
        "transitions: {} ({modelled} modelled, {loops} of them leave the state as it was, {} with several allowed outcomes; {} not modelled)",
        e.transitions.len(),
        e.inexact(),
        e.transitions.len() - modelled
    );
    for (rule, n) in e.unmodelled() {
        println!("  not modelled: {rule} {n}");
    }
    println!("model: {model_secs:.2} s");
    if args.model_only {
        return 0;
    }
    let replays = e.replays(args.one_per_transition);
    let calls: usize = replays.iter().map(|r| r.script.lines.len()).sum();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(replays.len().max(1));
    let t1 = Instant::now();
    let mut main = match Checker::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("udsim enumerate: {e}");
            return 2;
        }
    };
    let mut diverging: Vec<usize> = Vec::new();
    let res = run_ordered(
        &mut main,
        jobs,
        &|i| i < replays.len(),
        |ck: &mut Checker, i| -> Result<bool, CheckError> {
            Ok(!ck.run(&replays[i].script, Options::default())?.agrees())
        },
        |i, diverged| {
            if diverged {
                diverging.push(i);
            }
            true
        },
    );
    if let Err(err) = res {
        eprintln!("udsim enumerate: {err}");
        return 2;
    }
    let kernel_secs = t1.elapsed().as_secs_f64();
    let direct: usize = replays.iter().map(|r| r.transitions.len()).sum();
    println!(
        "scripts: {} run on the kernel ({calls} calls; {direct} transitions checked by a replay of their own state, the other {} by their new state's replays; {jobs} jobs) in {kernel_secs:.2} s; {} diverge",
        replays.len(),
        modelled - direct,
        diverging.len()
    );
    let mut shrunk_seen = std::collections::HashSet::new();
    for (n, &i) in diverging.iter().take(args.max_shrink).enumerate() {
        let script = &replays[i].script;
        let small = match crate::shrink::shrink(&mut main, script) {
            Ok(Some(s)) => s,
            Ok(None) => script.clone(),
            Err(err) => {
                eprintln!("udsim enumerate: {err}");
                return 2;
            }
        };
        let text = fmt_script(&small);
        if !shrunk_seen.insert(text.clone()) {
            continue;
        }
        let transcript = match main.run(&small, Options::default()) {
            Ok(run) => crate::cli::transcript(&run),
            Err(_) => text.clone(),
        };
        let path = args.out.join(format!("udsim-enumerate-divergence-{n}.uds"));
        let written = std::fs::write(&path, &transcript).is_ok();
        println!(
            "# == divergence {}: replay {i} ({} calls) diverged, shrunk to {} calls{}\n{transcript}",
            n + 1,
            script.lines.len(),
            small.lines.len(),
            if written {
                format!(", written to {}", path.display())
            } else {
                String::new()
            }
        );
    }
    println!("time: {:.2} s", t0.elapsed().as_secs_f64());
    if diverging.is_empty() {
        0
    } else {
        1
    }
}
