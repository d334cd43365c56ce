//! Printer: the canonical text of scripts, calls and outcomes. `parse(fmt_script(s))` gives `s` back.

use super::{Call, Expect, How, Line, Outcome, Script};

/// Longest DATA text printed in full in a result; longer results print as `<N bytes>`.
const MAX_PRINTED_RESULT: usize = 120;

fn escape_into(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
}

/// Smallest period p (≤ 16) such that `d` is `d[..p]` repeated at least 4 times.
fn period(d: &[u8]) -> Option<usize> {
    (1..=16.min(d.len() / 4))
        .find(|&p| d.len().is_multiple_of(p) && d.chunks(p).all(|c| c == &d[..p]))
}

/// DATA in canonical form: literals, with runs of one byte (8 or more) as `"x" * N`.
pub fn fmt_data(d: &[u8]) -> String {
    let mut out = String::new();
    if let Some(p) = period(d) {
        escape_into(&mut out, &d[..p]);
        out.push_str(&format!(" * {}", d.len() / p));
        return out;
    }
    let mut parts: Vec<String> = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    while i < d.len() {
        let run = d[i..].iter().take_while(|&&b| b == d[i]).count();
        if run >= 8 {
            if lit_start < i {
                let mut s = String::new();
                escape_into(&mut s, &d[lit_start..i]);
                parts.push(s);
            }
            let mut s = String::new();
            escape_into(&mut s, &d[i..i + 1]);
            parts.push(format!("{s} * {run}"));
            i += run;
            lit_start = i;
        } else {
            i += run;
        }
    }
    if lit_start < d.len() || parts.is_empty() {
        let mut s = String::new();
        escape_into(&mut s, &d[lit_start..]);
        parts.push(s);
    }
    parts.join(" + ")
}

/// ADDR / PATH in canonical form.
pub fn fmt_addr(a: &[u8]) -> String {
    fmt_data(a)
}

fn how(h: How) -> &'static str {
    match h {
        How::Rd => "RD",
        How::Wr => "WR",
        How::RdWr => "RDWR",
    }
}

/// A call without its result.
pub fn fmt_call(c: &Call) -> String {
    match c {
        Call::Socket => "socket(STREAM)".into(),
        Call::Bind(s, a) => format!("bind({s}, {})", fmt_addr(a)),
        Call::Listen(s, n) => format!("listen({s}, {n})"),
        Call::Accept(s) => format!("accept({s})"),
        Call::Connect(s, a) => format!("connect({s}, {})", fmt_addr(a)),
        Call::Write(s, d) => format!("write({s}, {})", fmt_data(d)),
        Call::Read(s, n) => format!("read({s}, {n})"),
        Call::Shutdown(s, h) => format!("shutdown({s}, {})", how(*h)),
        Call::Close(s) => format!("close({s})"),
        Call::Unlink(a) => format!("unlink({})", fmt_addr(a)),
        Call::GetSockName(s) => format!("getsockname({s})"),
        Call::GetPeerName(s) => format!("getpeername({s})"),
        Call::Poll(s) => format!("poll({s})"),
    }
}

/// An outcome as a transcript shows it (long data as `<N bytes>`). `name` is what a created socket is called.
pub fn fmt_outcome(o: &Outcome, name: Option<&str>) -> String {
    match o {
        Outcome::Created => name.unwrap_or("<new socket>").to_string(),
        Outcome::Ok => "0".into(),
        Outcome::Wrote(n) => n.to_string(),
        Outcome::Data(d) => {
            let s = fmt_data(d);
            if s.len() > MAX_PRINTED_RESULT {
                format!("<{} bytes>", d.len())
            } else {
                s
            }
        }
        Outcome::Addr(None) => "unnamed".into(),
        Outcome::Addr(Some(a)) => fmt_addr(a),
        Outcome::Ready(e) => e.to_string(),
        Outcome::Err(e) => e.to_string(),
    }
}

/// A written result: exact (data is never abbreviated, so the text parses back to the same script).
fn fmt_expect(e: &Expect) -> String {
    match e {
        Expect::Named(n) => n.clone(),
        Expect::Is(Outcome::Data(d)) => fmt_data(d),
        Expect::Is(o) => fmt_outcome(o, None),
        Expect::Bytes(n) => format!("<{n} bytes>"),
    }
}

/// One line in canonical form.
pub fn fmt_line(l: &Line) -> String {
    match &l.expect {
        None => fmt_call(&l.call),
        Some(e) => format!("{} -> {}", fmt_call(&l.call), fmt_expect(e)),
    }
}

/// A whole script in canonical form, one line per call.
pub fn fmt_script(s: &Script) -> String {
    let mut out = String::new();
    for l in &s.lines {
        out.push_str(&fmt_line(l));
        out.push('\n');
    }
    out
}
