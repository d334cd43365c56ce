//! The simulated world: application code runs on the model instead of the kernel.
//!
//! A [`World`] holds one [`Model`] and runs [`Task`]s (a server, clients, whatever the user
//! writes) one step at a time. Each task owns its sockets ([`SimStream`], [`SimListener`], made
//! through [`SimNet`], which implements [`crate::net::Net`] like the kernel's [`crate::net::Os`]).
//! Every socket call is one call on the model and one line of the run's **trace**, a script in
//! the script language with the model's results written in: since every socket is non-blocking
//! and the run is one sequence of calls, `udsim check` can replay it on the kernel, which must
//! give the same results (`sim_trace_is_a_script`).
//!
//! The scheduler is deterministic: a seeded RNG picks which runnable task steps next, so one seed
//! is one interleaving and a failing seed replays exactly. A task that reports
//! [`Step::Blocked`] is runnable again once any call changed the world; [`Step::Sleep`] waits
//! for the world's clock (the number of calls made) to advance. When no task can run and some
//! task that is not a daemon has not finished, the run is a deadlock ([`SimError::Deadlock`]).

pub mod cli;
pub mod echo;

use crate::check::expect_of;
use crate::gen::Rng;
use crate::model::{Model, Params};
use crate::net::{Listener, Net, Ready, Shut, Stream};
use crate::script::{
    fmt_call, fmt_outcome, Addr, Call, Events, Flags, How, Line, Name, Outcome, Payload, Script,
    SockSpec, Value, MSG_DONTWAIT, MSG_NOSIGNAL, STREAM,
};
use nix::errno::Errno;
use std::cell::RefCell;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

/// What a task's step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It made progress (or may): run it again whenever the scheduler likes.
    Progress,
    /// It can do nothing until some other call changes the world (its calls said EAGAIN).
    Blocked,
    /// It waits until the world's clock (calls made so far) has advanced by this many calls.
    Sleep(u64),
    /// It has finished; it is never stepped again.
    Done,
}

/// Application code in the simulated world: a state machine that makes a few non-blocking socket
/// calls per step.
pub trait Task {
    /// One step; `net` makes sockets, `now` is the world's clock (calls made so far).
    fn step(&mut self, net: &SimNet, now: u64) -> Step;
    /// A daemon (a server) need not finish: the run ends when every other task has finished and
    /// no daemon can run.
    fn daemon(&self) -> bool {
        false
    }
    /// What the scheduler's priorities are keyed on (default: the task's index in the run). A
    /// key that belongs to the task rather than to its position keeps its steps' order among
    /// the others when another task is removed.
    fn key(&self) -> Option<u64> {
        None
    }
}

/// Why a simulated run stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// The model does not say what this call returns (outside what it models).
    Unmodelled { call: String, rule: &'static str },
    /// No task can run, and these (by index) have not finished.
    Deadlock { waiting: Vec<usize> },
    /// The run made more calls than its budget.
    TooLong { calls: u64 },
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::Unmodelled { call, rule } => {
                write!(f, "the model does not say what `{call}` returns ({rule})")
            }
            SimError::Deadlock { waiting } => {
                write!(
                    f,
                    "deadlock: no task can run and tasks {waiting:?} have not finished"
                )
            }
            SimError::TooLong { calls } => write!(f, "the run passed its budget of {calls} calls"),
        }
    }
}

impl std::error::Error for SimError {}

/// One recorded call.
#[derive(Debug, Clone)]
struct Recorded {
    call: Call,
    outcome: Outcome,
    created: Vec<Name>,
}

#[derive(Debug)]
struct Core {
    model: Model,
    /// Picks among several allowed outcomes (none arise on stream sockets without descriptors in
    /// flight; kept so a union prediction never stops a run).
    rng: Rng,
    trace: Option<Vec<Recorded>>,
    calls: u64,
    /// The world's clock: calls made, plus the time skipped while every task slept.
    clock: u64,
    /// Bumped by every call that may have changed what another call returns.
    version: u64,
    next_name: u32,
    failed: Option<SimError>,
}

impl Core {
    fn name(&mut self, prefix: &str) -> Name {
        self.next_name += 1;
        format!("{prefix}{}", self.next_name)
    }

