//! The kernel executor: runs one call at a time on real AF_UNIX sockets in a private directory.
//!
//! Paths in scripts are relative to the script's own directory. To hand the kernel exactly the script's
//! `sun_path` bytes, each executor thread gets its own fs context (`unshare(CLONE_FS)` once per thread, umask
//! 022) and `fchdir`s into the script's directory for the duration of each path call, then back, so scripts
//! run in parallel threads and the rest of the program keeps its working directory. Each executor has a
//! private network namespace where permitted (made when it is created, entered by the thread that runs its
//! calls before any socket is created), so abstract names are private to its scripts (`Kernel::isolated`
//! says whether; a script that sent descriptors, which a cycle may keep in flight with their names until the
//! kernel's garbage collector runs, leaves the next script a fresh namespace). The thread blocks SIGPIPE,
//! which the executor consumes right after every call that can raise it (`send`, `sendto`, `sendmsg`; `write` passes
//! MSG_NOSIGNAL and the other calls raise none), so that it is reported (` with SIGPIPE`), never kills the
//! process and never reaches the next call.
//!
//! `setcred` acts on the script's thread only (raw system calls); the credentials it sets are in force during
//! the script's calls, and the thread is itself again between calls and after `reset`.
//!
//! Blocking sockets get SO_RCVTIMEO / SO_SNDTIMEO of 100 ms; calls on them are timed against the timeout read
//! just before the call (` after timeout` when they took at least half of it). Whether a socket blocks is
//! cached per open file, so calls on non-blocking sockets cost no extra system call.
//! Closed names map to an fd number no process can have open (`CLOSED_FD`), so a stale name never reaches a
//! reused descriptor and the kernel itself answers EBADF / POLLNVAL.

mod addr;
pub mod calibrate;
mod files;
mod msg;
mod opt;
mod sys;

use crate::script::{
    Addr, Call, Errno, Events, Name, OptVal, Outcome, Pid, SockAddrBytes, SockOpt, SockSpec, Value,
    MSG_NOSIGNAL,
};
use nix::libc;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

pub use addr::RawAddr;

/// An fd number above the kernel's hard ceiling on descriptors (`fs.nr_open` ≤ 2^31 - 64), so never open.
pub const CLOSED_FD: RawFd = i32::MAX;

/// SO_RCVTIMEO and SO_SNDTIMEO of every blocking socket the executor creates.
pub const BLOCKING_TIMEOUT_MS: u64 = 100;

/// Whether `setcred` can work on this thread: effective uid 0.
pub fn can_setcred() -> bool {
    sys::can_setcred()
}

/// Gives the calling thread a descriptor table of its own holding only standard input, output and error
/// (`close_range(3, ~0, CLOSE_RANGE_UNSHARE)`): for a thread made to run scripts beside others. In a shared
/// table, another thread that lists the table (`/proc/self/fd`, as `Kernel::fd_budget` does) takes a
/// reference on every file in it for a moment, so a script's `close` of its last descriptor to a listener
/// could return before the listener was released (its pending clients not yet reset): a divergence about one
/// script in 100,000 with `--jobs 2`. Its own table also gives the thread's scripts the whole RLIMIT_NOFILE.
/// False (nothing changed) where the kernel refuses.
pub fn private_fd_table() -> bool {
    const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;
    // SAFETY: close_range only closes descriptors of this thread's new table, none of which Rust code of this
    // thread owns yet (it is called first thing in a new thread; the others keep theirs in their table).
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_UNSHARE,
        )
    };
    r == 0
}

/// Whether `private_fd_table` works here (tried once, on a thread made for it).
pub fn private_fd_tables_work() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| std::thread::spawn(private_fd_table).join().unwrap_or(false))
}

/// Whether scripts run on the calling thread have abstract names to themselves (see `Kernel::isolated`);
/// sets the thread up as an executor thread if it is not one yet.
pub fn thread_isolated() -> bool {
    sys::with(|t| t.isolated).unwrap_or(false)
}

