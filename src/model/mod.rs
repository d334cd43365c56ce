//! The model: a pure state machine of Linux AF_UNIX stream sockets over filesystem paths. No syscalls.
//!
//! `Model::step` predicts what one call returns, as the set of outcomes Linux may give (one outcome wherever the
//! kernel is deterministic, which on one kernel is every call here) and the name of the rule that decided it.
//! Rules are named after the behaviour (`backlog_admits_n_plus_one`); the names appear in divergence reports.

pub mod namespace;
pub mod params;
mod poll;
pub mod socket;
pub mod stream;

use crate::script::{Addr, SockSpec, STREAM};
use crate::script::{AddrOut, Call, Errno, How, Name, Outcome, Received, Value};
use namespace::{fs_path, Lookup, Namespace};
pub use params::Params;
use socket::{Addr as SockAddr, Sock, SockId, State};
use std::collections::HashMap;
use stream::Skb;

/// What the model allows for one call, and the rule that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prediction {
    /// The outcomes Linux may give. Exactly one wherever the kernel is deterministic.
    pub allowed: Vec<Outcome>,
    pub rule: &'static str,
}

impl Prediction {
    fn one(rule: &'static str, v: Value) -> Prediction {
        Prediction {
            allowed: vec![Outcome::of(v)],
            rule,
        }
    }

    fn err(rule: &'static str, e: Errno) -> Prediction {
        Prediction::one(rule, Value::Err(e))
    }

    fn ok(rule: &'static str) -> Prediction {
        Prediction::one(rule, Value::Ok)
    }

