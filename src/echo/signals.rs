//! SIGINT/SIGTERM as readable events: the signals are blocked and read from a signalfd, so both
//! engines see them in the same poll/epoll set as their sockets. SIGPIPE is ignored (sockets also
//! use MSG_NOSIGNAL; splice(2) into a socket has no such flag).

use super::error::EchoError;
use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsFd, BorrowedFd};

/// The termination signals, readable through a non-blocking signalfd.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks SIGINT and SIGTERM for this (single) thread and opens the signalfd; ignores SIGPIPE.
    pub fn install() -> Result<Self, EchoError> {
        // SAFETY: setting SIG_IGN installs no Rust handler; nothing can race with it.
        unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }
            .map_err(|e| EchoError::sys_nopath("cannot ignore SIGPIPE", e))?;
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block()
            .map_err(|e| EchoError::sys_nopath("cannot block SIGINT/SIGTERM", e))?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| EchoError::sys_nopath("cannot open a signalfd", e))?;
        Ok(Signals { fd })
    }

    /// The termination signal that arrived, if any.
    pub fn take(&self) -> Option<Signal> {
        match self.fd.read_signal() {
            Ok(Some(info)) => Signal::try_from(info.ssi_signo as i32).ok(),
            _ => None,
        }
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
