//! Parser for the script language. Errors name line and column; nothing here panics on any input.

use super::{Call, Errno, Events, Expect, How, Line, Outcome, Script};
use std::fmt;

/// Largest DATA value a script may spell (`"x" * N`), so a typo cannot exhaust memory.
pub const MAX_DATA: usize = 64 << 20;
/// Most DATA bytes a whole script may spell, so a short script cannot ask for gigabytes.
pub const MAX_SCRIPT_DATA: usize = 256 << 20;
/// Largest `read` size.
pub const MAX_READ: usize = 16 << 20;
/// Largest ADDR / PATH literal.
pub const MAX_ADDR: usize = 4096;

/// A script error with its position (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.col, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole script. Names are checked statically: a name used before any line could have created it
/// is an error (automatic names `sN` are checked when the script runs, since they depend on outcomes).
pub fn parse(text: &str) -> Result<Script, ParseError> {
    let mut lines = Vec::new();
    let mut known: std::collections::HashSet<String> = Default::default();
    let mut total = 0usize;
    for (i, raw) in text.split('\n').enumerate() {
        let mut p = LineParser {
            s: raw.as_bytes(),
            pos: 0,
            line: i + 1,
        };
        if let Some(line) = p.line()? {
            total += data_len(&line);
            if total > MAX_SCRIPT_DATA {
                return Err(ParseError {
                    line: i + 1,
                    col: 1,
                    msg: format!(
                        "the script spells more than {MAX_SCRIPT_DATA} bytes of data in all"
                    ),
                });
            }
            if let Some(subject) = line.call.subject() {
                if !known.contains(subject) && !is_auto_name(subject) {
                    return Err(ParseError {
                        line: i + 1,
                        col: raw.find(subject.as_str()).map_or(1, |c| c + 1),
                        msg: format!(
                            "unknown socket name `{subject}` (no earlier line creates it)"
                        ),
                    });
                }
            }
            if let Some(Expect::Named(n)) = &line.expect {
                known.insert(n.clone());
            }
            lines.push(line);
        }
    }
    Ok(Script { lines })
}

/// DATA bytes a line holds (written data and an expected read result).
fn data_len(l: &Line) -> usize {
    let call = match &l.call {
        Call::Write(_, d) => d.len(),
        _ => 0,
    };
    let result = match &l.expect {
        Some(Expect::Is(Outcome::Data(d))) => d.len(),
        _ => 0,
    };
    call + result
}

/// `s0`, `s1`, …: names the checker gives creating calls that have no result written.
pub fn is_auto_name(n: &str) -> bool {
    n.len() > 1 && n.starts_with('s') && n[1..].bytes().all(|b| b.is_ascii_digit())
}

struct LineParser<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

type R<T> = Result<T, ParseError>;

