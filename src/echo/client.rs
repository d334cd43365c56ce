//! `udsim client PATH`: stdin → socket and socket → stdout at the same time.
//!
//! Two threads, so a client never deadlocks when the echo backs up: the sender copies stdin into
//! the socket and half-closes (SHUT_WR) at stdin EOF; the receiver (the main thread) copies the
//! echo to stdout until the server's EOF, then the process exits — 0 only if all of stdin was
//! sent and exactly as many bytes came back (`short_echo_fails`): a server that stops early
//! without a reset (the kernel reports one only when the closing socket had unread input) still
//! cannot make the client exit 0 with part of the echo missing.

use super::error::{errno_of, EchoError};
use super::path::unix_addr;
use super::status::Status;
use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const CHUNK: usize = 64 * 1024;

/// Connects to `path`, as a blocking stream socket.
pub fn connect_to(path: &Path) -> Result<OwnedFd, EchoError> {
    const ACTION: &str = "cannot connect to";
    let addr = unix_addr(path, ACTION)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| EchoError::sys(ACTION, path, e))?;
    loop {
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => return Ok(fd),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(EchoError::sys(ACTION, path, e)),
        }
    }
}

/// Runs the client; Ok(()) means everything was sent and the server closed its side.
pub fn run(path: &Path, status: Status) -> Result<(), EchoError> {
    let fd = connect_to(path)?;
    status.line(format_args!("Client socket fd = {}", fd.as_raw_fd()));
    let sock = UnixStream::from(fd);
    let sender_sock = sock
        .try_clone()
        .map_err(|e| EchoError::sys("cannot use the socket for", path, errno_of(&e)))?;
    let progress = Arc::new(Progress::default());
    let sender_progress = Arc::clone(&progress);
    let sender_path = path.to_path_buf();
    let sender = std::thread::Builder::new()
        .name("stdin-to-socket".into())
        .spawn(move || send_stdin(sender_sock, &sender_path, &sender_progress))
        .map_err(|e| EchoError::sys("cannot start the sender for", path, errno_of(&e)))?;
    let mut received = 0u64;
    let ended = receive_to_stdout(&sock, path, &mut received);
    if progress.all_sent.load(Ordering::SeqCst) {
        let sent = progress.sent.load(Ordering::SeqCst);
        return check_echo(path, ended, sent, received);
    }
    ended?;
    // The server closed first. If the sender already failed, its error is the better message.
    if sender.is_finished() {
        if let Ok(Err(e)) = sender.join() {
            return Err(e);
        }
    }
    Err(EchoError::refused(
        "connection to",
        path,
        "closed by the server before the end of input",
    ))
}

/// What the sender has done, for the receiver's final check.
#[derive(Debug, Default)]
struct Progress {
    /// Bytes written into the socket so far.
    sent: AtomicU64,
    /// All of stdin was sent (set after the last `sent` update, before the half-close).
    all_sent: AtomicBool,
}

/// `short_echo_fails`: after the whole input was sent, the exchange succeeded only if the echo
/// ended cleanly with exactly as many bytes as were sent.
fn check_echo(
    path: &Path,
    ended: Result<(), EchoError>,
    sent: u64,
    received: u64,
) -> Result<(), EchoError> {
    let missing = sent.saturating_sub(received);
    match ended {
        Ok(()) if missing == 0 => Ok(()),
        Ok(()) => Err(EchoError::refused(
            "connection to",
            path,
            format!(
                "the echo is short: {missing} of {sent} bytes missing (the server closed the connection early)"
            ),
        )),
        Err(e) if e.errno() == Some(Errno::ECONNRESET) => Err(EchoError::refused(
            "connection to",
            path,
            format!("reset by the server: {missing} of {sent} bytes of the echo missing"),
        )),
        Err(e) => Err(e),
    }
}

/// Copies the socket to stdout until the server's EOF, counting the bytes in `received`.
fn receive_to_stdout(
    mut sock: &UnixStream,
    path: &Path,
    received: &mut u64,
) -> Result<(), EchoError> {
    let mut buf = vec![0u8; CHUNK];
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EchoError::sys("cannot read from", path, errno_of(&e))),
        };
        *received += n as u64;
        out.write_all(&buf[..n])
            .and_then(|()| out.flush())
            .map_err(|e| EchoError::sys_nopath("cannot write to stdout", errno_of(&e)))?;
    }
    Ok(())
}

/// Copies stdin into the socket, counting in `progress`; at EOF marks `all_sent` and half-closes
/// the socket.
fn send_stdin(mut sock: UnixStream, path: &Path, progress: &Progress) -> Result<(), EchoError> {
    let mut buf = vec![0u8; CHUNK];
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let err = EchoError::sys_nopath("cannot read stdin", errno_of(&e));
                // Stop the exchange cleanly: the server echoes what it has and closes.
                let _ = sock.shutdown(Shutdown::Write);
                return Err(err);
            }
        };
        // std's UnixStream sends with MSG_NOSIGNAL: a closed server gives EPIPE, not SIGPIPE.
        if let Err(e) = sock.write_all(&buf[..n]) {
            return Err(EchoError::sys("cannot send to", path, errno_of(&e)));
        }
        progress.sent.fetch_add(n as u64, Ordering::SeqCst);
    }
    // Set before the half-close: the server's EOF (which follows it) then implies the flag.
    progress.all_sent.store(true, Ordering::SeqCst);
    match sock.shutdown(Shutdown::Write) {
        Ok(()) | Err(_) => Ok(()),
    }
}
