//! Bodies of the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs` call these), shared with the stable regression
//! test (`tests/fuzz_regression.rs`), so CI exercises every committed corpus and crash input without nightly.
//!
//! Inputs of `call_orderings` and `model_only` come in two modes:
//! - **text**: input starting with `#` is a script in the script language (a comment line first), so scenarios
//!   seed the corpus as they are and a crash input of this mode is itself a `.uds` file. Written results are
//!   dropped (only `-> name` is kept): model and kernel are compared with each other, line by line.
//! - **generated**: any other input is a stream of choices for [`crate::gen::generate`], the state-aware
//!   generator shared with proptest and `udsim explore` (most calls act on live sockets, existing paths and
//!   listeners). [`Bytes`] reads the choices: one byte per choice among at most 256, two bytes up to 65,536,
//!   four beyond (little-endian, taken modulo the number of options; zeros once the input is exhausted).
//!
//! A divergence panics with the shrunk script as a transcript (a valid script with the kernel's results written
//! in and the divergence described in `#` lines): save it as `crash.uds` and run `udsim check crash.uds`.

use crate::check::{Checker, Names, Options};
use crate::gen::{generate, Source};
use crate::model::socket::{Sock, SockId, State};
use crate::model::{Model, Params, Prediction};
use crate::script::{fmt_script, parse, Call, Errno, Events, ExpectValue, Outcome, Script, Value};
use std::cell::RefCell;

/// Most calls a generated `call_orderings` input runs (the generator's recipes may add two more).
pub const CALL_ORDERINGS_MAX_OPS: usize = 24;
/// Most calls a generated `model_only` input runs (no syscalls, so longer scripts are affordable).
pub const MODEL_ONLY_MAX_OPS: usize = 256;
/// Text-mode limits, so a few hundred bytes of text cannot ask for gigabytes or thousands of sockets.
pub const MAX_TEXT_LINES: usize = 256;
/// Most bytes all `write` calls of a text-mode script may carry together.
pub const MAX_TEXT_DATA: usize = 4 << 20;

/// Choices read from fuzz bytes: one byte for up to 256 options, two up to 65,536, four beyond; nothing for a
/// single option. Zeros once the bytes run out (and `done` says so, so generation stops at the next call).
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data, pos: 0 }
    }
}

/// How many input bytes a choice among `n` options takes.
fn width(n: usize) -> usize {
    match n {
        0 | 1 => 0,
        2..=0x100 => 1,
        0x101..=0x1_0000 => 2,
        _ => 4,
    }
}

impl Source for Bytes<'_> {
    fn below(&mut self, n: usize) -> usize {
        let w = width(n);
        let mut v: u64 = 0;
        for i in 0..w {
            v |= u64::from(self.data.get(self.pos + i).copied().unwrap_or(0)) << (8 * i);
        }
        self.pos += w;
        if w == 0 {
            0
        } else {
            (v % n as u64) as usize
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// Wraps a source and writes down every choice as the bytes [`Bytes`] reads back, so seeds for the generated
/// mode can be made from any source (a seeded [`crate::gen::Rng`], say).
pub struct Recorder<S: Source> {
    pub inner: S,
    pub bytes: Vec<u8>,
}

impl<S: Source> Recorder<S> {
    pub fn new(inner: S) -> Recorder<S> {
        Recorder {
            inner,
            bytes: Vec::new(),
        }
    }
}

impl<S: Source> Source for Recorder<S> {
    fn below(&mut self, n: usize) -> usize {
        let v = self.inner.below(n);
        let w = width(n);
        self.bytes.extend_from_slice(&(v as u64).to_le_bytes()[..w]);
        v
    }

    fn done(&self) -> bool {
        self.inner.done()
    }
}

/// The bytes of a generated-mode input that makes the generator emit what `src` chooses.
pub fn record(src: impl Source, params: &Params, max_ops: usize) -> (Script, Vec<u8>) {
    let mut r = Recorder::new(src);
    let script = generate(&mut r, params, max_ops);
    (script, r.bytes)
}

/// The script a `call_orderings` / `model_only` input stands for (`None`: an input to skip, such as text that
/// does not parse or is over the text-mode limits).
pub fn decode(data: &[u8], params: &Params, max_ops: usize) -> Option<Script> {
    if data.first() == Some(&b'#') {
        let text = std::str::from_utf8(data).ok()?;
        let mut script = parse(text).ok()?;
        let data_bytes: usize = script
            .lines
            .iter()
            .map(|l| l.call.data().map_or(0, <[u8]>::len))
            .sum();
        if script.lines.len() > MAX_TEXT_LINES || data_bytes > MAX_TEXT_DATA {
            return None;
        }
        for l in &mut script.lines {
            let names_only = matches!(
                l.expect.as_ref().map(|e| &e.value),
                Some(ExpectValue::Named(_) | ExpectValue::Accepted(_, None))
            );
            if !names_only {
                l.expect = None;
            }
        }
        Some(script)
    } else {
        Some(generate(&mut Bytes::new(data), params, max_ops))
    }
}

/// Ignores SIGPIPE once per process: libFuzzer's own `main` does not, and a signal would kill the target
/// without leaving a crash file (the executor also sends with MSG_NOSIGNAL).
fn ignore_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigIgn,
            )
        };
    });
}

