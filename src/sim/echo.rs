//! The seed's echo in the simulated world.
//!
//! [`EchoServer`] is the event-loop server's logic on simulated sockets: the same per-connection
//! work ([`Link::serve_turns`], [`Link::wants`]) and the same read/write relay
//! ([`BufferRelay`]) that `udsim serve` runs on kernel sockets, driven by a readiness wait that
//! polls each socket of interest (epoll's level-triggered report, as calls the trace can show).
//! [`EchoClient`] runs `udsim client`'s exchange ([`Exchange`]: it sends its input in chunks while
//! reading the echo, half-closes at the end of its input and reads until the server's end of stream), with
//! the faults a workload can inject: it stops reading for a while, or aborts (closes with the
//! echo unread) after receiving some bytes. It is generic over [`Net`], so the same client runs
//! on kernel sockets too.

use super::{SimError, SimListener, SimNet, SimStream, Stats, Step, Task, World};
use crate::echo::client::{Exchange, Turn};
use crate::echo::link::Link;
use crate::echo::relay::{BufferRelay, Relay};
use crate::echo::status::Status;
use crate::echo::tap::Tap;
use crate::model::Params;
use crate::net::{Listener, Net, Stream};
use crate::script::Script;
use nix::errno::Errno;
use std::path::Path;

/// The socket path of the simulated server (relative: the model's private directory).
pub const PATH: &str = "echo.sock";

/// The server's listen backlog, as `udsim serve` asks (the kernel caps it at somaxconn).
pub const BACKLOG: i32 = 4096;

/// What one client does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPlan {
    /// Bytes of input (what `udsim client` reads from stdin): [`client_data`].
    pub len: usize,
    /// Bytes per send.
    pub chunk: usize,
    /// Bytes asked for per receive.
    pub read: usize,
    /// After receiving this many bytes, stop reading for this many calls of the world's clock.
    pub stall: Option<(usize, u64)>,
    /// After receiving this many bytes (fewer than `len`), close the socket with the rest of
    /// the echo unread.
    pub abort_after: Option<usize>,
    /// The scheduler's key for this client (see [`Task::key`]); `None`: its position.
    pub key: Option<u64>,
}

impl ClientPlan {
    /// A client that sends `len` bytes in 64 KiB chunks and reads 64 KiB at a time.
    pub fn plain(len: usize) -> ClientPlan {
        ClientPlan {
            len,
            chunk: 64 * 1024,
            read: 64 * 1024,
            stall: None,
            abort_after: None,
            key: None,
        }
    }

    /// The byte count after which this client aborts, if it does before the end of its echo.
    pub fn aborts_at(&self) -> Option<usize> {
        self.abort_after.filter(|&k| k < self.len)
    }
}

/// An echo workload: clients, the server's per-connection bound, the scheduler's seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub clients: Vec<ClientPlan>,
    /// The server's `--buffer-size`.
    pub buffer: usize,
    /// The interleaving.
    pub seed: u64,
}

/// Client `i`'s input: a pattern that differs between clients and within a client (a byte
/// echoed to the wrong client, twice or out of order shows).
pub fn client_data(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((j + 13 * i + j / 251) % 251) as u8)
        .collect()
}

/// How a client's exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server's end of stream.
    Eof,
    /// ECONNRESET from a receive.
    Reset,
    /// The client closed early, as planned.
    Aborted,
    /// A call failed (connect, send).
    Failed(Errno),
}

/// What a client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResult {
    pub received: Vec<u8>,
    pub sent: usize,
    pub end: End,
}

enum Conn<S> {
    Start,
    Open(S),
    Finished,
}

/// A client as `udsim client` behaves, one or two non-blocking calls per step.
pub struct EchoClient<N: Net> {
    plan: ClientPlan,
    path: std::path::PathBuf,
    data: Vec<u8>,
    conn: Conn<Exchange<N::Stream>>,
    sent: usize,
    received: Vec<u8>,
    buf: Vec<u8>,
    end: Option<End>,
    stalled_once: bool,
    stall_until: u64,
}

impl<N: Net> EchoClient<N> {
    /// Client number `i` (its input is [`client_data`]`(i, plan.len)`) of the server at `path`.
    pub fn new(i: usize, plan: ClientPlan, path: &Path) -> Self {
        EchoClient {
            data: client_data(i, plan.len),
            buf: vec![0; plan.read.max(1)],
            plan,
            path: path.to_path_buf(),
            conn: Conn::Start,
            sent: 0,
            received: Vec::new(),
            end: None,
            stalled_once: false,
            stall_until: 0,
        }
    }

    /// What it saw (once finished; before that, so far, with `End::Failed(EINPROGRESS)`).
    pub fn result(&self) -> ClientResult {
        ClientResult {
            received: self.received.clone(),
            sent: self.sent,
            end: self.end.unwrap_or(End::Failed(Errno::EINPROGRESS)),
        }
    }

