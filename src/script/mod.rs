//! The script language (contract versions 1 and 2, see docs/script-language.md): the vocabulary shared by the
//! scenario library, `udsim check`, `udsim explore`, the property test and the fuzz targets.
//!
//! Every call, value and result enters here first (parse, print, round trip); the model, the executor, the
//! generator and the reports learn it from these types.

mod errno;
mod names;
mod parse;
mod print;

pub use errno::Errno;
pub use names::{
    family_name, ioctl_name, msg_flag_names, opt_name, type_name, SockOpt, MSG_CMSG_CLOEXEC,
    MSG_CTRUNC, MSG_DONTWAIT, MSG_EOR, MSG_MORE, MSG_NOSIGNAL, MSG_OOB, MSG_PEEK, MSG_TRUNC,
    MSG_WAITALL,
};
pub use parse::{
    is_auto_name, lines, parse, stays_inside, Lines, ParseError, MAX_ADDR, MAX_DATA, MAX_READ,
};
pub use print::{
    fmt_addr_out, fmt_call, fmt_data, fmt_line, fmt_outcome, fmt_path, fmt_script, fmt_value,
};

use std::fmt;

/// A socket's name in a script (`srv`, `s0`).
pub type Name = String;

/// `SOCK_STREAM`.
pub const STREAM: i32 = 1;
/// `SOCK_DGRAM`.
pub const DGRAM: i32 = 2;
/// `SOCK_SEQPACKET`.
pub const SEQPACKET: i32 = 5;

/// How a socket is created: `socket(TYPE, OPT, ...)` and `socketpair(...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockSpec {
    /// The `SOCK_` type number (`STREAM` = 1); any number, so that the kernel's answer can be checked.
    pub ty: i32,
    /// `BLOCKING`: created without `SOCK_NONBLOCK`.
    pub blocking: bool,
    /// `protocol=N` (default 0, printed only when written).
    pub protocol: Option<i32>,
}

impl SockSpec {
    /// A non-blocking socket of type `ty`, protocol 0: what v1's `socket(STREAM)` is.
    pub const fn of(ty: i32) -> SockSpec {
        SockSpec {
            ty,
            blocking: false,
            protocol: None,
        }
    }
}

/// An address handed to the kernel (bind, connect, sendto, sendmsg `to=`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// `"path"`: the literal's bytes are sun_path; length `2 + len + 1` (len ≤ 107), `2 + 108`, or `2 + len`.
    Path(Vec<u8>),
    /// `@DATA`: a NUL, then the bytes; length `2 + 1 + len`, no terminating NUL.
    Abstract(Vec<u8>),
    /// `@autoN`: the autobind name numbered N among this script's results so far.
    Auto(u32),
    /// `unnamed`: family only, length 2.
    Unnamed,
    /// `{family=F, path=DATA, len=N}`, each field optional.
    Raw {
        family: Option<i32>,
        path: Option<Vec<u8>>,
        len: Option<u32>,
    },
}

/// A `sockaddr` exactly as handed to the kernel: the bytes of the buffer (family first) and the length passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockAddrBytes {
    /// A `sockaddr_storage`, zero-padded, so any length up to 128 reads defined bytes (the kernel refuses a
    /// longer length without reading: EINVAL from `move_addr_to_kernel`), held inline.
    pub buf: [u8; 128],
    pub len: u32,
}

impl SockAddrBytes {
    /// `sa_family`.
    pub fn family(&self) -> u16 {
        u16::from_ne_bytes([self.buf[0], self.buf[1]])
    }

    /// The `sun_path` bytes within the length passed (capped at the buffer).
    pub fn sun_path(&self) -> &[u8] {
        let end = (self.len as usize).min(self.buf.len());
        self.buf.get(2..end).unwrap_or(&[])
    }
}

/// The v1 length rule for a `sun_path` of `n` bytes: `2 + n + 1` up to 107, `2 + 108` for 108, `2 + n` beyond.
pub fn v1_len(n: usize) -> u32 {
    (match n {
        0..=107 => 2 + n + 1,
        108 => 2 + 108,
        _ => 2 + n,
    }) as u32
}

