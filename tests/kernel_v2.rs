//! The kernel executor on version-2 calls, judged by the live kernel: the contract examples, SIGPIPE,
//! timeouts, rights, directory cleaning, credentials and abstract-name isolation.

use nix::libc;
use std::time::{Duration, Instant};
use udsim::check::{recorded_line, Autos, Checker, Names, Options, Step};
use udsim::kernel::{can_setcred, Kernel};
use udsim::script::{parse, Call, Errno, ExpectValue, Outcome, Received, Value};

/// Runs a script on the kernel alone, naming descriptors and numbering autobind names as the checker does
/// (kernel side only), and returns each step with the kernel's outcome.
fn run_kernel(k: &mut Kernel, text: &str) -> Vec<Step> {
    let script = parse(text).expect("script parses");
    let mut names = Names::default();
    let mut autos = Autos::default();
    let mut steps = Vec::new();
    for line in &script.lines {
        names.check(&line.call).expect("names");
        let resolved = autos.resolve(&line.call).expect("@autoN resolves");
        let mut out = k
            .run(resolved.as_ref().unwrap_or(&line.call))
            .expect("executor runs the call");
        if matches!(
            line.expect.as_ref().map(|e| &e.value),
            Some(ExpectValue::Accepted(_, None))
        ) {
            autos.clone().normalize(&mut out);
        } else {
            autos.normalize(&mut out);
        }
        let created = names.names_for(line, out.new_fds());
        k.name_new(&created);
        names.after(&created);
        steps.push(Step {
            line: line.clone(),
            kernel: out,
            prediction: None,
            created,
        });
    }
    steps
}

/// An executor with a network namespace of its own, or `None` (said on stderr) where there is none and
/// abstract names are shared with the host.
fn isolated_kernel() -> Option<Kernel> {
    let k = Kernel::new().expect("executor");
    if !k.isolated() {
        eprintln!("the executor is not isolated here: abstract names are shared with the host");
        return None;
    }
    Some(k)
}

/// The lines whose written result the kernel's outcome does not satisfy, as recorded lines.
fn mismatches(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter(|s| s.line.expect.as_ref().is_some_and(|e| !e.admits(&s.kernel)))
        .map(|s| format!("line {}: kernel says {}", s.line.line_no, recorded_line(s)))
        .collect()
}

/// Contract examples whose results hold only as root (setcred, SO_PEERCRED of uid 0).
fn needs_root(text: &str) -> bool {
    text.contains("setcred") || text.contains("uid=0")
}

fn outcome(steps: &[Step], i: usize) -> &Outcome {
    &steps[i].kernel
}

#[test]
fn the_ten_contract_examples_reproduce_on_this_kernel() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/contract")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "uds"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 10);
    let mut k = Kernel::new().expect("executor");
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        if needs_root(&text) && !can_setcred() {
            eprintln!("skipping {} (recorded as root)", f.display());
            continue;
        }
        k.reset().expect("reset");
        let steps = run_kernel(&mut k, &text);
        for m in mismatches(&steps) {
            bad.push(format!("{}: {m}", f.display()));
        }
    }
    assert!(bad.is_empty(), "differences:\n{}", bad.join("\n"));
}

#[test]
fn the_contract_examples_through_the_checker_in_record_mode() {
    // The checker's kernel side, as `udsim check --record` runs it. 03 uses `@auto1` after a line the model
    // does not cover, which the checker (not the executor) refuses as a script error today; the kernel
    // runner above covers it.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
    let mut ck = Checker::new().expect("checker");
    for name in [
        "01-dgram-sendto-recvfrom",
        "02-seqpacket-pair",
        "04-raw-addresses",
        "05-rights",
        "06-blocking",
        "07-sigpipe-and-errors",
        "09-oob",
        "10-peek-and-queues",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.uds"))).expect("read");
        if needs_root(&text) && !can_setcred() {
            eprintln!("skipping {name} (recorded as root)");
            continue;
        }
        let script = parse(&text).expect("parses");
        let run = ck.run(&script, Options::recording()).expect("runs");
        assert_eq!(
            run.steps.len(),
            script.lines.len(),
            "{name}: every line ran"
        );
        let bad = mismatches(&run.steps);
        assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
    }
}