/// While alive, this thread's cwd is an executor's private directory; dropping it restores the thread's cwd,
/// so relative paths in the rest of the program mean what they meant before.
struct InDir;

impl Drop for InDir {
    fn drop(&mut self) {
        // Best effort: the home directory fd stays open, so this only fails if it was removed.
        sys::with_existing(|t| {
            let _ = sys::as_root(|| nix::unistd::fchdir(&t.home));
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
    /// An address the executor cannot hand the kernel (`@autoN` the checker did not resolve).
    Unresolved(String),
    /// A call the contract rules out that only the executor can recognise (e.g. a timeout of `0ms` on a
    /// blocking socket, which would let a call wait for ever).
    Script(String),
    /// The host is no longer what calibration measured (an administrator tuned a sysctl during the run):
    /// from here on the kernel's results follow the new value and the model's the old, so the run stops.
    HostChanged(String),
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::Setup(m) => write!(f, "cannot set up the kernel executor: {m}"),
            KernelError::UnknownName(n) => write!(f, "unknown socket name `{n}`"),
            KernelError::Unsupported(c) => write!(f, "the kernel executor cannot run `{c}` yet"),
            KernelError::Unresolved(c) => {
                write!(
                    f,
                    "`{c}`: an address the checker should have resolved first"
                )
            }
            KernelError::Script(m) => write!(f, "script error: {m}"),
            KernelError::HostChanged(m) => write!(
                f,
                "environment error: the host changed during the run: {m}; the model still has the value \
                 calibration measured at start, so results from here on would be reported against the wrong \
                 parameter (run again to calibrate anew)"
            ),
        }
    }
}

impl std::error::Error for KernelError {}

/// One open file (socket) as far as blocking goes: a `dup` and a descriptor received for the same socket
/// share it, since O_NONBLOCK belongs to the open file.
struct FileState {
    blocking: bool,
    /// The socket's inode, once asked for (to recognise it in a received descriptor).
    ino: Option<u64>,
}

struct Sock {
    fd: OwnedFd,
    /// Index into `Kernel::files`.
    file: usize,
}

enum Slot {
    Open(Sock),
    Closed,
}

/// A call on a blocking socket, timed against the timeout getsockopt reported just before it.
struct Timer {
    start: Instant,
    half: Duration,
}

impl Timer {
    fn finish(t: Option<Timer>, out: &mut Outcome) {
        if let Some(t) = t {
            out.waited = t.start.elapsed() >= t.half;
        }
    }
}

/// Real sockets for one script at a time.
pub struct Kernel {
    dir: tempfile::TempDir,
    dirfd: OwnedFd,
    names: HashMap<Name, Slot>,
    /// Sockets whose name was taken by a later creating call: kept open, as in the model.
    orphans: Vec<OwnedFd>,
    /// Descriptors the last call created, waiting for `name_new`.
    fresh: Vec<Sock>,
    files: Vec<FileState>,
    buf: Vec<u8>,
    /// This executor's own network namespace (`None`: not permitted, abstract names are shared).
    netns: Option<sys::Netns>,
    /// Descriptors were sent in this script: some may stay in flight in a cycle only the kernel's garbage
    /// collector frees, later, with the abstract names they hold; the next script gets a fresh namespace.
    sent_rights: bool,
    /// SO_SNDBUF and SO_RCVBUF that calibration measured for a new socket (`None`: not calibrated), held to
    /// detect a host tuned during the run (rule: every new socket is checked against them).
    calibrated_bufs: Option<(usize, usize)>,
}

/// What a new socket's buffer sizes say about the host, against what calibration measured: `None` while they
/// agree, else which parameter changed (`net.core.wmem_default` / `rmem_default`) and how.
pub fn host_drift(calibrated: (usize, usize), now: (usize, usize)) -> Option<String> {
    let say = |what: &str, sysctl: &str, cal: usize, got: usize| {
        format!("a new socket's {what} is {got}, calibration measured {cal} ({sysctl} was changed)")
    };
    if now.0 != calibrated.0 {
        Some(say(
            "SO_SNDBUF",
            "net.core.wmem_default",
            calibrated.0,
            now.0,
        ))
    } else if now.1 != calibrated.1 {
        Some(say(
            "SO_RCVBUF",
            "net.core.rmem_default",
            calibrated.1,
            now.1,
        ))
    } else {
        None
    }
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

fn encode(call: &Call, a: &Addr) -> Result<SockAddrBytes, KernelError> {
    a.encode()
        .ok_or_else(|| KernelError::Unresolved(crate::script::fmt_call(call)))
}

fn inode(fd: RawFd) -> Option<u64> {
    // SAFETY: a live stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino)
}

/// The executor's timeouts on a socket it made blocking.
fn set_blocking_timeouts(fd: RawFd, only_if_zero: bool) -> Result<(), KernelError> {
    for o in [SockOpt::RCVTIMEO, SockOpt::SNDTIMEO] {
        if only_if_zero && !opt::timeout(fd, o).is_zero() {
            continue;
        }
        opt::set_timeout(fd, o, BLOCKING_TIMEOUT_MS)
            .map_err(|e| KernelError::Setup(format!("setsockopt({}): {e:?}", o.0)))?;
    }
    Ok(())
}

impl Kernel {
    /// A new executor with a fresh private directory. Sets the calling thread up first (its own fs context,
    /// network namespace where permitted, umask 022, SIGPIPE blocked).
    pub fn new() -> Result<Kernel, KernelError> {
        sys::init()?;
        let netns = sys::new_netns()?;
        let dir = tempfile::Builder::new()
            .prefix("udsim-")
            .tempdir()
            .map_err(|e| KernelError::Setup(format!("temp dir: {e}")))?;
        // The mode every later script's directory gets from `reset` (0700), not the temp dir's own, which
        // follows the umask: the first script of a run saw 0755 and the rest 0700.
        files::clean(dir.path())
            .map_err(|e| KernelError::Setup(format!("temp dir {}: {e}", dir.path().display())))?;
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
            files: Vec::new(),
            buf: Vec::new(),
            netns,
            sent_rights: false,
            calibrated_bufs: calibrate::params().ok().map(|p| (p.sndbuf, p.rcvbuf)),
        })
    }

