//! Datagrams and records (`unix_dgram_sendmsg`, `__unix_dgram_recvmsg`, and the seqpacket wrappers around
//! them): one skb per message, boundaries kept, a receiver full past max_dgram_qlen unless it is associated
//! back with the sender.

use super::addr;
use super::socket::{SockId, State};
use super::stream::{peek_bwd, peek_fwd, Out, Skb};
use super::{Model, Prediction};
use crate::script::{
    AddrOut, Errno, Flags, Received, Value, DGRAM, MSG_OOB, MSG_PEEK, MSG_TRUNC, SEQPACKET,
};

impl Model {
    pub(super) fn send_seqpacket(&mut self, sid: SockId, m: Out) -> Prediction {
        // rule `seqpacket_send_reports_pending_error`: `sock_error` first (and consumes it).
        if let Some(e) = self.socks[sid].err.take() {
            return Prediction::err("seqpacket_send_reports_pending_error", e);
        }
        if self.socks[sid].state != State::Connected {
            return Prediction::err("seqpacket_send_unconnected_is_enotconn", Errno::ENOTCONN);
        }
        // rule `seqpacket_send_ignores_address`: the address of a sendto is dropped.
        self.send_dgram(sid, Out { to: None, ..m })
    }

    pub(super) fn send_dgram(&mut self, sid: SockId, m: Out) -> Prediction {
        let Out {
            d,
            to,
            flags,
            fds,
            creds,
        } = m;
        if flags.has(MSG_OOB) {
            return Prediction::err("dgram_send_oob_is_eopnotsupp", Errno::EOPNOTSUPP);
        }
        let target = match to.map(addr::validate) {
            Some(Err((rule, e))) => return Prediction::err(rule, e),
            Some(Ok(t)) => Some(t),
            None => None,
        };
        // rule `dgram_peer_checked_first` (a calibrated kernel difference): some kernels look the peer up
        // before the size, memory and pending-error checks.
        if target.is_none()
            && self.socks[sid].peer.is_none()
            && self.params.dgram_peer_checked_first
        {
            return Prediction::err("dgram_send_unconnected_is_enotconn", Errno::ENOTCONN);
        }
        if self.socks[sid].passcred {
            // rule `passcred_autobinds_on_send`
            self.autobind(sid);
        }
        let me = &self.socks[sid];
        // rule `dgram_larger_than_sndbuf_is_emsgsize`: a datagram must fit the send buffer less 32 bytes.
        if d.len() + 32 > me.sndbuf {
            return Prediction::err("dgram_larger_than_sndbuf_is_emsgsize", Errno::EMSGSIZE);
        }
        // `sock_alloc_send_pskb`: a pending error, then our own SEND_SHUTDOWN, then memory.
        if let Some(e) = self.socks[sid].err.take() {
            return Prediction::err("dgram_send_reports_pending_error", e);
        }
        let me = &self.socks[sid];
        if me.shut_wr {
            return Prediction::err("dgram_send_after_shutdown_is_epipe", Errno::EPIPE);
        }
        if me.wmem >= me.sndbuf {
            return self.eagain("dgram_sndbuf_full_is_eagain", sid, flags, false);
        }
        if let Some(p) = self.too_many_in_flight(fds) {
            return p;
        }
        let other = match &target {
            Some(t) => match self.find_other(t, DGRAM) {
                Ok(o) => o,
                Err(p) => return p,
            },
            None => match self.socks[sid].peer {
                Some(p) => p,
                None => {
                    return Prediction::err("dgram_send_unconnected_is_enotconn", Errno::ENOTCONN)
                }
            },
        };
        // rule `dgram_receiver_connected_elsewhere_is_eperm`: a connected socket takes messages from its peer
        // only.
        if self.socks[other].peer.is_some_and(|p| p != sid) {
            return Prediction::err("dgram_receiver_connected_elsewhere_is_eperm", Errno::EPERM);
        }
        if self.socks[other].released {
            // (A seqpacket peer's release shuts our sending side first: EPIPE came above.)
            // rule `dgram_send_to_closed_peer_is_econnrefused`: the association is dissolved (and our queue
            // purged) on the way.
            self.socks[sid].peer = None;
            self.socks[sid].state = State::Unconnected;
            self.dgram_disconnected(sid, other);
            return Prediction::err(
                "dgram_send_to_closed_peer_is_econnrefused",
                Errno::ECONNREFUSED,
            );
        }
        if self.socks[other].shut_rd {
            return Prediction::err("dgram_receiver_shut_rd_is_epipe", Errno::EPIPE);
        }
        // rule `dgram_qlen_limits_unless_associated_back`: a receiver holding more than max_dgram_qlen messages
        // refuses more, except from itself and from the socket it is connected to.
        let o = &self.socks[other];
        if other != sid && o.peer != Some(sid) && o.recvq_full() {
            return self.eagain(
                "dgram_qlen_limits_unless_associated_back",
                sid,
                flags,
                false,
            );
        }
        let creds = self.skb_creds(sid, other, creds);
        let ts = self.params.dgram_truesize(d.len());
        self.socks[sid].wmem += ts;
        for &f in fds {
            self.socks[f].refs += 1;
        }
        self.socks[other]
            .rx
            .push_back(Skb::new(d, 0..d.len(), ts, sid, fds, creds));
        Prediction::one("dgram_send_queues_one_message", Value::Wrote(d.len()))
    }

