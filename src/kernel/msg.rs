//! Sending and receiving: `send`, `sendto`, `sendmsg` (SCM_RIGHTS, SCM_CREDENTIALS), `recv`, `recvfrom`,
//! `recvmsg` (every control message parsed, descriptors the kernel installed handed back for naming).

use super::addr;
use super::sys::own_pid;
use crate::script::{AddrOut, Creds, Errno, Outcome, Pid, Received, SockAddrBytes, Value};
use nix::libc;
use std::os::fd::RawFd;

/// `recvfrom` and `recvmsg` address buffer: a `sockaddr_un`.
pub const FROM_BUF: u32 = 110;
/// `recvmsg` control buffer by default.
pub const CONTROL_SPACE: usize = 256;

fn errno() -> Errno {
    Errno(nix::errno::Errno::last_raw())
}

fn sent(r: isize) -> Outcome {
    if r < 0 {
        Outcome::err(errno())
    } else {
        Outcome::of(Value::Wrote(r as usize))
    }
}

/// A pid as scripts see it.
pub fn pid_of(p: i32) -> Pid {
    if p == own_pid() {
        Pid::Own
    } else {
        Pid::Num(i64::from(p))
    }
}

/// A uid or gid as scripts see it: `(uid_t)-1` is -1.
pub fn id_of(x: u32) -> i64 {
    if x == u32::MAX {
        -1
    } else {
        i64::from(x)
    }
}

/// Credentials as scripts see them.
pub fn creds_of(c: &libc::ucred) -> Creds {
    Creds {
        pid: pid_of(c.pid),
        uid: id_of(c.uid),
        gid: id_of(c.gid),
    }
}

// SAFETY (all below): every pointer passed points into a live buffer of at least the length passed with it.

pub fn send(fd: RawFd, d: &[u8], flags: u32) -> Outcome {
    sent(unsafe { libc::send(fd, d.as_ptr().cast(), d.len(), flags as libc::c_int) })
}

pub fn sendto(fd: RawFd, d: &[u8], to: &SockAddrBytes, flags: u32) -> Outcome {
    sent(unsafe {
        libc::sendto(
            fd,
            d.as_ptr().cast(),
            d.len(),
            flags as libc::c_int,
            to.buf.as_ptr().cast(),
            to.len,
        )
    })
}

/// A control buffer, aligned for `cmsghdr`, of at least `n` bytes.
fn control(n: usize) -> Vec<u64> {
    vec![0u64; n.div_ceil(8).max(1)]
}

fn put_cmsg(buf: &mut [u8], off: usize, ty: libc::c_int, data: &[u8]) -> usize {
    // SAFETY: CMSG_LEN / CMSG_SPACE are pure arithmetic.
    let (len, space) = unsafe {
        (
            libc::CMSG_LEN(data.len() as u32) as usize,
            libc::CMSG_SPACE(data.len() as u32) as usize,
        )
    };
    let hdr = libc::cmsghdr {
        cmsg_len: len as _,
        cmsg_level: libc::SOL_SOCKET,
        cmsg_type: ty,
    };
    let h = std::mem::size_of::<libc::cmsghdr>();
    // SAFETY: the buffer has room for the header at `off` (sized by the caller with CMSG_SPACE).
    unsafe { std::ptr::write_unaligned(buf[off..off + h].as_mut_ptr().cast(), hdr) };
    buf[off + h..off + h + data.len()].copy_from_slice(data);
    off + space
}

/// `sendmsg` with an optional destination, one SCM_RIGHTS message with `rights` (in order) and one
/// SCM_CREDENTIALS message.
pub fn sendmsg(
    fd: RawFd,
    d: &[u8],
    to: Option<&SockAddrBytes>,
    rights: Option<&[RawFd]>,
    creds: Option<libc::ucred>,
    flags: u32,
) -> Outcome {
    let rights_bytes: Option<Vec<u8>> =
        rights.map(|r| r.iter().flat_map(|fd| fd.to_ne_bytes()).collect());
    let creds_bytes: Option<[u8; 12]> = creds.map(|c| {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&c.pid.to_ne_bytes());
        b[4..8].copy_from_slice(&c.uid.to_ne_bytes());
        b[8..].copy_from_slice(&c.gid.to_ne_bytes());
        b
    });
    // SAFETY: CMSG_SPACE is pure arithmetic.
    let space = |n: usize| unsafe { libc::CMSG_SPACE(n as u32) as usize };
    let total = rights_bytes.as_ref().map_or(0, |r| space(r.len()))
        + creds_bytes.as_ref().map_or(0, |c| space(c.len()));
    let mut ctl = control(total);
    {
        // SAFETY: viewing the u64 buffer as bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(ctl.as_mut_ptr().cast::<u8>(), ctl.len() * 8) };
        let mut off = 0;
        if let Some(r) = &rights_bytes {
            off = put_cmsg(bytes, off, libc::SCM_RIGHTS, r);
        }
        if let Some(c) = &creds_bytes {
            put_cmsg(bytes, off, libc::SCM_CREDENTIALS, c);
        }
    }
    let mut iov = libc::iovec {
        iov_base: d.as_ptr() as *mut libc::c_void,
        iov_len: d.len(),
    };
    // SAFETY: msghdr is plain data; every field set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some(a) = to {
        msg.msg_name = a.buf.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = a.len;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if total > 0 {
        msg.msg_control = ctl.as_mut_ptr().cast();
        msg.msg_controllen = total as _;
    }
    sent(unsafe { libc::sendmsg(fd, &msg, flags as libc::c_int) })
}

