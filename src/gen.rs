//! Random call orderings, state-aware: one generator shared by `udsim explore`, the property test and the
//! fuzz target. It is driven by a `Source` of choices (a seeded RNG, proptest's values, fuzz bytes) and runs a
//! scratch model as it goes, so most calls act on live sockets, existing paths and listeners, and runs reach
//! connected, half-closed, reset, pending and full-buffer states. Generated scripts use automatic names only.

use crate::check::auto_name;
use crate::model::socket::{Addr, State};
use crate::model::{Model, Params};
use crate::script::{
    Addr as ScriptAddr, Call, Creds, Flags, How, Ioctl, MsgOut, OptVal, Payload, Pid, Script,
    SockOpt, SockSpec, DGRAM, MSG_DONTWAIT, MSG_EOR, MSG_NOSIGNAL, MSG_OOB, MSG_PEEK, MSG_TRUNC,
    MSG_WAITALL, SEQPACKET, STREAM,
};

/// Where choices come from. `below(n)` is in `0..n` (n ≥ 1); 0 is the simplest choice, so sources that
/// shrink toward 0 shrink toward simpler scripts.
pub trait Source {
    fn below(&mut self, n: usize) -> usize;
    /// Whether the source has run out (generation then stops early).
    fn done(&self) -> bool {
        false
    }
}

/// splitmix64: a small, seeded, reproducible RNG.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Source for Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Choices read from a slice of numbers (proptest values, fuzz input); zeros once it runs out.
pub struct Choices<'a> {
    data: &'a [u32],
    pos: usize,
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u32]) -> Choices<'a> {
        Choices { data, pos: 0 }
    }

    pub fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }
}

impl Source for Choices<'_> {
    fn below(&mut self, n: usize) -> usize {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v as usize % n.max(1)
    }

    fn done(&self) -> bool {
        self.exhausted()
    }
}

/// Paths generated scripts use: a few shared names so binds collide and connects find listeners, plus the
/// edge cases of the path rules.
pub const PATHS: &[&[u8]] = &[b"a.sock", b"b.sock", b"c.sock", b"link"];
const ODD_PATHS: &[&[u8]] = &[
    b"sub/x.sock",
    b".",
    b"a.sock/x",
    b"./a.sock",
    b"a.sock/",
    b"a.sock/.",
    b"b.sock\0tail",
];
const BACKLOGS: &[i32] = &[0, 1, 2, 5, -1];
/// Abstract names generated scripts use (the executor gives each script thread its own network namespace).
const ABSTRACT: &[&[u8]] = &[b"a", b"b", b"", b"a\0"];
/// Raw address forms at the edges of the length and family rules.
const RAW_ADDRS: &[ScriptAddr] = &[
    ScriptAddr::Raw {
        family: None,
        path: None,
        len: Some(1),
    },
    ScriptAddr::Raw {
        family: Some(2),
        path: None,
        len: Some(8),
    },
    ScriptAddr::Raw {
        family: None,
        path: None,
        len: Some(0),
    },
    ScriptAddr::Raw {
        family: None,
        path: None,
        len: Some(111),
    },
];
/// Options generated getsockopt calls read.
const GET_OPTS: &[SockOpt] = &[
    SockOpt::TYPE,
    SockOpt::ERROR,
    SockOpt::ACCEPTCONN,
    SockOpt::SNDBUF,
    SockOpt::RCVBUF,
    SockOpt::PEEK_OFF,
    SockOpt::RCVLOWAT,
    SockOpt::PEERCRED,
    SockOpt::OOBINLINE,
    SockOpt::PASSCRED,
    SockOpt::SNDTIMEO,
];
const READ_SIZES: &[usize] = &[64, 1, 7, 0, 4096, 65536, 300_000];

