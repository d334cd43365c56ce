//! Signals as readable events: every asynchronous signal whose default action would kill the
//! server is blocked and read from a signalfd, so both engines see it in the same poll/epoll set
//! as their sockets and the socket file is always removed (`fatal_signals_clean_up`).
//!
//! - SIGINT, SIGTERM and SIGHUP (a closed terminal is a normal way to stop) stop the server
//!   gracefully: it drains (see [`super::DRAIN_GRACE`]), removes its socket and exits 0.
//! - The other catchable fatal signals (SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF,
//!   SIGXCPU, SIGXFSZ, SIGIO, SIGPWR, SIGSTKFLT and the real-time signals) stop it at once: its
//!   clients are closed, its socket removed, and then it dies of the same signal
//!   ([`Caught::reraise`]), so its parent sees what killed it.
//! - SIGPIPE is ignored (sockets also use MSG_NOSIGNAL; splice(2) into a socket has no such
//!   flag). SIGKILL and SIGSTOP cannot be caught; the synchronous fault signals (SIGSEGV, …) are
//!   left alone.

use super::error::EchoError;
use nix::libc;
use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};

/// Signals that stop the server gracefully.
const GRACEFUL: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
/// Other asynchronous signals whose default action terminates the process (plus the real-time
/// signals, added in [`fatal_set`]).
const FATAL: [libc::c_int; 11] = [
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGIO,
    libc::SIGPWR,
    libc::SIGSTKFLT,
];

/// A signal that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caught {
    signo: libc::c_int,
}

impl Caught {
    /// SIGINT, SIGTERM or SIGHUP: drain, clean up, exit 0.
    pub fn graceful(self) -> bool {
        GRACEFUL.contains(&self.signo)
    }

    /// After the clean-up, dies of a non-graceful signal: default action, unblocked, raised again.
    /// Returns only for a graceful signal (or if the signal could not kill the process).
    pub fn reraise(self) {
        if self.graceful() {
            return;
        }
        // SAFETY: plain libc calls on a signal number the kernel delivered; SIG_DFL installs no
        // Rust handler.
        unsafe {
            libc::signal(self.signo, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, self.signo);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(self.signo);
        }
    }
}

impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Signal::try_from(self.signo) {
            Ok(sig) => f.write_str(sig.as_str()),
            Err(_) => {
                let min = libc::SIGRTMIN();
                if self.signo >= min {
                    write!(f, "SIGRTMIN+{}", self.signo - min)
                } else {
                    write!(f, "signal {}", self.signo)
                }
            }
        }
    }
}

/// Every signal the server catches.
fn fatal_set() -> SigSet {
    // SAFETY: sigemptyset/sigaddset only write the local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signo in GRACEFUL.iter().chain(FATAL.iter()) {
            libc::sigaddset(&mut set, *signo);
        }
        for signo in libc::SIGRTMIN()..=libc::SIGRTMAX() {
            libc::sigaddset(&mut set, signo);
        }
        SigSet::from_sigset_t_unchecked(set)
    }
}

/// The caught signals, readable through a non-blocking signalfd.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the caught signals for this thread (threads started later inherit the mask) and
    /// opens the signalfd; ignores SIGPIPE.
    pub fn install() -> Result<Self, EchoError> {
        // SAFETY: setting SIG_IGN installs no Rust handler; nothing can race with it.
        unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }
            .map_err(|e| EchoError::sys_nopath("cannot ignore SIGPIPE", e))?;
        let mask = fatal_set();
        mask.thread_block()
            .map_err(|e| EchoError::sys_nopath("cannot block the termination signals", e))?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| EchoError::sys_nopath("cannot open a signalfd", e))?;
        Ok(Signals { fd })
    }

    /// The signal that arrived, if any.
    pub fn take(&self) -> Option<Caught> {
        match self.fd.read_signal() {
            Ok(Some(info)) => Some(Caught {
                signo: info.ssi_signo as libc::c_int,
            }),
            _ => None,
        }
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
