//! Measures the model's host parameters on the running kernel, once per process.
//!
//! Values that live in the network namespace (somaxconn, max_dgram_qlen) are measured in a private one when
//! the process may make one, as the executor's threads run scripts in one (a new namespace starts from the
//! kernel's defaults, not the host's tuning).

use crate::model::Params;
use nix::libc;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

static PARAMS: OnceLock<Result<Params, String>> = OnceLock::new();

/// The host parameters, measured on first use and then shared by every model in the process.
pub fn params() -> Result<Params, String> {
    PARAMS
        .get_or_init(|| {
            std::thread::spawn(|| {
                // Set up as every executor thread is (its own network namespace where permitted).
                super::sys::init().map_err(|e| e.to_string())?;
                measure()
            })
            .join()
            .unwrap_or_else(|_| Err("calibration thread panicked".into()))
        })
        .clone()
}

fn last() -> String {
    nix::errno::Errno::last().to_string()
}

fn pair(ty: libc::c_int) -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(format!("socketpair: {}", last()));
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn socket(ty: libc::c_int) -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(format!("socket: {}", last()));
    }
    // SAFETY: just created, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn get_int(fd: RawFd, opt: libc::c_int) -> Result<usize, String> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are live and sized for one int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(format!("getsockopt({opt}): {}", last()));
    }
    Ok(v as usize)
}

fn set_int(fd: RawFd, opt: libc::c_int, v: libc::c_int) -> Result<(), String> {
    // SAFETY: v is live and one int long.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(format!("setsockopt({opt}): {}", last()));
    }
    Ok(())
}

/// SIOCOUTQ on an AF_UNIX socket: the send memory it has charged (sk_wmem_alloc), not a byte count.
fn outq(fd: RawFd) -> Result<usize, String> {
    let mut v: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut v) };
    if r < 0 {
        return Err(format!("ioctl(SIOCOUTQ): {}", last()));
    }
    Ok(v as usize)
}

fn send(fd: RawFd, buf: &[u8]) -> Result<usize, String> {
    // SAFETY: buf is live for the call.
    let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if r < 0 {
        return Err(format!("send: {}", last()));
    }
    Ok(r as usize)
}

fn recv(fd: RawFd, buf: &mut [u8]) -> Result<usize, String> {
    // SAFETY: buf is live and writable for the call.
    let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if r < 0 {
        return Err(format!("recv: {}", last()));
    }
    Ok(r as usize)
}

fn drain(fd: RawFd, buf: &mut [u8], mut n: usize) -> Result<(), String> {
    while n > 0 {
        let k = n.min(buf.len());
        let got = recv(fd, &mut buf[..k])?;
        if got == 0 {
            return Err("calibration pair closed early".into());
        }
        n -= got;
    }
    Ok(())
}

fn proc_u32(path: &str) -> Result<u32, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("read {path}: {e}"))?
        .trim()
        .parse::<u32>()
        .map_err(|e| format!("parse {path}: {e}"))
}

/// Runs of a piecewise-constant function over `lo..=hi`, sampled every `step` and bisected where two samples
/// differ (each change found exactly, assuming at most one change between neighbouring samples).
fn runs(
    lo: usize,
    hi: usize,
    step: usize,
    f: &mut impl FnMut(usize) -> Result<usize, String>,
) -> Result<Vec<(usize, usize)>, String> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut prev = (lo, f(lo)?);
    out.push(prev);
    let mut x = lo;
    while x < hi {
        let next = (x + step).min(hi);
        let v = f(next)?;
        if v != prev.1 {
            // The first length in (x, next] with value v.
            let (mut a, mut b) = (x, next);
            while b - a > 1 {
                let mid = a + (b - a) / 2;
                if f(mid)? == prev.1 {
                    a = mid;
                } else {
                    b = mid;
                }
            }
            let vb = f(b)?;
            out.push((b, vb));
            prev = (b, vb);
            if vb != v {
                out.push((next, v));
                prev = (next, v);
            }
        }
        x = next;
    }
    Ok(out)
}

fn ioctl_int(fd: RawFd, req: libc::c_ulong) -> Result<i32, String> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int.
    let r = unsafe { libc::ioctl(fd, req, &mut v) };
    if r < 0 {
        return Err(format!("ioctl({req:#x}): {}", last()));
    }
    Ok(v)
}

