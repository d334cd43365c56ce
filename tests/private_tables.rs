//! Threads that check scripts beside others each have a descriptor table of their own. In a shared table,
//! one thread listing it (`/proc/self/fd`, for the EMFILE budget) took a reference on every file for a
//! moment, so another thread's `close` of a listener could return before the listener was released: with
//! `--jobs 2` about one explored script in 100,000 diverged (a pending client read EAGAIN, not ECONNRESET).
//! Alone in its binary, so no other test's descriptors are in the process's table.

use udsim::check::{run_ordered, Checker};

/// The calling thread's descriptors, each with what it refers to.
fn own_fds() -> Vec<(i32, String)> {
    std::fs::read_dir("/proc/thread-self/fd")
        .expect("listable")
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let to = std::fs::read_link(e.path()).ok()?;
            Some((fd, to.display().to_string()))
        })
        .collect()
}

#[test]
fn check_threads_see_none_of_each_others_descriptors() {
    let mut main = Checker::new().expect("checker");
    // Descriptors of the calling thread a worker must not see (nor hold).
    let held: Vec<std::fs::File> = (0..20)
        .map(|_| std::fs::File::open("/dev/null").expect("open"))
        .collect();
    let main_thread = std::thread::current().id();
    let mut seen = Vec::new();
    let done = run_ordered(
        &mut main,
        2,
        &|i| i < 40,
        |_, _| {
            let worker = std::thread::current().id() != main_thread;
            // A socket of this case's own, open while the other thread lists its table.
            let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
            let fds = own_fds();
            use std::os::fd::AsRawFd;
            Ok((worker, fds, a.as_raw_fd()))
        },
        |_, r| {
            seen.push(r);
            true
        },
    )
    .expect("runs");
    assert!(done);
    let null = |fds: &[(i32, String)]| fds.iter().filter(|(_, t)| t == "/dev/null").count();
    assert!(
        null(&own_fds()) >= held.len(),
        "the calling thread holds its files"
    );
    let workers: Vec<_> = seen.iter().filter(|(w, _, _)| *w).collect();
    assert!(!workers.is_empty(), "some cases ran on the other thread");
    for (_, fds, sock) in &workers {
        assert!(
            fds.iter().any(|(fd, _)| fd == sock),
            "a worker lists its own socket"
        );
        // Standard input, output and error may be /dev/null; the calling thread's twenty are not there.
        assert!(
            null(fds) <= 3,
            "a worker's table holds the calling thread's files: {fds:?}"
        );
    }
}