    /// The model does not (yet) say what this call does: the checker stops comparing with the model here.
    pub fn unmodelled(what: &'static str) -> Prediction {
        Prediction {
            allowed: Vec::new(),
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

/// The model's whole world for one script.
#[derive(Clone, Debug)]
pub struct Model {
    params: Params,
    socks: Vec<Sock>,
    names: HashMap<Name, Handle>,
    fs: Namespace,
    /// Abstract names in use (released sockets free theirs).
    abstract_names: HashMap<Vec<u8>, SockId>,
    /// Descriptors the last step created, waiting for `name_new`.
    fresh: Vec<SockId>,
}

impl Model {
    pub fn new(params: Params) -> Model {
        Model {
            params,
            socks: Vec::new(),
            names: HashMap::new(),
            fs: Namespace::default(),
            abstract_names: HashMap::new(),
            fresh: Vec::new(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Forgets every socket and file, keeping the parameters.
    pub fn reset(&mut self) {
        self.socks.clear();
        self.names.clear();
        self.fs = Namespace::default();
        self.abstract_names.clear();
        self.fresh.clear();
    }

    /// The socket behind a live name (`None` once closed).
    pub fn sock_of(&self, name: &str) -> Option<&Sock> {
        match self.names.get(name) {
            Some(Handle::Open(id)) => self.socks.get(*id),
            _ => None,
        }
    }

    /// Whether `name` was ever created in this script.
    pub fn knows(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Names of the states the live socket `name` is in (several may hold at once), for coverage reports.
    pub fn states_of(&self, name: &str) -> Vec<&'static str> {
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
        if s.wmem >= self.params.sndbuf {
            v.push("full-buffer");
        }
        if !s.rx.is_empty() {
            v.push("unread-data");
        }
        v
    }

    /// The socket with arena index `id`.
    pub fn sock(&self, id: SockId) -> &Sock {
        &self.socks[id]
    }

    fn handle(&self, name: &str) -> Result<Handle, ModelError> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| ModelError::UnknownName(name.to_string()))
    }

    fn new_sock(&mut self, s: Sock) -> SockId {
        self.socks.push(s);
        self.socks.len() - 1
    }

    fn name_sock(&mut self, name: &str, id: SockId) {
        // A name taken again leaves its old socket open but unreachable, exactly as the executor does.
        self.names.insert(name.to_string(), Handle::Open(id));
    }

    /// Gives the descriptors the last step created their names, in order (the checker decides the names
    /// once it has seen the outcome). Descriptors left without a name stay open, unreachable.
    pub fn name_new(&mut self, names: &[Name]) {
        let fresh = std::mem::take(&mut self.fresh);
        for (n, id) in names.iter().zip(fresh) {
            self.name_sock(n, id);
        }
    }

    /// A new descriptor for `id`, to be named by `name_new`.
    fn install(&mut self, id: SockId) {
        self.fresh.push(id);
    }

    /// Predicts one call and applies its effect (every prediction today is exact: one allowed outcome).
    /// Descriptors the call creates are named afterwards with `name_new`.
    pub fn step(&mut self, call: &Call) -> Result<Prediction, ModelError> {
        self.fresh.clear();
        let Some(subject) = call.subject() else {
            return Ok(match call {
                Call::Unlink(a) => self.unlink(a),
                Call::Socket(spec) if *spec == SockSpec::of(STREAM) => {
                    let sid = self.new_sock(Sock::new());
                    self.install(sid);
                    Prediction::one("socket_creates", Value::Created)
                }
                _ => Prediction::unmodelled("not_modelled_yet"),
            });
        };
        let sid = match self.handle(subject)? {
            Handle::Open(id) => id,
            Handle::Closed => return Ok(self.on_closed_fd(call)),
        };
        Ok(match call {
            Call::Bind(_, Addr::Path(a)) => self.bind(sid, a),
            Call::Listen(_, n) => self.listen(sid, *n),
            Call::Accept(_, false, None) => self.accept(sid),
            Call::Connect(_, Addr::Path(a)) => self.connect(sid, a),
            Call::Write(_, d) => self.write(sid, d),
            Call::Read(_, n) => self.read(sid, *n),
            Call::Shutdown(_, h) if h.is_valid() => self.shutdown(sid, *h),
            Call::Close(s) => {
                self.names.insert(s.clone(), Handle::Closed);
                self.release(sid, false);
                Prediction::ok("close_releases")
            }
            Call::GetSockName(_, None) => {
                Prediction::one("getsockname_is_own_addr", addr_value(&self.socks[sid].addr))
            }
            Call::GetPeerName(_, None) => match self.socks[sid].peer {
                // rule `getpeername_outlives_peer`: a released peer still answers with its address.
                Some(p) => {
                    Prediction::one("getpeername_is_peer_addr", addr_value(&self.socks[p].addr))
                }
                None => Prediction::err("getpeername_needs_peer", Errno::ENOTCONN),
            },
            Call::Poll(_) => {
                Prediction::one("poll_readiness", Value::Ready(poll::readiness(self, sid)))
            }
            _ => Prediction::unmodelled("not_modelled_yet"),
        })
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

    fn bind(&mut self, sid: SockId, a: &[u8]) -> Prediction {
        if addr_too_long(a) {
            return Prediction::err("addr_len_over_sockaddr_un_is_einval", Errno::EINVAL);
        }
        if is_abstract(a) {
            return self.bind_abstract(sid, a);
        }
        let path = fs_path(a);
        let (found, file) = match self.fs.lookup(path, true) {
            Ok(r) => r,
            Err(e) => return Prediction::err("bind_path_lookup", e),
        };
        match found {
            // rule `bind_existing_path_is_eaddrinuse`: mknod finds the name taken (even when the socket that made
            // it is gone, and before the already-bound check).
            Lookup::Dir | Lookup::Socket(_) => {
                Prediction::err("bind_existing_path_is_eaddrinuse", Errno::EADDRINUSE)
            }
            Lookup::Missing => {
                if self.socks[sid].addr.is_some() {
                    // rule `bind_twice_is_einval`: the file mknod made is removed again.
                    return Prediction::err("bind_twice_is_einval", Errno::EINVAL);
                }
                self.fs.create(file, sid);
                self.socks[sid].addr = Some(SockAddr::Path(path.to_vec()));
                Prediction::ok("bind_creates_socket_file")
            }
        }
    }

    fn bind_abstract(&mut self, sid: SockId, a: &[u8]) -> Prediction {
        if self.socks[sid].addr.is_some() {
            return Prediction::err("bind_twice_is_einval", Errno::EINVAL);
        }
        let name = sun_path(a);
        if self.abstract_names.contains_key(&name) {
            return Prediction::err("bind_abstract_in_use_is_eaddrinuse", Errno::EADDRINUSE);
        }
        self.abstract_names.insert(name.clone(), sid);
        self.socks[sid].addr = Some(SockAddr::Abstract(name));
        Prediction::ok("bind_abstract")
    }

    fn listen(&mut self, sid: SockId, n: i32) -> Prediction {
        let s = &mut self.socks[sid];
        if s.addr.is_none() {
            return Prediction::err("listen_needs_bound", Errno::EINVAL);
        }
        if s.state == State::Connected {
            return Prediction::err("listen_on_connected_is_einval", Errno::EINVAL);
        }
        // rule `listen_backlog_capped_at_somaxconn`: the backlog is compared as unsigned, so negative → somaxconn.
        s.backlog = (n as u32).min(self.params.somaxconn);
        s.state = State::Listening;
        Prediction::ok("listen_sets_backlog")
    }

    fn accept(&mut self, sid: SockId) -> Prediction {
        if self.socks[sid].state != State::Listening {
            return Prediction::err("accept_needs_listening", Errno::EINVAL);
        }
        match self.socks[sid].pending.pop_front() {
            None => Prediction::err("accept_empty_queue_is_eagain", Errno::EAGAIN),
            Some(embryo) => {
                // rule `accept_returns_closed_clients`: an embryo whose client is gone is still accepted.
                self.install(embryo);
                let client = self.socks[embryo].peer.map(|c| &self.socks[c]);
                let from = client.map_or(AddrOut::unnamed(), |c| addr_out(&c.addr));
                Prediction::one("accept_dequeues_oldest", Value::Accepted(from))
            }
        }
    }

    /// Finds the listener an address names (`unix_find_other`).
    fn find_other(&self, a: &[u8]) -> Result<SockId, (&'static str, Errno)> {
        if is_abstract(a) {
            return match self.abstract_names.get(&sun_path(a)) {
                Some(&o) => Ok(o),
                None => Err((
                    "connect_abstract_unknown_is_econnrefused",
                    Errno::ECONNREFUSED,
                )),
            };
        }
        match self.fs.lookup(fs_path(a), false) {
            Err(e) => Err(("connect_path_lookup", e)),
            Ok((Lookup::Missing, _)) => Err(("connect_missing_path_is_enoent", Errno::ENOENT)),
            Ok((Lookup::Dir, _)) => {
                Err(("connect_not_a_socket_is_econnrefused", Errno::ECONNREFUSED))
            }
            // rule `connect_dead_socket_file_is_econnrefused`: the file outlives its socket.
            Ok((Lookup::Socket(o), _)) if self.socks[o].released => Err((
                "connect_dead_socket_file_is_econnrefused",
                Errno::ECONNREFUSED,
            )),
            Ok((Lookup::Socket(o), _)) => Ok(o),
        }
    }

    fn connect(&mut self, sid: SockId, a: &[u8]) -> Prediction {
        if addr_too_long(a) {
            return Prediction::err("addr_len_over_sockaddr_un_is_einval", Errno::EINVAL);
        }
        let other = match self.find_other(a) {
            Ok(o) => o,
            Err((rule, e)) => return Prediction::err(rule, e),
        };
        let o = &self.socks[other];
        if o.state != State::Listening {
            return Prediction::err("connect_not_listening_is_econnrefused", Errno::ECONNREFUSED);
        }
        if o.shut_rd {
            return Prediction::err(
                "connect_listener_shut_rd_is_econnrefused",
                Errno::ECONNREFUSED,
            );
        }
        // rule `backlog_admits_n_plus_one`: the queue is full only when it holds more than the backlog.
        if o.pending.len() as u64 > o.backlog as u64 {
            return Prediction::err("backlog_admits_n_plus_one", Errno::EAGAIN);
        }
        // rule `connect_checks_own_state_last`: the listener is found and checked before our own state.
        match self.socks[sid].state {
            State::Connected => {
                return Prediction::err("connect_when_connected_is_eisconn", Errno::EISCONN)
            }
            State::Listening => {
                return Prediction::err("connect_on_listener_is_einval", Errno::EINVAL)
            }
            State::Unconnected => {}
        }
        let listener_addr = self.socks[other].addr.clone();
        let embryo = self.new_sock(Sock {
            state: State::Connected,
            addr: listener_addr,
            peer: Some(sid),
            ..Sock::new()
        });
        self.socks[other].pending.push_back(embryo);
        let me = &mut self.socks[sid];
        me.state = State::Connected;
        me.peer = Some(embryo);
        Prediction::ok("connect_queues_embryo")
    }

    fn write(&mut self, sid: SockId, d: &[u8]) -> Prediction {
        let me = &self.socks[sid];
        let Some(peer) = me.peer.filter(|_| me.state == State::Connected) else {
            return Prediction::err("write_needs_peer_is_enotconn", Errno::ENOTCONN);
        };
        if me.shut_wr {
            // Also after the peer closed or shut down reading: both set our SEND_SHUTDOWN.
            return Prediction::err("write_after_send_shutdown_is_epipe", Errno::EPIPE);
        }
        if d.is_empty() {
            return Prediction::one("write_empty_is_zero", Value::Wrote(0));
        }
        // rule `write_allocates_before_checking_peer`: a full send buffer answers EAGAIN before a dead peer EPIPE.
        if me.wmem >= self.params.sndbuf {
            return Prediction::err("write_sndbuf_full_is_eagain", Errno::EAGAIN);
        }
        let p = &self.socks[peer];
        if p.released || p.shut_rd {
            return Prediction::err("write_to_dead_peer_is_epipe", Errno::EPIPE);
        }
        // rule `write_chunks_while_sndbuf_not_full`: skbs of at most `max_chunk` bytes, each allocated only while
        // the charged memory is below the send buffer, so the last one may overshoot it.
        let mut off = 0;
        while off < d.len() && self.socks[sid].wmem < self.params.sndbuf {
            let c = (d.len() - off).min(self.params.max_chunk);
            let ts = self.params.truesize(c);
            self.socks[sid].wmem += ts;
            self.socks[peer].rx.push_back(Skb {
                data: d[off..off + c].to_vec(),
                consumed: 0,
                truesize: ts,
                sender: sid,
            });
            off += c;
        }
        Prediction::one("write_chunks_while_sndbuf_not_full", Value::Wrote(off))
    }

    fn read(&mut self, sid: SockId, n: usize) -> Prediction {
        if self.socks[sid].state != State::Connected {
            return Prediction::err("read_unconnected_is_einval", Errno::EINVAL);
        }
        let mut out = Vec::new();
        // rule `read_zero_with_data_is_empty`: target is at least one byte, but a zero-length read that finds
        // data returns at once with nothing.
        if self.socks[sid].rx.is_empty() {
            let s = &mut self.socks[sid];
            if let Some(e) = s.err.take() {
                return Prediction::err("read_reports_pending_error_once", e);
            }
            if s.shut_rd {
                return Prediction::one(
                    "read_after_rcv_shutdown_is_eof",
                    Value::Recv(Received::bytes(Vec::new())),
                );
            }
            return Prediction::err("read_empty_is_eagain", Errno::EAGAIN);
        }
        while out.len() < n {
            let s = &mut self.socks[sid];
            let Some(skb) = s.rx.front_mut() else { break };
            let take = (n - out.len()).min(skb.len());
            out.extend_from_slice(&skb.data[skb.consumed..skb.consumed + take]);
            skb.consumed += take;
            if skb.is_empty() {
                let done = s.rx.pop_front().expect("front exists");
                self.socks[done.sender].wmem -= done.truesize;
            }
        }
        Prediction::one("read_copies_across_skbs", Value::Recv(Received::bytes(out)))
    }

    fn shutdown(&mut self, sid: SockId, h: How) -> Prediction {
        // rule `shutdown_any_state_is_ok`: unix_shutdown sets the bits whatever the state.
        let s = &mut self.socks[sid];
        s.shut_rd |= h.reads();
        s.shut_wr |= h.writes();
        if let Some(p) = s.peer {
            // rule `shutdown_mirrors_to_peer`: our RD stops the peer's sends, our WR ends the peer's reads.
            let p = &mut self.socks[p];
            p.shut_wr |= h.reads();
            p.shut_rd |= h.writes();
        }
        Prediction::ok("shutdown_any_state_is_ok")
    }

    fn unlink(&mut self, a: &[u8]) -> Prediction {
        if is_abstract(a) {
            return Prediction::err("unlink_empty_path_is_enoent", Errno::ENOENT);
        }
        match self.fs.lookup(fs_path(a), false) {
            Err(e) => Prediction::err("unlink_path_lookup", e),
            Ok((Lookup::Missing, _)) => Prediction::err("unlink_missing_is_enoent", Errno::ENOENT),
            Ok((Lookup::Dir, _)) => Prediction::err("unlink_dir_is_eisdir", Errno::EISDIR),
            Ok((Lookup::Socket(_), file)) => {
                // rule `unlink_keeps_socket`: the socket keeps its address and its listeners keep accepting.
                self.fs.remove(&file);
                Prediction::ok("unlink_removes_file_only")
            }
        }
    }

    /// `unix_release_sock`: the socket goes away; its peer sees end of file (and a reset if we left unread
    /// data, or if we were an embryo whose listener closed); embryos of a listener are released in turn.
    fn release(&mut self, sid: SockId, embryo: bool) {
        let s = &mut self.socks[sid];
        s.released = true;
        s.state = State::Unconnected;
        s.shut_rd = true;
        s.shut_wr = true;
        let had_unread = !s.rx.is_empty();
        let pending: Vec<SockId> = s.pending.drain(..).collect();
        let rx: Vec<Skb> = s.rx.drain(..).collect();
        let peer = s.peer.take();
        if let Some(SockAddr::Abstract(n)) = &s.addr {
            let n = n.clone();
            if self.abstract_names.get(&n) == Some(&sid) {
                self.abstract_names.remove(&n);
            }
        }
        if let Some(p) = peer {
            let p = &mut self.socks[p];
            p.shut_rd = true;
            p.shut_wr = true;
            if had_unread || embryo {
                // rule `close_with_unread_data_resets_peer`
                p.err = Some(Errno::ECONNRESET);
            }
        }
        for skb in rx {
            self.socks[skb.sender].wmem -= skb.truesize;
        }
        for e in pending {
            // rule `close_listener_resets_pending_clients`
            self.release(e, true);
        }
    }
}

/// rule `empty_or_nul_led_path_is_abstract`: `sun_path[0] == 0` (so also `""`, passed as one NUL byte) names
/// the abstract namespace.
fn is_abstract(a: &[u8]) -> bool {
    a.first().is_none_or(|&b| b == 0)
}

/// The `sun_path` bytes the kernel is handed (the script language adds a NUL up to 107 bytes); an abstract
/// name is all of them, and getsockname returns all of them.
fn sun_path(a: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    if v.len() <= 107 {
        v.push(0);
    }
    v
}

/// rule `addr_len_over_sockaddr_un_is_einval`: the address length passed is over sizeof(sockaddr_un).
fn addr_too_long(a: &[u8]) -> bool {
    a.len() > 108
}

fn addr_out(a: &Option<SockAddr>) -> AddrOut {
    a.as_ref().map_or_else(AddrOut::unnamed, SockAddr::out)
}

fn addr_value(a: &Option<SockAddr>) -> Value {
    Value::Addr(addr_out(a))
}
