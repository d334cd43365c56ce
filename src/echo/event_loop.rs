//! The default engine: one thread, non-blocking sockets, level-triggered epoll (nix).
//!
//! Duties, each named where it is done:
//! - `backpressure`: a connection is polled for input only while its relay has room, so a client
//!   that does not read its echo stops being read from; memory per connection is `bound`.
//! - `partial_writes`: a short send leaves the rest pending and asks for EPOLLOUT.
//! - `max_clients`: at the limit the listener leaves the interest set; it returns on a close.
//! - `emfile_pauses_accept`: EMFILE/ENFILE (at accept, or creating a splice pipe) takes the
//!   listener out of the interest set instead of spinning on a readable listener; any close puts
//!   it back, and a one-second timer retries in case the fds were freed elsewhere.
//! - `fair_turns`: each readiness event does a bounded amount of work, so one fast client cannot
//!   starve the others.
//! - `idle_timeout`: with `--idle-timeout`, a connection with no readiness event (so no byte
//!   moved) for that long is closed; a sweep every half timeout finds them, so one closes
//!   between 1 and 1.5 timeouts after its last byte. Off by default: then no clock is read.
//! - `drain_on_stop`: on SIGINT/SIGTERM the listener is closed and no client is read from again,
//!   but the bytes already read are still echoed, for at most [`super::DRAIN_GRACE`]; then the
//!   remaining connections are closed (a client whose unread input is still queued here sees a
//!   reset; its own byte count catches the rest, see `client.rs`).

use super::error::{describe, EchoError};
use super::link::Link;
use super::out;
use super::relay::Relay;
use super::signals::{Caught, Signals};
use super::status::{self, Status};
use super::tap::Tap;
use super::Config;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{accept4, SockFlag};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const LISTENER: u64 = 0;
const SIGNALS: u64 = 1;
/// stdout or stderr, polled only while output is queued (`output_never_blocks`, `out.rs`).
const OUTPUT: u64 = 2;
const FIRST_CONN: u64 = 3;
/// Accept attempts per listener event that fail with a transient error (EINTR, ECONNABORTED,
/// EPROTO) before the loop goes back to `epoll_wait`.
const ACCEPT_RETRIES: usize = 8;
/// While accept is paused for lack of fds, retry this often even if no connection closes.
const FD_RETRY_MS: u16 = 1000;

/// Why the listener is out of the interest set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pause {
    MaxClients,
    NoFds,
    /// Stopping (`drain_on_stop`): the listener is closed for good.
    Stopped,
}

struct Conn<R> {
    /// The socket, its relay and the connection's echo work (shared with the simulation).
    link: Link<OwnedFd, R>,
    interest: EpollFlags,
    /// When its last event was handled (`idle_timeout`; unused without it).
    last: Instant,
}

struct Server<'a, R: Relay<OwnedFd>> {
    epoll: Epoll,
    /// None once stopping (`drain_on_stop`).
    listener: Option<OwnedFd>,
    cfg: &'a Config,
    status: Status,
    tap: Tap,
    conns: Vec<Option<Conn<R>>>,
    free: Vec<usize>,
    /// Slots freed during the current batch of events; reused only after it, so a stale event
    /// in the same batch never reaches a new connection.
    freed: Vec<usize>,
    live: usize,
    pause: Option<Pause>,
    /// An out-of-fds warning was printed and no accept has succeeded since (warn once).
    fd_warned: bool,
    /// `idle_timeout`: this batch's clock reading, and when the next sweep is due.
    now: Instant,
    next_sweep: Instant,
    /// A relay made before accept, so a failure to make one (EMFILE) never drops a client: a
    /// closed connection's relay when it can be recycled, else made after a batch of events
    /// (outside the connect → accept path), or right before accept4 if there is none.
    spare: Option<R>,
}

