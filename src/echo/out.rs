//! The server's stdout (`--print`) and stderr (status lines, warnings) without ever blocking it
//! (`output_never_blocks`): a terminal stopped with ^S, or a pipe nobody reads, must not freeze
//! the single thread that serves every client and reads the signals.
//!
//! After [`init`], every write is attempted at once, non-blocking; what does not fit is kept in a
//! bounded queue that the engines flush when the descriptor is writable (it sits in their
//! epoll/poll set only while something is queued). What does not fit in the queue either is
//! dropped and counted: whole status lines ([`ERR_QUEUE`]), `--print` bytes ([`OUT_QUEUE`]); a
//! one-line notice with the count follows once the output moves again. With nothing queued a
//! write costs the write(2) itself and one branch.
//!
//! Non-blocking without touching anybody else's file: a socket is written with MSG_DONTWAIT; a
//! pipe, FIFO or terminal is reopened through /proc/self/fd with O_NONBLOCK (a new open file
//! description of its own, so the shell sharing the terminal keeps blocking I/O); only if that is
//! impossible is O_NONBLOCK set on the shared description, and restored by [`finish`]. Regular
//! files and block devices are written as before (they do not stall on a reader).
//!
//! Before [`init`] (and in `udsim client`) output is written directly, blocking.

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::socket::{send, MsgFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// At most this many bytes of status lines wait for a slow stderr.
pub const ERR_QUEUE: usize = 64 * 1024;
/// At most this many `--print` bytes wait for a slow stdout.
pub const OUT_QUEUE: usize = 256 * 1024;

/// Something is queued (or a descriptor is still being polled): the engines' one branch.
static ATTENTION: AtomicBool = AtomicBool::new(false);

thread_local! {
    static OUTPUTS: RefCell<Option<Outputs>> = const { RefCell::new(None) };
}

/// How a descriptor is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// send(2) with MSG_DONTWAIT.
    Socket,
    /// write(2) on a non-blocking descriptor.
    Nonblocking,
    /// write(2), blocking: a regular file or a block device.
    Blocking,
}

#[derive(Debug)]
struct Sink {
    /// The descriptor written (a reopened one is owned here).
    fd: RawFd,
    _reopened: Option<OwnedFd>,
    how: How,
    /// Flags to put back on the shared description (`finish`), if O_NONBLOCK was set on it.
    restore: Option<OFlag>,
    queue: VecDeque<u8>,
    cap: usize,
    /// Lines (stderr) or bytes (stdout) dropped since the last notice.
    dropped: u64,
    /// The descriptor is in the engine's poll set.
    polled: bool,
    /// A write failed for good (EPIPE, EIO): output there is off.
    broken: bool,
}

#[derive(Debug)]
struct Outputs {
    stdout: Sink,
    stderr: Sink,
}

/// Which output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `--print`'s copy of the received bytes.
    Stdout,
    /// Status lines and warnings.
    Stderr,
}

impl Sink {
    fn open(fd: RawFd, cap: usize) -> Sink {
        let mut sink = Sink {
            fd,
            _reopened: None,
            how: How::Blocking,
            restore: None,
            queue: VecDeque::new(),
            cap,
            dropped: 0,
            polled: false,
            broken: false,
        };
        // SAFETY: fds 1 and 2 stay open for the life of the process.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(st) = fstat(borrowed) else {
            return sink;
        };
        match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFSOCK => sink.how = How::Socket,
            // A terminal (^S stops it) or a pipe; other character devices such as /dev/null
            // do not stall.
            SFlag::S_IFCHR if !nix::unistd::isatty(borrowed).unwrap_or(false) => {}
            SFlag::S_IFIFO | SFlag::S_IFCHR => {
                let again = format!("/proc/self/fd/{fd}");
                let flags =
                    OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
                match open(again.as_str(), flags, Mode::empty()) {
                    Ok(own) => {
                        sink.fd = own.as_raw_fd();
                        sink._reopened = Some(own);
                        sink.how = How::Nonblocking;
                    }
                    Err(_) => {
                        if let Ok(bits) = fcntl(borrowed, FcntlArg::F_GETFL) {
                            let old = OFlag::from_bits_truncate(bits);
                            if !old.contains(OFlag::O_NONBLOCK)
                                && fcntl(borrowed, FcntlArg::F_SETFL(old | OFlag::O_NONBLOCK))
                                    .is_ok()
                            {
                                sink.restore = Some(old);
                            }
                            sink.how = How::Nonblocking;
                        }
                    }
                }
            }
            _ => {}
        }
        sink
    }

    fn write_now(&self, bytes: &[u8]) -> Result<usize, Errno> {
        loop {
            let r = match self.how {
                How::Socket => send(
                    self.fd,
                    bytes,
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                ),
                How::Nonblocking | How::Blocking => {
                    // SAFETY: the fd is open for the life of the process (or owned by self).
                    nix::unistd::write(unsafe { BorrowedFd::borrow_raw(self.fd) }, bytes)
                }
            };
            match r {
                Err(Errno::EINTR) => continue,
                r => return r,
            }
        }
    }

    /// Writes `bytes` now or queues them; `line`: a unit that is dropped whole, never torn.
    fn push(&mut self, bytes: &[u8], line: bool) -> Result<(), Errno> {
        if self.broken {
            return Ok(());
        }
        let mut rest = bytes;
        if self.queue.is_empty() {
            match self.write_now(bytes) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => rest = &bytes[n..],
                Err(Errno::EAGAIN) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        let torn = rest.len() < bytes.len();
        if self.queue.len() + rest.len() <= self.cap || (line && torn) {
            // (The rest of a line already begun is kept even over the bound: at most one line.)
            self.queue.extend(rest);
            ATTENTION.store(true, Ordering::Relaxed);
        } else if line {
            self.dropped += 1;
        } else {
            self.dropped += rest.len() as u64;
        }
        Ok(())
    }

    /// Writes what is queued until the descriptor would block; true when the queue is empty.
    fn flush(&mut self) -> bool {
        while !self.queue.is_empty() && !self.broken {
            let (front, _) = self.queue.as_slices();
            match self.write_now(front) {
                Ok(n) => {
                    self.queue.drain(..n);
                }
                Err(Errno::EAGAIN) => return false,
                Err(_) => {
                    self.broken = true;
                    self.queue.clear();
                }
            }
        }
        self.queue.clear();
        true
    }
}

