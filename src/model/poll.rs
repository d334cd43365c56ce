//! Poll readiness (`unix_poll` for stream, `unix_dgram_poll` for datagram and seqpacket).

use super::socket::{SockId, State};
use super::{Model, Prediction};
use crate::script::{Events, Value, DGRAM, SEQPACKET, STREAM};

/// rule `poll_readiness`:
/// - ERR while an error is pending; HUP once both directions are shut, or a connection-based socket is
///   unconnected;
/// - IN|RDHUP once reading is shut; IN while data (or, on a listener, a connection) waits;
/// - OUT while not listening and the charged send memory is at most a quarter of the send buffer
///   (rule `pollout_below_quarter_sndbuf`), and — datagram and seqpacket — unless the peer is full and not
///   connected back (rule `dgram_pollout_needs_room_at_peer`).
pub fn poll(m: &Model, sid: SockId) -> Prediction {
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
    // rule `pollpri_while_oob_byte_unread`
    if s.rx.iter().any(|k| k.oob) {
        e |= Events::PRI;
    }
    if (s.ty == STREAM || s.ty == SEQPACKET) && s.state == State::Unconnected {
        e |= Events::HUP;
    }
    // (wmem_alloc + 1) * 4 <= sndbuf (the refcount starts at one).
    let mut writable = s.state != State::Listening && (s.wmem + 1) * 4 <= s.sndbuf;
    if writable && s.ty != STREAM {
        if let Some(o) = s.peer.map(|p| m.sock(p)) {
            if o.peer != Some(sid) && o.recvq_full() && !o.released {
                writable = false;
            }
        }
    }
    if writable {
        e |= Events::OUT;
    }
    let rule = if s.ty == DGRAM || s.ty == SEQPACKET {
        "dgram_pollout_needs_room_at_peer"
    } else if writable || s.state == State::Listening {
        "poll_readiness"
    } else {
        "pollout_below_quarter_sndbuf"
    };
    Prediction::one(rule, Value::Ready(e))
}
