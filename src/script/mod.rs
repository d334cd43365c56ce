//! The script language (contract version 1, see docs/script-language.md): the vocabulary shared by the
//! scenario library, `udsim check`, `udsim explore`, the property test and the fuzz targets.

mod errno;
mod parse;
mod print;

pub use errno::Errno;
pub use parse::{is_auto_name, parse, ParseError, MAX_ADDR, MAX_DATA, MAX_READ};
pub use print::{fmt_addr, fmt_call, fmt_data, fmt_line, fmt_outcome, fmt_script};

use std::fmt;

/// A socket's name in a script (`srv`, `s0`).
pub type Name = String;

/// `shutdown` directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum How {
    Rd,
    Wr,
    RdWr,
}

impl How {
    pub fn reads(self) -> bool {
        matches!(self, How::Rd | How::RdWr)
    }
    pub fn writes(self) -> bool {
        matches!(self, How::Wr | How::RdWr)
    }
}

/// One socket call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    Socket,
    Bind(Name, Vec<u8>),
    Listen(Name, i32),
    Accept(Name),
    Connect(Name, Vec<u8>),
    Write(Name, Vec<u8>),
    Read(Name, usize),
    Shutdown(Name, How),
    Close(Name),
    Unlink(Vec<u8>),
    GetSockName(Name),
    GetPeerName(Name),
    Poll(Name),
}

/// The calls by kind, for per-call statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallKind {
    Socket,
    Bind,
    Listen,
    Accept,
    Connect,
    Write,
    Read,
    Shutdown,
    Close,
    Unlink,
    GetSockName,
    GetPeerName,
    Poll,
}

impl CallKind {
    pub const ALL: [CallKind; 13] = [
        CallKind::Socket,
        CallKind::Bind,
        CallKind::Listen,
        CallKind::Accept,
        CallKind::Connect,
        CallKind::Write,
        CallKind::Read,
        CallKind::Shutdown,
        CallKind::Close,
        CallKind::Unlink,
        CallKind::GetSockName,
        CallKind::GetPeerName,
        CallKind::Poll,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CallKind::Socket => "socket",
            CallKind::Bind => "bind",
            CallKind::Listen => "listen",
            CallKind::Accept => "accept",
            CallKind::Connect => "connect",
            CallKind::Write => "write",
            CallKind::Read => "read",
            CallKind::Shutdown => "shutdown",
            CallKind::Close => "close",
            CallKind::Unlink => "unlink",
            CallKind::GetSockName => "getsockname",
            CallKind::GetPeerName => "getpeername",
            CallKind::Poll => "poll",
        }
    }
}

impl Call {
    pub fn kind(&self) -> CallKind {
        match self {
            Call::Socket => CallKind::Socket,
            Call::Bind(..) => CallKind::Bind,
            Call::Listen(..) => CallKind::Listen,
            Call::Accept(..) => CallKind::Accept,
            Call::Connect(..) => CallKind::Connect,
            Call::Write(..) => CallKind::Write,
            Call::Read(..) => CallKind::Read,
            Call::Shutdown(..) => CallKind::Shutdown,
            Call::Close(..) => CallKind::Close,
            Call::Unlink(..) => CallKind::Unlink,
            Call::GetSockName(..) => CallKind::GetSockName,
            Call::GetPeerName(..) => CallKind::GetPeerName,
            Call::Poll(..) => CallKind::Poll,
        }
    }

    /// True for calls that create a socket on success (and so give it a name).
    pub fn creates(&self) -> bool {
        matches!(self, Call::Socket | Call::Accept(_))
    }

    /// The socket the call acts on, if any, to rename it.
    pub fn subject_mut(&mut self) -> Option<&mut Name> {
        match self {
            Call::Socket | Call::Unlink(_) => None,
            Call::Bind(s, _)
            | Call::Listen(s, _)
            | Call::Accept(s)
            | Call::Connect(s, _)
            | Call::Write(s, _)
            | Call::Read(s, _)
            | Call::Shutdown(s, _)
            | Call::Close(s)
            | Call::GetSockName(s)
            | Call::GetPeerName(s)
            | Call::Poll(s) => Some(s),
        }
    }

