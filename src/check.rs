//! The checker: runs a script on the model and on the kernel in lock-step and stops at the first disagreement.

use crate::kernel::{Kernel, KernelError};
use crate::model::{Model, ModelError, Params, Prediction};
use crate::script::{
    fmt_call, fmt_line, fmt_outcome, Addr, AddrOut, Call, DataPat, Expect, ExpectValue, Line, Name,
    Outcome, RecvPat, Script, Value,
};
use std::collections::HashSet;
use std::fmt::Write as _;

/// One line as it ran.
#[derive(Clone, Debug)]
pub struct Step {
    pub line: Line,
    /// The kernel's outcome.
    pub kernel: Outcome,
    /// What the model allowed (`None` once the model has been left behind: after a divergence in record
    /// mode, or after a call the model does not cover).
    pub prediction: Option<Prediction>,
    /// The names the call's new descriptors got.
    pub created: Vec<Name>,
}

/// Why a script stopped early.
#[derive(Clone, Debug)]
pub enum Stop {
    /// The kernel gave an outcome the model does not allow, or one the script's written result rejects
    /// (boxed: it holds two outcomes and a prediction, and most runs never stop).
    Divergence(Box<Divergence>),
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
    /// What the model allowed (`None` if the model had been left behind).
    pub model: Option<Prediction>,
    /// The model disallowed the kernel's outcome.
    pub model_disagrees: bool,
    /// The written result disallowed the kernel's outcome.
    pub expectation_fails: bool,
}

/// A whole run.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Every step, in order (none in a lean run: see [`Options::lean`]).
    pub steps: Vec<Step>,
    /// How many lines ran.
    pub lines: usize,
    /// A lean run (see [`Options::lean`]).
    pub lean: bool,
    /// A lean run's steps that its report names (where the model stopped covering it, the divergence),
    /// with their indices.
    pub kept: Vec<(usize, Step)>,
    /// The results (as a transcript prints them after `->`) of a lean run's lines whose transcript line
    /// differs from the written one (no written result, or one the kernel's outcome does not satisfy), one
    /// after another, each ended by `\n`...
    pub recorded: String,
    /// ... and the index of the step each of them belongs to.
    pub recorded_at: Vec<u32>,
    pub stop: Option<Stop>,
    /// Steps where the model allowed exactly one outcome.
    pub exact: usize,
    /// The first step the model does not cover (and its rule): from there on only written results are checked.
    pub unmodelled: Option<(usize, &'static str)>,
}

impl Run {
    /// Step `i`, if the run kept it (a full run keeps every step).
    pub fn step(&self, i: usize) -> Option<&Step> {
        self.steps
            .get(i)
            .or_else(|| self.kept.iter().find(|(j, _)| *j == i).map(|(_, s)| s))
    }

    pub fn agrees(&self) -> bool {
        self.stop.is_none()
    }

    /// Agrees, and the model covered every line.
    pub fn fully_agrees(&self) -> bool {
        self.agrees() && self.unmodelled.is_none()
    }

