//! One socket interface, two worlds.
//!
//! The echo relay and the event loop's per-connection work ([`crate::echo::link`]) are written over
//! [`Stream`]: the kernel implements it on [`OwnedFd`] (a real non-blocking descriptor, every method
//! one system call, inlined: no boxing, no dispatch), the simulated world on
//! [`crate::sim::SimStream`] (every method one call on the model, recorded in the run's trace).
//! [`Net`] and [`Listener`] make sockets in either world, so application code generic over them
//! runs unchanged on both.
//!
//! Every socket is non-blocking: a call that cannot go on now fails with `EAGAIN`, and
//! [`Stream::poll`] says what could.

use nix::errno::Errno;
use nix::sys::socket::{
    accept4, bind, connect, listen, recv, send, shutdown, socket, AddressFamily, Backlog, MsgFlags,
    SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Readiness of a socket, as `poll(2)` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// POLLIN: a read would not fail with EAGAIN (data, EOF, or an error to report).
    pub read: bool,
    /// POLLOUT: a write would take bytes.
    pub write: bool,
    /// POLLHUP: both directions are shut.
    pub hup: bool,
    /// POLLERR: an error is pending.
    pub err: bool,
}

impl Ready {
    /// From `poll(2)` bits (`POLLIN` = 1, `POLLOUT` = 4, `POLLERR` = 8, `POLLHUP` = 16).
    pub fn from_bits(bits: u32) -> Ready {
        Ready {
            read: bits & 1 != 0,
            write: bits & 4 != 0,
            err: bits & 8 != 0,
            hup: bits & 16 != 0,
        }
    }
}

/// Which direction `shutdown` closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shut {
    Read,
    Write,
    Both,
}

/// A connected stream socket, non-blocking. Dropping it closes it.
pub trait Stream {
    /// `recv(fd, buf, MSG_DONTWAIT)`: `Ok(0)` is end of stream.
    fn recv(&self, buf: &mut [u8]) -> Result<usize, Errno>;
    /// `send(fd, buf, MSG_DONTWAIT | MSG_NOSIGNAL)`: may take fewer bytes than given.
    fn send(&self, buf: &[u8]) -> Result<usize, Errno>;
    /// `shutdown(fd, how)`.
    fn shutdown(&self, how: Shut) -> Result<(), Errno>;
    /// `poll(fd)` with no timeout.
    fn poll(&self) -> Result<Ready, Errno>;
}

/// A listening socket, non-blocking. Dropping it closes it.
pub trait Listener {
    type Stream: Stream;
    /// `accept4(fd, SOCK_NONBLOCK | SOCK_CLOEXEC)`: `EAGAIN` when no connection waits.
    fn accept(&self) -> Result<Self::Stream, Errno>;
    /// `poll(fd)`: `read` when a connection waits.
    fn poll(&self) -> Result<Ready, Errno>;
}

/// A world that makes sockets: the kernel ([`Os`]) or the simulation ([`crate::sim::SimNet`]).
pub trait Net {
    type Stream: Stream;
    type Listener: Listener<Stream = Self::Stream>;
    /// `socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK)`, `bind(path)`, `listen(backlog)`.
    fn listen(&self, path: &Path, backlog: i32) -> Result<Self::Listener, Errno>;
    /// `socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK)`, `connect(path)`: `EAGAIN` when the
    /// listener's backlog is full (the socket is closed again).
    fn connect(&self, path: &Path) -> Result<Self::Stream, Errno>;
}

/// The kernel: real sockets, paths relative to the process's working directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct Os;

/// A listening kernel socket.
#[derive(Debug)]
pub struct OsListener(pub OwnedFd);

fn stream_socket() -> Result<OwnedFd, Errno> {
    socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
}

impl Net for Os {
    type Stream = OwnedFd;
    type Listener = OsListener;

    fn listen(&self, path: &Path, backlog: i32) -> Result<OsListener, Errno> {
        let fd = stream_socket()?;
        let addr = UnixAddr::new(path)?;
        bind(fd.as_raw_fd(), &addr)?;
        listen(&fd, Backlog::new(backlog)?)?;
        Ok(OsListener(fd))
    }

    fn connect(&self, path: &Path) -> Result<OwnedFd, Errno> {
        let fd = stream_socket()?;
        let addr = UnixAddr::new(path)?;
        connect(fd.as_raw_fd(), &addr)?;
        Ok(fd)
    }
}

fn poll_fd(fd: &OwnedFd) -> Result<Ready, Errno> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(
        fd.as_fd(),
        PollFlags::POLLIN | PollFlags::POLLOUT,
    )];
    poll(&mut fds, PollTimeout::ZERO)?;
    let bits = fds[0].revents().map_or(0, |r| r.bits() as u32);
    Ok(Ready::from_bits(bits))
}

impl Stream for OwnedFd {
    #[inline]
    fn recv(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        recv(self.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)
    }

    #[inline]
    fn send(&self, buf: &[u8]) -> Result<usize, Errno> {
        send(
            self.as_raw_fd(),
            buf,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        )
    }

    fn shutdown(&self, how: Shut) -> Result<(), Errno> {
        use nix::sys::socket::Shutdown;
        let how = match how {
            Shut::Read => Shutdown::Read,
            Shut::Write => Shutdown::Write,
            Shut::Both => Shutdown::Both,
        };
        shutdown(self.as_raw_fd(), how)
    }

    fn poll(&self) -> Result<Ready, Errno> {
        poll_fd(self)
    }
}

impl Listener for OsListener {
    type Stream = OwnedFd;

    fn accept(&self) -> Result<OwnedFd, Errno> {
        let raw = accept4(
            self.0.as_raw_fd(),
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )?;
        // SAFETY: accept4 just returned this descriptor and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    fn poll(&self) -> Result<Ready, Errno> {
        poll_fd(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel world: connect, accept, send, recv, half-close, EOF, over real sockets.
    #[test]
    fn the_kernel_world_echoes_over_real_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = Os.listen(&path, 1).unwrap();
        assert_eq!(l.accept().unwrap_err(), Errno::EAGAIN);
        let c = Os.connect(&path).unwrap();
        assert!(l.poll().unwrap().read);
        let a = l.accept().unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(a.recv(&mut buf), Err(Errno::EAGAIN));
        assert_eq!(c.send(b"hi").unwrap(), 2);
        assert!(a.poll().unwrap().read);
        assert_eq!(a.recv(&mut buf).unwrap(), 2);
        c.shutdown(Shut::Write).unwrap();
        assert_eq!(a.recv(&mut buf).unwrap(), 0);
        drop(a);
        assert_eq!(c.send(b"x"), Err(Errno::EPIPE));
    }
}
