//! The byte stream (`unix_stream_sendmsg`, `unix_stream_read_generic`): skbs in the receiver's queue, charged
//! to the sender's send buffer by their truesize. Also the send / receive entry points that dispatch by type.

use super::socket::{SockId, State};
use super::{Model, Prediction, Recv};
use crate::script::{
    AddrOut, Errno, Flags, Received, SockAddrBytes, Value, DGRAM, MSG_CMSG_CLOEXEC, MSG_DONTWAIT,
    MSG_EOR, MSG_MORE, MSG_NOSIGNAL, MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_WAITALL, STREAM,
};
use crate::script::{Creds, Payload, MSG_CTRUNC};

/// One sk_buff in a receive queue. (The payload comes last: `==` compares the cheap fields first.)
#[derive(Clone, Debug, Eq)]
pub struct Skb {
    start: usize,
    end: usize,
    /// Bytes already read from the front.
    pub consumed: usize,
    /// Memory charged to the sender until the skb is fully read (or dropped).
    pub truesize: usize,
    pub sender: SockId,
    /// A zero-length datagram that a MSG_PEEK has seen (`skb->peeked`).
    pub peeked: bool,
    /// This is the receiver's `oob_skb`: the one-byte skb of the last MSG_OOB send, not yet read.
    pub oob: bool,
    /// Descriptors in flight with this skb (SCM_RIGHTS), in order; each holds its socket open.
    pub fds: Vec<SockId>,
    /// The credentials recorded with it (`UNIXCB(skb).pid/uid/gid`), if any.
    pub creds: Option<Creds>,
    /// The send's payload, shared with the call (never copied); this skb's bytes are `data[start..end]`.
    data: Payload,
}

/// As derived, but a payload shared by both skbs (the common case: the states the collector leaves share
/// their history) is not compared byte by byte. (`Arc<[u8]>`'s own `==` compares the bytes.)
impl PartialEq for Skb {
    fn eq(&self, o: &Skb) -> bool {
        self.start == o.start
            && self.end == o.end
            && self.consumed == o.consumed
            && self.truesize == o.truesize
            && self.sender == o.sender
            && self.peeked == o.peeked
            && self.oob == o.oob
            && self.fds == o.fds
            && self.creds == o.creds
            && (Payload::ptr_eq(&self.data, &o.data) || self.data == o.data)
    }
}

impl Skb {
    /// An skb of `data[range]` from `sender`, charged `truesize`, nothing read or peeked, not OOB.
    pub(super) fn new(
        data: &Payload,
        range: std::ops::Range<usize>,
        truesize: usize,
        sender: SockId,
        fds: &[SockId],
        creds: Option<Creds>,
    ) -> Skb {
        debug_assert!(range.start <= range.end && range.end <= data.len());
        Skb {
            data: Payload::clone(data),
            start: range.start,
            end: range.end,
            consumed: 0,
            truesize,
            sender,
            peeked: false,
            oob: false,
            fds: fds.to_vec(),
            creds,
        }
    }

    /// All of the skb's bytes, read or not.
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Unread bytes.
    pub fn len(&self) -> usize {
        self.end - self.start - self.consumed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One send as the kernel's sendmsg sees it: the data, the address (none: the peer), the flags and the
/// control messages.
#[derive(Clone, Copy, Debug)]
pub(super) struct Out<'a> {
    pub d: &'a Payload,
    pub to: Option<&'a SockAddrBytes>,
    pub flags: Flags,
    /// SCM_RIGHTS: the sockets whose descriptors are sent.
    pub fds: &'a [SockId],
    /// SCM_CREDENTIALS given explicitly.
    pub creds: Option<Creds>,
}

impl<'a> Out<'a> {
    /// Data alone, as write / send / sendto pass it.
    pub fn data(d: &'a Payload, to: Option<&'a SockAddrBytes>, flags: Flags) -> Out<'a> {
        Out {
            d,
            to,
            flags,
            fds: &[],
            creds: None,
        }
    }
}