thread_local! {
    /// One checker per thread (per fuzzing process): one calibration and ONE private directory, cleaned
    /// between runs (`Kernel::reset`), instead of a fresh temp dir per input.
    static CHECKER: RefCell<Option<Checker>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's checker. A panic message comes back as `Err` after the checker is dropped,
/// so the process dies without leaving its private directory behind.
fn with_checker(f: impl FnOnce(&mut Checker) -> Result<(), String>) {
    let failure = CHECKER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            match Checker::new() {
                Ok(c) => *slot = Some(c),
                Err(e) => return Some(format!("cannot start the checker: {e}")),
            }
        }
        let ck = slot.as_mut()?;
        let r = f(ck);
        match r {
            Ok(()) => None,
            Err(msg) => {
                *slot = None;
                Some(msg)
            }
        }
    });
    if let Some(msg) = failure {
        panic!("{msg}");
    }
}

/// The checker's verdict on `script`: `Err` with the minimal diverging script when model and kernel disagree
/// (unless `let_known_pass` and the divergence is a [`known_open`] one).
pub fn check_script(ck: &mut Checker, script: &Script, let_known_pass: bool) -> Result<(), String> {
    let run = ck
        .run(script, Options::default())
        .map_err(|e| format!("checker error: {e}\nscript:\n{}", fmt_script(script)))?;
    if !run.model_diverged() || (let_known_pass && known_open(&run).is_some()) {
        return Ok(());
    }
    // A divergence counts only if it reproduces: abstract socket names are shared by every process in the
    // network namespace, so a parallel fuzzing process (or test) holding the same name can make a bind
    // EADDRINUSE (or a connect succeed) once. The kernel's outcome is otherwise a function of the script.
    let again = ck
        .run(script, Options::default())
        .map_err(|e| format!("checker error: {e}"))?;
    if !again.model_diverged()
        || again.divergence().map(|d| d.step) != run.divergence().map(|d| d.step)
    {
        eprintln!(
            "udsim: a divergence did not reproduce (an abstract name held by another process?); skipped:\n{}",
            crate::check::describe(&run)
        );
        return Ok(());
    }
    let minimal = match crate::shrink::shrink(ck, script) {
        Ok(Some(m)) => m,
        _ => script.clone(),
    };
    let min_run = ck
        .run(&minimal, Options::default())
        .map_err(|e| format!("checker error: {e}"))?;
    let shown = if min_run.model_diverged() {
        &min_run
    } else {
        &run
    };
    Err(format!(
        "udsim: the model and the kernel diverge. Minimal script (kernel results written in; save as \
         crash.uds and run `udsim check crash.uds`):\n\
         ----- 8< -----\n{}----- >8 -----\noriginal script ({} lines):\n{}",
        crate::cli::transcript(shown),
        script.lines.len(),
        fmt_script(script)
    ))
}

/// Target `call_orderings`: the decoded script on the model and the kernel in lock-step; a divergence panics
/// with the minimal script. Divergences already reported and not fixed yet ([`known_open`]) are let pass, so a
/// fuzzing run looks for new ones.
pub fn call_orderings(data: &[u8]) {
    call_orderings_with(data, true);
}