impl Addr {
    /// The sockaddr this address hands the kernel (`None` for `@autoN`, which the checker resolves first).
    pub fn encode(&self) -> Option<SockAddrBytes> {
        let (family, path, len): (i32, &[u8], u32) = match self {
            Addr::Path(p) => (1, p, v1_len(p.len())),
            Addr::Abstract(d) => {
                let mut buf = [0u8; 128];
                buf[..2].copy_from_slice(&1u16.to_ne_bytes());
                let n = d.len().min(128 - 3);
                buf[3..3 + n].copy_from_slice(&d[..n]);
                return Some(SockAddrBytes {
                    buf,
                    len: 3 + d.len() as u32,
                });
            }
            Addr::Auto(_) => return None,
            Addr::Unnamed => (1, &[], 2),
            Addr::Raw { family, path, len } => {
                let p = path.as_deref().unwrap_or(&[]);
                let default = if path.is_some() { v1_len(p.len()) } else { 2 };
                (family.unwrap_or(1), p, len.unwrap_or(default))
            }
        };
        let mut buf = [0u8; 128];
        buf[..2].copy_from_slice(&(family as u16).to_ne_bytes());
        let n = path.len().min(128 - 2);
        buf[2..2 + n].copy_from_slice(&path[..n]);
        Some(SockAddrBytes { buf, len })
    }

    /// The filesystem path this address names for the private-directory rule, if any (bytes up to the first
    /// NUL, when the first byte is not NUL).
    pub fn fs_path(&self) -> Option<&[u8]> {
        let p = match self {
            Addr::Path(p) => p,
            Addr::Raw { path: Some(p), .. } => p,
            _ => return None,
        };
        let p = p.split(|&b| b == 0).next().unwrap_or(&[]);
        (!p.is_empty()).then_some(p)
    }
}

/// `send` / `recv` flags (`MSG_*` bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flags(pub u32);

impl Flags {
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// A process id in credentials: the script's own process, or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pid {
    /// `SELF`: the script's process.
    Own,
    Num(i64),
}

/// `{pid=P, uid=U, gid=G}`: SCM_CREDENTIALS and SO_PEERCRED. `(uid_t)-1` is `-1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Creds {
    pub pid: Pid,
    pub uid: i64,
    pub gid: i64,
}

/// `sendmsg` fields, each optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MsgOut {
    pub to: Option<Addr>,
    pub rights: Option<Vec<Name>>,
    pub creds: Option<Creds>,
    /// Default `MSG_NOSIGNAL`.
    pub flags: Option<Flags>,
}

/// A value for `setsockopt`: an integer or a duration in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptVal {
    Int(i64),
    Ms(u64),
}

/// `ioctl` requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ioctl {
    InQ,
    OutQ,
    AtMark,
}

/// `shutdown` directions (`RD` = 0, `WR` = 1, `RDWR` = 2, or any integer, so invalid values can be checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct How(pub i32);

impl How {
    pub const RD: How = How(0);
    pub const WR: How = How(1);
    pub const RDWR: How = How(2);

    pub fn reads(self) -> bool {
        self == How::RD || self == How::RDWR
    }
    pub fn writes(self) -> bool {
        self == How::WR || self == How::RDWR
    }
    pub fn is_valid(self) -> bool {
        (0..=2).contains(&self.0)
    }
}

/// The bytes a send call carries, shared: the model queues slices of it without copying (a 300 kB write
/// would otherwise be copied into the model's queue on every step), and cloning a call is cheap.
pub type Payload = std::sync::Arc<[u8]>;

/// One call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    Socket(SockSpec),
    Socketpair(SockSpec),
    Bind(Name, Addr),
    Listen(Name, i32),
    /// `accept(S)`, `accept(S, BLOCKING)`, `accept(S, buf=N)`.
    Accept(Name, bool, Option<u32>),
    Connect(Name, Addr),
    Dup(Name),
    /// `nonblock(S, 0 | 1)`.
    Nonblock(Name, bool),
    Write(Name, Payload),
    Read(Name, usize),
    Send(Name, Payload, Flags),
    /// `sendto(S, DATA, ADDR [, FLAGS])`; FLAGS default `MSG_NOSIGNAL`.
    SendTo(Name, Payload, Addr, Option<Flags>),
    SendMsg(Name, Payload, MsgOut),
    Recv(Name, usize, Flags),
    /// `recvfrom(S, N [, FLAGS] [, buf=K])`.
    RecvFrom(Name, usize, Option<Flags>, Option<u32>),
    /// `recvmsg(S, N [, FLAGS] [, space=K] [, buf=K])`.
    RecvMsg(Name, usize, Option<Flags>, Option<usize>, Option<u32>),
    Shutdown(Name, How),
    Close(Name),
    GetSockName(Name, Option<u32>),
    GetPeerName(Name, Option<u32>),
    Poll(Name),
    GetSockOpt(Name, SockOpt),
    SetSockOpt(Name, SockOpt, OptVal),
    Ioctl(Name, Ioctl),
    Unlink(Vec<u8>),
    Mkdir(Vec<u8>),
    Mkfile(Vec<u8>),
    Symlink(Vec<u8>, Vec<u8>),
    Link(Vec<u8>, Vec<u8>),
    Rename(Vec<u8>, Vec<u8>),
    Chmod(Vec<u8>, u32),
    Stat(Vec<u8>),
    Setcred(u32, u32),
}

