//! The script language: printing a parsed script gives canonical text that parses back to the same script;
//! malformed scripts get errors that name line and column, never a panic.

use proptest::prelude::*;
use udsim::gen::{generate, Choices};
use udsim::model::Params;
use udsim::script::{
    fmt_data, fmt_script, parse, Addr, AddrOut, Call, Creds, DataPat, Errno, Events, Expect,
    ExpectValue, FileKind, Flags, How, Ioctl, Line, MsgOut, OptVal, Pid, RecvPat, Script, SockOpt,
    SockSpec, Value, STREAM,
};

fn params() -> Params {
    udsim::kernel::calibrate::params().expect("calibrate")
}

#[test]
fn contract_example_parses_and_prints_canonically() {
    let text = r#"
socket(STREAM) -> srv
bind(srv, "srv.sock") -> 0
listen(srv, 1) -> 0   # backlog 1
socket(STREAM) -> cli
connect(cli, "srv.sock") -> 0
write(cli, "hello\n") -> 6
accept(srv) -> conn
read(conn, 64) -> "hello\n"
close(cli) -> 0
read(conn, 64) -> ""
accept(srv) -> EAGAIN
"#;
    let s = parse(text).expect("parses");
    assert_eq!(s.lines.len(), 11);
    assert_eq!(s.lines[2].line_no, 4);
    assert_eq!(s.lines[2].call, Call::Listen("srv".into(), 1));
    assert_eq!(
        s.lines[10].expect,
        Some(Expect::is(Value::Err(Errno::EAGAIN)))
    );
    let printed = fmt_script(&s);
    assert_eq!(printed.lines().next(), Some("socket(STREAM) -> srv"));
    assert!(printed.contains("read(conn, 64) -> \"hello\\n\"\n"));
    assert!(parse(&printed).expect("reparses").same_as(&s));
}

#[test]
fn values_repetition_concatenation_and_escapes() {
    let s = parse(
        "socket(STREAM) -> a\nbind(a, \"a\" * 108)\nwrite(a, \"ab\" + \"c\" * 3 + \"\\x00\\t\\\\\\\"\")\n\
         read(a, 5) -> <5 bytes>\npoll(a) -> IN|OUT|RDHUP\npoll(a) -> 0\ngetsockname(a) -> unnamed\n\
         shutdown(a, RDWR) -> 0\nlisten(a, -1) -> EINVAL\nwrite(a, \"\") -> 0",
    )
    .expect("parses");
    assert_eq!(
        s.lines[1].call,
        Call::Bind("a".into(), Addr::Path(vec![b'a'; 108]))
    );
    assert_eq!(
        s.lines[2].call,
        Call::Write("a".into(), b"abccc\0\t\\\""[..].into())
    );
    assert_eq!(
        s.lines[3].expect,
        Some(Expect::plain(ExpectValue::Recv(RecvPat {
            data: DataPat::Len(5),
            ret: None,
            from: None,
            flags: 0,
            rights: Vec::new(),
            creds: None
        })))
    );
    assert_eq!(
        s.lines[4].expect,
        Some(Expect::is(Value::Ready(
            Events::IN | Events::OUT | Events::RDHUP
        )))
    );
    assert_eq!(
        s.lines[5].expect,
        Some(Expect::is(Value::Ready(Events::NONE)))
    );
    assert_eq!(
        s.lines[6].expect,
        Some(Expect::is(Value::Addr(AddrOut::unnamed())))
    );
    assert_eq!(s.lines[7].call, Call::Shutdown("a".into(), How::RDWR));
    assert_eq!(s.lines[8].call, Call::Listen("a".into(), -1));
    assert_eq!(s.lines[9].expect, Some(Expect::is(Value::Wrote(0))));
    assert!(parse(&fmt_script(&s)).expect("reparses").same_as(&s));
}

#[test]
fn canonical_data_is_compact() {
    assert_eq!(fmt_data(b""), "\"\"");
    assert_eq!(fmt_data(&[b'x'; 300000]), "\"x\" * 300000");
    assert_eq!(fmt_data(b"hello\n"), "\"hello\\n\"");
    let mut d = vec![b'a'; 10];
    d.extend_from_slice(b"bc");
    assert_eq!(fmt_data(&d), "\"a\" * 10 + \"bc\"");
}

