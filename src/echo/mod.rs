//! The seed's echo server and client over real Unix sockets.
//!
//! - `udsim serve PATH`: binds PATH under the path-safety rules of [`path`], then echoes every
//!   byte back to its client with one of three engines: `--iterative` (the seed's one-at-a-time
//!   server, [`iterative`]), the default event loop ([`event_loop`] with the read/write
//!   [`relay::BufferRelay`]), or `--engine splice` (the same loop with the zero-copy
//!   [`splice::SpliceRelay`]), or `--engine uring` (one io_uring: multishot accept, recv and
//!   send submissions batched per round of completions, [`uring`]).
//! - `udsim client PATH`: copies stdin to the socket and the echo to stdout ([`client`]).
//!
//! Every runtime failure is one line on stderr (`udsim: cannot connect to "x.sock": connection
//! refused (ECONNREFUSED)`) and exit status 1; clap reports usage errors with status 2.

pub mod client;
pub mod error;
pub mod event_loop;
pub mod iterative;
pub mod link;
pub mod out;
pub mod path;
pub mod relay;
pub mod signals;
pub mod splice;
pub mod status;
pub mod tap;
pub mod uring;

use clap::{Args, ValueEnum};
use error::describe;
use nix::sys::socket::{getsockopt, sockopt};
use status::Status;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// Default per-connection buffer bound: 64 KiB.
pub const DEFAULT_BUFFER: usize = 64 * 1024;

/// On SIGINT/SIGTERM the server stops reading but goes on echoing what it has already read for
/// at most this long, then closes the remaining connections.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// How the event loop moves echoed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// recv(2) into a per-connection buffer, send(2) back.
    Readwrite,
    /// splice(2) socket → pipe → socket, zero-copy for large messages; small ones (under
    /// 16 KiB a read) are copied with recv(2)/send(2), which is faster for them.
    Splice,
    /// io_uring (Linux 5.19+): multishot accept, recv into and send from a per-connection ring
    /// buffer, one io_uring_enter per batch of completions. Without io_uring (old kernel,
    /// kernel.io_uring_disabled, a seccomp filter) the server exits 1 with one line.
    Uring,
}

/// Arguments of `udsim serve`.
#[derive(Debug, Args)]
#[command(after_help = SERVE_AFTER_HELP)]
pub struct ServeArgs {
    /// Path of the socket to bind. Only a dead socket (nobody listening) at PATH is ever removed.
    pub path: PathBuf,
    /// The seed's synchronous server: one client at a time, in order.
    #[arg(long)]
    pub iterative: bool,
    /// How the event-loop server echoes bytes.
    #[arg(long, value_enum, conflicts_with = "iterative")]
    pub engine: Option<Engine>,
    /// Also copy every received byte to stdout.
    #[arg(long)]
    pub print: bool,
    /// No status lines on stderr (errors and warnings are still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// Serve at most N clients at once; more wait in the listen backlog.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..),
          conflicts_with = "iterative")]
    pub max_clients: Option<u32>,
    /// Per-connection buffer bound in bytes: a client whose echo is not read gets no more than
    /// this buffered before the server stops reading from it.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_BUFFER,
          value_parser = parse_buffer)]
    pub buffer_size: usize,
    /// Bound on all connections' buffers together, in bytes (suffixes K, M, G: powers of 1024);
    /// default a quarter of physical memory. At the bound further clients wait in the listen
    /// backlog until one leaves, as with --max-clients.
    #[arg(long, value_name = "BYTES", value_parser = parse_memory)]
    pub memory_limit: Option<u64>,
    /// Close a connection that has moved no byte, in either direction, for SECONDS (decimals
    /// allowed); off by default.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub idle_timeout: Option<Duration>,
    /// Permission bits of the socket file, in octal.
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
    pub mode: u32,
    /// Accept only peers with this uid (SO_PEERCRED); repeatable. Others are closed at once.
    #[arg(long = "allow-uid", value_name = "UID")]
    pub allow_uids: Vec<u32>,
}

/// `udsim serve --help`'s closing text.
const SERVE_AFTER_HELP: &str = "\
Signals: on SIGINT, SIGTERM or SIGHUP the server stops accepting and reading, goes on echoing \
what it has already read for at most 0.5 s, then closes the remaining connections, removes its \
socket file (only if it is still the one it bound) and exits 0. Other fatal signals (SIGQUIT, \
SIGUSR1, SIGALRM, ...) close the connections at once and remove the socket file before the server \
dies of the signal.

Output never blocks the server: what a stalled stdout or stderr cannot take is queued (64 KiB of \
status lines, 256 KiB of --print bytes) and beyond that dropped and counted. Repeated warnings \
(rejected peers, failed accepts) are printed once, then as a count per second.";

/// Arguments of `udsim client`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status 0 only when all of stdin was sent and exactly as many bytes \
came back before the server's end of stream; a short echo (a server that stopped early) exits 1 \
with one line saying how many bytes are missing."
)]
pub struct ClientArgs {
    /// Path of the server's socket.
    pub path: PathBuf,
    /// No status line on stderr (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    // Digits only: from_str_radix alone would also take a sign ("+7").
    let octal = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(digits, 8) {
        Ok(m) if octal && m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode between 0 and 777")),
    }
}

