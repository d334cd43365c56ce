//! Accept latency: per connection, from connect(2) to the server's accept returning, and from
//! connect(2) to the first echoed byte; p50, p99, p99.9 and connections per second.
//!
//! - `accept_connect/<server>`: the server runs with status lines on (udsim without `--quiet`, the
//!   peers with the same "Accepted socket fd = N" line written right after accept returns); the
//!   time is connect → the line (one write(2)) arriving on the server's stderr
//!   pipe. Every server writes the line the same way, so the figures compare; each is an upper
//!   bound on accept's own return by one pipe write and wake-up.
//! - `accept_first_byte/<server>`: quiet servers; connect, send one byte, read its echo.
//!
//! Servers: `std_iterative` (a blocking std accept loop serving one client at a time), `tokio`,
//! `monoio` (io_uring), `udsim_iterative`, `udsim_event_loop`, `udsim_splice`, `udsim_uring`. Each starts once per group, outside the
//! timed region. Per-connection latencies go to `<criterion>/udsim-latency/<group>/<server>.json`
//! (percentiles, connections/s: whole socket → close cycles per second of wall time).

#[path = "common/mod.rs"]
mod common;

use common::{Kind, Latencies, Placement, Server};
use criterion::{Criterion, Throughput};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const SERVERS: &[Kind] = &[
    Kind::StdIterative,
    Kind::Tokio,
    Kind::Monoio,
    Kind::UdsimIterative,
    Kind::UdsimEventLoop,
    Kind::UdsimSplice,
    Kind::UdsimUring,
];
const GROUPS: &[&str] = &["accept_connect", "accept_first_byte"];
const WARM_UP: Duration = Duration::from_secs(1);

/// One connection: socket (untimed), then the timed part, then close. Returns the timed part.
fn one(server: &mut Server, addr: &UnixAddr, first_byte: bool) -> Duration {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let t0 = Instant::now();
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), addr).expect("connect");
    let mut s = UnixStream::from(fd);
    let t = if first_byte {
        s.write_all(b"x").expect("write");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("read echo");
        assert_eq!(&b, b"x", "wrong echo");
        t0.elapsed()
    } else {
        server.wait_accepted() - t0
    };
    drop(s);
    t
}

fn group(c: &mut Criterion, p: &Placement, name: &str) {
    let first_byte = name == "accept_first_byte";
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    for &kind in SERVERS {
        let mut server: Option<Server> = None;
        let mut lat = Latencies::new(WARM_UP);
        g.bench_function(kind.id(), |b| {
            b.iter_custom(|iters| {
                let s = server.get_or_insert_with(|| Server::start(kind, !first_byte, p));
                let addr = UnixAddr::new(s.path()).expect("address");
                let past = lat.begin();
                let wall = Instant::now();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = one(s, &addr, first_byte);
                    lat.record(past, t.as_nanos() as u64);
                    total += t;
                }
                lat.cycles(past, iters, wall.elapsed());
                total
            })
        });
        lat.write(name, kind.id(), p);
        drop(server);
    }
    g.finish();
}

fn main() {
    common::maybe_run_peer();
    let placement = common::apply_placement();
    common::write_meta("accept_latency", GROUPS, &placement, serde_json::json!({}));
    let mut c = common::criterion();
    for name in GROUPS {
        group(&mut c, &placement, name);
    }
    c.final_summary();
    common::finish_meta("accept_latency");
}