/// (text, line, column, words the message must contain)
const BAD: &[(&str, usize, usize, &str)] = &[
    ("socket(FROB)", 1, 8, "unknown socket type"),
    (
        "socket(STREAM) -> a\nbind(a, {path=\"x\", fam=1})",
        2,
        20,
        "not a field",
    ),
    (
        "socket(STREAM) -> a\nsetsockopt(a, SO_RCVTIMEO, 5ms)",
        2,
        28,
        "20ms to 1000ms",
    ),
    (
        "socket(STREAM) -> a\nsetsockopt(a, 34, 1)",
        2,
        15,
        "not expressible",
    ),
    ("socket(STREAM) -> a\ngetsockopt(a, 13)", 2, 15, "neither"),
    (
        "socket(STREAM) -> a\nsendmsg(a, \"x\", rights=[zz])",
        2,
        25,
        "unknown socket name `zz`",
    ),
    (
        "socketpair(STREAM) -> a, b\nrecvfrom(a, 4) -> \"x\"",
        2,
        22,
        "from ADDR",
    ),
    (
        "socket(STREAM) -> a\nwrite(a, \"x\") -> 1 with SIGBUS",
        2,
        25,
        "SIGPIPE",
    ),
    ("mkdir(\"a/../../b\")", 1, 7, "never above"),
    ("chmod(\"f\", 0999)", 1, 12, "octal"),
    ("socket(STREAM) -> a\nfrobnicate(a)", 2, 1, "unknown call"),
    (
        "socket(STREAM) -> a\nread(b, 4)",
        2,
        6,
        "unknown socket name `b`",
    ),
    (
        "socket(STREAM) -> a\nwrite(a, \"abc)",
        2,
        10,
        "unterminated",
    ),
    (
        "socket(STREAM) -> a\nwrite(a, \"\\q\")",
        2,
        12,
        "unknown escape",
    ),
    (
        "socket(STREAM) -> a\nlisten(a, 99999999999)",
        2,
        11,
        "between",
    ),
    (
        "socket(STREAM) -> a\nshutdown(a, BOTH)",
        2,
        13,
        "RD, WR, RDWR or an integer",
    ),
    (
        "socket(STREAM) -> a\nclose(a) -> EWHAT",
        2,
        13,
        "unknown errno",
    ),
    (
        "socket(STREAM) -> a\npoll(a) -> IN|LOUD",
        2,
        15,
        "unknown poll flag",
    ),
    ("socket(STREAM) -> Big", 1, 19, "not a socket name"),
    ("socket(STREAM) -> a\nbind(a, \"/etc/x\")", 2, 9, "relative"),
    ("socket(STREAM) -> a\nunlink(\"../x\")", 2, 8, "relative"),
    (
        "socket(STREAM) -> a\nunlink(\"d/../../x\")",
        2,
        8,
        "relative",
    ),
    (
        "socket(STREAM) -> a\nwrite(a, \"x\" * 999999999999)",
        2,
        16,
        "between 0 and",
    ),
    (
        "socket(STREAM) -> a\nwrite(a, \"xy\" * 40000000)",
        2,
        10,
        "longer than",
    ),
    ("socket(STREAM) -> a\nread(a, -1)", 2, 9, "between 0 and"),
    (
        "socket(STREAM) -> a\nclose(a) junk",
        2,
        10,
        "unexpected text",
    ),
    ("socket(STREAM) -> a\nbind(a \"x\")", 2, 8, "expected `,`"),
];

#[test]
fn a_script_cannot_spell_gigabytes() {
    // Each value is within its own limit; the script's total is not (found by the script_parser fuzz target).
    let mut text = String::from("socket(STREAM)\n");
    for _ in 0..5 {
        text.push_str("write(s0, \"x\" * 67108864)\n");
    }
    let e = parse(&text).expect_err("too much data");
    assert_eq!((e.line, e.col), (6, 1), "{e}");
    assert!(e.msg.contains("bytes of data in all"), "{e}");
}