/// The calls by kind, for per-call statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallKind {
    Socket,
    Socketpair,
    Bind,
    Listen,
    Accept,
    Connect,
    Dup,
    Nonblock,
    Write,
    Read,
    Send,
    SendTo,
    SendMsg,
    Recv,
    RecvFrom,
    RecvMsg,
    Shutdown,
    Close,
    GetSockName,
    GetPeerName,
    Poll,
    GetSockOpt,
    SetSockOpt,
    Ioctl,
    Unlink,
    Mkdir,
    Mkfile,
    Symlink,
    Link,
    Rename,
    Chmod,
    Stat,
    Setcred,
}

impl CallKind {
    /// The version-1 calls (the ones every socket state is checked with in the v1 coverage test).
    pub const V1: [CallKind; 13] = [
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
            CallKind::Socketpair => "socketpair",
            CallKind::Bind => "bind",
            CallKind::Listen => "listen",
            CallKind::Accept => "accept",
            CallKind::Connect => "connect",
            CallKind::Dup => "dup",
            CallKind::Nonblock => "nonblock",
            CallKind::Write => "write",
            CallKind::Read => "read",
            CallKind::Send => "send",
            CallKind::SendTo => "sendto",
            CallKind::SendMsg => "sendmsg",
            CallKind::Recv => "recv",
            CallKind::RecvFrom => "recvfrom",
            CallKind::RecvMsg => "recvmsg",
            CallKind::Shutdown => "shutdown",
            CallKind::Close => "close",
            CallKind::GetSockName => "getsockname",
            CallKind::GetPeerName => "getpeername",
            CallKind::Poll => "poll",
            CallKind::GetSockOpt => "getsockopt",
            CallKind::SetSockOpt => "setsockopt",
            CallKind::Ioctl => "ioctl",
            CallKind::Unlink => "unlink",
            CallKind::Mkdir => "mkdir",
            CallKind::Mkfile => "mkfile",
            CallKind::Symlink => "symlink",
            CallKind::Link => "link",
            CallKind::Rename => "rename",
            CallKind::Chmod => "chmod",
            CallKind::Stat => "stat",
            CallKind::Setcred => "setcred",
        }
    }
}

/// The one list of calls that act on a socket, shared by [`Call::subject`] and [`Call::subject_mut`].
macro_rules! subject_of {
    ($call:expr) => {
        match $call {
            Call::Bind(s, _)
            | Call::Listen(s, _)
            | Call::Accept(s, ..)
            | Call::Connect(s, _)
            | Call::Dup(s)
            | Call::Nonblock(s, _)
            | Call::Write(s, _)
            | Call::Read(s, _)
            | Call::Send(s, ..)
            | Call::SendTo(s, ..)
            | Call::SendMsg(s, ..)
            | Call::Recv(s, ..)
            | Call::RecvFrom(s, ..)
            | Call::RecvMsg(s, ..)
            | Call::Shutdown(s, _)
            | Call::Close(s)
            | Call::GetSockName(s, _)
            | Call::GetPeerName(s, _)
            | Call::Poll(s)
            | Call::GetSockOpt(s, _)
            | Call::SetSockOpt(s, ..)
            | Call::Ioctl(s, _) => Some(s),
            _ => None,
        }
    };
}

