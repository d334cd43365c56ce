//! The checker: runs a script on the model and on the kernel in lock-step and stops at the first disagreement.

use crate::kernel::{Kernel, KernelError};
use crate::model::{Model, ModelError, Params, Prediction};
use crate::script::{fmt_call, fmt_line, fmt_outcome, Call, Expect, Line, Name, Outcome, Script};
use std::collections::HashSet;
use std::fmt::Write as _;

/// One line as it ran.
#[derive(Clone, Debug)]
pub struct Step {
    pub line: Line,
    /// The kernel's outcome.
    pub kernel: Outcome,
    /// What the model allowed (`None` once the model has been left behind, in record mode).
    pub prediction: Option<Prediction>,
    /// The name a created socket got.
    pub created: Option<Name>,
}

/// Why a script stopped early.
#[derive(Clone, Debug)]
pub enum Stop {
    /// The kernel gave an outcome the model does not allow, or one the script's written result rejects.
    Divergence(Divergence),
    /// The script itself is wrong (e.g. a name no earlier line created).
    ScriptError { line_no: usize, msg: String },
}

/// The first disagreement.
#[derive(Clone, Debug)]
pub struct Divergence {
    /// Index into `Run::steps`.
    pub step: usize,
    pub line_no: usize,
    pub kernel: Outcome,
    pub model: Prediction,
    /// The model disallowed the kernel's outcome.
    pub model_disagrees: bool,
    /// The written result disallowed the kernel's outcome.
    pub expectation_fails: bool,
}

/// A whole run.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub steps: Vec<Step>,
    pub stop: Option<Stop>,
    /// Steps where the model allowed exactly one outcome.
    pub exact: usize,
}

impl Run {
    pub fn agrees(&self) -> bool {
        self.stop.is_none()
    }

    pub fn divergence(&self) -> Option<&Divergence> {
        match &self.stop {
            Some(Stop::Divergence(d)) => Some(d),
            _ => None,
        }
    }

    /// True when the model (not only a written result) disagreed with the kernel.
    pub fn model_diverged(&self) -> bool {
        self.divergence().is_some_and(|d| d.model_disagrees)
    }
}

/// Options of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Keep running the kernel after a divergence (to record all its results); the model is left behind.
    pub record: bool,
}

/// Errors that stop the checker itself.
#[derive(Debug)]
pub enum CheckError {
    Kernel(KernelError),
    Model(ModelError),
    Calibration(String),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Kernel(e) => e.fmt(f),
            CheckError::Model(e) => e.fmt(f),
            CheckError::Calibration(e) => {
                write!(f, "cannot calibrate the model on this kernel: {e}")
            }
        }
    }
}

impl std::error::Error for CheckError {}

impl From<KernelError> for CheckError {
    fn from(e: KernelError) -> Self {
        CheckError::Kernel(e)
    }
}

impl From<ModelError> for CheckError {
    fn from(e: ModelError) -> Self {
        CheckError::Model(e)
    }
}

/// A reusable checker: one executor and the calibrated parameters.
pub struct Checker {
    kernel: Kernel,
    params: Params,
    /// Whether the executor's directory has been used since the last reset.
    dirty: bool,
}

