//! One socket's state, as `struct unix_sock` holds it: the TCP-like state, address, peer, shutdown bits,
//! pending error, receive queue and the send-buffer memory it has charged.

use super::stream::Skb;
use crate::script::{AddrOut, Errno};
use std::collections::VecDeque;

/// Index of a socket in the model's arena (sockets are never removed, only released).
pub type SockId = usize;

/// `sk_state` for a stream socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// TCP_CLOSE: fresh, bound, or a client whose connect failed.
    Unconnected,
    /// TCP_LISTEN.
    Listening,
    /// TCP_ESTABLISHED: connected, accepted, or still an embryo in a listener's queue.
    Connected,
}

/// A bound address (`u->addr`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// A filesystem name, without its terminating NUL.
    Path(Vec<u8>),
    /// An abstract name: all the `sun_path` bytes handed to bind, leading NUL included.
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

#[derive(Clone, Debug)]
pub struct Sock {
    pub state: State,
    /// `sk_max_ack_backlog` (listeners).
    pub backlog: u32,
    /// Embryos waiting for accept (a listener's receive queue).
    pub pending: VecDeque<SockId>,
    pub addr: Option<Addr>,
    /// `unix_peer(sk)`: kept after the peer is released (only the released socket forgets its peer).
    pub peer: Option<SockId>,
    /// RCV_SHUTDOWN.
    pub shut_rd: bool,
    /// SEND_SHUTDOWN.
    pub shut_wr: bool,
    /// `sk_err`: reported once by read, shown by poll as ERR.
    pub err: Option<Errno>,
    /// Received bytes, as the skbs they arrived in.
    pub rx: VecDeque<Skb>,
    /// `sk_wmem_alloc`: truesize of this socket's skbs still queued at its peer.
    pub wmem: usize,
    /// Released (its last fd closed, or an embryo whose listener closed).
    pub released: bool,
}

impl Sock {
    pub fn new() -> Sock {
        Sock {
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
        }
    }

    /// Bytes waiting to be read.
    pub fn queued(&self) -> usize {
        self.rx.iter().map(|s| s.len()).sum()
    }
}

impl Default for Sock {
    fn default() -> Self {
        Sock::new()
    }
}
