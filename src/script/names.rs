//! Symbolic names of the language's constants: socket types, address families, `MSG_*` flags, socket options
//! and ioctl requests, with the numbers Linux (x86-64, glibc) gives them.

use super::Ioctl;

/// `SOCK_*` types by name.
pub const TYPES: &[(&str, i32)] = &[
    ("STREAM", 1),
    ("DGRAM", 2),
    ("RAW", 3),
    ("RDM", 4),
    ("SEQPACKET", 5),
    ("DCCP", 6),
    ("PACKET", 10),
];

/// The name of a socket type, if it has one.
pub fn type_name(ty: i32) -> Option<&'static str> {
    TYPES.iter().find(|t| t.1 == ty).map(|t| t.0)
}

/// Address families by name.
pub const FAMILIES: &[(&str, i32)] = &[("AF_UNSPEC", 0), ("AF_UNIX", 1), ("AF_INET", 2)];

pub fn family_name(f: i32) -> Option<&'static str> {
    FAMILIES.iter().find(|t| t.1 == f).map(|t| t.0)
}

pub const MSG_OOB: u32 = 0x1;
pub const MSG_PEEK: u32 = 0x2;
pub const MSG_CTRUNC: u32 = 0x8;
pub const MSG_TRUNC: u32 = 0x20;
pub const MSG_DONTWAIT: u32 = 0x40;
pub const MSG_EOR: u32 = 0x80;
pub const MSG_WAITALL: u32 = 0x100;
pub const MSG_NOSIGNAL: u32 = 0x4000;
pub const MSG_MORE: u32 = 0x8000;
pub const MSG_CMSG_CLOEXEC: u32 = 0x4000_0000;

/// Every `MSG_*` name in glibc's `<sys/socket.h>`, in ascending bit order.
pub const MSG_FLAGS: &[(&str, u32)] = &[
    ("MSG_OOB", 0x1),
    ("MSG_PEEK", 0x2),
    ("MSG_DONTROUTE", 0x4),
    ("MSG_CTRUNC", 0x8),
    ("MSG_PROXY", 0x10),
    ("MSG_TRUNC", 0x20),
    ("MSG_DONTWAIT", 0x40),
    ("MSG_EOR", 0x80),
    ("MSG_WAITALL", 0x100),
    ("MSG_FIN", 0x200),
    ("MSG_SYN", 0x400),
    ("MSG_CONFIRM", 0x800),
    ("MSG_RST", 0x1000),
    ("MSG_ERRQUEUE", 0x2000),
    ("MSG_NOSIGNAL", 0x4000),
    ("MSG_MORE", 0x8000),
    ("MSG_WAITFORONE", 0x1_0000),
    ("MSG_BATCH", 0x4_0000),
    ("MSG_ZEROCOPY", 0x400_0000),
    ("MSG_FASTOPEN", 0x2000_0000),
    ("MSG_CMSG_CLOEXEC", 0x4000_0000),
];

/// The names of the bits of `flags` in the given order of preference, then every other named bit ascending,
/// then what no name covers as one decimal number.
pub fn msg_flag_names(flags: u32, first: &[u32]) -> Vec<String> {
    let mut out = Vec::new();
    let mut left = flags;
    let name = |bit: u32| MSG_FLAGS.iter().find(|f| f.1 == bit).map(|f| f.0);
    for &bit in first {
        if left & bit != 0 {
            if let Some(n) = name(bit) {
                out.push(n.to_string());
                left &= !bit;
            }
        }
    }
    for &(n, bit) in MSG_FLAGS {
        if left & bit != 0 {
            out.push(n.to_string());
            left &= !bit;
        }
    }
    if left != 0 {
        out.push(left.to_string());
    }
    out
}

/// A SOL_SOCKET option, by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SockOpt(pub i32);

