//! `udsim client PATH`: stdin → socket and socket → stdout at the same time.
//!
//! The exchange itself ([`Exchange`]) is written once over [`Stream`]: `udsim client` runs it on
//! its kernel socket, and the simulated clients ([`crate::sim::echo::EchoClient`]) run it on the
//! model. Each turn makes one non-blocking send or receive, alternating which goes first, so a
//! client never deadlocks when the echo backs up; at the end of its input it half-closes
//! (SHUT_WR) and reads until the server's end of stream. `udsim client` waits in one `poll` on
//! stdin and the socket when no turn can go on, and the process exits 0 only if all of stdin
//! was sent and exactly as many bytes came back (`short_echo_fails`): a server that stops early
//! without a reset (the kernel reports one only when the closing socket had unread input) still
//! cannot make the client exit 0 with part of the echo missing.

use super::error::{errno_of, EchoError};
use super::path::unix_addr;
use super::status::Status;
use crate::net::{Shut, Stream};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

const CHUNK: usize = 64 * 1024;

/// Connects to `path`, as a blocking stream socket (a full backlog waits, as a client expects;
/// the exchange's calls are non-blocking by their flags).
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

/// What one turn of an [`Exchange`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// This many bytes of the input went into the socket.
    Sent(usize),
    /// The input had ended and all of it was sent: the socket was half-closed (a failure of
    /// the shutdown is ignored: the server's end of stream or reset tells the rest).
    HalfClosed,
    /// This many bytes of echo arrived, at the start of the caller's buffer.
    Received(usize),
    /// The server's end of stream.
    Eof,
    /// A send failed (e.g. EPIPE: the server is gone).
    SendFailed(Errno),
    /// A receive failed (ECONNRESET: the server closed with input of ours unread).
    RecvFailed(Errno),
    /// Neither a send nor a receive could go on now.
    Blocked,
}

/// One client's exchange with an echo server over a connected stream.
#[derive(Debug)]
pub struct Exchange<S> {
    pub sock: S,
    /// Bytes sent so far.
    pub sent: u64,
    /// Bytes of echo received so far.
    pub received: u64,
    /// The write side was shut.
    pub shut: bool,
    prefer_send: bool,
}

impl<S: Stream> Exchange<S> {
    pub fn new(sock: S) -> Self {
        Exchange {
            sock,
            sent: 0,
            received: 0,
            shut: false,
            prefer_send: true,
        }
    }

    /// One turn: send from `input` (the input not yet sent; once it is empty and `ended`, the
    /// half-close), or receive into `buf` (`None`: not reading now), whichever can go on,
    /// trying the two in alternating order from turn to turn.
    pub fn turn(&mut self, input: &[u8], ended: bool, mut buf: Option<&mut [u8]>) -> Turn {
        let mut turn = Turn::Blocked;
        for attempt in 0..2 {
            let send_turn = (attempt == 0) == self.prefer_send;
            turn = if send_turn {
                if !input.is_empty() {
                    match self.sock.send(input) {
                        Ok(n) => {
                            self.sent += n as u64;
                            Turn::Sent(n)
                        }
                        Err(Errno::EAGAIN | Errno::EINTR) => continue,
                        Err(e) => Turn::SendFailed(e),
                    }
                } else if ended && !self.shut {
                    let _ = self.sock.shutdown(Shut::Write);
                    self.shut = true;
                    Turn::HalfClosed
                } else {
                    continue;
                }
            } else if let Some(buf) = buf.as_deref_mut() {
                match self.sock.recv(buf) {
                    Ok(0) => Turn::Eof,
                    Ok(n) => {
                        self.received += n as u64;
                        Turn::Received(n)
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(e) => Turn::RecvFailed(e),
                }
            } else {
                continue;
            };
            break;
        }
        self.prefer_send = !self.prefer_send;
        turn
    }
}

/// Runs the client; Ok(()) means everything was sent and the server closed its side.
pub fn run(path: &Path, status: Status) -> Result<(), EchoError> {
    let fd = connect_to(path)?;
    status.line(format_args!("Client socket fd = {}", fd.as_raw_fd()));
    let mut ex = Exchange::new(fd);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // stdin's bytes not yet sent: pending[from..to].
    let mut pending = vec![0u8; CHUNK];
    let (mut from, mut to) = (0, 0);
    let mut input_ended = false;
    let mut input_failed: Option<EchoError> = None;
    let mut send_failed: Option<EchoError> = None;
    let mut buf = vec![0u8; CHUNK];
    let ended = loop {
        let sending = send_failed.is_none();
        let unsent = if sending { &pending[from..to] } else { &[][..] };
        match ex.turn(unsent, input_ended || !sending, Some(&mut buf)) {
            Turn::Sent(n) => from += n,
            Turn::HalfClosed => {}
            Turn::Received(n) => out
                .write_all(&buf[..n])
                .and_then(|()| out.flush())
                .map_err(|e| EchoError::sys_nopath("cannot write to stdout", errno_of(&e)))?,
            Turn::Eof => break Ok(()),
            Turn::RecvFailed(e) => break Err(EchoError::sys("cannot read from", path, e)),
            // Go on reading: the server's end of stream or reset is the better message.
            Turn::SendFailed(e) => send_failed = Some(EchoError::sys("cannot send to", path, e)),
            Turn::Blocked => {
                let need_input = sending && !input_ended && from == to;
                let wants_send = sending && (from < to || (input_ended && !ex.shut));
                if wait(&ex.sock, need_input, wants_send)? {
                    let (n, failed) = read_stdin(&mut pending);
                    (from, to) = (0, n);
                    input_ended = n == 0;
                    input_failed = input_failed.or(failed);
                }
            }
        }
    };
    let all_sent = input_ended && from == to && input_failed.is_none() && send_failed.is_none();
    if all_sent {
        return check_echo(path, ended, ex.sent, ex.received);
    }
    ended?;
    // The server closed first. A failed send or stdin is the better message.
    if let Some(e) = send_failed.or(input_failed) {
        return Err(e);
    }
    Err(EchoError::refused(
        "connection to",
        path,
        "closed by the server before the end of input",
    ))
}

/// Waits in one `poll` for the socket (readable, or writable when `wants_send`) or for stdin
/// (when `need_input`); true when stdin has something (data, its end, or an error) to read.
fn wait(sock: &OwnedFd, need_input: bool, wants_send: bool) -> Result<bool, EchoError> {
    let mut events = PollFlags::POLLIN;
    if wants_send {
        events |= PollFlags::POLLOUT;
    }
    let stdin = std::io::stdin();
    let mut fds = vec![PollFd::new(sock.as_fd(), events)];
    if need_input {
        fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
    }
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(EchoError::sys_nopath("cannot wait for the socket", e)),
        }
    }
    Ok(need_input && fds[1].revents().is_some_and(|r| !r.is_empty()))
}

/// Reads descriptor 0 once into `buf` (no user-space buffer in between, so `poll` on it tells
/// the truth): the byte count (0 at its end or after a failure) and the failure, if any.
fn read_stdin(buf: &mut [u8]) -> (usize, Option<EchoError>) {
    let stdin = std::io::stdin();
    loop {
        match nix::unistd::read(stdin.as_fd(), buf) {
            Ok(n) => return (n, None),
            Err(Errno::EINTR) => continue,
            Err(e) => return (0, Some(EchoError::sys_nopath("cannot read stdin", e))),
        }
    }
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
