//! `sockaddr_un` built by hand, exactly as the script language says: the literal's bytes are `sun_path`;
//! the length passed is `2 + len + 1` (len ≤ 107), `2 + 108` (len = 108, no NUL) or `2 + len` (len > 108).
//! (nix's `UnixAddr` refuses a 108-byte path the kernel accepts, so it cannot stand in the kernel's way.)

use crate::script::{AddrOut, Errno, Outcome, Value};
use nix::libc;

/// Room for the longest address a script may spell.
const CAP: usize = 2 + crate::script::MAX_ADDR + 1;

/// A sockaddr_un of any length.
pub struct RawAddr {
    buf: Vec<u8>,
    len: usize,
}

impl RawAddr {
    pub fn new(path: &[u8]) -> RawAddr {
        let mut buf = vec![0u8; CAP.max(std::mem::size_of::<libc::sockaddr_un>())];
        buf[..2].copy_from_slice(&(libc::AF_UNIX as libc::sa_family_t).to_ne_bytes());
        let n = path.len().min(CAP - 3);
        buf[2..2 + n].copy_from_slice(&path[..n]);
        let len = match n {
            0..=107 => 2 + n + 1,
            108 => 2 + 108,
            _ => 2 + n,
        };
        RawAddr { buf, len }
    }

    pub fn ptr(&self) -> *const libc::sockaddr {
        self.buf.as_ptr().cast()
    }

    pub fn socklen(&self) -> libc::socklen_t {
        self.len as libc::socklen_t
    }
}

/// An address the kernel filled into `buf` with returned length `len`, as `AddrOut`.
pub fn returned(buf: &[u8], len: libc::socklen_t) -> AddrOut {
    let copied = (len as usize).min(buf.len());
    AddrOut::Raw {
        path: buf.get(2..copied).unwrap_or(&[]).to_vec(),
        len,
    }
}

/// A buffer of `n` bytes for the kernel to fill with an address; never empty, so that `buf=0` still passes a
/// non-NULL pointer.
pub fn buffer(n: u32) -> Vec<u8> {
    vec![0u8; (n as usize).max(1)]
}

/// getsockname / getpeername with a buffer of `n` bytes (128 by default).
pub fn get_name(fd: libc::c_int, peer: bool, n: Option<u32>) -> Outcome {
    let n = n.unwrap_or(128);
    let mut buf = buffer(n);
    let mut len = n as libc::socklen_t;
    // SAFETY: buf outlives the call and holds at least `len` bytes.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, buf.as_mut_ptr().cast(), &mut len)
        } else {
            libc::getsockname(fd, buf.as_mut_ptr().cast(), &mut len)
        }
    };
    if r < 0 {
        return Outcome::err(Errno(nix::errno::Errno::last_raw()));
    }
    Outcome::of(Value::Addr(returned(&buf[..n as usize], len)))
}
