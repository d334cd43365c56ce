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
    /// Whether the thread runs in its own network namespace (abstract names private to its scripts).
    pub isolated: bool,
    /// The supplementary groups at setup (what `setcred(0, 0)` and `reset` restore).
    groups: Vec<libc::gid_t>,
    /// The effective gid at setup.
    egid: libc::gid_t,
    /// Set by `setcred`: the thread's credentials differ from setup until `restore_creds`.
    changed: Cell<bool>,
    /// The effective uid `setcred` left (meaningful while `changed`).
    euid: Cell<libc::uid_t>,
}

thread_local! {
    static THREAD: OnceCell<ThreadState> = const { OnceCell::new() };
}

fn last_errno() -> i32 {
    nix::errno::Errno::last_raw()
}

/// Sets the calling thread up once (idempotent and cheap after the first call) and runs `f` on its state.
pub fn with<R>(f: impl FnOnce(&ThreadState) -> R) -> Result<R, KernelError> {
    THREAD.with(|t| {
        if t.get().is_none() {
            let st = setup()?;
            let _ = t.set(st);
        }
        Ok(f(t.get().expect("set above")))
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
    // SAFETY: getegid has no memory effects (and is per thread: it reads this task's credentials).
    let egid = unsafe { libc::getegid() };
    Ok(ThreadState {
        home,
        isolated,
        groups,
        egid,
        changed: Cell::new(false),
        euid: Cell::new(0),
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

fn effective_uid() -> libc::uid_t {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three live u32s.
    unsafe { libc::syscall(libc::SYS_getresuid, &mut r, &mut e, &mut s) };
    e
}

/// `setcred(UID, GID)` on this thread: back to effective uid 0, groups, effective gid, effective uid.
/// Returns the errno of the first step that failed.
pub fn setcred(uid: u32, gid: u32) -> Result<Result<(), i32>, KernelError> {
    with(|t| {
        t.changed.set(true);
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
        t.euid.set(effective_uid());
        r
    })
}

/// Restores what `setcred` changed on this thread (effective uid 0, the groups and effective gid of setup);
/// nothing on a thread that never ran a script.
pub fn restore_creds() -> Result<(), KernelError> {
    THREAD.with(|t| {
        let Some(t) = t.get().filter(|t| t.changed.get()) else {
            return Ok(());
        };
        setresuid(-1, 0, -1)
            .and_then(|()| setgroups(&t.groups))
            .and_then(|()| setresgid(-1, i64::from(t.egid), -1))
            .map_err(|e| {
                KernelError::Setup(format!(
                    "restore credentials: {}",
                    nix::errno::Errno::from_raw(e)
                ))
            })?;
        t.changed.set(false);
        t.euid.set(0);
        Ok(())
    })
}

/// Runs `f` with effective uid 0 if `setcred` left another one (so that the executor itself can change
/// directory in and out of the private directory whatever the script's credentials), then goes back.
pub fn as_root<R>(f: impl FnOnce() -> R) -> R {
    let euid = THREAD.with(|t| t.get().filter(|t| t.changed.get()).map(|t| t.euid.get()));
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
