//! `--engine uring`: one thread, one io_uring (the `io-uring` crate), every socket operation a
//! submission; each batch of completions is answered with one `io_uring_enter` that submits the
//! batch's new work and waits for the next completions.
//!
//! - Accept: multishot accept (one submission accepts connection after connection) while at
//!   least two more clients fit; a single-shot accept when only one does, so `--max-clients` is
//!   not overrun. Should the kernel still deliver a connection past the limit (it raced the
//!   cancel), the socket is parked unread, like a connection in the backlog, until a slot frees.
//! - Each connection has its own circular buffer of `--buffer-size` bytes and at most one recv
//!   and one send in flight: the recv into the free part, the send from the pending part, which
//!   never overlap. So `backpressure` is exact: a client whose echo is not read gets at most
//!   `bound` bytes buffered, then no recv is armed until its send completes. (Multishot recv with
//!   a shared provided-buffer ring cannot bound one connection: the kernel keeps filling buffers
//!   until the cancel lands; see docs/performance.md.) A recv after a short read is armed with
//!   `IORING_RECVSEND_POLL_FIRST` (the queue was empty, so trying at once would only fail).
//! - `partial_writes`: a short send completion re-arms a send for the rest.
//! - `emfile_pauses_accept`: EMFILE/ENFILE ends the multishot accept; it is re-armed after any
//!   close, or after one second, never in a loop.
//! - Signals: a multishot poll on the signalfd; `drain_on_stop` as in [`super::event_loop`].
//! - `idle_timeout`: as in the event loop, a sweep every half timeout.
//! - Output (`out.rs`): queued status lines or `--print` bytes are flushed after each batch, and a
//!   one-shot poll for writability is armed on a stalled stdout/stderr.
//!
//! Buffer lifetimes (the invariants every `unsafe` push relies on):
//! 1. A buffer handed to the kernel is a connection's `Box<[u8]>`: heap memory that does not move
//!    when the `Conn` (or the `Vec` holding it) moves, and that is freed or reused only by
//!    `finalize`, which runs only when the connection has no recv and no send in flight
//!    (`recv_busy` false, `send_len` 0: each is cleared only by its completion).
//! 2. A recv writes only `[tail, tail + room)` and a send reads only `[head, head + send_len)`:
//!    disjoint parts of the circle, so the kernel and this thread never touch the same bytes.
//! 3. Poll, accept and cancel submissions carry no buffer (accept passes null addresses).
//! 4. On every way out of [`run`], [`Server::shutdown`] cancels all requests and reaps their
//!    completions before the buffers are dropped; if the kernel did not complete them in time the
//!    buffers are leaked, never freed under a pending request.

use super::error::{describe, EchoError};
use super::out;
use super::signals::{Caught, Signals};
use super::status::{self, Status};
use super::tap::Tap;
use super::Config;
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};
use nix::errno::Errno;
use nix::libc;
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// User data with this bit set names a non-connection request.
const TAG: u64 = 1 << 63;
const UD_ACCEPT: u64 = TAG | 1;
const UD_SIGNAL: u64 = TAG | 2;
/// Cancel requests: their own completions are not tracked.
const UD_CANCEL: u64 = TAG | 3;
/// A writability poll on an output descriptor: `UD_OUTPUT | fd`.
const UD_OUTPUT: u64 = TAG | 1 << 32;
const OP_RECV: u64 = 0;
const OP_SEND: u64 = 1;
/// `IORING_RECVSEND_POLL_FIRST` (Linux 5.19): wait for readiness before the first attempt.
const RECVSEND_POLL_FIRST: u16 = 1;
/// While accept is paused for lack of fds, retry this often even if no connection closes.
const FD_RETRY: Duration = Duration::from_secs(1);
/// Submission queue entries; the completion queue is larger so bursts do not overflow it.
const SQ_ENTRIES: u32 = 256;
const CQ_ENTRIES: u32 = 4096;
/// How long [`Server::shutdown`] waits for cancelled requests to complete.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// The ring, set up before the socket is bound so that a kernel or sandbox without io_uring is
/// one clear error, with no socket file left behind.
pub struct Ring {
    ring: IoUring,
}

