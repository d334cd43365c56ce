//! Poll readiness (`unix_poll`).

use super::socket::{SockId, State};
use super::Model;
use crate::script::Events;

/// rule `poll_readiness`:
/// - ERR while an error is pending; HUP once both directions are shut (or the socket is unconnected);
/// - IN|RDHUP once reading is shut; IN while data (or, on a listener, a connection) waits;
/// - OUT while not listening and the charged send memory is at most a quarter of the send buffer.
pub fn readiness(m: &Model, sid: SockId) -> Events {
    let s = m.sock(sid);
    let mut e = Events::NONE;
    if s.err.is_some() {
        e |= Events::ERR;
    }
    if s.shut_rd && s.shut_wr {
        e |= Events::HUP;
    }
    if s.shut_rd {
        e |= Events::RDHUP | Events::IN;
    }
    if !s.rx.is_empty() || !s.pending.is_empty() {
        e |= Events::IN;
    }
    if s.state == State::Unconnected {
        e |= Events::HUP;
    }
    // rule `pollout_below_quarter_sndbuf`: (wmem_alloc + 1) * 4 <= sndbuf (the refcount starts at one).
    if s.state != State::Listening && (s.wmem + 1) * 4 <= m.params().sndbuf {
        e |= Events::OUT;
    }
    e
}