impl Checker {
    /// A checker with parameters measured on this kernel.
    pub fn new() -> Result<Checker, CheckError> {
        let params = crate::kernel::calibrate::params().map_err(CheckError::Calibration)?;
        Ok(Checker {
            kernel: Kernel::new()?,
            params,
            dirty: false,
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Cleans the executor's directory if an earlier script used it.
    fn fresh_dir(&mut self) -> Result<(), CheckError> {
        if self.dirty {
            self.kernel.reset()?;
        }
        self.dirty = true;
        Ok(())
    }

    /// Runs one script in a clean private directory.
    pub fn run(&mut self, script: &Script, opts: Options) -> Result<Run, CheckError> {
        self.fresh_dir()?;
        let mut model = Model::new(self.params.clone());
        run_with(script, &mut self.kernel, &mut model, opts)
    }

    /// Runs a script on the kernel alone (the baseline for the checker's overhead).
    pub fn run_kernel_only(&mut self, script: &Script) -> Result<usize, CheckError> {
        self.fresh_dir()?;
        let mut names = Names::default();
        let mut n = 0;
        for line in &script.lines {
            if let Err(_msg) = names.check(&line.call) {
                break;
            }
            let new_name = names.new_name(line);
            let out = self.kernel.run(&line.call, &new_name)?;
            names.after(&out, new_name);
            n += 1;
        }
        Ok(n)
    }
}

/// The names a script has created so far, and the automatic counter: how a runner names sockets (the checker,
/// and anything that replays a script on the model alone).
#[derive(Default)]
pub struct Names {
    known: HashSet<Name>,
    created: usize,
}

impl Names {
    /// A script error if the call's socket was never created.
    pub fn check(&self, call: &Call) -> Result<(), String> {
        match call.subject() {
            Some(s) if !self.known.contains(s) => Err(format!(
                "unknown socket name `{s}` (no earlier line created it)"
            )),
            _ => Ok(()),
        }
    }

    /// The name a creating call's socket gets: the written one, else `s` + how many sockets exist so far
    /// (empty, and no allocation, for calls that create nothing).
    pub fn new_name(&self, line: &Line) -> Name {
        match &line.expect {
            _ if !line.call.creates() => Name::new(),
            Some(Expect::Named(n)) => n.clone(),
            _ => auto_name(self.created),
        }
    }

    /// Records the outcome of a call; returns the name a created socket got.
    pub fn after(&mut self, out: &Outcome, new_name: Name) -> Option<Name> {
        if *out == Outcome::Created {
            self.created += 1;
            self.known.insert(new_name.clone());
            Some(new_name)
        } else {
            None
        }
    }
}

/// The automatic name of the `n`th socket a script creates (`s0`, `s1`, …).
pub fn auto_name(n: usize) -> Name {
    format!("s{n}")
}

/// Runs `script` on `kernel` and `model` in lock-step.
pub fn run_with(
    script: &Script,
    kernel: &mut Kernel,
    model: &mut Model,
    opts: Options,
) -> Result<Run, CheckError> {
    let mut run = Run::default();
    let mut names = Names::default();
    let mut model_live = true;
    for line in &script.lines {
        if let Err(msg) = names.check(&line.call) {
            if run.stop.is_none() {
                run.stop = Some(Stop::ScriptError {
                    line_no: line.line_no,
                    msg,
                });
            }
            break;
        }
        let new_name = names.new_name(line);
        let kout = kernel.run(&line.call, &new_name)?;
        let prediction = if model_live {
            Some(model.step(&line.call, &new_name)?)
        } else {
            None
        };
        let created = names.after(&kout, new_name);
        let idx = run.steps.len();
        if let Some(p) = &prediction {
            if p.is_exact() {
                run.exact += 1;
            }
            let model_disagrees = !p.allows(&kout);
            let expectation_fails = line.expect.as_ref().is_some_and(|e| !e.admits(&kout));
            if (model_disagrees || expectation_fails) && run.stop.is_none() {
                run.stop = Some(Stop::Divergence(Divergence {
                    step: idx,
                    line_no: line.line_no,
                    kernel: kout.clone(),
                    model: p.clone(),
                    model_disagrees,
                    expectation_fails,
                }));
                model_live = false;
            }
        }
        run.steps.push(Step {
            line: line.clone(),
            kernel: kout,
            prediction,
            created,
        });
        if run.stop.is_some() && !opts.record {
            break;
        }
    }
    Ok(run)
}

/// A line with the kernel's outcome written in (a valid script line).
pub fn recorded_line(step: &Step) -> String {
    let result = fmt_outcome(&step.kernel, step.created.as_deref());
    format!("{} -> {}", fmt_call(&step.line.call), result)
}

/// The script with every result the kernel gave written in.
pub fn recorded_script(run: &Run) -> Script {
    let lines = run
        .steps
        .iter()
        .map(|s| Line {
            call: s.line.call.clone(),
            expect: Some(match (&s.kernel, &s.created) {
                (Outcome::Created, Some(n)) => Expect::Named(n.clone()),
                (o, _) => Expect::Is(o.clone()),
            }),
            line_no: s.line.line_no,
        })
        .collect();
    Script { lines }
}

/// Describes a divergence in `#` comment lines, so a transcript stays a valid script.
pub fn describe(run: &Run) -> String {
    let mut out = String::new();
    match &run.stop {
        None => {}
        Some(Stop::ScriptError { line_no, msg }) => {
            let _ = writeln!(out, "# SCRIPT ERROR at line {line_no}: {msg}");
        }
        Some(Stop::Divergence(d)) => {
            let step = &run.steps[d.step];
            let what = match (d.model_disagrees, d.expectation_fails) {
                (true, true) => "the kernel disagrees with the model and with the written result",
                (true, false) => "the kernel disagrees with the model",
                _ => "the kernel disagrees with the written result",
            };
            let line_ref = if d.line_no > 0 {
                format!("line {}", d.line_no)
            } else {
                format!("step {}", d.step + 1)
            };
            let _ = writeln!(out, "# DIVERGENCE at {line_ref}: {what}");
            let _ = writeln!(out, "#   call:          {}", fmt_call(&step.line.call));
            let _ = writeln!(
                out,
                "#   kernel:        {}",
                fmt_outcome(&d.kernel, step.created.as_deref())
            );
            let allowed: Vec<String> = d
                .model
                .allowed
                .iter()
                .map(|o| fmt_outcome(o, Some("<new socket>")))
                .collect();
            let _ = writeln!(
                out,
                "#   model allowed: {}   (rule {})",
                allowed.join(" or "),
                d.model.rule
            );
            if let Some(e) = &step.line.expect {
                let l = Line {
                    call: step.line.call.clone(),
                    expect: Some(e.clone()),
                    line_no: 0,
                };
                let _ = writeln!(out, "#   written:       {}", fmt_line(&l));
            }
        }
    }
    out
}