/// Serves until a signal (SIGINT/SIGTERM/SIGHUP: then drains, `drain_on_stop`); returns it.
pub fn run<R: Relay<OwnedFd>>(
    listener: OwnedFd,
    signals: &Signals,
    cfg: &Config,
    status: Status,
) -> Result<Caught, EchoError> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(|e| EchoError::sys_nopath("cannot create an epoll instance", e))?;
    epoll
        .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
        .map_err(|e| EchoError::sys_nopath("cannot poll the listening socket", e))?;
    epoll
        .add(signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))
        .map_err(|e| EchoError::sys_nopath("cannot poll the signalfd", e))?;
    let mut server: Server<'_, R> = Server {
        epoll,
        listener: Some(listener),
        cfg,
        status,
        tap: Tap::new(cfg.print, status),
        conns: Vec::new(),
        free: Vec::new(),
        freed: Vec::new(),
        live: 0,
        pause: None,
        fd_warned: false,
        now: Instant::now(),
        next_sweep: Instant::now() + cfg.idle.map_or(Duration::ZERO, sweep_every),
        spare: None,
    };
    status.line(format_args!("Waiting to accept a connection..."));
    let mut events = vec![EpollEvent::empty(); 256];
    // Set on the first SIGINT/SIGTERM: the signal and the end of the drain.
    let mut stopping: Option<(Caught, Instant)> = None;
    loop {
        let mut timeout = match (stopping, server.pause) {
            (Some((_, end)), _) => {
                let left = end.saturating_duration_since(Instant::now());
                EpollTimeout::from(u16::try_from(left.as_millis() + 1).unwrap_or(u16::MAX))
            }
            (None, Some(Pause::NoFds)) => EpollTimeout::from(FD_RETRY_MS),
            _ => EpollTimeout::NONE,
        };
        if cfg.idle.is_some() {
            let left = server.next_sweep.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis() + 1).unwrap_or(u16::MAX);
            if timeout == EpollTimeout::NONE || u16::try_from(timeout).is_ok_and(|t| t > ms) {
                timeout = EpollTimeout::from(ms);
            }
        }
        // A suppressed warning count is printed when its second is over (one branch otherwise).
        if status::limited_pending() {
            if let Some(due) = status::flush_limited() {
                let ms = u16::try_from(due.as_millis() + 1).unwrap_or(u16::MAX);
                if timeout == EpollTimeout::NONE || u16::try_from(timeout).is_ok_and(|t| t > ms) {
                    timeout = EpollTimeout::from(ms);
                }
            }
        }
        let n = match server.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(EchoError::sys_nopath("epoll_wait failed", e)),
        };
        if n == 0 && server.pause == Some(Pause::NoFds) {
            server.resume();
        }
        if cfg.idle.is_some() {
            server.now = Instant::now();
        }
        // The listener first: a waiting connect is served before the batch's other work (such
        // as closing a connection whose client has gone), which would otherwise sit between the
        // connect and its accept. At most one accept per batch, so this stays bounded.
        if events[..n].iter().any(|ev| ev.data() == LISTENER) {
            server.accept_batch();
        }
        for ev in &events[..n] {
            match ev.data() {
                LISTENER | OUTPUT => {}
                SIGNALS => {
                    if let Some(sig) = signals.take() {
                        // A second signal while draining ends the drain at once; a signal that
                        // is not a graceful stop skips it.
                        if stopping.is_some() || !sig.graceful() {
                            return Ok(sig);
                        }
                        server.stop();
                        stopping = Some((sig, Instant::now() + super::DRAIN_GRACE));
                    }
                }
                token => server.conn_event((token - FIRST_CONN) as usize),
            }
        }
        // After the batch's events, so a connection whose bytes just arrived is not idle.
        if let Some(idle) = cfg.idle {
            if server.now >= server.next_sweep {
                server.sweep_idle(idle);
            }
        }
        server.free.append(&mut server.freed);
        // One branch when no output is queued; else write what the pipe takes now.
        if out::attention() {
            server.service_output();
        }
        if let Some((sig, end)) = stopping {
            if server.live == 0 || Instant::now() >= end {
                return Ok(sig);
            }
        } else {
            server.ensure_spare();
        }
    }
}

