//! The model: a pure state machine of Linux AF_UNIX sockets (stream, datagram, seqpacket). No syscalls.
//!
//! `Model::step` predicts what one call returns, as the set of outcomes Linux may give (one outcome wherever the
//! kernel is deterministic) and the name of the rule that decided it. Rules are named after the behaviour
//! (`backlog_admits_n_plus_one`); the names appear in divergence reports. Like `net/unix/af_unix.c`, the
//! connection setup (`connect.rs`) is shared by stream and seqpacket, and the data paths differ: the byte
//! stream (`stream.rs`), datagrams and records (`dgram.rs`); options and ioctls live in `options.rs`.

// Rules return `Err(prediction)` to stop early: the prediction is the answer, not a failure, and it is held
// inline (no allocation on the step path), so clippy's advice to box a large `Err` does not apply here.
#![allow(clippy::result_large_err)]

pub mod addr;
pub mod canon;
mod connect;
mod dgram;
mod files;
mod fxhash;
mod gc;
mod names;
pub mod namespace;
mod options;
pub mod params;
mod poll;
pub mod rules;
mod shared;
pub mod socket;
pub mod stream;

use crate::script::{
    AddrOut, Call, Creds, Errno, Flags, Name, Outcome, Pid, SockSpec, Value, DGRAM, MSG_DONTWAIT,
    MSG_NOSIGNAL, SEQPACKET, STREAM,
};
use fxhash::FxHashMap;
use namespace::Namespace;
pub use params::Params;
use shared::Shared;
use socket::{Addr as SockAddr, Sock, SockId, State};
use stream::Out;

/// What the model allows for one call, and the rule that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prediction {
    /// The outcomes Linux may give. Exactly one wherever the kernel is deterministic; none where the model
    /// does not say (see `unmodelled`).
    pub allowed: Outcomes,
    pub rule: &'static str,
}

/// The outcomes a prediction allows, used as a slice. Nearly every prediction allows exactly one, which is held
/// without a heap allocation (one per step was a fifth of the model's time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcomes {
    One(Outcome),
    Many(Vec<Outcome>),
}

impl Outcomes {
    /// No outcome: the model does not say.
    pub const NONE: Outcomes = Outcomes::Many(Vec::new());

    /// Adds an outcome.
    pub fn push(&mut self, o: Outcome) {
        match self {
            Outcomes::Many(v) if v.is_empty() => *self = Outcomes::One(o),
            Outcomes::Many(v) => v.push(o),
            Outcomes::One(_) => {
                let Outcomes::One(first) = std::mem::replace(self, Outcomes::NONE) else {
                    unreachable!("matched One")
                };
                *self = Outcomes::Many(vec![first, o]);
            }
        }
    }
}

impl std::ops::Deref for Outcomes {
    type Target = [Outcome];
    fn deref(&self) -> &[Outcome] {
        match self {
            Outcomes::One(o) => std::slice::from_ref(o),
            Outcomes::Many(v) => v,
        }
    }
}

impl std::ops::DerefMut for Outcomes {
    fn deref_mut(&mut self) -> &mut [Outcome] {
        match self {
            Outcomes::One(o) => std::slice::from_mut(o),
            Outcomes::Many(v) => v,
        }
    }
}

impl<'a> IntoIterator for &'a Outcomes {
    type Item = &'a Outcome;
    type IntoIter = std::slice::Iter<'a, Outcome>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut Outcomes {
    type Item = &'a mut Outcome;
    type IntoIter = std::slice::IterMut<'a, Outcome>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl Prediction {
    fn one(rule: &'static str, v: Value) -> Prediction {
        Prediction {
            allowed: Outcomes::One(Outcome::of(v)),
            rule,
        }
    }

    fn err(rule: &'static str, e: Errno) -> Prediction {
        Prediction::one(rule, Value::Err(e))
    }

    fn ok(rule: &'static str) -> Prediction {
        Prediction::one(rule, Value::Ok)
    }

    /// The call returned only because its timeout ran out.
    fn waited(mut self) -> Prediction {
        for o in &mut self.allowed {
            o.waited = true;
        }
        self
    }

    /// The call raised SIGPIPE.
    fn sigpipe(mut self) -> Prediction {
        for o in &mut self.allowed {
            o.sigpipe = true;
        }
        self
    }

    /// The model does not (yet) say what this call does: the checker stops comparing with the model here.
    pub fn unmodelled(what: &'static str) -> Prediction {
        Prediction {
            allowed: Outcomes::NONE,
            rule: what,
        }
    }

    /// Whether the model predicted anything.
    pub fn is_modelled(&self) -> bool {
        !self.allowed.is_empty()
    }

    pub fn allows(&self, o: &Outcome) -> bool {
        self.allowed.contains(o)
    }

    pub fn is_exact(&self) -> bool {
        self.allowed.len() == 1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handle {
    Open(SockId),
    Closed,
}

/// Errors in using the model (not predictions): the checker rules these out before stepping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelError {
    UnknownName(Name),
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelError::UnknownName(n) => write!(f, "unknown socket name `{n}`"),
        }
    }
}

impl std::error::Error for ModelError {}

/// The mode of the executor's private directory (a temp directory: 0700, owned by the process).
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// The timeout the executor gives every blocking socket (SO_RCVTIMEO and SO_SNDTIMEO), in milliseconds.
pub const BLOCKING_TIMEOUT_MS: u64 = 100;

