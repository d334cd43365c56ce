//! Path safety: what `udsim serve PATH` may remove, and binding the listening socket.
//!
//! Rules (each checked in `tests/echo.rs`):
//! - `path_absent_binds`: nothing at PATH → bind there.
//! - `dead_socket_taken_over`: a socket nobody listens on (connect gives ECONNREFUSED) → remove it, bind.
//! - `live_server_left_alone`: a socket with a listener → refuse, touch nothing.
//! - `non_socket_left_alone`: a regular file, directory, symlink, FIFO, device → refuse, touch nothing.
//! - `unlink_only_our_socket`: at exit the path is removed only if it still names the inode we bound.
//! - `one_server_per_path`: the whole inspect → unlink → bind → listen (and the check → unlink at
//!   exit) runs under an exclusive flock(2) on PATH's directory, so two udsim servers starting
//!   at once cannot both listen: the one that waits sees the other's socket already listening.
//!   (Without it, a socket between bind and listen refuses connections and looks dead, and a
//!   dead socket can be replaced between the re-check and the unlink.) The lock is held for
//!   microseconds; a server that cannot get it within [`LOCK_WAIT`] gives up with one line.

use super::error::EchoError;
use super::signals::Signals;
use super::status::Status;
use nix::errno::Errno;
use nix::fcntl::{open, Flock, FlockArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nix::sys::stat::{lstat, umask, FileStat, Mode, SFlag};
use nix::unistd::unlink;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIND: &str = "cannot bind";

/// How long a server waits for another one to finish binding in the same directory.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// `one_server_per_path`: an exclusive flock on the directory that holds PATH, released on drop.
#[derive(Debug)]
pub struct DirLock {
    _lock: Option<Flock<File>>,
    /// The file system does not support flock(2) (EOPNOTSUPP, ENOLCK, EINVAL): no lock is held,
    /// and this says why (the server warns and binds unprotected rather than not at all).
    pub unsupported: Option<Errno>,
}

impl DirLock {
    /// Takes the lock, retrying every 10 ms for up to `wait`; a caught signal (`signals`) ends
    /// the wait early with an error. `action` names what the lock is for in errors.
    pub fn acquire(
        path: &Path,
        action: &'static str,
        wait: Duration,
        signals: Option<&Signals>,
    ) -> Result<DirLock, EchoError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let fd = open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            // What bind itself would say.
            Errno::ENOENT | Errno::ENOTDIR => EchoError::sys(action, path, e),
            _ => EchoError::refused(
                action,
                path,
                format!(
                    "cannot open its directory to lock it: {}",
                    super::error::describe(e)
                ),
            ),
        })?;
        let mut file = File::from(fd);
        let deadline = Instant::now() + wait;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    return Ok(DirLock {
                        _lock: Some(lock),
                        unsupported: None,
                    })
                }
                Err((f, Errno::EWOULDBLOCK)) | Err((f, Errno::EINTR)) => file = f,
                Err((_, e @ (Errno::EOPNOTSUPP | Errno::ENOLCK | Errno::EINVAL))) => {
                    return Ok(DirLock {
                        _lock: None,
                        unsupported: Some(e),
                    })
                }
                Err((_, e)) => {
                    return Err(EchoError::refused(
                        action,
                        path,
                        format!("cannot lock its directory: {}", super::error::describe(e)),
                    ))
                }
            }
            if Instant::now() >= deadline {
                return Err(EchoError::refused(
                    action,
                    path,
                    format!(
                        "another server has held the lock on its directory for {} s; giving up",
                        wait.as_secs()
                    ),
                ));
            }
            // Sleep 10 ms, watching for a signal (blocked, so only the signalfd sees it).
            let sig = match signals {
                Some(sigs) => {
                    let mut fds = [PollFd::new(sigs.as_fd(), PollFlags::POLLIN)];
                    match poll(&mut fds, PollTimeout::from(10u8)) {
                        Ok(n) if n > 0 => sigs.take(),
                        _ => None,
                    }
                }
                None => {
                    std::thread::sleep(Duration::from_millis(10));
                    None
                }
            };
            if let Some(sig) = sig {
                return Err(EchoError::refused(
                    action,
                    path,
                    format!("{sig} while waiting for another server to finish binding there"),
                ));
            }
        }
    }
}

/// The listening socket together with the identity of the file it created.
#[derive(Debug)]
pub struct Listener {
    /// Non-blocking, close-on-exec listening socket.
    pub fd: OwnedFd,
    /// The socket file at PATH, as created by our `bind`.
    pub bound: BoundPath,
}