impl Call {
    pub fn kind(&self) -> CallKind {
        match self {
            Call::Socket(..) => CallKind::Socket,
            Call::Socketpair(..) => CallKind::Socketpair,
            Call::Bind(..) => CallKind::Bind,
            Call::Listen(..) => CallKind::Listen,
            Call::Accept(..) => CallKind::Accept,
            Call::Connect(..) => CallKind::Connect,
            Call::Dup(..) => CallKind::Dup,
            Call::Nonblock(..) => CallKind::Nonblock,
            Call::Write(..) => CallKind::Write,
            Call::Read(..) => CallKind::Read,
            Call::Send(..) => CallKind::Send,
            Call::SendTo(..) => CallKind::SendTo,
            Call::SendMsg(..) => CallKind::SendMsg,
            Call::Recv(..) => CallKind::Recv,
            Call::RecvFrom(..) => CallKind::RecvFrom,
            Call::RecvMsg(..) => CallKind::RecvMsg,
            Call::Shutdown(..) => CallKind::Shutdown,
            Call::Close(..) => CallKind::Close,
            Call::GetSockName(..) => CallKind::GetSockName,
            Call::GetPeerName(..) => CallKind::GetPeerName,
            Call::Poll(..) => CallKind::Poll,
            Call::GetSockOpt(..) => CallKind::GetSockOpt,
            Call::SetSockOpt(..) => CallKind::SetSockOpt,
            Call::Ioctl(..) => CallKind::Ioctl,
            Call::Unlink(..) => CallKind::Unlink,
            Call::Mkdir(..) => CallKind::Mkdir,
            Call::Mkfile(..) => CallKind::Mkfile,
            Call::Symlink(..) => CallKind::Symlink,
            Call::Link(..) => CallKind::Link,
            Call::Rename(..) => CallKind::Rename,
            Call::Chmod(..) => CallKind::Chmod,
            Call::Stat(..) => CallKind::Stat,
            Call::Setcred(..) => CallKind::Setcred,
        }
    }

    /// How many descriptors the call creates when it succeeds (received rights are counted from the outcome).
    pub fn creates_n(&self) -> usize {
        match self {
            Call::Socket(_) | Call::Accept(..) | Call::Dup(_) => 1,
            Call::Socketpair(_) => 2,
            _ => 0,
        }
    }

    /// True for calls that create a descriptor on success (and so give it a name).
    pub fn creates(&self) -> bool {
        self.creates_n() > 0
    }

    /// True for calls that may name new descriptors: creating calls and receives that can carry rights.
    pub fn may_name(&self) -> bool {
        self.creates() || matches!(self, Call::RecvMsg(..))
    }

    /// The socket the call acts on, if any, to rename it.
    pub fn subject_mut(&mut self) -> Option<&mut Name> {
        subject_of!(self)
    }

    /// The socket the call acts on, if any.
    pub fn subject(&self) -> Option<&Name> {
        subject_of!(self)
    }

    /// Every name the call uses: its subject and any names in `rights=[...]`.
    pub fn names(&self) -> Vec<&Name> {
        let mut v: Vec<&Name> = self.subject().into_iter().collect();
        if let Call::SendMsg(_, _, m) = self {
            v.extend(m.rights.iter().flatten());
        }
        v
    }

    /// Every name the call uses, to rename them.
    pub fn names_mut(&mut self) -> Vec<&mut Name> {
        match self {
            Call::SendMsg(s, _, m) => {
                let mut v = vec![s];
                v.extend(m.rights.iter_mut().flatten());
                v
            }
            c => c.subject_mut().into_iter().collect(),
        }
    }

    /// The address the call hands the kernel, if any.
    pub fn addr(&self) -> Option<&Addr> {
        match self {
            Call::Bind(_, a) | Call::Connect(_, a) | Call::SendTo(_, _, a, _) => Some(a),
            Call::SendMsg(_, _, m) => m.to.as_ref(),
            _ => None,
        }
    }

    /// The address the call hands the kernel, to resolve `@autoN`.
    pub fn addr_mut(&mut self) -> Option<&mut Addr> {
        match self {
            Call::Bind(_, a) | Call::Connect(_, a) | Call::SendTo(_, _, a, _) => Some(a),
            Call::SendMsg(_, _, m) => m.to.as_mut(),
            _ => None,
        }
    }

    /// Data the call sends.
    pub fn data(&self) -> Option<&[u8]> {
        match self {
            Call::Write(_, d) | Call::Send(_, d, _) | Call::SendTo(_, d, ..) => Some(d),
            Call::SendMsg(_, d, _) => Some(d),
            _ => None,
        }
    }