/// The model's whole world for one script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    socks: Vec<Sock>,
    names: Shared<names::Names>,
    fs: Shared<Namespace>,
    /// Abstract names in use, per socket type (the kernel hashes the type into the name's bucket, so names
    /// of different types never meet).
    abstract_names: Shared<FxHashMap<(i32, Vec<u8>), SockId>>,
    /// The next autobind number to try.
    next_auto: u32,
    /// Descriptors the last step created, waiting for `name_new`.
    fresh: Vec<SockId>,
    /// The script thread's effective uid and gid.
    euid: u32,
    egid: u32,
    /// How many more descriptors the process may open (RLIMIT_NOFILE less those open), if known.
    fd_budget: Option<usize>,
    /// The process's RLIMIT_NOFILE (soft), if known: an unprivileged sender may not have more descriptors
    /// than that in flight.
    nofile: Option<usize>,
    /// Sockets the collector left without references, to be released from its work queue (see `gc`).
    doomed: Vec<SockId>,
    /// Releasing on the collector's behalf: a reference dropped to none dooms the socket instead.
    deferring: bool,
    /// Some call sent descriptors: from here a step looks for garbage the collector may free (see `gc`).
    rights_sent: bool,
    params: Shared<Params>,
    /// The other states the kernel may be in, each with an in-flight cycle collected at an earlier moment
    /// (see `gc`); empty unless garbage exists.
    alts: Vec<Model>,
    /// For the last prediction, if it was a union over states: the indices of `allowed` each state (this
    /// one first, then `alts`) allows; read by `observe`.
    split: Vec<Vec<usize>>,
}

impl Model {
    pub fn new(params: Params) -> Model {
        Model::sharing(Shared::new(params))
    }