    /// Stops the run when a socket the script just created does not have the buffers calibration measured.
    fn check_host(&self, fds: &[RawFd]) -> Result<(), KernelError> {
        let Some(cal) = self.calibrated_bufs else {
            return Ok(());
        };
        for &fd in fds {
            let get = |o| calibrate::get_int(fd, o).map_err(KernelError::Setup);
            let now = (get(libc::SO_SNDBUF)?, get(libc::SO_RCVBUF)?);
            if let Some(m) = host_drift(cal, now) {
                return Err(KernelError::HostChanged(m));
            }
        }
        Ok(())
    }

    /// The private directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether this thread's scripts have abstract names to themselves (a private network namespace). When
    /// false, abstract names (and autobind names) are shared with every other process on the host.
    pub fn isolated(&self) -> bool {
        self.netns.is_some()
    }

    /// Whether a socket in this thread's network namespace holds an abstract name (or the table cannot be
    /// read). `reset` asks it after a script that sent descriptors: only then is a fresh namespace needed.
    pub fn abstract_names_in_use(&self) -> bool {
        sys::abstract_names_in_use()
    }

    /// Whether `setcred` can work (effective uid 0).
    pub fn can_setcred() -> bool {
        sys::can_setcred()
    }

    /// Closes every descriptor (named, orphaned, fresh), forgets the script's credentials and empties the
    /// private directory (mode-000 directories made accessible first, symlinks never followed), ready for the
    /// next script (cheaper than a new executor: the fuzz targets reuse one per process). After a script that
    /// sent descriptors and left a socket holding an abstract name (a cycle of sockets in flight keeps its
    /// names until the kernel's garbage collector runs), the executor moves to a fresh network namespace
    /// (about 0.7 ms).
    pub fn reset(&mut self) -> Result<(), KernelError> {
        sys::restore_creds()?;
        self.names.clear();
        self.orphans.clear();
        self.fresh.clear();
        self.files.clear();
        if std::mem::take(&mut self.sent_rights)
            && self.netns.is_some()
            && self.abstract_names_in_use()
        {
            // A socket kept in flight by a cycle would hold its abstract name into the next script. (Only
            // then: making and tearing down a namespace costs more than the whole script, most of it in a
            // kernel worker on another CPU.)
            if let Some(ns) = sys::new_netns()? {
                self.netns = Some(ns);
            }
        }
        sys::take_sigpipe();
        files::clean(self.dir.path())
            .map_err(|e| KernelError::Setup(format!("clean {}: {e}", self.dir.path().display())))
    }