    pub fn divergence(&self) -> Option<&Divergence> {
        match &self.stop {
            Some(Stop::Divergence(d)) => Some(d.as_ref()),
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
    /// Keep only what a report needs (the line count, the steps a report names, the transcript lines that
    /// differ from the written ones) rather than every step, so that the memory a run takes does not grow
    /// with its length when the script's lines are streamed in ([`Checker::run_lines`]).
    pub lean: bool,
}

impl Options {
    /// Recording: the kernel keeps running after a divergence, every step kept (`--record`, `--bless`).
    pub fn recording() -> Options {
        Options {
            record: true,
            lean: false,
        }
    }
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

    /// Cleans the executor's directory if an earlier script used it and was not cleaned up after.
    fn fresh_dir(&mut self) -> Result<(), CheckError> {
        if self.dirty {
            self.kernel.reset()?;
        }
        self.dirty = true;
        Ok(())
    }

    /// Ends a script, whatever happened in it: its descriptors are closed and its files removed now, so that
    /// what runs next in this process — a `--bless` rewrite, the `--junit` file, the next script — never
    /// meets the script's EMFILE or its sockets.
    fn end_script<T>(&mut self, r: Result<T, CheckError>) -> Result<T, CheckError> {
        let reset = self.kernel.reset();
        self.dirty = reset.is_err();
        let t = r?;
        reset?;
        Ok(t)
    }

    /// Runs one script in a clean private directory.
    pub fn run(&mut self, script: &Script, opts: Options) -> Result<Run, CheckError> {
        self.run_lines(script.lines.iter().cloned(), opts)
    }

    /// Runs lines as they come (e.g. parsed one at a time from a long script's text) in a clean private
    /// directory.
    pub fn run_lines(
        &mut self,
        lines: impl IntoIterator<Item = Line>,
        opts: Options,
    ) -> Result<Run, CheckError> {
        self.fresh_dir()?;
        let mut model = Model::new(self.params.clone());
        model.set_fd_budget(self.kernel.fd_budget());
        model.set_nofile(self.kernel.nofile());
        let r = run_with(lines, &mut self.kernel, &mut model, opts);
        self.end_script(r)
    }

    /// Runs a script on the kernel alone (the baseline for the checker's overhead).
    pub fn run_kernel_only(&mut self, script: &Script) -> Result<usize, CheckError> {
        self.fresh_dir()?;
        let r = self.kernel_lines(script);
        self.end_script(r)
    }

    fn kernel_lines(&mut self, script: &Script) -> Result<usize, CheckError> {
        let mut names = Names::default();
        let mut n = 0;
        for line in &script.lines {
            if let Err(_msg) = names.check(&line.call) {
                break;
            }
            let out = self.kernel.run(&line.call)?;
            let created = names.names_for(line, out.new_fds());
            self.kernel.name_new(&created);
            names.after(&created);
            n += 1;
        }
        Ok(n)
    }
}

/// The names a script has created so far, and the automatic counter: how a runner names descriptors (the
/// checker, and anything that replays a script on the model alone). The counter counts every new descriptor.
#[derive(Default)]
pub struct Names {
    known: HashSet<Name>,
    created: usize,
}

impl Names {
    /// A script error if a name the call uses was never created.
    pub fn check(&self, call: &Call) -> Result<(), String> {
        match call.names().into_iter().find(|s| !self.known.contains(*s)) {
            Some(s) => Err(format!(
                "unknown socket name `{s}` (no earlier line created it)"
            )),
            None => Ok(()),
        }
    }

    /// The names `n` new descriptors of `line` get: the written ones, else `s` + how many descriptors the
    /// script has created before each.
    pub fn names_for(&self, line: &Line, n: usize) -> Vec<Name> {
        let written = line.expect.as_ref().map_or(&[][..], |e| e.names());
        (0..n)
            .map(|i| {
                written
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| auto_name(self.created + i))
            })
            .collect()
    }

    /// Records the names new descriptors got.
    pub fn after(&mut self, names: &[Name]) {
        self.created += names.len();
        self.known.extend(names.iter().cloned());
    }
}

/// The automatic name of the `n`th descriptor a script creates (`s0`, `s1`, …).
pub fn auto_name(n: usize) -> Name {
    format!("s{n}")
}

/// Autobind-shaped names (`@autoN`) seen by one side (kernel or model), numbered by first appearance.
#[derive(Clone, Debug, Default)]
pub struct Autos {
    keys: Vec<[u8; 5]>,
}

impl Autos {
    fn number(&mut self, k: [u8; 5]) -> u32 {
        match self.keys.iter().position(|x| *x == k) {
            Some(i) => i as u32 + 1,
            None => {
                self.keys.push(k);
                self.keys.len() as u32
            }
        }
    }

    fn addr(&mut self, a: &mut AddrOut) {
        if let Some(k) = a.auto_key() {
            *a = AddrOut::Auto(self.number(k));
        }
    }

    /// Rewrites the autobind-shaped names in an outcome as `@autoN`, numbering new ones.
    pub fn normalize(&mut self, o: &mut Outcome) {
        match &mut o.value {
            Value::Accepted(a) | Value::Addr(a) => self.addr(a),
            Value::Recv(r) => self.addr(&mut r.from),
            _ => {}
        }
    }

