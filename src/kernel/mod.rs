//! The kernel executor: runs one call at a time on real non-blocking AF_UNIX sockets in a private directory.
//!
//! Paths in scripts are relative to the script's own directory. To hand the kernel exactly the script's
//! `sun_path` bytes, each executor thread gets its own fs context (`unshare(CLONE_FS)` once per thread) and
//! `fchdir`s into the script's directory for the duration of each path call, then back, so scripts run in
//! parallel threads and the rest of the program keeps its working directory.
//! Closed names map to an fd number no process can have open (`CLOSED_FD`), so a stale name never reaches a
//! reused descriptor and the kernel itself answers EBADF / POLLNVAL.

mod addr;
pub mod calibrate;

use crate::script::{Call, Errno, Events, How, Name, Outcome};
use nix::libc;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

pub use addr::RawAddr;

/// An fd number above the kernel's hard ceiling on descriptors (`fs.nr_open` ≤ 2^31 - 64), so never open.
pub const CLOSED_FD: RawFd = i32::MAX;

thread_local! {
    /// This thread's own working directory from before its first script call (the thread gets its own fs
    /// context on first use, so other threads are unaffected).
    static HOME: std::cell::OnceCell<OwnedFd> = const { std::cell::OnceCell::new() };
}

/// While alive, this thread's cwd is an executor's private directory; dropping it restores the thread's cwd,
/// so relative paths in the rest of the program mean what they meant before.
struct InDir;

impl Drop for InDir {
    fn drop(&mut self) {
        HOME.with(|h| {
            if let Some(home) = h.get() {
                // Best effort: the home directory fd stays open, so this only fails if it was removed.
                let _ = nix::unistd::fchdir(home);
            }
        });
    }
}

/// Errors of the executor itself (not of the calls it runs).
#[derive(Debug)]
pub enum KernelError {
    /// The private directory or the thread's fs context could not be set up.
    Setup(String),
    /// A name the executor does not know (the checker rejects these first).
    UnknownName(Name),
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::Setup(m) => write!(f, "cannot set up the kernel executor: {m}"),
            KernelError::UnknownName(n) => write!(f, "unknown socket name `{n}`"),
        }
    }
}

impl std::error::Error for KernelError {}

enum Slot {
    Open(OwnedFd),
    Closed,
}

/// Real sockets for one script at a time.
pub struct Kernel {
    dir: tempfile::TempDir,
    dirfd: OwnedFd,
    names: HashMap<Name, Slot>,
    /// Sockets whose name was taken by a later creating call: kept open, as in the model.
    orphans: Vec<OwnedFd>,
    buf: Vec<u8>,
}

fn errno() -> Errno {
    Errno(nix::errno::Errno::last_raw())
}

fn ok_or_errno(r: libc::c_int) -> Outcome {
    if r < 0 {
        Outcome::Err(errno())
    } else {
        Outcome::Ok
    }
}

impl Kernel {
    /// A new executor with a fresh private directory.
    pub fn new() -> Result<Kernel, KernelError> {
        let dir = tempfile::Builder::new()
            .prefix("udsim-")
            .tempdir()
            .map_err(|e| KernelError::Setup(format!("temp dir: {e}")))?;
        let dirfd = nix::fcntl::open(
            dir.path(),
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC
                | nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| KernelError::Setup(format!("open {}: {e}", dir.path().display())))?;
        Ok(Kernel {
            dir,
            dirfd,
            names: HashMap::new(),
            orphans: Vec::new(),
            buf: Vec::new(),
        })
    }

    /// The private directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Closes every socket and empties the private directory, ready for the next script (cheaper than a new
    /// executor: the fuzz targets reuse one per process).
    pub fn reset(&mut self) -> Result<(), KernelError> {
        self.names.clear();
        self.orphans.clear();
        let entries = std::fs::read_dir(self.dir.path())
            .map_err(|e| KernelError::Setup(format!("read dir: {e}")))?;
        for e in entries.flatten() {
            let p = e.path();
            let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.map_err(|e| KernelError::Setup(format!("clean {}: {e}", p.display())))?;
        }
        Ok(())
    }

    /// Makes this thread's cwd the private directory until the guard drops (own fs context first, so other
    /// threads are unaffected).
    fn enter_dir(&self) -> Result<InDir, KernelError> {
        HOME.with(|h| -> Result<(), KernelError> {
            if h.get().is_none() {
                let home = nix::fcntl::open(
                    ".",
                    nix::fcntl::OFlag::O_PATH
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| KernelError::Setup(format!("open the working directory: {e}")))?;
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                    .map_err(|e| KernelError::Setup(format!("unshare(CLONE_FS): {e}")))?;
                let _ = h.set(home);
            }
            Ok(())
        })?;
        nix::unistd::fchdir(&self.dirfd).map_err(|e| KernelError::Setup(format!("fchdir: {e}")))?;
        Ok(InDir)
    }

    fn fd(&self, name: &str) -> Result<RawFd, KernelError> {
        match self.names.get(name) {
            Some(Slot::Open(fd)) => Ok(fd.as_raw_fd()),
            Some(Slot::Closed) => Ok(CLOSED_FD),
            None => Err(KernelError::UnknownName(name.to_string())),
        }
    }

