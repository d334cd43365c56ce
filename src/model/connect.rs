//! Names and connections: bind (paths, abstract names, autobind), listen, accept, connect — stream and
//! seqpacket through a listener (`unix_stream_connect`), datagram by association (`unix_dgram_connect`).

use super::addr::{self, Target, AF_UNSPEC};
use super::namespace::{Lookup, Node, WalkErr, MAY_EXEC, MAY_WRITE};
use super::socket::{Addr as SockAddr, SockId, State};
use super::{addr_out, Model, Prediction, BLOCKING_TIMEOUT_MS};
use crate::script::{Errno, Flags, SockAddrBytes, Value, DGRAM};

impl Model {
    pub(super) fn bind(&mut self, sid: SockId, a: &SockAddrBytes) -> Prediction {
        if addr::is_autobind_request(a) {
            // rule `bind_unnamed_autobinds`: family alone asks for an autobind name (and a bound socket keeps
            // its name: the call still succeeds).
            self.autobind(sid);
            return Prediction::ok("bind_unnamed_autobinds");
        }
        match addr::validate(a) {
            Err((rule, e)) => Prediction::err(rule, e),
            Ok(Target::Abstract(name)) => self.bind_abstract(sid, name.to_vec()),
            Ok(Target::Bsd(path)) => self.bind_bsd(sid, path),
        }
    }

    fn bind_bsd(&mut self, sid: SockId, path: &[u8]) -> Prediction {
        let cred = self.cred();
        let (found, w) = match self.fs.lookup(path, true, cred) {
            Ok(r) => r,
            Err(WalkErr::Errno(e)) => return Prediction::err("bind_path_lookup", e),
            Err(WalkErr::Outside) => {
                return Prediction::unmodelled("path_leaves_the_private_directory")
            }
        };
        match found {
            // rule `bind_existing_path_is_eaddrinuse`: mknod finds the name taken (even when the socket that made
            // it is gone, and before the already-bound check).
            Lookup::Dir | Lookup::Socket(_) | Lookup::Other => {
                Prediction::err("bind_existing_path_is_eaddrinuse", Errno::EADDRINUSE)
            }
            Lookup::Missing => {
                // rule `bind_needs_write_on_directory`
                if !self.fs.permits(w.dir, cred, MAY_WRITE | MAY_EXEC) {
                    return Prediction::err("bind_needs_write_on_directory", Errno::EACCES);
                }
                if self.socks[sid].addr.is_some() {
                    // rule `bind_twice_is_einval`: the file mknod made is removed again.
                    return Prediction::err("bind_twice_is_einval", Errno::EINVAL);
                }
                // rule `bind_creates_socket_file`: mode 0777 less the umask (022), owned by the caller.
                self.fs
                    .create(w.dir, w.name, Node::Socket(sid), 0o755, cred);
                self.socks[sid].addr = Some(SockAddr::Path(path.to_vec()));
                Prediction::ok("bind_creates_socket_file")
            }
        }
    }

    fn bind_abstract(&mut self, sid: SockId, name: Vec<u8>) -> Prediction {
        if self.socks[sid].addr.is_some() {
            return Prediction::err("bind_twice_is_einval", Errno::EINVAL);
        }
        let key = (self.socks[sid].ty, name);
        if self.abstract_names.contains_key(&key) {
            return Prediction::err("bind_abstract_in_use_is_eaddrinuse", Errno::EADDRINUSE);
        }
        self.socks[sid].addr = Some(SockAddr::Abstract(key.1.clone()));
        self.abstract_names.insert(key, sid);
        Prediction::ok("bind_abstract")
    }

    /// `unix_autobind`: an unbound socket takes a free name of NUL and five hex digits (the kernel starts at a
    /// random number; the checker compares these names by order of appearance, never by value).
    pub(super) fn autobind(&mut self, sid: SockId) {
        if self.socks[sid].addr.is_some() {
            return;
        }
        let ty = self.socks[sid].ty;
        loop {
            let name = addr::auto_name(self.next_auto);
            self.next_auto = (self.next_auto + 1) & 0xfffff;
            let key = (ty, name);
            if !self.abstract_names.contains_key(&key) {
                self.socks[sid].addr = Some(SockAddr::Abstract(key.1.clone()));
                self.abstract_names.insert(key, sid);
                return;
            }
        }
    }

