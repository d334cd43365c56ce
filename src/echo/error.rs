//! One-line errors: what was being done, to which path, and the kernel's errno.
//!
//! Every runtime failure of the echo programs ends as one `EchoError`, printed as
//! `udsim: cannot connect to "x.sock": connection refused (ECONNREFUSED)` with exit status 1.

use nix::errno::Errno;
use std::fmt;
use std::path::{Path, PathBuf};

/// A runtime failure of `udsim serve` or `udsim client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoError {
    /// What was attempted, as a verb phrase: "cannot connect to", "cannot bind".
    pub action: &'static str,
    /// The socket path involved, when there is one.
    pub path: Option<PathBuf>,
    /// Why it failed.
    pub cause: Cause,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The kernel said no.
    Errno(Errno),
    /// udsim itself refuses (path safety and similar); the text says why.
    Refused(String),
}

impl EchoError {
    /// A failure reported by the kernel.
    pub fn sys(action: &'static str, path: &Path, errno: Errno) -> Self {
        EchoError {
            action,
            path: Some(path.to_path_buf()),
            cause: Cause::Errno(errno),
        }
    }

    /// A failure reported by the kernel, not tied to a path.
    pub fn sys_nopath(action: &'static str, errno: Errno) -> Self {
        EchoError {
            action,
            path: None,
            cause: Cause::Errno(errno),
        }
    }

    /// A refusal by udsim itself.
    pub fn refused(action: &'static str, path: &Path, why: impl Into<String>) -> Self {
        EchoError {
            action,
            path: Some(path.to_path_buf()),
            cause: Cause::Refused(why.into()),
        }
    }

    /// The errno behind this error, if the kernel gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self.cause {
            Cause::Errno(e) => Some(e),
            Cause::Refused(_) => None,
        }
    }
}

/// `connection refused (ECONNREFUSED)`: the C library's text, lower-cased, then the symbolic name.
pub fn describe(errno: Errno) -> String {
    let desc = errno.desc();
    let mut chars = desc.chars();
    let lowered = match chars.next() {
        Some(first) => first.to_lowercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    };
    format!("{lowered} ({errno:?})")
}

/// The errno of a std I/O error (EIO when it has none).
pub fn errno_of(err: &std::io::Error) -> Errno {
    err.raw_os_error()
        .map(Errno::from_raw)
        .unwrap_or(Errno::EIO)
}

impl fmt::Display for EchoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action)?;
        if let Some(path) = &self.path {
            write!(f, " {path:?}")?;
        }
        match &self.cause {
            Cause::Errno(e) => write!(f, ": {}", describe(*e)),
            Cause::Refused(why) => write!(f, ": {why}"),
        }
    }
}

impl std::error::Error for EchoError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_refused_reads_like_the_issue() {
        let e = EchoError::sys(
            "cannot connect to",
            Path::new("x.sock"),
            Errno::ECONNREFUSED,
        );
        assert_eq!(
            e.to_string(),
            "cannot connect to \"x.sock\": connection refused (ECONNREFUSED)"
        );
    }
}