    /// Makes this thread's cwd the private directory until the guard drops (own fs context first, so other
    /// threads are unaffected).
    fn enter_dir(&self) -> Result<InDir, KernelError> {
        sys::as_root(|| nix::unistd::fchdir(&self.dirfd))
            .map_err(|e| KernelError::Setup(format!("fchdir: {e}")))?;
        Ok(InDir)
    }

    /// `enter_dir` when the address names a file.
    fn enter_dir_for(&self, a: &Addr) -> Result<Option<InDir>, KernelError> {
        if a.fs_path().is_some() {
            self.enter_dir().map(Some)
        } else {
            Ok(None)
        }
    }

    fn fd(&self, name: &str) -> Result<RawFd, KernelError> {
        match self.names.get(name) {
            Some(Slot::Open(s)) => Ok(s.fd.as_raw_fd()),
            Some(Slot::Closed) => Ok(CLOSED_FD),
            None => Err(KernelError::UnknownName(name.to_string())),
        }
    }

    /// The fd behind a name and its file, if open.
    fn sock(&self, name: &str) -> Result<(RawFd, Option<usize>), KernelError> {
        match self.names.get(name) {
            Some(Slot::Open(s)) => Ok((s.fd.as_raw_fd(), Some(s.file))),
            Some(Slot::Closed) => Ok((CLOSED_FD, None)),
            None => Err(KernelError::UnknownName(name.to_string())),
        }
    }

    /// Starts timing a call on `fd` if its socket is known to block (no system call otherwise).
    fn timer(&self, fd: RawFd, file: Option<usize>, o: SockOpt) -> Option<Timer> {
        if !file.is_some_and(|f| self.files[f].blocking) {
            return None;
        }
        let t = opt::timeout(fd, o);
        (!t.is_zero()).then(|| Timer {
            half: t / 2,
            start: Instant::now(),
        })
    }

    fn new_file(&mut self, blocking: bool) -> usize {
        self.files.push(FileState {
            blocking,
            ino: None,
        });
        self.files.len() - 1
    }

    /// Keeps a descriptor the current call created until `name_new` names it.
    fn adopt(&mut self, fd: RawFd, file: usize) {
        // SAFETY: `fd` was just returned by the kernel to this call and is owned by nobody else.
        self.fresh.push(Sock {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            file,
        });
    }

    /// A socket the executor created: blocking ones get the executor's timeouts.
    fn adopt_new(&mut self, fds: &[RawFd], blocking: bool) -> Result<(), KernelError> {
        // Adopt first, so the descriptors are owned (and closed) even if the setup fails.
        for &fd in fds {
            let file = self.new_file(blocking);
            self.adopt(fd, file);
        }
        if blocking {
            for &fd in fds {
                set_blocking_timeouts(fd, false)?;
            }
        }
        Ok(())
    }

