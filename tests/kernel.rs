//! The kernel executor: private directories, per-thread working directories, stale names, exact addresses.

use udsim::check::{Checker, Options};
use udsim::kernel::Kernel;
use udsim::script::{parse, Addr, AddrOut, Call, Outcome, SockSpec, Value, STREAM};

fn socket(k: &mut Kernel, name: &str) {
    k.run(&Call::Socket(SockSpec::of(STREAM))).expect("run");
    k.name_new(&[name.to_string()]);
}

#[test]
fn a_108_byte_path_reaches_the_kernel_as_written() {
    let mut k = Kernel::new().expect("executor");
    socket(&mut k, "a");
    let path = vec![b'p'; 108];
    assert_eq!(
        k.run(&Call::Bind("a".into(), Addr::Path(path.clone())))
            .expect("run"),
        Outcome::OK
    );
    assert_eq!(
        k.run(&Call::GetSockName("a".into(), None)).expect("run"),
        Outcome::of(Value::Addr(AddrOut::path(&path)))
    );
    // The file is in the private directory and nowhere else.
    assert!(k.dir().join("p".repeat(108)).exists());
}

#[test]
fn reset_closes_everything_and_empties_the_directory() {
    let mut k = Kernel::new().expect("executor");
    socket(&mut k, "a");
    k.run(&Call::Bind("a".into(), Addr::Path(b"x.sock".to_vec())))
        .expect("run");
    assert!(k.dir().join("x.sock").exists());
    k.reset().expect("reset");
    assert!(!k.knows("a"));
    assert_eq!(std::fs::read_dir(k.dir()).expect("dir").count(), 0);
}

#[test]
fn the_first_script_finds_its_directory_as_every_later_one_does() {
    // The model's private directory is 0700; a fresh temp dir follows the umask (0755 here), which the first
    // script of a run saw until the executor gave it the mode reset gives every later one.
    let mut ck = Checker::new().expect("checker");
    let s = parse("stat(\".\") -> dir 0700\n").expect("parses");
    for i in 0..2 {
        let run = ck.run(&s, Options::default()).expect("runs");
        assert!(
            run.fully_agrees(),
            "script {i}: {}",
            udsim::cli::transcript(&run)
        );
    }
}

#[test]
fn scripts_in_parallel_threads_use_their_own_directories() {
    // Every thread binds the same relative path; each must find its own directory (per-thread cwd).
    let script = parse(
        "socket(STREAM) -> srv\nbind(srv, \"same.sock\") -> 0\nlisten(srv, 0) -> 0\n\
         socket(STREAM) -> c\nconnect(c, \"same.sock\") -> 0\nwrite(c, \"hi\") -> 2\n\
         accept(srv) -> conn\nread(conn, 10) -> \"hi\"\nunlink(\"same.sock\") -> 0\n",
    )
    .expect("parses");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = script.clone();
            std::thread::spawn(move || {
                let mut ck = Checker::new().expect("checker");
                (0..50).all(|_| ck.run(&s, Options::default()).expect("runs").agrees())
            })
        })
        .collect();
    for t in threads {
        assert!(
            t.join().expect("thread"),
            "a script disagreed while running in parallel"
        );
    }
}