/// Sets up the ring and checks the opcodes the engine needs; the error says why it cannot run.
pub fn setup() -> Result<Ring, String> {
    // Single issuer + deferred task work: completions are processed only when this thread waits
    // for them (one `io_uring_enter`), not by interrupting it (Linux 6.1); plain setup otherwise.
    let ring = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(SQ_ENTRIES)
        .or_else(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => IoUring::builder()
                .setup_cqsize(CQ_ENTRIES)
                .build(SQ_ENTRIES),
            _ => Err(e),
        })
        .map_err(|e| {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
            format!(
                "io_uring is not available: io_uring_setup failed: {} (use --engine readwrite)",
                describe(errno)
            )
        })?;
    if !ring.params().is_feature_ext_arg() {
        return Err(
            "io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11+ needed; use --engine readwrite)"
                .into(),
        );
    }
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| {
        format!(
            "cannot probe io_uring opcodes: {} (use --engine readwrite)",
            describe(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        )
    })?;
    for (code, name) in [
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!(
                "io_uring lacks IORING_OP_{name} (Linux 5.19+ needed; use --engine readwrite)"
            ));
        }
    }
    Ok(Ring { ring })
}

/// Why accepting is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pause {
    MaxClients,
    NoFds,
    Stopped,
}

struct Conn {
    sock: OwnedFd,
    /// The circular buffer (invariant 1).
    buf: Box<[u8]>,
    /// Next byte to send back, and bytes received and not yet sent.
    head: usize,
    len: usize,
    /// A recv is in flight, into `buf[recv_pos..]`.
    recv_busy: bool,
    recv_pos: usize,
    /// The last recv left the socket's queue empty: arm the next one poll-first.
    poll_first: bool,
    /// Bytes of the send in flight (0: none).
    send_len: usize,
    /// The client half-closed (or the server stops reading).
    eof: bool,
    /// Being closed: its requests are cancelled; finalized when none is in flight.
    closing: bool,
    last: Instant,
}

impl Conn {
    fn busy(&self) -> bool {
        self.recv_busy || self.send_len > 0
    }
}

struct Server<'a> {
    ring: IoUring,
    listener: Option<OwnedFd>,
    cfg: &'a Config,
    max: usize,
    status: Status,
    tap: Tap,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Connections in service (including ones being closed).
    live: usize,
    /// Accepted past the limit (a lost race with the cancel): served, unread so far, in order.
    parked: VecDeque<OwnedFd>,
    pause: Option<Pause>,
    fd_retry_at: Option<Instant>,
    fd_warned: bool,
    /// An accept request is in flight; it is multishot; a cancel for it was sent.
    accept_armed: bool,
    accept_multi: bool,
    accept_cancelled: bool,
    /// Cleared when the kernel refuses multishot accept (EINVAL): single-shot from then on.
    multishot_ok: bool,
    signal_armed: bool,
    /// Output descriptors with a writability poll in flight.
    out_polls: Vec<RawFd>,
    /// Tracked requests submitted whose last completion has not arrived (invariant 4).
    inflight: usize,
    now: Instant,
    next_sweep: Instant,
    /// A closed connection's buffer, kept for the next one (no allocation and zeroing).
    spare: Option<Box<[u8]>>,
    cqes: Vec<(u64, i32, u32)>,
}

/// Serves until a signal (SIGINT/SIGTERM/SIGHUP: then drains, `drain_on_stop`); returns it.
pub fn run(
    ring: Ring,
    listener: OwnedFd,
    signals: &Signals,
    cfg: &Config,
    status: Status,
) -> Result<Caught, EchoError> {
    let mut server = Server {
        ring: ring.ring,
        listener: Some(listener),
        cfg,
        max: cfg.max_clients.unwrap_or(usize::MAX),
        status,
        tap: Tap::new(cfg.print, status),
        conns: Vec::new(),
        free: Vec::new(),
        live: 0,
        parked: VecDeque::new(),
        pause: None,
        fd_retry_at: None,
        fd_warned: false,
        accept_armed: false,
        accept_multi: false,
        accept_cancelled: false,
        multishot_ok: true,
        signal_armed: false,
        out_polls: Vec::new(),
        inflight: 0,
        now: Instant::now(),
        next_sweep: Instant::now() + cfg.idle.map_or(Duration::ZERO, sweep_every),
        spare: None,
        cqes: Vec::with_capacity(CQ_ENTRIES as usize),
    };
    let result = server.serve(signals);
    server.shutdown();
    result
}

