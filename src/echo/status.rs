//! Status lines on stderr (the seed's words), silenced by `--quiet`; warnings are never silenced.
//! In the server they never block it (see [`super::out`]).

use super::out::{self, Stream};
use std::fmt::{Arguments, Write as _};

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
}

/// Writes one line to stderr with one write(2) (formatted first, so a reader of the pipe is woken
/// once per line, not once per piece); a failing stderr is ignored rather than allowed to panic.
fn emit(args: Arguments<'_>, prefix: &str) {
    let mut line = String::with_capacity(64);
    let _ = writeln!(line, "{prefix}{args}");
    let _ = out::write(Stream::Stderr, line.as_bytes(), true);
}