/// What generated scripts are made of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// Every call of the language, in the proportions `explore` has always used.
    #[default]
    All,
    /// Descriptors in flight: half the steps send rights (several, the sender itself, a listener), receive them
    /// with varied control buffers, set SO_PASSCRED, close names (cycles left to the collector) or release an
    /// unrelated socket (which lets the collector run).
    Rights,
}

struct Gen<'s, S: Source> {
    src: &'s mut S,
    mix: Mix,
    model: Model,
    calls: Vec<Call>,
    /// Names in creation order (deterministic, unlike the model's map).
    names: Vec<String>,
    created: usize,
    writes: usize,
}

impl<S: Source> Gen<'_, S> {
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.src.below(xs.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.src.below(100) < percent
    }

    fn emit(&mut self, call: Call) {
        // The scratch model never errs on names the generator itself made.
        if let Ok(p) = self.model.step(&call) {
            let n = p.allowed.first().map_or(0, |o| o.new_fds());
            let new: Vec<String> = (0..n).map(|i| auto_name(self.created + i)).collect();
            self.model.name_new(&new);
            self.created += n;
            self.names.extend(new);
        }
        self.calls.push(call);
    }

    fn live(&self, pred: impl Fn(&crate::model::socket::Sock) -> bool) -> Vec<String> {
        self.names
            .iter()
            .filter(|n| self.model.sock_of(n).is_some_and(&pred))
            .cloned()
            .collect()
    }

    /// A subject: usually a live socket matching `pred`, sometimes any name (closed ones included).
    fn subject(&mut self, pred: impl Fn(&crate::model::socket::Sock) -> bool) -> Option<String> {
        let fit = self.live(pred);
        if !fit.is_empty() && self.chance(92) {
            return Some(self.pick(&fit).clone());
        }
        if self.names.is_empty() {
            return None;
        }
        let names = self.names.clone();
        Some(self.pick(&names).clone())
    }

    fn path(&mut self) -> Vec<u8> {
        if self.chance(4) {
            return match self.src.below(3) {
                0 => self.pick(ODD_PATHS).to_vec(),
                1 => vec![b'a'; 108],
                _ => vec![b'a'; 109],
            };
        }
        self.pick(PATHS).to_vec()
    }

    /// A path some listener is bound to, when there is one.
    fn listener_path(&mut self) -> Vec<u8> {
        let ls: Vec<Vec<u8>> = self
            .names
            .iter()
            .filter_map(|n| self.model.sock_of(n))
            .filter(|s| s.state == State::Listening)
            .filter_map(|s| match &s.addr {
                Some(Addr::Path(p)) => Some(p.clone()),
                _ => None,
            })
            .collect();
        if !ls.is_empty() && self.chance(90) {
            return self.pick(&ls).clone();
        }
        self.path()
    }

    fn data(&mut self) -> Payload {
        let len = match self.src.below(10) {
            0 if self.chance(25) => 0,
            0..=4 => 1 + self.src.below(16),
            5..=7 => 1 + self.src.below(5000),
            8 => 30_000 + self.src.below(10_000),
            _ => 100_000 + self.src.below(200_000),
        };
        let byte = b'a' + (self.writes % 26) as u8;
        self.writes += 1;
        vec![byte; len].into()
    }

    /// Recipe: a client connected to a listener (made first if there is none), usually accepted too.
    fn connection(&mut self) {
        let listeners =
            self.live(|s| s.state == State::Listening && matches!(s.addr, Some(Addr::Path(_))));
        let l = if listeners.is_empty() {
            self.emit(Call::Socket(SockSpec::of(STREAM)));
            let l = self.names.last().cloned().unwrap_or_default();
            let p = self.pick(PATHS).to_vec();
            self.emit(Call::Bind(l.clone(), ScriptAddr::Path(p)));
            let b = *self.pick(BACKLOGS);
            self.emit(Call::Listen(l.clone(), b));
            l
        } else {
            self.pick(&listeners).clone()
        };
        let Some(Addr::Path(p)) = self.model.sock_of(&l).and_then(|s| s.addr.clone()) else {
            return;
        };
        self.emit(Call::Socket(SockSpec::of(STREAM)));
        let c = self.names.last().cloned().unwrap_or_default();
        self.emit(Call::Connect(c, ScriptAddr::Path(p)));
        if self.chance(80) {
            self.emit(Call::Accept(l, false, None));
        }
    }

    fn step(&mut self) {
        if self.mix == Mix::Rights && self.chance(50) {
            self.step_rights()
        } else if self.chance(35) {
            self.step_v2()
        } else {
            self.step_v1()
        }
    }

    /// Addresses of bound sockets of type `ty` (paths and abstract names; autobind names are left out: a
    /// script names them by order of appearance, which the generator does not track).
    fn addrs_of(&self, ty: i32, listening: bool) -> Vec<ScriptAddr> {
        self.names
            .iter()
            .filter_map(|n| self.model.sock_of(n))
            .filter(|s| s.ty == ty && (!listening || s.state == State::Listening))
            .filter_map(|s| match &s.addr {
                Some(Addr::Path(p)) => Some(ScriptAddr::Path(p.clone())),
                Some(Addr::Abstract(a)) if a.len() != 6 => {
                    Some(ScriptAddr::Abstract(a[1..].to_vec()))
                }
                _ => None,
            })
            .collect()
    }

    /// An address for a socket of type `ty` to reach: usually a bound one of that type.
    fn target(&mut self, ty: i32, listening: bool) -> ScriptAddr {
        let known = self.addrs_of(ty, listening);
        if !known.is_empty() && self.chance(85) {
            return self.pick(&known).clone();
        }
        self.any_addr()
    }

    /// Any address form: paths, abstract names, and now and then an odd raw form.
    fn any_addr(&mut self) -> ScriptAddr {
        match self.src.below(10) {
            0..=4 => ScriptAddr::Path(self.path()),
            5..=7 => ScriptAddr::Abstract(self.pick(ABSTRACT).to_vec()),
            8 => ScriptAddr::Unnamed,
            _ => self.pick(RAW_ADDRS).clone(),
        }
    }

    fn sock_type(&mut self) -> i32 {
        *self.pick(&[STREAM, DGRAM, SEQPACKET, DGRAM])
    }

    /// Descriptors in flight: rights over a connected socket, received with varied control buffers.
    fn rights(&mut self) {
        if let Some(s) = self.subject(|s| s.state == State::Connected || s.ty == DGRAM) {
            let live = self.live(|_| true);
            let k = 1 + self.src.below(2);
            let mut rights: Vec<String> = Vec::new();
            for _ in 0..k {
                if !live.is_empty() {
                    rights.push(self.pick(&live).clone());
                }
            }
            let d: Payload = if self.chance(20) { &b""[..] } else { &b"r"[..] }.into();
            let creds = self.chance(15).then(|| {
                let uid = *self.pick(&[0, 0, 5, -1]);
                Creds {
                    pid: *self.pick(&[Pid::Own, Pid::Own, Pid::Num(0)]),
                    uid,
                    gid: 0,
                }
            });
            self.emit(Call::SendMsg(
                s,
                d,
                MsgOut {
                    rights: Some(rights),
                    creds,
                    ..MsgOut::default()
                },
            ));
        }
        if let Some(r) = self.subject(|s| !s.rx.is_empty()) {
            let space = *self.pick(&[None, Some(0), Some(20), Some(28), Some(52)]);
            let f = *self.pick(&[0, MSG_PEEK]);
            self.emit(Call::RecvMsg(r, 8, Some(Flags(f)), space, None));
        }
    }

    /// One step of the `Mix::Rights` scripts.
    fn step_rights(&mut self) {
        match self.src.below(8) {
            0..=3 => self.rights(),
            4 => {
                if let Some(s) = self.subject(|_| true) {
                    self.emit(Call::Close(s));
                }
            }
            5 => {
                let ty = self.sock_type();
                self.emit(Call::Socketpair(SockSpec::of(ty)));
            }
            6 => {
                // A socket created and closed: its release lets the kernel's collector run.
                self.emit(Call::Socket(SockSpec::of(STREAM)));
                if let Some(n) = self.names.last().cloned() {
                    self.emit(Call::Close(n));
                }
            }
            _ => {
                if let Some(s) = self.subject(|_| true) {
                    self.emit(Call::Poll(s));
                }
            }
        }
    }

    fn step_v2(&mut self) {
        let of = |ty: i32| move |s: &crate::model::socket::Sock| s.ty == ty;
        match self.src.below(18) {
            14 | 15 => self.rights(),
            16 => {
                if let Some(s) = self.subject(|_| true) {
                    self.emit(Call::SetSockOpt(s, SockOpt::PASSCRED, OptVal::Int(1)));
                }
            }
            17 => {
                // The directory tree: a subdirectory for "sub/x.sock", modes, symlinks, stat.
                let c = match self.src.below(5) {
                    0 => Call::Mkdir(b"sub".to_vec()),
                    1 => {
                        let p = self.path();
                        Call::Chmod(p, *self.pick(&[0o755, 0o700, 0o000, 0o777]))
                    }
                    2 => Call::Symlink(self.path(), b"link".to_vec()),
                    3 => Call::Stat(self.path()),
                    _ => Call::Rename(self.path(), self.path()),
                };
                self.emit(c);
            }
            0 => {
                let ty = *self.pick(&[DGRAM, SEQPACKET]);
                self.emit(Call::Socket(SockSpec::of(ty)));
                let s = self.names.last().cloned().unwrap_or_default();
                let a = self.any_addr();
                self.emit(Call::Bind(s.clone(), a));
                if ty == SEQPACKET {
                    let b = *self.pick(BACKLOGS);
                    self.emit(Call::Listen(s, b));
                }
            }
            1 => {
                let ty = self.sock_type();
                self.emit(Call::Socketpair(SockSpec::of(ty)));
            }
            2 => {
                // A client of any type towards a listener (or socket) of any type.
                let ty = self.sock_type();
                self.emit(Call::Socket(SockSpec::of(ty)));
                let s = self.names.last().cloned().unwrap_or_default();
                let to_ty = if self.chance(80) {
                    ty
                } else {
                    self.sock_type()
                };
                let a = self.target(to_ty, to_ty != DGRAM);
                self.emit(Call::Connect(s, a));
            }
            3 | 4 => {
                if let Some(s) = self.subject(of(DGRAM)) {
                    let d = self.dgram_data();
                    let a = self.target(DGRAM, false);
                    let f = self.send_flags();
                    self.emit(Call::SendTo(s, d, a, f));
                }
            }
            5 => {
                if let Some(s) = self.subject(of(DGRAM)) {
                    let a = if self.chance(20) {
                        ScriptAddr::Raw {
                            family: Some(0),
                            path: None,
                            len: None,
                        }
                    } else {
                        self.target(DGRAM, false)
                    };
                    self.emit(Call::Connect(s, a));
                }
            }
            6 | 7 => {
                if let Some(s) = self.subject(|s| s.state == State::Connected || s.ty == DGRAM) {
                    let n = *self.pick(&[1, 4, 64, 5000]);
                    let f = *self.pick(&[
                        0,
                        MSG_PEEK,
                        MSG_TRUNC,
                        MSG_DONTWAIT,
                        MSG_WAITALL,
                        MSG_PEEK | MSG_TRUNC,
                        MSG_OOB,
                    ]);
                    let c = match self.src.below(3) {
                        0 => Call::Recv(s, n, Flags(f)),
                        1 => Call::RecvFrom(s, n, Some(Flags(f)), None),
                        _ => Call::RecvMsg(s, n, Some(Flags(f)), None, None),
                    };
                    self.emit(c);
                }
            }
            8 | 9 => {
                if let Some(s) = self.subject(|s| s.state == State::Connected) {
                    let d = if self.chance(50) {
                        self.dgram_data()
                    } else {
                        self.data()
                    };
                    let f = self.send_flags().unwrap_or(Flags(0));
                    let c = if self.chance(70) {
                        Call::Send(s, d, f)
                    } else {
                        Call::SendMsg(
                            s,
                            d,
                            MsgOut {
                                flags: Some(f),
                                ..MsgOut::default()
                            },
                        )
                    };
                    self.emit(c);
                }
            }
            10 => {
                if let Some(s) = self.subject(|_| true) {
                    let c = match self.src.below(6) {
                        0 => {
                            let v = *self.pick(&[0, 1000, 5000, 100_000]);
                            Call::SetSockOpt(s, SockOpt::SNDBUF, OptVal::Int(v))
                        }
                        1 => {
                            Call::SetSockOpt(s, SockOpt::PEEK_OFF, OptVal::Int(*self.pick(&[0, 2])))
                        }
                        2 => {
                            Call::SetSockOpt(s, SockOpt::RCVLOWAT, OptVal::Int(*self.pick(&[0, 3])))
                        }
                        3 => Call::SetSockOpt(s, SockOpt::OOBINLINE, OptVal::Int(1)),
                        _ => {
                            let o = *self.pick(GET_OPTS);
                            Call::GetSockOpt(s, o)
                        }
                    };
                    self.emit(c);
                }
            }
            11 => {
                if let Some(s) = self.subject(|_| true) {
                    let r = *self.pick(&[Ioctl::InQ, Ioctl::OutQ, Ioctl::AtMark]);
                    self.emit(Call::Ioctl(s, r));
                }
            }
            12 => {
                if let Some(s) = self.subject(|_| true) {
                    if self.chance(60) {
                        self.emit(Call::Dup(s));
                    } else {
                        let h = How(*self.pick(&[0, 1, 2, 3]));
                        self.emit(Call::Shutdown(s, h));
                    }
                }
            }
            _ => {
                // A stream listener on an abstract name, and a client for it.
                self.emit(Call::Socket(SockSpec::of(STREAM)));
                let l = self.names.last().cloned().unwrap_or_default();
                let name = self.pick(ABSTRACT).to_vec();
                self.emit(Call::Bind(l.clone(), ScriptAddr::Abstract(name.clone())));
                let b = *self.pick(BACKLOGS);
                self.emit(Call::Listen(l, b));
                self.emit(Call::Socket(SockSpec::of(STREAM)));
                let c = self.names.last().cloned().unwrap_or_default();
                self.emit(Call::Connect(c, ScriptAddr::Abstract(name)));
            }
        }
    }

    fn send_flags(&mut self) -> Option<Flags> {
        let f = *self.pick(&[
            None,
            Some(MSG_NOSIGNAL),
            Some(0),
            Some(MSG_DONTWAIT | MSG_NOSIGNAL),
            Some(MSG_OOB | MSG_NOSIGNAL),
            Some(MSG_EOR | MSG_NOSIGNAL),
        ]);
        f.map(Flags)
    }

    fn dgram_data(&mut self) -> Payload {
        let len = match self.src.below(10) {
            0 => 0,
            1..=6 => 1 + self.src.below(16),
            7 | 8 => 1 + self.src.below(3000),
            _ => 50_000 + self.src.below(200_000),
        };
        let byte = b'a' + (self.writes % 26) as u8;
        self.writes += 1;
        vec![byte; len].into()
    }

    fn step_v1(&mut self) {
        let connected = |s: &crate::model::socket::Sock| s.state == State::Connected;
        match self.src.below(20) {
            // Recipes that build state.
            0 | 1 => {
                self.emit(Call::Socket(SockSpec::of(STREAM)));
                let s = self.names.last().cloned().unwrap_or_default();
                let p = self.path();
                self.emit(Call::Bind(s.clone(), ScriptAddr::Path(p)));
                let b = *self.pick(BACKLOGS);
                self.emit(Call::Listen(s, b));
            }
            2 | 3 => {
                self.emit(Call::Socket(SockSpec::of(STREAM)));
                let s = self.names.last().cloned().unwrap_or_default();
                if self.chance(10) {
                    let p = self.path();
                    self.emit(Call::Bind(s.clone(), ScriptAddr::Path(p)));
                }
                let p = self.listener_path();
                self.emit(Call::Connect(s, ScriptAddr::Path(p)));
            }
            4 | 5 => {
                if let Some(s) = self.subject(|s| s.state == State::Listening) {
                    self.emit(Call::Accept(s, false, None));
                }
            }
            6..=8 => {
                if self.live(connected).is_empty() {
                    return self.connection();
                }
                if let Some(s) = self.subject(connected) {
                    let d = self.data();
                    self.emit(Call::Write(s, d));
                }
            }
            9..=11 => {
                if self.live(connected).is_empty() {
                    return self.connection();
                }
                let readable = |s: &crate::model::socket::Sock| {
                    s.state == State::Connected
                        && (!s.rx.is_empty() || s.shut_rd || s.err.is_some())
                };
                let pick_readable = self.chance(80);
                let s = if pick_readable {
                    self.subject(readable)
                } else {
                    self.subject(connected)
                };
                if let Some(s) = s {
                    let n = *self.pick(READ_SIZES);
                    self.emit(Call::Read(s, n));
                }
            }
            12 => {
                if let Some(s) = self.subject(connected) {
                    let h = *self.pick(&[How::WR, How::RD, How::RDWR]);
                    self.emit(Call::Shutdown(s, h));
                }
            }
            13 => {
                if let Some(s) = self.subject(|_| true) {
                    self.emit(Call::Close(s));
                }
            }
            14 | 15 => {
                if let Some(s) = self.subject(|_| true) {
                    self.emit(Call::Poll(s));
                }
            }
            16 => {
                if let Some(s) = self.subject(|_| true) {
                    let c = if self.chance(50) {
                        Call::GetSockName(s, None)
                    } else {
                        Call::GetPeerName(s, None)
                    };
                    self.emit(c);
                }
            }
            17 => {
                let p = self.path();
                self.emit(Call::Unlink(p));
            }
            18 => {
                // A call in a state where it is probably an error.
                if let Some(s) = self.subject(|_| true) {
                    let c = match self.src.below(7) {
                        0 => Call::Bind(s, ScriptAddr::Path(self.path())),
                        1 => Call::Listen(s, *self.pick(BACKLOGS)),
                        2 => Call::Accept(s, false, None),
                        3 => Call::Connect(s, ScriptAddr::Path(self.listener_path())),
                        4 => Call::Shutdown(s, *self.pick(&[How::WR, How::RD, How::RDWR])),
                        5 => Call::Write(s, self.data()),
                        _ => Call::Read(s, *self.pick(READ_SIZES)),
                    };
                    self.emit(c);
                }
            }
            _ => self.emit(Call::Socket(SockSpec::of(STREAM))),
        }
    }
}

/// Generates a script of about `max_ops` calls (a recipe may add up to six more), fewer if `src` runs out.
pub fn generate(src: &mut impl Source, params: &Params, max_ops: usize) -> Script {
    generate_mix(src, params, max_ops, Mix::All)
}

/// [`generate`] with another mix of calls.
pub fn generate_mix(src: &mut impl Source, params: &Params, max_ops: usize, mix: Mix) -> Script {
    let mut g = Gen {
        src,
        mix,
        model: Model::new(params.clone()),
        calls: Vec::new(),
        names: Vec::new(),
        created: 0,
        writes: 0,
    };
    while g.calls.len() < max_ops && !g.src.done() {
        g.step();
    }
    Script::from_calls(g.calls)
}