/// [`call_orderings`] without letting known open divergences pass (for `fuzz/regressions/*/open-*`).
pub fn call_orderings_strict(data: &[u8]) {
    call_orderings_with(data, false);
}

fn call_orderings_with(data: &[u8], let_known_pass: bool) {
    ignore_sigpipe();
    with_checker(|ck| {
        let Some(script) = decode(data, ck.params(), CALL_ORDERINGS_MAX_OPS) else {
            return Ok(());
        };
        check_script(ck, &script, let_known_pass)
    });
}

/// Target `descriptors_in_flight`: as [`call_orderings`], but generated-mode inputs make rights-heavy scripts
/// (`gen::Mix::Rights`: rights sent and received, names closed, cycles left to the collector, sockets released so
/// it runs); text-mode inputs are run as they are.
pub fn descriptors_in_flight(data: &[u8]) {
    ignore_sigpipe();
    with_checker(|ck| {
        let script = if data.first() == Some(&b'#') {
            decode(data, ck.params(), CALL_ORDERINGS_MAX_OPS)
        } else {
            Some(crate::gen::generate_mix(
                &mut Bytes::new(data),
                ck.params(),
                CALL_ORDERINGS_MAX_OPS,
                crate::gen::Mix::Rights,
            ))
        };
        match script {
            Some(script) => check_script(ck, &script, true),
            None => Ok(()),
        }
    });
}

/// Model divergences found by fuzzing and reported, not fixed yet: the `open-*` regression input each one is
/// committed as, when `run`'s first divergence is one of them. Remove an entry once the model is fixed (the
/// regression test `open_regressions_still_fail` says when).
pub fn known_open(run: &crate::check::Run) -> Option<&'static str> {
    let d = run.divergence()?;
    #[allow(clippy::match_single_binding)] // no divergence is open at the moment
    match (&run.steps.get(d.step)?.line.call, &d.kernel) {
        // One arm per open input, matching its first divergence, e.g. (the first one found, fixed since and now
        // `fuzz/regressions/call_orderings/unlink-name-over-name-max.uds`):
        // (Call::Unlink(p), Outcome::Err(Errno::ENAMETOOLONG)) if p.len() > 255 => {
        //     Some("fuzz/regressions/call_orderings/open-unlink-name-over-name-max.uds")
        // }
        _ => None,
    }
}

/// For fuzzing processes (the fuzz target's `init`): puts the checker's private directory on tmpfs
/// (`TMPDIR=/dev/shm`) unless `TMPDIR` is set, which about doubles `call_orderings`' exec/s (bind and unlink
/// make and remove socket inodes; on ext4 that costs more than the rest of a script).
pub fn prefer_tmpfs() {
    let shm = std::path::Path::new("/dev/shm");
    if std::env::var_os("TMPDIR").is_none()
        && shm.is_dir()
        && nix::unistd::access(shm, nix::unistd::AccessFlags::W_OK).is_ok()
    {
        std::env::set_var("TMPDIR", shm);
    }
}

/// Target `script_parser`: the parser never panics, its errors point into the text, and every script it accepts
/// prints and re-parses to the same script (and prints the same again).
pub fn script_parser(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let script = match parse(&text) {
        Ok(s) => s,
        Err(e) => {
            // Errors point into the text: a line that exists, a column at most one past its end.
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                e.line >= 1 && e.line <= lines.len(),
                "parse error names line {} of {}: {e}",
                e.line,
                lines.len()
            );
            let len = lines[e.line - 1].len();
            assert!(
                e.col >= 1 && e.col <= len + 1,
                "parse error names column {} of a {len}-byte line: {e}",
                e.col
            );
            return;
        }
    };
    let printed = fmt_script(&script);
    let again = parse(&printed).unwrap_or_else(|e| {
        panic!("the printed script does not parse: {e}\ninput:\n{text}\nprinted:\n{printed}")
    });
    assert!(
        again.same_as(&script),
        "print → parse changes the script\ninput:\n{text}\nprinted:\n{printed}\nparsed back:\n{again:?}\nparsed first:\n{script:?}"
    );
    let printed_again = fmt_script(&again);
    assert_eq!(
        printed_again, printed,
        "printing is not idempotent\ninput:\n{text}"
    );
}

