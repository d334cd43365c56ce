//! Socket options (SOL_SOCKET) and the queue ioctls.

use super::msg::creds_of;
use crate::script::{Errno, Ioctl, OptVal, Outcome, SockOpt, Value};
use nix::libc;
use std::os::fd::RawFd;
use std::time::Duration;

/// SIOCATMARK (`<linux/sockios.h>`).
const SIOCATMARK: libc::c_ulong = 0x8905;

fn errno() -> Errno {
    Errno(nix::errno::Errno::last_raw())
}

/// A timeval in whole milliseconds, rounded up.
fn ms_of(tv: &libc::timeval) -> u64 {
    (tv.tv_sec.max(0) as u64) * 1000 + (tv.tv_usec.max(0) as u64).div_ceil(1000)
}

fn timeval(ms: u64) -> libc::timeval {
    libc::timeval {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
    }
}

// SAFETY (all below): each buffer passed is live and its size is the length passed.

fn get<T>(fd: RawFd, opt: SockOpt) -> Result<T, Errno> {
    let mut v: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt.0,
            (&mut v as *mut T).cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(v)
    }
}

fn set<T>(fd: RawFd, opt: SockOpt, v: &T) -> Outcome {
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt.0,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Outcome::err(errno())
    } else {
        Outcome::OK
    }
}

/// `getsockopt(S, OPT)`.
pub fn getsockopt(fd: RawFd, opt: SockOpt) -> Outcome {
    let v = if opt == SockOpt::PEERCRED {
        get::<libc::ucred>(fd, opt).map(|c| Value::Cred(creds_of(&c)))
    } else if opt.is_timeout() {
        get::<libc::timeval>(fd, opt).map(|tv| Value::Ms(ms_of(&tv)))
    } else if opt == SockOpt::ERROR {
        get::<libc::c_int>(fd, opt).map(|e| {
            if e == 0 {
                Value::Int(0)
            } else {
                Value::SoError(Errno(e))
            }
        })
    } else {
        get::<libc::c_int>(fd, opt).map(|v| Value::Int(i64::from(v)))
    };
    Outcome::of(v.unwrap_or_else(Value::Err))
}

/// `setsockopt(S, OPT, VALUE)`: an integer as an int, a duration as a timeval.
pub fn setsockopt(fd: RawFd, opt: SockOpt, v: OptVal) -> Outcome {
    match v {
        OptVal::Int(i) => set(fd, opt, &(i as libc::c_int)),
        OptVal::Ms(ms) => set(fd, opt, &timeval(ms)),
    }
}

/// SO_RCVTIMEO or SO_SNDTIMEO as a duration (zero: none, or the call failed).
pub fn timeout(fd: RawFd, opt: SockOpt) -> Duration {
    get::<libc::timeval>(fd, opt).map_or(Duration::ZERO, |tv| {
        Duration::from_secs(tv.tv_sec.max(0) as u64)
            + Duration::from_micros(tv.tv_usec.max(0) as u64)
    })
}

/// Sets a timeout (the executor's 100 ms for blocking sockets).
pub fn set_timeout(fd: RawFd, opt: SockOpt, ms: u64) -> Result<(), Errno> {
    match set(fd, opt, &timeval(ms)).value {
        Value::Err(e) => Err(e),
        _ => Ok(()),
    }
}

/// `ioctl(S, REQ)`.
pub fn ioctl(fd: RawFd, req: Ioctl) -> Outcome {
    let req = match req {
        Ioctl::InQ => libc::FIONREAD as libc::c_ulong,
        Ioctl::OutQ => libc::TIOCOUTQ as libc::c_ulong,
        Ioctl::AtMark => SIOCATMARK,
    };
    let mut v: libc::c_int = 0;
    let r = unsafe { libc::ioctl(fd, req as _, &mut v) };
    if r < 0 {
        Outcome::err(errno())
    } else {
        Outcome::of(Value::Int(i64::from(v)))
    }
}
