//! One connection's echo work, written once over [`Stream`]: the event loop runs it on kernel
//! sockets ([`super::event_loop`]), the simulated echo server on the model ([`crate::sim::echo`]).
//!
//! Duties done here: `backpressure` (no read while the relay is at its bound), `partial_writes`
//! (a short send leaves the rest pending), `fair_turns` (a bounded number of rounds per event).

use super::relay::{Drain, Fill, Relay};
use super::tap::Tap;
use crate::net::Stream;
use nix::errno::Errno;

/// Rounds of fill+drain per readiness event (`fair_turns`).
pub const TURNS_PER_EVENT: usize = 4;

/// A client connection and its relay.
#[derive(Debug)]
pub struct Link<S, R> {
    /// Declared before `sock` so it is dropped first: by the time the client sees EOF, all of
    /// the connection's fds (a splice pipe) are closed.
    pub relay: R,
    pub sock: S,
    /// The client half-closed; echo what is pending, then close.
    pub eof: bool,
}

/// What a connection should be polled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    pub read: bool,
    pub write: bool,
}

impl<S: Stream, R: Relay<S>> Link<S, R> {
    pub fn new(sock: S, relay: R) -> Self {
        Link {
            relay,
            sock,
            eof: false,
        }
    }

    /// `backpressure`: read only while the relay has room; `partial_writes`: write while
    /// anything is pending.
    #[inline]
    pub fn wants(&self) -> Want {
        Want {
            read: !self.eof && self.relay.wants_read(),
            write: self.relay.pending() > 0,
        }
    }

    /// A bounded number of fill/drain rounds; Ok(false) when the connection is done (the client
    /// half-closed and everything was echoed); an error means the client is gone.
    #[inline]
    pub fn serve_turns(&mut self, tap: &mut Tap) -> Result<bool, Errno> {
        // After a short read the socket's queue was empty: skip reading for the rest of this
        // event (saves an EAGAIN call per message; level-triggered readiness reports any later
        // data).
        let mut drained = false;
        for _ in 0..TURNS_PER_EVENT {
            let mut progress = false;
            if !self.eof && !drained && self.relay.wants_read() {
                match self.relay.fill(&self.sock, tap)? {
                    Fill::Got { short, .. } => {
                        progress = true;
                        drained = short;
                    }
                    Fill::Eof => self.eof = true,
                    Fill::WouldBlock => drained = true,
                }
            }
            if self.relay.pending() > 0 {
                if let Drain::Sent(n) = self.relay.drain(&self.sock)? {
                    progress |= n > 0;
                }
            }
            if self.eof && self.relay.pending() == 0 {
                return Ok(false);
            }
            if !progress {
                break;
            }
        }
        Ok(true)
    }
}
