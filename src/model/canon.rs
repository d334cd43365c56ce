//! A canonical, hashable description of the model's state, for enumerating the states a small universe of
//! calls reaches (`udsim enumerate`). Two models whose descriptions are equal answer every later call alike,
//! up to renaming: sockets are renumbered in order of first appearance (through the script's names, then the
//! socket files, then peers, pending embryos, senders and descriptors in flight), and `Model::canonical`
//! also takes the least description over every renaming of the open names and of the universe's paths.
//!
//! Queued bytes are described by their lengths only (how many were sent, how many read). That is sound
//! only where every byte the script sends has the same value (the enumeration writes `x` only): then the
//! contents carry no information the lengths do not. Pure: reads the model, changes nothing.

use super::namespace::Node;
use super::socket::{Addr, Sock, SockId, State};
use super::{Handle, Model};
use crate::script::Creds;

/// A socket's address, with universe paths replaced by their index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CAddr {
    /// The `i`th path of the universe (after renaming).
    Path(usize),
    /// A path outside the universe, as bytes.
    OtherPath(Vec<u8>),
    Abstract(Vec<u8>),
}

/// One skb: lengths, not bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CSkb {
    pub len: usize,
    pub consumed: usize,
    pub truesize: usize,
    pub sender: usize,
    pub peeked: bool,
    pub oob: bool,
    pub fds: Vec<usize>,
    pub creds: Option<Creds>,
}

/// One socket, its references to other sockets renumbered.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CSock {
    pub ty: i32,
    pub state: State,
    pub backlog: u32,
    pub pending: Vec<usize>,
    pub addr: Option<CAddr>,
    pub peer: Option<usize>,
    pub shut_rd: bool,
    pub shut_wr: bool,
    pub err: Option<i32>,
    pub rx: Vec<CSkb>,
    pub wmem: usize,
    pub released: bool,
    pub refs: usize,
    pub nonblock: bool,
    pub sndbuf: usize,
    pub rcvbuf: usize,
    pub rcvtimeo: u64,
    pub sndtimeo: u64,
    pub peek_off: i32,
    pub rcvlowat: i32,
    pub passcred: bool,
    pub oobinline: bool,
    pub peercred: Option<Creds>,
    pub inq: usize,
    pub embryo: bool,
}

/// A directory entry of the private directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CEntry {
    pub name: CAddr,
    /// 0 directory, 1 file, 2 socket file, 3 symlink.
    pub kind: u8,
    pub sock: Option<usize>,
    pub target: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The canonical description of a model's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Canon {
    /// The open names, in the (renamed) order: each one's socket.
    pub open: Vec<usize>,
    /// How many names are closed (closed names are all alike: every call on one is EBADF).
    pub closed: usize,
    pub socks: Vec<CSock>,
    pub fs: Vec<CEntry>,
    pub abstract_names: Vec<(i32, Vec<u8>, usize)>,
    pub next_auto: u32,
    pub euid: u32,
    pub egid: u32,
}

/// All orderings of `0..n` (n is small: the enumeration's universe has a handful of names and paths).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