    /// One call on the model: the outcome it predicts (one chosen by the RNG if it allows
    /// several), recorded; `Err` only when the model does not say.
    fn call(&mut self, call: Call, created: &[Name]) -> Result<Outcome, Errno> {
        if self.failed.is_some() {
            return Err(Errno::EIO);
        }
        let p = match self.model.step(&call) {
            Ok(p) => p,
            Err(e) => {
                self.failed = Some(SimError::Unmodelled {
                    call: format!("{} ({e})", fmt_call(&call)),
                    rule: "unknown_name",
                });
                return Err(Errno::EIO);
            }
        };
        if !p.is_modelled() {
            self.failed = Some(SimError::Unmodelled {
                call: fmt_call(&call),
                rule: p.rule,
            });
            return Err(Errno::EIO);
        }
        let i = if p.allowed.len() == 1 {
            0
        } else {
            (self.rng.next_u64() % p.allowed.len() as u64) as usize
        };
        self.model.observe(i);
        let outcome = p.allowed[i].clone();
        let created = &created[..outcome.new_fds().min(created.len())];
        if !created.is_empty() {
            self.model.name_new(created);
        }
        self.calls += 1;
        self.clock += 1;
        if changes_world(&call, &outcome) {
            self.version += 1;
        }
        if let Some(t) = &mut self.trace {
            t.push(Recorded {
                call,
                outcome: outcome.clone(),
                created: created.to_vec(),
            });
        }
        Ok(outcome)
    }
}

/// Whether a call may have changed what some other call returns: everything but queries and
/// failures (a failed call on a stream socket changes nothing, except a pending error it
/// consumed, which only its own socket's calls see).
fn changes_world(call: &Call, o: &Outcome) -> bool {
    match (&o.value, call) {
        (Value::Err(_), Call::Close(_)) => true,
        (Value::Err(_), _) => false,
        (Value::Ready(_) | Value::Addr(_) | Value::Int(_), _) => false,
        _ => true,
    }
}

fn errno(e: crate::script::Errno) -> Errno {
    Errno::from_raw(e.0)
}

/// The simulated world's socket maker, handed to every task (cheap to clone: a shared handle).
#[derive(Debug, Clone)]
pub struct SimNet(Rc<RefCell<Core>>);

impl SimNet {
    fn call(&self, call: Call, created: &[Name]) -> Result<Outcome, Errno> {
        self.0.borrow_mut().call(call, created)
    }

    /// The world's clock: calls made so far, plus time skipped while every task slept.
    pub fn now(&self) -> u64 {
        self.0.borrow().clock
    }

    fn socket(&self) -> Result<Name, Errno> {
        let name = self.0.borrow_mut().name("s");
        let o = self.call(
            Call::Socket(SockSpec::of(STREAM)),
            std::slice::from_ref(&name),
        )?;
        match o.value {
            Value::Created => Ok(name),
            Value::Err(e) => Err(errno(e)),
            _ => Err(Errno::EIO),
        }
    }

    fn ok(&self, call: Call) -> Result<(), Errno> {
        match self.call(call, &[])?.value {
            Value::Err(e) => Err(errno(e)),
            _ => Ok(()),
        }
    }

    fn close(&self, name: &Name) {
        // A failure here (the model stopped) is already recorded in the world.
        let _ = self.call(Call::Close(name.clone()), &[]);
    }

    fn poll(&self, name: &Name) -> Result<Ready, Errno> {
        match self.call(Call::Poll(name.clone()), &[])?.value {
            Value::Ready(Events(bits)) => Ok(Ready::from_bits(bits.into())),
            Value::Err(e) => Err(errno(e)),
            _ => Err(Errno::EIO),
        }
    }
}

fn path_addr(path: &Path) -> Addr {
    Addr::Path(path.as_os_str().as_bytes().to_vec())
}

impl Net for SimNet {
    type Stream = SimStream;
    type Listener = SimListener;

    fn listen(&self, path: &Path, backlog: i32) -> Result<SimListener, Errno> {
        let name = self.socket()?;
        let l = SimListener(Sock {
            net: self.clone(),
            name,
        });
        self.ok(Call::Bind(l.0.name.clone(), path_addr(path)))?;
        self.ok(Call::Listen(l.0.name.clone(), backlog))?;
        Ok(l)
    }

    fn connect(&self, path: &Path) -> Result<SimStream, Errno> {
        let name = self.socket()?;
        let s = SimStream(Sock {
            net: self.clone(),
            name,
        });
        self.ok(Call::Connect(s.0.name.clone(), path_addr(path)))?;
        Ok(s)
    }
}