/// `idle_timeout`: how often idle connections are looked for.
fn sweep_every(idle: Duration) -> Duration {
    (idle / 2).max(Duration::from_millis(10))
}

impl<R: Relay<OwnedFd>> Server<'_, R> {
    /// `idle_timeout`: closes every connection whose last event is `idle` or more ago.
    fn sweep_idle(&mut self, idle: Duration) {
        let now = self.now;
        for slot in 0..self.conns.len() {
            let Some(conn) = self.conns[slot].as_ref() else {
                continue;
            };
            if now.saturating_duration_since(conn.last) >= idle {
                self.status.line(format_args!(
                    "Closed idle connection fd = {}",
                    conn.link.sock.as_raw_fd()
                ));
                self.close(slot);
            }
        }
        self.next_sweep = now + sweep_every(idle);
    }

    /// Writes queued output as far as it goes, and polls stdout/stderr for writability only
    /// while something is still queued.
    fn service_output(&mut self) {
        out::flush();
        let epoll = &self.epoll;
        out::poll_changes(|_, fd, want| {
            let _ = if want {
                epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLOUT, OUTPUT))
            } else {
                epoll.delete(fd)
            };
        });
    }

    /// `drain_on_stop`: close the listener, read no more, close every connection with nothing
    /// pending; the others stay polled for output only until they are echoed.
    fn stop(&mut self) {
        self.pause = Some(Pause::Stopped);
        // Closing the fd also takes it out of the epoll set; waiting connects are refused.
        drop(self.listener.take());
        self.spare = None;
        for slot in 0..self.conns.len() {
            let Some(conn) = self.conns[slot].as_mut() else {
                continue;
            };
            conn.link.eof = true;
            if conn.link.relay.pending() == 0 {
                self.close(slot);
                continue;
            }
            let want = desired_interest(conn);
            let mut ev = EpollEvent::new(want, slot as u64 + FIRST_CONN);
            if self.epoll.modify(&conn.link.sock, &mut ev).is_ok() {
                conn.interest = want;
            } else {
                self.close(slot);
            }
        }
    }

    fn set_listening(&mut self, on: bool) {
        let flags = if on {
            EpollFlags::EPOLLIN
        } else {
            EpollFlags::empty()
        };
        let mut ev = EpollEvent::new(flags, LISTENER);
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        if let Err(e) = self.epoll.modify(listener, &mut ev) {
            self.status.warn(format_args!(
                "cannot change listener polling: {}",
                describe(e)
            ));
        }
    }

    fn pause_accepts(&mut self, why: Pause) {
        match self.pause {
            Some(Pause::Stopped) => return,
            None => self.set_listening(false),
            Some(_) => {}
        }
        self.pause = Some(why);
    }

    fn resume(&mut self) {
        if matches!(self.pause, Some(Pause::MaxClients | Pause::NoFds)) {
            self.pause = None;
            self.set_listening(true);
        }
    }

    /// A spare relay for the next accept, made now rather than when a client is waiting.
    fn ensure_spare(&mut self) {
        if self.spare.is_none() && self.pause.is_none() {
            match R::create(self.cfg.buffer) {
                Ok(r) => self.spare = Some(r),
                Err(e) => self.out_of_fds("cannot create a pipe for the next client", e),
            }
        }
    }

    /// A closed connection's relay becomes the spare if it can be reused; otherwise it is dropped.
    fn retire(&mut self, mut relay: R) {
        if self.spare.is_none() && relay.recycle() {
            self.spare = Some(relay);
        }
    }

    fn at_limit(&self) -> bool {
        self.cfg.max_clients.is_some_and(|max| self.live >= max)
    }

    /// At most one connection per listener event (`fair_turns`): after a successful accept the
    /// loop goes back to `epoll_wait`, which, level-triggered, reports the listener again at once
    /// while its backlog is not empty. Probing until EAGAIN instead would cost every sporadic
    /// connection an extra `accept4`, and a storm is interleaved with established clients' events.
    fn accept_batch(&mut self) {
        let Some(listener) = self.listener.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        for _ in 0..ACCEPT_RETRIES {
            if self.at_limit() {
                self.pause_accepts(Pause::MaxClients);
                return;
            }
            if self.spare.is_none() {
                match R::create(self.cfg.buffer) {
                    Ok(r) => self.spare = Some(r),
                    Err(e) => {
                        self.out_of_fds("cannot create a pipe for the next client", e);
                        return;
                    }
                }
            }
            let raw = match accept4(listener, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
                Ok(raw) => raw,
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) | Err(Errno::ECONNABORTED) | Err(Errno::EPROTO) => continue,
                Err(e) => {
                    self.out_of_fds("accept failed", e);
                    return;
                }
            };
            // SAFETY: accept4 just returned this fd, and nothing else owns it.
            let sock = unsafe { OwnedFd::from_raw_fd(raw) };
            self.fd_warned = false;
            self.status.line(format_args!("Accepted socket fd = {raw}"));
            if super::peer_allowed(&sock, &self.cfg.allow_uids, self.status) {
                if let Some(relay) = self.spare.take() {
                    self.register(sock, relay);
                }
            }
            return;
        }
    }

    /// EMFILE, ENFILE and other accept failures: pause instead of spinning (`emfile_pauses_accept`);
    /// warned once per episode, and rate-limited across episodes (`warnings_rate_limited`).
    fn out_of_fds(&mut self, what: &str, e: Errno) {
        super::warn_accept_failed(self.status, &mut self.fd_warned, what, e);
        self.pause_accepts(Pause::NoFds);
    }

    fn register(&mut self, sock: OwnedFd, relay: R) {
        let mut conn = Conn {
            link: Link::new(sock, relay),
            interest: EpollFlags::empty(),
            last: self.now,
        };
        // Read-after-accept, before the socket is polled: a client that connects and writes has
        // usually queued its first bytes already, so serve it now instead of after another
        // `epoll_wait` round (nothing there costs one recv, EAGAIN); a client that is already
        // done (EOF, echo sent; or an error) is closed without ever entering the epoll set.
        if !conn.link.serve_turns(&mut self.tap).unwrap_or_default() {
            self.retire(conn.link.relay);
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let interest = desired_interest(&conn);
        let ev = EpollEvent::new(interest, slot as u64 + FIRST_CONN);
        if let Err(e) = self.epoll.add(&conn.link.sock, ev) {
            self.status.warn(format_args!(
                "cannot poll socket fd {}: {}; closing it",
                conn.link.sock.as_raw_fd(),
                describe(e)
            ));
            self.free.push(slot);
            return;
        }
        conn.interest = interest;
        self.conns[slot] = Some(conn);
        self.live += 1;
    }

    fn conn_event(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        if self.cfg.idle.is_some() {
            conn.last = self.now;
        }
        // An error (ECONNRESET, EPIPE) means the client is gone: close.
        let keep = conn.link.serve_turns(&mut self.tap).unwrap_or_default();
        if keep {
            let want = desired_interest(conn);
            if want != conn.interest {
                let mut ev = EpollEvent::new(want, slot as u64 + FIRST_CONN);
                if self.epoll.modify(&conn.link.sock, &mut ev).is_ok() {
                    conn.interest = want;
                    return;
                }
            } else {
                return;
            }
        }
        self.close(slot);
    }

    fn close(&mut self, slot: usize) {
        if let Some(conn) = self.conns[slot].take() {
            // The relay goes first (closed, or kept as the spare), then the socket: closing its
            // fd also removes it from the epoll set (no duplicates exist).
            let Link { relay, sock, .. } = conn.link;
            self.retire(relay);
            drop(sock);
            self.live -= 1;
            self.freed.push(slot);
            self.resume();
        }
    }
}

/// What a connection should be polled for (`backpressure`, `partial_writes`: [`Link::wants`]).
fn desired_interest<R: Relay<OwnedFd>>(conn: &Conn<R>) -> EpollFlags {
    let want = conn.link.wants();
    let mut flags = EpollFlags::empty();
    if want.read {
        flags |= EpollFlags::EPOLLIN;
    }
    if want.write {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}
