//! Path safety: what `udsim serve PATH` may remove, and binding the listening socket.
//!
//! Rules (each checked in `tests/echo.rs`):
//! - `path_absent_binds`: nothing at PATH → bind there.
//! - `dead_socket_taken_over`: a socket nobody listens on (connect gives ECONNREFUSED) → remove it, bind.
//! - `live_server_left_alone`: a socket with a listener → refuse, touch nothing.
//! - `non_socket_left_alone`: a regular file, directory, symlink, FIFO, device → refuse, touch nothing.
//! - `unlink_only_our_socket`: at exit the path is removed only if it still names the inode we bound.

use super::error::EchoError;
use super::status::Status;
use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nix::sys::stat::{lstat, umask, FileStat, Mode, SFlag};
use nix::unistd::unlink;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

const BIND: &str = "cannot bind";

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

    /// Removes the path if it is still the socket we bound (`unlink_only_our_socket`).
    /// Returns whether it was removed.
    pub fn remove_if_ours(&self) -> Result<bool, Errno> {
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
pub fn bind_listener(path: &Path, mode: u32, status: Status) -> Result<Listener, EchoError> {
    let addr = unix_addr(path, BIND)?;
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
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| EchoError::sys(BIND, path, e))?;
    status.line(format_args!("Server socket fd = {}", fd.as_raw_fd()));
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
        let _ = bound.remove_if_ours();
        return Err(EchoError::sys("cannot listen on", path, e));
    }
    Ok(Listener { fd, bound })
}