impl SockOpt {
    pub const TYPE: SockOpt = SockOpt(3);
    pub const ERROR: SockOpt = SockOpt(4);
    pub const SNDBUF: SockOpt = SockOpt(7);
    pub const RCVBUF: SockOpt = SockOpt(8);
    pub const OOBINLINE: SockOpt = SockOpt(10);
    pub const PASSCRED: SockOpt = SockOpt(16);
    pub const PEERCRED: SockOpt = SockOpt(17);
    pub const RCVLOWAT: SockOpt = SockOpt(18);
    pub const SNDLOWAT: SockOpt = SockOpt(19);
    pub const RCVTIMEO: SockOpt = SockOpt(20);
    pub const SNDTIMEO: SockOpt = SockOpt(21);
    pub const ACCEPTCONN: SockOpt = SockOpt(30);
    pub const PASSSEC: SockOpt = SockOpt(34);
    pub const PROTOCOL: SockOpt = SockOpt(38);
    pub const DOMAIN: SockOpt = SockOpt(39);
    pub const PEEK_OFF: SockOpt = SockOpt(42);
    pub const PASSPIDFD: SockOpt = SockOpt(76);

    /// SO_RCVTIMEO / SO_SNDTIMEO: values are durations.
    pub fn is_timeout(self) -> bool {
        self == SockOpt::RCVTIMEO || self == SockOpt::SNDTIMEO
    }

    /// Options that would install descriptors no rule names: setting them is a script error.
    pub fn unsettable(self) -> bool {
        self == SockOpt::PASSSEC || self == SockOpt::PASSPIDFD
    }
}

/// The contract's options by name.
pub const OPTS: &[(&str, SockOpt)] = &[
    ("SO_TYPE", SockOpt::TYPE),
    ("SO_DOMAIN", SockOpt::DOMAIN),
    ("SO_PROTOCOL", SockOpt::PROTOCOL),
    ("SO_ERROR", SockOpt::ERROR),
    ("SO_ACCEPTCONN", SockOpt::ACCEPTCONN),
    ("SO_SNDBUF", SockOpt::SNDBUF),
    ("SO_RCVBUF", SockOpt::RCVBUF),
    ("SO_PASSCRED", SockOpt::PASSCRED),
    ("SO_PEEK_OFF", SockOpt::PEEK_OFF),
    ("SO_RCVLOWAT", SockOpt::RCVLOWAT),
    ("SO_SNDLOWAT", SockOpt::SNDLOWAT),
    ("SO_RCVTIMEO", SockOpt::RCVTIMEO),
    ("SO_SNDTIMEO", SockOpt::SNDTIMEO),
    ("SO_PEERCRED", SockOpt::PEERCRED),
    ("SO_OOBINLINE", SockOpt::OOBINLINE),
];

/// Other SOL_SOCKET options whose value is an int, accepted by number (they print as numbers).
pub const INT_OPTS: &[i32] = &[
    1,  // SO_DEBUG
    2,  // SO_REUSEADDR
    5,  // SO_DONTROUTE
    6,  // SO_BROADCAST
    9,  // SO_KEEPALIVE
    11, // SO_NO_CHECK
    12, // SO_PRIORITY
    15, // SO_REUSEPORT
    32, // SO_SNDBUFFORCE
    33, // SO_RCVBUFFORCE
    34, // SO_PASSSEC
    36, // SO_MARK
    40, // SO_RXQ_OVFL
    41, // SO_WIFI_STATUS
    43, // SO_NOFCS
    44, // SO_LOCK_FILTER
    45, // SO_SELECT_ERR_QUEUE
    46, // SO_BUSY_POLL
    49, // SO_INCOMING_CPU
    60, // SO_ZEROCOPY
    76, // SO_PASSPIDFD
];

pub fn opt_name(o: SockOpt) -> Option<&'static str> {
    OPTS.iter().find(|t| t.1 == o).map(|t| t.0)
}

pub const IOCTLS: &[(&str, Ioctl)] = &[
    ("SIOCINQ", Ioctl::InQ),
    ("SIOCOUTQ", Ioctl::OutQ),
    ("SIOCATMARK", Ioctl::AtMark),
];

pub fn ioctl_name(i: Ioctl) -> &'static str {
    IOCTLS.iter().find(|t| t.1 == i).map_or("?", |t| t.0)
}
