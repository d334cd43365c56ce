//! Per-thread state of the executor: the thread's own fs context (cwd and umask), its private network
//! namespace, SIGPIPE blocked and consumed per call, and the thread's own credentials for `setcred`.
//!
//! Everything here happens once per thread, before the thread's first socket (`init`): a socket created
//! before `unshare(CLONE_NEWNET)` would stay in the old namespace, so the namespace, the fs context and the
//! signal mask are all set up together at the top of `Kernel::new` and `Kernel::run`.

use super::KernelError;
use nix::libc;
use std::cell::{Cell, OnceCell};
use std::os::fd::OwnedFd;

/// What one thread set up for the executor.
pub struct ThreadState {
    /// The thread's working directory from before its first script call.
    pub home: OwnedFd,
    /// Whether the thread may enter network namespaces of its own (abstract names private to its scripts).
    pub isolated: bool,
    /// The executor namespace the thread is in now (`Netns::id`; 0: the one it got at setup).
    current_ns: Cell<u64>,
    /// The supplementary groups at setup (what `setcred(0, 0)` and `reset` restore).
    groups: Vec<libc::gid_t>,
    /// The effective uid and gid at setup.
    euid: libc::uid_t,
    egid: libc::gid_t,
    /// The credentials `setcred` gave the script, where they differ from setup. They are in force only
    /// during the script's calls (`ScriptCreds`): between calls the thread is back to its own, so that the
    /// rest of the program (reading the next script, writing reports, cleaning) never runs as `nobody`.
    script: std::cell::RefCell<Option<Ids>>,
    /// Whether `script` is in force right now.
    applied: Cell<bool>,
}

/// Effective ids and groups.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ids {
    euid: libc::uid_t,
    egid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

thread_local! {
    static THREAD: OnceCell<ThreadState> = const { OnceCell::new() };
}

fn last_errno() -> i32 {
    nix::errno::Errno::last_raw()
}

/// Sets the calling thread up once (idempotent and cheap after the first call) and runs `f` on its state.
pub fn with<R>(f: impl FnOnce(&ThreadState) -> R) -> Result<R, KernelError> {
    THREAD
        .try_with(|t| {
            if t.get().is_none() {
                let st = setup()?;
                let _ = t.set(st);
            }
            Ok(f(t.get().expect("set above")))
        })
        .unwrap_or_else(|_| {
            Err(KernelError::Setup(
                "the thread is exiting (its executor state is gone)".into(),
            ))
        })
}

/// Runs `f` on the thread's state if it was set up and is still alive (not during the thread's exit, when a
/// thread-local executor may be dropped after this state).
fn existing<R>(f: impl FnOnce(Option<&ThreadState>) -> R) -> R {
    let mut f = Some(f);
    THREAD
        .try_with(|t| (f.take().expect("called once"))(t.get()))
        .unwrap_or_else(|_| (f.take().expect("not called"))(None))
}

/// Runs `f` on the thread's state from a destructor: never sets the thread up, never panics.
pub fn with_existing(f: impl FnOnce(&ThreadState)) {
    existing(|t| {
        if let Some(t) = t {
            f(t)
        }
    })
}

/// Sets the calling thread up.
pub fn init() -> Result<(), KernelError> {
    with(|_| ())
}

fn setup() -> Result<ThreadState, KernelError> {
    let home = nix::fcntl::open(
        ".",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| KernelError::Setup(format!("open the working directory: {e}")))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
        .map_err(|e| KernelError::Setup(format!("unshare(CLONE_FS): {e}")))?;
    // Not permitted (not root, a seccomp filter, no CONFIG_NET_NS): keep going in the shared namespace and
    // say so through `Kernel::isolated`.
    let isolated = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_ok();
    // The umask lives in the fs_struct, so after unshare(CLONE_FS) it is this thread's own.
    // SAFETY: umask has no memory effects.
    unsafe { libc::umask(0o022) };
    // SAFETY: the sets are initialized by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if r != 0 {
            return Err(KernelError::Setup(format!("pthread_sigmask: error {r}")));
        }
    }
    let groups = get_groups()?;
    let ids = current_ids().map_err(|e| {
        KernelError::Setup(format!("getresuid: {}", nix::errno::Errno::from_raw(e)))
    })?;
    Ok(ThreadState {
        home,
        isolated,
        current_ns: Cell::new(0),
        groups,
        euid: ids.euid,
        egid: ids.egid,
        script: std::cell::RefCell::new(None),
        applied: Cell::new(false),
    })
}