#[test]
fn sigpipe_is_reported_and_does_not_kill_the_process_or_leak() {
    let mut k = Kernel::new().expect("executor");
    let steps = run_kernel(
        &mut k,
        "socketpair(STREAM) -> a, b\nclose(a)\n\
         send(b, \"x\", 0)\nsend(b, \"x\", 0)\nsend(b, \"x\", MSG_NOSIGNAL)\nwrite(b, \"x\")\n\
         socketpair(STREAM) -> c, d\nshutdown(c, WR)\nsend(c, \"y\", 0)\nsendmsg(c, \"y\", flags=0)\n\
         sendmsg(c, \"y\")\npoll(c)\n\
         socketpair(SEQPACKET) -> e, f\nclose(f)\nsend(e, \"y\", 0)\nshutdown(e, WR)\nsend(e, \"y\", 0)\n",
    );
    let epipe = Value::Err(Errno(libc::EPIPE));
    for (i, sigpipe) in [
        (2, true),
        (3, true),
        (4, false),
        (5, false),
        (8, true),
        (9, true),
        (10, false),
        // SEQPACKET sends go through the datagram send path, which returns EPIPE without raising SIGPIPE.
        (14, false),
        (16, false),
    ] {
        let o = outcome(&steps, i);
        assert_eq!(o.value, epipe, "step {i}: {}", recorded_line(&steps[i]));
        assert_eq!(o.sigpipe, sigpipe, "step {i}: {}", recorded_line(&steps[i]));
    }
    // The poll after the sends raised nothing, and nothing is left pending for the next script.
    assert!(!outcome(&steps, 11).sigpipe);
    k.reset().expect("reset");
    let steps = run_kernel(
        &mut k,
        "socketpair(STREAM) -> a, b\nsend(a, \"ok\", 0) -> 2\n",
    );
    assert_eq!(mismatches(&steps), Vec::<String>::new());
}

#[test]
fn a_blocking_read_waits_for_its_timeout() {
    let mut k = Kernel::new().expect("executor");
    let start = Instant::now();
    let steps = run_kernel(
        &mut k,
        "socketpair(STREAM, BLOCKING) -> a, b\n\
         read(b, 10) -> EAGAIN after timeout\n\
         getsockopt(b, SO_RCVTIMEO) -> 100ms\n\
         getsockopt(b, SO_SNDTIMEO) -> 100ms\n\
         write(a, \"hi\") -> 2\n\
         read(b, 10) -> \"hi\"\n\
         setsockopt(b, SO_RCVTIMEO, 40ms) -> 0\n\
         recv(b, 10, 0) -> EAGAIN after timeout\n\
         recv(b, 10, MSG_DONTWAIT) -> EAGAIN\n\
         socketpair(STREAM) -> c, d\n\
         read(d, 10) -> EAGAIN\n\
         getsockopt(d, SO_RCVTIMEO) -> 0ms\n\
         nonblock(d, 0) -> 0\n\
         getsockopt(d, SO_RCVTIMEO) -> 100ms\n\
         read(d, 10) -> EAGAIN after timeout\n",
    );
    assert_eq!(mismatches(&steps), Vec::<String>::new());
    // Three waits of 100, 40 and 100 ms.
    assert!(start.elapsed() >= Duration::from_millis(240));
}

