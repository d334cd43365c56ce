//! What io_uring's splice costs, against splice(2) (docs/performance.md, issue 14): ping-pong of
//! 64 KiB messages over a socketpair, the echo thread moving each message socket → pipe → socket
//!
//! 0. with splice(2), blocking (what the splice engine does per message, minus its epoll);
//! 1. with IORING_OP_SPLICE, one submission per splice;
//! 2. with IORING_OP_RECV / IORING_OP_SEND through a buffer (what the uring engine does today);
//! 3. with readiness from the ring (IORING_OP_POLL_ADD) and splice(2) non-blocking inline.
//!
//! Rounds are interleaved (each round runs every variant, the order rotating); the medians of the
//! round trips per second are printed with their ranges and their ratio to variant 0.
//!
//! `taskset -c 0 cargo run --release --example uring_splice -- [round trips per round] [rounds]`;
//! `ONLY=k` runs variant k alone (for `perf stat` of one variant).
use io_uring::{opcode, types::Fd, IoUring};
use nix::libc;
use std::os::fd::RawFd;
use std::time::Instant;

const MSG: usize = 65536;
const NAMES: [&str; 4] = [
    "splice(2), blocking",
    "IORING_OP_SPLICE",
    "IORING_OP_RECV/SEND",
    "POLL_ADD + splice(2)",
];

fn check(r: libc::c_int, what: &str) {
    assert!(r >= 0, "{what}: {}", std::io::Error::last_os_error());
}

fn socketpair() -> (RawFd, RawFd) {
    let mut sv = [0; 2];
    // SAFETY: sv has room for the two descriptors.
    check(
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) },
        "socketpair",
    );
    (sv[0], sv[1])
}

fn pipe() -> (RawFd, RawFd) {
    let mut p = [0; 2];
    // SAFETY: p has room for the two descriptors.
    check(unsafe { libc::pipe(p.as_mut_ptr()) }, "pipe");
    (p[0], p[1])
}

fn close(fd: RawFd) {
    // SAFETY: fd is a descriptor this program opened and closes once.
    unsafe { libc::close(fd) };
}

fn splice(from: RawFd, to: RawFd, len: usize, flags: libc::c_uint) -> isize {
    // SAFETY: no offsets (sockets and pipes); the kernel moves at most len bytes between the two.
    unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    }
}

/// Submits one entry and waits for its completion's result.
fn one(ring: &mut IoUring, e: io_uring::squeue::Entry) -> i32 {
    // SAFETY: every buffer an entry names outlives the wait below, which reaps its completion.
    unsafe { ring.submission().push(&e).expect("room in the queue") };
    ring.submit_and_wait(1).expect("io_uring_enter");
    ring.completion().next().expect("a completion").result()
}

/// Echoes until the client shuts down its side; `kind` picks how.
fn echo(s: RawFd, kind: usize) {
    let (r, w) = pipe();
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let mut buf = vec![0u8; MSG];
    let nb = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    loop {
        let n = match kind {
            0 => splice(s, w, MSG, libc::SPLICE_F_MOVE),
            1 => one(
                &mut ring,
                opcode::Splice::new(Fd(s), -1, Fd(w), -1, MSG as u32)
                    .flags(libc::SPLICE_F_MOVE)
                    .build(),
            ) as isize,
            2 => one(
                &mut ring,
                opcode::Recv::new(Fd(s), buf.as_mut_ptr(), MSG as u32).build(),
            ) as isize,
            _ => match splice(s, w, MSG, nb) {
                n if n < 0 => {
                    one(
                        &mut ring,
                        opcode::PollAdd::new(Fd(s), libc::POLLIN as u32).build(),
                    );
                    continue;
                }
                n => n,
            },
        };
        if n <= 0 {
            break;
        }
        let n = n as usize;
        let mut out = 0;
        while out < n {
            let left = n - out;
            let m = match kind {
                0 => splice(r, s, left, libc::SPLICE_F_MOVE),
                1 => one(
                    &mut ring,
                    opcode::Splice::new(Fd(r), -1, Fd(s), -1, left as u32)
                        .flags(libc::SPLICE_F_MOVE)
                        .build(),
                ) as isize,
                2 => one(
                    &mut ring,
                    opcode::Send::new(Fd(s), buf[out..].as_ptr(), left as u32).build(),
                ) as isize,
                _ => splice(r, s, left, nb),
            };
            assert!(m > 0, "{}: the echo's send failed: {m}", NAMES[kind]);
            out += m as usize;
        }
    }
    close(r);
    close(w);
}

/// One round of `n` round trips with variant `kind`: round trips per second.
fn round(kind: usize, n: usize) -> f64 {
    let (c, s) = socketpair();
    let t = std::thread::spawn(move || {
        echo(s, kind);
        close(s);
    });
    let msg = vec![7u8; MSG];
    let mut back = vec![0u8; MSG];
    let start = Instant::now();
    for _ in 0..n {
        let mut put = 0;
        while put < MSG {
            // SAFETY: msg[put..] is valid for reading its length.
            let w = unsafe { libc::write(c, msg[put..].as_ptr().cast(), MSG - put) };
            assert!(w > 0, "write: {}", std::io::Error::last_os_error());
            put += w as usize;
        }
        let mut got = 0;
        while got < MSG {
            // SAFETY: back[got..] is valid for writing its length.
            let r = unsafe { libc::read(c, back[got..].as_mut_ptr().cast(), MSG - got) };
            assert!(r > 0, "read: {}", std::io::Error::last_os_error());
            got += r as usize;
        }
    }
    let dt = start.elapsed().as_secs_f64();
    assert_eq!(back, msg, "echoed bytes differ");
    // SAFETY: c is open; shutting its write side ends the echo thread's loop.
    unsafe { libc::shutdown(c, libc::SHUT_WR) };
    t.join().expect("echo thread");
    close(c);
    n as f64 / dt
}

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .map_or(d, |a| a.parse().expect("a number"))
    };
    let (n, rounds) = (arg(1, 3000), arg(2, 9));
    let only: Option<usize> = std::env::var("ONLY").ok().map(|v| v.parse().expect("0-3"));
    let mut res: Vec<Vec<f64>> = vec![Vec::new(); NAMES.len()];
    for r in 0..rounds {
        for k in 0..NAMES.len() {
            let k = (k + r) % NAMES.len();
            if only.is_none_or(|o| o == k) {
                res[k].push(round(k, n));
            }
        }
    }
    for v in &mut res {
        v.sort_by(f64::total_cmp);
    }
    let med = |v: &[f64]| v.get(v.len() / 2).copied();
    for (k, v) in res.iter().enumerate() {
        let Some(m) = med(v) else { continue };
        let ratio = med(&res[0]).map_or(String::new(), |b| format!("  {:.2}× variant 0", m / b));
        println!(
            "{k}. {:22} median {m:8.0} round trips/s ({:.0}–{:.0}){ratio}",
            NAMES[k],
            v[0],
            v[v.len() - 1]
        );
    }
}
