//! `--iterative`: the seed's synchronous server, one client at a time, in order.
//!
//! Accept one client, echo until it half-closes, close it, accept the next. The sockets are
//! non-blocking only so that a wait can also watch the signalfd: each wait is a poll(2) on the
//! one socket in use plus the signals, which is the seed's blocking call with a way out.
//!
//! `drain_on_stop`: a signal that arrives while part of a read is still to be sent back lets the
//! server finish sending it, for at most [`super::DRAIN_GRACE`], before it stops.

use super::error::{describe, EchoError};
use super::out;
use super::signals::{Caught, Signals};
use super::status::{self, Repeated, Status};
use super::tap::Tap;
use super::Config;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{accept4, recv, send, MsgFlags, SockFlag};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

/// What a wait ended with.
enum Woke {
    Ready,
    Signal(Caught),
    Timeout,
}

/// Waits until `fd` has `flags` or a termination signal arrives (or `timeout` passes).
fn wait(
    fd: &impl AsFd,
    flags: PollFlags,
    signals: &Signals,
    timeout: PollTimeout,
) -> Result<Woke, Errno> {
    // The caller's deadline; poll may wake earlier for queued output or a warning count.
    let until = u32::try_from(i32::from(timeout))
        .ok()
        .map(|ms| Instant::now() + std::time::Duration::from_millis(u64::from(ms)));
    loop {
        // A suppressed warning count is due (`warnings_rate_limited`).
        let mut timeout = match until {
            Some(t) => PollTimeout::try_from(t.saturating_duration_since(Instant::now()))
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        if status::limited_pending() {
            if let Some(due) = status::flush_limited() {
                let due = PollTimeout::try_from(due).unwrap_or(PollTimeout::MAX);
                if timeout == PollTimeout::NONE || due < timeout {
                    timeout = due;
                }
            }
        }
        // Queued output (`output_never_blocks`): written when its descriptor can take it.
        if out::attention() {
            out::flush();
            out::poll_changes(|_, _, _| {});
        }
        let extra = if out::attention() {
            out::queued_fds()
        } else {
            Vec::new()
        };
        // Unused slots: the signalfd again, polled for nothing.
        let slot = |i: usize| match extra.get(i) {
            Some(&o) => PollFd::new(o, PollFlags::POLLOUT),
            None => PollFd::new(signals.as_fd(), PollFlags::empty()),
        };
        let mut fds = [
            PollFd::new(fd.as_fd(), flags),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            slot(0),
            slot(1),
        ];
        let used = 2 + extra.len().min(2);
        match poll(&mut fds[..used], timeout) {
            Ok(0) if until.is_some_and(|t| Instant::now() >= t) => return Ok(Woke::Timeout),
            Ok(0) => continue,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
        if fds[1].any().unwrap_or(false) {
            if let Some(sig) = signals.take() {
                return Ok(Woke::Signal(sig));
            }
        }
        if fds[0].any().unwrap_or(false) {
            return Ok(Woke::Ready);
        }
    }
}

/// Serves clients one at a time until SIGINT/SIGTERM; returns the signal.
pub fn run(
    listener: OwnedFd,
    signals: &Signals,
    cfg: &Config,
    status: Status,
) -> Result<Caught, EchoError> {
    let mut tap = Tap::new(cfg.print, status);
    let mut buf = vec![0u8; cfg.buffer];
    let poll_err = |e| EchoError::sys_nopath("poll failed", e);
    // An accept failure was reported and no accept has succeeded since (warn once).
    let mut warned = false;
    loop {
        status.line(format_args!("Waiting to accept a connection..."));
        let raw = loop {
            if let Woke::Signal(sig) =
                wait(&listener, PollFlags::POLLIN, signals, PollTimeout::NONE).map_err(poll_err)?
            {
                return Ok(sig);
            }
            match accept4(
                listener.as_raw_fd(),
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            ) {
                Ok(raw) => break raw,
                Err(Errno::EAGAIN) | Err(Errno::EINTR) | Err(Errno::ECONNABORTED) => {}
                Err(e) => {
                    // EMFILE and friends: wait a second (watching the signals), then retry.
                    if !warned {
                        warned = true;
                        status.warn_repeated(
                            Repeated::AcceptFailed,
                            format_args!("accept failed: {}; retrying every second", describe(e)),
                        );
                    }
                    if let Woke::Signal(sig) = wait(
                        signals,
                        PollFlags::POLLIN,
                        signals,
                        PollTimeout::from(1000u16),
                    )
                    .map_err(poll_err)?
                    {
                        return Ok(sig);
                    }
                }
            }
        };
        // SAFETY: accept4 just returned this fd, and nothing else owns it.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        warned = false;
        status.line(format_args!("Accepted socket fd = {raw}"));
        if !super::peer_allowed(&sock, &cfg.allow_uids, status) {
            continue;
        }
        if let Some(sig) =
            echo_one(&sock, &mut buf, signals, &mut tap, cfg.idle).map_err(poll_err)?
        {
            return Ok(sig);
        }
    }
}

/// Echoes one client until it half-closes (or fails). Returns a signal if one interrupted.
fn echo_one(
    sock: &OwnedFd,
    buf: &mut [u8],
    signals: &Signals,
    tap: &mut Tap,
    idle: Option<std::time::Duration>,
) -> Result<Option<Caught>, Errno> {
    // `--idle-timeout`: a wait that long with no byte moved closes the client.
    let idle_wait = idle.map_or(PollTimeout::NONE, |d| {
        PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX)
    });
    loop {
        let n = match recv(sock.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {
                match wait(sock, PollFlags::POLLIN, signals, idle_wait)? {
                    Woke::Signal(sig) => return Ok(Some(sig)),
                    Woke::Timeout => return Ok(None),
                    Woke::Ready => continue,
                }
            }
            Err(_) => return Ok(None), // ECONNRESET: the client is gone.
        };
        tap.copy(&buf[..n]);
        let mut sent = 0;
        // Set by a signal: send the rest of this read until then (`drain_on_stop`).
        let mut stopping: Option<(Caught, Instant)> = None;
        while sent < n {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            match send(sock.as_raw_fd(), &buf[sent..n], flags) {
                Ok(k) => sent += k,
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {
                    let timeout = match stopping {
                        None => idle_wait,
                        Some((_, end)) => {
                            let left = end.saturating_duration_since(Instant::now());
                            PollTimeout::from(
                                u16::try_from(left.as_millis() + 1).unwrap_or(u16::MAX),
                            )
                        }
                    };
                    match (wait(sock, PollFlags::POLLOUT, signals, timeout)?, stopping) {
                        (Woke::Ready, _) => {}
                        (Woke::Signal(sig), None) if sig.graceful() => {
                            stopping = Some((sig, Instant::now() + super::DRAIN_GRACE));
                        }
                        // A second signal, a fatal one, or the grace is over.
                        (Woke::Signal(sig), _) | (Woke::Timeout, Some((sig, _))) => {
                            return Ok(Some(sig))
                        }
                        // Idle: the client has not read its echo for the whole timeout.
                        (Woke::Timeout, None) => return Ok(None),
                    }
                }
                Err(_) => return Ok(None), // EPIPE, ECONNRESET: the client is gone.
            }
        }
        if let Some((sig, _)) = stopping {
            return Ok(Some(sig));
        }
    }
}