/// Target `model_only`: the decoded script on the model alone (no syscalls), checking after every call the
/// model's invariants (see [`Invariants`]). Any violation panics with the script so far.
pub fn model_only(data: &[u8]) {
    let params = match crate::kernel::calibrate::params() {
        Ok(p) => p,
        Err(e) => panic!("cannot calibrate the model on this kernel: {e}"),
    };
    let Some(script) = decode(data, &params, MODEL_ONLY_MAX_OPS) else {
        return;
    };
    let mut inv = Invariants::new(params);
    if let Err(msg) = inv.run(&script) {
        let done = Script {
            lines: script.lines[..inv.steps.min(script.lines.len())].to_vec(),
        };
        panic!(
            "udsim: model invariant broken at step {}: {msg}\nscript up to that step:\n{}",
            inv.steps,
            fmt_script(&done)
        );
    }
}

/// The model's invariants, checked call by call from outside the model (a shadow ledger of bytes written and
/// read per socket, plus the model's public state):
/// - `bytes_conserved`: bytes written by a socket = bytes queued at its peer + read by its peer + dropped
///   when the peer went away with them unread;
/// - `wmem_is_queued_truesize`: a socket's wmem = sum of truesize of its skbs still queued at its peer, and
///   overshoots the send buffer by at most one skb; every skb is non-empty and has its length's truesize;
/// - `states_are_consistent`: a listener has no peer and no data; only listeners have pending connections,
///   each an embryo connected to its client; released sockets hold nothing; peers point at each other;
/// - `outcomes_fit_calls`: each call gets outcomes of its own kind (a write returns a count no larger than its
///   data, a read no more bytes than asked, …), and the model steps deterministically;
/// - `poll_predicts_calls`: poll's IN/ERR says a read would not be EAGAIN (on a listener, IN without RDHUP says
///   accept would not be), and OUT says a one-byte write would not be EAGAIN.
pub struct Invariants {
    params: Params,
    model: Model,
    /// A second model taking the same steps (determinism).
    twin: Model,
    /// Sockets in the model's arena (socket() and every successful connect (its embryo) add one).
    count: usize,
    /// How the script names its sockets (the checker's own rule).
    names: Names,
    /// Calls run so far.
    pub steps: usize,
    written: Vec<usize>,
    read: Vec<usize>,
    dropped: Vec<usize>,
    /// The socket whose receive queue a socket's writes go to (its peer, once it had one).
    receiver: Vec<Option<SockId>>,
    /// Every call so far was a version-1 call on stream sockets: the state invariants (written in terms of one
    /// byte stream per connection) hold only then; past it, determinism and the outcome kinds are checked.
    v1_only: bool,
}

impl Invariants {
    pub fn new(params: Params) -> Invariants {
        Invariants {
            model: Model::new(params.clone()),
            twin: Model::new(params.clone()),
            params,
            count: 0,
            names: Names::default(),
            steps: 0,
            written: Vec::new(),
            read: Vec::new(),
            dropped: Vec::new(),
            receiver: Vec::new(),
            v1_only: true,
        }
    }

    /// The arena index of a live name.
    fn id_of(&self, name: &str) -> Option<SockId> {
        let s = self.model.sock_of(name)?;
        (0..self.model.sock_count()).find(|&i| std::ptr::eq(self.model.sock(i), s))
    }

    /// Runs the whole script; stops quietly at a name the script never created (a script error).
    pub fn run(&mut self, script: &Script) -> Result<(), String> {
        for line in &script.lines {
            if self.names.check(&line.call).is_err() {
                return Ok(());
            }
            let Some(out) = self.step(&line.call)? else {
                // A call the model does not cover: nothing more to check in this script.
                return Ok(());
            };
            let created = self.names.names_for(line, out.new_fds());
            self.model.name_new(&created);
            self.twin.name_new(&created);
            self.names.after(&created);
        }
        Ok(())
    }

    fn grow(&mut self) {
        self.count += 1;
        self.written.push(0);
        self.read.push(0);
        self.dropped.push(0);
        self.receiver.push(None);
    }

