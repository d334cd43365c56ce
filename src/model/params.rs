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
    /// The in-flight garbage collector empties the whole receive queue of each socket on a garbage cycle, and
    /// the sockets are released later, from a work queue (6.18); or it frees only the skbs that carry
    /// descriptors and the sockets are released at once (6.1). See `model/gc.rs`.
    pub gc_purges_cycle_queues: bool,
    /// One clock tick in microseconds (1/HZ): socket timeouts are kept in ticks, rounded up.
    pub tick_us: u64,
    /// fs.protected_hardlinks (a host setting, read at calibration): a user other than root may hard-link a file
    /// they do not own only if it is a regular file, neither setuid nor setgid with group execute, that they
    /// may read and write. Off: anyone may link anything they can see.
    pub protected_hardlinks: bool,
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
            (
                "gc_purges_cycle_queues",
                self.gc_purges_cycle_queues.to_string(),
            ),
            ("tick_us", self.tick_us.to_string()),
            ("protected_hardlinks", self.protected_hardlinks.to_string()),
        ]
    }
}

/// Parameter sets recorded on real kernels (`udsim params --preset` there), so the model runs without a live
/// calibration: `(name, text)`. Each was measured, not written by hand; `docs/kernels.md` says where.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "linux-6.18-host",
        include_str!("presets/linux-6.18-host.params"),
    ),
    (
        "linux-6.1-uml",
        include_str!("presets/linux-6.1-uml.params"),
    ),
    (
        "linux-6.12-qemu",
        include_str!("presets/linux-6.12-qemu.params"),
    ),
];

impl Params {
    /// A recorded parameter set by name (see [`PRESETS`]).
    ///
    /// ```
    /// use udsim::model::{Model, Params};
    /// use udsim::script::{Call, SockSpec, Value, STREAM};
    ///
    /// let params = Params::preset("linux-6.18-host").expect("a bundled preset");
    /// let mut model = Model::new(params);
    /// let p = model.step(&Call::Socket(SockSpec::of(STREAM))).unwrap();
    /// assert_eq!(p.allowed[0].value, Value::Created);
    /// assert_eq!(p.rule, "socket_creates");
    /// ```
    pub fn preset(name: &str) -> Option<Params> {
        let (_, text) = PRESETS.iter().find(|(n, _)| *n == name)?;
        Some(Params::from_preset(text).expect("bundled presets parse (tested)"))
    }

