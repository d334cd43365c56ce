//! Printer: the canonical text of scripts, calls and outcomes. `parse(fmt_script(s))` gives `s` back.
//!
//! Canonical form (contract v2): one space after each comma and around `*` and `+`, none around `=` and `|`;
//! DATA in results as literals with runs of 8 or more equal bytes as `"c" * N`, and as `<N bytes>` when longer
//! than 64 bytes and more than 3 segments.

use super::names::{family_name, ioctl_name, msg_flag_names, opt_name, type_name};
use super::{
    Addr, AddrOut, Call, Creds, Expect, ExpectValue, Flags, How, Line, MsgOut, OptVal, Outcome,
    Pid, Received, RecvPat, Script, SockSpec, Value, MSG_CTRUNC, MSG_EOR, MSG_OOB, MSG_TRUNC,
};
use std::fmt::Write as _;

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
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
}

/// The segments of the run rule: literals, and runs of 8 or more equal bytes as `"c" * N`.
fn segments(d: &[u8]) -> Vec<String> {
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
            let _ = write!(s, " * {run}");
            parts.push(s);
            lit_start = i + run;
        }
        i += run;
    }
    if lit_start < d.len() || parts.is_empty() {
        let mut s = String::new();
        escape_into(&mut s, &d[lit_start..]);
        parts.push(s);
    }
    parts
}

/// Smallest period p (2..=16) such that `d` is `d[..p]` repeated at least 4 times.
fn period(d: &[u8]) -> Option<usize> {
    (2..=16.min(d.len() / 4))
        .find(|&p| d.len().is_multiple_of(p) && d.chunks(p).all(|c| c == &d[..p]))
}

/// DATA in a call: the run rule, and a short repeated pattern as `"ab" * N` (calls are always printed exactly).
pub fn fmt_data(d: &[u8]) -> String {
    if let Some(p) = period(d) {
        if d[..p].iter().any(|&b| b != d[0]) {
            let mut out = String::new();
            escape_into(&mut out, &d[..p]);
            let _ = write!(out, " * {}", d.len() / p);
            return out;
        }
    }
    segments(d).join(" + ")
}

/// A path (file calls, v1 addresses, paths in returned addresses): the run rule, never abbreviated.
pub fn fmt_path(d: &[u8]) -> String {
    segments(d).join(" + ")
}

/// DATA in a result: the run rule, `<N bytes>` when longer than 64 bytes and more than 3 segments.
fn fmt_result_data(d: &[u8]) -> String {
    let segs = segments(d);
    if d.len() > 64 && segs.len() > 3 {
        format!("<{} bytes>", d.len())
    } else {
        segs.join(" + ")
    }
}

fn fmt_spec(name: &str, s: &SockSpec) -> String {
    let mut out = format!("{name}(");
    match type_name(s.ty) {
        Some(n) => out.push_str(n),
        None => {
            let _ = write!(out, "{}", s.ty);
        }
    }
    if s.blocking {
        out.push_str(", BLOCKING");
    }
    if let Some(p) = s.protocol {
        let _ = write!(out, ", protocol={p}");
    }
    out.push(')');
    out
}

/// An address in a call.
pub fn fmt_addr(a: &Addr) -> String {
    match a {
        Addr::Path(p) => fmt_path(p),
        Addr::Abstract(d) => format!("@{}", fmt_path(d)),
        Addr::Auto(n) => format!("@auto{n}"),
        Addr::Unnamed => "unnamed".into(),
        Addr::Raw { family, path, len } => {
            let mut f = Vec::new();
            if let Some(fam) = family {
                f.push(match family_name(*fam) {
                    Some(n) => format!("family={n}"),
                    None => format!("family={fam}"),
                });
            }
            if let Some(p) = path {
                f.push(format!("path={}", fmt_path(p)));
            }
            if let Some(l) = len {
                f.push(format!("len={l}"));
            }
            format!("{{{}}}", f.join(", "))
        }
    }
}

/// An address the kernel returned, as the contract prints it (`"P"`, `@autoN`, `@"N"`, `unnamed`, or
/// `{path=COPIED, len=RETURNED}`).
pub fn fmt_addr_out(a: &AddrOut) -> String {
    let (path, len) = match a {
        AddrOut::Auto(n) => return format!("@auto{n}"),
        AddrOut::Raw { path, len } => (path, *len as usize),
    };
    if len == 2 {
        return "unnamed".into();
    }
    let whole = len >= 2 && path.len() == len - 2;
    if whole {
        if let Some((&0, p)) = path.split_last() {
            if !p.is_empty() && !p.contains(&0) {
                return fmt_path(p);
            }
        }
        if path.first() == Some(&0) {
            return format!("@{}", fmt_path(&path[1..]));
        }
    }
    format!("{{path={}, len={len}}}", fmt_path(path))
}

fn fmt_flags(f: Flags) -> String {
    if f.0 == 0 {
        "0".into()
    } else {
        msg_flag_names(f.0, &[]).join("|")
    }
}