/// A socket file we created, identified by device and inode so we never unlink somebody else's.
#[derive(Debug, Clone)]
pub struct BoundPath {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl BoundPath {
    /// The path as given on the command line.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the path if it is still the socket we bound (`unlink_only_our_socket`), under the
    /// directory lock (`one_server_per_path`: a server starting now cannot have its new socket
    /// unlinked by us between our check and our unlink). Returns whether it was removed.
    pub fn remove_if_ours(&self) -> Result<bool, EchoError> {
        const REMOVE: &str = "cannot remove";
        let _lock = match DirLock::acquire(&self.path, REMOVE, Duration::from_secs(1), None) {
            Ok(lock) => lock,
            // The directory itself is gone: so is our socket.
            Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.remove_if_ours_locked()
            .map_err(|e| EchoError::sys(REMOVE, &self.path, e))
    }

    fn remove_if_ours_locked(&self) -> Result<bool, Errno> {
        match lstat(&self.path) {
            Ok(st) if is_socket(&st) && same_file(&st, self.dev, self.ino) => {
                unlink(&self.path)?;
                Ok(true)
            }
            Ok(_) | Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn is_socket(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK
}

fn same_file(st: &FileStat, dev: u64, ino: u64) -> bool {
    st.st_dev == dev && st.st_ino == ino
}

/// A human name for the kind of file at a path, for refusals.
fn kind_name(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFSOCK => "a socket",
        _ => "a file of unknown type",
    }
}

/// The socket address for `path`, or ENAMETOOLONG (sun_path holds 107 bytes and a NUL).
pub fn unix_addr(path: &Path, action: &'static str) -> Result<UnixAddr, EchoError> {
    if path.as_os_str().is_empty() {
        return Err(EchoError::sys(action, path, Errno::ENOENT));
    }
    UnixAddr::new(path).map_err(|e| EchoError::sys(action, path, e))
}

/// What is at PATH before we bind.
enum Existing {
    Nothing,
    DeadSocket(FileStat),
}

/// Applies the path-safety rules; returns what may be replaced, or the refusal.
fn inspect(path: &Path, addr: &UnixAddr) -> Result<Existing, EchoError> {
    let st = match lstat(path) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(Existing::Nothing),
        Err(e) => return Err(EchoError::sys(BIND, path, e)),
    };
    if !is_socket(&st) {
        return Err(EchoError::refused(
            BIND,
            path,
            format!(
                "{} is already there; refusing to replace it (only a dead socket is ever removed)",
                kind_name(&st)
            ),
        ));
    }
    // A socket: is somebody listening? A non-blocking connect answers at once:
    // success or EAGAIN (backlog full) means a live server; ECONNREFUSED means dead.
    let probe = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| EchoError::sys(BIND, path, e))?;
    match connect(probe.as_raw_fd(), addr) {
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => Err(EchoError::refused(
            BIND,
            path,
            "a server is already listening there; leaving it alone",
        )),
        Err(Errno::ECONNREFUSED) => Ok(Existing::DeadSocket(st)),
        Err(e) => Err(EchoError::refused(
            BIND,
            path,
            format!(
                "a socket is already there and probing it failed: {}; leaving it alone",
                super::error::describe(e)
            ),
        )),
    }
}

/// Binds and listens at `path` following the path-safety rules; the socket file gets `mode`.
/// The whole of it runs under the directory lock (`one_server_per_path`).
pub fn bind_listener(
    path: &Path,
    mode: u32,
    status: Status,
    signals: &Signals,
) -> Result<Listener, EchoError> {
    let addr = unix_addr(path, BIND)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| EchoError::sys(BIND, path, e))?;
    let lock = DirLock::acquire(path, BIND, LOCK_WAIT, Some(signals))?;
    if let Some(e) = lock.unsupported {
        status.warn(format_args!(
            "cannot lock the directory of {path:?}: {}; binding without protection against another server starting there at the same moment",
            super::error::describe(e)
        ));
    }
    if let Existing::DeadSocket(old) = inspect(path, &addr)? {
        // Re-check right before unlinking that the path still names the dead socket we probed.
        match lstat(path) {
            Ok(now) if is_socket(&now) && same_file(&now, old.st_dev, old.st_ino) => {
                match unlink(path) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(EchoError::sys("cannot remove dead socket", path, e)),
                }
                status.line(format_args!("Removed dead socket {path:?}"));
            }
            Ok(_) => {
                return Err(EchoError::refused(
                    BIND,
                    path,
                    "the file there changed while it was being checked; leaving it alone",
                ))
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(EchoError::sys(BIND, path, e)),
        }
    }
    // bind creates the file with 0777 & ~umask: set the umask so the mode is exactly `mode`.
    // The process is single-threaded here, so the temporary umask affects nothing else.
    let old_mask = umask(Mode::from_bits_truncate(!mode & 0o777));
    let bound = bind(fd.as_raw_fd(), &addr);
    umask(old_mask);
    bound.map_err(|e| EchoError::sys(BIND, path, e))?;
    let st = lstat(path).map_err(|e| EchoError::sys(BIND, path, e))?;
    let bound = BoundPath {
        path: path.to_path_buf(),
        dev: st.st_dev,
        ino: st.st_ino,
    };
    let backlog = Backlog::new(4096).unwrap_or(Backlog::MAXCONN);
    if let Err(e) = listen(&fd, backlog) {
        let _ = bound.remove_if_ours_locked();
        return Err(EchoError::sys("cannot listen on", path, e));
    }
    drop(lock);
    // Only now: a failure above is one line, not a status line and then the error.
    status.line(format_args!("Server socket fd = {}", fd.as_raw_fd()));
    Ok(Listener { fd, bound })
}
