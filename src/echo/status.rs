//! Status lines on stderr (the seed's words), silenced by `--quiet`; warnings are never silenced.
//! In the server they never block it (see [`super::out`]).
//!
//! `warnings_rate_limited`: a warning that can repeat once per connection (a rejected peer, an
//! accept that fails for lack of fds) is printed the first time; repeats within the next second
//! are only counted, and the count is printed as one line when the second is over
//! ([`flush_limited`], which the engines call while [`limited_pending`]). A flood thus gives at
//! most about two lines per second per kind.

use super::out::{self, Stream};
use std::cell::RefCell;
use std::fmt::{Arguments, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The window of `warnings_rate_limited`.
pub const WARN_WINDOW: Duration = Duration::from_secs(1);

/// Warnings that are rate-limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeated {
    /// A peer refused by `--allow-uid`.
    Rejected,
    /// accept (or a splice pipe for the next client) failed: out of fds or memory.
    AcceptFailed,
}

impl Repeated {
    fn summary(self) -> &'static str {
        match self {
            Repeated::Rejected => "more connections rejected (--allow-uid)",
            Repeated::AcceptFailed => "more failed accepts (out of file descriptors or memory)",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Limiter {
    /// When the current window began (the last line printed for this kind).
    since: Option<Instant>,
    /// Occurrences not printed since then.
    suppressed: u64,
}

/// Some count waits to be printed: the engines' one branch.
static PENDING: AtomicBool = AtomicBool::new(false);

thread_local! {
    static LIMITERS: RefCell<[Limiter; 2]> = const { RefCell::new([Limiter { since: None, suppressed: 0 }; 2]) };
}

/// Whether a suppressed count waits to be printed.
#[inline]
pub fn limited_pending() -> bool {
    PENDING.load(Ordering::Relaxed)
}

/// Prints the counts whose window is over; returns how long until the next one is due.
pub fn flush_limited() -> Option<Duration> {
    let now = Instant::now();
    let mut next: Option<Duration> = None;
    LIMITERS.with(|l| {
        let mut l = l.borrow_mut();
        for (i, kind) in [Repeated::Rejected, Repeated::AcceptFailed]
            .into_iter()
            .enumerate()
        {
            let lim = &mut l[i];
            let Some(since) = lim.since else { continue };
            if lim.suppressed == 0 {
                continue;
            }
            let age = now.saturating_duration_since(since);
            if age >= WARN_WINDOW {
                emit(
                    format_args!(
                        "{} {} in the last {:.1} s",
                        lim.suppressed,
                        kind.summary(),
                        age.as_secs_f64()
                    ),
                    "udsim: ",
                );
                lim.since = Some(now);
                lim.suppressed = 0;
            } else {
                let left = WARN_WINDOW - age;
                next = Some(next.map_or(left, |n| n.min(left)));
            }
        }
        PENDING.store(next.is_some(), Ordering::Relaxed);
    });
    next
}

/// Where status and warning lines go.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    quiet: bool,
}

impl Status {
    /// `quiet` silences status lines (not warnings or errors).
    pub fn new(quiet: bool) -> Self {
        Status { quiet }
    }

    /// A status line such as `Accepted socket fd = 5`.
    pub fn line(&self, args: Arguments<'_>) {
        if !self.quiet {
            emit(args, "");
        }
    }

    /// Whether status lines are printed at all (to skip formatting work in hot paths).
    pub fn enabled(&self) -> bool {
        !self.quiet
    }

    /// A warning, prefixed `udsim: `, printed even with `--quiet`.
    pub fn warn(&self, args: Arguments<'_>) {
        emit(args, "udsim: ");
    }

    /// A warning that may repeat per connection (`warnings_rate_limited`).
    pub fn warn_repeated(&self, kind: Repeated, args: Arguments<'_>) {
        let now = Instant::now();
        let print = LIMITERS.with(|l| {
            let lim = &mut l.borrow_mut()[kind as usize];
            match lim.since {
                Some(since) if now.saturating_duration_since(since) < WARN_WINDOW => {
                    lim.suppressed += 1;
                    PENDING.store(true, Ordering::Relaxed);
                    false
                }
                _ => true,
            }
        });
        if print {
            // A count from an old window first, so the lines read in order.
            flush_limited();
            LIMITERS.with(|l| l.borrow_mut()[kind as usize].since = Some(now));
            emit(args, "udsim: ");
        }
    }
}

/// Writes one line to stderr with one write(2) (formatted first, so a reader of the pipe is woken
/// once per line, not once per piece); a failing stderr is ignored rather than allowed to panic.
fn emit(args: Arguments<'_>, prefix: &str) {
    let mut line = String::with_capacity(64);
    let _ = writeln!(line, "{prefix}{args}");
    let _ = out::write(Stream::Stderr, line.as_bytes(), true);
}
