//! The zero-copy engine: per connection a pipe; splice(2) moves client bytes socket → pipe and
//! pipe → socket, so large echoed transfers never cross into user space (small messages are
//! copied, see "hybrid" below).
//!
//! Backpressure is the same as the read/write engine's: at most `bound` bytes in the pipe
//! (`pending`), and no reading from the client while they wait. One subtlety: a pipe holds a
//! fixed number of buffers (pages), and a short splice still takes a whole one, so the pipe can be
//! "full" with fewer than `bound` bytes in it. splice then says EAGAIN even though the socket has
//! data; the relay marks itself `stalled` and stops asking to read until a drain frees buffers,
//! which keeps a level-triggered epoll from spinning on a readable socket.
//!
//! Small messages (hybrid): splice moves a socket's queue one message (skb) per pipe buffer, and
//! for messages of a few KiB or less two splices cost more than copying through user space. So
//! the relay copies with `recv`/`send` through a buffer while reads are small, and splices once a
//! read shows a large transfer (at least `SPLICE_MIN` bytes). A splice that stops short while the
//! socket still has bytes queued (`FIONREAD`) ran out of pipe buffers: the messages are small, so
//! the relay copies for the next `SMALL_BACKOFF` reads before it tries splicing again. The mode
//! only changes when nothing is pending, so bytes go back in the order they came: at any time
//! they sit either in the buffer or in the pipe, never in both. Large transfers stay zero-copy.

use super::relay::{BufferRelay, Drain, Fill, Relay, RelayCore};
use super::tap::Tap;
use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::unistd::pipe2;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Default pipe capacity on Linux; other bounds are set with F_SETPIPE_SZ.
const DEFAULT_PIPE: usize = 65536;
/// The read size from which splicing pays (measured here: from 16 KiB messages up).
const SPLICE_MIN: usize = 16 * 1024;
/// A splice this long used pipe buffers of 2 KiB or more on average: large messages, no check.
const SPLICE_SURE: usize = 32 * 1024;
/// Copy reads after a splice showed small messages, before splicing is tried again; also how
/// many splices in between `SPLICE_MIN` and `SPLICE_SURE` pass unchecked after a check found
/// large messages.
const SMALL_BACKOFF: u32 = 16;
/// The copy path's bound at most (it is `bound` bytes when the bound is smaller).
const COPY_MAX: usize = 64 * 1024;

/// A pipe used as a connection's echo buffer.
#[derive(Debug)]
pub struct SpliceRelay {
    read_end: OwnedFd,
    write_end: OwnedFd,
    bound: usize,
    in_pipe: usize,
    stalled: bool,
    /// The copy path for small messages (the read/write engine's relay, at most `COPY_MAX`
    /// bytes); it holds pending bytes only while the pipe is empty.
    copy: BufferRelay,
    /// The last read showed a large transfer: the next read (from empty) splices.
    large: bool,
    /// Copy reads left before splicing may be tried again (`SMALL_BACKOFF`).
    backoff: u32,
    /// Splices of middling length left before the next `FIONREAD` check (`SMALL_BACKOFF`).
    trusted: u32,
}

impl RelayCore for SpliceRelay {
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
            copy: <BufferRelay as RelayCore>::create(bound.min(COPY_MAX))?,
            large: false,
            backoff: 0,
            trusted: 0,
        })
    }

    fn pending(&self) -> usize {
        self.in_pipe + self.copy.pending()
    }

    fn wants_read(&self) -> bool {
        if self.copy.pending() > 0 {
            self.copy.wants_read()
        } else {
            self.in_pipe < self.bound && !self.stalled
        }
    }

    fn recycle(&mut self) -> bool {
        // An empty pipe (and the copy buffer) serve the next client as they are; bytes left in
        // the pipe would be echoed to the wrong client, so such a relay is closed instead.
        if self.in_pipe != 0 || !self.copy.recycle() {
            return false;
        }
        self.stalled = false;
        self.large = false;
        self.backoff = 0;
        self.trusted = 0;
        true
    }
}

impl Relay<OwnedFd> for SpliceRelay {
    fn fill(&mut self, sock: &OwnedFd, tap: &mut Tap) -> Result<Fill, Errno> {
        if self.copy.pending() > 0 || (self.in_pipe == 0 && !self.large) {
            self.fill_copy(sock, tap)
        } else {
            self.fill_splice(sock.as_fd())
        }
    }

