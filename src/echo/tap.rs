//! `--print`: a copy of every received byte on stdout (the seed's server prints what it reads).

use super::status::Status;
use std::io::Write;

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

    /// Copies `bytes` to stdout.
    pub fn copy(&mut self, bytes: &[u8]) {
        if !self.enabled {
            return;
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
            self.enabled = false;
            let errno = super::error::errno_of(&e);
            self.status.warn(format_args!(
                "cannot write to stdout: {}; --print turned off",
                super::error::describe(errno)
            ));
        }
    }
}