impl Model {
    /// The state as seen through `names` (every name the script created, in creation order) in that order,
    /// with `paths` (the universe's paths) in that order: no renaming beyond the renumbering of sockets.
    pub fn canonical_as(&self, names: &[&str], paths: &[&[u8]]) -> Canon {
        let mut ids: Vec<Option<usize>> = vec![None; self.socks.len()];
        let mut order: Vec<SockId> = Vec::new();
        let see = |id: SockId, ids: &mut Vec<Option<usize>>, order: &mut Vec<SockId>| {
            if ids[id].is_none() {
                ids[id] = Some(order.len());
                order.push(id);
            }
        };
        let mut closed = 0;
        let mut open_ids = Vec::new();
        for n in names {
            match self.names.get(n) {
                Some(Handle::Open(id)) => {
                    see(id, &mut ids, &mut order);
                    open_ids.push(id);
                }
                Some(Handle::Closed) => closed += 1,
                None => {}
            }
        }
        let path_ix = |p: &[u8]| match paths.iter().position(|q| *q == p) {
            Some(i) => CAddr::Path(i),
            None => CAddr::OtherPath(p.to_vec()),
        };
        // The private directory's entries, universe paths in their order first.
        let mut entries: Vec<(CAddr, usize)> = match &self.fs.inode(0).node {
            Node::Dir(m) => m.iter().map(|(k, &i)| (path_ix(k), i)).collect(),
            _ => Vec::new(),
        };
        entries.sort();
        for (_, ino) in &entries {
            if let Node::Socket(id) = self.fs.inode(*ino).node {
                see(id, &mut ids, &mut order);
            }
        }
        let mut abs: Vec<(&(i32, Vec<u8>), &SockId)> = self.abstract_names.iter().collect();
        abs.sort();
        for (_, &id) in &abs {
            see(id, &mut ids, &mut order);
        }
        // Everything reachable from there, breadth first.
        let mut k = 0;
        while k < order.len() {
            let s = &self.socks[order[k]];
            let mut next: Vec<SockId> = Vec::new();
            next.extend(s.peer);
            next.extend(s.pending.iter().copied());
            for skb in &s.rx {
                next.push(skb.sender);
                next.extend(skb.fds.iter().copied());
            }
            for id in next {
                see(id, &mut ids, &mut order);
            }
            k += 1;
        }
        let map = |id: SockId| ids[id].unwrap_or(usize::MAX);
        let socks = order
            .iter()
            .map(|&id| {
                // Destructured in full: a field added to `Sock` must be added here too (or the canonical
                // form would merge states that differ in it).
                let Sock {
                    ty,
                    state,
                    backlog,
                    pending,
                    addr,
                    peer,
                    shut_rd,
                    shut_wr,
                    err,
                    rx,
                    wmem,
                    released,
                    refs,
                    nonblock,
                    sndbuf,
                    rcvbuf,
                    rcvtimeo,
                    sndtimeo,
                    peek_off,
                    rcvlowat,
                    passcred,
                    oobinline,
                    peercred,
                    inq,
                    embryo,
                } = &self.socks[id];
                CSock {
                    ty: *ty,
                    state: *state,
                    backlog: *backlog,
                    pending: pending.iter().map(|&e| map(e)).collect(),
                    addr: addr.as_ref().map(|a| match a {
                        Addr::Path(p) => path_ix(p),
                        Addr::Abstract(a) => CAddr::Abstract(a.clone()),
                    }),
                    peer: peer.map(map),
                    shut_rd: *shut_rd,
                    shut_wr: *shut_wr,
                    err: err.map(|e| e.0),
                    rx: rx
                        .iter()
                        .map(|k| CSkb {
                            len: k.bytes().len(),
                            consumed: k.consumed,
                            truesize: k.truesize,
                            sender: map(k.sender),
                            peeked: k.peeked,
                            oob: k.oob,
                            fds: k.fds.iter().map(|&f| map(f)).collect(),
                            creds: k.creds,
                        })
                        .collect(),
                    wmem: *wmem,
                    released: *released,
                    refs: *refs,
                    nonblock: *nonblock,
                    sndbuf: *sndbuf,
                    rcvbuf: *rcvbuf,
                    rcvtimeo: *rcvtimeo,
                    sndtimeo: *sndtimeo,
                    peek_off: *peek_off,
                    rcvlowat: *rcvlowat,
                    passcred: *passcred,
                    oobinline: *oobinline,
                    peercred: *peercred,
                    inq: *inq,
                    embryo: *embryo,
                }
            })
            .collect();
        let fs = entries
            .into_iter()
            .map(|(name, ino)| {
                let i = self.fs.inode(ino);
                let (kind, sock, target) = match &i.node {
                    Node::Dir(_) => (0, None, Vec::new()),
                    Node::File => (1, None, Vec::new()),
                    Node::Socket(id) => (2, Some(map(*id)), Vec::new()),
                    Node::Symlink(t) => (3, None, t.clone()),
                };
                CEntry {
                    name,
                    kind,
                    sock,
                    target,
                    mode: i.mode,
                    uid: i.uid,
                    gid: i.gid,
                }
            })
            .collect();
        Canon {
            open: open_ids.into_iter().map(map).collect(),
            closed,
            socks,
            fs,
            abstract_names: abs
                .into_iter()
                .map(|((ty, n), &id)| (*ty, n.clone(), map(id)))
                .collect(),
            next_auto: self.next_auto,
            euid: self.euid,
            egid: self.egid,
        }
    }

