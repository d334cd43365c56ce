//! Random exploration outside proptest: many generated scripts through the checker, with statistics —
//! outcomes per call, states reached and the exact-prediction rate — and, on a divergence, a shrunk script.

use crate::check::{CheckError, Checker, Options, Run};
use crate::gen::{generate_mix, Mix, Rng};
use crate::model::{Model, Params};
use crate::script::{AddrOut, Call, CallKind, Outcome, Script, Value};
use std::collections::BTreeMap;

/// How `Stats::inexact` counts the steps after the model stopped in a script (they have no prediction).
pub const AFTER_STOP: &str = "(none: after the model stopped)";

/// What an exploration saw.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub cases: usize,
    pub ops: usize,
    /// Steps where the model allowed exactly one outcome.
    pub exact: usize,
    /// Outcome classes per call.
    pub outcomes: BTreeMap<CallKind, BTreeMap<String, usize>>,
    /// Steps after which some socket was in each state.
    pub states: BTreeMap<&'static str, usize>,
    /// Steps after which some descriptor was in flight (SCM_RIGHTS queued, not yet received).
    pub in_flight: usize,
    /// Steps after which garbage in flight awaited the kernel's collector (the model held several states).
    pub awaiting_collector: usize,
    /// Why the steps that were not exact were not: the rule of each such prediction, counted.
    pub inexact: BTreeMap<&'static str, usize>,
}

impl Stats {
    pub fn exact_rate(&self) -> f64 {
        if self.ops == 0 {
            1.0
        } else {
            self.exact as f64 / self.ops as f64
        }
    }

    /// Adds one run's steps, replaying them on a scratch model to see the states reached.
    pub fn add(&mut self, params: &Params, run: &Run) {
        self.cases += 1;
        self.ops += run.steps.len();
        self.exact += run.exact;
        let mut m = Model::new(params.clone());
        let mut names: Vec<String> = Vec::new();
        for st in &run.steps {
            let class = outcome_class(&st.line.call, &st.kernel);
            *self
                .outcomes
                .entry(st.line.call.kind())
                .or_default()
                .entry(class)
                .or_default() += 1;
            let Ok(p) = m.step(&st.line.call) else {
                break;
            };
            if let Some(i) = p.allowed.iter().position(|o| *o == st.kernel) {
                m.observe(i);
            }
            match &st.prediction {
                Some(q) if !q.is_exact() => *self.inexact.entry(q.rule).or_default() += 1,
                Some(_) => {}
                // Past a call the model stopped at: no prediction.
                None => *self.inexact.entry(AFTER_STOP).or_default() += 1,
            }
            self.in_flight += usize::from(m.fds_in_flight() > 0);
            self.awaiting_collector += usize::from(m.state_count() > 1);
            m.name_new(&st.created);
            names.extend(st.created.iter().cloned());
            let mut seen: Vec<&'static str> = names.iter().flat_map(|n| m.states_of(n)).collect();
            seen.sort_unstable();
            seen.dedup();
            for s in seen {
                *self.states.entry(s).or_default() += 1;
            }
        }
    }

    /// Adds what another exploration (of other cases) saw.
    pub fn merge(&mut self, other: &Stats) {
        self.cases += other.cases;
        self.ops += other.ops;
        self.exact += other.exact;
        for (k, m) in &other.outcomes {
            let mine = self.outcomes.entry(*k).or_default();
            for (c, n) in m {
                match mine.get_mut(c) {
                    Some(x) => *x += n,
                    None => {
                        mine.insert(c.clone(), *n);
                    }
                }
            }
        }
        for (s, n) in &other.states {
            *self.states.entry(s).or_default() += n;
        }
        self.in_flight += other.in_flight;
        self.awaiting_collector += other.awaiting_collector;
        for (r, n) in &other.inexact {
            *self.inexact.entry(r).or_default() += n;
        }
    }

    /// The summary table.
    pub fn report(&self) -> String {
        let mut out = if self.ops == 0 {
            format!("{} scripts, no steps run\n", self.cases)
        } else {
            format!(
                "{} scripts, {} ops, exact-prediction rate {:.2}% ({} of {} steps had exactly one allowed outcome)\n",
                self.cases,
                self.ops,
                100.0 * self.exact_rate(),
                self.exact,
                self.ops
            )
        };
        for (rule, n) in &self.inexact {
            out.push_str(&format!("  not exact: {n} steps by rule {rule}\n"));
        }
        out.push_str(&format!(
            "descriptors in flight after {} steps; garbage awaiting the collector after {}\n",
            self.in_flight, self.awaiting_collector
        ));
        out.push_str("outcomes per call:\n");
        for (k, m) in &self.outcomes {
            let parts: Vec<String> = m.iter().map(|(c, n)| format!("{c} {n}")).collect();
            out.push_str(&format!("  {:<12} {}\n", k.name(), parts.join(", ")));
        }
        out.push_str("states reached (steps after which some socket was in the state):\n");
        for (s, n) in &self.states {
            out.push_str(&format!("  {s:<24} {n}\n"));
        }
        out
    }
}