#[test]
fn blocking_follows_the_open_file_through_dup_and_rights() {
    let mut k = Kernel::new().expect("executor");
    let steps = run_kernel(
        &mut k,
        "socketpair(STREAM, BLOCKING) -> a, b\n\
         dup(b) -> b2\n\
         nonblock(b2, 1) -> 0\n\
         read(b, 10) -> EAGAIN\n\
         socketpair(STREAM) -> p, q\n\
         socketpair(STREAM) -> x, y\n\
         sendmsg(x, \"r\", rights=[p]) -> 1\n\
         recvmsg(y, 1) -> \"r\" from none rights=[p2]\n\
         nonblock(p2, 0) -> 0\n\
         read(p, 10) -> EAGAIN after timeout\n\
         nonblock(p, 1) -> 0\n\
         read(p2, 10) -> EAGAIN\n\
         getsockopt(p, SO_RCVTIMEO) -> 100ms\n",
    );
    assert_eq!(mismatches(&steps), Vec::<String>::new());
}

#[test]
fn a_blocking_accept_and_its_socket() {
    let mut k = Kernel::new().expect("executor");
    let steps = run_kernel(
        &mut k,
        "socket(STREAM) -> l\nbind(l, \"l.sock\") -> 0\nlisten(l, 1) -> 0\n\
         socket(STREAM) -> c\nconnect(c, \"l.sock\") -> 0\n\
         accept(l, BLOCKING, buf=4) -> s from {path=\"\", len=2}\n\
         getsockopt(s, SO_RCVTIMEO) -> 100ms\nread(s, 1) -> EAGAIN after timeout\n\
         getsockopt(c, SO_RCVTIMEO) -> 0ms\nread(c, 1) -> EAGAIN\n\
         getpeername(c, buf=5) -> {path=\"l.s\", len=9}\n",
    );
    assert_eq!(mismatches(&steps), Vec::<String>::new());
}

#[test]
fn received_rights_become_names_and_a_short_control_buffer_cuts_them() {
    let mut k = Kernel::new().expect("executor");
    // SAFETY: getuid / getgid have no memory effects.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // space=20 is CMSG_LEN(4): room for one descriptor of three.
    let steps = run_kernel(
        &mut k,
        &format!(
            "socketpair(STREAM) -> a, b\n\
         socketpair(STREAM) -> p, q\n\
         socketpair(DGRAM) -> u, v\n\
         sendmsg(a, \"x\", rights=[p, u]) -> 1\n\
         recvmsg(b, 8) -> \"x\" from none rights=[p2, u2]\n\
         write(p2, \"via p2\") -> 6\n\
         read(q, 64) -> \"via p2\"\n\
         write(u2, \"dg\") -> 2\n\
         read(v, 64) -> \"dg\"\n\
         sendmsg(a, \"y\", rights=[q, u, v]) -> 1\n\
         recvmsg(b, 8, space=20) -> \"y\" from none flags=MSG_CTRUNC rights=[q2]\n\
         write(p, \"to q\") -> 4\n\
         read(q2, 64) -> \"to q\"\n\
         sendmsg(a, \"z\", rights=[q]) -> 1\n\
         recvmsg(b, 8, space=0) -> \"z\" from none flags=MSG_CTRUNC\n\
         sendmsg(a, \"w\", rights=[q]) -> 1\n\
         recvmsg(b, 8, MSG_PEEK) -> \"w\" from none rights=[q3]\n\
         recvmsg(b, 8) -> \"w\" from none rights=[q4]\n\
         close(p) -> 0\n\
         sendmsg(a, \"e\", rights=[p]) -> EBADF\n\
         setsockopt(b, SO_PASSCRED, 1) -> 0\n\
         sendmsg(a, \"c\", creds={{pid=SELF, uid={uid}, gid={gid}}}) -> 1\n\
         recvmsg(b, 8) -> \"c\" from none creds={{pid=SELF, uid={uid}, gid={gid}}}\n"
        ),
    );
    assert_eq!(mismatches(&steps), Vec::<String>::new());
    // Names: a b p q u v, then p2 u2 (6, 7), q2 (8), q3 q4.
    assert_eq!(steps[4].created, ["p2", "u2"]);
    assert_eq!(steps[10].created, ["q2"]);
    assert!(steps[14].created.is_empty());
    let Value::Recv(Received { rights, flags, .. }) = &outcome(&steps, 10).value else {
        panic!("recvmsg returned {:?}", outcome(&steps, 10));
    };
    assert_eq!((*rights, *flags), (1, libc::MSG_CTRUNC as u32));
}

