//! Host parameters: values that differ between machines and kernels. They are measured on the running kernel
//! (`kernel::calibrate`), never written in as constants.

/// What the model needs to know about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// SO_SNDBUF of a new AF_UNIX stream socket (net.core.wmem_default).
    pub sndbuf: usize,
    /// net.core.somaxconn: the cap on listen backlogs (a negative backlog, cast to unsigned, gets it).
    pub somaxconn: u32,
    /// Most bytes one skb of a write carries (min(sndbuf/2 - 64, SKB_MAX_HEAD(0) + UNIX_SKB_FRAGS_SZ) on
    /// current kernels), measured.
    pub max_chunk: usize,
    /// truesize of an skb by payload length, as runs `(first length, truesize)` sorted by length; a run holds
    /// until the next one starts. Covers 1..=max_chunk.
    pub truesize_runs: Vec<(usize, usize)>,
}

impl Params {
    /// Memory one skb with `len` payload bytes charges to its sender.
    pub fn truesize(&self, len: usize) -> usize {
        let i = self
            .truesize_runs
            .partition_point(|&(start, _)| start <= len);
        match i {
            0 => self.truesize_runs.first().map_or(len, |r| r.1),
            i => self.truesize_runs[i - 1].1,
        }
    }
}
