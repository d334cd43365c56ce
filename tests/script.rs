//! The script language: printing a parsed script gives canonical text that parses back to the same script;
//! malformed scripts get errors that name line and column, never a panic.

use proptest::prelude::*;
use udsim::gen::{generate, Choices};
use udsim::model::Params;
use udsim::script::{
    fmt_data, fmt_script, parse, Call, Errno, Events, Expect, How, Line, Outcome, Script,
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
        Some(Expect::Is(Outcome::Err(Errno::EAGAIN)))
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
    assert_eq!(s.lines[1].call, Call::Bind("a".into(), vec![b'a'; 108]));
    assert_eq!(
        s.lines[2].call,
        Call::Write("a".into(), b"abccc\0\t\\\"".to_vec())
    );
    assert_eq!(s.lines[3].expect, Some(Expect::Bytes(5)));
    assert_eq!(
        s.lines[4].expect,
        Some(Expect::Is(Outcome::Ready(
            Events::IN | Events::OUT | Events::RDHUP
        )))
    );
    assert_eq!(
        s.lines[5].expect,
        Some(Expect::Is(Outcome::Ready(Events::NONE)))
    );
    assert_eq!(s.lines[6].expect, Some(Expect::Is(Outcome::Addr(None))));
    assert_eq!(s.lines[7].call, Call::Shutdown("a".into(), How::RdWr));
    assert_eq!(s.lines[8].call, Call::Listen("a".into(), -1));
    assert_eq!(s.lines[9].expect, Some(Expect::Is(Outcome::Wrote(0))));
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
    ("socket(DGRAM)", 1, 8, "not supported"),
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
        "does not fit",
    ),
    (
        "socket(STREAM) -> a\nshutdown(a, BOTH)",
        2,
        13,
        "RD, WR or RDWR",
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

fn arb_line() -> impl Strategy<Value = Line> {
    let name = prop::sample::select(vec!["a", "b", "s0", "s1"]).prop_map(String::from);
    let bytes = prop::collection::vec(any::<u8>(), 0..40);
    let call = prop_oneof![
        Just(Call::Socket),
        (name.clone(), bytes.clone()).prop_map(|(n, d)| Call::Write(n, d)),
        (name.clone(), 0usize..100_000).prop_map(|(n, k)| Call::Read(n, k)),
        (name.clone(), any::<i32>()).prop_map(|(n, b)| Call::Listen(n, b)),
        (
            name.clone(),
            prop::sample::select(vec![How::Rd, How::Wr, How::RdWr])
        )
            .prop_map(|(n, h)| Call::Shutdown(n, h)),
        name.clone().prop_map(Call::Poll),
        name.clone().prop_map(Call::GetPeerName),
    ];
    (call, any::<u8>(), bytes, 0usize..1000, any::<u8>()).prop_map(|(call, pick, data, n, ev)| {
        let expect = match (pick % 4, &call) {
            (0, _) => None,
            (1, _) => Some(Expect::Is(Outcome::Err(Errno::ECONNRESET))),
            (_, Call::Socket) => Some(Expect::Named("a".into())),
            (_, Call::Write(..)) => Some(Expect::Is(Outcome::Wrote(n))),
            (2, Call::Read(..)) => Some(Expect::Is(Outcome::Data(data))),
            (_, Call::Read(..)) => Some(Expect::Bytes(n)),
            (_, Call::Poll(_)) => Some(Expect::Is(Outcome::Ready(Events(ev & 0x7f)))),
            (_, Call::GetPeerName(_)) => Some(Expect::Is(Outcome::Addr(if n % 2 == 0 {
                None
            } else {
                Some(b"p.sock".to_vec())
            }))),
            _ => Some(Expect::Is(Outcome::Ok)),
        };
        Line {
            call,
            expect,
            line_no: 0,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any script (names declared first so the parser's name check passes) prints and re-parses unchanged.
    #[test]
    fn print_then_parse_is_identity(lines in prop::collection::vec(arb_line(), 0..30)) {
        let mut all = vec![
            Line { call: Call::Socket, expect: Some(Expect::Named("a".into())), line_no: 0 },
            Line { call: Call::Socket, expect: Some(Expect::Named("b".into())), line_no: 0 },
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
