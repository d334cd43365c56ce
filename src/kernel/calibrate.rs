//! Measures the model's host parameters on the running kernel, once per process.

use crate::model::Params;
use nix::libc;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

static PARAMS: OnceLock<Result<Params, String>> = OnceLock::new();

/// The host parameters, measured on first use and then shared by every model in the process.
///
/// Measured on a thread set up as every executor thread is (its own network namespace where permitted), so
/// that per-namespace values such as somaxconn are the ones scripts see.
pub fn params() -> Result<Params, String> {
    PARAMS
        .get_or_init(|| {
            std::thread::spawn(|| {
                super::sys::init().map_err(|e| e.to_string())?;
                measure()
            })
            .join()
            .unwrap_or_else(|_| Err("the calibration thread panicked".into()))
        })
        .clone()
}

fn pair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(format!("socketpair: {}", nix::errno::Errno::last()));
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// SIOCOUTQ on an AF_UNIX socket: the send memory it has charged (sk_wmem_alloc), not a byte count.
fn outq(fd: RawFd) -> Result<usize, String> {
    let mut v: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut v) };
    if r < 0 {
        return Err(format!("ioctl(SIOCOUTQ): {}", nix::errno::Errno::last()));
    }
    Ok(v as usize)
}

fn send(fd: RawFd, buf: &[u8]) -> Result<usize, String> {
    // SAFETY: buf is live for the call.
    let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if r < 0 {
        return Err(format!("send: {}", nix::errno::Errno::last()));
    }
    Ok(r as usize)
}

fn recv(fd: RawFd, buf: &mut [u8]) -> Result<usize, String> {
    // SAFETY: buf is live and writable for the call.
    let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if r < 0 {
        return Err(format!("recv: {}", nix::errno::Errno::last()));
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

fn measure() -> Result<Params, String> {
    let (a, b) = pair()?;
    let (a, b) = (a.as_raw_fd(), b.as_raw_fd());
    let sndbuf = nix::sys::socket::getsockopt(
        // SAFETY: `a` stays open for this call.
        &unsafe { std::os::fd::BorrowedFd::borrow_raw(a) },
        nix::sys::socket::sockopt::SndBuf,
    )
    .map_err(|e| format!("getsockopt(SO_SNDBUF): {e}"))?;
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .map_err(|e| format!("read /proc/sys/net/core/somaxconn: {e}"))?
        .trim()
        .parse::<u32>()
        .map_err(|e| format!("parse somaxconn: {e}"))?;
    let data = vec![0x5au8; sndbuf];
    let mut buf = vec![0u8; sndbuf];

    // max_chunk: the largest write that stays one skb. Write c bytes and read back c-1: if the write made one
    // skb it is still charged in full; if two, the first one was freed.
    let one_skb = |c: usize, buf: &mut [u8]| -> Result<bool, String> {
        let sent = send(a, &data[..c])?;
        let before = outq(a)?;
        drain(b, buf, sent - 1)?;
        let after = outq(a)?;
        drain(b, buf, 1)?;
        Ok(sent == c && after == before)
    };
    let (mut lo, mut hi) = (1usize, sndbuf / 2);
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

    // truesize of every payload length, stored as runs.
    let mut truesize_runs: Vec<(usize, usize)> = Vec::new();
    for c in 1..=max_chunk {
        send(a, &data[..c])?;
        let t = outq(a)?;
        drain(b, &mut buf, c)?;
        if truesize_runs.last().map(|r| r.1) != Some(t) {
            truesize_runs.push((c, t));
        }
    }
    if outq(a)? != 0 {
        return Err("send memory still charged after calibration".into());
    }
    Ok(Params {
        sndbuf,
        somaxconn,
        max_chunk,
        truesize_runs,
    })
}
