//! Host parameters: values that differ between machines and kernels. They are measured on the running kernel
//! (`kernel::calibrate`), never written in as constants.

/// What the model needs to know about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// SO_SNDBUF of a new AF_UNIX socket (net.core.wmem_default).
    pub sndbuf: usize,
    /// SO_RCVBUF of a new AF_UNIX socket (net.core.rmem_default).
    pub rcvbuf: usize,
    /// net.core.wmem_max / rmem_max: the most a setsockopt(SO_SNDBUF / SO_RCVBUF) value counts for (before
    /// doubling).
    pub wmem_max: usize,
    pub rmem_max: usize,
    /// SOCK_MIN_SNDBUF / SOCK_MIN_RCVBUF: the least SO_SNDBUF / SO_RCVBUF can be (they depend on
    /// sizeof(struct sk_buff)).
    pub min_sndbuf: usize,
    pub min_rcvbuf: usize,
    /// net.core.somaxconn: the cap on listen backlogs (a negative backlog, cast to unsigned, gets it).
    pub somaxconn: u32,
    /// net.unix.max_dgram_qlen: a datagram receiver is full when it holds more than this many.
    pub max_dgram_qlen: u32,
    /// The most bytes one skb of a stream write carries whatever the send buffer
    /// (SKB_MAX_HEAD(0) + UNIX_SKB_FRAGS_SZ on current kernels), measured; a socket's own cap is the smaller of
    /// this and `sndbuf / 2 - 64`.
    pub max_chunk: usize,
    /// truesize of a stream skb by payload length, as runs `(first length, truesize)` sorted by length; a run
    /// holds until the next one starts. Covers 1..=max_chunk.
    pub truesize_runs: Vec<(usize, usize)>,
    /// truesize of a datagram / seqpacket skb by payload length (a different split into head and pages), as
    /// runs covering 0..=the largest datagram of the default send buffer.
    pub dgram_truesize_runs: Vec<(usize, usize)>,
    /// The real (= effective, at start) uid and gid of the process that runs the scripts.
    pub uid: u32,
    pub gid: u32,
    /// kernel.overflowuid / overflowgid: what an id the reader cannot map reads as (credentials never recorded).
    pub overflow_uid: u32,
    pub overflow_gid: u32,
    /// Kernel behaviours that differ between versions, detected by probing (never by version number):
    /// SIOCINQ still counts an OOB byte a normal read dropped (6.18: yes; 6.1: no).
    pub inq_counts_dropped_oob: bool,
    /// SIOCATMARK says 1 when the first skb is a spent OOB skb (or a listener's empty connection skb), not only
    /// when it is the unread OOB byte (6.18: yes; 6.1: no).
    pub atmark_at_consumed_oob: bool,
    /// A read with nothing copied that meets a spent OOB skb at the head frees it and stops with EAGAIN
    /// (6.1: yes; 6.18: no, it reads on).
    pub read_stops_at_consumed_oob: bool,
    /// SIOCATMARK is EOPNOTSUPP on datagram and seqpacket sockets (6.18: yes; 6.1: no, it answers).
    pub siocatmark_stream_only: bool,
    /// An unconnected datagram send without an address is ENOTCONN before the size check (6.1: yes; 6.18:
    /// no, EMSGSIZE first).
    pub dgram_peer_checked_first: bool,
    /// One clock tick in microseconds (1/HZ): socket timeouts are kept in ticks, rounded up.
    pub tick_us: u64,
}

fn lookup(runs: &[(usize, usize)], len: usize) -> usize {
    let i = runs.partition_point(|&(start, _)| start <= len);
    match i {
        0 => runs.first().map_or(len, |r| r.1),
        i => runs[i - 1].1,
    }
}

impl Params {
    /// Memory one stream skb with `len` payload bytes charges to its sender.
    pub fn truesize(&self, len: usize) -> usize {
        lookup(&self.truesize_runs, len)
    }

    /// Memory one datagram (or seqpacket record) of `len` bytes charges to its sender.
    pub fn dgram_truesize(&self, len: usize) -> usize {
        lookup(&self.dgram_truesize_runs, len)
    }

    /// A timeout of `ms` as getsockopt reads it back: whole ticks (rounded up), in whole milliseconds (rounded
    /// up).
    pub fn timeout_readback(&self, ms: u64) -> u64 {
        let tick = self.tick_us.max(1);
        let ticks = (ms * 1000).div_ceil(tick);
        (ticks * tick).div_ceil(1000)
    }

    /// The most bytes one stream skb carries from a socket whose send buffer is `sndbuf`.
    pub fn chunk(&self, sndbuf: usize) -> usize {
        (sndbuf / 2).saturating_sub(64).min(self.max_chunk).max(1)
    }
}

impl Params {
    /// The parameters by name, as `udsim params` prints them and a scenario's `# requires:` line names them
    /// (the truesize tables print as their number of runs).
    pub fn named(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sndbuf", self.sndbuf.to_string()),
            ("rcvbuf", self.rcvbuf.to_string()),
            ("wmem_max", self.wmem_max.to_string()),
            ("rmem_max", self.rmem_max.to_string()),
            ("min_sndbuf", self.min_sndbuf.to_string()),
            ("min_rcvbuf", self.min_rcvbuf.to_string()),
            ("somaxconn", self.somaxconn.to_string()),
            ("max_dgram_qlen", self.max_dgram_qlen.to_string()),
            ("max_chunk", self.max_chunk.to_string()),
            ("truesize_runs", self.truesize_runs.len().to_string()),
            (
                "dgram_truesize_runs",
                self.dgram_truesize_runs.len().to_string(),
            ),
            ("uid", self.uid.to_string()),
            ("gid", self.gid.to_string()),
            ("overflow_uid", self.overflow_uid.to_string()),
            ("overflow_gid", self.overflow_gid.to_string()),
            (
                "inq_counts_dropped_oob",
                self.inq_counts_dropped_oob.to_string(),
            ),
            (
                "atmark_at_consumed_oob",
                self.atmark_at_consumed_oob.to_string(),
            ),
            (
                "read_stops_at_consumed_oob",
                self.read_stops_at_consumed_oob.to_string(),
            ),
            (
                "dgram_peer_checked_first",
                self.dgram_peer_checked_first.to_string(),
            ),
            (
                "siocatmark_stream_only",
                self.siocatmark_stream_only.to_string(),
            ),
            ("tick_us", self.tick_us.to_string()),
        ]
    }
}
