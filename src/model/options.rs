//! getsockopt / setsockopt (SOL_SOCKET, `sock_getsockopt` / `sock_setsockopt`) and the AF_UNIX ioctls.

use super::socket::{SockId, State};
use super::{Model, Prediction};
use crate::script::{Creds, Errno, Ioctl, OptVal, Pid, SockOpt, Value, STREAM};

impl Model {
    pub(super) fn getsockopt(&mut self, sid: SockId, o: SockOpt) -> Prediction {
        let tick = |ms| self.params.timeout_readback(ms);
        let s = &mut self.socks[sid];
        let int = |rule, v: i64| Prediction::one(rule, Value::Int(v));
        match o {
            SockOpt::TYPE => int("getsockopt_type", s.ty.into()),
            SockOpt::DOMAIN => int("getsockopt_domain_is_af_unix", 1),
            SockOpt::PROTOCOL => int("getsockopt_protocol_is_zero", 0),
            SockOpt::ACCEPTCONN => int(
                "getsockopt_acceptconn_is_listening",
                (s.state == State::Listening).into(),
            ),
            // rule `so_error_is_consumed_once`
            SockOpt::ERROR => match s.err.take() {
                Some(e) => Prediction::one("so_error_is_consumed_once", Value::SoError(e)),
                None => int("so_error_is_consumed_once", 0),
            },
            SockOpt::SNDBUF => int("getsockopt_sndbuf", s.sndbuf as i64),
            SockOpt::RCVBUF => int("getsockopt_rcvbuf", s.rcvbuf as i64),
            SockOpt::PASSCRED => int("getsockopt_passcred", s.passcred.into()),
            SockOpt::PEEK_OFF => int("getsockopt_peek_off", s.peek_off.into()),
            SockOpt::RCVLOWAT => int("getsockopt_rcvlowat", s.rcvlowat.into()),
            SockOpt::SNDLOWAT => int("getsockopt_sndlowat_is_one", 1),
            SockOpt::OOBINLINE => int("getsockopt_oobinline", s.oobinline.into()),
            SockOpt::RCVTIMEO => {
                Prediction::one("getsockopt_timeout_in_ticks", Value::Ms(tick(s.rcvtimeo)))
            }
            SockOpt::SNDTIMEO => {
                Prediction::one("getsockopt_timeout_in_ticks", Value::Ms(tick(s.sndtimeo)))
            }
            // rule `peercred_recorded_at_connect_listen_socketpair`: none yet reads pid 0, ids -1.
            SockOpt::PEERCRED => Prediction::one(
                "peercred_recorded_at_connect_listen_socketpair",
                Value::Cred(s.peercred.unwrap_or(Creds {
                    pid: Pid::Num(0),
                    uid: -1,
                    gid: -1,
                })),
            ),
            _ => Prediction::unmodelled("socket_option_not_modelled"),
        }
    }

    pub(super) fn setsockopt(&mut self, sid: SockId, o: SockOpt, v: OptVal) -> Prediction {
        let p = &self.params;
        let (wmem_max, rmem_max, min_snd, min_rcv) =
            (p.wmem_max, p.rmem_max, p.min_sndbuf, p.min_rcvbuf);
        let s = &mut self.socks[sid];
        let int = match v {
            OptVal::Int(i) => i as i32,
            OptVal::Ms(ms) => {
                match o {
                    SockOpt::RCVTIMEO => s.rcvtimeo = ms,
                    SockOpt::SNDTIMEO => s.sndtimeo = ms,
                    _ => return Prediction::unmodelled("socket_option_not_modelled"),
                }
                return Prediction::ok("setsockopt_timeout");
            }
        };
        match o {
            SockOpt::SNDBUF => {
                // rule `so_sndbuf_doubles_and_clamps`: min(val as u32, wmem_max) * 2, at least SOCK_MIN_SNDBUF.
                let v = (int as u32 as usize).min(wmem_max);
                s.sndbuf = (v * 2).max(min_snd);
                Prediction::ok("so_sndbuf_doubles_and_clamps")
            }
            SockOpt::RCVBUF => {
                let v = (int as u32 as usize)
                    .min(rmem_max)
                    .min(i32::MAX as usize / 2);
                s.rcvbuf = (v * 2).max(min_rcv);
                Prediction::ok("so_rcvbuf_doubles_and_clamps")
            }
            SockOpt::PASSCRED => {
                s.passcred = int != 0;
                Prediction::ok("setsockopt_passcred")
            }
            SockOpt::PEEK_OFF => {
                s.peek_off = int;
                Prediction::ok("setsockopt_peek_off")
            }
            SockOpt::RCVLOWAT => {
                // rule `so_rcvlowat_negative_is_int_max_zero_is_one`
                s.rcvlowat = if int < 0 { i32::MAX } else { int.max(1) };
                Prediction::ok("so_rcvlowat_negative_is_int_max_zero_is_one")
            }
            SockOpt::OOBINLINE => {
                s.oobinline = int != 0;
                Prediction::ok("setsockopt_oobinline")
            }
            SockOpt::TYPE
            | SockOpt::DOMAIN
            | SockOpt::PROTOCOL
            | SockOpt::ACCEPTCONN
            | SockOpt::PEERCRED
            | SockOpt::ERROR
            | SockOpt::SNDLOWAT => {
                Prediction::err("setsockopt_read_only_is_enoprotoopt", Errno::ENOPROTOOPT)
            }
            _ => Prediction::unmodelled("socket_option_not_modelled"),
        }
    }

    pub(super) fn ioctl(&mut self, sid: SockId, r: Ioctl) -> Prediction {
        let s = &self.socks[sid];
        match r {
            // rule `siocoutq_is_charged_memory`: the truesize of our skbs still queued, not a byte count.
            Ioctl::OutQ => Prediction::one("siocoutq_is_charged_memory", Value::Int(s.wmem as i64)),
            Ioctl::InQ => {
                if s.state == State::Listening {
                    return Prediction::err("siocinq_on_listener_is_einval", Errno::EINVAL);
                }
                // rule `siocinq_by_type`: stream counts the unread bytes (and a dropped OOB byte), seqpacket
                // the unread bytes of every record, datagram the first message's length.
                let n: usize = match s.ty {
                    STREAM => s.inq,
                    crate::script::SEQPACKET => s.rx.iter().map(|k| k.len()).sum(),
                    _ => s.rx.front().map_or(0, |k| k.bytes().len()),
                };
                Prediction::one("siocinq_by_type", Value::Int(n as i64))
            }
            Ioctl::AtMark => {
                if s.ty != STREAM && self.params.siocatmark_stream_only {
                    return Prediction::err("siocatmark_needs_stream", Errno::EOPNOTSUPP);
                }
                // rule `siocatmark_at_oob_byte`: the first skb is the OOB byte — or, where the kernel says so
                // (`atmark_at_consumed_oob`), is empty (a spent OOB skb, a listener's connection skb, a
                // zero-length record) and the OOB byte, or nothing marked, follows.
                let has_oob = s.rx.iter().any(|k| k.oob);
                let spent_counts = self.params.atmark_at_consumed_oob;
                let at = (spent_counts && !s.pending.is_empty())
                    || s.rx.front().is_some_and(|k| {
                        k.oob
                            || (spent_counts
                                && k.is_empty()
                                && (!has_oob || s.rx.get(1).is_some_and(|n| n.oob)))
                    });
                Prediction::one("siocatmark_at_oob_byte", Value::Int(at.into()))
            }
        }
    }
}