#[test]
fn reset_cleans_mode_000_directories_symlinks_and_renamed_files() {
    let mut k = Kernel::new().expect("executor");
    let steps = run_kernel(
        &mut k,
        "mkdir(\"d\") -> 0\nmkdir(\"d/e\") -> 0\nmkfile(\"d/e/f\") -> 0\n\
         socket(STREAM) -> s\nbind(s, \"d/e/s.sock\") -> 0\n\
         mkfile(\"g\") -> 0\nrename(\"g\", \"d/h\") -> 0\nlink(\"d/h\", \"d/h2\") -> 0\n\
         symlink(\"/\", \"root\") -> 0\nsymlink(\"d\", \"dlink\") -> 0\n\
         stat(\"root\") -> symlink 0777\nstat(\"d/h\") -> file 0644\nstat(\"d/e/s.sock\") -> socket 0755\n\
         chmod(\"d/e\", 0) -> 0\nchmod(\"d\", 0) -> 0\nstat(\"d\") -> dir 0000\nchmod(\".\", 0) -> 0\n",
    );
    assert_eq!(mismatches(&steps), Vec::<String>::new());
    k.reset().expect("reset");
    assert_eq!(std::fs::read_dir(k.dir()).expect("dir").count(), 0);
    // The symlink to `/` was removed, not followed.
    assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("Cargo.toml")
        .exists());
    assert!(std::path::Path::new("/tmp").exists());
    // The directory works for the next script.
    let steps = run_kernel(&mut k, "mkdir(\"d\") -> 0\nstat(\"d\") -> dir 0755\n");
    assert_eq!(mismatches(&steps), Vec::<String>::new());
}

fn ids() -> (u32, u32, u32, u32) {
    let (mut r, mut e, mut s) = (0u32, 0u32, 0u32);
    let (mut gr, mut ge, mut gs) = (0u32, 0u32, 0u32);
    // SAFETY: live u32s.
    unsafe {
        libc::syscall(libc::SYS_getresuid, &mut r, &mut e, &mut s);
        libc::syscall(libc::SYS_getresgid, &mut gr, &mut ge, &mut gs);
    }
    (r, e, gr, ge)
}

fn groups() -> Vec<libc::gid_t> {
    let mut g = vec![0; 256];
    // SAFETY: room for 256 gids.
    let n = unsafe { libc::syscall(libc::SYS_getgroups, 256, g.as_mut_ptr()) };
    g.truncate(n.max(0) as usize);
    g
}