    /// Every parameter as text, one `name value` per line (`#` comments allowed when read back); the truesize
    /// tables in full as `first:truesize` runs. [`Params::from_preset`] reads it back.
    pub fn to_preset(&self) -> String {
        let runs = |r: &[(usize, usize)]| {
            r.iter()
                .map(|(a, b)| format!("{a}:{b}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut out = String::new();
        for (name, value) in self.named() {
            let value = match name {
                "truesize_runs" => runs(&self.truesize_runs),
                "dgram_truesize_runs" => runs(&self.dgram_truesize_runs),
                _ => value,
            };
            out.push_str(&format!("{name} {value}\n"));
        }
        out
    }

    /// Reads [`Params::to_preset`]'s text: every parameter exactly once; errors name the line.
    pub fn from_preset(text: &str) -> Result<Params, String> {
        let mut vals: Vec<(String, String, usize)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            if vals.iter().any(|(n, ..)| n == k) {
                return Err(format!("line {}: `{k}` given twice", i + 1));
            }
            vals.push((k.to_string(), v.trim().to_string(), i + 1));
        }
        let get = |k: &str| -> Result<(&str, usize), String> {
            vals.iter()
                .find(|(n, ..)| n == k)
                .map(|(_, v, l)| (v.as_str(), *l))
                .ok_or_else(|| format!("`{k}` is missing"))
        };
        fn num<T: std::str::FromStr>(k: &str, (v, l): (&str, usize)) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("line {l}: `{k}` is not a number: `{v}`"))
        }
        fn flag(k: &str, (v, l): (&str, usize)) -> Result<bool, String> {
            match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(format!("line {l}: `{k}` is not true or false: `{v}`")),
            }
        }
        fn runs(k: &str, (v, l): (&str, usize)) -> Result<Vec<(usize, usize)>, String> {
            let r: Vec<(usize, usize)> = v
                .split_whitespace()
                .map(|run| {
                    let (a, b) = run.split_once(':')?;
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect::<Option<_>>()
                .ok_or_else(|| format!("line {l}: `{k}` is not a list of first:truesize runs"))?;
            if r.is_empty() || r.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(format!(
                    "line {l}: `{k}` needs runs sorted by their first length"
                ));
            }
            Ok(r)
        }
        let p = Params {
            sndbuf: num("sndbuf", get("sndbuf")?)?,
            rcvbuf: num("rcvbuf", get("rcvbuf")?)?,
            wmem_max: num("wmem_max", get("wmem_max")?)?,
            rmem_max: num("rmem_max", get("rmem_max")?)?,
            min_sndbuf: num("min_sndbuf", get("min_sndbuf")?)?,
            min_rcvbuf: num("min_rcvbuf", get("min_rcvbuf")?)?,
            somaxconn: num("somaxconn", get("somaxconn")?)?,
            max_dgram_qlen: num("max_dgram_qlen", get("max_dgram_qlen")?)?,
            max_chunk: num("max_chunk", get("max_chunk")?)?,
            truesize_runs: runs("truesize_runs", get("truesize_runs")?)?,
            dgram_truesize_runs: runs("dgram_truesize_runs", get("dgram_truesize_runs")?)?,
            uid: num("uid", get("uid")?)?,
            gid: num("gid", get("gid")?)?,
            overflow_uid: num("overflow_uid", get("overflow_uid")?)?,
            overflow_gid: num("overflow_gid", get("overflow_gid")?)?,
            inq_counts_dropped_oob: flag("inq_counts_dropped_oob", get("inq_counts_dropped_oob")?)?,
            atmark_at_consumed_oob: flag("atmark_at_consumed_oob", get("atmark_at_consumed_oob")?)?,
            read_stops_at_consumed_oob: flag(
                "read_stops_at_consumed_oob",
                get("read_stops_at_consumed_oob")?,
            )?,
            siocatmark_stream_only: flag("siocatmark_stream_only", get("siocatmark_stream_only")?)?,
            dgram_peer_checked_first: flag(
                "dgram_peer_checked_first",
                get("dgram_peer_checked_first")?,
            )?,
            gc_purges_cycle_queues: flag("gc_purges_cycle_queues", get("gc_purges_cycle_queues")?)?,
            tick_us: num("tick_us", get("tick_us")?)?,
            protected_hardlinks: flag("protected_hardlinks", get("protected_hardlinks")?)?,
        };
        let known: Vec<&str> = p.named().iter().map(|(n, _)| *n).collect();
        if let Some((k, _, l)) = vals.iter().find(|(n, ..)| !known.contains(&n.as_str())) {
            return Err(format!("line {l}: `{k}` is not a parameter"));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_prints_back_the_same() {
        for (name, text) in PRESETS {
            let p = Params::from_preset(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(Params::from_preset(&p.to_preset()), Ok(p.clone()), "{name}");
            assert_eq!(Params::preset(name), Some(p));
        }
        assert_eq!(Params::preset("linux-2.4"), None);
    }

    #[test]
    fn bad_preset_text_is_an_error_naming_the_line() {
        let good = PRESETS[0].1;
        let swap = |from: &str, to: &str| good.replacen(from, to, 1);
        let e = |t: &str| Params::from_preset(t).unwrap_err();
        let nan = e(&swap("sndbuf ", "sndbuf x"));
        let at = good
            .lines()
            .position(|l| l.starts_with("sndbuf "))
            .expect("sndbuf")
            + 1;
        assert!(
            nan.starts_with(&format!("line {at}: `sndbuf` is not a number")),
            "{nan}"
        );
        assert!(e(&good.replace("tick_us", "# tick_us")).contains("`tick_us` is missing"));
        let twice = e(&format!("{good}tick_us 1\n"));
        let last = good.lines().count() + 1;
        assert!(
            twice.starts_with(&format!("line {last}: `tick_us` given twice")),
            "{twice}"
        );
        assert!(e(&format!("{good}colour blue\n")).contains("`colour` is not a parameter"));
        assert!(e(&swap(
            "inq_counts_dropped_oob true",
            "inq_counts_dropped_oob yes"
        ))
        .contains("not true or false"));
        assert!(e(&swap("truesize_runs ", "truesize_runs 9:1 1:2 ")).contains("sorted"));
    }
}