    /// The socket the call acts on, if any.
    pub fn subject(&self) -> Option<&Name> {
        match self {
            Call::Socket | Call::Unlink(_) => None,
            Call::Bind(s, _)
            | Call::Listen(s, _)
            | Call::Accept(s)
            | Call::Connect(s, _)
            | Call::Write(s, _)
            | Call::Read(s, _)
            | Call::Shutdown(s, _)
            | Call::Close(s)
            | Call::GetSockName(s)
            | Call::GetPeerName(s)
            | Call::Poll(s) => Some(s),
        }
    }
}

/// Poll readiness flags, in the order the script language prints them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Events(pub u8);

impl Events {
    pub const NONE: Events = Events(0);
    pub const IN: Events = Events(1);
    pub const PRI: Events = Events(2);
    pub const OUT: Events = Events(4);
    pub const ERR: Events = Events(8);
    pub const HUP: Events = Events(16);
    pub const RDHUP: Events = Events(32);
    pub const NVAL: Events = Events(64);
    pub const NAMES: [(&'static str, Events); 7] = [
        ("IN", Events::IN),
        ("PRI", Events::PRI),
        ("OUT", Events::OUT),
        ("ERR", Events::ERR),
        ("HUP", Events::HUP),
        ("RDHUP", Events::RDHUP),
        ("NVAL", Events::NVAL),
    ];

    pub fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Events {
    type Output = Events;
    fn bitor(self, rhs: Events) -> Events {
        Events(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Events {
    fn bitor_assign(&mut self, rhs: Events) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0");
        }
        let mut first = true;
        for (name, flag) in Events::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// What one call returned, as the model predicts it or the kernel gave it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A creating call succeeded: a new socket (the checker names it).
    Created,
    /// `0` from bind, listen, connect, shutdown, close, unlink.
    Ok,
    /// Bytes accepted by `write`.
    Wrote(usize),
    /// Bytes returned by `read` (empty: end of file).
    Data(Vec<u8>),
    /// An address from getsockname/getpeername; `None` is `unnamed`.
    Addr(Option<Vec<u8>>),
    /// Readiness from `poll`.
    Ready(Events),
    /// The call failed.
    Err(Errno),
}

/// The result written after `->` on a line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// A creating call succeeded and its socket takes this name.
    Named(Name),
    /// Exactly this outcome.
    Is(Outcome),
    /// `read` returned this many bytes (`<N bytes>`).
    Bytes(usize),
}

impl Expect {
    /// Whether an outcome satisfies this expectation.
    pub fn admits(&self, o: &Outcome) -> bool {
        match (self, o) {
            (Expect::Named(_), Outcome::Created) => true,
            (Expect::Is(e), o) => e == o,
            (Expect::Bytes(n), Outcome::Data(d)) => d.len() == *n,
            _ => false,
        }
    }
}

/// One line of a script: a call and, optionally, its expected result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    pub call: Call,
    pub expect: Option<Expect>,
    /// 1-based line number in the source text (0 for generated lines).
    pub line_no: usize,
}

/// A script: the calls in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Script {
    pub lines: Vec<Line>,
}

impl Script {
    /// A script from bare calls (no expectations), as generators build them.
    pub fn from_calls(calls: impl IntoIterator<Item = Call>) -> Script {
        Script {
            lines: calls
                .into_iter()
                .map(|call| Line {
                    call,
                    expect: None,
                    line_no: 0,
                })
                .collect(),
        }
    }

    /// Structural equality ignoring source line numbers.
    pub fn same_as(&self, other: &Script) -> bool {
        self.lines.len() == other.lines.len()
            && self
                .lines
                .iter()
                .zip(&other.lines)
                .all(|(a, b)| a.call == b.call && a.expect == b.expect)
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fmt_script(self))
    }
}
