//! The call × state matrix: for each socket type, each state one socket can be in (as
//! [`Model::states_of`] names them) and each call on it, what the model predicts there and how many
//! kernel-checked lines reached that cell, by source — bundled scenario lines, explored steps,
//! enumerated transitions. Built from checker runs and enumerations; pure (no system calls), so the
//! coverage test and `udsim report` fill it the same way.

use crate::check::{Names, Run};
use crate::enumerate::Enumeration;
use crate::explore::outcome_class;
use crate::model::{Model, Params, Prediction};
use crate::script::{Call, CallKind, Script};
use std::collections::{BTreeMap, BTreeSet};

/// Where a checked line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A line of a bundled scenario (its result recorded on the kernel).
    Scenario,
    /// A step of a random exploration.
    Explored,
    /// A transition of a bounded-exhaustive enumeration.
    Enumerated,
}

/// One cell: a call on a socket in one state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    /// The outcome classes the model predicted here (`explore::outcome_class`), over every source.
    pub outcomes: BTreeSet<String>,
    pub scenario: usize,
    pub explored: usize,
    pub enumerated: usize,
    /// Lines or transitions here on which the kernel disagreed with the model.
    pub disagree: usize,
}

impl Cell {
    /// Checked on the kernel by anything.
    pub fn checked(&self) -> usize {
        self.scenario + self.explored + self.enumerated
    }
}

/// The socket type a state name belongs to (`dgram-connected` → `dgram`).
pub fn type_of(state: &str) -> &'static str {
    if state.starts_with("dgram-") {
        "dgram"
    } else if state.starts_with("seqpacket-") {
        "seqpacket"
    } else {
        "stream"
    }
}

/// The matrix, keyed by (state, call kind); the type is the state's prefix ([`type_of`]).
#[derive(Clone, Debug, Default)]
pub struct Matrix {
    pub cells: BTreeMap<(&'static str, CallKind), Cell>,
}

impl Matrix {
    fn cell(&mut self, state: &'static str, kind: CallKind) -> &mut Cell {
        self.cells.entry((state, kind)).or_default()
    }

    fn count(&mut self, state: &'static str, kind: CallKind, src: Source, agreed: bool) {
        let c = self.cell(state, kind);
        match src {
            Source::Scenario => c.scenario += 1,
            Source::Explored => c.explored += 1,
            Source::Enumerated => c.enumerated += 1,
        }
        c.disagree += usize::from(!agreed);
    }

    /// Adds a checker run: the model is stepped along it (following the kernel's outcome where it
    /// allowed several), and each call on a socket counts in the cells of the states the socket was
    /// in before it. Stops where the model does (an unmodelled call, the divergence).
    pub fn add_run(&mut self, params: &Params, run: &Run, src: Source) {
        let mut m = Model::new(params.clone());
        let diverged_at = run.divergence().map(|d| d.step);
        for (i, st) in run.steps.iter().enumerate() {
            let agreed = diverged_at != Some(i);
            let Some(p) = self.step_and_count(&mut m, &st.line.call, src, agreed) else {
                break;
            };
            if !agreed {
                break;
            }
            if let Some(k) = p.allowed.iter().position(|o| *o == st.kernel) {
                m.observe(k);
            }
            m.name_new(&st.created);
        }
    }

    /// Steps `m` through `call` and counts the call in the cells of the states its subject was in
    /// before, with the outcomes the model predicted; `None` where the model stops.
    fn step_and_count(
        &mut self,
        m: &mut Model,
        call: &Call,
        src: Source,
        agreed: bool,
    ) -> Option<Prediction> {
        let states = call.subject().map(|s| m.states_of(s)).unwrap_or_default();
        let p = m.step(call).ok().filter(|p| p.is_modelled())?;
        for s in states {
            self.count(s, call.kind(), src, agreed);
            let c = self.cell(s, call.kind());
            for o in &p.allowed {
                c.outcomes.insert(outcome_class(call, o));
            }
        }
        Some(p)
    }

    /// Adds a script stepped by the model alone (its new descriptors named as its lines name them),
    /// for a script whose results were recorded on the kernel and are checked elsewhere (the
    /// scenario library). Stops where the model does.
    pub fn add_script(&mut self, params: &Params, script: &Script, src: Source) {
        let mut m = Model::new(params.clone());
        let mut names = Names::default();
        for l in &script.lines {
            let Some(p) = self.step_and_count(&mut m, &l.call, src, true) else {
                break;
            };
            let created = names.names_for(l, p.allowed.first().map_or(0, |o| o.new_fds()));
            m.name_new(&created);
            names.after(&created);
        }
    }

    /// Adds an enumeration's modelled transitions; `agreed(t)` says whether the kernel agreed with
    /// transition `t`.
    pub fn add_enumeration(&mut self, e: &Enumeration, agreed: impl Fn(usize) -> bool) {
        for (i, t) in e.transitions.iter().enumerate() {
            if t.to.is_none() {
                continue;
            }
            let Some((before, _)) = &t.subject else {
                continue;
            };
            let ok = agreed(i);
            for &s in before {
                self.count(s, t.call.kind(), Source::Enumerated, ok);
                for o in t.outcome.split(" or ") {
                    self.cell(s, t.call.kind()).outcomes.insert(o.to_string());
                }
            }
        }
    }

    /// The states with a cell, per type.
    pub fn states(&self) -> BTreeMap<&'static str, BTreeSet<&'static str>> {
        let mut out: BTreeMap<&'static str, BTreeSet<&'static str>> = BTreeMap::new();
        for (s, _) in self.cells.keys() {
            out.entry(type_of(s)).or_default().insert(s);
        }
        out
    }

    /// The call kinds with a cell, per type.
    pub fn calls(&self) -> BTreeMap<&'static str, BTreeSet<CallKind>> {
        let mut out: BTreeMap<&'static str, BTreeSet<CallKind>> = BTreeMap::new();
        for (s, k) in self.cells.keys() {
            out.entry(type_of(s)).or_default().insert(*k);
        }
        out
    }

    /// The cells of the grid (every state of a type × every call seen on that type) that nothing
    /// checked: the state is reachable, and the call can be made on it, but no line did.
    pub fn empty_cells(&self) -> Vec<(&'static str, CallKind)> {
        let calls = self.calls();
        let mut out = Vec::new();
        for (ty, states) in self.states() {
            for s in states {
                for &k in &calls[ty] {
                    if self.cells.get(&(s, k)).is_none_or(|c| c.checked() == 0) {
                        out.push((s, k));
                    }
                }
            }
        }
        out
    }
}