/// Send flags the model knows the meaning of: OOB, DONTWAIT and NOSIGNAL act; EOR, MORE, DONTROUTE, CONFIRM and
/// CMSG_CLOEXEC are accepted and change nothing on AF_UNIX (rule `send_ignores_other_flags`).
const SEND_FLAGS: u32 =
    MSG_OOB | MSG_DONTWAIT | MSG_EOR | MSG_NOSIGNAL | MSG_MORE | 0x4 | 0x800 | MSG_CMSG_CLOEXEC;
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
    pub(super) fn send(&mut self, sid: SockId, mut m: Out) -> Prediction {
        if m.flags.0 & !SEND_FLAGS != 0 {
            return Prediction::unmodelled("send_flag_not_modelled");
        }
        // `move_addr_to_kernel`: a zero length passes no address at all.
        m.to = m.to.filter(|a| a.len > 0);
        match self.socks[sid].ty {
            STREAM => self.send_stream(sid, m),
            DGRAM => self.send_dgram(sid, m),
            _ => self.send_seqpacket(sid, m),
        }
    }

    fn send_stream(&mut self, sid: SockId, m: Out) -> Prediction {
        let Out {
            d,
            to,
            flags,
            fds,
            creds,
        } = m;
        // rule `rights_ride_the_first_skb`: a stream send attaches its descriptors to its first skb (so a
        // zero-length send carries none).
        let mut fds = Some(fds);
        let oob = flags.has(MSG_OOB);
        if oob && d.is_empty() {
            return Prediction::err("send_oob_empty_is_eopnotsupp", Errno::EOPNOTSUPP);
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
        // rule `oob_send_is_data_then_one_marked_byte`: all but the last byte go as data, the last byte as its
        // own skb that becomes the receiver's OOB mark.
        let data_len = if oob { d.len() - 1 } else { d.len() };
        if d.is_empty() {
            return Prediction::one("write_empty_is_zero", Value::Wrote(0));
        }
        let chunk = self.params.chunk(self.socks[sid].sndbuf);
        let waits = self.wait_ms(sid, flags, false) > 0;
        let mut off = 0;
        while off < data_len {
            // rule `write_allocates_before_checking_peer`: a full send buffer answers EAGAIN before a dead peer
            // EPIPE; rule `write_chunks_while_sndbuf_not_full`: skbs of at most `chunk` bytes, each allocated
            // only while the charged memory is below the send buffer, so the last one may overshoot it; a
            // blocking writer then waits for its timeout and returns what it sent.
            if self.socks[sid].wmem >= self.socks[sid].sndbuf {
                if off == 0 {
                    return self.eagain("write_sndbuf_full_is_eagain", sid, flags, false);
                }
                let p = Prediction::one("write_chunks_while_sndbuf_not_full", Value::Wrote(off));
                return if waits { p.waited() } else { p };
            }
            if off == 0 {
                if let Some(p) = self.too_many_in_flight(fds.unwrap_or(&[])) {
                    return p;
                }
            }
            let p = &self.socks[peer];
            if p.released || p.shut_rd {
                if off == 0 {
                    return pipe("write_to_dead_peer_is_epipe");
                }
                break;
            }
            let c = (data_len - off).min(chunk);
            self.queue_stream(
                sid,
                peer,
                (d, off..off + c),
                false,
                fds.take().unwrap_or(&[]),
                creds,
            );
            off += c;
        }
        if oob {
            let rule = "oob_send_is_data_then_one_marked_byte";
            if self.socks[sid].wmem >= self.socks[sid].sndbuf {
                if off == 0 {
                    return self.eagain(rule, sid, flags, false);
                }
                let p = Prediction::one(rule, Value::Wrote(off));
                return if waits { p.waited() } else { p };
            }
            let p = &self.socks[peer];
            if p.released || p.shut_rd {
                // `queue_oob` raises no SIGPIPE.
                return if off == 0 {
                    Prediction::err(rule, Errno::EPIPE)
                } else {
                    Prediction::one(rule, Value::Wrote(off))
                };
            }
            for k in self.socks[peer].rx.iter_mut() {
                k.oob = false;
            }
            self.queue_stream(
                sid,
                peer,
                (d, d.len() - 1..d.len()),
                true,
                fds.take().unwrap_or(&[]),
                creds,
            );
            return Prediction::one(rule, Value::Wrote(off + 1));
        }
        Prediction::one("write_chunks_while_sndbuf_not_full", Value::Wrote(off))
    }

    fn queue_stream(
        &mut self,
        sid: SockId,
        peer: SockId,
        (data, range): (&Payload, std::ops::Range<usize>),
        oob: bool,
        fds: &[SockId],
        creds: Option<Creds>,
    ) {
        let creds = self.skb_creds(sid, peer, creds);
        let n = range.len();
        let ts = self.params.truesize(n);
        self.socks[sid].wmem += ts;
        for &f in fds {
            self.socks[f].refs += 1;
        }
        let p = &mut self.socks[peer];
        p.rx.push_back(Skb {
            oob,
            ..Skb::new(data, range, ts, sid, fds, creds)
        });
        p.inq += n;
    }

    /// Removes the skb at `i` from `sid`'s queue and gives its sender the memory back; descriptors still on
    /// it are closed.
    pub(super) fn unlink_skb(&mut self, sid: SockId, i: usize) {
        let mut skb = self.socks[sid].rx.remove(i).expect("index in range");
        self.socks[skb.sender].wmem -= skb.truesize;
        self.drop_fds(std::mem::take(&mut skb.fds));
    }

    /// What a receive does with the descriptors of skb `i`: a read takes them off the skb, a peek copies them;
    /// then as many as fit the control buffer become new descriptors, the rest are closed
    /// (rule `rights_that_do_not_fit_are_closed`).
    pub(super) fn take_fds(
        &mut self,
        sid: SockId,
        i: usize,
        peek: bool,
        shape: Recv,
    ) -> (usize, bool) {
        let fds = if peek {
            let f = self.socks[sid].rx[i].fds.clone();
            for &x in &f {
                self.socks[x].refs += 1;
            }
            f
        } else {
            std::mem::take(&mut self.socks[sid].rx[i].fds)
        };
        if fds.is_empty() {
            return (0, false);
        }
        // With SO_PASSCRED the credentials go first and take CMSG_SPACE(12) (or all of a shorter buffer).
        let creds_first = self.socks[sid].passcred;
        // Those that fit the control buffer and, one by one, the descriptor table (`receive_fd` stops at
        // EMFILE); the rest are closed.
        let room = self.fd_budget.unwrap_or(usize::MAX);
        let fit = fds.len().min(shape.max_fds(creds_first)).min(room);
        for &x in &fds[..fit] {
            // The in-flight reference becomes the new descriptor's.
            self.take_fd(x);
        }
        self.drop_fds(fds[fit..].to_vec());
        (fit, fit < fds.len())
    }

    /// read / recv / recvfrom / recvmsg without control messages.
    pub(super) fn recv(&mut self, sid: SockId, n: usize, flags: Flags, shape: Recv) -> Prediction {
        if flags.0 & !RECV_FLAGS != 0 {
            return Prediction::unmodelled("recv_flag_not_modelled");
        }
        let mut p = if self.socks[sid].ty == STREAM {
            self.recv_stream(sid, n, flags, shape)
        } else {
            self.recv_dgram(sid, n, flags, shape)
        };
        for o in &mut p.allowed {
            if let Value::Recv(r) = &mut o.value {
                match shape {
                    Recv::Data => {
                        r.from = AddrOut::NONE;
                        r.flags = 0;
                        r.creds = None;
                    }
                    Recv::From(b) => {
                        r.from = r.from.cut(b);
                        r.flags = 0;
                        r.creds = None;
                    }
                    Recv::Msg(b, _) => {
                        r.from = r.from.cut(b);
                        // rule `passcred_shows_credentials`: SCM_CREDENTIALS when they fit, MSG_CTRUNC when not.
                        // (The data paths give `creds` only where `scm_recv` runs, as the receiver sees them.)
                        if !self.socks[sid].passcred {
                            r.creds = None;
                        } else if r.creds.is_some() && !shape.creds_fit() {
                            r.flags |= MSG_CTRUNC;
                            r.creds = None;
                        }
                        // `____sys_recvmsg` starts msg_flags from the caller's MSG_CMSG_CLOEXEC.
                        r.flags |= flags.0 & MSG_CMSG_CLOEXEC;
                    }
                }
            }
        }
        p
    }

    fn recv_stream(&mut self, sid: SockId, n: usize, flags: Flags, shape: Recv) -> Prediction {
        if self.socks[sid].state != State::Connected {
            return Prediction::err("read_unconnected_is_einval", Errno::EINVAL);
        }
        if flags.has(MSG_OOB) {
            return self.recv_urg(sid, n, flags);
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
        let mut out = Vec::with_capacity(n.min(self.socks[sid].inq));
        let mut from = AddrOut::NONE;
        // Descriptors received, and whether some did not fit (MSG_CTRUNC).
        let mut rights = (0, false);
        let mut got_fds = false;
        // rule `stream_never_glues_different_credentials`: with SO_PASSCRED a read stops where the recorded
        // credentials change.
        let mut seen_creds: Option<Option<Creds>> = None;
        'redo: loop {
            let mut idx = (!self.socks[sid].rx.is_empty()).then_some(0);
            'again: loop {
                if let Some(i) = idx {
                    idx = self.manage_oob(sid, i, peek, !out.is_empty());
                    if idx.is_none() && !out.is_empty() {
                        break 'redo;
                    }
                }
                let Some(mut i) = idx else {
                    if out.len() >= target {
                        break 'redo;
                    }
                    let s = &mut self.socks[sid];
                    if let Some(e) = s.err.take() {
                        if out.is_empty() {
                            return Prediction::err("read_reports_pending_error_once", e);
                        }
                        break 'redo;
                    }
                    if s.shut_rd {
                        if out.is_empty() {
                            let mut r = Received::bytes(Vec::new());
                            r.creds = self.stream_creds(sid, None);
                            return Prediction::one(
                                "read_after_rcv_shutdown_is_eof",
                                Value::Recv(r),
                            );
                        }
                        break 'redo;
                    }
                    if out.is_empty() {
                        return self.eagain("read_empty_is_eagain", sid, flags, true);
                    }
                    let c = self.stream_creds(sid, seen_creds);
                    let p = self.stream_data(out, from, rights, c);
                    return if self.wait_ms(sid, flags, true) > 0 {
                        p.waited()
                    } else {
                        p
                    };
                };
                let s = &self.socks[sid];
                while skip >= s.rx[i].len() {
                    skip -= s.rx[i].len();
                    i += 1;
                    if i >= s.rx.len() {
                        idx = None;
                        continue 'again;
                    }
                }
                if s.passcred {
                    let c = s.rx[i].creds;
                    match seen_creds {
                        Some(prev) if prev != c => break 'redo,
                        Some(_) => {}
                        None => seen_creds = Some(c),
                    }
                }
                let size = n - out.len();
                let skb = &s.rx[i];
                let chunk = (skb.len() - skip).min(size);
                let start = skb.consumed + skip;
                out.extend_from_slice(&skb.bytes()[start..start + chunk]);
                if let Some(a) = &self.socks[skb.sender].addr {
                    from = a.out();
                }
                let has_fds = !self.socks[sid].rx[i].fds.is_empty();
                if has_fds {
                    rights = self.take_fds(sid, i, peek, shape);
                    got_fds = true;
                }
                let s = &mut self.socks[sid];
                if peek {
                    peek_fwd(&mut s.peek_off, chunk);
                    skip = 0;
                    // rule `rights_end_a_stream_read`: a read never runs past an skb that carried descriptors;
                    // rule `peek_walks_on_with_nothing_left_to_copy`: a peek goes on to the next skb even when
                    // the buffer is full (copying nothing, but taking that skb's descriptors).
                    if i + 1 < s.rx.len() && !got_fds {
                        idx = Some(i + 1);
                        continue 'again;
                    }
                    break 'redo;
                }
                s.rx[i].consumed += chunk;
                s.inq -= chunk;
                peek_bwd(&mut s.peek_off, chunk);
                if !s.rx[i].is_empty() {
                    break 'redo;
                }
                self.unlink_skb(sid, i);
                if out.len() >= n || got_fds {
                    break 'redo;
                }
                continue 'redo;
            }
        }
        let c = self.stream_creds(sid, seen_creds);
        self.stream_data(out, from, rights, c)
    }

    /// The credentials a stream receive with SO_PASSCRED reports: the first skb's (pid 0 and the overflow ids
    /// when it recorded none), or — no skb read — a zeroed record (pid 0, uid 0, gid 0).
    fn stream_creds(&self, sid: SockId, seen: Option<Option<Creds>>) -> Option<Creds> {
        self.socks[sid].passcred.then(|| match seen {
            None => Creds {
                pid: crate::script::Pid::Num(0),
                uid: 0,
                gid: 0,
            },
            Some(c) => self.shown_creds(c),
        })
    }

    /// `manage_oob`: what the reader does at skb `i` — pass a spent skb (dropping it unless peeking), stop at
    /// an unread OOB byte once something was read, or else take the OOB byte out of the stream (rule
    /// `oob_byte_is_dropped_by_a_normal_read`) unless SO_OOBINLINE keeps it in line.
    fn manage_oob(&mut self, sid: SockId, i: usize, peek: bool, copied: bool) -> Option<usize> {
        let s = &self.socks[sid];
        let skb = &s.rx[i];
        if !skb.is_empty() && !skb.oob {
            return Some(i);
        }
        let mut i = i;
        if skb.is_empty() {
            let has_oob = s.rx.iter().any(|k| k.oob);
            if !peek && self.params.read_stops_at_consumed_oob {
                // rule `read_stops_at_consumed_oob` (a calibrated kernel difference): the reader frees the
                // spent skb and stops there, with what it copied or EAGAIN.
                self.unlink_skb(sid, i);
                return None;
            }
            if copied && (!has_oob || skb.oob) {
                return None;
            } else if peek {
                i += 1;
            } else {
                self.unlink_skb(sid, i);
            }
            if i >= self.socks[sid].rx.len() {
                return None;
            }
        }
        let s = &self.socks[sid];
        if !s.rx[i].oob {
            return Some(i);
        }
        // rule `oob_mark_stops_reads`
        if copied {
            return None;
        }
        let inline = s.oobinline;
        if !peek {
            self.socks[sid].rx[i].oob = false;
            if !inline {
                // The byte is gone; SIOCINQ may still count it (a calibrated kernel difference).
                self.unlink_skb(sid, i);
                if !self.params.inq_counts_dropped_oob {
                    self.socks[sid].inq -= 1;
                }
                return (!self.socks[sid].rx.is_empty()).then_some(0);
            }
            Some(i)
        } else if !inline {
            (i + 1 < s.rx.len()).then_some(i + 1)
        } else {
            Some(i)
        }
    }

    /// `unix_stream_recv_urg`: MSG_OOB reads the marked byte (rule `oob_recv_reads_the_mark`).
    fn recv_urg(&mut self, sid: SockId, n: usize, flags: Flags) -> Prediction {
        let s = &self.socks[sid];
        let Some(i) = s.rx.iter().position(|k| k.oob).filter(|_| !s.oobinline) else {
            return Prediction::err("oob_recv_without_mark_is_einval", Errno::EINVAL);
        };
        if n == 0 {
            return Prediction::unmodelled("oob_recv_into_no_buffer");
        }
        let skb = &s.rx[i];
        let byte = skb.bytes()[skb.consumed];
        let mut i = i;
        if !flags.has(MSG_PEEK) {
            self.socks[sid].rx[i].oob = false;
            self.socks[sid].inq -= 1;
            if i > 0 && self.socks[sid].rx[i - 1].is_empty() {
                self.unlink_skb(sid, i - 1);
                i -= 1;
            }
            self.socks[sid].rx[i].consumed += 1;
        }
        let mut r = Received::bytes(vec![byte]);
        r.flags = MSG_OOB;
        Prediction::one("oob_recv_reads_the_mark", Value::Recv(r))
    }

    fn stream_data(
        &self,
        out: Vec<u8>,
        from: AddrOut,
        rights: (usize, bool),
        creds: Option<Creds>,
    ) -> Prediction {
        let mut r = Received::bytes(out);
        r.from = from;
        r.creds = creds;
        r.rights = rights.0;
        if rights.1 {
            r.flags |= MSG_CTRUNC;
        }
        Prediction::one("read_copies_across_skbs", Value::Recv(r))
    }
}