#[test]
fn malformed_scripts_name_line_and_column() {
    for (text, line, col, words) in BAD {
        let e = parse(text).expect_err(text);
        assert_eq!((e.line, e.col), (*line, *col), "{text:?}: {e}");
        assert!(
            e.msg.contains(words),
            "{text:?}: message {:?} lacks {words:?}",
            e.msg
        );
    }
}

/// The parser's private-directory rule on a raw path's filesystem part (up to the first NUL).
fn stays_inside(p: &[u8]) -> bool {
    udsim::script::stays_inside(p.split(|&b| b == 0).next().unwrap_or(&[]))
}

fn arb_addr() -> impl Strategy<Value = Addr> {
    let path = prop::collection::vec(prop::sample::select(b"ab./_\x00x".to_vec()), 1..12);
    prop_oneof![
        prop::sample::select(vec!["a.sock", "d/x", "a"])
            .prop_map(|p| Addr::Path(p.as_bytes().to_vec())),
        prop::collection::vec(any::<u8>(), 0..10).prop_map(Addr::Abstract),
        (1u32..5).prop_map(Addr::Auto),
        Just(Addr::Unnamed),
        (
            prop::option::of(prop::sample::select(vec![0, 1, 2, 77])),
            prop::option::of(path.prop_filter("inside", |p| stays_inside(p))),
            prop::option::of(0u32..200)
        )
            .prop_map(|(family, path, len)| Addr::Raw { family, path, len }),
    ]
}

fn arb_addr_out() -> impl Strategy<Value = AddrOut> {
    prop_oneof![
        (1u32..5).prop_map(AddrOut::Auto),
        // As the kernel returns them: at most `len - 2` path bytes copied.
        (prop::collection::vec(any::<u8>(), 0..12), 0u32..130).prop_map(|(mut path, len)| {
            path.truncate((len as usize).saturating_sub(2));
            AddrOut::Raw { path, len }
        }),
        Just(AddrOut::path(b"p.sock")),
        Just(AddrOut::abstract_name(b"svc")),
        Just(AddrOut::unnamed()),
    ]
}

fn arb_creds() -> impl Strategy<Value = Creds> {
    (prop::option::of(-5i64..70000), -1i64..70000, -1i64..70000).prop_map(|(p, uid, gid)| Creds {
        pid: p.map_or(Pid::Own, Pid::Num),
        uid,
        gid,
    })
}

fn arb_spec() -> impl Strategy<Value = SockSpec> {
    (
        prop::sample::select(vec![1, 2, 3, 5, 7, 10, -1]),
        any::<bool>(),
        prop::option::of(-2i32..3),
    )
        .prop_map(|(ty, blocking, protocol)| SockSpec {
            ty,
            blocking,
            protocol,
        })
}

