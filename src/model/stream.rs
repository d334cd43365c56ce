//! The byte stream: skbs in the receiver's queue, charged to the sender's send buffer by their truesize.

use super::params::Params;
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

/// rule `write_chunks_while_sndbuf_not_full`: a write is cut into skbs of at most `Params::max_chunk` bytes;
/// each skb is allocated only while the sender's charged memory is below its send buffer, so the last skb may
/// overshoot it. Returns the chunk sizes a write of `len` bytes gets when `wmem` is already charged.
pub fn plan_write(p: &Params, mut wmem: usize, len: usize) -> Vec<usize> {
    let mut chunks = Vec::new();
    let mut left = len;
    while left > 0 && wmem < p.sndbuf {
        let c = left.min(p.max_chunk);
        wmem += p.truesize(c);
        chunks.push(c);
        left -= c;
    }
    chunks
}
