//! One socket's state, as `struct unix_sock` holds it: type, TCP-like state, address, peer, shutdown bits,
//! pending error, receive queue, the send-buffer memory it has charged, its options and its open file.

use super::stream::Skb;
use crate::script::{AddrOut, Creds, Errno};
use std::collections::VecDeque;

/// Index of a socket in the model's arena (sockets are never removed, only released).
pub type SockId = usize;

/// `sk_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// TCP_CLOSE: fresh, bound, a client whose connect failed, an unconnected datagram socket.
    Unconnected,
    /// TCP_LISTEN.
    Listening,
    /// TCP_ESTABLISHED: connected, accepted, still an embryo in a listener's queue, or a datagram socket with a
    /// peer.
    Connected,
}

/// A bound address (`u->addr`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// A filesystem name, without its terminating NUL.
    Path(Vec<u8>),
    /// An abstract name: all the `sun_path` bytes handed to bind, leading NUL included (an autobind name is
    /// NUL and five hex digits).
    Abstract(Vec<u8>),
}

impl Addr {
    /// The address as getsockname returns it: a path with its terminating NUL; an abstract name as bound.
    pub fn out(&self) -> AddrOut {
        match self {
            Addr::Path(p) => AddrOut::path(p),
            Addr::Abstract(a) => AddrOut::Raw {
                path: a.clone(),
                len: 2 + a.len() as u32,
            },
        }
    }
}

/// (The queues come last: comparing two states, the derived `==` meets the cheap fields first.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sock {
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET` (RAW was made DGRAM at creation).
    pub ty: i32,
    pub state: State,
    /// `sk_max_ack_backlog`: a listener's backlog; for a datagram socket, max_dgram_qlen.
    pub backlog: u32,
    pub addr: Option<Addr>,
    /// `unix_peer(sk)`: kept after the peer is released (only the released socket forgets its peer).
    pub peer: Option<SockId>,
    /// RCV_SHUTDOWN.
    pub shut_rd: bool,
    /// SEND_SHUTDOWN.
    pub shut_wr: bool,
    /// `sk_err`: reported once, shown by poll as ERR.
    pub err: Option<Errno>,
    /// `sk_wmem_alloc`: truesize of this socket's skbs still queued at their receivers.
    pub wmem: usize,
    /// Released (its last fd closed, or an embryo whose listener closed).
    pub released: bool,
    /// Descriptors (names, orphaned fds) that refer to the socket's open file; released at 0.
    pub refs: usize,
    /// O_NONBLOCK of the socket's open file (shared by every descriptor of it).
    pub nonblock: bool,
    /// SO_SNDBUF, SO_RCVBUF.
    pub sndbuf: usize,
    pub rcvbuf: usize,
    /// SO_RCVTIMEO, SO_SNDTIMEO in milliseconds (0: wait for ever).
    pub rcvtimeo: u64,
    pub sndtimeo: u64,
    /// SO_PEEK_OFF (-1: off).
    pub peek_off: i32,
    /// SO_RCVLOWAT.
    pub rcvlowat: i32,
    pub passcred: bool,
    pub oobinline: bool,
    /// SO_PEERCRED: the peer's credentials as recorded at connect / listen / socketpair.
    pub peercred: Option<Creds>,
    /// `inq_len` of a stream socket (SIOCINQ): bytes queued and not yet read; an OOB byte a normal read dropped
    /// stays counted.
    pub inq: usize,
    /// An embryo still in its listener's queue (it has no socket yet: senders attach credentials).
    pub embryo: bool,
    /// Embryos waiting for accept (a listener's receive queue).
    pub pending: VecDeque<SockId>,
    /// Received bytes, as the skbs they arrived in (a datagram or record is one skb).
    pub rx: VecDeque<Skb>,
}

impl Sock {
    pub fn new() -> Sock {
        Sock {
            ty: crate::script::STREAM,
            state: State::Unconnected,
            backlog: 0,
            pending: VecDeque::new(),
            addr: None,
            peer: None,
            shut_rd: false,
            shut_wr: false,
            err: None,
            rx: VecDeque::new(),
            wmem: 0,
            released: false,
            refs: 0,
            nonblock: true,
            sndbuf: 0,
            rcvbuf: 0,
            rcvtimeo: 0,
            sndtimeo: 0,
            peek_off: -1,
            rcvlowat: 1,
            passcred: false,
            oobinline: false,
            peercred: None,
            inq: 0,
            embryo: false,
        }
    }

    /// Bytes waiting to be read.
    pub fn queued(&self) -> usize {
        self.rx.iter().map(|s| s.len()).sum()
    }

    /// `unix_recvq_full`: more datagrams (or embryos) queued than the backlog allows.
    pub fn recvq_full(&self) -> bool {
        let n = if self.state == State::Listening {
            self.pending.len()
        } else {
            self.rx.len()
        };
        n as u64 > self.backlog as u64
    }
}

impl Default for Sock {
    fn default() -> Self {
        Sock::new()
    }
}
