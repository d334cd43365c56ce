//! A closed name must never reach a reused fd number. Alone in its test binary, so no other test thread takes
//! the freed fd number first.

use udsim::kernel::{Kernel, CLOSED_FD};
use udsim::script::{Call, Errno, Events, Outcome, SockSpec, Value, STREAM};

#[test]
fn a_closed_name_never_reaches_a_reused_fd() {
    let mut k = Kernel::new().expect("executor");
    assert_eq!(
        k.run(&Call::Socket(SockSpec::of(STREAM))).expect("run"),
        Outcome::of(Value::Created)
    );
    k.name_new(&["a".into()]);
    let fd_a = k.raw_fd("a").expect("known");
    assert_eq!(k.run(&Call::Close("a".into())).expect("run"), Outcome::OK);
    // The next socket gets the lowest free fd: the number `a` had.
    assert_eq!(
        k.run(&Call::Socket(SockSpec::of(STREAM))).expect("run"),
        Outcome::of(Value::Created)
    );
    k.name_new(&["b".into()]);
    assert_eq!(k.raw_fd("b"), Some(fd_a), "the kernel reused the fd number");
    assert_eq!(k.raw_fd("a"), Some(CLOSED_FD));
    // The stale name reaches no socket: the kernel itself answers.
    assert_eq!(
        k.run(&Call::Poll("a".into())).expect("run"),
        Outcome::of(Value::Ready(Events::NVAL))
    );
    assert_eq!(
        k.run(&Call::Close("a".into())).expect("run"),
        Outcome::err(Errno::EBADF)
    );
    assert_eq!(
        k.run(&Call::Listen("a".into(), 1)).expect("run"),
        Outcome::err(Errno::EBADF)
    );
    // `b` is untouched: still a fresh socket.
    assert_eq!(
        k.run(&Call::Poll("b".into())).expect("run"),
        Outcome::of(Value::Ready(Events::OUT | Events::HUP))
    );
}