fn arb_call() -> impl Strategy<Value = Call> {
    let name = || prop::sample::select(vec!["a", "b", "s0", "s1"]).prop_map(String::from);
    let bytes = || prop::collection::vec(any::<u8>(), 0..40);
    let flags = || any::<u32>().prop_map(Flags);
    let oflags = || prop::option::of(any::<u32>().prop_map(Flags));
    let path = || {
        prop::sample::select(vec!["f", "d/f", "d/../g", "."]).prop_map(|p| p.as_bytes().to_vec())
    };
    let opt = prop::sample::select(vec![3, 4, 7, 8, 10, 16, 17, 18, 19, 30, 38, 39, 42, 2, 9])
        .prop_map(SockOpt);
    prop_oneof![
        arb_spec().prop_map(Call::Socket),
        arb_spec().prop_map(Call::Socketpair),
        (name(), arb_addr()).prop_map(|(n, a)| Call::Bind(n, a)),
        (name(), arb_addr()).prop_map(|(n, a)| Call::Connect(n, a)),
        (name(), any::<i32>()).prop_map(|(n, b)| Call::Listen(n, b)),
        (name(), any::<bool>(), prop::option::of(0u32..200))
            .prop_map(|(n, b, k)| Call::Accept(n, b, k)),
        name().prop_map(Call::Dup),
        (name(), any::<bool>()).prop_map(|(n, b)| Call::Nonblock(n, b)),
        (name(), bytes()).prop_map(|(n, d)| Call::Write(n, d.into())),
        (name(), 0usize..100_000).prop_map(|(n, k)| Call::Read(n, k)),
        (name(), bytes(), flags()).prop_map(|(n, d, f)| Call::Send(n, d.into(), f)),
        (name(), bytes(), arb_addr(), oflags()).prop_map(|(n, d, a, f)| Call::SendTo(
            n,
            d.into(),
            a,
            f
        )),
        (
            name(),
            bytes(),
            prop::option::of(arb_addr()),
            prop::option::of(prop::collection::vec(name(), 0..3)),
            prop::option::of(arb_creds()),
            oflags()
        )
            .prop_map(|(n, d, to, rights, creds, flags)| Call::SendMsg(
                n,
                d.into(),
                MsgOut {
                    to,
                    rights,
                    creds,
                    flags
                }
            )),
        (name(), 0usize..1000, flags()).prop_map(|(n, k, f)| Call::Recv(n, k, f)),
        (name(), 0usize..1000, oflags(), prop::option::of(0u32..200))
            .prop_map(|(n, k, f, b)| Call::RecvFrom(n, k, f, b)),
        (
            name(),
            0usize..1000,
            oflags(),
            prop::option::of(0usize..500),
            prop::option::of(0u32..200)
        )
            .prop_map(|(n, k, f, sp, b)| Call::RecvMsg(n, k, f, sp, b)),
        (name(), -3i32..6).prop_map(|(n, h)| Call::Shutdown(n, How(h))),
        name().prop_map(Call::Close),
        (name(), prop::option::of(0u32..200)).prop_map(|(n, b)| Call::GetSockName(n, b)),
        (name(), prop::option::of(0u32..200)).prop_map(|(n, b)| Call::GetPeerName(n, b)),
        name().prop_map(Call::Poll),
        (name(), opt.clone()).prop_map(|(n, o)| Call::GetSockOpt(n, o)),
        (name(), opt, any::<i32>()).prop_map(|(n, o, v)| Call::SetSockOpt(
            n,
            o,
            OptVal::Int(v.into())
        )),
        (
            name(),
            prop::sample::select(vec![SockOpt::RCVTIMEO, SockOpt::SNDTIMEO]),
            prop::sample::select(vec![0u64, 20, 100, 1000])
        )
            .prop_map(|(n, o, v)| Call::SetSockOpt(n, o, OptVal::Ms(v))),
        (
            name(),
            prop::sample::select(vec![Ioctl::InQ, Ioctl::OutQ, Ioctl::AtMark])
        )
            .prop_map(|(n, r)| Call::Ioctl(n, r)),
        path().prop_map(Call::Unlink),
        path().prop_map(Call::Mkdir),
        path().prop_map(Call::Mkfile),
        (bytes(), path()).prop_map(|(t, p)| Call::Symlink(t, p)),
        (path(), path()).prop_map(|(a, b)| Call::Link(a, b)),
        (path(), path()).prop_map(|(a, b)| Call::Rename(a, b)),
        (path(), 0u32..0o7777).prop_map(|(p, m)| Call::Chmod(p, m)),
        path().prop_map(Call::Stat),
        (any::<u32>(), any::<u32>()).prop_map(|(u, g)| Call::Setcred(u, g)),
    ]
}