fn parse_memory(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a byte count such as 1073741824, 512M or 2G");
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let shift = match unit {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return Err(bad()),
    };
    match digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
    {
        Some(n) if n > 0 => Ok(n),
        _ => Err(bad()),
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a number of seconds between 0.01 and 1000000");
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match s.parse::<f64>() {
        Ok(x) if plain && (0.01..=1e6).contains(&x) => Ok(Duration::from_secs_f64(x)),
        _ => Err(bad()),
    }
}

/// A quarter of physical memory (`--memory-limit`'s default); 1 GiB if it cannot be told.
fn default_memory_limit() -> u64 {
    // SAFETY: sysinfo(2) fills the zeroed struct it is given.
    let mut info: nix::libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { nix::libc::sysinfo(&mut info) } == 0 && info.totalram > 0 {
        (info.totalram as u64).saturating_mul(u64::from(info.mem_unit.max(1))) / 4
    } else {
        1 << 30
    }
}

/// Memory one connection's buffer may take: the buffer; for the splice engine the pipe (whose
/// size the kernel rounds up to a power-of-two number of pages) plus the copy buffer.
fn per_connection_memory(args: &ServeArgs) -> u64 {
    let bound = args.buffer_size as u64;
    if args.iterative || args.engine != Some(Engine::Splice) {
        return bound;
    }
    let pipe = if bound == DEFAULT_BUFFER as u64 {
        bound
    } else {
        bound.div_ceil(4096).next_power_of_two() * 4096
    };
    pipe + bound.min(64 * 1024)
}

fn parse_buffer(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1 << 30).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a byte count between 1 and 1073741824"
        )),
    }
}

/// Settings shared by the engines.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--print`.
    pub print: bool,
    /// `--max-clients`.
    pub max_clients: Option<usize>,
    /// `--buffer-size`.
    pub buffer: usize,
    /// `--allow-uid`; empty means everyone.
    pub allow_uids: Vec<u32>,
    /// `--idle-timeout`.
    pub idle: Option<Duration>,
}

/// An accept failure (EMFILE, ENFILE, …) of either event engine: warned once per episode
/// (`fd_warned`, cleared when an accept succeeds), rate-limited across episodes.
fn warn_accept_failed(status: Status, fd_warned: &mut bool, what: &str, e: nix::errno::Errno) {
    use nix::errno::Errno;
    if std::mem::replace(fd_warned, true) {
        return;
    }
    let hint = if matches!(e, Errno::EMFILE | Errno::ENFILE) {
        "; not accepting until a connection closes"
    } else {
        "; pausing accepts"
    };
    status.warn_repeated(
        status::Repeated::AcceptFailed,
        format_args!("{what}: {}{hint}", describe(e)),
    );
}

/// `--allow-uid`: checks SO_PEERCRED; a refused peer is reported (even with --quiet, rate-limited)
/// and closed.
pub fn peer_allowed(sock: &OwnedFd, allow: &[u32], status: Status) -> bool {
    if allow.is_empty() {
        return true;
    }
    let fd = sock.as_raw_fd();
    match getsockopt(sock, sockopt::PeerCredentials) {
        Ok(cred) if allow.contains(&cred.uid()) => true,
        Ok(cred) => {
            status.warn_repeated(
                status::Repeated::Rejected,
                format_args!(
                    "rejected connection on fd {fd}: peer uid {} (pid {}) is not in --allow-uid",
                    cred.uid(),
                    cred.pid()
                ),
            );
            false
        }
        Err(e) => {
            status.warn_repeated(
                status::Repeated::Rejected,
                format_args!(
                    "rejected connection on fd {fd}: cannot read its credentials: {}",
                    describe(e)
                ),
            );
            false
        }
    }
}

/// Runs `udsim serve`; returns the process exit code.
pub fn run_serve(args: ServeArgs) -> i32 {
    let status = Status::new(args.quiet);
    if args.print && args.engine == Some(Engine::Splice) {
        status.warn(format_args!(
            "--print needs the bytes in user space; it cannot be used with --engine splice"
        ));
        return 2;
    }
    let code = match serve(&args, status) {
        Ok(()) => 0,
        Err(e) => {
            status.warn(format_args!("{e}"));
            1
        }
    };
    out::finish();
    code
}

/// `memory_bound`: clients at once that `--memory-limit` allows (each connection's buffer, plus
/// one for the spare relay kept ready for the next client), or the one-line refusal.
fn memory_clients(args: &ServeArgs) -> Result<usize, String> {
    let limit = args.memory_limit.unwrap_or_else(default_memory_limit);
    let per = per_connection_memory(args);
    let fit = limit / per;
    let need = if args.iterative { 1 } else { 2 };
    if fit < need {
        return Err(format!(
            "--memory-limit {limit} holds fewer than {need} connection buffers of {per} bytes (--buffer-size {})",
            args.buffer_size
        ));
    }
    Ok(usize::try_from(fit - (need - 1)).unwrap_or(usize::MAX))
}