    fn drain(&mut self, sock: &OwnedFd) -> Result<Drain, Errno> {
        if self.copy.pending() > 0 {
            return self.copy.drain(sock);
        }
        if self.in_pipe == 0 {
            return Ok(Drain::Sent(0));
        }
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        match splice(
            &self.read_end,
            None,
            sock.as_fd(),
            None,
            self.in_pipe,
            flags,
        ) {
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

impl SpliceRelay {
    /// socket → pipe (zero-copy).
    fn fill_splice(&mut self, sock: BorrowedFd<'_>) -> Result<Fill, Errno> {
        let room = self.bound - self.in_pipe;
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        match splice(sock, None, &self.write_end, None, room, flags) {
            Ok(0) => Ok(Fill::Eof),
            Ok(n) => {
                self.in_pipe += n;
                self.large = if n >= SPLICE_SURE || n == room {
                    true
                } else if n >= SPLICE_MIN && self.trusted > 0 {
                    self.trusted -= 1;
                    true
                } else if queued(sock) > 0 {
                    // Stopped short with bytes still queued: out of pipe buffers, small messages.
                    self.backoff = SMALL_BACKOFF;
                    false
                } else if n >= SPLICE_MIN {
                    self.trusted = SMALL_BACKOFF;
                    true
                } else {
                    false
                };
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

    /// socket → copy buffer (small reads).
    fn fill_copy(&mut self, sock: &OwnedFd, tap: &mut Tap) -> Result<Fill, Errno> {
        let r = self.copy.fill(sock, tap)?;
        if let Fill::Got { n, .. } = r {
            if self.backoff > 0 {
                self.backoff -= 1;
                self.large = false;
            } else {
                self.large = n >= SPLICE_MIN;
            }
        }
        Ok(r)
    }
}

/// Bytes queued on a socket for reading (FIONREAD); 0 if it cannot be told.
fn queued(sock: BorrowedFd<'_>) -> usize {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer.
    let rc = unsafe { nix::libc::ioctl(sock.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    if rc == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::status::Status;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// The hybrid switches between copying and splicing as message sizes change, and every byte
    /// comes back once, in order, with `pending <= bound` throughout.
    #[test]
    fn hybrid_switches_modes_and_stays_exact() {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.set_nonblocking(true).unwrap();
        server.set_nonblocking(true).unwrap();
        let server = OwnedFd::from(server);
        let bound = 64 * 1024;
        let mut relay = SpliceRelay::create(bound).unwrap();
        let mut tap = Tap::new(false, Status::new(true));
        let sizes = [64, 1000, 60_000, 70_000, 10, 1024, 16_384, 200_000, 64, 3];
        let mut data = Vec::new();
        let mut echoed = Vec::new();
        let mut buf = vec![0u8; 8192];
        let (mut copied, mut spliced) = (0, 0);
        for (i, &len) in sizes.iter().enumerate() {
            let msg: Vec<u8> = (0..len).map(|j| ((i * 7 + j) % 251) as u8).collect();
            data.extend_from_slice(&msg);
            let mut sent = 0;
            loop {
                let mut progress = false;
                if sent < msg.len() {
                    if let Ok(n) = client.write(&msg[sent..]) {
                        sent += n;
                        progress |= n > 0;
                    }
                }
                while relay.wants_read() {
                    let was_copying =
                        relay.in_pipe == 0 && (relay.copy.pending() > 0 || !relay.large);
                    match relay.fill(&server, &mut tap).unwrap() {
                        Fill::Got { n, .. } => {
                            if was_copying {
                                copied += n;
                            } else {
                                spliced += n;
                            }
                            progress = true;
                        }
                        Fill::Eof | Fill::WouldBlock => break,
                    }
                    assert!(
                        relay.in_pipe == 0 || relay.copy.pending() == 0,
                        "bytes in both"
                    );
                }
                assert!(relay.pending() <= bound);
                if let Drain::Sent(n) = relay.drain(&server).unwrap() {
                    progress |= n > 0;
                }
                match client.read(&mut buf) {
                    Ok(n) => {
                        echoed.extend_from_slice(&buf[..n]);
                        progress |= n > 0;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
                if !progress {
                    assert_eq!(echoed.len(), data.len(), "stuck with bytes unechoed");
                    assert_eq!(sent, msg.len(), "stuck with bytes unsent");
                    break;
                }
            }
        }
        assert_eq!(echoed, data);
        assert!(
            copied > 0 && spliced > 0,
            "copied {copied}, spliced {spliced}"
        );
    }
}