/// Makes the server's stdout and stderr non-blocking (see the module doc). Call once, after the
/// signals are blocked.
pub fn init() {
    OUTPUTS.with(|o| {
        *o.borrow_mut() = Some(Outputs {
            stdout: Sink::open(1, OUT_QUEUE),
            stderr: Sink::open(2, ERR_QUEUE),
        });
    });
}

/// Writes to `stream`: at once if possible, else queued or dropped (never blocks after
/// [`init`]). An error means the output is gone for good (EPIPE, EIO).
pub fn write(stream: Stream, bytes: &[u8], line: bool) -> Result<(), Errno> {
    let handled = OUTPUTS.with(|o| {
        o.borrow_mut().as_mut().map(|outs| match stream {
            Stream::Stdout => outs.stdout.push(bytes, line),
            Stream::Stderr => outs.stderr.push(bytes, line),
        })
    });
    match handled {
        Some(r) => r,
        None => {
            let r = match stream {
                Stream::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(bytes).and_then(|()| out.flush())
                }
                Stream::Stderr => std::io::stderr().lock().write_all(bytes),
            };
            r.map_err(|e| super::error::errno_of(&e))
        }
    }
}

/// Whether anything is queued or polled: when false, the engines have nothing to do here.
#[inline]
pub fn attention() -> bool {
    ATTENTION.load(Ordering::Relaxed)
}

/// Flushes both queues as far as they go without blocking; then reports drops, if any, with one
/// line each on stderr.
pub fn flush() {
    OUTPUTS.with(|o| {
        let mut o = o.borrow_mut();
        let Some(outs) = o.as_mut() else {
            return;
        };
        let out_empty = outs.stdout.flush();
        if out_empty && outs.stdout.dropped > 0 {
            let n = std::mem::take(&mut outs.stdout.dropped);
            let notice = format!(
                "udsim: --print dropped {n} bytes: stdout was not being read fast enough\n"
            );
            let _ = outs.stderr.push(notice.as_bytes(), true);
        }
        if outs.stderr.flush() && outs.stderr.dropped > 0 {
            let n = std::mem::take(&mut outs.stderr.dropped);
            let notice =
                format!("udsim: {n} status lines dropped: stderr was not being read fast enough\n");
            let _ = outs.stderr.push(notice.as_bytes(), true);
        }
    });
}

/// The descriptors that should be polled for writability now, each with whether it is already
/// in the poll set, and marks them as polled. Descriptors no longer needed are returned with
/// `want == false` once (to be taken out of an epoll set).
pub fn poll_changes(mut each: impl FnMut(Stream, BorrowedFd<'_>, bool)) {
    OUTPUTS.with(|o| {
        let mut o = o.borrow_mut();
        let Some(outs) = o.as_mut() else {
            ATTENTION.store(false, Ordering::Relaxed);
            return;
        };
        let mut busy = false;
        for (stream, sink) in [
            (Stream::Stdout, &mut outs.stdout),
            (Stream::Stderr, &mut outs.stderr),
        ] {
            let want = !sink.queue.is_empty() && !sink.broken;
            if want != sink.polled {
                sink.polled = want;
                // SAFETY: the fd is open for the life of the process (or owned by the sink).
                each(stream, unsafe { BorrowedFd::borrow_raw(sink.fd) }, want);
            }
            busy |= want;
        }
        ATTENTION.store(busy, Ordering::Relaxed);
    });
}

/// The descriptors with something queued (for poll(2) users such as `--iterative`).
pub fn queued_fds() -> Vec<BorrowedFd<'static>> {
    OUTPUTS.with(|o| {
        let o = o.borrow();
        let Some(outs) = o.as_ref() else {
            return Vec::new();
        };
        [&outs.stdout, &outs.stderr]
            .into_iter()
            .filter(|s| !s.queue.is_empty() && !s.broken)
            // SAFETY: the fd is open for the life of the process (or owned by the sink, which
            // lives in a thread-local until the thread ends).
            .map(|s| unsafe { BorrowedFd::borrow_raw(s.fd) })
            .collect()
    })
}

/// At exit: one last flush without blocking (what still does not fit is dropped), and any
/// O_NONBLOCK set on a shared description is cleared again.
pub fn finish() {
    flush();
    OUTPUTS.with(|o| {
        if let Some(outs) = o.borrow_mut().take() {
            for sink in [&outs.stdout, &outs.stderr] {
                if let Some(old) = sink.restore {
                    // SAFETY: fds 1 and 2 stay open for the life of the process.
                    let _ = fcntl(
                        unsafe { BorrowedFd::borrow_raw(sink.fd) },
                        FcntlArg::F_SETFL(old),
                    );
                }
            }
        }
    });
    ATTENTION.store(false, Ordering::Relaxed);
}