fn send_flags(fd: RawFd, buf: &[u8], flags: libc::c_int) -> Result<(), String> {
    // SAFETY: buf is live for the call.
    if unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            flags | libc::MSG_NOSIGNAL,
        )
    } < 0
    {
        return Err(format!("send: {}", last()));
    }
    Ok(())
}

/// recv into a small buffer: the byte count, or -1 for EAGAIN.
fn recv_flags(fd: RawFd, flags: libc::c_int) -> Result<isize, String> {
    let mut b = [0u8; 8];
    // SAFETY: b is live and writable.
    let r = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            b.len(),
            flags | libc::MSG_DONTWAIT,
        )
    };
    if r < 0 && nix::errno::Errno::last() != nix::errno::Errno::EAGAIN {
        return Err(format!("recv: {}", last()));
    }
    Ok(r)
}

/// The MSG_OOB behaviours that differ between kernel versions (see docs/kernels.md), each probed on a fresh
/// stream pair: (inq_counts_dropped_oob, atmark_at_consumed_oob, read_stops_at_consumed_oob).
fn oob_probes() -> Result<(bool, bool, bool), String> {
    // SIOCINQ after a normal read dropped the OOB byte.
    let (a, b) = pair(libc::SOCK_STREAM)?;
    send_flags(a.as_raw_fd(), b"x", libc::MSG_OOB)?;
    send_flags(a.as_raw_fd(), b"y", 0)?;
    recv_flags(b.as_raw_fd(), 0)?;
    let inq = ioctl_int(b.as_raw_fd(), libc::FIONREAD)? == 1;
    // SIOCATMARK with the taken OOB byte's empty skb at the head.
    let (a, b) = pair(libc::SOCK_STREAM)?;
    send_flags(a.as_raw_fd(), b"x", libc::MSG_OOB)?;
    recv_flags(b.as_raw_fd(), libc::MSG_OOB)?;
    let atmark = ioctl_int(b.as_raw_fd(), 0x8905)? == 1;
    // A read meeting that empty skb with data behind it.
    send_flags(a.as_raw_fd(), b"y", 0)?;
    let stops = recv_flags(b.as_raw_fd(), 0)? < 0;
    Ok((inq, atmark, stops))
}