/// A short label for an outcome, for the per-call table.
pub fn outcome_class(call: &Call, o: &Outcome) -> String {
    let mut c = match (call, &o.value) {
        (_, Value::Err(e)) => e.to_string(),
        (_, Value::Created | Value::Pair | Value::Accepted(_)) => "created".into(),
        (_, Value::Ok) => "0".into(),
        (c, Value::Wrote(n)) if c.data().is_some_and(|d| *n == d.len()) => "all".into(),
        (_, Value::Wrote(_)) => "partial".into(),
        (_, Value::Recv(r)) if r.ret == 0 => "\"\"".into(),
        (_, Value::Recv(r)) if r.ret != r.data.len() => "truncated".into(),
        (_, Value::Recv(_)) => "data".into(),
        (_, Value::Addr(AddrOut::Raw { len: 2, .. })) => "unnamed".into(),
        (_, Value::Addr(_)) => "addr".into(),
        (_, Value::Ready(e)) => e.to_string(),
        (_, Value::Int(i)) => i.to_string(),
        (_, Value::SoError(e)) => format!("{{error={e}}}"),
        (_, Value::Cred(_)) => "creds".into(),
        (_, Value::Ms(m)) => format!("{m}ms"),
        (_, Value::Stat(k, _)) => k.name().into(),
    };
    if o.sigpipe {
        c.push_str(" with SIGPIPE");
    }
    if o.waited {
        c.push_str(" after timeout");
    }
    c
}

/// The seed of case `i` of an exploration seeded with `seed`.
pub fn case_seed(seed: u64, i: usize) -> u64 {
    Rng(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)).next_u64()
}

/// The script of one case.
pub fn case_script(params: &Params, seed: u64, i: usize, max_ops: usize, mix: Mix) -> Script {
    generate_mix(&mut Rng(case_seed(seed, i)), params, max_ops, mix)
}

/// The first diverging case of an exploration.
pub struct Found {
    pub case: usize,
    pub script: Script,
    pub run: Run,
}

/// Explores `cases` scripts; `progress` is called after each case. Stops at the first model divergence.
pub fn explore(
    ck: &mut Checker,
    seed: u64,
    cases: usize,
    max_ops: usize,
    stats: &mut Stats,
    progress: impl FnMut(usize),
) -> Result<Option<Found>, CheckError> {
    let plan = Plan {
        seed,
        cases: Some(cases),
        until: None,
        max_ops,
        jobs: 1,
        mix: Mix::All,
    };
    explore_plan(ck, &plan, stats, progress)
}

/// What to explore: cases `0, 1, 2, …` of `seed`, until `cases` are done or the clock reaches `until`
/// (whichever comes first; at least one of them should be set), on `jobs` threads.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub cases: Option<usize>,
    pub until: Option<std::time::Instant>,
    pub max_ops: usize,
    pub jobs: usize,
    /// What the generated scripts are made of.
    pub mix: Mix,
}

/// One thread's statistics during an exploration: the total of its cases known to count, and those not yet.
#[derive(Default)]
struct CaseStats {
    total: Stats,
    pending: Vec<(usize, Stats)>,
}

impl CaseStats {
    /// Adds the pending cases before `prefix` to the total; those after it are dropped once the run is over
    /// (`fold` with the final count).
    fn fold(&mut self, prefix: usize) {
        let total = &mut self.total;
        self.pending.retain(|(i, st)| {
            if *i < prefix {
                total.merge(st);
            }
            *i >= prefix
        });
    }
}

/// Explores as `plan` says; `progress` is called after each case with the number done. Stops at the first
/// model divergence. Case `i`'s script depends only on `(seed, i)` (`case_script`), and the cases counted
/// are always `0..n` whatever the number of jobs: a divergence at case `i` counts exactly the cases before
/// it and itself, as one job would, so the statistics for a given seed and count do not depend on `jobs`.
pub fn explore_plan(
    ck: &mut Checker,
    plan: &Plan,
    stats: &mut Stats,
    mut progress: impl FnMut(usize),
) -> Result<Option<Found>, CheckError> {
    let params = ck.params().clone();
    let params = &params;
    let claim = |i: usize| {
        plan.cases.is_none_or(|n| i < n) && plan.until.is_none_or(|t| std::time::Instant::now() < t)
    };
    let mut found = None;
    let mut handed = 0;
    // Each thread sums the statistics of its own cases (so no thread frees what another allocated at every
    // case); a case's are added to the thread's total once the case is known to be in the run's prefix
    // (handed on), and the rest are kept apart until the run's end says which of them count.
    let (_, locals) = crate::check::run_ordered_with(
        ck,
        plan.jobs,
        &claim,
        |ck, local: &mut CaseStats, prefix, i| {
            let script = case_script(params, plan.seed, i, plan.max_ops, plan.mix);
            let run = ck.run(&script, Options::default())?;
            let mut st = Stats::default();
            st.add(params, &run);
            local.pending.push((i, st));
            local.fold(prefix);
            Ok(run.model_diverged().then_some(Found {
                case: i,
                script,
                run,
            }))
        },
        |i, f: Option<Found>| {
            handed = i + 1;
            progress(i + 1);
            found = f;
            found.is_none()
        },
    )?;
    for mut l in locals {
        l.fold(handed);
        stats.merge(&l.total);
    }
    Ok(found)
}