fn fmt_creds(c: &Creds) -> String {
    let pid = match c.pid {
        Pid::Own => "SELF".to_string(),
        Pid::Num(n) => n.to_string(),
    };
    format!("{{pid={pid}, uid={}, gid={}}}", c.uid, c.gid)
}

fn how(h: How) -> String {
    match h.0 {
        0 => "RD".into(),
        1 => "WR".into(),
        2 => "RDWR".into(),
        n => n.to_string(),
    }
}

fn fmt_mode(m: u32) -> String {
    if m < 0o1000 {
        format!("{m:04o}")
    } else {
        format!("0{m:o}")
    }
}

fn opt(o: super::SockOpt) -> String {
    opt_name(o).map_or_else(|| o.0.to_string(), str::to_string)
}

fn msg_out(m: &MsgOut) -> String {
    let mut out = String::new();
    if let Some(a) = &m.to {
        let _ = write!(out, ", to={}", fmt_addr(a));
    }
    if let Some(r) = &m.rights {
        let _ = write!(out, ", rights=[{}]", r.join(", "));
    }
    if let Some(c) = &m.creds {
        let _ = write!(out, ", creds={}", fmt_creds(c));
    }
    if let Some(f) = m.flags {
        let _ = write!(out, ", flags={}", fmt_flags(f));
    }
    out
}

fn opt_flags(f: &Option<Flags>) -> String {
    f.map(|f| format!(", {}", fmt_flags(f))).unwrap_or_default()
}

fn opt_kw(k: &str, v: Option<impl std::fmt::Display>) -> String {
    v.map(|v| format!(", {k}={v}")).unwrap_or_default()
}

/// A call without its result.
pub fn fmt_call(c: &Call) -> String {
    match c {
        Call::Socket(s) => fmt_spec("socket", s),
        Call::Socketpair(s) => fmt_spec("socketpair", s),
        Call::Bind(s, a) => format!("bind({s}, {})", fmt_addr(a)),
        Call::Listen(s, n) => format!("listen({s}, {n})"),
        Call::Accept(s, b, buf) => format!(
            "accept({s}{}{})",
            if *b { ", BLOCKING" } else { "" },
            opt_kw("buf", *buf)
        ),
        Call::Connect(s, a) => format!("connect({s}, {})", fmt_addr(a)),
        Call::Dup(s) => format!("dup({s})"),
        Call::Nonblock(s, on) => format!("nonblock({s}, {})", u8::from(*on)),
        Call::Write(s, d) => format!("write({s}, {})", fmt_data(d)),
        Call::Read(s, n) => format!("read({s}, {n})"),
        Call::Send(s, d, f) => format!("send({s}, {}, {})", fmt_data(d), fmt_flags(*f)),
        Call::SendTo(s, d, a, f) => format!(
            "sendto({s}, {}, {}{})",
            fmt_data(d),
            fmt_addr(a),
            opt_flags(f)
        ),
        Call::SendMsg(s, d, m) => format!("sendmsg({s}, {}{})", fmt_data(d), msg_out(m)),
        Call::Recv(s, n, f) => format!("recv({s}, {n}, {})", fmt_flags(*f)),
        Call::RecvFrom(s, n, f, buf) => {
            format!("recvfrom({s}, {n}{}{})", opt_flags(f), opt_kw("buf", *buf))
        }
        Call::RecvMsg(s, n, f, space, buf) => format!(
            "recvmsg({s}, {n}{}{}{})",
            opt_flags(f),
            opt_kw("space", *space),
            opt_kw("buf", *buf)
        ),
        Call::Shutdown(s, h) => format!("shutdown({s}, {})", how(*h)),
        Call::Close(s) => format!("close({s})"),
        Call::GetSockName(s, buf) => format!("getsockname({s}{})", opt_kw("buf", *buf)),
        Call::GetPeerName(s, buf) => format!("getpeername({s}{})", opt_kw("buf", *buf)),
        Call::Poll(s) => format!("poll({s})"),
        Call::GetSockOpt(s, o) => format!("getsockopt({s}, {})", opt(*o)),
        Call::SetSockOpt(s, o, v) => {
            let v = match v {
                OptVal::Int(i) => i.to_string(),
                OptVal::Ms(m) => format!("{m}ms"),
            };
            format!("setsockopt({s}, {}, {v})", opt(*o))
        }
        Call::Ioctl(s, r) => format!("ioctl({s}, {})", ioctl_name(*r)),
        Call::Unlink(p) => format!("unlink({})", fmt_path(p)),
        Call::Mkdir(p) => format!("mkdir({})", fmt_path(p)),
        Call::Mkfile(p) => format!("mkfile({})", fmt_path(p)),
        Call::Symlink(t, p) => format!("symlink({}, {})", fmt_path(t), fmt_path(p)),
        Call::Link(a, b) => format!("link({}, {})", fmt_path(a), fmt_path(b)),
        Call::Rename(a, b) => format!("rename({}, {})", fmt_path(a), fmt_path(b)),
        Call::Chmod(p, m) => format!("chmod({}, {})", fmt_path(p), fmt_mode(*m)),
        Call::Stat(p) => format!("stat({})", fmt_path(p)),
        Call::Setcred(u, g) => format!("setcred({u}, {g})"),
    }
}