    /// The file of a descriptor received through SCM_RIGHTS: the same socket as an open name (or an earlier
    /// descriptor of the same message) shares that name's file; otherwise it is asked for O_NONBLOCK.
    fn file_of_received(&mut self, fd: RawFd) -> usize {
        let ino = inode(fd);
        if ino.is_some() {
            let open: Vec<(RawFd, usize)> = self
                .names
                .values()
                .filter_map(|s| match s {
                    Slot::Open(s) => Some((s.fd.as_raw_fd(), s.file)),
                    Slot::Closed => None,
                })
                .chain(self.fresh.iter().map(|s| (s.fd.as_raw_fd(), s.file)))
                .collect();
            for (ofd, f) in open {
                if self.files[f].ino.is_none() {
                    self.files[f].ino = inode(ofd);
                }
                if self.files[f].ino == ino {
                    return f;
                }
            }
        }
        // SAFETY: F_GETFL has no memory effects.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        let f = self.new_file(fl >= 0 && fl & libc::O_NONBLOCK == 0);
        self.files[f].ino = ino;
        f
    }

    /// Names the descriptors the last call created, in order; any left unnamed stay open, unreachable.
    pub fn name_new(&mut self, names: &[Name]) {
        let fresh = std::mem::take(&mut self.fresh);
        for (i, s) in fresh.into_iter().enumerate() {
            match names.get(i) {
                Some(n) => {
                    if let Some(Slot::Open(old)) = self.names.insert(n.clone(), Slot::Open(s)) {
                        self.orphans.push(old.fd);
                    }
                }
                None => self.orphans.push(s.fd),
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

    /// How many more descriptors this process may open now: the descriptor numbers below the soft
    /// RLIMIT_NOFILE that are free (open ones from /proc/self/fd; one above the limit, inherited, takes no
    /// number below it), or `None` if either cannot be read. The checker hands it to the model at the start of
    /// each script, so that EMFILE is predicted where the kernel gives it.
    /// The process's soft RLIMIT_NOFILE (`None`: unlimited or unreadable).
    pub fn nofile(&self) -> Option<usize> {
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
        usize::try_from(soft).ok()
    }

    pub fn fd_budget(&self) -> Option<usize> {
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
        let soft = usize::try_from(soft).unwrap_or(usize::MAX);
        // This thread's table (its own in a `private_fd_table` thread; /proc/self is the main thread's).
        let dir = std::fs::read_dir("/proc/thread-self/fd").ok()?;
        // (read_dir's own descriptor is listed too; it is closed before the script runs.)
        let listed: Vec<usize> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        let below = listed.iter().filter(|&&fd| fd < soft).count();
        Some(soft.saturating_sub(below.saturating_sub(1)))
    }

    /// Runs one call. Descriptors it creates are named afterwards with `name_new`.
    pub fn run(&mut self, call: &Call) -> Result<Outcome, KernelError> {
        sys::init()?;
        if let Some(ns) = &self.netns {
            sys::enter_netns(ns)?;
        }
        // The credentials `setcred` gave the script, for this call only.
        let _creds = sys::ScriptCreds::enter()?;
        let unnamed = std::mem::take(&mut self.fresh);
        self.orphans.extend(unnamed.into_iter().map(|s| s.fd));
        // SAFETY (all libc calls below): every pointer passed points into a live buffer of at least the
        // length passed with it; fds are ours or CLOSED_FD.
        let out = match call {
            Call::Socket(spec) => {
                let (ty, blocking) = sock_type(spec);
                let fd = unsafe { libc::socket(libc::AF_UNIX, ty, spec.protocol.unwrap_or(0)) };
                if fd < 0 {
                    Outcome::err(errno())
                } else {
                    self.adopt_new(&[fd], blocking)?;
                    self.check_host(&[fd])?;
                    Outcome::of(Value::Created)
                }
            }
            Call::Socketpair(spec) => {
                let (ty, blocking) = sock_type(spec);
                let mut fds = [-1; 2];
                let r = unsafe {
                    libc::socketpair(
                        libc::AF_UNIX,
                        ty,
                        spec.protocol.unwrap_or(0),
                        fds.as_mut_ptr(),
                    )
                };
                if r < 0 {
                    Outcome::err(errno())
                } else {
                    self.adopt_new(&fds, blocking)?;
                    self.check_host(&fds)?;
                    Outcome::of(Value::Pair)
                }
            }
            Call::Bind(s, a) => {
                let fd = self.fd(s)?;
                let sa = encode(call, a)?;
                let _in_dir = self.enter_dir_for(a)?;
                ok_or_errno(unsafe { libc::bind(fd, sa.buf.as_ptr().cast(), sa.len) })
            }
            Call::Connect(s, a) => {
                let (fd, file) = self.sock(s)?;
                let sa = encode(call, a)?;
                let _in_dir = self.enter_dir_for(a)?;
                let t = self.timer(fd, file, SockOpt::SNDTIMEO);
                let mut out =
                    ok_or_errno(unsafe { libc::connect(fd, sa.buf.as_ptr().cast(), sa.len) });
                Timer::finish(t, &mut out);
                out
            }
            Call::Listen(s, n) => ok_or_errno(unsafe { libc::listen(self.fd(s)?, *n) }),
            Call::Accept(s, blocking, buf) => {
                let (fd, file) = self.sock(s)?;
                let n = buf.unwrap_or(128);
                let mut abuf = addr::buffer(n);
                let mut len = n as libc::socklen_t;
                let flags = libc::SOCK_CLOEXEC | if *blocking { 0 } else { libc::SOCK_NONBLOCK };
                let t = self.timer(fd, file, SockOpt::RCVTIMEO);
                let nfd = unsafe { libc::accept4(fd, abuf.as_mut_ptr().cast(), &mut len, flags) };
                let mut out = if nfd < 0 {
                    Outcome::err(errno())
                } else {
                    Outcome::of(Value::Accepted(addr::returned(&abuf[..n as usize], len)))
                };
                Timer::finish(t, &mut out);
                if nfd >= 0 {
                    self.adopt_new(&[nfd], *blocking)?;
                }
                out
            }
            Call::Dup(s) => {
                let (fd, file) = self.sock(s)?;
                let nfd = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
                match file {
                    Some(f) if nfd >= 0 => {
                        self.adopt(nfd, f);
                        Outcome::of(Value::Created)
                    }
                    _ if nfd >= 0 => {
                        // Not reachable (a closed name answers EBADF); own the descriptor anyway.
                        let f = self.new_file(false);
                        self.adopt(nfd, f);
                        Outcome::of(Value::Created)
                    }
                    _ => Outcome::err(errno()),
                }
            }
            Call::Nonblock(s, on) => {
                let (fd, file) = self.sock(s)?;
                let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
                if fl < 0 {
                    Outcome::err(errno())
                } else {
                    let fl = if *on {
                        fl | libc::O_NONBLOCK
                    } else {
                        fl & !libc::O_NONBLOCK
                    };
                    let out = ok_or_errno(unsafe { libc::fcntl(fd, libc::F_SETFL, fl) });
                    if out.errno().is_none() {
                        if let Some(f) = file {
                            self.files[f].blocking = !*on;
                        }
                        if !*on {
                            set_blocking_timeouts(fd, true)?;
                        }
                    }
                    out
                }
            }
            Call::Write(s, d) => {
                let (fd, file) = self.sock(s)?;
                let t = self.timer(fd, file, SockOpt::SNDTIMEO);
                let mut out = msg::send(fd, d, MSG_NOSIGNAL);
                Timer::finish(t, &mut out);
                out
            }
            Call::Read(s, n) => {
                let (fd, file) = self.sock(s)?;
                let t = self.timer(fd, file, SockOpt::RCVTIMEO);
                let mut out = msg::recv(fd, *n, 0, &mut self.buf);
                Timer::finish(t, &mut out);
                out
            }
            Call::Send(s, d, flags) => {
                let (fd, file) = self.sock(s)?;
                let t = self.timer(fd, file, SockOpt::SNDTIMEO);
                let mut out = msg::send(fd, d, flags.0);
                Timer::finish(t, &mut out);
                out.sigpipe = sys::take_sigpipe();
                out
            }
            Call::SendTo(s, d, a, flags) => {
                let (fd, file) = self.sock(s)?;
                let sa = encode(call, a)?;
                let _in_dir = self.enter_dir_for(a)?;
                let t = self.timer(fd, file, SockOpt::SNDTIMEO);
                let mut out = msg::sendto(fd, d, &sa, flags.map_or(MSG_NOSIGNAL, |f| f.0));
                Timer::finish(t, &mut out);
                out.sigpipe = sys::take_sigpipe();
                out
            }
            Call::SendMsg(s, d, m) => {
                let (fd, file) = self.sock(s)?;
                let sa = m.to.as_ref().map(|a| encode(call, a)).transpose()?;
                let rights = m
                    .rights
                    .as_ref()
                    .map(|r| r.iter().map(|n| self.fd(n)).collect::<Result<Vec<_>, _>>())
                    .transpose()?;
                let creds = m.creds.map(|c| libc::ucred {
                    pid: match c.pid {
                        Pid::Own => sys::own_pid(),
                        Pid::Num(p) => p as libc::pid_t,
                    },
                    uid: c.uid as libc::uid_t,
                    gid: c.gid as libc::gid_t,
                });
                let _in_dir = match &m.to {
                    Some(a) => self.enter_dir_for(a)?,
                    None => None,
                };
                let t = self.timer(fd, file, SockOpt::SNDTIMEO);
                let mut out = msg::sendmsg(
                    fd,
                    d,
                    sa.as_ref(),
                    rights.as_deref(),
                    creds,
                    m.flags.map_or(MSG_NOSIGNAL, |f| f.0),
                );
                Timer::finish(t, &mut out);
                out.sigpipe = sys::take_sigpipe();
                if rights.is_some_and(|r| !r.is_empty()) && out.errno().is_none() {
                    self.sent_rights = true;
                }
                out
            }
            Call::Recv(s, n, flags) => {
                let (fd, file) = self.sock(s)?;
                let t = self.timer(fd, file, SockOpt::RCVTIMEO);
                let mut out = msg::recv(fd, *n, flags.0, &mut self.buf);
                Timer::finish(t, &mut out);
                out
            }
            Call::RecvFrom(s, n, flags, buf) => {
                let (fd, file) = self.sock(s)?;
                let t = self.timer(fd, file, SockOpt::RCVTIMEO);
                let mut out = msg::recvfrom(
                    fd,
                    *n,
                    flags.map_or(0, |f| f.0),
                    buf.unwrap_or(msg::FROM_BUF),
                    &mut self.buf,
                );
                Timer::finish(t, &mut out);
                out
            }
            Call::RecvMsg(s, n, flags, space, buf) => {
                let (fd, file) = self.sock(s)?;
                let t = self.timer(fd, file, SockOpt::RCVTIMEO);
                let (mut out, fds) = msg::recvmsg(
                    fd,
                    *n,
                    flags.map_or(0, |f| f.0),
                    space.unwrap_or(msg::CONTROL_SPACE),
                    buf.unwrap_or(msg::FROM_BUF),
                    &mut self.buf,
                );
                Timer::finish(t, &mut out);
                for nfd in fds {
                    let f = self.file_of_received(nfd);
                    self.adopt(nfd, f);
                }
                out
            }
            Call::Shutdown(s, h) => ok_or_errno(unsafe { libc::shutdown(self.fd(s)?, h.0) }),
            Call::Close(s) => match self.names.get_mut(s) {
                Some(slot @ Slot::Open(_)) => {
                    let Slot::Open(sock) = std::mem::replace(slot, Slot::Closed) else {
                        unreachable!("matched Open above")
                    };
                    ok_or_errno(unsafe { libc::close(sock.fd.into_raw_fd()) })
                }
                Some(Slot::Closed) => ok_or_errno(unsafe { libc::close(CLOSED_FD) }),
                None => return Err(KernelError::UnknownName(s.clone())),
            },
            Call::GetSockName(s, buf) => addr::get_name(self.fd(s)?, false, *buf),
            Call::GetPeerName(s, buf) => addr::get_name(self.fd(s)?, true, *buf),
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
            Call::GetSockOpt(s, o) => opt::getsockopt(self.fd(s)?, *o),
            Call::SetSockOpt(s, o, v) => {
                let (fd, file) = self.sock(s)?;
                if o.is_timeout()
                    && *v == OptVal::Ms(0)
                    && file.is_some_and(|f| self.files[f].blocking)
                {
                    return Err(KernelError::Script(format!(
                        "`{}`: SO_RCVTIMEO and SO_SNDTIMEO take 0ms on non-blocking sockets only \
                         (a blocking call would wait for ever)",
                        crate::script::fmt_call(call)
                    )));
                }
                opt::setsockopt(fd, *o, *v)
            }
            Call::Ioctl(s, r) => opt::ioctl(self.fd(s)?, *r),
            Call::Unlink(p) => {
                let _in_dir = self.enter_dir()?;
                files::unlink(p)
            }
            Call::Mkdir(p) => {
                let _in_dir = self.enter_dir()?;
                files::mkdir(p)
            }
            Call::Mkfile(p) => {
                let _in_dir = self.enter_dir()?;
                files::mkfile(p)
            }
            Call::Symlink(target, p) => {
                let _in_dir = self.enter_dir()?;
                files::symlink(target, p)
            }
            Call::Link(old, new) => {
                let _in_dir = self.enter_dir()?;
                files::link(old, new)
            }
            Call::Rename(old, new) => {
                let _in_dir = self.enter_dir()?;
                files::rename(old, new)
            }
            Call::Chmod(p, mode) => {
                let _in_dir = self.enter_dir()?;
                files::chmod(p, *mode)
            }
            Call::Stat(p) => {
                let _in_dir = self.enter_dir()?;
                files::stat(p)
            }
            Call::Setcred(uid, gid) => match sys::setcred(*uid, *gid)? {
                Ok(()) => Outcome::OK,
                Err(e) => Outcome::err(Errno(e)),
            },
        };
        Ok(out)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // Back to the thread's own credentials, and a directory the TempDir can remove whatever modes the
        // script left.
        let _ = sys::restore_creds();
        self.names.clear();
        self.orphans.clear();
        self.fresh.clear();
        let _ = files::clean(self.dir.path());
    }
}

/// The type argument of socket / socketpair, and whether the socket blocks.
fn sock_type(spec: &SockSpec) -> (libc::c_int, bool) {
    let ty = spec.ty
        | libc::SOCK_CLOEXEC
        | if spec.blocking {
            0
        } else {
            libc::SOCK_NONBLOCK
        };
    (ty, ty & libc::SOCK_NONBLOCK == 0)
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

#[cfg(test)]
mod drift_tests {
    #[test]
    fn host_drift_names_the_parameter_that_changed() {
        use super::host_drift;
        assert_eq!(host_drift((212992, 212992), (212992, 212992)), None);
        let w = host_drift((212992, 212992), (100000, 212992)).expect("sndbuf changed");
        assert!(
            w.contains("net.core.wmem_default") && w.contains("100000") && w.contains("212992")
        );
        let r = host_drift((212992, 212992), (212992, 4096)).expect("rcvbuf changed");
        assert!(r.contains("net.core.rmem_default") && r.contains("4096"));
    }
}