/// `idle_timeout`: how often idle connections are looked for.
fn sweep_every(idle: Duration) -> Duration {
    (idle / 2).max(Duration::from_millis(10))
}

fn ud(slot: usize, op: u64) -> u64 {
    (slot as u64) << 1 | op
}

impl Server<'_> {
    fn serve(&mut self, signals: &Signals) -> Result<Caught, EchoError> {
        self.arm_signal(signals);
        self.tend_accept();
        self.status
            .line(format_args!("Waiting to accept a connection..."));
        let mut stopping: Option<(Caught, Instant)> = None;
        loop {
            let mut timeout: Option<Duration> = None;
            let mut at_most = |d: Duration| {
                timeout = Some(timeout.map_or(d, |t: Duration| t.min(d)));
            };
            let now = Instant::now();
            if let Some((_, end)) = stopping {
                at_most(end.saturating_duration_since(now));
            }
            if let Some(at) = self.fd_retry_at {
                at_most(at.saturating_duration_since(now));
            }
            if self.cfg.idle.is_some() {
                at_most(self.next_sweep.saturating_duration_since(now));
            }
            if status::limited_pending() {
                if let Some(due) = status::flush_limited() {
                    at_most(due);
                }
            }
            self.submit_and_wait(timeout)?;
            if self.cfg.idle.is_some() {
                self.now = Instant::now();
            }
            if self
                .fd_retry_at
                .is_some_and(|at| Instant::now() >= at && self.pause == Some(Pause::NoFds))
            {
                self.resume();
            }
            self.reap();
            let mut cqes = std::mem::take(&mut self.cqes);
            // The listener first, as in the event loop: a waiting connect is served before the
            // batch's other work.
            for &(data, res, flags) in cqes.iter().filter(|c| c.0 == UD_ACCEPT) {
                self.on_accept(data, res, flags);
            }
            for &(data, res, flags) in &cqes {
                match data {
                    UD_ACCEPT | UD_CANCEL => {}
                    UD_SIGNAL => {
                        if !cqueue::more(flags) {
                            self.signal_armed = false;
                            self.arm_signal(signals);
                        }
                        if let Some(sig) = signals.take() {
                            if stopping.is_some() || !sig.graceful() {
                                self.cqes = cqes;
                                return Ok(sig);
                            }
                            self.stop();
                            stopping = Some((sig, Instant::now() + super::DRAIN_GRACE));
                        }
                    }
                    d if d & TAG != 0 => {
                        let fd = (d & 0xffff_ffff) as RawFd;
                        self.out_polls.retain(|&f| f != fd);
                    }
                    d => self.on_conn((d >> 1) as usize, d & 1, res, flags),
                }
            }
            cqes.clear();
            self.cqes = cqes;
            if let Some(idle) = self.cfg.idle {
                if self.now >= self.next_sweep {
                    self.sweep_idle(idle);
                }
            }
            if out::attention() {
                self.service_output();
            }
            if let Some((sig, end)) = stopping {
                if self.live == 0 || Instant::now() >= end {
                    return Ok(sig);
                }
            } else {
                self.tend_accept();
            }
        }
    }

    /// Submits what is queued and waits for at least one completion, or the timeout.
    fn submit_and_wait(&mut self, timeout: Option<Duration>) -> Result<(), EchoError> {
        let r = match timeout {
            Some(d) => {
                let ts = Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => Ok(()),
                Some(n) => Err(EchoError::sys_nopath(
                    "io_uring_enter failed",
                    Errno::from_raw(n),
                )),
                None => Err(EchoError::sys_nopath("io_uring_enter failed", Errno::EIO)),
            },
        }
    }

    /// Moves the completions out of the queue; counts the tracked requests that ended.
    fn reap(&mut self) {
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            let (data, flags) = (cqe.user_data(), cqe.flags());
            if data != UD_CANCEL && !cqueue::more(flags) {
                self.inflight -= 1;
            }
            self.cqes.push((data, cqe.result(), flags));
        }
    }

    /// Queues one submission (submitting first if the queue is full). Every entry pushed here
    /// obeys the module's buffer-lifetime invariants.
    fn push(&mut self, entry: squeue::Entry) {
        if entry.get_user_data() != UD_CANCEL {
            self.inflight += 1;
        }
        loop {
            // SAFETY: the entry's buffer, if any, is a connection buffer that stays allocated
            // and unmoved until this request's completion is reaped (invariants 1, 2, 4);
            // accept, poll and cancel entries carry none (invariant 3).
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            // The queue is full: hand it to the kernel (this does not wait).
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) {
                    self.status
                        .warn(format_args!("io_uring submit failed: {e}; retrying"));
                }
            }
        }
    }

    fn arm_signal(&mut self, signals: &Signals) {
        if self.signal_armed {
            return;
        }
        self.signal_armed = true;
        let fd = signals.as_fd().as_raw_fd();
        let e = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(UD_SIGNAL);
        self.push(e);
    }

    fn cancel(&mut self, what: CancelBuilder) {
        let e = opcode::AsyncCancel2::new(what).build().user_data(UD_CANCEL);
        self.push(e);
    }

    /// Serves parked connections while there is room, then keeps exactly one accept request in
    /// flight while clients fit, none at the limit (`max_clients`) or while paused.
    fn tend_accept(&mut self) {
        while self.live < self.max {
            let Some(sock) = self.parked.pop_front() else {
                break;
            };
            self.serve_new(sock);
        }
        let room = self.max.saturating_sub(self.live + self.parked.len());
        if room == 0 {
            if self.pause.is_none() {
                self.pause = Some(Pause::MaxClients);
            }
            if self.accept_armed && self.accept_multi && !self.accept_cancelled {
                self.accept_cancelled = true;
                self.cancel(CancelBuilder::user_data(UD_ACCEPT));
            }
            return;
        }
        if self.pause == Some(Pause::MaxClients) {
            self.pause = None;
        }
        if self.pause.is_some() || self.accept_armed {
            return;
        }
        let Some(listener) = self.listener.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let multi = self.multishot_ok && room > 1;
        let e = if multi {
            opcode::AcceptMulti::new(Fd(listener))
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            opcode::Accept::new(Fd(listener), std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        self.accept_armed = true;
        self.accept_multi = multi;
        self.accept_cancelled = false;
        self.push(e.user_data(UD_ACCEPT));
    }

    fn on_accept(&mut self, _data: u64, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if res >= 0 {
            // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
            let sock = unsafe { OwnedFd::from_raw_fd(res) };
            if self.pause == Some(Pause::Stopped) {
                return;
            }
            self.fd_warned = false;
            if self.live < self.max && self.parked.is_empty() {
                self.serve_new(sock);
            } else {
                self.parked.push_back(sock);
            }
            return;
        }
        match Errno::from_raw(-res) {
            Errno::ECANCELED
            | Errno::EINTR
            | Errno::EAGAIN
            | Errno::ECONNABORTED
            | Errno::EPROTO => {}
            Errno::EINVAL if self.accept_multi && self.multishot_ok => {
                // A kernel without multishot accept (before 5.19): single-shot from now on.
                self.multishot_ok = false;
            }
            e => self.out_of_fds("accept failed", e),
        }
    }

    /// EMFILE, ENFILE and other accept failures: pause instead of spinning
    /// (`emfile_pauses_accept`); warned once per episode, rate-limited across episodes.
    fn out_of_fds(&mut self, what: &str, e: Errno) {
        super::warn_accept_failed(self.status, &mut self.fd_warned, what, e);
        if self.pause != Some(Pause::Stopped) {
            self.pause = Some(Pause::NoFds);
            self.fd_retry_at = Some(Instant::now() + FD_RETRY);
        }
    }

    fn resume(&mut self) {
        if matches!(self.pause, Some(Pause::MaxClients | Pause::NoFds)) {
            self.pause = None;
        }
        self.fd_retry_at = None;
    }

    /// A connection enters service: status line, `--allow-uid`, a buffer, its first recv (which
    /// the kernel attempts at once: read-after-accept).
    fn serve_new(&mut self, sock: OwnedFd) {
        self.status
            .line(format_args!("Accepted socket fd = {}", sock.as_raw_fd()));
        if !super::peer_allowed(&sock, &self.cfg.allow_uids, self.status) {
            return;
        }
        let buf = self
            .spare
            .take()
            .unwrap_or_else(|| vec![0u8; self.cfg.buffer].into_boxed_slice());
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.conns[slot] = Some(Conn {
            sock,
            buf,
            head: 0,
            len: 0,
            recv_busy: false,
            recv_pos: 0,
            poll_first: false,
            send_len: 0,
            eof: false,
            closing: false,
            last: self.now,
        });
        self.live += 1;
        self.pump(slot);
    }

    fn on_conn(&mut self, slot: usize, op: u64, res: i32, flags: u32) {
        let idle = self.cfg.idle.is_some();
        let now = self.now;
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        if idle {
            conn.last = now;
        }
        let mut gone = false;
        if op == OP_RECV {
            conn.recv_busy = false;
            if res > 0 {
                let n = res as usize;
                let pos = conn.recv_pos;
                debug_assert_eq!(pos, (conn.head + conn.len) % conn.buf.len());
                self.tap.copy(&conn.buf[pos..pos + n]);
                conn.len += n;
                conn.poll_first = !cqueue::sock_nonempty(flags);
            } else if res == 0 {
                conn.eof = true;
            } else {
                match Errno::from_raw(-res) {
                    Errno::ECANCELED | Errno::EINTR | Errno::EAGAIN | Errno::ENOBUFS => {}
                    _ => gone = true,
                }
            }
        } else {
            conn.send_len = 0;
            if res > 0 {
                let n = res as usize;
                conn.head = (conn.head + n) % conn.buf.len();
                conn.len -= n;
            } else {
                match Errno::from_raw(-res) {
                    Errno::ECANCELED | Errno::EINTR | Errno::EAGAIN | Errno::ENOBUFS => {}
                    // EPIPE, ECONNRESET: the client is gone; a send of 0 bytes makes no progress.
                    _ => gone = true,
                }
            }
        }
        if gone {
            self.close(slot);
        }
        self.pump(slot);
    }

    /// Arms what the connection can do now: a send while bytes are pending, a recv while there
    /// is room (`backpressure`) and the client has not half-closed; closes it when it is done.
    fn pump(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.closing {
            if !conn.busy() {
                self.finalize(slot);
            }
            return;
        }
        let cap = conn.buf.len();
        if conn.len == 0 && !conn.busy() {
            // Empty: start at the front, so a large message is received in one piece.
            conn.head = 0;
        }
        let mut entries: [Option<squeue::Entry>; 2] = [None, None];
        if conn.len > 0 && conn.send_len == 0 {
            let n = conn.len.min(cap - conn.head);
            conn.send_len = n;
            let ptr = conn.buf[conn.head..].as_ptr();
            entries[0] = Some(
                opcode::Send::new(Fd(conn.sock.as_raw_fd()), ptr, n as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(ud(slot, OP_SEND)),
            );
        }
        if !conn.eof && !conn.recv_busy && conn.len < cap {
            let tail = (conn.head + conn.len) % cap;
            let room = if tail >= conn.head {
                cap - tail
            } else {
                conn.head - tail
            };
            conn.recv_busy = true;
            conn.recv_pos = tail;
            let ptr = conn.buf[tail..].as_mut_ptr();
            let prio = if conn.poll_first {
                RECVSEND_POLL_FIRST
            } else {
                0
            };
            entries[1] = Some(
                opcode::Recv::new(Fd(conn.sock.as_raw_fd()), ptr, room as u32)
                    .ioprio(prio)
                    .build()
                    .user_data(ud(slot, OP_RECV)),
            );
        }
        let done = conn.eof && conn.len == 0 && !conn.busy();
        for e in entries.into_iter().flatten() {
            self.push(e);
        }
        if done {
            self.close(slot);
        }
    }

    /// Starts closing: cancels the connection's requests; it is finalized when none is left.
    fn close(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        if conn.busy() {
            let fd = conn.sock.as_raw_fd();
            self.cancel(CancelBuilder::fd(Fd(fd)).all());
        } else {
            self.finalize(slot);
        }
    }

    /// Frees the slot: only when no request of the connection is in flight (invariant 1).
    fn finalize(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].take() else {
            return;
        };
        debug_assert!(!conn.busy());
        let Conn { sock, buf, .. } = conn;
        if self.spare.is_none() {
            self.spare = Some(buf);
        }
        drop(sock);
        self.live -= 1;
        self.free.push(slot);
        self.resume();
    }

    /// `idle_timeout`: closes every connection whose last completion is `idle` or more ago.
    fn sweep_idle(&mut self, idle: Duration) {
        let now = self.now;
        for slot in 0..self.conns.len() {
            let Some(conn) = self.conns[slot].as_ref() else {
                continue;
            };
            if !conn.closing && now.saturating_duration_since(conn.last) >= idle {
                self.status.line(format_args!(
                    "Closed idle connection fd = {}",
                    conn.sock.as_raw_fd()
                ));
                self.close(slot);
            }
        }
        self.next_sweep = now + sweep_every(idle);
    }

    /// `drain_on_stop`: no more accepts or reads; connections with nothing pending close now,
    /// the others once their echo is sent (or the grace period ends).
    fn stop(&mut self) {
        self.pause = Some(Pause::Stopped);
        self.fd_retry_at = None;
        if self.accept_armed {
            self.cancel(CancelBuilder::user_data(UD_ACCEPT));
        }
        // The pending accept holds its own reference until its cancellation completes (within
        // this batch's submission); waiting connects are then refused.
        drop(self.listener.take());
        self.parked.clear();
        self.spare = None;
        for slot in 0..self.conns.len() {
            let Some(conn) = self.conns[slot].as_mut() else {
                continue;
            };
            conn.eof = true;
            if conn.len == 0 {
                self.close(slot);
            } else if conn.recv_busy {
                let data = ud(slot, OP_RECV);
                self.cancel(CancelBuilder::user_data(data));
            }
        }
    }

    /// Flushes queued output and arms a one-shot writability poll on each stalled descriptor.
    fn service_output(&mut self) {
        out::flush();
        out::poll_changes(|_, _, _| {});
        for fd in out::queued_fds() {
            let raw = fd.as_raw_fd();
            if !self.out_polls.contains(&raw) {
                self.out_polls.push(raw);
                let e = opcode::PollAdd::new(Fd(raw), libc::POLLOUT as u32)
                    .build()
                    .user_data(UD_OUTPUT | raw as u32 as u64);
                self.push(e);
            }
        }
    }

    /// Invariant 4: cancels every request and reaps their completions before the buffers go.
    fn shutdown(&mut self) {
        if self.inflight > 0 {
            self.cancel(CancelBuilder::any());
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while self.inflight > 0 && Instant::now() < deadline {
            if self
                .submit_and_wait(Some(Duration::from_millis(100)))
                .is_err()
            {
                break;
            }
            self.reap();
            for (data, res, _) in std::mem::take(&mut self.cqes) {
                if data == UD_ACCEPT && res >= 0 {
                    // SAFETY: a connection accepted while shutting down; closed at once.
                    drop(unsafe { OwnedFd::from_raw_fd(res) });
                }
            }
        }
        if self.inflight > 0 {
            // The kernel still holds requests: never free memory it may write.
            for conn in self.conns.iter_mut().filter_map(Option::take) {
                std::mem::forget(conn.buf);
            }
        }
    }
}