    /// One call, then every invariant; returns the model's outcome (`None`: the model does not cover the call).
    /// New descriptors are left for the caller to name in both models.
    pub fn step(&mut self, call: &Call) -> Result<Option<Outcome>, String> {
        self.steps += 1;
        let subject = call.subject().and_then(|s| self.id_of(s));
        let queued_before: Vec<usize> = (0..self.count)
            .map(|i| self.model.sock(i).queued())
            .collect();
        let released_before: Vec<bool> = (0..self.count)
            .map(|i| self.model.sock(i).released)
            .collect();
        let p = self
            .model
            .step(call)
            .map_err(|e| format!("model error: {e}"))?;
        // outcomes_fit_calls: deterministic (a twin model takes the same steps).
        let p2 = self
            .twin
            .step(call)
            .map_err(|e| format!("model error: {e}"))?;
        if p != p2 {
            return Err(format!(
                "outcomes_fit_calls: the same call on the same model predicted {p:?}, then {p2:?}"
            ));
        }
        if !p.is_modelled() {
            return Ok(None);
        }
        check_outcome_kind(call, &p, subject.is_some())?;
        // Where several outcomes are allowed (garbage awaiting the collector), the first is taken as the one
        // that happened, in both models.
        self.model.observe(0);
        self.twin.observe(0);
        let out = p.allowed[0].clone();
        let v1_call = call.kind() != crate::script::CallKind::Socket || out.errno().is_none();
        self.v1_only &= v1_call && is_v1(call);
        if !self.v1_only {
            return Ok(Some(out));
        }
        match (call, &out.value) {
            (Call::Socket(_), Value::Created) => self.grow(),
            (Call::Connect(..), Value::Ok) => self.grow(),
            (Call::Write(..), Value::Wrote(n)) => {
                if let Some(x) = subject {
                    self.written[x] += n;
                }
            }
            (Call::Read(..), Value::Recv(r)) => {
                if let Some(y) = subject {
                    self.read[y] += r.data.len();
                }
            }
            _ => {}
        }
        for i in 0..self.count.min(released_before.len()) {
            if self.model.sock(i).released && !released_before[i] {
                self.dropped[i] += queued_before[i];
            }
        }
        if let (Call::Poll(name), Value::Ready(ev), Some(sid)) = (call, &out.value, subject) {
            self.poll_predicts_calls(name, sid, *ev)?;
        }
        self.check_state()?;
        Ok(Some(out))
    }

