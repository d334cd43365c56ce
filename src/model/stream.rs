//! The byte stream: skbs in the receiver's queue, charged to the sender's send buffer by their truesize.

use super::socket::SockId;

/// One sk_buff in a receive queue.
#[derive(Clone, Debug)]
pub struct Skb {
    pub data: Vec<u8>,
    /// Bytes already read from the front.
    pub consumed: usize,
    /// Memory charged to the sender until the skb is fully read (or dropped).
    pub truesize: usize,
    pub sender: SockId,
}

impl Skb {
    pub fn len(&self) -> usize {
        self.data.len() - self.consumed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