    pub(super) fn listen(&mut self, sid: SockId, n: i32) -> Prediction {
        let creds = self.my_creds();
        let somaxconn = self.params.somaxconn;
        let s = &mut self.socks[sid];
        if s.ty == DGRAM {
            return Prediction::err("listen_on_dgram_is_eopnotsupp", Errno::EOPNOTSUPP);
        }
        if s.addr.is_none() {
            return Prediction::err("listen_needs_bound", Errno::EINVAL);
        }
        if s.state == State::Connected {
            return Prediction::err("listen_on_connected_is_einval", Errno::EINVAL);
        }
        // rule `listen_backlog_capped_at_somaxconn`: the backlog is compared as unsigned, so negative → somaxconn.
        s.backlog = (n as u32).min(somaxconn);
        s.state = State::Listening;
        // rule `listen_records_peercred`: connecting clients get these as their SO_PEERCRED.
        s.peercred = Some(creds);
        Prediction::ok("listen_sets_backlog")
    }

    pub(super) fn accept(&mut self, sid: SockId, blocking: bool, buf: Option<u32>) -> Prediction {
        // `__sys_accept4` takes the descriptor number before it asks the socket.
        if !self.fds_free(1) {
            return Self::emfile();
        }
        let s = &self.socks[sid];
        if s.ty == DGRAM {
            return Prediction::err("accept_on_dgram_is_eopnotsupp", Errno::EOPNOTSUPP);
        }
        if s.state != State::Listening {
            return Prediction::err("accept_needs_listening", Errno::EINVAL);
        }
        let Some(embryo) = self.socks[sid].pending.pop_front() else {
            if self.wait_ms(sid, Flags(0), true) > 0 && self.socks[sid].shut_rd {
                // rule `accept_blocking_after_shut_rd_is_einval`: the wait ends at once with no connection.
                return Prediction::err("accept_blocking_after_shut_rd_is_einval", Errno::EINVAL);
            }
            return self.eagain("accept_empty_queue_is_eagain", sid, Flags(0), true);
        };
        // rule `accept_returns_closed_clients`: an embryo whose client is gone is still accepted.
        self.install(embryo);
        let e = &mut self.socks[embryo];
        e.embryo = false;
        e.nonblock = !blocking;
        if blocking {
            e.rcvtimeo = BLOCKING_TIMEOUT_MS;
            e.sndtimeo = BLOCKING_TIMEOUT_MS;
        }
        let client = self.socks[embryo].peer.map(|c| &self.socks[c]);
        let from = client.map_or(crate::script::AddrOut::unnamed(), |c| addr_out(&c.addr));
        Prediction::one(
            "accept_dequeues_oldest",
            Value::Accepted(from.cut(buf.unwrap_or(128))),
        )
    }

    /// Finds the socket an address names (`unix_find_other`) for a socket of type `ty`.
    pub(super) fn find_other(&self, target: &Target, ty: i32) -> Result<SockId, Prediction> {
        let path = match target {
            Target::Abstract(name) => {
                return match self.abstract_names.get(&(ty, name.to_vec())) {
                    Some(&o) => Ok(o),
                    None => Err(Prediction::err(
                        "connect_abstract_unknown_is_econnrefused",
                        Errno::ECONNREFUSED,
                    )),
                };
            }
            Target::Bsd(p) => p,
        };
        let cred = self.cred();
        match self.fs.lookup(path, false, cred) {
            Err(WalkErr::Errno(e)) => Err(Prediction::err("connect_path_lookup", e)),
            Err(WalkErr::Outside) => {
                Err(Prediction::unmodelled("path_leaves_the_private_directory"))
            }
            Ok((Lookup::Missing, _)) => Err(Prediction::err(
                "connect_missing_path_is_enoent",
                Errno::ENOENT,
            )),
            // rule `connect_needs_write_on_socket_file`
            Ok((_, w))
                if w.found
                    .is_some_and(|f| !self.fs.permits(f, cred, MAY_WRITE)) =>
            {
                Err(Prediction::err(
                    "connect_needs_write_on_socket_file",
                    Errno::EACCES,
                ))
            }
            Ok((Lookup::Dir | Lookup::Other, _)) => Err(Prediction::err(
                "connect_not_a_socket_is_econnrefused",
                Errno::ECONNREFUSED,
            )),
            // rule `connect_dead_socket_file_is_econnrefused`: the file outlives its socket.
            Ok((Lookup::Socket(o), _)) if self.socks[o].released => Err(Prediction::err(
                "connect_dead_socket_file_is_econnrefused",
                Errno::ECONNREFUSED,
            )),
            // rule `connect_other_type_is_eprototype`
            Ok((Lookup::Socket(o), _)) if self.socks[o].ty != ty => Err(Prediction::err(
                "connect_other_type_is_eprototype",
                Errno::EPROTOTYPE,
            )),
            Ok((Lookup::Socket(o), _)) => Ok(o),
        }
    }