    fn sharing(params: Shared<Params>) -> Model {
        let (uid, gid) = (params.uid, params.gid);
        Model {
            euid: params.uid,
            egid: params.gid,
            params,
            socks: Vec::with_capacity(16),
            names: Shared::default(),
            fs: Shared::new(Namespace::new(uid, gid, PRIVATE_DIR_MODE)),
            abstract_names: Shared::default(),
            next_auto: 0xf0000,
            fresh: Vec::with_capacity(2),
            fd_budget: None,
            rights_sent: false,
            nofile: None,
            doomed: Vec::new(),
            deferring: false,
            alts: Vec::new(),
            split: Vec::new(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Tells the model how many more descriptors the process may open when the script starts (the executor
    /// measures it); `None`: unlimited, as far as the model knows.
    pub fn set_fd_budget(&mut self, n: Option<usize>) {
        self.fd_budget = n;
        for m in &mut self.alts {
            m.fd_budget = n;
        }
    }

    /// Tells the model the process's RLIMIT_NOFILE (the executor measures it); `None`: unknown.
    pub fn set_nofile(&mut self, n: Option<usize>) {
        self.nofile = n;
        for m in &mut self.alts {
            m.nofile = n;
        }
    }

    /// rule `rights_past_nofile_in_flight_is_etoomanyrefs`: `unix_attach_fds` refuses a sender without
    /// CAP_SYS_RESOURCE (here: not effectively root) whose user already has more descriptors in flight than its
    /// RLIMIT_NOFILE. Checked as the skb that carries them is made.
    fn too_many_in_flight(&self, fds: &[SockId]) -> Option<Prediction> {
        let limited = !fds.is_empty() && self.euid != 0;
        (limited && self.nofile.is_some_and(|n| self.fds_in_flight() > n)).then(|| {
            Prediction::err(
                "rights_past_nofile_in_flight_is_etoomanyrefs",
                Errno::ETOOMANYREFS,
            )
        })
    }

    /// rule `emfile_past_rlimit_nofile`: a call that needs `n` new descriptors fails when fewer are free.
    fn fds_free(&self, n: usize) -> bool {
        self.fd_budget.is_none_or(|b| b >= n)
    }

    fn emfile() -> Prediction {
        Prediction::err("emfile_past_rlimit_nofile", Errno::EMFILE)
    }

    /// Forgets every socket and file, keeping the parameters.
    pub fn reset(&mut self) {
        *self = Model::sharing(self.params.clone());
    }

    /// The socket behind a live name (`None` once closed).
    pub fn sock_of(&self, name: &str) -> Option<&Sock> {
        match self.names.get(name) {
            Some(Handle::Open(id)) => self.socks.get(id),
            _ => None,
        }
    }

    /// Whether `name` was ever created in this script.
    pub fn knows(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Names of the states the live socket `name` is in (several may hold at once), for coverage reports; a
    /// datagram or seqpacket socket's states carry its type (`dgram-connected`).
    pub fn states_of(&self, name: &str) -> Vec<&'static str> {
        let v = self.stream_states_of(name);
        match self.sock_of(name).map(|s| s.ty) {
            Some(DGRAM) => v.into_iter().map(|s| prefixed("dgram-", s)).collect(),
            Some(SEQPACKET) => v.into_iter().map(|s| prefixed("seqpacket-", s)).collect(),
            _ => v,
        }
    }

    fn stream_states_of(&self, name: &str) -> Vec<&'static str> {
        let Some(s) = self.sock_of(name) else {
            return if self.knows(name) {
                vec!["closed"]
            } else {
                Vec::new()
            };
        };
        let mut v = Vec::new();
        match s.state {
            State::Unconnected if s.addr.is_some() => v.push("bound"),
            State::Unconnected => v.push("fresh"),
            State::Listening if s.pending.is_empty() => v.push("listening"),
            State::Listening => v.push("listening-with-pending"),
            State::Connected => {
                let peer = s.peer.map(|p| &self.socks[p]);
                let pending = self
                    .socks
                    .iter()
                    .any(|l| s.peer.is_some_and(|p| l.pending.contains(&p)));
                if pending {
                    v.push("pending");
                } else if peer.is_some_and(|p| p.released) {
                    v.push("peer-closed");
                } else {
                    v.push("connected");
                }
            }
        }
        if s.err.is_some() {
            v.push("reset");
        }
        if s.state == State::Connected {
            match (s.shut_rd, s.shut_wr) {
                (true, false) => v.push("half-closed-rd"),
                (false, true) => v.push("half-closed-wr"),
                (true, true) => v.push("shut-both"),
                _ => {}
            }
        }
        if s.wmem >= s.sndbuf {
            v.push("full-buffer");
        }
        if !s.rx.is_empty() {
            v.push("unread-data");
        }
        v
    }

    /// How many sockets the arena holds (released ones included).
    pub fn sock_count(&self) -> usize {
        self.socks.len()
    }

    /// The socket with arena index `id`.
    pub fn sock(&self, id: SockId) -> &Sock {
        &self.socks[id]
    }

    fn handle(&self, name: &str) -> Result<Handle, ModelError> {
        self.names
            .get(name)
            .ok_or_else(|| ModelError::UnknownName(name.to_string()))
    }

    fn new_sock(&mut self, s: Sock) -> SockId {
        self.socks.push(s);
        self.socks.len() - 1
    }

    /// A fresh socket of a valid type, with this host's defaults.
    fn fresh_sock(&self, ty: i32, blocking: bool) -> Sock {
        let t = if blocking { BLOCKING_TIMEOUT_MS } else { 0 };
        Sock {
            ty,
            nonblock: !blocking,
            sndbuf: self.params.sndbuf,
            rcvbuf: self.params.rcvbuf,
            backlog: self.params.max_dgram_qlen,
            rcvtimeo: t,
            sndtimeo: t,
            ..Sock::new()
        }
    }

    fn name_sock(&mut self, name: &str, id: SockId) {
        // A name taken again leaves its old descriptor open but unreachable, exactly as the executor does.
        self.names.set(name, Handle::Open(id));
    }

    /// Gives the descriptors the last step created their names, in order (the checker decides the names
    /// once it has seen the outcome). Descriptors left without a name stay open, unreachable.
    pub fn name_new(&mut self, names: &[Name]) {
        for (i, n) in names.iter().enumerate().take(self.fresh.len()) {
            let id = self.fresh[i];
            self.name_sock(n, id);
        }
        self.fresh.clear();
        for m in &mut self.alts {
            m.name_new(names);
        }
    }

    /// A new descriptor for `id`, to be named by `name_new`.
    fn install(&mut self, id: SockId) {
        self.socks[id].refs += 1;
        self.take_fd(id);
    }

    /// A descriptor number for `id` (its reference was counted by the caller).
    fn take_fd(&mut self, id: SockId) {
        if let Some(b) = &mut self.fd_budget {
            *b = b.saturating_sub(1);
        }
        self.fresh.push(id);
    }

    /// The credentials the kernel records for this thread (SO_PEERCRED: effective ids).
    fn my_creds(&self) -> Creds {
        Creds {
            pid: Pid::Own,
            uid: self.euid.into(),
            gid: self.egid.into(),
        }
    }

    /// `scm_check_creds` and the pid lookup of an explicit SCM_CREDENTIALS: the caller may claim its own pid and
    /// its real, effective or saved ids; root (CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID) may claim any that exist.
    fn check_creds(&self, c: Creds) -> Result<Creds, Prediction> {
        // rule `scm_credentials_ids_must_be_valid`: (uid_t)-1 maps to no id.
        let valid = |v: i64| (0..u32::MAX as i64).contains(&v);
        if !valid(c.uid) || !valid(c.gid) {
            return Err(Prediction::err(
                "scm_credentials_ids_must_be_valid",
                Errno::EINVAL,
            ));
        }
        let root = self.euid == 0;
        let (real_u, real_g) = (self.params.uid as i64, self.params.gid as i64);
        let pid_ok = c.pid == Pid::Own || root;
        let uid_ok = root || c.uid == real_u || c.uid == self.euid as i64;
        let gid_ok = root || c.gid == real_g || c.gid == self.egid as i64;
        if !(pid_ok && uid_ok && gid_ok) {
            // rule `scm_credentials_must_be_ones_own`
            return Err(Prediction::err(
                "scm_credentials_must_be_ones_own",
                Errno::EPERM,
            ));
        }
        match c.pid {
            Pid::Own | Pid::Num(1) => Ok(c),
            Pid::Num(n) if n <= 0 => Err(Prediction::err(
                "scm_credentials_pid_must_exist",
                Errno::ESRCH,
            )),
            Pid::Num(_) => Err(Prediction::unmodelled("which_pids_exist")),
        }
    }

    /// `unix_maybe_add_creds`: a message without explicit credentials gets the sender's (pid and *real* ids)
    /// when either end has SO_PASSCRED or the receiver is not yet accepted.
    pub(super) fn skb_creds(
        &self,
        sid: SockId,
        other: SockId,
        explicit: Option<Creds>,
    ) -> Option<Creds> {
        explicit.or_else(|| {
            let (s, o) = (&self.socks[sid], &self.socks[other]);
            (s.passcred || o.passcred || o.embryo).then_some(Creds {
                pid: Pid::Own,
                uid: self.params.uid.into(),
                gid: self.params.gid.into(),
            })
        })
    }

    /// What a receiver with SO_PASSCRED is told of a message's credentials: none recorded reads as pid 0 and the
    /// overflow ids.
    pub(super) fn shown_creds(&self, c: Option<Creds>) -> Creds {
        c.unwrap_or(Creds {
            pid: Pid::Num(0),
            uid: self.params.overflow_uid.into(),
            gid: self.params.overflow_gid.into(),
        })
    }

    /// Predicts one call and applies its effect. Descriptors the call creates are named afterwards with
    /// `name_new`; where the prediction allows several outcomes, `observe` says which one happened.
    pub fn step(&mut self, call: &Call) -> Result<Prediction, ModelError> {
        if let Call::SendMsg(_, _, m) = call {
            for r in m.rights.iter().flatten() {
                self.handle(r)?;
            }
            self.rights_sent |= m.rights.as_ref().is_some_and(|r| !r.is_empty());
        }
        if self.rights_sent {
            if let Some(subject) = call.subject() {
                self.handle(subject)?;
            }
            Ok(self.step_states(call))
        } else {
            self.step_one(call)
        }
    }

    /// One call on this state alone.
    fn step_one(&mut self, call: &Call) -> Result<Prediction, ModelError> {
        self.fresh.clear();
        let Some(subject) = call.subject() else {
            return Ok(self.step_unbound(call));
        };
        Ok(match self.handle(subject)? {
            Handle::Open(id) => self.step_on(id, call),
            Handle::Closed => self.on_closed_fd(call),
        })
    }

    /// Calls that act on no socket: creating sockets, files, credentials.
    fn step_unbound(&mut self, call: &Call) -> Prediction {
        match call {
            Call::Socket(spec) => match self.check_spec(spec) {
                Err(p) => p,
                Ok(_) if !self.fds_free(1) => Self::emfile(),
                Ok(ty) => {
                    let sid = self.new_sock(self.fresh_sock(ty, spec.blocking));
                    self.install(sid);
                    Prediction::one("socket_creates", Value::Created)
                }
            },
            Call::Socketpair(spec) => match self.check_spec(spec) {
                Err(p) => p,
                Ok(_) if !self.fds_free(2) => Self::emfile(),
                Ok(ty) => {
                    // rule `socketpair_connects_two_unnamed`: two connected sockets, neither bound, each
                    // recording the caller's credentials.
                    let creds = self.my_creds();
                    let a = self.new_sock(self.fresh_sock(ty, spec.blocking));
                    let b = self.new_sock(self.fresh_sock(ty, spec.blocking));
                    for (x, y) in [(a, b), (b, a)] {
                        let s = &mut self.socks[x];
                        s.state = State::Connected;
                        s.peer = Some(y);
                        s.peercred = Some(creds);
                    }
                    self.install(a);
                    self.install(b);
                    Prediction::one("socketpair_connects_two_unnamed", Value::Pair)
                }
            },
            _ => self.files(call),
        }
    }

    /// rule `socket_type_checks`: `socket(2)` refuses flag bits other than NONBLOCK / CLOEXEC and types past
    /// SOCK_MAX (EINVAL); `unix_create` refuses protocols other than 0 and PF_UNIX (EPROTONOSUPPORT), then
    /// types other than STREAM, DGRAM, SEQPACKET and RAW, which becomes DGRAM (ESOCKTNOSUPPORT).
    fn check_spec(&self, spec: &SockSpec) -> Result<i32, Prediction> {
        const SOCK_TYPE_MASK: i32 = 0xf;
        const SOCK_NONBLOCK: i32 = 0o4000;
        const SOCK_CLOEXEC: i32 = 0o2000000;
        const SOCK_MAX: i32 = 11;
        let flags = spec.ty & !SOCK_TYPE_MASK;
        if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
            return Err(Prediction::err(
                "socket_flag_bits_are_einval",
                Errno::EINVAL,
            ));
        }
        let ty = spec.ty & SOCK_TYPE_MASK;
        if ty >= SOCK_MAX {
            return Err(Prediction::err(
                "socket_type_past_max_is_einval",
                Errno::EINVAL,
            ));
        }
        let proto = spec.protocol.unwrap_or(0);
        if proto != 0 && proto != 1 {
            return Err(Prediction::err(
                "socket_protocol_not_unix_is_eprotonosupport",
                Errno::EPROTONOSUPPORT,
            ));
        }
        match ty {
            STREAM | DGRAM | SEQPACKET => Ok(ty),
            3 => Ok(DGRAM),
            _ => Err(Prediction::err(
                "socket_type_unsupported_is_esocktnosupport",
                Errno::ESOCKTNOSUPPORT,
            )),
        }
    }

    /// A call on an open socket.
    fn step_on(&mut self, sid: SockId, call: &Call) -> Prediction {
        match call {
            Call::Bind(_, a) => match a.encode() {
                Some(a) => self.bind(sid, &a),
                None => Prediction::unmodelled("autobind_name_unresolved"),
            },
            Call::Listen(_, n) => self.listen(sid, *n),
            Call::Accept(_, blocking, buf) => self.accept(sid, *blocking, *buf),
            Call::Connect(_, a) => match a.encode() {
                Some(a) => self.connect(sid, &a),
                None => Prediction::unmodelled("autobind_name_unresolved"),
            },
            Call::Dup(_) if !self.fds_free(1) => Self::emfile(),
            Call::Dup(_) => {
                // rule `dup_names_the_same_socket`
                self.install(sid);
                Prediction::one("dup_names_the_same_socket", Value::Created)
            }
            Call::Nonblock(_, on) => {
                // rule `nonblock_sets_the_open_file`: O_NONBLOCK belongs to the open file, so every name of
                // the socket sees it; the executor gives a blocking socket's zero timeouts 100 ms.
                let s = &mut self.socks[sid];
                s.nonblock = *on;
                if !*on {
                    for t in [&mut s.rcvtimeo, &mut s.sndtimeo] {
                        if *t == 0 {
                            *t = BLOCKING_TIMEOUT_MS;
                        }
                    }
                }
                Prediction::ok("nonblock_sets_the_open_file")
            }
            Call::Write(_, d) => self.send(sid, Out::data(d, None, Flags(MSG_NOSIGNAL))),
            Call::Send(_, d, f) => self.send(sid, Out::data(d, None, *f)),
            Call::SendTo(_, d, a, f) => match a.encode() {
                Some(a) => self.send(
                    sid,
                    Out::data(d, Some(&a), f.unwrap_or(Flags(MSG_NOSIGNAL))),
                ),
                None => Prediction::unmodelled("autobind_name_unresolved"),
            },
            Call::SendMsg(_, d, m) => {
                // `unix_seqpacket_sendmsg` checks the socket before `scm_send` reads the control messages.
                if self.socks[sid].ty == SEQPACKET {
                    if let Some(e) = self.socks[sid].err.take() {
                        return Prediction::err("seqpacket_send_reports_pending_error", e);
                    }
                    if self.socks[sid].state != State::Connected {
                        return Prediction::err(
                            "seqpacket_send_unconnected_is_enotconn",
                            Errno::ENOTCONN,
                        );
                    }
                }
                let mut fds = Vec::new();
                for r in m.rights.iter().flatten() {
                    match self.names.get(r) {
                        Some(Handle::Open(id)) => fds.push(id),
                        // rule `rights_of_closed_name_is_ebadf`: scm_send takes a reference to each file.
                        _ => {
                            return Prediction::err("rights_of_closed_name_is_ebadf", Errno::EBADF)
                        }
                    }
                }
                // rule `rights_over_scm_max_fd_is_einval`: at most 253 descriptors in one message.
                if fds.len() > SCM_MAX_FD {
                    return Prediction::err("rights_over_scm_max_fd_is_einval", Errno::EINVAL);
                }
                let creds = match m.creds.map(|c| self.check_creds(c)) {
                    Some(Err(p)) => return p,
                    Some(Ok(c)) => Some(c),
                    None => None,
                };
                let to = match &m.to {
                    Some(a) => match a.encode() {
                        Some(a) => Some(a),
                        None => return Prediction::unmodelled("autobind_name_unresolved"),
                    },
                    None => None,
                };
                let flags = m.flags.unwrap_or(Flags(MSG_NOSIGNAL));
                let p = self.send(
                    sid,
                    Out {
                        d,
                        to: to.as_ref(),
                        flags,
                        fds: &fds,
                        creds,
                    },
                );
                p
            }
            Call::Read(_, n) => self.recv(sid, *n, Flags(0), Recv::Data),
            Call::Recv(_, n, f) => self.recv(sid, *n, *f, Recv::Data),
            Call::RecvFrom(_, n, f, buf) => self.recv(
                sid,
                *n,
                f.unwrap_or_default(),
                Recv::From(buf.unwrap_or(110)),
            ),
            Call::RecvMsg(_, n, f, space, buf) => self.recv(
                sid,
                *n,
                f.unwrap_or_default(),
                Recv::Msg(buf.unwrap_or(110), space.unwrap_or(256)),
            ),
            Call::Shutdown(_, h) => self.shutdown(sid, h.0),
            Call::Close(s) => self.close_name(s, sid),
            Call::GetSockName(_, buf) => Prediction::one(
                "getsockname_is_own_addr",
                Value::Addr(addr_out(&self.socks[sid].addr).cut(buf.unwrap_or(128))),
            ),
            Call::GetPeerName(_, buf) => match self.socks[sid].peer {
                // rule `getpeername_outlives_peer`: a released peer still answers with its address.
                Some(p) => Prediction::one(
                    "getpeername_is_peer_addr",
                    Value::Addr(addr_out(&self.socks[p].addr).cut(buf.unwrap_or(128))),
                ),
                None => Prediction::err("getpeername_needs_peer", Errno::ENOTCONN),
            },
            Call::Poll(_) => poll::poll(self, sid),
            Call::GetSockOpt(_, o) => self.getsockopt(sid, *o),
            Call::SetSockOpt(_, o, v) => self.setsockopt(sid, *o, *v),
            Call::Ioctl(_, r) => self.ioctl(sid, *r),
            _ => Prediction::unmodelled("not_modelled_yet"),
        }
    }

    /// rule `closed_name_is_ebadf`: a closed name is an fd no process has open.
    fn on_closed_fd(&self, call: &Call) -> Prediction {
        match call {
            Call::Poll(_) => Prediction::one(
                "poll_closed_fd_is_nval",
                Value::Ready(crate::script::Events::NVAL),
            ),
            _ => Prediction::err("closed_name_is_ebadf", Errno::EBADF),
        }
    }

    /// rule `close_releases_last_descriptor`: closing one descriptor releases the socket only when no other
    /// descriptor refers to it.
    fn close_name(&mut self, name: &str, sid: SockId) -> Prediction {
        self.names.set(name, Handle::Closed);
        if let Some(b) = &mut self.fd_budget {
            *b += 1;
        }
        let released = self.drop_ref(sid);
        if released {
            Prediction::ok("close_releases")
        } else {
            Prediction::ok("close_releases_last_descriptor")
        }
    }

    /// One reference to `sid` goes (a descriptor closed, an in-flight copy dropped); at none the socket is
    /// released. Returns whether it was.
    fn drop_ref(&mut self, sid: SockId) -> bool {
        let s = &mut self.socks[sid];
        s.refs = s.refs.saturating_sub(1);
        if s.refs == 0 && !s.released {
            if self.deferring {
                // Freed by the collector's work queue: the release waits for the next run of it.
                if !self.doomed.contains(&sid) {
                    self.doomed.push(sid);
                }
                return false;
            }
            self.release(sid, false);
            true
        } else {
            false
        }
    }

    /// Drops the descriptors an skb carried (they are closed, as when the skb is freed).
    fn drop_fds(&mut self, fds: Vec<SockId>) {
        for f in fds {
            self.drop_ref(f);
        }
    }

    /// Whether a call on `sid` with `flags` may wait (a blocking socket, no MSG_DONTWAIT), and for how long.
    fn wait_ms(&self, sid: SockId, flags: Flags, receiving: bool) -> u64 {
        let s = &self.socks[sid];
        if s.nonblock || flags.has(MSG_DONTWAIT) {
            0
        } else if receiving {
            s.rcvtimeo
        } else {
            s.sndtimeo
        }
    }

    /// EAGAIN, after the timeout when the call may wait.
    fn eagain(&self, rule: &'static str, sid: SockId, flags: Flags, receiving: bool) -> Prediction {
        let p = Prediction::err(rule, Errno::EAGAIN);
        if self.wait_ms(sid, flags, receiving) > 0 {
            p.waited()
        } else {
            p
        }
    }

    fn shutdown(&mut self, sid: SockId, how: i32) -> Prediction {
        if !(0..=2).contains(&how) {
            return Prediction::err("shutdown_bad_how_is_einval", Errno::EINVAL);
        }
        // rule `shutdown_any_state_is_ok`: unix_shutdown sets the bits whatever the state.
        let (rd, wr) = (how != 1, how != 0);
        let s = &mut self.socks[sid];
        s.shut_rd |= rd;
        s.shut_wr |= wr;
        let mirrors = s.ty != DGRAM;
        if let Some(p) = s.peer.filter(|_| mirrors) {
            // rule `shutdown_mirrors_to_peer`: our RD stops the peer's sends, our WR ends the peer's reads
            // (stream and seqpacket only).
            let p = &mut self.socks[p];
            p.shut_wr |= rd;
            p.shut_rd |= wr;
        }
        Prediction::ok("shutdown_any_state_is_ok")
    }

    /// `unix_release_sock`: the socket goes away. A stream or seqpacket peer sees end of file (and a reset if
    /// we left unread data, or if we were an embryo whose listener closed); embryos of a listener are released
    /// in turn; queued data is freed (its senders get their memory back). A datagram peer notices nothing until
    /// it sends.
    fn release(&mut self, sid: SockId, embryo: bool) {
        let s = &mut self.socks[sid];
        s.released = true;
        s.state = State::Unconnected;
        s.shut_rd = true;
        s.shut_wr = true;
        // rule `close_with_unread_data_resets_peer`: what counts as unread is the first skb, or the second
        // when the first holds nothing (a zero-length record, a spent OOB byte).
        let unread = match s.rx.front() {
            Some(f) if f.is_empty() => s.rx.len() > 1,
            Some(_) => true,
            None => false,
        };
        let connection = s.ty != DGRAM;
        let pending: Vec<SockId> = s.pending.drain(..).collect();
        let rx: Vec<stream::Skb> = s.rx.drain(..).collect();
        let peer = s.peer.take();
        let ty = s.ty;
        if let Some(SockAddr::Abstract(n)) = &s.addr {
            let key = (ty, n.clone());
            if self.abstract_names.get(&key) == Some(&sid) {
                self.abstract_names.remove(&key);
            }
        }
        if let Some(p) = peer.filter(|_| connection) {
            let p = &mut self.socks[p];
            p.shut_rd = true;
            p.shut_wr = true;
            if unread || embryo {
                p.err = Some(Errno::ECONNRESET);
            }
        }
        for skb in rx {
            self.socks[skb.sender].wmem -= skb.truesize;
            self.drop_fds(skb.fds);
        }
        for e in pending {
            // rule `close_listener_resets_pending_clients`
            self.release(e, true);
        }
    }
}

/// What a receive reports besides the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recv {
    /// read / recv: the data.
    Data,
    /// recvfrom: and the sender's address, into a buffer of this many bytes.
    From(u32),
    /// recvmsg: and the message flags, with a control buffer of this many bytes (0: none).
    Msg(u32, usize),
}

impl Recv {
    /// How many received descriptors fit the control buffer: none for read/recv/recvfrom (no control
    /// buffer), `(space - sizeof(cmsghdr)) / sizeof(int)` for recvmsg (`scm_max_fds`), after the
    /// credentials' CMSG_SPACE(12) when they come first (a shorter buffer they take whole).
    fn max_fds(self, creds_first: bool) -> usize {
        match self {
            Recv::Msg(_, space) => {
                let left = if creds_first {
                    space.saturating_sub(32)
                } else {
                    space
                };
                if left > 16 {
                    (left - 16) / 4
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    /// Whether SCM_CREDENTIALS (CMSG_LEN(12) = 28 bytes) fits the control buffer.
    fn creds_fit(self) -> bool {
        matches!(self, Recv::Msg(_, space) if space >= 28)
    }
}

/// SCM_MAX_FD: the most descriptors one SCM_RIGHTS message carries.
const SCM_MAX_FD: usize = 253;

/// The states `Model::states_of` names for a stream socket; datagram and seqpacket sockets' states are the same
/// names prefixed `dgram-` / `seqpacket-`.
pub const STATE_NAMES: &[&str] = &[
    "bound",
    "fresh",
    "listening",
    "listening-with-pending",
    "pending",
    "peer-closed",
    "connected",
    "reset",
    "half-closed-rd",
    "half-closed-wr",
    "shut-both",
    "full-buffer",
    "unread-data",
    "closed",
];

/// `prefix` + `state` as a static name (the set of states is small and fixed).
fn prefixed(prefix: &str, state: &'static str) -> &'static str {
    const DGRAM_STATES: &[&str] = &[
        "dgram-bound",
        "dgram-fresh",
        "dgram-listening",
        "dgram-listening-with-pending",
        "dgram-pending",
        "dgram-peer-closed",
        "dgram-connected",
        "dgram-reset",
        "dgram-half-closed-rd",
        "dgram-half-closed-wr",
        "dgram-shut-both",
        "dgram-full-buffer",
        "dgram-unread-data",
        "dgram-closed",
    ];
    const SEQ_STATES: &[&str] = &[
        "seqpacket-bound",
        "seqpacket-fresh",
        "seqpacket-listening",
        "seqpacket-listening-with-pending",
        "seqpacket-pending",
        "seqpacket-peer-closed",
        "seqpacket-connected",
        "seqpacket-reset",
        "seqpacket-half-closed-rd",
        "seqpacket-half-closed-wr",
        "seqpacket-shut-both",
        "seqpacket-full-buffer",
        "seqpacket-unread-data",
        "seqpacket-closed",
    ];
    let table = if prefix == "dgram-" {
        DGRAM_STATES
    } else {
        SEQ_STATES
    };
    STATE_NAMES
        .iter()
        .position(|s| *s == state)
        .map_or(state, |i| table[i])
}

fn addr_out(a: &Option<SockAddr>) -> AddrOut {
    a.as_ref().map_or_else(AddrOut::unnamed, SockAddr::out)
}

#[cfg(test)]
mod outcomes_tests {
    use super::*;

    /// A prediction grows from none to one outcome (held inline) to several, keeping their order.
    #[test]
    fn outcomes_push_keeps_order_from_none_to_one_to_many() {
        let o = |n| Outcome::of(Value::Wrote(n));
        let mut a = Outcomes::NONE;
        assert!(a.is_empty());
        a.push(o(1));
        assert!(matches!(a, Outcomes::One(_)));
        assert_eq!(&a[..], &[o(1)]);
        a.push(o(2));
        a.push(o(3));
        assert_eq!(&a[..], &[o(1), o(2), o(3)]);
        for x in &mut a {
            x.waited = true;
        }
        assert_eq!((&a).into_iter().filter(|x| x.waited).count(), 3);
    }

    /// `allows` is membership: what the checker compares the kernel's outcome with.
    #[test]
    fn a_prediction_allows_exactly_its_outcomes() {
        let o = |n| Outcome::of(Value::Wrote(n));
        // The rule name is held in a variable: tests/scenarios.rs reads rule names off literal arguments.
        let rule = "testrule";
        let p = Prediction::one(rule, Value::Wrote(1));
        assert!(p.allows(&o(1)) && !p.allows(&o(2)));
        assert!(p.is_exact() && p.is_modelled());
        let none = Prediction::unmodelled("u");
        assert!(!none.allows(&o(1)) && !none.is_modelled() && !none.is_exact());
    }

    /// Steps each line of `text` on `m`, naming what a line creates as its written result does; returns each
    /// line's first allowed outcome and rule.
    /// The host preset's model after the script's lines (each new descriptor named as written).
    pub(super) fn after(text: &str) -> Model {
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        walk(&mut m, text);
        m
    }

    fn walk(m: &mut Model, text: &str) -> Vec<(Outcome, &'static str)> {
        let script = crate::script::parse(text).expect("parses");
        let mut out = Vec::new();
        for l in &script.lines {
            let p = m.step(&l.call).expect("known names");
            let names: Vec<String> = l.expect.as_ref().map_or(Vec::new(), |e| e.names().to_vec());
            m.name_new(&names);
            out.push((p.allowed[0].clone(), p.rule));
        }
        out
    }

    /// Explicit credentials name a pid: the sender's own and 1 always exist, 0 and below never (ESRCH, scenario
    /// 406); whether any other exists is the host's, so the model stops there (scenario 242) rather than guess.
    #[test]
    fn credentials_of_another_pid_are_left_to_the_host() {
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        walk(&mut m, "socketpair(DGRAM) -> a, b\n");
        let send = |m: &mut Model, pid: &str| {
            let text = format!(
                "socketpair(DGRAM) -> a, b\nsendmsg(a, \"x\", creds={{pid={pid}, uid=0, gid=0}})\n"
            );
            let s = crate::script::parse(&text).expect("parses");
            m.step(&s.lines[1].call).expect("known names")
        };
        assert_eq!(send(&mut m, "1").allowed[0], Outcome::of(Value::Wrote(1)));
        let p = send(&mut m, "0");
        assert_eq!(p.allowed[0], Outcome::of(Value::Err(Errno::ESRCH)), "{p:?}");
        let p = send(&mut m, "2");
        assert!(!p.is_modelled(), "{p:?}");
        assert_eq!(p.rule, "which_pids_exist");
    }

    /// The rule that decides a chmod by an owner outside the file's group is the setgid one only when S_ISGID is
    /// asked for (the transcript names it); otherwise the mode is set as asked (scenario 514 shows the modes).
    #[test]
    fn only_a_setgid_chmod_outside_the_group_is_decided_by_the_setgid_rule() {
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        let r = walk(
            &mut m,
            "chmod(\".\", 0777) -> 0\nsetcred(1000, 1000) -> 0\nmkfile(\"f\") -> 0\n\
             setcred(1000, 2000) -> 0\nchmod(\"f\", 0750) -> 0\nchmod(\"f\", 02750) -> 0\n\
             stat(\"f\")\nsetcred(1000, 1000) -> 0\nchmod(\"f\", 02750) -> 0\n",
        );
        let rules: Vec<&str> = r.iter().map(|(_, rule)| *rule).collect();
        assert_eq!(rules[4], "chmod_sets_mode", "{r:?}");
        assert_eq!(rules[5], "chmod_drops_setgid_outside_group", "{r:?}");
        assert_eq!(
            r[6].0,
            Outcome::of(Value::Stat(crate::script::FileKind::File, 0o750)),
            "{r:?}"
        );
        assert_eq!(rules[8], "chmod_sets_mode", "{r:?}");
    }

    /// The coverage states of a socket: unread data is a state of its own, gone once the data is read; the
    /// type prefixes every state of a datagram socket.
    #[test]
    fn unread_data_is_a_state_until_it_is_read() {
        let m = after("socketpair(STREAM) -> a, b\nwrite(a, \"x\") -> 1\n");
        assert_eq!(m.states_of("b"), ["connected", "unread-data"]);
        assert_eq!(m.states_of("a"), ["connected"]);
        let m = after("socketpair(STREAM) -> a, b\nwrite(a, \"x\") -> 1\nread(b, 5) -> \"x\"\n");
        assert_eq!(m.states_of("b"), ["connected"]);
        let m = after(
            "socketpair(DGRAM) -> c, d\nwrite(c, \"y\") -> 1\nsocket(STREAM) -> z\nclose(z) -> 0\n",
        );
        assert_eq!(m.states_of("d"), ["dgram-connected", "dgram-unread-data"]);
        // A closed name is in the state "closed"; a name never made is in none.
        assert_eq!(m.states_of("z"), ["closed"]);
        assert!(m.states_of("never").is_empty());
    }

    /// The bytes a socket holds unread (what the fuzz targets' invariants count): every queued skb's unread
    /// part, a partial read taken off.
    #[test]
    fn queued_counts_the_unread_bytes() {
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        walk(
            &mut m,
            "socketpair(STREAM) -> a, b\nwrite(a, \"hello\") -> 5\nwrite(a, \"world!\") -> 6\nread(b, 3) -> \"hel\"\n",
        );
        assert_eq!(m.sock_of("b").expect("open").queued(), 8);
        assert_eq!(m.sock_of("a").expect("open").queued(), 0);
    }

    /// Which rule decides a poll: readiness as usual, a stream's POLLOUT withheld below a quarter of its send
    /// buffer, or a datagram socket's need for room at its peer.
    #[test]
    fn poll_names_the_rule_that_decided() {
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        let big = "x".repeat(300_000);
        let r = walk(
            &mut m,
            &format!(
                "socketpair(STREAM) -> a, b\npoll(a)\nwrite(a, \"{big}\")\npoll(a)\nsocket(STREAM) -> l\n\
                 bind(l, \"l.sock\") -> 0\nlisten(l, 1) -> 0\npoll(l)\nsocketpair(DGRAM) -> c, d\npoll(c)\n"
            ),
        );
        let rules: Vec<&str> = r.iter().map(|(_, rule)| *rule).collect();
        assert_eq!(rules[1], "poll_readiness", "{r:?}");
        assert_eq!(rules[3], "pollout_below_quarter_sndbuf", "{r:?}");
        assert_eq!(rules[7], "poll_readiness", "{r:?}");
        assert_eq!(rules[9], "dgram_pollout_needs_room_at_peer", "{r:?}");
    }

    /// rule `emfile_past_rlimit_nofile`, in the model alone (scripts cannot set RLIMIT_NOFILE, so the scenario
    /// library never shows it): a pair needs two free descriptors, a socket or a dup one; closing frees one.
    #[test]
    fn calls_past_the_descriptor_budget_are_emfile() {
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        m.set_fd_budget(Some(3));
        let r = walk(
            &mut m,
            "socketpair(STREAM) -> a, b\nsocketpair(STREAM) -> c, d\nsocket(STREAM) -> e\n\
             socket(STREAM) -> f\nclose(a) -> 0\nsocket(STREAM) -> g\ndup(b) -> h\nclose(e) -> 0\n\
             dup(b) -> h\n",
        );
        let emfile = Outcome::of(Value::Err(Errno::EMFILE));
        let kinds: Vec<bool> = r.iter().map(|(o, _)| *o == emfile).collect();
        assert_eq!(
            kinds,
            [false, true, false, true, false, false, true, false, false],
            "{r:?}"
        );
        assert_eq!(r[1].1, "emfile_past_rlimit_nofile");
        // Unlimited (no budget known): never EMFILE.
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        let r = walk(
            &mut m,
            "socketpair(STREAM) -> a, b\nsocketpair(STREAM) -> c, d\n",
        );
        assert!(r.iter().all(|(o, _)| *o != emfile), "{r:?}");
    }

    /// rule `rights_past_nofile_in_flight_is_etoomanyrefs`, in the model alone: a sender that is not root may
    /// not put descriptors in flight once more than its RLIMIT_NOFILE already are; root may; a send without
    /// rights is never refused.
    #[test]
    fn rights_past_nofile_in_flight_are_etoomanyrefs_unless_root() {
        let sends = "socketpair(DGRAM) -> a, b\nsetcred(1000, 1000) -> 0\n\
                     sendmsg(a, \"x\", rights=[a]) -> 1\nsendmsg(a, \"x\", rights=[a]) -> 1\n\
                     sendmsg(a, \"x\", rights=[a]) -> 1\nsendmsg(a, \"x\") -> 1\n";
        let refused = Outcome::of(Value::Err(Errno::ETOOMANYREFS));
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        m.set_nofile(Some(1));
        let r = walk(&mut m, sends);
        let kinds: Vec<bool> = r.iter().map(|(o, _)| *o == refused).collect();
        // In flight before each send: 0, 1, 2 — the third has more than one in flight already.
        assert_eq!(kinds, [false, false, false, false, true, false], "{r:?}");
        assert_eq!(r[4].1, "rights_past_nofile_in_flight_is_etoomanyrefs");
        // Exactly at the limit is allowed: with RLIMIT_NOFILE 2 none is refused.
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        m.set_nofile(Some(2));
        assert!(walk(&mut m, sends).iter().all(|(o, _)| *o != refused));
        // Root is not limited.
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        m.set_nofile(Some(1));
        let root = sends.replace("setcred(1000, 1000) -> 0\n", "");
        assert!(walk(&mut m, &root).iter().all(|(o, _)| *o != refused));
        // A stream send is refused alike, before its first byte (on the kernel: `prlimit --nofile=32:32 udsim
        // check` of 34 such sends on a stream pair refuses the 34th, as the model predicts).
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        m.set_nofile(Some(1));
        let r = walk(&mut m, &sends.replace("DGRAM", "STREAM"));
        let kinds: Vec<bool> = r.iter().map(|(o, _)| *o == refused).collect();
        assert_eq!(kinds, [false, false, false, false, true, false], "{r:?}");
    }

    /// `reset` forgets every name and file: a name from before is unknown, a path can be bound again.
    #[test]
    fn reset_forgets_names_and_files() {
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        walk(&mut m, "socket(STREAM) -> a\nbind(a, \"x.sock\") -> 0\n");
        m.reset();
        assert!(m.step(&crate::script::Call::Close("a".into())).is_err());
        let r = walk(&mut m, "socket(STREAM) -> b\nbind(b, \"x.sock\") -> 0\n");
        assert_eq!(r[1].0, Outcome::OK, "{r:?}");
    }

    /// The arena keeps released sockets (their indices stay valid for tools that walk it).
    #[test]
    fn the_arena_counts_every_socket_made_released_ones_included() {
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        assert_eq!(m.sock_count(), 0);
        walk(
            &mut m,
            "socketpair(STREAM) -> a, b\nsocket(DGRAM) -> c\nclose(c) -> 0\n",
        );
        assert_eq!(m.sock_count(), 3);
        assert!(m.sock(2).released);
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        let mut m = Model::new(Params::preset("linux-6.18-host").expect("bundled"));
        let e = m
            .step(&crate::script::Call::Close("ghost".into()))
            .unwrap_err();
        assert_eq!(e.to_string(), "unknown socket name `ghost`");
    }
}
