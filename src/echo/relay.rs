//! A connection's echo path: bytes received from the client wait here until they are sent back.
//!
//! Invariant (`bytes_in = bytes_out + pending`): every byte a relay takes in is either sent back
//! or still pending, and `pending <= bound` (the per-connection buffer bound, backpressure).

use super::tap::Tap;
use crate::net::Stream;
use nix::errno::Errno;

/// The outcome of taking bytes in from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// `n` bytes were taken in; `short` when fewer than asked for, which for a stream socket
    /// means its queue was (momentarily) empty, so another read now would only say EAGAIN.
    Got { n: usize, short: bool },
    /// The client half-closed (or closed) its side.
    Eof,
    /// Nothing to take now.
    WouldBlock,
}

/// The outcome of sending pending bytes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// This many bytes went back (possibly fewer than pending: a partial write).
    Sent(usize),
    /// The client's receive queue is full.
    WouldBlock,
}

/// What every relay is, whatever socket it serves: a bounded buffer of pending bytes.
pub trait RelayCore: Sized {
    /// A human name for the engine, for status lines.
    const ENGINE: &'static str;
    /// A fresh relay bounded to `bound` bytes; may fail (EMFILE for a pipe).
    fn create(bound: usize) -> Result<Self, Errno>;
    /// Bytes taken in and not yet sent back.
    fn pending(&self) -> usize;
    /// Whether reading from the client now is allowed (room below the bound, not stalled).
    fn wants_read(&self) -> bool;
    /// Makes the relay of a closed connection ready for the next one (saving `create`'s work:
    /// a pipe, a buffer); false if it cannot be reused (bytes still pending).
    fn recycle(&mut self) -> bool;
}

/// A bounded echo path between a client socket `S` and itself. [`BufferRelay`] works over any
/// [`Stream`] (a kernel descriptor or a simulated socket); the splice relay over kernel
/// descriptors only.
pub trait Relay<S: ?Sized>: RelayCore {
    /// Takes bytes in from the client socket; `tap` sees them when the engine supports `--print`.
    fn fill(&mut self, sock: &S, tap: &mut Tap) -> Result<Fill, Errno>;
    /// Sends pending bytes back to the client socket.
    fn drain(&mut self, sock: &S) -> Result<Drain, Errno>;
}

/// The read/write engine: a user-space buffer of `bound` bytes, allocated on first use.
#[derive(Debug)]
pub struct BufferRelay {
    buf: Vec<u8>,
    bound: usize,
    /// Next byte to send back.
    head: usize,
    /// One past the last byte received.
    tail: usize,
}

impl RelayCore for BufferRelay {
    const ENGINE: &'static str = "read/write";

    fn create(bound: usize) -> Result<Self, Errno> {
        Ok(BufferRelay {
            buf: Vec::new(),
            bound,
            head: 0,
            tail: 0,
        })
    }

    fn pending(&self) -> usize {
        self.tail - self.head
    }

    fn wants_read(&self) -> bool {
        self.pending() < self.bound
    }

    fn recycle(&mut self) -> bool {
        // The buffer is kept (no new allocation and zeroing for the next client).
        self.head == self.tail
    }
}