/// Whether an unconnected datagram send too large for the buffer says ENOTCONN (peer first) or EMSGSIZE.
fn dgram_order_probe() -> Result<bool, String> {
    let s = socket(libc::SOCK_DGRAM)?;
    set_int(s.as_raw_fd(), libc::SO_SNDBUF, 0)?;
    let big = vec![0u8; get_int(s.as_raw_fd(), libc::SO_SNDBUF)? + 1];
    // SAFETY: big is live for the call.
    let r = unsafe {
        libc::send(
            s.as_raw_fd(),
            big.as_ptr().cast(),
            big.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    match (r, nix::errno::Errno::last()) {
        (-1, nix::errno::Errno::ENOTCONN) => Ok(true),
        (-1, nix::errno::Errno::EMSGSIZE) => Ok(false),
        (r, e) => Err(format!("datagram order probe: send returned {r} ({e})")),
    }
}

/// What the in-flight garbage collector frees first. A socket sent over itself (x in its own queue, behind one
/// plain skb of data from its peer y) is garbage once x's descriptor closes; a socket released afterwards lets
/// the collector run. Then y's read tells: EOF if the collector emptied x's whole queue before x was released
/// (6.18), ECONNRESET if it freed only the skb carrying the descriptor and x was released with y's data unread
/// (6.1). The collector runs on its own schedule, so the probe waits for x's release (POLLHUP at y), releasing
/// a socket again every 10 ms, for up to 2 s.
fn gc_probe() -> Result<bool, String> {
    let (x, y) = pair(libc::SOCK_STREAM)?;
    let out = super::msg::sendmsg(
        y.as_raw_fd(),
        b"r",
        None,
        Some(&[x.as_raw_fd()]),
        None,
        libc::MSG_NOSIGNAL as u32,
    );
    if out != crate::script::Outcome::of(crate::script::Value::Wrote(1)) {
        return Err(format!("collector probe: sendmsg with rights gave {out:?}"));
    }
    send(y.as_raw_fd(), b"data")?;
    drop(x);
    for _ in 0..200 {
        drop(socket(libc::SOCK_STREAM)?);
        let mut pfd = libc::pollfd {
            fd: y.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 10) };
        if r > 0 && pfd.revents & libc::POLLHUP != 0 {
            let mut b = [0u8; 8];
            // SAFETY: b is live for the call.
            let n = unsafe { libc::recv(y.as_raw_fd(), b.as_mut_ptr().cast(), b.len(), 0) };
            return match (n, nix::errno::Errno::last()) {
                (0, _) => Ok(true),
                (-1, nix::errno::Errno::ECONNRESET) => Ok(false),
                (n, e) => Err(format!(
                    "collector probe: read after collection gave {n} ({e})"
                )),
            };
        }
    }
    Err(
        "collector probe: a socket held only by its own copy in flight was not freed within 2 s"
            .into(),
    )
}

/// The largest write the `max_chunk` search tries: far above the kernel's per-skb cap (36544 bytes on 6.1–6.18),
/// far below what a host with a huge net.core.wmem_max makes the send buffer (the search once allocated twice
/// that: 4 GiB, and aborted, with wmem_max at INT_MAX).
const CHUNK_SEARCH_MAX: usize = 1 << 21;

fn measure() -> Result<Params, String> {
    let probe = socket(libc::SOCK_STREAM)?;
    let p = probe.as_raw_fd();
    let sndbuf = get_int(p, libc::SO_SNDBUF)?;
    let rcvbuf = get_int(p, libc::SO_RCVBUF)?;
    set_int(p, libc::SO_SNDBUF, 0)?;
    let min_sndbuf = get_int(p, libc::SO_SNDBUF)?;
    set_int(p, libc::SO_RCVBUF, 0)?;
    let min_rcvbuf = get_int(p, libc::SO_RCVBUF)?;
    set_int(p, libc::SO_SNDBUF, libc::c_int::MAX)?;
    let wmem_max = get_int(p, libc::SO_SNDBUF)? / 2;
    set_int(p, libc::SO_RCVBUF, libc::c_int::MAX)?;
    let rmem_max = get_int(p, libc::SO_RCVBUF)? / 2;
    let tick_us = {
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 1,
        };
        // SAFETY: tv is a live timeval.
        let r = unsafe {
            libc::setsockopt(
                p,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(format!("setsockopt(SO_RCVTIMEO): {}", last()));
        }
        let mut back = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        // SAFETY: back and len are live and sized for a timeval.
        let r = unsafe {
            libc::getsockopt(
                p,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&mut back as *mut libc::timeval).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(format!("getsockopt(SO_RCVTIMEO): {}", last()));
        }
        (back.tv_sec as u64 * 1_000_000 + back.tv_usec as u64).max(1)
    };
    let somaxconn = proc_u32("/proc/sys/net/core/somaxconn")?;

    // max_chunk, on a pair whose send buffer is as large as it gets, so that the per-skb cap shows (not
    // sndbuf / 2 - 64). Write c bytes and read back c-1: if the write made one skb it is still charged in full;
    // if two, the first one was freed.
    let (a, b) = pair(libc::SOCK_STREAM)?;
    let (a, b) = (a.as_raw_fd(), b.as_raw_fd());
    set_int(a, libc::SO_SNDBUF, libc::c_int::MAX)?;
    let big = get_int(a, libc::SO_SNDBUF)?;
    // The search's upper end, capped: a host with net.core.wmem_max at INT_MAX makes SO_SNDBUF 2 GiB here.
    let top = (big / 2).min(CHUNK_SEARCH_MAX);
    // Payloads up to the search's end and the datagram probe's largest (below the default send buffer).
    let data = vec![0x5au8; top.max(sndbuf)];
    let mut buf = vec![0u8; 1 << 16];
    let one_skb = |c: usize, buf: &mut [u8]| -> Result<bool, String> {
        let sent = send(a, &data[..c])?;
        let before = outq(a)?;
        drain(b, buf, sent - 1)?;
        let after = outq(a)?;
        drain(b, buf, 1)?;
        Ok(sent == c && after == before)
    };
    let (mut lo, mut hi) = (1usize, top);
    if !one_skb(lo, &mut buf)? {
        return Err("a 1-byte write did not stay in one skb".into());
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if one_skb(mid, &mut buf)? {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let max_chunk = lo;

    // truesize of every stream payload length, stored as runs.
    let mut stream_ts = |c: usize| -> Result<usize, String> {
        send(a, &data[..c])?;
        let t = outq(a)?;
        drain(b, &mut buf, c)?;
        Ok(t)
    };
    let truesize_runs = runs(1, max_chunk, 1, &mut stream_ts)?;
    if outq(a)? != 0 {
        return Err("send memory still charged after calibration".into());
    }

    // truesize of every datagram length up to the largest datagram of a default send buffer (a socketpair is
    // connected both ways, so no queue limit applies; MSG_TRUNC reads drop the data without copying it).
    let (da, db) = pair(libc::SOCK_DGRAM)?;
    let (da, db) = (da.as_raw_fd(), db.as_raw_fd());
    let dgram_max = sndbuf.saturating_sub(32);
    let mut small = [0u8; 1];
    let mut dgram_ts = |c: usize| -> Result<usize, String> {
        send(da, &data[..c])?;
        let t = outq(da)?;
        // SAFETY: small is live and writable.
        let r = unsafe { libc::recv(db, small.as_mut_ptr().cast(), 1, libc::MSG_TRUNC) };
        if r < 0 {
            return Err(format!("recv: {}", last()));
        }
        Ok(t)
    };
    let dgram_truesize_runs = runs(0, dgram_max, 64, &mut dgram_ts)?;

    // max_dgram_qlen: an unconnected sender fills a bound receiver; it takes qlen + 1 datagrams.
    let rx = socket(libc::SOCK_DGRAM)?;
    let tx = socket(libc::SOCK_DGRAM)?;
    set_int(tx.as_raw_fd(), libc::SO_SNDBUF, libc::c_int::MAX)?;
    let mut name = [0u8; 2];
    name.copy_from_slice(&(libc::AF_UNIX as libc::sa_family_t).to_ne_bytes());
    // SAFETY: binding with the family alone (2 bytes) autobinds.
    if unsafe { libc::bind(rx.as_raw_fd(), name.as_ptr().cast(), 2) } < 0 {
        return Err(format!("bind (autobind): {}", last()));
    }
    let mut addr = [0u8; 128];
    let mut alen = addr.len() as libc::socklen_t;
    // SAFETY: addr and alen are live and sized.
    if unsafe { libc::getsockname(rx.as_raw_fd(), addr.as_mut_ptr().cast(), &mut alen) } < 0 {
        return Err(format!("getsockname: {}", last()));
    }
    let mut sent = 0u32;
    loop {
        // SAFETY: one byte from a live buffer to the address just read.
        let r = unsafe {
            libc::sendto(
                tx.as_raw_fd(),
                data.as_ptr().cast(),
                1,
                libc::MSG_NOSIGNAL,
                addr.as_ptr().cast(),
                alen,
            )
        };
        if r < 0 {
            break;
        }
        sent += 1;
        if sent > 100_000 {
            return Err("max_dgram_qlen: a receiver took 100000 datagrams".into());
        }
    }
    let max_dgram_qlen = if outq(tx.as_raw_fd())? >= get_int(tx.as_raw_fd(), libc::SO_SNDBUF)? {
        // The send buffer ran out first: fall back to the namespace's setting.
        proc_u32("/proc/sys/net/unix/max_dgram_qlen")?
    } else {
        sent.saturating_sub(1)
    };

    let oob = oob_probes()?;

    Ok(Params {
        inq_counts_dropped_oob: oob.0,
        atmark_at_consumed_oob: oob.1,
        read_stops_at_consumed_oob: oob.2,
        dgram_peer_checked_first: dgram_order_probe()?,
        gc_purges_cycle_queues: gc_probe()?,
        siocatmark_stream_only: {
            let d = socket(libc::SOCK_DGRAM)?;
            ioctl_int(d.as_raw_fd(), 0x8905).is_err()
        },
        sndbuf,
        rcvbuf,
        wmem_max,
        rmem_max,
        min_sndbuf,
        min_rcvbuf,
        somaxconn,
        max_dgram_qlen,
        max_chunk,
        truesize_runs,
        dgram_truesize_runs,
        overflow_uid: proc_u32("/proc/sys/kernel/overflowuid")?,
        overflow_gid: proc_u32("/proc/sys/kernel/overflowgid")?,
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        tick_us,
        protected_hardlinks: proc_u32("/proc/sys/fs/protected_hardlinks")? != 0,
    })
}