    pub(super) fn recv_dgram(
        &mut self,
        sid: SockId,
        n: usize,
        flags: Flags,
        shape: super::Recv,
    ) -> Prediction {
        let seqpacket = self.socks[sid].ty == SEQPACKET;
        if seqpacket && self.socks[sid].state != State::Connected {
            return Prediction::err("seqpacket_recv_unconnected_is_enotconn", Errno::ENOTCONN);
        }
        if flags.has(MSG_OOB) {
            return Prediction::err("dgram_recv_oob_is_eopnotsupp", Errno::EOPNOTSUPP);
        }
        // rule `dgram_recv_reports_pending_error_first`: `__skb_try_recv_datagram` reads sk_err before the queue.
        if let Some(e) = self.socks[sid].err.take() {
            return Prediction::err("dgram_recv_reports_pending_error_first", e);
        }
        let peek = flags.has(MSG_PEEK);
        let s = &self.socks[sid];
        // `__skb_try_recv_from_queue`: with SO_PEEK_OFF, a peek skips whole messages the offset passes.
        let mut off = if peek && s.peek_off >= 0 {
            s.peek_off as usize
        } else {
            0
        };
        let mut idx = None;
        for (i, skb) in s.rx.iter().enumerate() {
            if peek && s.peek_off >= 0 && off >= skb.len() && (off > 0 || skb.peeked) {
                off -= skb.len();
                continue;
            }
            idx = Some(i);
            break;
        }
        let Some(i) = idx else {
            let waits = self.wait_ms(sid, flags, true) > 0;
            if self.socks[sid].shut_rd && (seqpacket || waits) {
                // rule `seqpacket_recv_after_shutdown_is_eof`
                return Prediction::one(
                    "seqpacket_recv_after_shutdown_is_eof",
                    Value::Recv(Received::bytes(Vec::new())),
                );
            }
            return self.eagain("dgram_recv_empty_is_eagain", sid, flags, true);
        };
        let skb = &self.socks[sid].rx[i];
        let avail = skb.len() - off;
        let copy = n.min(avail);
        let data = skb.bytes()[skb.consumed + off..skb.consumed + off + copy].to_vec();
        let from = self.socks[skb.sender]
            .addr
            .as_ref()
            .map_or(AddrOut::NONE, |a| a.out());
        let len = skb.len();
        let skb_creds = skb.creds;
        let (rights, ctrunc) = self.take_fds(sid, i, peek, shape);
        let mut r = Received {
            ret: if flags.has(MSG_TRUNC) { avail } else { copy },
            data,
            from,
            // rule `dgram_short_buffer_truncates`: the rest of the message is dropped, MSG_TRUNC says so.
            flags: if n < avail { MSG_TRUNC } else { 0 },
            rights,
            creds: self.socks[sid]
                .passcred
                .then(|| self.shown_creds(skb_creds)),
        };
        if ctrunc {
            r.flags |= crate::script::MSG_CTRUNC;
        }
        let s = &mut self.socks[sid];
        if peek {
            peek_fwd(&mut s.peek_off, copy);
            if len == 0 {
                s.rx[i].peeked = true;
            }
        } else {
            peek_bwd(&mut s.peek_off, len);
            self.unlink_skb(sid, i);
        }
        Prediction::one("dgram_recv_one_message", Value::Recv(r))
    }
}