impl<S: Stream + ?Sized> Relay<S> for BufferRelay {
    #[inline]
    fn fill(&mut self, sock: &S, tap: &mut Tap) -> Result<Fill, Errno> {
        if self.buf.is_empty() {
            self.buf = vec![0; self.bound];
        }
        if self.tail == self.bound {
            // Room exists only before `head`: move the pending bytes to the front.
            self.buf.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
        debug_assert!(self.tail < self.bound);
        let asked = self.bound - self.tail;
        match sock.recv(&mut self.buf[self.tail..]) {
            Ok(0) => Ok(Fill::Eof),
            Ok(n) => {
                tap.copy(&self.buf[self.tail..self.tail + n]);
                self.tail += n;
                Ok(Fill::Got {
                    n,
                    short: n < asked,
                })
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(Fill::WouldBlock),
            Err(e) => Err(e),
        }
    }

    #[inline]
    fn drain(&mut self, sock: &S) -> Result<Drain, Errno> {
        if self.head == self.tail {
            return Ok(Drain::Sent(0));
        }
        match sock.send(&self.buf[self.head..self.tail]) {
            Ok(n) => {
                self.head += n;
                if self.head == self.tail {
                    self.head = 0;
                    self.tail = 0;
                }
                Ok(Drain::Sent(n))
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(Drain::WouldBlock),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::splice::SpliceRelay;
    use crate::echo::status::Status;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    /// `backpressure`: a relay takes at most `bound` bytes, then stops asking to read; after the
    /// peer reads the echo, every byte comes back in order (`bytes_in = bytes_out + pending`).
    fn bounded_and_exact<R: Relay<OwnedFd>>() {
        let bound = 16 * 1024;
        let mut relay = R::create(bound).unwrap();
        echo_through(&mut relay, bound, 0);
        // Recycled for a second client: an emptied relay serves it from a clean state.
        assert!(relay.recycle(), "an empty relay can be recycled");
        echo_through(&mut relay, bound, 7);
    }

    /// A relay with bytes still pending is not recycled (they belong to the old client).
    fn pending_is_not_recycled<R: Relay<OwnedFd>>() {
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let server = OwnedFd::from(server);
        let mut relay = R::create(16 * 1024).unwrap();
        let mut tap = Tap::new(false, Status::new(true));
        client.write_all(b"left behind").unwrap();
        assert!(matches!(
            relay.fill(&server, &mut tap).unwrap(),
            Fill::Got { n: 11, .. }
        ));
        assert!(!relay.recycle());
    }

    fn echo_through<R: Relay<OwnedFd>>(relay: &mut R, bound: usize, seed: u32) {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.set_nonblocking(true).unwrap();
        server.set_nonblocking(true).unwrap();
        let server = OwnedFd::from(server);
        let mut tap = Tap::new(false, Status::new(true));
        let data: Vec<u8> = (0..100_000u32).map(|i| ((i + seed) % 251) as u8).collect();
        let mut sent = client.write(&data).unwrap();
        let (mut taken, mut echoed) = (0, Vec::new());
        let mut buf = vec![0u8; 8192];
        loop {
            let mut progress = false;
            while relay.wants_read() {
                match relay.fill(&server, &mut tap).unwrap() {
                    Fill::Got { n, .. } => {
                        taken += n;
                        progress = true;
                    }
                    Fill::Eof | Fill::WouldBlock => break,
                }
            }
            assert!(
                relay.pending() <= bound,
                "pending {} over the bound",
                relay.pending()
            );
            assert_eq!(taken, echoed.len() + relay.pending() + in_flight(&client));
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
            if sent < data.len() {
                if let Ok(n) = client.write(&data[sent..]) {
                    sent += n;
                    progress |= n > 0;
                }
            }
            if !progress {
                break;
            }
        }
        assert_eq!(echoed, data);
    }

    /// Bytes the relay sent that the client has not read yet (its receive queue, SIOCINQ).
    fn in_flight(client: &UnixStream) -> usize {
        let mut n: nix::libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer.
        let rc = unsafe {
            nix::libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(client),
                nix::libc::FIONREAD,
                &mut n,
            )
        };
        assert_eq!(rc, 0);
        n as usize
    }

    #[test]
    fn buffer_relay_is_bounded_and_exact() {
        bounded_and_exact::<BufferRelay>();
    }

    #[test]
    fn splice_relay_is_bounded_and_exact() {
        bounded_and_exact::<SpliceRelay>();
    }

    #[test]
    fn relays_with_pending_bytes_are_not_recycled() {
        pending_is_not_recycled::<BufferRelay>();
        pending_is_not_recycled::<SpliceRelay>();
    }
}