fn arb_line() -> impl Strategy<Value = Line> {
    (
        arb_call(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..100),
        0usize..1000,
        any::<u8>(),
        (
            arb_addr_out(),
            arb_creds(),
            any::<u32>(),
            prop::collection::vec(
                prop::sample::select(vec!["x", "y", "s9"]).prop_map(String::from),
                0..3,
            ),
        ),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(call, pick, data, n, ev, (addr, creds, flags, rights), (sigpipe, waited))| {
                let value = match (pick % 5, &call) {
                    (0, _) => {
                        return Line {
                            call,
                            expect: None,
                            line_no: 0,
                        }
                    }
                    (1, _) => ExpectValue::Is(Value::Err(Errno::ECONNRESET)),
                    (_, Call::Socket(_) | Call::Dup(_)) => ExpectValue::Named(vec!["a".into()]),
                    (_, Call::Socketpair(_)) => ExpectValue::Named(vec!["a".into(), "b".into()]),
                    (2, Call::Accept(..)) => ExpectValue::Accepted("c".into(), None),
                    (_, Call::Accept(..)) => ExpectValue::Accepted("c".into(), Some(addr)),
                    (
                        _,
                        Call::Write(..) | Call::Send(..) | Call::SendTo(..) | Call::SendMsg(..),
                    ) => ExpectValue::Is(Value::Wrote(n)),
                    (
                        _,
                        Call::Read(..) | Call::Recv(..) | Call::RecvFrom(..) | Call::RecvMsg(..),
                    ) => {
                        let full = matches!(call, Call::RecvMsg(..));
                        let from = matches!(call, Call::RecvFrom(..) | Call::RecvMsg(..));
                        ExpectValue::Recv(RecvPat {
                            data: if pick % 3 == 0 {
                                DataPat::Len(n)
                            } else {
                                DataPat::Exact(data)
                            },
                            ret: (pick % 2 == 0).then_some(n + 7),
                            from: from.then_some(addr),
                            flags: if full { flags } else { 0 },
                            rights: if full { rights } else { Vec::new() },
                            creds: if full && pick % 2 == 1 {
                                Some(creds)
                            } else {
                                None
                            },
                        })
                    }
                    (_, Call::Poll(_)) => ExpectValue::Is(Value::Ready(Events(ev & 0x7f))),
                    (_, Call::GetPeerName(..) | Call::GetSockName(..)) => {
                        ExpectValue::Is(Value::Addr(addr))
                    }
                    (2, Call::GetSockOpt(..)) => ExpectValue::Is(Value::SoError(Errno::EPIPE)),
                    (3, Call::GetSockOpt(..)) => ExpectValue::Is(Value::Cred(creds)),
                    (4, Call::GetSockOpt(..)) => ExpectValue::Is(Value::Ms(n as u64)),
                    (_, Call::GetSockOpt(..) | Call::Ioctl(..)) => {
                        ExpectValue::Is(Value::Int(n as i64 - 3))
                    }
                    (_, Call::Stat(_)) => {
                        ExpectValue::Is(Value::Stat(FileKind::Socket, (n as u32) & 0o7777))
                    }
                    _ => ExpectValue::Is(Value::Ok),
                };
                Line {
                    call,
                    expect: Some(Expect {
                        value,
                        sigpipe,
                        waited,
                    }),
                    line_no: 0,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any script (names declared first so the parser's name check passes) prints and re-parses unchanged.
    #[test]
    fn print_then_parse_is_identity(lines in prop::collection::vec(arb_line(), 0..30)) {
        let mut all = vec![
            Line { call: Call::Socket(SockSpec::of(STREAM)), expect: Some(Expect::plain(ExpectValue::Named(vec!["a".into()]))), line_no: 0 },
            Line { call: Call::Socket(SockSpec::of(STREAM)), expect: Some(Expect::plain(ExpectValue::Named(vec!["b".into()]))), line_no: 0 },
        ];
        all.extend(lines);
        let s = Script { lines: all };
        let text = fmt_script(&s);
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert!(back.same_as(&s), "{}\n---\n{}", text, fmt_script(&back));
        prop_assert_eq!(fmt_script(&back), text);
    }

    /// Generated scripts round-trip too.
    #[test]
    fn generated_scripts_round_trip(choices in prop::collection::vec(any::<u32>(), 0..200)) {
        let s = generate(&mut Choices::new(&choices), &params(), 60);
        let back = parse(&fmt_script(&s)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(back.same_as(&s));
    }

    /// Arbitrary text never panics the parser.
    #[test]
    fn parser_never_panics(text in "(?s).{0,200}") {
        let _ = parse(&text);
    }
}