/// A simulated descriptor: its world and its name in the trace. Dropping it closes it (a `close`
/// in the trace).
#[derive(Debug)]
struct Sock {
    net: SimNet,
    name: Name,
}

impl Drop for Sock {
    fn drop(&mut self) {
        self.net.close(&self.name);
    }
}

/// A simulated stream socket (non-blocking). Dropping it closes it.
#[derive(Debug)]
pub struct SimStream(Sock);

impl SimStream {
    /// The socket's name in the trace.
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl Stream for SimStream {
    fn recv(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let call = Call::Recv(self.0.name.clone(), buf.len(), Flags(MSG_DONTWAIT));
        match self.0.net.call(call, &[])?.value {
            Value::Recv(r) => {
                let n = r.data.len().min(buf.len());
                buf[..n].copy_from_slice(&r.data[..n]);
                Ok(r.ret)
            }
            Value::Err(e) => Err(errno(e)),
            _ => Err(Errno::EIO),
        }
    }

    fn send(&self, buf: &[u8]) -> Result<usize, Errno> {
        let data: Payload = Payload::from(buf);
        let call = Call::Send(
            self.0.name.clone(),
            data,
            Flags(MSG_DONTWAIT | MSG_NOSIGNAL),
        );
        match self.0.net.call(call, &[])?.value {
            Value::Wrote(n) => Ok(n),
            Value::Err(e) => Err(errno(e)),
            _ => Err(Errno::EIO),
        }
    }

    fn shutdown(&self, how: Shut) -> Result<(), Errno> {
        let how = match how {
            Shut::Read => How::RD,
            Shut::Write => How::WR,
            Shut::Both => How::RDWR,
        };
        self.0.net.ok(Call::Shutdown(self.0.name.clone(), how))
    }

    fn poll(&self) -> Result<Ready, Errno> {
        self.0.net.poll(&self.0.name)
    }
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// std-style reading: `WouldBlock` when nothing is queued, `Ok(0)` at end of stream.
impl io::Read for SimStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Stream::recv(self, buf).map_err(io_err)
    }
}

impl io::Read for &SimStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Stream::recv(*self, buf).map_err(io_err)
    }
}

/// std-style writing: `WouldBlock` when the peer's queue is full, `BrokenPipe` once it is gone.
impl io::Write for SimStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Stream::send(self, buf).map_err(io_err)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for &SimStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Stream::send(*self, buf).map_err(io_err)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A simulated listening socket. Dropping it closes it.
#[derive(Debug)]
pub struct SimListener(Sock);

impl SimListener {
    /// The socket's name in the trace.
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl Listener for SimListener {
    type Stream = SimStream;

    fn accept(&self) -> Result<SimStream, Errno> {
        let name = self.0.net.0.borrow_mut().name("s");
        let call = Call::Accept(self.0.name.clone(), false, None);
        match self.0.net.call(call, std::slice::from_ref(&name))?.value {
            Value::Accepted(_) => Ok(SimStream(Sock {
                net: self.0.net.clone(),
                name,
            })),
            Value::Err(e) => Err(errno(e)),
            _ => Err(Errno::EIO),
        }
    }

    fn poll(&self) -> Result<Ready, Errno> {
        self.0.net.poll(&self.0.name)
    }
}

/// What a finished run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Socket calls made (trace lines).
    pub calls: u64,
    /// Task steps taken.
    pub steps: u64,
    /// Times the clock was moved on because every runnable task was asleep.
    pub fast_forwards: u64,
}

#[derive(Debug, Clone, Copy)]
enum Wait {
    Runnable,
    /// Blocked at this world version.
    Blocked(u64),
    /// Asleep until this clock reading.
    Until(u64),
    Done,
}

/// The simulated world: one model, a seeded scheduler, the trace.
#[derive(Debug)]
pub struct World {
    net: SimNet,
    seed: u64,
    /// The most calls a run may make.
    pub max_calls: u64,
}

impl World {
    /// A world on a model with these host parameters, scheduling with `seed`, recording a trace.
    pub fn new(params: Params, seed: u64) -> World {
        let core = Core {
            model: Model::new(params),
            rng: Rng(!seed),
            trace: Some(Vec::new()),
            calls: 0,
            clock: 0,
            version: 0,
            next_name: 0,
            failed: None,
        };
        World {
            net: SimNet(Rc::new(RefCell::new(core))),
            seed,
            max_calls: 10_000_000,
        }
    }