    /// The canonical description: the least `canonical_as` over every ordering of the open names and of
    /// `paths`, so states that differ only by which name or which path plays which part are one state.
    pub fn canonical(&self, names: &[&str], paths: &[&[u8]]) -> Canon {
        let is_open = |n: &&str| matches!(self.names.get(n), Some(Handle::Open(_)));
        let open: Vec<&str> = names.iter().copied().filter(is_open).collect();
        let closed: Vec<&str> = names.iter().copied().filter(|n| !is_open(n)).collect();
        let mut best: Option<Canon> = None;
        for np in permutations(open.len()) {
            let mut ns: Vec<&str> = np.iter().map(|&i| open[i]).collect();
            ns.extend(&closed);
            for pp in permutations(paths.len()) {
                let ps: Vec<&[u8]> = pp.iter().map(|&i| paths[i]).collect();
                let c = self.canonical_as(&ns, &ps);
                if best.as_ref().is_none_or(|b| c < *b) {
                    best = Some(c);
                }
            }
        }
        best.unwrap_or_else(|| self.canonical_as(names, paths))
    }
}

#[cfg(test)]
mod tests {
    use super::{permutations, CAddr};
    use crate::model::outcomes_tests::after;

    /// A closed name is a state of its own (every call on it is EBADF): one closed name, two, or a name never
    /// made are three states, told apart by the count.
    #[test]
    fn closed_names_are_counted() {
        let names = ["a", "b", "c"];
        let one = after("socket(STREAM) -> a\nsocket(STREAM) -> b\nclose(b) -> 0\n");
        let two = after("socket(STREAM) -> a\nsocket(STREAM) -> b\nsocket(STREAM) -> c\nclose(b) -> 0\nclose(c) -> 0\n");
        let none = after("socket(STREAM) -> a\n");
        let counts: Vec<usize> = [&one, &two, &none]
            .iter()
            .map(|m| m.canonical(&names, &[]).closed)
            .collect();
        assert_eq!(counts, [1, 2, 0]);
    }

    /// A directory entry is named by its place among the universe's paths, or by its bytes outside them.
    #[test]
    fn entries_are_named_by_their_place_among_the_paths() {
        let m = after("socket(STREAM) -> a\nbind(a, \"x.sock\") -> 0\nsocket(STREAM) -> b\nbind(b, \"z.sock\") -> 0\n");
        let paths: [&[u8]; 2] = [b"y.sock", b"x.sock"];
        let c = m.canonical_as(&["a", "b"], &paths);
        let names: Vec<&CAddr> = c.fs.iter().map(|e| &e.name).collect();
        assert_eq!(
            names,
            [&CAddr::Path(1), &CAddr::OtherPath(b"z.sock".to_vec())],
            "{c:?}"
        );
    }

    /// States that differ only in which name or which path plays which part are one canonical state.
    #[test]
    fn renamed_states_are_one() {
        let names = ["a", "b"];
        let paths: [&[u8]; 2] = [b"x.sock", b"y.sock"];
        let one = after("socket(STREAM) -> a\nsocket(DGRAM) -> b\nbind(a, \"x.sock\") -> 0\n");
        let other = after("socket(DGRAM) -> a\nsocket(STREAM) -> b\nbind(b, \"y.sock\") -> 0\n");
        assert_eq!(
            one.canonical(&names, &paths),
            other.canonical(&names, &paths)
        );
        let both = after("socket(STREAM) -> a\nsocket(DGRAM) -> b\nbind(a, \"x.sock\") -> 0\nbind(b, \"y.sock\") -> 0\n");
        assert_ne!(
            one.canonical(&names, &paths),
            both.canonical(&names, &paths)
        );
    }

    /// Sockets no name reaches any more are described through what reaches them: here a socket in flight,
    /// whose type tells two states apart.
    #[test]
    fn sockets_reached_only_in_flight_are_described() {
        let names = ["a", "b", "c"];
        let sent = |ty: &str| {
            after(&format!(
                "socketpair(STREAM) -> a, b\nsocket({ty}) -> c\nsendmsg(a, \"x\", rights=[c]) -> 1\nclose(c) -> 0\n"
            ))
        };
        let (stream, dgram) = (sent("STREAM"), sent("DGRAM"));
        assert_eq!(stream.canonical(&names, &[]).socks.len(), 3);
        assert_ne!(stream.canonical(&names, &[]), dgram.canonical(&names, &[]));
    }

    #[test]
    fn permutations_are_all_orderings() {
        assert_eq!(permutations(0).len(), 1);
        assert_eq!(permutations(3).len(), 6);
        let mut p = permutations(3);
        p.sort();
        p.dedup();
        assert_eq!(p.len(), 6);
    }
}