#[test]
fn setcred_acts_on_the_script_thread_and_reset_restores_root() {
    let mut k = Kernel::new().expect("executor");
    if !can_setcred() {
        // Without root the kernel refuses the first step, and nothing needs restoring.
        let steps = run_kernel(
            &mut k,
            "setcred(65534, 65534) -> EPERM\nmkdir(\"d\") -> 0\n",
        );
        assert_eq!(mismatches(&steps), Vec::<String>::new());
        k.reset().expect("reset");
        eprintln!("setcred needs effective uid 0: only its refusal was checked");
        return;
    }
    let before = groups();
    // A thread that exists before setcred samples its own ids while the script's calls run (a thread spawned
    // after it would inherit the script's ids; the libc wrappers would change this one too).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.insert(ids());
                std::thread::yield_now();
            }
            seen
        })
    };
    // Credentials by default carry the real ids, SO_PEERCRED the effective ones.
    let steps = run_kernel(
        &mut k,
        "chmod(\".\", 0755) -> 0\nsetcred(65534, 65533) -> 0\nmkdir(\"d\") -> EACCES\n\
         socketpair(STREAM, BLOCKING) -> a, b\n\
         getsockopt(a, SO_PEERCRED) -> {pid=SELF, uid=65534, gid=65533}\n\
         setsockopt(b, SO_PASSCRED, 1) -> 0\nwrite(a, \"c\") -> 1\n\
         recvmsg(b, 8) -> \"c\" from none creds={pid=SELF, uid=0, gid=0}\n\
         read(b, 1) -> EAGAIN after timeout\n",
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = sampler.join().expect("sampler");
    assert_eq!(mismatches(&steps), Vec::<String>::new());
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [(0, 0, 0, 0)],
        "another thread's ids changed"
    );
    // Between calls the thread has its own ids again (the rest of the program never runs as the script).
    assert_eq!(ids(), (0, 0, 0, 0));
    assert_eq!(groups(), before);
    k.reset().expect("reset");
    assert_eq!(ids(), (0, 0, 0, 0));
    // After reset the script's credentials are gone: the next script starts as root.
    let steps = run_kernel(
        &mut k,
        "mkdir(\"d\") -> 0\nsetcred(65534, 65534) -> 0\nmkfile(\"f\") -> EACCES\n\
         setcred(0, 0) -> 0\nmkfile(\"f\") -> 0\nsetcred(65534, 65534) -> 0\nstat(\"f\") -> EACCES\n",
    );
    assert_eq!(mismatches(&steps), Vec::<String>::new());
    k.reset().expect("reset");
    let steps = run_kernel(&mut k, "mkfile(\"f\") -> 0\nstat(\"f\") -> file 0644\n");
    assert_eq!(mismatches(&steps), Vec::<String>::new());
    // A script that ends under other credentials, then the executor dropped.
    run_kernel(&mut k, "setcred(65534, 65534) -> 0\n");
    drop(k);
    assert_eq!(ids(), (0, 0, 0, 0));
    assert_eq!(groups(), before);
}

#[test]
fn two_threads_bind_the_same_abstract_name_in_parallel() {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                let mut k = Kernel::new().expect("executor");
                let steps = run_kernel(
                    &mut k,
                    "socket(STREAM) -> s\nbind(s, @\"udsim-isolation-test\")\nlisten(s, 1)\n",
                );
                // Both hold the name at the same time.
                b.wait();
                let out = outcome(&steps, 1).clone();
                b.wait();
                (k.isolated(), out)
            })
        })
        .collect();
    let results: Vec<(bool, Outcome)> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    if !results.iter().all(|r| r.0) {
        eprintln!(
            "the executor is not isolated here (no private network namespace): abstract names are shared"
        );
        return;
    }
    for (_, o) in &results {
        assert_eq!(*o, Outcome::OK);
    }
}