    fn finish(&mut self, end: End) -> Step {
        self.end = Some(end);
        // Dropping the socket closes it.
        self.conn = Conn::Finished;
        Step::Done
    }

    /// One step at clock `now`.
    pub fn step_on(&mut self, net: &N, now: u64) -> Step {
        if matches!(self.conn, Conn::Open(_))
            && self
                .plan
                .aborts_at()
                .is_some_and(|k| self.received.len() >= k)
        {
            return self.finish(End::Aborted);
        }
        match &self.conn {
            Conn::Finished => return Step::Done,
            Conn::Start => {
                return match net.connect(&self.path) {
                    Ok(s) => {
                        self.conn = Conn::Open(Exchange::new(s));
                        Step::Progress
                    }
                    // The backlog is full: try again when something changed.
                    Err(Errno::EAGAIN) => Step::Blocked,
                    Err(e) => self.finish(End::Failed(e)),
                };
            }
            Conn::Open(_) => {}
        }
        if let Some((at, ticks)) = self.plan.stall {
            if !self.stalled_once && self.received.len() >= at {
                self.stalled_once = true;
                self.stall_until = now + ticks;
            }
        }
        let reading = now >= self.stall_until;
        let mut want = self.buf.len();
        if let Some(k) = self.plan.aborts_at() {
            want = want.min(k - self.received.len());
        }
        let Conn::Open(ex) = &mut self.conn else {
            return Step::Done;
        };
        let end = (self.sent + self.plan.chunk.max(1)).min(self.data.len());
        let buf = reading.then_some(&mut self.buf[..want]);
        let turn = ex.turn(&self.data[self.sent..end], true, buf);
        match turn {
            Turn::Sent(n) => {
                self.sent += n;
                Step::Progress
            }
            Turn::HalfClosed => Step::Progress,
            Turn::Received(n) => {
                self.received.extend_from_slice(&self.buf[..n]);
                Step::Progress
            }
            Turn::Eof => self.finish(End::Eof),
            Turn::RecvFailed(Errno::ECONNRESET) => self.finish(End::Reset),
            Turn::RecvFailed(e) | Turn::SendFailed(e) => self.finish(End::Failed(e)),
            // Nothing could be done: a stalled reader waits for its stall to end (or for the
            // world to let its send go on), others for any change.
            Turn::Blocked if !reading => Step::Sleep(self.stall_until - now),
            Turn::Blocked => Step::Blocked,
        }
    }
}

impl Task for EchoClient<SimNet> {
    fn step(&mut self, net: &SimNet, now: u64) -> Step {
        self.step_on(net, now)
    }
    fn key(&self) -> Option<u64> {
        // Clients keyed apart from the server (key 0, its index).
        self.plan.key.map(|k| k | 1 << 63)
    }
}

enum Event {
    Listener,
    Conn(usize),
}

/// The echo server on simulated sockets: the event loop's per-connection work and relay.
pub struct EchoServer<R> {
    listener: SimListener,
    conns: Vec<Option<Link<SimStream, R>>>,
    ready: Vec<Event>,
    tap: Tap,
    bound: usize,
    /// The most bytes any connection held pending (the bound must never be passed).
    pub peak_pending: usize,
    pub accepted: usize,
    pub closed: usize,
}

impl<R: Relay<SimStream>> EchoServer<R> {
    /// Listens at [`PATH`] with a per-connection bound of `bound` bytes.
    pub fn new(net: &SimNet, bound: usize) -> Result<Self, Errno> {
        Ok(EchoServer {
            listener: net.listen(Path::new(PATH), BACKLOG)?,
            conns: Vec::new(),
            ready: Vec::new(),
            tap: Tap::new(false, Status::new(true)),
            bound,
            peak_pending: 0,
            accepted: 0,
            closed: 0,
        })
    }

    /// Connections still open.
    pub fn live(&self) -> usize {
        self.conns.iter().flatten().count()
    }

    /// Serves one connection's turns; closes it when done or gone (as the event loop does).
    fn serve(&mut self, slot: usize) {
        let Some(link) = self.conns[slot].as_mut() else {
            return;
        };
        let keep = link.serve_turns(&mut self.tap).unwrap_or(false);
        self.peak_pending = self.peak_pending.max(link.relay.pending());
        if !keep {
            self.conns[slot] = None;
            self.closed += 1;
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Listener => {
                let Ok(sock) = self.listener.accept() else {
                    return;
                };
                let Ok(relay) = R::create(self.bound) else {
                    return;
                };
                self.accepted += 1;
                // Read-after-accept, as the event loop does; slots are never reused, so a
                // stale event in this batch never reaches a new connection.
                self.conns.push(Some(Link::new(sock, relay)));
                self.serve(self.conns.len() - 1);
            }
            Event::Conn(slot) => self.serve(slot),
        }
    }
}

