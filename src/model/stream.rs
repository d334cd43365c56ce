//! The byte stream (`unix_stream_sendmsg`, `unix_stream_read_generic`): skbs in the receiver's queue, charged
//! to the sender's send buffer by their truesize. Also the send / receive entry points that dispatch by type.

use super::socket::{SockId, State};
use super::{Model, Prediction, Recv};
use crate::script::{
    AddrOut, Errno, Flags, Received, SockAddrBytes, Value, DGRAM, MSG_CMSG_CLOEXEC, MSG_DONTWAIT,
    MSG_EOR, MSG_MORE, MSG_NOSIGNAL, MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_WAITALL, STREAM,
};

/// One sk_buff in a receive queue.
#[derive(Clone, Debug)]
pub struct Skb {
    pub data: Vec<u8>,
    /// Bytes already read from the front.
    pub consumed: usize,
    /// Memory charged to the sender until the skb is fully read (or dropped).
    pub truesize: usize,
    pub sender: SockId,
    /// A zero-length datagram that a MSG_PEEK has seen (`skb->peeked`).
    pub peeked: bool,
}

impl Skb {
    pub fn len(&self) -> usize {
        self.data.len() - self.consumed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Send flags the model knows the meaning of.
const SEND_FLAGS: u32 = MSG_OOB | MSG_DONTWAIT | MSG_EOR | MSG_NOSIGNAL | MSG_MORE;
/// Receive flags the model knows the meaning of.
const RECV_FLAGS: u32 =
    MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT | MSG_WAITALL | MSG_OOB | MSG_CMSG_CLOEXEC;

/// `sk_peek_offset_fwd` / `_bwd`: a peek moves SO_PEEK_OFF forward, a read back (never below 0); off when -1.
pub(super) fn peek_fwd(off: &mut i32, n: usize) {
    if *off >= 0 {
        *off = off.saturating_add(n as i32);
    }
}

pub(super) fn peek_bwd(off: &mut i32, n: usize) {
    if *off >= 0 && n > 0 {
        *off = (*off - n as i32).max(0);
    }
}

impl Model {
    /// write / send / sendto / sendmsg without control messages.
    pub(super) fn send(
        &mut self,
        sid: SockId,
        d: &[u8],
        to: Option<&SockAddrBytes>,
        flags: Flags,
    ) -> Prediction {
        if flags.0 & !SEND_FLAGS != 0 {
            return Prediction::unmodelled("send_flag_not_modelled");
        }
        // `move_addr_to_kernel`: a zero length passes no address at all.
        let to = to.filter(|a| a.len > 0);
        match self.socks[sid].ty {
            STREAM => self.send_stream(sid, d, to, flags),
            DGRAM => self.send_dgram(sid, d, to, flags),
            _ => self.send_seqpacket(sid, d, flags),
        }
    }

    fn send_stream(
        &mut self,
        sid: SockId,
        d: &[u8],
        to: Option<&SockAddrBytes>,
        flags: Flags,
    ) -> Prediction {
        if flags.has(MSG_OOB) {
            if d.is_empty() {
                return Prediction::err("send_oob_empty_is_eopnotsupp", Errno::EOPNOTSUPP);
            }
            return Prediction::unmodelled("oob_not_modelled_yet");
        }
        let me = &self.socks[sid];
        if to.is_some() {
            // rule `stream_sendto_address_is_eisconn_or_eopnotsupp`
            return if me.state == State::Connected {
                Prediction::err("stream_sendto_address_is_eisconn", Errno::EISCONN)
            } else {
                Prediction::err("stream_sendto_address_is_eopnotsupp", Errno::EOPNOTSUPP)
            };
        }
        let Some(peer) = me.peer else {
            return Prediction::err("write_needs_peer_is_enotconn", Errno::ENOTCONN);
        };
        let pipe = |rule| {
            // rule `epipe_raises_sigpipe_without_nosignal`
            let p = Prediction::err(rule, Errno::EPIPE);
            if flags.has(MSG_NOSIGNAL) {
                p
            } else {
                p.sigpipe()
            }
        };
        if me.shut_wr {
            // Also after the peer closed or shut down reading: both set our SEND_SHUTDOWN.
            return pipe("write_after_send_shutdown_is_epipe");
        }
        if d.is_empty() {
            return Prediction::one("write_empty_is_zero", Value::Wrote(0));
        }
        // rule `write_allocates_before_checking_peer`: a full send buffer answers EAGAIN before a dead peer EPIPE.
        if me.wmem >= me.sndbuf {
            return self.eagain("write_sndbuf_full_is_eagain", sid, flags, false);
        }
        let p = &self.socks[peer];
        if p.released || p.shut_rd {
            return pipe("write_to_dead_peer_is_epipe");
        }
        // rule `write_chunks_while_sndbuf_not_full`: skbs of at most `chunk` bytes, each allocated only while
        // the charged memory is below the send buffer, so the last one may overshoot it; a blocking writer then
        // waits for its timeout and returns what it sent.
        let chunk = self.params.chunk(self.socks[sid].sndbuf);
        let mut off = 0;
        while off < d.len() && self.socks[sid].wmem < self.socks[sid].sndbuf {
            let c = (d.len() - off).min(chunk);
            let ts = self.params.truesize(c);
            self.socks[sid].wmem += ts;
            self.socks[peer].rx.push_back(Skb {
                data: d[off..off + c].to_vec(),
                consumed: 0,
                truesize: ts,
                sender: sid,
                peeked: false,
            });
            off += c;
        }
        let p = Prediction::one("write_chunks_while_sndbuf_not_full", Value::Wrote(off));
        if off < d.len() && self.wait_ms(sid, flags, false) > 0 {
            p.waited()
        } else {
            p
        }
    }

    /// read / recv / recvfrom / recvmsg without control messages.
    pub(super) fn recv(&mut self, sid: SockId, n: usize, flags: Flags, shape: Recv) -> Prediction {
        if flags.0 & !RECV_FLAGS != 0 {
            return Prediction::unmodelled("recv_flag_not_modelled");
        }
        if self.socks[sid].passcred {
            return Prediction::unmodelled("passcred_not_modelled_yet");
        }
        let mut p = if self.socks[sid].ty == STREAM {
            self.recv_stream(sid, n, flags)
        } else {
            self.recv_dgram(sid, n, flags)
        };
        for o in &mut p.allowed {
            if let Value::Recv(r) = &mut o.value {
                match shape {
                    Recv::Data => {
                        r.from = AddrOut::NONE;
                        r.flags = 0;
                    }
                    Recv::From(b) => {
                        r.from = r.from.cut(b);
                        r.flags = 0;
                    }
                    Recv::Msg(b) => {
                        r.from = r.from.cut(b);
                        // `____sys_recvmsg` starts msg_flags from the caller's MSG_CMSG_CLOEXEC.
                        r.flags |= flags.0 & MSG_CMSG_CLOEXEC;
                    }
                }
            }
        }
        p
    }

    fn recv_stream(&mut self, sid: SockId, n: usize, flags: Flags) -> Prediction {
        if self.socks[sid].state != State::Connected {
            return Prediction::err("read_unconnected_is_einval", Errno::EINVAL);
        }
        if flags.has(MSG_OOB) {
            return Prediction::unmodelled("oob_not_modelled_yet");
        }
        let peek = flags.has(MSG_PEEK);
        let lowat = if flags.has(MSG_WAITALL) {
            n
        } else {
            (self.socks[sid].rcvlowat.max(0) as usize).min(n)
        };
        // rule `read_zero_with_data_is_empty`: the target is at least one byte, but a zero-length read that
        // finds data returns at once with nothing.
        let target = lowat.max(1);
        let mut skip = if peek {
            self.socks[sid].peek_off.max(0) as usize
        } else {
            0
        };
        let mut out = Vec::new();
        let mut from = AddrOut::NONE;
        let mut idx = 0;
        loop {
            // The skb holding the next byte past `skip`.
            let s = &self.socks[sid];
            while idx < s.rx.len() && skip >= s.rx[idx].len() {
                skip -= s.rx[idx].len();
                idx += 1;
            }
            if idx >= s.rx.len() {
                if out.len() >= target {
                    break;
                }
                let s = &mut self.socks[sid];
                if let Some(e) = s.err.take() {
                    if out.is_empty() {
                        return Prediction::err("read_reports_pending_error_once", e);
                    }
                    break;
                }
                if s.shut_rd {
                    if out.is_empty() {
                        return Prediction::one(
                            "read_after_rcv_shutdown_is_eof",
                            Value::Recv(Received::bytes(Vec::new())),
                        );
                    }
                    break;
                }
                let waits = self.wait_ms(sid, flags, true) > 0;
                if out.is_empty() {
                    return self.eagain("read_empty_is_eagain", sid, flags, true);
                }
                let p = self.stream_data(out, from);
                return if waits { p.waited() } else { p };
            }
            let size = n - out.len();
            let skb = &self.socks[sid].rx[idx];
            let chunk = (skb.len() - skip).min(size);
            let start = skb.consumed + skip;
            out.extend_from_slice(&skb.data[start..start + chunk]);
            if let Some(a) = &self.socks[skb.sender].addr {
                from = a.out();
            }
            let s = &mut self.socks[sid];
            if !peek {
                let skb = &mut s.rx[idx];
                skb.consumed += chunk;
                peek_bwd(&mut s.peek_off, chunk);
                if !s.rx[idx].is_empty() {
                    break;
                }
                let done = s.rx.remove(idx).expect("index in range");
                self.socks[done.sender].wmem -= done.truesize;
            } else {
                peek_fwd(&mut s.peek_off, chunk);
                skip = 0;
                idx += 1;
                if idx >= s.rx.len() {
                    break;
                }
            }
            if out.len() >= n {
                break;
            }
        }
        self.stream_data(out, from)
    }

    fn stream_data(&self, out: Vec<u8>, from: AddrOut) -> Prediction {
        let mut r = Received::bytes(out);
        r.from = from;
        Prediction::one("read_copies_across_skbs", Value::Recv(r))
    }
}