#[test]
fn options_queries_and_truncation() {
    let mut k = Kernel::new().expect("executor");
    let steps = run_kernel(
        &mut k,
        "socket(7) -> ESOCKTNOSUPPORT\n\
         socket(DGRAM, protocol=2) -> EPROTONOSUPPORT\n\
         socket(SEQPACKET) -> s\n\
         getsockopt(s, SO_TYPE) -> 5\n\
         getsockopt(s, SO_DOMAIN) -> 1\n\
         getsockopt(s, SO_ERROR) -> 0\n\
         getsockopt(s, SO_RCVTIMEO) -> 0ms\n\
         setsockopt(s, SO_SNDTIMEO, 20ms) -> 0\n\
         getsockopt(s, SO_SNDTIMEO) -> 20ms\n\
         setsockopt(s, SO_PEEK_OFF, 3) -> 0\n\
         getsockopt(s, SO_PEEK_OFF) -> 3\n\
         shutdown(s, 7) -> EINVAL\n\
         shutdown(s, -1) -> EINVAL\n\
         ioctl(s, SIOCINQ) -> 0\n\
         bind(s, @\"seq\") -> 0\n\
         listen(s, 1) -> 0\n\
         ioctl(s, SIOCINQ) -> EINVAL\n\
         socketpair(DGRAM) -> a, b\n\
         write(a, \"hello world\") -> 11\n\
         recv(b, 4, MSG_TRUNC) -> \"hell\" (11)\n\
         write(a, \"hello world\") -> 11\n\
         recvmsg(b, 4) -> \"hell\" from none flags=MSG_TRUNC\n\
         socket(DGRAM) -> r\nbind(r, @\"abc\") -> 0\n\
         socket(DGRAM) -> x\nbind(x, @\"xyz\") -> 0\n\
         sendto(x, \"q\", @\"abc\") -> 1\n\
         recvfrom(r, 10, buf=4) -> \"q\" from {path=\"\\0x\", len=6}\n\
         socket(DGRAM) -> t\nbind(t, unnamed) -> 0\n\
         getsockname(t) -> @auto1\n\
         sendto(t, \"q\", @\"abc\") -> 1\n\
         recvmsg(r, 10, buf=0) -> \"q\" from {path=\"\", len=8}\n\
         sendmsg(t, \"q\", to=@\"abc\") -> 1\n\
         recvfrom(r, 10) -> \"q\" from @auto1\n\
         sendto(t, \"q\", @auto1) -> 1\n\
         recvfrom(t, 10) -> \"q\" from @auto1\n\
         getsockname(r, buf=0) -> {path=\"\", len=6}\n",
    );
    assert_eq!(mismatches(&steps), Vec::<String>::new());
}

#[test]
fn an_executor_kept_in_a_thread_local_is_dropped_cleanly_at_thread_exit() {
    // As the fuzz targets keep one checker per thread: its drop runs among the thread-local destructors,
    // possibly after the executor's own per-thread state is gone.
    thread_local! {
        static K: std::cell::RefCell<Option<Kernel>> = const { std::cell::RefCell::new(None) };
    }
    let dir = std::thread::spawn(|| {
        K.with(|k| {
            let mut k2 = Kernel::new().expect("executor");
            let steps = run_kernel(
                &mut k2,
                "mkdir(\"d\") -> 0\nchmod(\"d\", 0) -> 0\nsocket(STREAM) -> s\nbind(s, \"x\") -> 0\n",
            );
            assert_eq!(mismatches(&steps), Vec::<String>::new());
            let dir = k2.dir().to_path_buf();
            *k.borrow_mut() = Some(k2);
            dir
        })
    })
    .join()
    .expect("the thread exits without a panic");
    assert!(!dir.exists(), "the private directory is removed");
}

#[test]
fn a_zero_timeout_on_a_blocking_socket_is_refused_not_waited_for() {
    let mut k = Kernel::new().expect("executor");
    // On a non-blocking socket 0ms is fine, and nonblock(S, 0) replaces it with the executor's 100 ms.
    let steps = run_kernel(
        &mut k,
        "socketpair(STREAM, BLOCKING) -> a, b\nsocketpair(STREAM) -> c, d\n\
         setsockopt(d, SO_RCVTIMEO, 0ms) -> 0\nnonblock(d, 0) -> 0\n\
         getsockopt(d, SO_RCVTIMEO) -> 100ms\nread(d, 1) -> EAGAIN after timeout\n",
    );
    assert_eq!(mismatches(&steps), Vec::<String>::new());
    let r = k.run(&Call::SetSockOpt(
        "b".into(),
        udsim::script::SockOpt::RCVTIMEO,
        udsim::script::OptVal::Ms(0),
    ));
    assert!(
        matches!(r, Err(udsim::kernel::KernelError::Script(_))),
        "{r:?}"
    );
}