    pub(super) fn connect(&mut self, sid: SockId, a: &SockAddrBytes) -> Prediction {
        if self.socks[sid].ty == DGRAM {
            return self.connect_dgram(sid, a);
        }
        let target = match addr::validate(a) {
            Ok(t) => t,
            Err((rule, e)) => return Prediction::err(rule, e),
        };
        if self.socks[sid].passcred {
            // rule `passcred_autobinds_on_connect`
            self.autobind(sid);
        }
        let ty = self.socks[sid].ty;
        let other = match self.find_other(&target, ty) {
            Ok(o) => o,
            Err(p) => return p,
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
        if o.recvq_full() {
            return self.eagain("backlog_admits_n_plus_one", sid, Flags(0), false);
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
        let listener_cred = self.socks[other].peercred;
        let mut e = self.fresh_sock(ty, false);
        // rule `embryo_inherits_listener_passcred`
        e.passcred = self.socks[other].passcred;
        e.state = State::Connected;
        e.addr = listener_addr;
        e.peer = Some(sid);
        e.peercred = Some(self.my_creds());
        e.embryo = true;
        let embryo = self.new_sock(e);
        self.socks[other].pending.push_back(embryo);
        let me = &mut self.socks[sid];
        me.state = State::Connected;
        me.peer = Some(embryo);
        // rule `connect_copies_listener_peercred`
        me.peercred = listener_cred;
        Prediction::ok("connect_queues_embryo")
    }

    /// `unix_dgram_connect`: associate with (or, with AF_UNSPEC, dissolve the association to) a datagram socket.
    fn connect_dgram(&mut self, sid: SockId, a: &SockAddrBytes) -> Prediction {
        if a.len < 2 {
            return Prediction::err("dgram_connect_short_addr_is_einval", Errno::EINVAL);
        }
        let other = if a.family() == AF_UNSPEC {
            // rule `dgram_connect_af_unspec_dissolves`
            None
        } else {
            let target = match addr::validate(a) {
                Ok(t) => t,
                Err((rule, e)) => return Prediction::err(rule, e),
            };
            if self.socks[sid].passcred {
                self.autobind(sid);
            }
            let other = match self.find_other(&target, DGRAM) {
                Ok(o) => o,
                Err(p) => return p,
            };
            // rule `dgram_connect_to_socket_connected_elsewhere_is_eperm`
            if self.socks[other].peer.is_some_and(|p| p != sid) {
                return Prediction::err(
                    "dgram_connect_to_socket_connected_elsewhere_is_eperm",
                    Errno::EPERM,
                );
            }
            self.socks[sid].state = State::Connected;
            self.socks[other].state = State::Connected;
            Some(other)
        };
        let old = self.socks[sid].peer;
        self.socks[sid].peer = other;
        if other.is_none() {
            self.socks[sid].state = State::Unconnected;
        }
        if let Some(old) = old.filter(|&o| Some(o) != other) {
            // rule `dgram_reconnect_drops_queued_messages`: a new association purges our queue, and an old peer
            // associated back with us learns it by ECONNRESET.
            self.dgram_disconnected(sid, old);
            if self.socks[old].peer.is_none() {
                self.socks[old].state = State::Unconnected;
            }
        }
        Prediction::ok(if other.is_some() {
            "dgram_connect_associates"
        } else {
            "dgram_connect_af_unspec_dissolves"
        })
    }

    /// `unix_dgram_disconnected`: drop every queued message; tell an old peer connected back to us.
    pub(super) fn dgram_disconnected(&mut self, sid: SockId, old: SockId) {
        if self.socks[sid].rx.is_empty() {
            return;
        }
        let rx: Vec<_> = self.socks[sid].rx.drain(..).collect();
        for skb in rx {
            self.socks[skb.sender].wmem -= skb.truesize;
            self.drop_fds(skb.fds);
        }
        let o = &mut self.socks[old];
        if !o.released && o.peer == Some(sid) {
            o.err = Some(Errno::ECONNRESET);
        }
    }
}