fn get_groups() -> Result<Vec<libc::gid_t>, KernelError> {
    // SAFETY: a size of 0 only asks for the count; then the buffer has room for `n` gids.
    let n = unsafe { libc::syscall(libc::SYS_getgroups, 0, std::ptr::null_mut::<libc::gid_t>()) };
    if n < 0 {
        return Err(KernelError::Setup(format!(
            "getgroups: {}",
            nix::errno::Errno::last()
        )));
    }
    let mut g = vec![0 as libc::gid_t; n as usize];
    let m = unsafe { libc::syscall(libc::SYS_getgroups, n, g.as_mut_ptr()) };
    if m < 0 {
        return Err(KernelError::Setup(format!(
            "getgroups: {}",
            nix::errno::Errno::last()
        )));
    }
    g.truncate(m as usize);
    Ok(g)
}

/// A private network namespace of one executor: its abstract names belong to its scripts alone.
pub struct Netns {
    fd: OwnedFd,
    id: u64,
}

static NEXT_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A new network namespace, entered by the calling thread (`None` where not permitted).
pub fn new_netns() -> Result<Option<Netns>, KernelError> {
    with(|t| {
        if !t.isolated || nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return None;
        }
        let fd = nix::fcntl::open(
            "/proc/thread-self/ns/net",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        let id = NEXT_NS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        t.current_ns.set(id);
        Some(Netns { fd, id })
    })
}

/// Whether a socket in the calling thread's network namespace still holds an abstract name (`/proc/thread-self/
/// net/unix` lists them with `@`). True if the table cannot be read, so a caller that makes a fresh namespace
/// on true errs on the safe side.
pub fn abstract_names_in_use() -> bool {
    let Ok(table) = std::fs::read("/proc/thread-self/net/unix") else {
        return true;
    };
    // Columns: Num RefCount Protocol Flags Type St Inode [Path]; an abstract name's path starts with '@'.
    table.split(|&b| b == b'\n').skip(1).any(|l| {
        l.split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .nth(7)
            .is_some_and(|p| p.first() == Some(&b'@'))
    })
}

/// Makes sure the calling thread is in `ns` (a thread-local comparison unless it has to switch).
pub fn enter_netns(ns: &Netns) -> Result<(), KernelError> {
    with(|t| {
        if t.current_ns.get() == ns.id {
            return Ok(());
        }
        nix::sched::setns(&ns.fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| KernelError::Setup(format!("setns(CLONE_NEWNET): {e}")))?;
        t.current_ns.set(ns.id);
        Ok(())
    })?
}

/// Consumes a SIGPIPE pending for this thread (blocked by `init`): true if there was one.
pub fn take_sigpipe() -> bool {
    // SAFETY: the set is initialized by sigemptyset; the zero timeout makes the wait a poll.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut took = false;
        // More than one may be pending only as one (standard signals do not queue); loop anyway.
        while libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) == libc::SIGPIPE {
            took = true;
        }
        took
    }
}