fn serve(args: &ServeArgs, status: Status) -> Result<(), error::EchoError> {
    let by_memory = match memory_clients(args) {
        Ok(n) => n,
        Err(why) => {
            return Err(error::EchoError::refused(
                "cannot serve on",
                &args.path,
                why,
            ))
        }
    };
    let max_clients = args
        .max_clients
        .map_or(by_memory, |n| (n as usize).min(by_memory));
    let cfg = Config {
        print: args.print,
        max_clients: Some(max_clients),
        buffer: args.buffer_size,
        allow_uids: args.allow_uids.clone(),
        idle: args.idle_timeout,
    };
    let signals = signals::Signals::install()?;
    out::init();
    check_fd_room(args)?;
    // The ring is set up before binding: without io_uring the server fails with one line and
    // leaves no socket file.
    let ring = if !args.iterative && args.engine == Some(Engine::Uring) {
        Some(
            uring::setup()
                .map_err(|why| error::EchoError::refused("cannot serve on", &args.path, why))?,
        )
    } else {
        None
    };
    let path::Listener { fd, bound } =
        path::bind_listener(&args.path, args.mode, status, &signals)?;
    // Each engine owns the listener and closes it when it stops (and its clients before it
    // returns); then our file is removed.
    let served = if args.iterative {
        iterative::run(fd, &signals, &cfg, status)
    } else {
        match args.engine.unwrap_or(Engine::Readwrite) {
            Engine::Readwrite => event_loop::run::<relay::BufferRelay>(fd, &signals, &cfg, status),
            Engine::Splice => event_loop::run::<splice::SpliceRelay>(fd, &signals, &cfg, status),
            Engine::Uring => match ring {
                Some(ring) => uring::run(ring, fd, &signals, &cfg, status),
                None => Err(error::EchoError::sys_nopath(
                    "io_uring ring missing",
                    nix::errno::Errno::EINVAL,
                )),
            },
        }
    };
    let removed = match bound.remove_if_ours() {
        Ok(removed) => removed,
        Err(e) => {
            status.warn(format_args!("{e}"));
            false
        }
    };
    let sig = served?;
    if removed {
        status.line(format_args!("Received {sig}; socket removed, exiting"));
    } else {
        status.line(format_args!(
            "Received {sig}; {:?} is no longer the socket this server bound, left alone; exiting",
            bound.path()
        ));
    }
    // A signal that is not a graceful stop ends the process the way it would have without the
    // clean-up (`fatal_signals_clean_up`).
    if !sig.graceful() {
        out::finish();
        sig.reraise();
    }
    Ok(())
}

/// Clients an event-loop server must be able to hold at once, or it refuses to start
/// (`enough_fds`); the iterative server needs room for its one client.
pub const MIN_CLIENTS: usize = 4;

/// `enough_fds`: with RLIMIT_NOFILE so low that the server could never serve a client (it would
/// accept into its backlog and then fail every accept), fail at start with one line instead.
/// Counts the descriptors open now and adds what the engine needs: the listener, the bind's
/// transient lock and probe, the epoll fd (the io_uring engine's ring fd), the splice engine's
/// spare pipe, and each client's socket (and pipe).
fn check_fd_room(args: &ServeArgs) -> Result<(), error::EchoError> {
    use nix::sys::resource::{getrlimit, Resource};
    let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Ok(());
    };
    if soft > 4096 {
        return Ok(());
    }
    let limit = soft as i32;
    let open = (0..limit)
        .filter(|&fd| nix::fcntl::fcntl(unsafe_borrow(fd), nix::fcntl::FcntlArg::F_GETFD).is_ok())
        .count();
    let (engine, fixed, per_client, clients) = if args.iterative {
        ("the iterative server", 1, 1, 1)
    } else {
        match args.engine.unwrap_or(Engine::Readwrite) {
            Engine::Readwrite => ("the event loop", 2, 1, MIN_CLIENTS),
            Engine::Splice => ("the splice engine", 4, 3, MIN_CLIENTS),
            // The ring's fd and the listener; one socket per client.
            Engine::Uring => ("the io_uring engine", 2, 1, MIN_CLIENTS),
        }
    };
    // Binding holds the listener, the directory lock and a probe socket at once.
    let need = (fixed + per_client * clients).max(3);
    if open + need <= limit as usize {
        return Ok(());
    }
    let who = if clients == 1 {
        "its client".to_string()
    } else {
        format!("{clients} clients at once")
    };
    Err(error::EchoError::refused(
        "cannot serve on",
        &args.path,
        format!(
            "too few file descriptors: RLIMIT_NOFILE is {limit} and {open} are open; {engine} needs {need} more to serve {who} (raise it with ulimit -n)"
        ),
    ))
}

/// A descriptor number as a BorrowedFd, only for F_GETFD probing.
fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: used only for fcntl(F_GETFD), which merely fails with EBADF on a closed number.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Runs `udsim client`; returns the process exit code.
pub fn run_client(args: ClientArgs) -> i32 {
    let status = Status::new(args.quiet);
    match client::run(&args.path, status) {
        Ok(()) => 0,
        Err(e) => {
            status.warn(format_args!("{e}"));
            1
        }
    }
}