    fn check_state(&mut self) -> Result<(), String> {
        let m = &self.model;
        let n = self.count;
        let ok_id = |id: SockId, what: &str| -> Result<(), String> {
            if id < n {
                Ok(())
            } else {
                Err(format!(
                    "states_are_consistent: {what} names socket #{id}, of {n}"
                ))
            }
        };
        let mut charged = vec![0usize; n];
        let mut in_queue = Vec::with_capacity(n);
        for y in 0..n {
            let s = m.sock(y);
            for k in &s.rx {
                ok_id(k.sender, "an skb's sender")?;
                if k.is_empty() {
                    return Err(format!(
                        "wmem_is_queued_truesize: an empty skb waits at socket #{y}"
                    ));
                }
                if k.truesize != self.params.truesize(k.bytes().len()) {
                    return Err(format!(
                        "wmem_is_queued_truesize: a {}-byte skb at #{y} has truesize {}, not {}",
                        k.bytes().len(),
                        k.truesize,
                        self.params.truesize(k.bytes().len())
                    ));
                }
                charged[k.sender] += k.truesize;
                // Every skb at y comes from the one socket whose writes go to y.
                match self.receiver[k.sender] {
                    Some(r) if r == y => {}
                    r => {
                        return Err(format!(
                        "bytes_conserved: socket #{} has data at #{y}, but its receiver is {r:?}",
                        k.sender
                    ))
                    }
                }
            }
            in_queue.push(s.queued());
            if let Some(p) = s.peer {
                ok_id(p, "a peer")?;
                match self.receiver[y] {
                    None => self.receiver[y] = Some(p),
                    Some(r) if r == p => {}
                    Some(r) => {
                        return Err(format!(
                            "states_are_consistent: socket #{y} changed peer from #{r} to #{p}"
                        ))
                    }
                }
            }
        }
        let max_ts = self.params.truesize(self.params.max_chunk);
        for (x, &charged) in charged.iter().enumerate() {
            let s = m.sock(x);
            if s.wmem != charged {
                return Err(format!(
                    "wmem_is_queued_truesize: socket #{x} has wmem {} but {} is queued at its peer",
                    s.wmem, charged
                ));
            }
            if s.wmem >= self.params.sndbuf + max_ts {
                return Err(format!(
                    "wmem_is_queued_truesize: socket #{x} has wmem {} over sndbuf {} + one skb",
                    s.wmem, self.params.sndbuf
                ));
            }
            let expect = match self.receiver[x] {
                Some(y) => self.read[y] + in_queue[y] + self.dropped[y],
                None => 0,
            };
            if self.written[x] != expect {
                return Err(format!(
                    "bytes_conserved: socket #{x} wrote {} bytes, but its peer {:?} read {}, holds {} and dropped {}",
                    self.written[x],
                    self.receiver[x],
                    self.receiver[x].map_or(0, |y| self.read[y]),
                    self.receiver[x].map_or(0, |y| in_queue[y]),
                    self.receiver[x].map_or(0, |y| self.dropped[y]),
                ));
            }
            self.check_sock(x, s)?;
        }
        // Each embryo waits in at most one listener's queue, once.
        let mut pending_in = vec![None; n];
        for l in 0..n {
            for &e in &m.sock(l).pending {
                ok_id(e, "a pending connection")?;
                if let Some(other) = pending_in[e].replace(l) {
                    return Err(format!(
                        "states_are_consistent: embryo #{e} waits at #{other} and at #{l}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_sock(&self, x: SockId, s: &Sock) -> Result<(), String> {
        let m = &self.model;
        let bad = |what: &str| Err(format!("states_are_consistent: socket #{x} {what}: {s:?}"));
        if s.released
            && (s.state != State::Unconnected
                || s.peer.is_some()
                || !s.rx.is_empty()
                || !s.pending.is_empty()
                || !s.shut_rd
                || !s.shut_wr)
        {
            return bad("is released but still holds state");
        }
        match s.state {
            State::Listening => {
                if s.peer.is_some() || !s.rx.is_empty() {
                    return bad("is listening and connected");
                }
                if s.backlog > self.params.somaxconn {
                    return bad("has a backlog over somaxconn");
                }
            }
            State::Connected => {
                if s.peer.is_none() {
                    return bad("is connected without a peer");
                }
            }
            State::Unconnected => {
                if s.peer.is_some() || !s.rx.is_empty() {
                    return bad("is unconnected with a peer or data");
                }
            }
        }
        if !s.pending.is_empty() && s.state != State::Listening {
            return bad("has pending connections but is not listening");
        }
        for &e in &s.pending {
            let emb = m.sock(e);
            let Some(c) = emb.peer else {
                return bad("has a pending embryo without a client");
            };
            if emb.state != State::Connected || emb.released {
                return bad("has a pending embryo that is not connected");
            }
            let client = m.sock(c);
            if !client.released && client.peer != Some(e) {
                return bad("has a pending embryo whose client is connected elsewhere");
            }
        }
        if let Some(p) = s.peer {
            let ps = m.sock(p);
            if !ps.released && ps.peer != Some(x) {
                return bad("has a live peer that does not point back");
            }
        }
        if s.err.is_some_and(|e| e != Errno::ECONNRESET) {
            return bad("has a pending error other than ECONNRESET");
        }
        Ok(())
    }

    /// poll_predicts_calls: what poll said, checked by trying the calls on copies of the model.
    fn poll_predicts_calls(&self, name: &str, sid: SockId, ev: Events) -> Result<(), String> {
        let s = self.model.sock(sid);
        let try_call = |call: Call| -> Result<Outcome, String> {
            let mut twin = self.model.clone();
            let p = twin.step(&call).map_err(|e| format!("model error: {e}"))?;
            Ok(p.allowed[0].clone())
        };
        let eagain = Outcome::err(Errno::EAGAIN);
        match s.state {
            State::Listening => {
                // A listener shut for reading polls IN|RDHUP whatever its queue holds (scenario 27).
                let would = try_call(Call::Accept(name.to_string(), false, None))? != eagain;
                if !ev.contains(Events::RDHUP) && ev.contains(Events::IN) != would {
                    return Err(format!(
                        "poll_predicts_calls: poll said {ev} on a listener but accept {}",
                        if would {
                            "would succeed"
                        } else {
                            "says EAGAIN"
                        }
                    ));
                }
            }
            State::Connected => {
                let r = try_call(Call::Read(name.to_string(), 1))?;
                let readable = ev.contains(Events::IN) || ev.contains(Events::ERR);
                if readable == (r == eagain) {
                    return Err(format!(
                        "poll_predicts_calls: poll said {ev} but read(1) gives {r:?}"
                    ));
                }
                if ev.contains(Events::OUT) && !s.shut_wr {
                    let w = try_call(Call::Write(name.to_string(), b"x"[..].into()))?;
                    if w == eagain {
                        return Err(format!(
                            "poll_predicts_calls: poll said {ev} but write(1 byte) gives EAGAIN"
                        ));
                    }
                }
            }
            State::Unconnected => {}
        }
        Ok(())
    }
}

/// A version-1 call: the v1 calls, on stream sockets, with v1 arguments.
fn is_v1(call: &Call) -> bool {
    use crate::script::{Addr, SockSpec, STREAM};
    match call {
        Call::Socket(s) => *s == SockSpec::of(STREAM),
        Call::Bind(_, a) | Call::Connect(_, a) => matches!(a, Addr::Path(_)),
        Call::Accept(_, false, None) | Call::GetSockName(_, None) | Call::GetPeerName(_, None) => {
            true
        }
        Call::Shutdown(_, h) => h.is_valid(),
        Call::Listen(..)
        | Call::Write(..)
        | Call::Read(..)
        | Call::Close(_)
        | Call::Unlink(_)
        | Call::Poll(_) => true,
        _ => false,
    }
}

/// outcomes_fit_calls: the outcomes a call may have, by kind.
fn check_outcome_kind(call: &Call, p: &Prediction, live: bool) -> Result<(), String> {
    if p.allowed.is_empty() {
        return Err(format!(
            "outcomes_fit_calls: rule {} allows nothing for {call:?}",
            p.rule
        ));
    }
    for o in &p.allowed {
        let fits = match (call, &o.value) {
            (_, Value::Err(e)) => e.name().is_some() && !matches!(call, Call::Poll(_)),
            (Call::Socket(_) | Call::Dup(_), Value::Created) => true,
            (Call::Socketpair(_), Value::Pair) => true,
            (Call::Accept(..), Value::Accepted(_)) => true,
            (Call::Write(_, d), Value::Wrote(n)) => *n <= d.len() && (*n > 0 || d.is_empty()),
            (
                Call::Send(_, d, _) | Call::SendTo(_, d, ..) | Call::SendMsg(_, d, _),
                Value::Wrote(n),
            ) => *n <= d.len(),
            (Call::Read(_, n) | Call::Recv(_, n, _), Value::Recv(r))
            | (Call::RecvFrom(_, n, ..) | Call::RecvMsg(_, n, ..), Value::Recv(r)) => {
                r.data.len() <= *n && r.data.len() <= r.ret.max(r.data.len())
            }
            (Call::GetSockName(..) | Call::GetPeerName(..), Value::Addr(_)) => true,
            (Call::Poll(_), Value::Ready(e)) => live || *e == Events::NVAL,
            (
                Call::GetSockOpt(..),
                Value::Int(_) | Value::SoError(_) | Value::Cred(_) | Value::Ms(_),
            ) => true,
            (Call::Ioctl(..), Value::Int(v)) => *v >= 0,
            (Call::Stat(_), Value::Stat(..)) => true,
            (
                Call::Bind(..)
                | Call::Listen(..)
                | Call::Connect(..)
                | Call::Shutdown(..)
                | Call::Close(_)
                | Call::Unlink(_)
                | Call::Nonblock(..)
                | Call::SetSockOpt(..)
                | Call::Mkdir(_)
                | Call::Mkfile(_)
                | Call::Symlink(..)
                | Call::Link(..)
                | Call::Rename(..)
                | Call::Chmod(..)
                | Call::Setcred(..),
                Value::Ok,
            ) => true,
            _ => false,
        };
        if !fits {
            return Err(format!(
                "outcomes_fit_calls: rule {} allows {o:?} for {call:?}",
                p.rule
            ));
        }
    }
    Ok(())
}