impl<R: Relay<SimStream>> Task for EchoServer<R> {
    fn step(&mut self, _net: &SimNet, _now: u64) -> Step {
        if let Some(ev) = self.ready.pop() {
            self.handle(ev);
            return Step::Progress;
        }
        // The wait: level-triggered readiness of every socket of interest, one poll each.
        for slot in (0..self.conns.len()).rev() {
            let Some(link) = &self.conns[slot] else {
                continue;
            };
            let want = link.wants();
            let Ok(r) = link.sock.poll() else {
                continue;
            };
            if r.err || r.hup || (want.read && r.read) || (want.write && r.write) {
                self.ready.push(Event::Conn(slot));
            }
        }
        // Pushed last, served first: a waiting connect is served before the batch's other work.
        if self.listener.poll().is_ok_and(|r| r.read) {
            self.ready.push(Event::Listener);
        }
        if self.ready.is_empty() {
            Step::Blocked
        } else {
            Step::Progress
        }
    }

    fn daemon(&self) -> bool {
        true
    }
}

/// A finished simulated echo run.
#[derive(Debug, Clone)]
pub struct EchoRun {
    pub clients: Vec<ClientResult>,
    pub stats: Stats,
    pub peak_pending: usize,
    pub accepted: usize,
    pub closed: usize,
    /// Every call, with the model's results written in (empty when run without a trace).
    pub trace: Script,
    pub trace_text: String,
}

/// Runs a workload in the simulated world with relay `R` (the real server's is [`BufferRelay`]).
pub fn simulate_with<R: Relay<SimStream>>(
    params: Params,
    w: &Workload,
    trace: bool,
) -> Result<EchoRun, SimError> {
    let mut world = World::new(params, w.seed);
    if !trace {
        world = world.without_trace();
    }
    let mut server =
        EchoServer::<R>::new(world.net(), w.buffer.max(1)).map_err(|e| SimError::Unmodelled {
            call: format!("listen at {PATH}: {e}"),
            rule: "echo_server_starts",
        })?;
    let mut clients: Vec<EchoClient<SimNet>> = w
        .clients
        .iter()
        .enumerate()
        .map(|(i, p)| EchoClient::new(i, p.clone(), Path::new(PATH)))
        .collect();
    let stats = {
        let mut tasks: Vec<&mut dyn Task> = Vec::with_capacity(clients.len() + 1);
        tasks.push(&mut server);
        for c in &mut clients {
            tasks.push(c);
        }
        world.run(&mut tasks)?
    };
    let (peak_pending, accepted, closed) = (server.peak_pending, server.accepted, server.closed);
    // The server stops: its listener (and anything still open) closes, in the trace too.
    drop(server);
    Ok(EchoRun {
        clients: clients.iter().map(EchoClient::result).collect(),
        stats,
        peak_pending,
        accepted,
        closed,
        trace: world.trace(),
        trace_text: world.trace_text(),
    })
}

/// Runs a workload with the real server's relay.
pub fn simulate(params: Params, w: &Workload, trace: bool) -> Result<EchoRun, SimError> {
    simulate_with::<BufferRelay>(params, w, trace)
}

/// The echo's invariants on a simulated run: every client got its own bytes exactly once, in
/// order; a client that was not aborted got all of them and then the end of stream; the server
/// never held more than its bound for a connection, and closed every connection it accepted.
pub fn check_invariants(w: &Workload, run: &EchoRun) -> Result<(), String> {
    if run.peak_pending > w.buffer.max(1) {
        return Err(format!(
            "a connection held {} bytes pending, over the bound of {}",
            run.peak_pending, w.buffer
        ));
    }
    for (i, (plan, c)) in w.clients.iter().zip(&run.clients).enumerate() {
        let data = client_data(i, plan.len);
        if !data.starts_with(&c.received) {
            let at = c
                .received
                .iter()
                .zip(&data)
                .position(|(a, b)| a != b)
                .unwrap_or(data.len());
            return Err(format!(
                "client {i} received {} bytes that are not its input echoed in order (first wrong byte at {at})",
                c.received.len()
            ));
        }
        let expected = match plan.aborts_at() {
            Some(k) => (End::Aborted, k),
            None => (End::Eof, plan.len),
        };
        if (c.end, c.received.len()) != expected {
            return Err(format!(
                "client {i} ended with {:?} after {} of {} bytes; expected {:?} after {}",
                c.end,
                c.received.len(),
                plan.len,
                expected.0,
                expected.1
            ));
        }
    }
    if run.accepted != w.clients.len() || run.closed != run.accepted {
        return Err(format!(
            "the server accepted {} of {} clients and closed {} of them",
            run.accepted,
            w.clients.len(),
            run.closed
        ));
    }
    Ok(())
}