#[test]
fn an_abstract_name_held_in_flight_by_a_cycle_does_not_reach_the_next_script() {
    let Some(mut k) = isolated_kernel() else {
        return;
    };
    // b travels in its own receive queue with s: after every name is closed only the garbage collector frees
    // them (asynchronously), and s still holds @"cyc".
    let steps = run_kernel(
        &mut k,
        "socketpair(STREAM) -> a, b\nsocket(STREAM) -> s\nbind(s, @\"cyc\") -> 0\n\
         sendmsg(a, \"x\", rights=[b]) -> 1\nsendmsg(a, \"y\", rights=[s]) -> 1\n",
    );
    assert_eq!(mismatches(&steps), Vec::<String>::new());
    k.reset().expect("reset");
    let steps = run_kernel(&mut k, "socket(STREAM) -> t\nbind(t, @\"cyc\") -> 0\n");
    assert_eq!(mismatches(&steps), Vec::<String>::new());
}

#[test]
fn two_executors_on_one_thread_have_their_own_abstract_names() {
    let mut k1 = Kernel::new().expect("executor");
    let mut k2 = Kernel::new().expect("executor");
    if !(k1.isolated() && k2.isolated()) {
        eprintln!("the executor is not isolated here: abstract names are shared");
        return;
    }
    let s1 = run_kernel(
        &mut k1,
        "socket(STREAM) -> l\nbind(l, @\"both\") -> 0\nlisten(l, 1) -> 0\n",
    );
    let s2 = run_kernel(
        &mut k2,
        "socket(STREAM) -> l\nbind(l, @\"both\") -> 0\nlisten(l, 1) -> 0\n\
         socket(STREAM) -> c\nconnect(c, @\"both\") -> 0\naccept(l) -> a\n",
    );
    for s in [&s1, &s2] {
        assert_eq!(mismatches(s), Vec::<String>::new());
    }
    // Back on the first executor: a connection to @"both" reaches its listener, not the second's.
    let s3 = run_kernel(&mut k1, "socket(STREAM) -> c\nconnect(c, @\"both\") -> 0\n");
    assert_eq!(mismatches(&s3), Vec::<String>::new());
    let acc = k1
        .run(&Call::Accept("l".into(), false, None))
        .expect("runs");
    assert!(matches!(acc.value, Value::Accepted(_)), "{acc:?}");
    k1.name_new(&["a".into()]);
    let acc2 = k2
        .run(&Call::Accept("l".into(), false, None))
        .expect("runs");
    assert_eq!(acc2.value, Value::Err(Errno(libc::EAGAIN)));
}

/// What `reset` asks before it pays for a fresh network namespace: whether a socket still holds an abstract
/// name here. A bound name shows; once its socket is closed (nothing in flight) it is gone, so a script that
/// sent descriptors but left no name behind keeps the namespace.
#[test]
fn a_held_abstract_name_is_seen_and_a_released_one_is_not() {
    let Some(mut k) = isolated_kernel() else {
        return;
    };
    assert!(
        !k.abstract_names_in_use(),
        "a fresh namespace holds no names"
    );
    let steps = run_kernel(
        &mut k,
        "socket(DGRAM) -> a\nbind(a, @\"udsim-held\") -> 0\nsocketpair(STREAM) -> b, c\n\
         sendmsg(b, \"x\", rights=[c]) -> 1\n",
    );
    assert!(mismatches(&steps).is_empty(), "{:?}", mismatches(&steps));
    assert!(k.abstract_names_in_use(), "the bound name shows");
    k.reset().expect("reset");
    assert!(!k.abstract_names_in_use(), "closed, the name is released");
    // The next script binds the same name.
    let steps = run_kernel(
        &mut k,
        "socket(DGRAM) -> a\nbind(a, @\"udsim-held\") -> 0\n",
    );
    assert!(mismatches(&steps).is_empty(), "{:?}", mismatches(&steps));
}
