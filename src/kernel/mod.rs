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

use crate::script::{Addr, Call, Errno, Events, Name, Outcome, Received, SockSpec, Value, STREAM};
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
    /// A call this executor cannot run yet.
    Unsupported(String),
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::Setup(m) => write!(f, "cannot set up the kernel executor: {m}"),
            KernelError::UnknownName(n) => write!(f, "unknown socket name `{n}`"),
            KernelError::Unsupported(c) => write!(f, "the kernel executor cannot run `{c}` yet"),
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
    /// Descriptors the last call created, waiting for `name_new`.
    fresh: Vec<OwnedFd>,
    buf: Vec<u8>,
}

fn errno() -> Errno {
    Errno(nix::errno::Errno::last_raw())
}

fn ok_or_errno(r: libc::c_int) -> Outcome {
    if r < 0 {
        Outcome::err(errno())
    } else {
        Outcome::OK
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
            fresh: Vec::new(),
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
        self.fresh.clear();
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

    /// Keeps a descriptor the current call created until `name_new` names it.
    fn adopt(&mut self, fd: RawFd) {
        // SAFETY: `fd` was just returned by the kernel to this call and is owned by nobody else.
        self.fresh.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }

    /// Names the descriptors the last call created, in order; any left unnamed stay open, unreachable.
    pub fn name_new(&mut self, names: &[Name]) {
        let fresh = std::mem::take(&mut self.fresh);
        for (i, fd) in fresh.into_iter().enumerate() {
            match names.get(i) {
                Some(n) => {
                    if let Some(Slot::Open(old)) = self.names.insert(n.clone(), Slot::Open(fd)) {
                        self.orphans.push(old);
                    }
                }
                None => self.orphans.push(fd),
            }
        }
    }

    /// Whether `name` is known (open or closed).
    pub fn knows(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// The raw fd behind a name (`CLOSED_FD` once closed), for tools that inspect sockets further.
    pub fn raw_fd(&self, name: &str) -> Option<RawFd> {
        self.fd(name).ok()
    }

    /// Runs one call. Descriptors it creates are named afterwards with `name_new`.
    pub fn run(&mut self, call: &Call) -> Result<Outcome, KernelError> {
        self.orphans.append(&mut self.fresh);
        // SAFETY (all libc calls below): every pointer passed points into a live buffer of at least the
        // length passed with it; fds are ours or CLOSED_FD.
        let out = match call {
            Call::Socket(spec) if *spec == SockSpec::of(STREAM) => {
                let fd = unsafe {
                    libc::socket(
                        libc::AF_UNIX,
                        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        0,
                    )
                };
                if fd < 0 {
                    Outcome::err(errno())
                } else {
                    self.adopt(fd);
                    Outcome::of(Value::Created)
                }
            }
            Call::Bind(s, Addr::Path(a)) => {
                let fd = self.fd(s)?;
                let _in_dir = self.enter_dir()?;
                let ra = RawAddr::new(a);
                ok_or_errno(unsafe { libc::bind(fd, ra.ptr(), ra.socklen()) })
            }
            Call::Connect(s, Addr::Path(a)) => {
                let fd = self.fd(s)?;
                let _in_dir = self.enter_dir()?;
                let ra = RawAddr::new(a);
                ok_or_errno(unsafe { libc::connect(fd, ra.ptr(), ra.socklen()) })
            }
            Call::Listen(s, n) => ok_or_errno(unsafe { libc::listen(self.fd(s)?, *n) }),
            Call::Accept(s, false, None) => {
                let mut buf = [0u8; 128];
                let mut len = buf.len() as libc::socklen_t;
                let fd = unsafe {
                    libc::accept4(
                        self.fd(s)?,
                        buf.as_mut_ptr().cast(),
                        &mut len,
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    )
                };
                if fd < 0 {
                    Outcome::err(errno())
                } else {
                    self.adopt(fd);
                    Outcome::of(Value::Accepted(addr::returned(&buf, len)))
                }
            }
            Call::Write(s, d) => {
                let r = unsafe {
                    libc::send(self.fd(s)?, d.as_ptr().cast(), d.len(), libc::MSG_NOSIGNAL)
                };
                if r < 0 {
                    Outcome::err(errno())
                } else {
                    Outcome::of(Value::Wrote(r as usize))
                }
            }
            Call::Read(s, n) => {
                let fd = self.fd(s)?;
                if self.buf.len() < *n {
                    self.buf.resize(*n, 0);
                }
                let r = unsafe { libc::recv(fd, self.buf.as_mut_ptr().cast(), *n, 0) };
                if r < 0 {
                    Outcome::err(errno())
                } else {
                    Outcome::of(Value::Recv(Received::bytes(
                        self.buf[..r as usize].to_vec(),
                    )))
                }
            }
            Call::Shutdown(s, h) => ok_or_errno(unsafe { libc::shutdown(self.fd(s)?, h.0) }),
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
            Call::GetSockName(s, None) => addr::get_name(self.fd(s)?, false),
            Call::GetPeerName(s, None) => addr::get_name(self.fd(s)?, true),
            Call::Poll(s) => {
                let mut p = libc::pollfd {
                    fd: self.fd(s)?,
                    events: libc::POLLIN | libc::POLLPRI | libc::POLLOUT | libc::POLLRDHUP,
                    revents: 0,
                };
                let r = unsafe { libc::poll(&mut p, 1, 0) };
                if r < 0 {
                    Outcome::err(errno())
                } else {
                    Outcome::of(Value::Ready(events(p.revents)))
                }
            }
            _ => return Err(KernelError::Unsupported(crate::script::fmt_call(call))),
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