    /// The call with `@autoN` replaced by the name this side knows by that number.
    pub fn resolve(&self, call: &Call) -> Result<Option<Call>, String> {
        let Some(Addr::Auto(n)) = call.addr() else {
            return Ok(None);
        };
        let Some(k) = self.keys.get(*n as usize - 1) else {
            return Err(format!(
                "@auto{n} names no autobind name seen in this script's results so far"
            ));
        };
        let mut c = call.clone();
        if let Some(a) = c.addr_mut() {
            *a = Addr::Abstract(k.to_vec());
        }
        Ok(Some(c))
    }
}

/// Runs `script` on `kernel` and `model` in lock-step.
pub fn run_with(
    lines: impl IntoIterator<Item = Line>,
    kernel: &mut Kernel,
    model: &mut Model,
    opts: Options,
) -> Result<Run, CheckError> {
    let mut run = Run {
        lean: opts.lean,
        ..Run::default()
    };
    let mut names = Names::default();
    let mut kernel_autos = Autos::default();
    let mut model_autos = Autos::default();
    let mut model_live = true;
    for line in lines {
        // The model's names are resolved only while the model runs (once it is left behind it has seen none).
        let resolved = names.check(&line.call).and_then(|()| {
            let k = kernel_autos.resolve(&line.call)?;
            let m = if model_live {
                model_autos.resolve(&line.call)?
            } else {
                None
            };
            Ok((k, m))
        });
        let (kcall, mcall) = match resolved {
            Ok(r) => r,
            Err(msg) => {
                if run.stop.is_none() {
                    run.stop = Some(Stop::ScriptError {
                        line_no: line.line_no,
                        msg,
                    });
                }
                break;
            }
        };
        // An `accept` written as a bare NAME numbers no autobind name.
        let numbers = !matches!(
            line.expect.as_ref().map(|e| &e.value),
            Some(ExpectValue::Accepted(_, None))
        );
        let mut kout = kernel.run(kcall.as_ref().unwrap_or(&line.call))?;
        if numbers {
            kernel_autos.normalize(&mut kout);
        } else {
            kernel_autos.clone().normalize(&mut kout);
        }
        let prediction = if model_live {
            let mut p = model.step(mcall.as_ref().unwrap_or(&line.call))?;
            if p.is_exact() && numbers {
                model_autos.normalize(&mut p.allowed[0]);
            } else {
                for o in &mut p.allowed {
                    model_autos.clone().normalize(o);
                }
            }
            Some(p)
        } else {
            None
        };
        let created = names.names_for(&line, kout.new_fds());
        kernel.name_new(&created);
        names.after(&created);
        let idx = run.lines;
        run.lines += 1;
        if let Some(p) = &prediction {
            if !p.is_modelled() {
                run.unmodelled.get_or_insert((idx, p.rule));
                model_live = false;
            } else {
                if let Some(i) = p.allowed.iter().position(|o| *o == kout) {
                    model.observe(i);
                }
                model.name_new(&created);
                if p.is_exact() {
                    run.exact += 1;
                }
            }
        }
        let model_disagrees = prediction
            .as_ref()
            .is_some_and(|p| p.is_modelled() && !p.allows(&kout));
        let expectation_fails = line.expect.as_ref().is_some_and(|e| !e.admits(&kout));
        if (model_disagrees || expectation_fails) && run.stop.is_none() {
            run.stop = Some(Stop::Divergence(Box::new(Divergence {
                step: idx,
                line_no: line.line_no,
                kernel: kout.clone(),
                model: prediction.clone(),
                model_disagrees,
                expectation_fails,
            })));
            model_live = false;
        }
        let step = Step {
            line,
            kernel: kout,
            prediction,
            created,
        };
        if !opts.lean {
            run.steps.push(step);
        } else {
            if !step
                .line
                .expect
                .as_ref()
                .is_some_and(|e| e.admits(&step.kernel))
            {
                // Only the result: the call is re-read from the text when the transcript is written.
                run.recorded.push_str(&recorded_result(&step));
                run.recorded.push('\n');
                run.recorded_at.push(u32::try_from(idx).unwrap_or(u32::MAX));
            }
            let named = run.unmodelled.is_some_and(|(i, _)| i == idx)
                || run.divergence().is_some_and(|d| d.step == idx);
            if named {
                run.kept.push((idx, step));
            }
        }
        if run.stop.is_some() && !opts.record {
            break;
        }
    }
    Ok(run)
}

/// A line as a transcript prints it: as written where the kernel's outcome satisfies the written result,
/// otherwise with the kernel's outcome (a valid script line either way).
pub fn transcript_line(step: &Step) -> String {
    match &step.line.expect {
        Some(e) if e.admits(&step.kernel) => fmt_line(&step.line),
        _ => recorded_line(step),
    }
}

/// A line with the kernel's outcome written in (a valid script line).
pub fn recorded_line(step: &Step) -> String {
    format!("{} -> {}", fmt_call(&step.line.call), recorded_result(step))
}

/// The kernel's outcome of a step as a recorded line writes it after `->`.
fn recorded_result(step: &Step) -> String {
    fmt_outcome(&step.line.call, &step.kernel, &step.created)
}

/// Writes a lean run's transcript lines (as [`transcript_line`] prints them) from the text it ran: the
/// written lines re-parsed, the others as recorded.
pub fn write_lean_transcript(
    run: &Run,
    text: &str,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut recorded = run.recorded.split_terminator('\n');
    let mut at = run.recorded_at.iter().peekable();
    let ran = crate::script::lines(text)
        .map_while(Result::ok)
        .take(run.lines);
    for (i, line) in ran.enumerate() {
        if at.next_if(|&&j| j as usize == i).is_some() {
            let result = recorded.next().unwrap_or_default();
            write!(out, "{} -> {result}", fmt_call(&line.call))?;
        } else {
            out.write_all(fmt_line(&line).as_bytes())?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The script with every result the kernel gave written in.
pub fn recorded_script(run: &Run) -> Script {
    let lines = run
        .steps
        .iter()
        .map(|s| Line {
            call: s.line.call.clone(),
            expect: Some(expect_of(&s.line.call, &s.kernel, &s.created)),
            line_no: s.line.line_no,
        })
        .collect();
    Script { lines }
}

/// The written result that says exactly what `o` is, with `names` for its new descriptors.
pub fn expect_of(call: &Call, o: &Outcome, names: &[Name]) -> Expect {
    let value = match &o.value {
        Value::Created | Value::Pair => ExpectValue::Named(names.to_vec()),
        Value::Accepted(a) => {
            ExpectValue::Accepted(names.first().cloned().unwrap_or_default(), Some(a.clone()))
        }
        Value::Recv(r) => {
            let from = matches!(call, Call::RecvFrom(..) | Call::RecvMsg(..));
            ExpectValue::Recv(RecvPat {
                data: DataPat::Exact(r.data.clone()),
                ret: (r.ret != r.data.len()).then_some(r.ret),
                from: from.then(|| r.from.clone()),
                flags: r.flags,
                rights: names.to_vec(),
                creds: r.creds,
            })
        }
        v => ExpectValue::Is(v.clone()),
    };
    Expect {
        value,
        sigpipe: o.sigpipe,
        waited: o.waited,
    }
}

/// Describes how a run ended in `#` comment lines, so a transcript stays a valid script.
pub fn describe(run: &Run) -> String {
    let mut out = String::new();
    if let Some((line, rule)) = run
        .unmodelled
        .and_then(|(i, rule)| Some((&run.step(i)?.line, rule)))
    {
        let _ = writeln!(
            out,
            "# NOT MODELLED from line {}: the model does not say what `{}` does yet ({rule}); later lines were checked against their written results only",
            line.line_no,
            fmt_call(&line.call)
        );
    }
    match &run.stop {
        None => {}
        Some(Stop::ScriptError { line_no, msg }) => {
            let _ = writeln!(out, "# SCRIPT ERROR at line {line_no}: {msg}");
        }
        Some(Stop::Divergence(d)) => {
            let Some(step) = run.step(d.step) else {
                return out;
            };
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
            let call = &step.line.call;
            let _ = writeln!(out, "# DIVERGENCE at {line_ref}: {what}");
            let _ = writeln!(out, "#   call:          {}", fmt_call(call));
            if std::env::var_os("UDSIM_DEBUG").is_some() {
                let _ = writeln!(out, "# {:?}\n# {:?}", d.kernel, d.model);
            }
            let _ = writeln!(
                out,
                "#   kernel:        {}",
                fmt_outcome(call, &d.kernel, &step.created)
            );
            if let Some(m) = d.model.as_ref().filter(|m| m.is_modelled()) {
                let allowed: Vec<String> = m
                    .allowed
                    .iter()
                    .map(|o| fmt_outcome(call, o, &step.created))
                    .collect();
                let _ = writeln!(
                    out,
                    "#   model allowed: {}   (rule {})",
                    allowed.join(" or "),
                    m.rule
                );
            }
            if d.model_disagrees {
                // The host parameters the model predicted with (a divergence may be a host the calibration
                // did not capture; `udsim params` prints them all).
                if let Ok(p) = crate::kernel::calibrate::params() {
                    const SHOWN: &[&str] = &[
                        "sndbuf",
                        "rcvbuf",
                        "wmem_max",
                        "somaxconn",
                        "max_dgram_qlen",
                        "tick_us",
                    ];
                    let named: Vec<String> = p
                        .named()
                        .into_iter()
                        .filter(|(n, _)| SHOWN.contains(n))
                        .map(|(n, v)| format!("{n}={v}"))
                        .collect();
                    let _ = writeln!(
                        out,
                        "#   parameters:    {} (all: udsim params)",
                        named.join(" ")
                    );
                }
            }
            if let Some(e) = &step.line.expect {
                let l = Line {
                    call: call.clone(),
                    expect: Some(e.clone()),
                    line_no: 0,
                };
                let _ = writeln!(out, "#   written:       {}", fmt_line(&l));
            }
        }
    }
    out
}

/// The model alone on a script (no kernel): each line's prediction, in order, names given and `@autoN` resolved
/// as the checker does; it stops after the first line the model does not cover. Used by `udsim rules` and the
/// model-only scenario test.
pub fn model_only(params: &Params, script: &Script) -> Result<Vec<Prediction>, String> {
    let mut model = Model::new(params.clone());
    let (mut names, mut autos) = (Names::default(), Autos::default());
    let mut out = Vec::new();
    for l in &script.lines {
        let call = autos
            .resolve(&l.call)
            .map_err(|e| format!("line {}: {e}", l.line_no))?
            .unwrap_or_else(|| l.call.clone());
        let mut p = model
            .step(&call)
            .map_err(|e| format!("line {}: {e}", l.line_no))?;
        let numbers = !matches!(
            l.expect.as_ref().map(|e| &e.value),
            Some(ExpectValue::Accepted(_, None))
        );
        let exact = p.is_exact();
        for o in &mut p.allowed {
            if numbers && exact {
                autos.normalize(o);
            } else {
                autos.clone().normalize(o);
            }
        }
        // Where the model allows several outcomes, the written one says which happened.
        let seen = l
            .expect
            .as_ref()
            .and_then(|e| p.allowed.iter().position(|o| e.admits(o)));
        if let Some(i) = seen {
            model.observe(i);
        }
        let n = seen
            .or(p.is_modelled().then_some(0))
            .map_or(0, |i| p.allowed[i].new_fds());
        let modelled = p.is_modelled();
        out.push(p);
        if !modelled {
            break;
        }
        let created = names.names_for(l, n);
        model.name_new(&created);
        names.after(&created);
    }
    Ok(out)
}

/// The host parameters a script says it depends on: `# requires: name=value, name=value` comment lines (names
/// as `udsim params` prints them). A script recorded on one kernel may show a behaviour another kernel does
/// not have (see docs/kernels.md); it then declares the parameter, and runs only where it holds.
pub fn requirements(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .filter_map(|l| l.trim_start().strip_prefix("requires:"))
        .flat_map(|l| l.split(','))
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The first requirement these parameters do not meet, as `name=value (this kernel: other)`; unknown names
/// count as unmet.
pub fn unmet(params: &Params, reqs: &[(String, String)]) -> Option<String> {
    let named = params.named();
    reqs.iter().find_map(|(k, v)| {
        let have = named.iter().find(|(n, _)| n == k).map(|(_, x)| x.as_str());
        (have != Some(v.as_str())).then(|| {
            format!(
                "{k}={v} (this kernel: {})",
                have.unwrap_or("no such parameter")
            )
        })
    })
}

/// Runs `work(checker, i)` for `i = 0, 1, 2, …` while `claim(i)` says so, spread over `jobs` threads, and hands
/// each result to `emit` in index order (so what is printed does not depend on `jobs`); `emit` returning
/// false stops the run (cases already running finish, later ones are not started). Indices are claimed in
/// order under one lock and once `claim` says no nobody claims again, so the results handed on always form a
/// prefix `0..n`.
///
/// With one job everything runs on the calling thread with `main`, as before `--jobs` existed. With more,
/// the calling thread is one of the jobs (with `main`) and `jobs - 1` threads each make their own `Checker`
/// (the executor is bound to the thread that runs it: its fs context, network namespace, signal mask and
/// credentials are per thread) in a descriptor table of their own (`kernel::private_fd_table`); all of them
/// are made before any script runs. The calling thread hands results on between its own cases and waits for
/// the others' only when nothing is left to claim, so a finished case wakes nobody (on a 2-CPU machine a
/// third, waking thread preempted a checker at every case). On a checker error at case `i` the results
/// before `i` are handed on and the error returned. Returns whether the run went to its end (`false`:
/// `emit` stopped it).
pub fn run_ordered<R, W, E>(
    main: &mut Checker,
    jobs: usize,
    claim: &(dyn Fn(usize) -> bool + Sync),
    work: W,
    emit: E,
) -> Result<bool, CheckError>
where
    R: Send,
    W: Fn(&mut Checker, usize) -> Result<R, CheckError> + Sync,
    E: FnMut(usize, R) -> bool,
{
    let work = |ck: &mut Checker, _: &mut (), _: usize, i: usize| work(ck, i);
    run_ordered_with(main, jobs, claim, work, emit).map(|(done, _)| done)
}

/// [`run_ordered`] with state of each thread's own: `work(checker, local, handed, i)` gets its thread's
/// `local` and how many results had been handed on to `emit` when it started (results `0..handed` are in
/// the run's prefix, whatever happens later), and the locals of every thread are returned at the end. What a
/// thread accumulates there stays in its own memory: nothing it allocated is freed by another thread at
/// every case (glibc's allocator locks the arena a block came from, and a checker waiting for that lock
/// sleeps).
pub fn run_ordered_with<L, R, W, E>(
    main: &mut Checker,
    jobs: usize,
    claim: &(dyn Fn(usize) -> bool + Sync),
    work: W,
    mut emit: E,
) -> Result<(bool, Vec<L>), CheckError>
where
    L: Default + Send,
    R: Send,
    W: Fn(&mut Checker, &mut L, usize, usize) -> Result<R, CheckError> + Sync,
    E: FnMut(usize, R) -> bool,
{
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Condvar, Mutex};
    let mut mine = L::default();
    if jobs <= 1 {
        let mut i = 0;
        while claim(i) {
            let r = work(main, &mut mine, i, i)?;
            if !emit(i, r) {
                return Ok((false, vec![mine]));
            }
            i += 1;
        }
        return Ok((true, vec![mine]));
    }
    let handed = AtomicUsize::new(0);
    // The next index to claim, `None` once `claim` said no (or the run was stopped).
    let next = Mutex::new(Some(0usize));
    let take = || {
        let mut g = next.lock().unwrap_or_else(|e| e.into_inner());
        let i = (*g)?;
        if claim(i) {
            *g = Some(i + 1);
            Some(i)
        } else {
            *g = None;
            None
        }
    };
    let stop = || *next.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let setup_failed = AtomicBool::new(false);
    let setup_error: Mutex<Option<CheckError>> = Mutex::new(None);
    // (checkers made, threads started once all are): every thread waits until each has made its checker.
    let ready = (Mutex::new((0usize, None::<usize>)), Condvar::new());
    let (tx, rx) = mpsc::channel::<(usize, Result<R, CheckError>)>();
    std::thread::scope(|s| {
        let mut started = 0;
        let mut threads = Vec::new();
        for _ in 1..jobs {
            let tx = tx.clone();
            let (take, work, ready, handed) = (&take, &work, &ready, &handed);
            let (setup_failed, setup_error) = (&setup_failed, &setup_error);
            let spawned = std::thread::Builder::new()
                .name("udsim-check".into())
                // As much stack as the main thread has (deep scripts, the model's recursion).
                .stack_size(8 << 20)
                .spawn_scoped(s, move || {
                    // A table of its own before anything is opened (see `private_fd_table`).
                    crate::kernel::private_fd_table();
                    let ck = Checker::new();
                    if ck.is_err() {
                        setup_failed.store(true, Ordering::SeqCst);
                    }
                    {
                        let (m, cv) = ready;
                        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
                        g.0 += 1;
                        cv.notify_all();
                        while g.1.is_none_or(|total| g.0 < total) {
                            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    let mut local = L::default();
                    let mut ck = match ck {
                        Ok(c) if !setup_failed.load(Ordering::SeqCst) => c,
                        Ok(_) => return local,
                        Err(e) => {
                            *setup_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                            return local;
                        }
                    };
                    while let Some(i) = take() {
                        let r = work(&mut ck, &mut local, handed.load(Ordering::SeqCst), i);
                        let failed = r.is_err();
                        if tx.send((i, r)).is_err() || failed {
                            break;
                        }
                    }
                    local
                });
            match spawned {
                Ok(t) => {
                    started += 1;
                    threads.push(t);
                }
                Err(e) => {
                    setup_failed.store(true, Ordering::SeqCst);
                    *setup_error.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(CheckError::Kernel(KernelError::Setup(format!(
                            "cannot start a checker thread: {e}"
                        ))));
                    break;
                }
            }
        }
        {
            let (m, cv) = &ready;
            let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
            g.1 = Some(started);
            cv.notify_all();
            // This thread's checker exists already; it starts once the others have made theirs.
            while g.0 < started {
                g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
        drop(tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut want = 0usize;
        // Whether this thread still claims cases (not after a setup failure or its own error).
        let mut claiming = !setup_failed.load(Ordering::SeqCst);
        let result = 'run: loop {
            // Hand on, in order, what has arrived.
            while let Some(r) = pending.remove(&want) {
                match r {
                    Ok(v) => {
                        if !emit(want, v) {
                            stop();
                            break 'run Ok(false);
                        }
                    }
                    Err(e) => {
                        stop();
                        break 'run Err(e);
                    }
                }
                want += 1;
                handed.store(want, Ordering::SeqCst);
            }
            let own = if claiming { take() } else { None };
            if let Some(i) = own {
                let r = work(main, &mut mine, want, i);
                if r.is_err() {
                    // Later cases are not started; earlier ones still arrive and are handed on first.
                    stop();
                    claiming = false;
                }
                pending.insert(i, r);
                while let Ok((i, r)) = rx.try_recv() {
                    pending.insert(i, r);
                }
                continue;
            }
            claiming = false;
            // Nothing left to claim: wait for the others (the channel ends when they have all stopped).
            match rx.recv() {
                Ok((i, r)) => {
                    pending.insert(i, r);
                }
                // The others have all stopped. Every claimed case sends its result, so nothing is missing
                // here; were something missing, what sorts first ends the run rather than a hang.
                Err(_) => {
                    break match pending.pop_first() {
                        None => Ok(true),
                        Some((_, Err(e))) => Err(e),
                        Some(_) => Ok(false),
                    }
                }
            }
        };
        // Threads still running see the stop at their next claim; their sends fail once `rx` is gone.
        drop(rx);
        let mut locals = vec![mine];
        // A thread that panicked has no local to give (the scope then re-raises its panic).
        locals.extend(threads.into_iter().filter_map(|t| t.join().ok()));
        result.map(|done| (done, locals))
    })
    .and_then(
        |done| match setup_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(done),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{parse, Errno};

    /// A model divergence names the host parameters the model predicted with; a divergence from a written
    /// result only (the model agreed with the kernel) does not.
    #[test]
    fn a_model_divergence_shows_the_parameters_in_force() {
        let line = parse("socket(STREAM) -> s\n").expect("parses").lines[0].clone();
        let model = Prediction::unmodelled("x");
        let run = |model_disagrees| Run {
            steps: vec![Step {
                line: line.clone(),
                kernel: Outcome::err(Errno::EMFILE),
                prediction: None,
                created: vec![],
            }],
            stop: Some(Stop::Divergence(Box::new(Divergence {
                step: 0,
                line_no: 1,
                kernel: Outcome::err(Errno::EMFILE),
                model: Some(model.clone()),
                model_disagrees,
                expectation_fails: !model_disagrees,
            }))),
            ..Run::default()
        };
        let p = crate::kernel::calibrate::params().expect("calibration");
        let text = describe(&run(true));
        assert!(
            text.contains(&format!(
                "#   parameters:    sndbuf={} rcvbuf={} wmem_max={}",
                p.sndbuf, p.rcvbuf, p.wmem_max
            )),
            "{text}"
        );
        assert!(text.contains(&format!("max_dgram_qlen={}", p.max_dgram_qlen)));
        assert!(!describe(&run(false)).contains("parameters:"));
    }
}