    /// Stops recording the trace (for speed; the run is the same).
    pub fn without_trace(self) -> World {
        self.net.0.borrow_mut().trace = None;
        self
    }

    /// The scheduler's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The handle tasks make sockets with (also usable outside a run, for set-up).
    pub fn net(&self) -> &SimNet {
        &self.net
    }

    /// Runs the tasks until every one that is not a daemon has finished and no daemon can run.
    pub fn run(&mut self, tasks: &mut [&mut dyn Task]) -> Result<Stats, SimError> {
        let mut wait = vec![Wait::Runnable; tasks.len()];
        let mut stats = Stats::default();
        let mut runnable: Vec<usize> = Vec::with_capacity(tasks.len());
        let mut taken = vec![0u64; tasks.len()];
        let keys: Vec<u64> = (0..tasks.len())
            .map(|i| tasks[i].key().unwrap_or(i as u64))
            .collect();
        loop {
            let (now, version) = {
                let core = self.net.0.borrow();
                if let Some(e) = &core.failed {
                    return Err(e.clone());
                }
                (core.clock, core.version)
            };
            if self.net.0.borrow().calls > self.max_calls {
                return Err(SimError::TooLong {
                    calls: self.max_calls,
                });
            }
            runnable.clear();
            let mut earliest: Option<u64> = None;
            for (i, w) in wait.iter().enumerate() {
                match *w {
                    Wait::Runnable => runnable.push(i),
                    Wait::Blocked(v) if v < version => runnable.push(i),
                    Wait::Until(t) if t <= now => runnable.push(i),
                    Wait::Until(t) => earliest = Some(earliest.map_or(t, |e| e.min(t))),
                    Wait::Blocked(_) | Wait::Done => {}
                }
            }
            if runnable.is_empty() {
                if let Some(t) = earliest {
                    // Everyone is waiting for time: move the clock on.
                    self.net.0.borrow_mut().clock = t;
                    stats.fast_forwards += 1;
                    continue;
                }
                let waiting: Vec<usize> = (0..tasks.len())
                    .filter(|&i| !matches!(wait[i], Wait::Done) && !tasks[i].daemon())
                    .collect();
                if waiting.is_empty() {
                    break;
                }
                return Err(SimError::Deadlock { waiting });
            }
            let pick = self.pick(&runnable, &taken, &keys);
            taken[pick] += 1;
            stats.steps += 1;
            wait[pick] = match tasks[pick].step(&self.net, now) {
                Step::Progress => Wait::Runnable,
                Step::Blocked => Wait::Blocked(version),
                Step::Sleep(n) => Wait::Until(now + n.max(1)),
                Step::Done => Wait::Done,
            };
        }
        stats.calls = self.net.0.borrow().calls;
        Ok(stats)
    }

    /// The scheduler's choice among the runnable tasks: the one whose next step has the lowest
    /// seeded priority, a hash of (seed, the task's key, steps it has taken). A task's priorities
    /// do not depend on which other tasks exist, so removing a task (as shrinking does) leaves
    /// the others' order among themselves as it was.
    fn pick(&self, runnable: &[usize], taken: &[u64], keys: &[u64]) -> usize {
        let prio = |i: usize| {
            let mut r = Rng(self.seed
                ^ keys[i].wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ taken[i].wrapping_mul(0xbf58_476d_1ce4_e5b9));
            r.next_u64()
        };
        runnable
            .iter()
            .copied()
            .min_by_key(|&i| (prio(i), i))
            .unwrap_or(0)
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.net.0.borrow().calls
    }

    /// The trace so far as a script, every result the model gave written in (empty without a
    /// trace).
    pub fn trace(&self) -> Script {
        let core = self.net.0.borrow();
        let lines = core
            .trace
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| Line {
                expect: Some(expect_of(&r.call, &r.outcome, &r.created)),
                call: r.call.clone(),
                line_no: i + 1,
            })
            .collect();
        Script { lines }
    }

    /// The trace as script text, one call per line with its result.
    pub fn trace_text(&self) -> String {
        let core = self.net.0.borrow();
        let mut out = String::new();
        for r in core.trace.iter().flatten() {
            out.push_str(&fmt_call(&r.call));
            out.push_str(" -> ");
            out.push_str(&fmt_outcome(&r.call, &r.outcome, &r.created));
            out.push('\n');
        }
        out
    }
}