    /// Data the call sends, to cut it (shrinking).
    pub fn data_mut(&mut self) -> Option<&mut Payload> {
        match self {
            Call::Write(_, d) | Call::Send(_, d, _) | Call::SendTo(_, d, ..) => Some(d),
            Call::SendMsg(_, d, _) => Some(d),
            _ => None,
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

/// An address the kernel returned (getsockname, getpeername, accept's peer, a receive's sender).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrOut {
    /// The sun_path bytes copied into the buffer and the length the kernel returned (0: no address, `none`;
    /// 2: `unnamed`).
    Raw { path: Vec<u8>, len: u32 },
    /// An autobind-shaped name (a NUL and five lowercase hex digits), numbered in order of first appearance.
    /// The checker turns raw names of that shape into this form; executor and model return `Raw`.
    Auto(u32),
}

impl Default for AddrOut {
    fn default() -> AddrOut {
        AddrOut::NONE
    }
}

impl AddrOut {
    /// No address (`from none`).
    pub const NONE: AddrOut = AddrOut::Raw {
        path: Vec::new(),
        len: 0,
    };

    /// `unnamed`: length 2.
    pub fn unnamed() -> AddrOut {
        AddrOut::Raw {
            path: Vec::new(),
            len: 2,
        }
    }

    /// A filesystem name as the kernel returns it: the path, its NUL, length `2 + len + 1`.
    pub fn path(p: &[u8]) -> AddrOut {
        let mut path = p.to_vec();
        path.push(0);
        AddrOut::Raw {
            len: 2 + path.len() as u32,
            path,
        }
    }

    /// An abstract name as the kernel returns it: NUL, then the name.
    pub fn abstract_name(n: &[u8]) -> AddrOut {
        let mut path = vec![0];
        path.extend_from_slice(n);
        AddrOut::Raw {
            len: 2 + path.len() as u32,
            path,
        }
    }

    /// The five hex digits of an autobind-shaped name returned in full, if this is one.
    pub fn auto_key(&self) -> Option<[u8; 5]> {
        match self {
            AddrOut::Raw { path, len }
                if path.len() == 6
                    && *len == 8
                    && path[0] == 0
                    && path[1..]
                        .iter()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) =>
            {
                let mut k = [0u8; 5];
                k.copy_from_slice(&path[1..]);
                Some(k)
            }
            _ => None,
        }
    }

    /// A copy as a buffer of `buf` bytes receives it: the sun_path bytes that fit, the full length.
    pub fn cut(&self, buf: u32) -> AddrOut {
        match self {
            AddrOut::Raw { path, len } => {
                let fit = (buf.min(*len) as usize).saturating_sub(2).min(path.len());
                AddrOut::Raw {
                    path: path[..fit].to_vec(),
                    len: *len,
                }
            }
            a => a.clone(),
        }
    }
}

/// What a receive returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Received {
    /// The bytes copied.
    pub data: Vec<u8>,
    /// The return value (differs from the bytes copied with MSG_TRUNC).
    pub ret: usize,
    /// The sender's address (`recvfrom`, `recvmsg`); `AddrOut::NONE` for length 0 or when not asked.
    pub from: AddrOut,
    /// `msg_flags` (`recvmsg` only).
    pub flags: u32,
    /// Descriptors received (SCM_RIGHTS) that fit the control buffer; each becomes a name.
    pub rights: usize,
    /// SCM_CREDENTIALS received.
    pub creds: Option<Creds>,
}

impl Received {
    /// Data read with nothing else: what `read` / `recv` return.
    pub fn bytes(data: Vec<u8>) -> Received {
        Received {
            ret: data.len(),
            data,
            ..Received::default()
        }
    }
}

/// File types `stat` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Socket,
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
}

impl FileKind {
    pub const NAMES: [(&'static str, FileKind); 7] = [
        ("socket", FileKind::Socket),
        ("file", FileKind::File),
        ("dir", FileKind::Dir),
        ("symlink", FileKind::Symlink),
        ("fifo", FileKind::Fifo),
        ("chr", FileKind::Char),
        ("blk", FileKind::Block),
    ];

    pub fn name(self) -> &'static str {
        FileKind::NAMES
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }
}

/// The value a call returned, as the model predicts it or the kernel gave it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// A call that creates one descriptor succeeded (socket, dup): the checker names it.
    Created,
    /// socketpair succeeded: two descriptors.
    Pair,
    /// accept succeeded: one descriptor, and the peer address the kernel filled in.
    Accepted(AddrOut),
    /// `0` from bind, listen, connect, shutdown, close, unlink, the file calls, setsockopt, setcred.
    Ok,
    /// Bytes accepted by a send.
    Wrote(usize),
    /// What a receive returned (`""` with `ret` 0 is end of file).
    Recv(Received),
    /// An address from getsockname / getpeername.
    Addr(AddrOut),
    /// Readiness from `poll`.
    Ready(Events),
    /// An integer from getsockopt or ioctl.
    Int(i64),
    /// A pending SO_ERROR: `{error=E}`.
    SoError(Errno),
    /// SO_PEERCRED.
    Cred(Creds),
    /// SO_RCVTIMEO / SO_SNDTIMEO in milliseconds.
    Ms(u64),
    /// `stat`: the type and the 12 permission bits.
    Stat(FileKind, u32),
    /// The call failed.
    Err(Errno),
}