/// How much of a receive result a call prints: read/recv the data, recvfrom the sender too, recvmsg all.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RecvShape {
    Data,
    From,
    Msg,
}

fn recv_shape(c: &Call) -> RecvShape {
    match c {
        Call::RecvFrom(..) => RecvShape::From,
        Call::RecvMsg(..) => RecvShape::Msg,
        _ => RecvShape::Data,
    }
}

fn fmt_recv_tail(
    out: &mut String,
    shape: RecvShape,
    from: Option<&AddrOut>,
    flags: u32,
    rights: &[String],
    creds: Option<&Creds>,
) {
    if shape >= RecvShape::From {
        match from {
            Some(AddrOut::Raw { len: 0, .. }) | None => out.push_str(" from none"),
            Some(a) => {
                let _ = write!(out, " from {}", fmt_addr_out(a));
            }
        }
    }
    if shape == RecvShape::Msg {
        if flags != 0 {
            let names = msg_flag_names(flags, &[MSG_TRUNC, MSG_CTRUNC, MSG_EOR, MSG_OOB]);
            let _ = write!(out, " flags={}", names.join("|"));
        }
        if !rights.is_empty() {
            let _ = write!(out, " rights=[{}]", rights.join(", "));
        }
        if let Some(c) = creds {
            let _ = write!(out, " creds={}", fmt_creds(c));
        }
    }
}

fn fmt_received(c: &Call, r: &Received, names: &[String]) -> String {
    let mut out = fmt_result_data(&r.data);
    if r.ret != r.data.len() {
        let _ = write!(out, " ({})", r.ret);
    }
    fmt_recv_tail(
        &mut out,
        recv_shape(c),
        Some(&r.from),
        r.flags,
        names,
        r.creds.as_ref(),
    );
    out
}

fn fmt_suffix(out: &mut String, sigpipe: bool, waited: bool) {
    if sigpipe {
        out.push_str(" with SIGPIPE");
    }
    if waited {
        out.push_str(" after timeout");
    }
}

/// A value as a transcript shows it for `call`; `names` are what its new descriptors are called.
pub fn fmt_value(c: &Call, v: &Value, names: &[String]) -> String {
    let name = |i: usize| names.get(i).map_or("<new socket>", String::as_str);
    match v {
        Value::Created => name(0).to_string(),
        Value::Pair => format!("{}, {}", name(0), name(1)),
        Value::Accepted(a) => format!("{} from {}", name(0), fmt_addr_out(a)),
        Value::Ok => "0".into(),
        Value::Wrote(n) => n.to_string(),
        Value::Recv(r) => fmt_received(c, r, names),
        Value::Addr(a) => fmt_addr_out(a),
        Value::Ready(e) => e.to_string(),
        Value::Int(i) => i.to_string(),
        Value::SoError(e) => format!("{{error={e}}}"),
        Value::Cred(c) => fmt_creds(c),
        Value::Ms(m) => format!("{m}ms"),
        Value::Stat(k, m) => format!("{} {m:04o}", k.name()),
        Value::Err(e) => e.to_string(),
    }
}

/// An outcome as a transcript shows it for `call`.
pub fn fmt_outcome(c: &Call, o: &Outcome, names: &[String]) -> String {
    let mut out = fmt_value(c, &o.value, names);
    fmt_suffix(&mut out, o.sigpipe, o.waited);
    out
}

fn fmt_recv_pat(c: &Call, p: &RecvPat) -> String {
    let mut out = match &p.data {
        // Written data prints exactly (never as `<N bytes>`), so the text parses back to the same script.
        super::DataPat::Exact(d) => fmt_path(d),
        super::DataPat::Len(n) => format!("<{n} bytes>"),
    };
    if let Some(r) = p.ret {
        let _ = write!(out, " ({r})");
    }
    fmt_recv_tail(
        &mut out,
        recv_shape(c),
        p.from.as_ref(),
        p.flags,
        &p.rights,
        p.creds.as_ref(),
    );
    out
}

/// A written result, as written.
pub fn fmt_expect(c: &Call, e: &Expect) -> String {
    let mut out = match &e.value {
        ExpectValue::Is(v) => fmt_value(c, v, &[]),
        ExpectValue::Named(n) => n.join(", "),
        ExpectValue::Accepted(n, None) => n.clone(),
        ExpectValue::Accepted(n, Some(a)) => format!("{n} from {}", fmt_addr_out(a)),
        ExpectValue::Recv(p) => fmt_recv_pat(c, p),
    };
    fmt_suffix(&mut out, e.sigpipe, e.waited);
    out
}

/// One line in canonical form.
pub fn fmt_line(l: &Line) -> String {
    match &l.expect {
        None => fmt_call(&l.call),
        Some(e) => format!("{} -> {}", fmt_call(&l.call), fmt_expect(&l.call, e)),
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