fn room(buf: &mut Vec<u8>, n: usize) {
    if buf.len() < n.max(1) {
        buf.resize(n.max(1), 0);
    }
}

/// `recv(S, N, FLAGS)`: the bytes copied (at most N) and the return value (more with MSG_TRUNC).
pub fn recv(fd: RawFd, n: usize, flags: u32, buf: &mut Vec<u8>) -> Outcome {
    room(buf, n);
    let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), n, flags as libc::c_int) };
    if r < 0 {
        return Outcome::err(errno());
    }
    let ret = r as usize;
    Outcome::of(Value::Recv(Received {
        data: buf[..ret.min(n)].to_vec(),
        ret,
        ..Received::default()
    }))
}

/// `recvfrom(S, N, FLAGS, buf=K)`.
pub fn recvfrom(fd: RawFd, n: usize, flags: u32, k: u32, buf: &mut Vec<u8>) -> Outcome {
    room(buf, n);
    let mut abuf = addr::buffer(k);
    let mut alen = k as libc::socklen_t;
    let r = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            n,
            flags as libc::c_int,
            abuf.as_mut_ptr().cast(),
            &mut alen,
        )
    };
    if r < 0 {
        return Outcome::err(errno());
    }
    let ret = r as usize;
    Outcome::of(Value::Recv(Received {
        data: buf[..ret.min(n)].to_vec(),
        ret,
        from: from(&abuf[..k as usize], alen),
        ..Received::default()
    }))
}

fn from(abuf: &[u8], len: libc::socklen_t) -> AddrOut {
    if len == 0 {
        AddrOut::NONE
    } else {
        addr::returned(abuf, len)
    }
}

/// `recvmsg(S, N, FLAGS, space=K, buf=B)`: the outcome and the descriptors the kernel installed, in order.
pub fn recvmsg(
    fd: RawFd,
    n: usize,
    flags: u32,
    space: usize,
    k: u32,
    buf: &mut Vec<u8>,
) -> (Outcome, Vec<RawFd>) {
    room(buf, n);
    let mut abuf = addr::buffer(k);
    let mut ctl = control(space);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: n,
    };
    // SAFETY: msghdr is plain data; every field set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = abuf.as_mut_ptr().cast();
    msg.msg_namelen = k;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if space > 0 {
        msg.msg_control = ctl.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
    }
    let r = unsafe { libc::recvmsg(fd, &mut msg, flags as libc::c_int) };
    if r < 0 {
        return (Outcome::err(errno()), Vec::new());
    }
    let ret = r as usize;
    let used = if space > 0 {
        (msg.msg_controllen as usize).min(space)
    } else {
        0
    };
    // SAFETY: viewing the first `used` bytes of the u64 buffer as bytes.
    let ctl_bytes = unsafe { std::slice::from_raw_parts(ctl.as_ptr().cast::<u8>(), used) };
    let (fds, creds) = parse_control(ctl_bytes);
    let out = Outcome::of(Value::Recv(Received {
        data: buf[..ret.min(n)].to_vec(),
        ret,
        from: from(&abuf[..k as usize], msg.msg_namelen),
        flags: msg.msg_flags as u32,
        rights: fds.len(),
        creds,
    }));
    (out, fds)
}

/// Every control message in the bytes the kernel filled: the descriptors of each SCM_RIGHTS message (only
/// those present: with MSG_CTRUNC the kernel shortens the message to the descriptors it installed), and
/// SCM_CREDENTIALS when whole (one cut short is not reported).
fn parse_control(ctl: &[u8]) -> (Vec<RawFd>, Option<Creds>) {
    let h = std::mem::size_of::<libc::cmsghdr>();
    let mut fds = Vec::new();
    let mut creds = None;
    let mut off = 0;
    while off + h <= ctl.len() {
        // SAFETY: `h` bytes at `off` are in the buffer.
        let hdr: libc::cmsghdr = unsafe { std::ptr::read_unaligned(ctl[off..].as_ptr().cast()) };
        let len = hdr.cmsg_len as usize;
        if len < h {
            break;
        }
        let data = &ctl[off + h..(off + len).min(ctl.len())];
        if hdr.cmsg_level == libc::SOL_SOCKET {
            match hdr.cmsg_type {
                libc::SCM_RIGHTS => fds.extend(
                    data.chunks_exact(4)
                        .map(|c| RawFd::from_ne_bytes([c[0], c[1], c[2], c[3]])),
                ),
                libc::SCM_CREDENTIALS if data.len() >= std::mem::size_of::<libc::ucred>() => {
                    // SAFETY: a whole ucred is in `data`.
                    let c: libc::ucred = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                    creds = Some(creds_of(&c));
                }
                _ => {}
            }
        }
        off += len.div_ceil(std::mem::size_of::<usize>()) * std::mem::size_of::<usize>();
    }
    (fds, creds)
}