    fn adopt(&mut self, fd: RawFd, name: &str) -> Outcome {
        // SAFETY: `fd` was just returned by socket()/accept4() and is owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Some(Slot::Open(old)) = self.names.insert(name.to_string(), Slot::Open(owned)) {
            self.orphans.push(old);
        }
        Outcome::Created
    }

    /// Whether `name` is known (open or closed).
    pub fn knows(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// The raw fd behind a name (`CLOSED_FD` once closed), for tools that inspect sockets further.
    pub fn raw_fd(&self, name: &str) -> Option<RawFd> {
        self.fd(name).ok()
    }

    /// Runs one call. A creating call that succeeds names its socket `new_name`.
    pub fn run(&mut self, call: &Call, new_name: &str) -> Result<Outcome, KernelError> {
        // SAFETY (all libc calls below): every pointer passed points into a live buffer of at least the
        // length passed with it; fds are ours or CLOSED_FD.
        let out = match call {
            Call::Socket => {
                let fd = unsafe {
                    libc::socket(
                        libc::AF_UNIX,
                        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        0,
                    )
                };
                if fd < 0 {
                    Outcome::Err(errno())
                } else {
                    self.adopt(fd, new_name)
                }
            }
            Call::Bind(s, a) => {
                let fd = self.fd(s)?;
                let _in_dir = self.enter_dir()?;
                let ra = RawAddr::new(a);
                ok_or_errno(unsafe { libc::bind(fd, ra.ptr(), ra.socklen()) })
            }
            Call::Connect(s, a) => {
                let fd = self.fd(s)?;
                let _in_dir = self.enter_dir()?;
                let ra = RawAddr::new(a);
                ok_or_errno(unsafe { libc::connect(fd, ra.ptr(), ra.socklen()) })
            }
            Call::Listen(s, n) => ok_or_errno(unsafe { libc::listen(self.fd(s)?, *n) }),
            Call::Accept(s) => {
                let fd = unsafe {
                    libc::accept4(
                        self.fd(s)?,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    )
                };
                if fd < 0 {
                    Outcome::Err(errno())
                } else {
                    self.adopt(fd, new_name)
                }
            }
            Call::Write(s, d) => {
                let r = unsafe {
                    libc::send(self.fd(s)?, d.as_ptr().cast(), d.len(), libc::MSG_NOSIGNAL)
                };
                if r < 0 {
                    Outcome::Err(errno())
                } else {
                    Outcome::Wrote(r as usize)
                }
            }
            Call::Read(s, n) => {
                let fd = self.fd(s)?;
                if self.buf.len() < *n {
                    self.buf.resize(*n, 0);
                }
                let r = unsafe { libc::recv(fd, self.buf.as_mut_ptr().cast(), *n, 0) };
                if r < 0 {
                    Outcome::Err(errno())
                } else {
                    Outcome::Data(self.buf[..r as usize].to_vec())
                }
            }
            Call::Shutdown(s, h) => {
                let how = match h {
                    How::Rd => libc::SHUT_RD,
                    How::Wr => libc::SHUT_WR,
                    How::RdWr => libc::SHUT_RDWR,
                };
                ok_or_errno(unsafe { libc::shutdown(self.fd(s)?, how) })
            }
            Call::Close(s) => match self.names.get_mut(s) {
                Some(slot @ Slot::Open(_)) => {
                    let Slot::Open(fd) = std::mem::replace(slot, Slot::Closed) else {
                        unreachable!("matched Open above")
                    };
                    ok_or_errno(unsafe { libc::close(fd.into_raw_fd()) })
                }
                Some(Slot::Closed) => ok_or_errno(unsafe { libc::close(CLOSED_FD) }),
                None => return Err(KernelError::UnknownName(s.clone())),
            },
            Call::Unlink(a) => {
                let _in_dir = self.enter_dir()?;
                let end = a.iter().position(|&b| b == 0).unwrap_or(a.len());
                let c = CString::new(&a[..end]).unwrap_or_default();
                ok_or_errno(unsafe { libc::unlink(c.as_ptr()) })
            }
            Call::GetSockName(s) => addr::get_name(self.fd(s)?, false),
            Call::GetPeerName(s) => addr::get_name(self.fd(s)?, true),
            Call::Poll(s) => {
                let mut p = libc::pollfd {
                    fd: self.fd(s)?,
                    events: libc::POLLIN | libc::POLLPRI | libc::POLLOUT | libc::POLLRDHUP,
                    revents: 0,
                };
                let r = unsafe { libc::poll(&mut p, 1, 0) };
                if r < 0 {
                    Outcome::Err(errno())
                } else {
                    Outcome::Ready(events(p.revents))
                }
            }
        };
        Ok(out)
    }
}

/// Maps poll revents to the script's flags.
fn events(r: libc::c_short) -> Events {
    let mut e = Events::NONE;
    for (bit, flag) in [
        (libc::POLLIN, Events::IN),
        (libc::POLLPRI, Events::PRI),
        (libc::POLLOUT, Events::OUT),
        (libc::POLLERR, Events::ERR),
        (libc::POLLHUP, Events::HUP),
        (libc::POLLRDHUP, Events::RDHUP),
        (libc::POLLNVAL, Events::NVAL),
    ] {
        if r & bit != 0 {
            e |= flag;
        }
    }
    e
}