#[cfg(test)]
mod tests {
    use super::Skb;
    use crate::script::{Creds, Payload, Pid};

    #[test]
    fn skbs_are_equal_exactly_when_every_field_is() {
        let data: Payload = b"abcd".to_vec().into();
        let skb = Skb::new(&data, 1..3, 768, 2, &[4], None);
        // The same bytes in another allocation are equal; other bytes are not.
        assert_eq!(
            skb,
            Skb::new(&b"abcd".to_vec().into(), 1..3, 768, 2, &[4], None)
        );
        assert_ne!(
            skb,
            Skb::new(&b"abce".to_vec().into(), 1..3, 768, 2, &[4], None)
        );
        let changes: [fn(&mut Skb); 10] = [
            |k| k.start = 0,
            |k| k.end = 4,
            |k| k.consumed = 1,
            |k| k.truesize = 769,
            |k| k.sender = 3,
            |k| k.peeked = true,
            |k| k.oob = true,
            |k| k.fds.push(5),
            |k| {
                k.creds = Some(Creds {
                    pid: Pid::Own,
                    uid: 0,
                    gid: 0,
                })
            },
            |k| k.data = b"abcd!".to_vec().into(),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut other = skb.clone();
            assert_eq!(skb, other);
            change(&mut other);
            assert_ne!(skb, other, "change {i}");
            assert_ne!(other, skb, "change {i}");
        }
    }
}
