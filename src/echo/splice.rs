//! The zero-copy engine: per connection a pipe; splice(2) moves client bytes socket → pipe and
//! pipe → socket, so echoed bytes never cross into user space.
//!
//! Backpressure is the same as the read/write engine's: at most `bound` bytes in the pipe
//! (`pending`), and no reading from the client while they wait. One subtlety: a pipe holds a
//! fixed number of buffers (pages), and a short splice still takes a whole one, so the pipe can be
//! "full" with fewer than `bound` bytes in it. splice then says EAGAIN even though the socket has
//! data; the relay marks itself `stalled` and stops asking to read until a drain frees buffers,
//! which keeps a level-triggered epoll from spinning on a readable socket.

use super::relay::{Drain, Fill, Relay};
use super::tap::Tap;
use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::unistd::pipe2;
use std::os::fd::{BorrowedFd, OwnedFd};

/// Default pipe capacity on Linux; other bounds are set with F_SETPIPE_SZ.
const DEFAULT_PIPE: usize = 65536;

/// A pipe used as a connection's echo buffer.
#[derive(Debug)]
pub struct SpliceRelay {
    read_end: OwnedFd,
    write_end: OwnedFd,
    bound: usize,
    in_pipe: usize,
    stalled: bool,
}

impl Relay for SpliceRelay {
    const ENGINE: &'static str = "splice";

    fn create(bound: usize) -> Result<Self, Errno> {
        let (read_end, write_end) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let mut bound = bound;
        if bound != DEFAULT_PIPE {
            let want = i32::try_from(bound).unwrap_or(i32::MAX);
            match fcntl(&write_end, FcntlArg::F_SETPIPE_SZ(want)) {
                // The kernel rounds up to a power-of-two number of pages; keep our bound.
                Ok(_) => {}
                // Over /proc/sys/fs/pipe-max-size for an unprivileged user: keep the default
                // capacity and bound by it.
                Err(_) => bound = bound.min(DEFAULT_PIPE),
            }
        }
        Ok(SpliceRelay {
            read_end,
            write_end,
            bound,
            in_pipe: 0,
            stalled: false,
        })
    }

    fn pending(&self) -> usize {
        self.in_pipe
    }

    fn wants_read(&self) -> bool {
        self.in_pipe < self.bound && !self.stalled
    }

    fn fill(&mut self, sock: BorrowedFd<'_>, _tap: &mut Tap) -> Result<Fill, Errno> {
        let room = self.bound - self.in_pipe;
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        match splice(sock, None, &self.write_end, None, room, flags) {
            Ok(0) => Ok(Fill::Eof),
            Ok(n) => {
                self.in_pipe += n;
                Ok(Fill::Got { n, short: n < room })
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {
                // Either the socket is empty or the pipe's buffers are all taken; with bytes in
                // the pipe we cannot tell, so wait for a drain before reading again.
                if self.in_pipe > 0 {
                    self.stalled = true;
                }
                Ok(Fill::WouldBlock)
            }
            Err(e) => Err(e),
        }
    }

    fn drain(&mut self, sock: BorrowedFd<'_>) -> Result<Drain, Errno> {
        if self.in_pipe == 0 {
            return Ok(Drain::Sent(0));
        }
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        match splice(&self.read_end, None, sock, None, self.in_pipe, flags) {
            Ok(n) => {
                self.in_pipe -= n;
                if n > 0 {
                    self.stalled = false;
                }
                Ok(Drain::Sent(n))
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(Drain::WouldBlock),
            Err(e) => Err(e),
        }
    }
}