impl LineParser<'_> {
    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(ParseError {
            line: self.line,
            col: self.pos + 1,
            msg: msg.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        matches!(self.peek(), None | Some(b'#'))
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(tok.as_bytes()) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &str) -> R<()> {
        if self.eat(tok) {
            Ok(())
        } else {
            self.err(format!("expected `{tok}`{}", self.found()))
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            None => ", found end of line".into(),
            Some(b) if b.is_ascii_graphic() => format!(", found `{}`", b as char),
            Some(b) => format!(", found byte 0x{b:02x}"),
        }
    }

    fn ident(&mut self) -> R<String> {
        self.skip_ws();
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_')
        ) {
            self.pos += 1;
        }
        if start == self.pos {
            return self.err(format!("expected a name{}", self.found()));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn name(&mut self) -> R<String> {
        self.skip_ws();
        let col = self.pos;
        let n = self.ident()?;
        let b = n.as_bytes();
        let ok = (b[0].is_ascii_lowercase() || b[0] == b'_')
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
        if !ok {
            self.pos = col;
            return self.err(format!(
                "`{n}` is not a socket name (names match [a-z_][a-z0-9_]*)"
            ));
        }
        Ok(n)
    }

    fn integer(&mut self) -> R<i64> {
        self.skip_ws();
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let txt = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        match txt.parse::<i64>() {
            Ok(v) => Ok(v),
            Err(_) => {
                self.pos = start;
                self.err(format!("expected an integer{}", self.found()))
            }
        }
    }

    fn count(&mut self, what: &str, max: usize) -> R<usize> {
        self.skip_ws();
        let start = self.pos;
        let v = self.integer()?;
        if v < 0 || v as u64 > max as u64 {
            self.pos = start;
            return self.err(format!("{what} must be between 0 and {max}, got {v}"));
        }
        Ok(v as usize)
    }

    /// A string literal with escapes `\\ \" \n \r \t \0 \xNN`.
    fn literal(&mut self) -> R<Vec<u8>> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return self.err(format!("expected a string literal{}", self.found()));
        }
        let open = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => {
                    self.pos = open;
                    return self.err("unterminated string literal");
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let b = match self.peek() {
                        Some(b'\\') => b'\\',
                        Some(b'"') => b'"',
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'0') => 0,
                        Some(b'x') => {
                            let hex = self.s.get(self.pos + 1..self.pos + 3);
                            let v = hex
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u8::from_str_radix(h, 16).ok());
                            match v {
                                Some(v) => {
                                    self.pos += 2;
                                    v
                                }
                                None => return self.err("`\\x` needs two hex digits"),
                            }
                        }
                        _ => return self.err(format!("unknown escape{}", self.found())),
                    };
                    self.pos += 1;
                    out.push(b);
                }
                Some(b) => {
                    self.pos += 1;
                    out.push(b);
                }
            }
        }
    }

    /// `"ab" * 3 + "c"`: literals, each optionally repeated, joined by `+`.
    fn bytes_expr(&mut self, what: &str, max: usize) -> R<Vec<u8>> {
        self.skip_ws();
        let start = self.pos;
        let mut out = Vec::new();
        loop {
            let lit = self.literal()?;
            let reps = if self.eat("*") {
                self.count("a repeat count", max)?
            } else {
                1
            };
            if lit.len().saturating_mul(reps).saturating_add(out.len()) > max {
                self.pos = start;
                return self.err(format!("{what} longer than {max} bytes"));
            }
            match lit.as_slice() {
                [b] => out.resize(out.len() + reps, *b),
                _ => out.extend_from_slice(&lit.repeat(reps)),
            }
            if !self.eat("+") {
                return Ok(out);
            }
        }
    }

    /// ADDR / PATH: relative to the script's private directory, so `/…` and `..` are refused (a script must
    /// not reach, or unlink, anything outside its own directory).
    fn addr(&mut self) -> R<Vec<u8>> {
        self.skip_ws();
        let at = self.pos;
        let a = self.bytes_expr("address", MAX_ADDR)?;
        let path = a.split(|&b| b == 0).next().unwrap_or(&[]);
        if path.first() == Some(&b'/') || path.split(|&b| b == b'/').any(|c| c == b"..") {
            self.pos = at;
            return self.err(
                "paths are relative to the script's private directory: no leading `/`, no `..`",
            );
        }
        Ok(a)
    }

    fn comma(&mut self) -> R<()> {
        self.expect(",")
    }

    fn line(&mut self) -> R<Option<Line>> {
        if self.at_end() {
            return Ok(None);
        }
        let col = self.pos;
        let func = self.ident()?;
        self.expect("(")?;
        let call = match func.as_str() {
            "socket" => {
                self.skip_ws();
                let at = self.pos;
                let ty = self.ident()?;
                if ty != "STREAM" {
                    self.pos = at;
                    return self.err(format!(
                        "socket type `{ty}` is not supported (version 1 has STREAM)"
                    ));
                }
                Call::Socket
            }
            "bind" => {
                let s = self.name()?;
                self.comma()?;
                Call::Bind(s, self.addr()?)
            }
            "connect" => {
                let s = self.name()?;
                self.comma()?;
                Call::Connect(s, self.addr()?)
            }
            "listen" => {
                let s = self.name()?;
                self.comma()?;
                self.skip_ws();
                let at = self.pos;
                let n = self.integer()?;
                let Ok(n) = i32::try_from(n) else {
                    self.pos = at;
                    return self.err(format!("backlog {n} does not fit a C int"));
                };
                Call::Listen(s, n)
            }
            "accept" => Call::Accept(self.name()?),
            "write" => {
                let s = self.name()?;
                self.comma()?;
                Call::Write(s, self.bytes_expr("data", MAX_DATA)?)
            }
            "read" => {
                let s = self.name()?;
                self.comma()?;
                Call::Read(s, self.count("read size", MAX_READ)?)
            }
            "shutdown" => {
                let s = self.name()?;
                self.comma()?;
                self.skip_ws();
                let at = self.pos;
                let how = match self.ident()?.as_str() {
                    "RD" => How::Rd,
                    "WR" => How::Wr,
                    "RDWR" => How::RdWr,
                    other => {
                        self.pos = at;
                        return self.err(format!("shutdown takes RD, WR or RDWR, not `{other}`"));
                    }
                };
                Call::Shutdown(s, how)
            }
            "close" => Call::Close(self.name()?),
            "unlink" => Call::Unlink(self.addr()?),
            "getsockname" => Call::GetSockName(self.name()?),
            "getpeername" => Call::GetPeerName(self.name()?),
            "poll" => Call::Poll(self.name()?),
            other => {
                self.pos = col;
                return self.err(format!("unknown call `{other}`"));
            }
        };
        self.expect(")")?;
        let expect = if self.eat("->") {
            Some(self.result(&call)?)
        } else {
            None
        };
        if !self.at_end() {
            return self.err(format!("unexpected text after the call{}", self.found()));
        }
        Ok(Some(Line {
            call,
            expect,
            line_no: self.line,
        }))
    }

    /// An errno name, if the result is one. For poll, `ERR` is a flag, so an unknown `E…` word is left for
    /// the flag parser.
    fn errno(&mut self, poll: bool) -> R<Option<Errno>> {
        self.skip_ws();
        if self.peek() != Some(b'E') {
            return Ok(None);
        }
        let at = self.pos;
        let id = self.ident()?;
        match Errno::from_name(&id) {
            Some(e) => Ok(Some(e)),
            None if poll => {
                self.pos = at;
                Ok(None)
            }
            None => {
                self.pos = at;
                self.err(format!("unknown errno `{id}`"))
            }
        }
    }

    fn result(&mut self, call: &Call) -> R<Expect> {
        if let Some(e) = self.errno(matches!(call, Call::Poll(_)))? {
            return Ok(Expect::Is(Outcome::Err(e)));
        }
        self.skip_ws();
        let at = self.pos;
        let r = match call {
            Call::Socket | Call::Accept(_) => Expect::Named(self.name()?),
            Call::Write(..) => {
                Expect::Is(Outcome::Wrote(self.count("byte count", usize::MAX >> 1)?))
            }
            Call::Read(..) => {
                if self.eat("<") {
                    let n = self.count("byte count", MAX_READ)?;
                    self.expect("bytes")?;
                    self.expect(">")?;
                    Expect::Bytes(n)
                } else {
                    Expect::Is(Outcome::Data(self.bytes_expr("data", MAX_READ)?))
                }
            }
            Call::GetSockName(_) | Call::GetPeerName(_) => {
                if self.peek() == Some(b'"') {
                    Expect::Is(Outcome::Addr(Some(self.addr()?)))
                } else if self.ident()? == "unnamed" {
                    Expect::Is(Outcome::Addr(None))
                } else {
                    self.pos = at;
                    return self.err("expected an address, `unnamed` or an errno");
                }
            }
            Call::Poll(_) => {
                let mut ev = Events::NONE;
                loop {
                    self.skip_ws();
                    let at = self.pos;
                    if self.peek() == Some(b'0') {
                        self.pos += 1;
                    } else {
                        let id = self.ident()?;
                        match Events::NAMES.iter().find(|(n, _)| *n == id) {
                            Some((_, f)) => ev |= *f,
                            None => {
                                self.pos = at;
                                return self.err(format!(
                                    "unknown poll flag `{id}` (flags: IN PRI OUT ERR HUP RDHUP NVAL, or 0)"
                                ));
                            }
                        }
                    }
                    if !self.eat("|") {
                        break;
                    }
                }
                Expect::Is(Outcome::Ready(ev))
            }
            _ => {
                if self.integer().ok() == Some(0) {
                    Expect::Is(Outcome::Ok)
                } else {
                    self.pos = at;
                    return self.err("expected `0` or an errno");
                }
            }
        };
        Ok(r)
    }
}
