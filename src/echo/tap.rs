//! `--print`: a copy of every received byte on stdout (the seed's server prints what it reads).

use super::out::{self, Stream};
use super::status::Status;

/// Copies received bytes to stdout when enabled; a failing stdout is reported once, then ignored.
#[derive(Debug)]
pub struct Tap {
    enabled: bool,
    status: Status,
}

impl Tap {
    /// A tap that prints when `enabled`.
    pub fn new(enabled: bool, status: Status) -> Self {
        Tap { enabled, status }
    }

    /// Copies `bytes` to stdout (never blocking the server: see [`super::out`]).
    pub fn copy(&mut self, bytes: &[u8]) {
        if !self.enabled {
            return;
        }
        if let Err(errno) = out::write(Stream::Stdout, bytes, false) {
            self.enabled = false;
            self.status.warn(format_args!(
                "cannot write to stdout: {}; --print turned off",
                super::error::describe(errno)
            ));
        }
    }
}