// The raw system calls act on the calling thread only (glibc's wrappers broadcast to every thread).
fn setresuid(r: i64, e: i64, s: i64) -> Result<(), i32> {
    // SAFETY: integer arguments only.
    let x = unsafe { libc::syscall(libc::SYS_setresuid, r, e, s) };
    if x < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

fn setresgid(r: i64, e: i64, s: i64) -> Result<(), i32> {
    // SAFETY: integer arguments only.
    let x = unsafe { libc::syscall(libc::SYS_setresgid, r, e, s) };
    if x < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

fn setgroups(g: &[libc::gid_t]) -> Result<(), i32> {
    // SAFETY: the list holds `g.len()` gids.
    let x = unsafe { libc::syscall(libc::SYS_setgroups, g.len(), g.as_ptr()) };
    if x < 0 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

fn current_ids() -> Result<Ids, i32> {
    let (mut r, mut e, mut s): (libc::uid_t, libc::uid_t, libc::uid_t) = (0, 0, 0);
    let (mut gr, mut ge, mut gs): (libc::gid_t, libc::gid_t, libc::gid_t) = (0, 0, 0);
    // SAFETY: six live u32s.
    unsafe {
        libc::syscall(libc::SYS_getresuid, &mut r, &mut e, &mut s);
        libc::syscall(libc::SYS_getresgid, &mut gr, &mut ge, &mut gs);
    }
    Ok(Ids {
        euid: e,
        egid: ge,
        groups: get_groups().map_err(|_| last_errno())?,
    })
}

impl ThreadState {
    fn baseline(&self) -> Ids {
        Ids {
            euid: self.euid,
            egid: self.egid,
            groups: self.groups.clone(),
        }
    }

    /// Back to the thread's own credentials (effective uid 0 first, then the groups, effective gid and
    /// effective uid of setup).
    fn to_baseline(&self) -> Result<(), i32> {
        setresuid(-1, 0, -1)?;
        setgroups(&self.groups)?;
        setresgid(-1, i64::from(self.egid), -1)?;
        if self.euid != 0 {
            setresuid(-1, i64::from(self.euid), -1)?;
        }
        Ok(())
    }

    /// The script's credentials, from the thread's own (effective uid 0).
    fn to_script(&self, ids: &Ids) -> Result<(), i32> {
        setgroups(&ids.groups)?;
        setresgid(-1, i64::from(ids.egid), -1)?;
        setresuid(-1, i64::from(ids.euid), -1)
    }
}

/// While alive (one script call), the credentials `setcred` gave the script are in force on this thread;
/// dropping it returns the thread to its own. Costs nothing while the script has not changed credentials.
pub struct ScriptCreds(());

impl ScriptCreds {
    pub fn enter() -> Result<ScriptCreds, KernelError> {
        existing(|t| {
            if let Some(t) = t {
                if let Some(ids) = t.script.borrow().as_ref() {
                    t.to_script(ids).map_err(|e| {
                        KernelError::Setup(format!(
                            "apply the script's credentials: {}",
                            nix::errno::Errno::from_raw(e)
                        ))
                    })?;
                    t.applied.set(true);
                }
            }
            Ok(ScriptCreds(()))
        })
    }
}

impl Drop for ScriptCreds {
    fn drop(&mut self) {
        with_existing(|t| {
            if t.applied.get() {
                // Going back to effective uid 0 cannot fail while real and saved uids are 0.
                let _ = t.to_baseline();
                t.applied.set(false);
            }
        });
    }
}

/// `setcred(UID, GID)` on this thread: back to effective uid 0, groups, effective gid, effective uid, by raw
/// system calls. Returns the errno of the first step that failed. Whatever the thread's ids are afterwards
/// become the script's credentials for its later calls.
pub fn setcred(uid: u32, gid: u32) -> Result<Result<(), i32>, KernelError> {
    with(|t| {
        let r = (|| {
            setresuid(-1, 0, -1)?;
            if uid == 0 && gid == 0 {
                setgroups(&t.groups)?;
            } else {
                setgroups(&[])?;
            }
            setresgid(-1, i64::from(gid), -1)?;
            setresuid(-1, i64::from(uid), -1)
        })();
        match current_ids() {
            Ok(ids) if ids == t.baseline() => {
                *t.script.borrow_mut() = None;
                t.applied.set(false);
            }
            Ok(ids) => {
                *t.script.borrow_mut() = Some(ids);
                t.applied.set(true);
            }
            Err(e) => return Err(e),
        }
        r
    })
}

/// Forgets the credentials `setcred` gave the script (between scripts) and makes sure the thread has its
/// own; nothing on a thread that never ran a script.
pub fn restore_creds() -> Result<(), KernelError> {
    existing(|t| {
        let Some(t) = t else {
            return Ok(());
        };
        let had = t.script.borrow_mut().take().is_some();
        if had || t.applied.get() {
            t.to_baseline().map_err(|e| {
                KernelError::Setup(format!(
                    "restore credentials: {}",
                    nix::errno::Errno::from_raw(e)
                ))
            })?;
            t.applied.set(false);
        }
        Ok(())
    })
}

/// Runs `f` with effective uid 0 if the script's credentials are in force (so that the executor itself can
/// change directory in and out of the private directory whatever they are), then goes back.
pub fn as_root<R>(f: impl FnOnce() -> R) -> R {
    let euid = existing(|t| {
        t.filter(|t| t.applied.get())
            .and_then(|t| t.script.borrow().as_ref().map(|i| i.euid))
    });
    match euid {
        Some(e) if e != 0 => {
            let _ = setresuid(-1, 0, -1);
            let r = f();
            let _ = setresuid(-1, i64::from(e), -1);
            r
        }
        _ => f(),
    }
}

/// Whether `setcred` can work: effective uid 0.
pub fn can_setcred() -> bool {
    // SAFETY: geteuid has no memory effects.
    unsafe { libc::geteuid() == 0 }
}

/// This process's pid (what `pid=SELF` means).
pub fn own_pid() -> i32 {
    // SAFETY: getpid has no memory effects.
    unsafe { libc::getpid() }
}