/// What one call returned: its value, and whether it raised SIGPIPE or returned only because its timeout ran out.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Outcome {
    pub value: Value,
    /// ` with SIGPIPE`.
    pub sigpipe: bool,
    /// ` after timeout`.
    pub waited: bool,
}

impl Outcome {
    pub const fn of(value: Value) -> Outcome {
        Outcome {
            value,
            sigpipe: false,
            waited: false,
        }
    }

    pub const fn err(e: Errno) -> Outcome {
        Outcome::of(Value::Err(e))
    }

    pub const OK: Outcome = Outcome::of(Value::Ok);

    /// The errno, if the call failed.
    pub fn errno(&self) -> Option<Errno> {
        match self.value {
            Value::Err(e) => Some(e),
            _ => None,
        }
    }

    /// How many descriptors the outcome creates (each takes a name).
    pub fn new_fds(&self) -> usize {
        match &self.value {
            Value::Created | Value::Accepted(_) => 1,
            Value::Pair => 2,
            Value::Recv(r) => r.rights,
            _ => 0,
        }
    }
}

impl From<Value> for Outcome {
    fn from(v: Value) -> Outcome {
        Outcome::of(v)
    }
}

/// Received data as written: exact bytes or `<N bytes>` (length checked).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DataPat {
    Exact(Vec<u8>),
    Len(usize),
}

impl DataPat {
    pub fn admits(&self, d: &[u8]) -> bool {
        match self {
            DataPat::Exact(e) => e == d,
            DataPat::Len(n) => d.len() == *n,
        }
    }
}

/// A written receive result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecvPat {
    pub data: DataPat,
    /// `(R)`: the return value where it differs from the bytes copied.
    pub ret: Option<usize>,
    /// `from ADDR` / `from none` (recvfrom, recvmsg).
    pub from: Option<AddrOut>,
    pub flags: u32,
    /// `rights=[x, y]`: names for the received descriptors.
    pub rights: Vec<Name>,
    pub creds: Option<Creds>,
}

/// The value written after `->`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ExpectValue {
    /// Exactly this value.
    Is(Value),
    /// A creating call succeeded and its descriptors take these names (socket, dup: one; socketpair: two).
    Named(Vec<Name>),
    /// accept succeeded: `NAME` (success only) or `NAME from ADDR`.
    Accepted(Name, Option<AddrOut>),
    /// A receive returned this.
    Recv(RecvPat),
}

/// The result written after `->` on a line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Expect {
    pub value: ExpectValue,
    pub sigpipe: bool,
    pub waited: bool,
}

impl Expect {
    pub fn is(v: Value) -> Expect {
        Expect::plain(ExpectValue::Is(v))
    }

    pub fn plain(value: ExpectValue) -> Expect {
        Expect {
            value,
            sigpipe: false,
            waited: false,
        }
    }

    /// Whether an outcome satisfies this expectation (addresses compared as they print: the checker numbers
    /// autobind names in both before asking).
    pub fn admits(&self, o: &Outcome) -> bool {
        if self.sigpipe != o.sigpipe || self.waited != o.waited {
            return false;
        }
        match (&self.value, &o.value) {
            (ExpectValue::Is(e), v) => e == v,
            (ExpectValue::Named(n), Value::Created) => n.len() == 1,
            (ExpectValue::Named(n), Value::Pair) => n.len() == 2,
            (ExpectValue::Accepted(_, None), Value::Accepted(_)) => true,
            (ExpectValue::Accepted(_, Some(a)), Value::Accepted(b)) => a == b,
            (ExpectValue::Recv(p), Value::Recv(r)) => {
                p.data.admits(&r.data)
                    && p.ret.unwrap_or(r.data.len()) == r.ret
                    && p.from.as_ref().is_none_or(|f| *f == r.from)
                    && p.flags == r.flags
                    && p.rights.len() == r.rights
                    && p.creds == r.creds
            }
            _ => false,
        }
    }

    /// The names the written result gives new descriptors, in order.
    pub fn names(&self) -> &[Name] {
        match &self.value {
            ExpectValue::Named(n) => n,
            ExpectValue::Accepted(n, _) => std::slice::from_ref(n),
            ExpectValue::Recv(p) => &p.rights,
            ExpectValue::Is(_) => &[],
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
