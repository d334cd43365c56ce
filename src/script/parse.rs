//! Parser for the script language (contract v2, which contains v1). Errors name line and column; nothing here
//! panics on any input.

use super::names::{INT_OPTS, IOCTLS, MSG_FLAGS, OPTS, TYPES};
use super::{
    Addr, AddrOut, Call, Creds, DataPat, Errno, Events, Expect, ExpectValue, FileKind, Flags, How,
    Line, MsgOut, OptVal, Payload, Pid, RecvPat, Script, SockOpt, SockSpec, Value,
};
use std::fmt;

/// Largest DATA value a script may spell (`"x" * N`), so a typo cannot exhaust memory.
pub const MAX_DATA: usize = 64 << 20;
/// Most DATA bytes a whole script may spell, so a short script cannot ask for gigabytes.
pub const MAX_SCRIPT_DATA: usize = 256 << 20;
/// Largest receive size.
pub const MAX_READ: usize = 16 << 20;
/// Largest ADDR / PATH literal.
pub const MAX_ADDR: usize = 4096;
/// Largest control buffer (`space=K`).
pub const MAX_SPACE: usize = 1 << 16;
/// Largest address buffer (`buf=N`).
pub const MAX_BUF: u32 = 4096;

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
    Ok(Script {
        lines: lines(text).collect::<Result<_, _>>()?,
    })
}

/// The calls of a script's text one at a time, checked as [`parse`] checks them, so that a long script can
/// be run without holding all its parsed lines (`udsim check` on a file). After the first error it yields
/// nothing more.
pub fn lines(text: &str) -> Lines<'_> {
    Lines {
        raw: text.split('\n'),
        line_no: 0,
        known: Default::default(),
        total: 0,
        failed: false,
    }
}

/// The iterator [`lines`] returns.
pub struct Lines<'a> {
    raw: std::str::Split<'a, char>,
    line_no: usize,
    known: std::collections::HashSet<String>,
    total: usize,
    failed: bool,
}

impl Lines<'_> {
    fn next_line(&mut self) -> Option<Result<Line, ParseError>> {
        loop {
            let raw = self.raw.next()?;
            self.line_no += 1;
            let i = self.line_no;
            let mut p = LineParser {
                s: raw.as_bytes(),
                pos: 0,
                line: i,
            };
            let line = match p.line() {
                Ok(Some(line)) => line,
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            };
            self.total += data_len(&line);
            if self.total > MAX_SCRIPT_DATA {
                return Some(Err(ParseError {
                    line: i,
                    col: 1,
                    msg: format!(
                        "the script spells more than {MAX_SCRIPT_DATA} bytes of data in all"
                    ),
                }));
            }
            for used in line.call.names() {
                if !self.known.contains(used) && !is_auto_name(used) {
                    return Some(Err(ParseError {
                        line: i,
                        col: find_word(raw, used).map_or(1, |c| c + 1),
                        msg: format!("unknown socket name `{used}` (no earlier line creates it)"),
                    }));
                }
            }
            if let Some(e) = &line.expect {
                for n in e.names() {
                    if !self.known.contains(n) {
                        self.known.insert(n.clone());
                    }
                }
            }
            return Some(Ok(line));
        }
    }
}

impl Iterator for Lines<'_> {
    type Item = Result<Line, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.next_line();
        self.failed = matches!(r, Some(Err(_)));
        r
    }
}

/// Column of `word` as a whole word in `line`.
fn find_word(line: &str, word: &str) -> Option<usize> {
    let b = line.as_bytes();
    let is_id = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    line.match_indices(word)
        .map(|(i, _)| i)
        .find(|&i| (i == 0 || !is_id(b[i - 1])) && b.get(i + word.len()).is_none_or(|&c| !is_id(c)))
}

/// DATA bytes a line holds (sent data and an expected received result).
fn data_len(l: &Line) -> usize {
    let call = l.call.data().map_or(0, <[u8]>::len);
    let result = match l.expect.as_ref().map(|e| &e.value) {
        Some(ExpectValue::Recv(RecvPat {
            data: DataPat::Exact(d),
            ..
        })) => d.len(),
        _ => 0,
    };
    call + result
}

/// `s0`, `s1`, …: names the checker gives new descriptors that have no name written.
pub fn is_auto_name(n: &str) -> bool {
    n.len() > 1 && n.starts_with('s') && n[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The private-directory rule: relative, and `..` never climbs above the directory.
pub fn stays_inside(path: &[u8]) -> bool {
    if path.first() == Some(&b'/') {
        return false;
    }
    let mut depth = 0i64;
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

struct LineParser<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

type R<T> = Result<T, ParseError>;
/// `key=N` options as written.
type Keywords = Vec<(String, i64)>;

impl LineParser<'_> {
    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(ParseError {
            line: self.line,
            col: self.pos + 1,
            msg: msg.into(),
        })
    }

    fn err_at<T>(&mut self, at: usize, msg: impl Into<String>) -> R<T> {
        self.pos = at;
        self.err(msg)
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

    /// Eats `word` only as a whole word (not the start of a longer identifier).
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_ws();
        let end = self.pos + word.len();
        let follows_id = self
            .s
            .get(end)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
        if self.s[self.pos..].starts_with(word.as_bytes()) && !follows_id {
            self.pos = end;
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
            return self.err_at(
                col,
                format!("`{n}` is not a socket name (names match [a-z_][a-z0-9_]*)"),
            );
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
            Err(_) => self.err_at(start, format!("expected an integer{}", self.found())),
        }
    }

    fn ranged(&mut self, what: &str, lo: i64, hi: i64) -> R<i64> {
        self.skip_ws();
        let start = self.pos;
        let v = self.integer()?;
        if v < lo || v > hi {
            return self.err_at(
                start,
                format!("{what} must be between {lo} and {hi}, got {v}"),
            );
        }
        Ok(v)
    }

    fn count(&mut self, what: &str, max: usize) -> R<usize> {
        Ok(self.ranged(what, 0, max.min(i64::MAX as usize) as i64)? as usize)
    }

    fn c_int(&mut self, what: &str) -> R<i32> {
        Ok(self.ranged(what, i32::MIN.into(), i32::MAX.into())? as i32)
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
                None => return self.err_at(open, "unterminated string literal"),
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
                return self.err_at(start, format!("{what} longer than {max} bytes"));
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

    fn check_inside(&mut self, at: usize, fs: &[u8]) -> R<()> {
        if stays_inside(fs) {
            Ok(())
        } else {
            self.err_at(
                at,
                "paths are relative to the script's private directory: no leading `/`, and `..` never above it",
            )
        }
    }

    /// PATH: relative to the script's private directory (a script must not reach, or unlink, anything
    /// outside it). The filesystem name ends at the first NUL.
    fn path(&mut self) -> R<Vec<u8>> {
        self.skip_ws();
        let at = self.pos;
        let a = self.bytes_expr("path", MAX_ADDR)?;
        let fs = a.split(|&b| b == 0).next().unwrap_or(&[]).to_vec();
        self.check_inside(at, &fs)?;
        Ok(a)
    }

    /// A symlink target: any string.
    fn target(&mut self) -> R<Vec<u8>> {
        self.bytes_expr("symlink target", MAX_ADDR)
    }

    /// `AF_UNIX`, `AF_UNSPEC`, `AF_INET` or a number.
    fn family(&mut self) -> R<i32> {
        self.skip_ws();
        if matches!(self.peek(), Some(b'0'..=b'9' | b'-' | b'+')) {
            return self.c_int("family");
        }
        let at = self.pos;
        let id = self.ident()?;
        match super::names::FAMILIES.iter().find(|f| f.0 == id) {
            Some(f) => Ok(f.1),
            None => self.err_at(
                at,
                format!("unknown address family `{id}` (AF_UNIX, AF_UNSPEC, AF_INET or a number)"),
            ),
        }
    }

    /// ADDR in a call: `"path"`, `@DATA`, `@autoN`, `unnamed`, `{family=F, path=DATA, len=N}`.
    fn addr(&mut self) -> R<Addr> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            Some(b'"') => {
                let a = self.path()?;
                Ok(Addr::Path(a))
            }
            Some(b'@') => {
                self.pos += 1;
                if self.eat_word_prefix("auto") {
                    let n = self.ranged("an autobind number", 1, u32::MAX.into())?;
                    return Ok(Addr::Auto(n as u32));
                }
                Ok(Addr::Abstract(self.bytes_expr("abstract name", MAX_ADDR)?))
            }
            Some(b'{') => {
                self.pos += 1;
                let (mut family, mut path, mut len) = (None, None, None);
                if !self.eat("}") {
                    loop {
                        self.skip_ws();
                        let fat = self.pos;
                        let key = self.ident()?;
                        self.expect("=")?;
                        match key.as_str() {
                            "family" if family.is_none() => family = Some(self.family()?),
                            "path" if path.is_none() => {
                                self.skip_ws();
                                let pat = self.pos;
                                let p = self.bytes_expr("path", MAX_ADDR)?;
                                if p.first() != Some(&0) {
                                    let fs = p.split(|&b| b == 0).next().unwrap_or(&[]).to_vec();
                                    self.check_inside(pat, &fs)?;
                                }
                                path = Some(p);
                            }
                            "len" if len.is_none() => {
                                len = Some(self.ranged("an address length", 0, u32::MAX.into())?
                                    as u32)
                            }
                            _ => {
                                return self.err_at(
                                    fat,
                                    format!("`{key}` is not a field of a raw address (or is given twice): family, path, len"),
                                )
                            }
                        }
                        if self.eat("}") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Addr::Raw { family, path, len })
            }
            _ => {
                if self.eat_word("unnamed") {
                    Ok(Addr::Unnamed)
                } else {
                    self.err_at(
                        at,
                        format!(
                            "expected an address (\"path\", @name, @autoN, unnamed or {{...}}){}",
                            self.found()
                        ),
                    )
                }
            }
        }
    }

    /// `auto` directly followed by a digit (so `@auto` alone is not taken for it).
    fn eat_word_prefix(&mut self, word: &str) -> bool {
        let end = self.pos + word.len();
        if self.s[self.pos..].starts_with(word.as_bytes())
            && self.s.get(end).is_some_and(u8::is_ascii_digit)
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    /// FLAGS: `0`, names joined by `|`, numbers among them.
    fn flags(&mut self) -> R<Flags> {
        let mut bits = 0u32;
        loop {
            self.skip_ws();
            let at = self.pos;
            if matches!(self.peek(), Some(b'0'..=b'9')) {
                bits |= self.ranged("a flags value", 0, u32::MAX.into())? as u32;
            } else {
                let id = self.ident()?;
                match MSG_FLAGS.iter().find(|f| f.0 == id) {
                    Some(f) => bits |= f.1,
                    None => {
                        return self.err_at(
                            at,
                            format!("unknown flag `{id}` (MSG_ names, numbers, or 0)"),
                        )
                    }
                }
            }
            if !self.eat("|") {
                return Ok(Flags(bits));
            }
        }
    }

    fn creds(&mut self) -> R<Creds> {
        self.expect("{")?;
        let mut pid = None;
        let mut uid = None;
        let mut gid = None;
        loop {
            self.skip_ws();
            let at = self.pos;
            let key = self.ident()?;
            self.expect("=")?;
            match key.as_str() {
                "pid" if pid.is_none() => {
                    pid = Some(if self.eat_word("SELF") {
                        Pid::Own
                    } else {
                        Pid::Num(self.integer()?)
                    })
                }
                "uid" if uid.is_none() => uid = Some(self.integer()?),
                "gid" if gid.is_none() => gid = Some(self.integer()?),
                _ => {
                    return self.err_at(
                        at,
                        format!(
                            "`{key}` is not a credentials field (or is given twice): pid, uid, gid"
                        ),
                    )
                }
            }
            if self.eat("}") {
                break;
            }
            self.expect(",")?;
        }
        match (pid, uid, gid) {
            (Some(pid), Some(uid), Some(gid)) => Ok(Creds { pid, uid, gid }),
            _ => self.err("credentials need all three fields: {pid=P, uid=U, gid=G}"),
        }
    }

    fn name_list(&mut self) -> R<Vec<String>> {
        self.expect("[")?;
        let mut v = Vec::new();
        if self.eat("]") {
            return Ok(v);
        }
        loop {
            v.push(self.name()?);
            if self.eat("]") {
                return Ok(v);
            }
            self.expect(",")?;
        }
    }

    fn sock_spec(&mut self) -> R<SockSpec> {
        self.skip_ws();
        let at = self.pos;
        let ty = if matches!(self.peek(), Some(b'0'..=b'9' | b'-' | b'+')) {
            self.c_int("socket type")?
        } else {
            let id = self.ident()?;
            let bare = id.strip_prefix("SOCK_").unwrap_or(&id);
            match TYPES.iter().find(|t| t.0 == bare) {
                Some(t) => t.1,
                None => {
                    return self.err_at(
                        at,
                        format!("unknown socket type `{id}` (STREAM, DGRAM, SEQPACKET, RAW, RDM, PACKET or a number)"),
                    )
                }
            }
        };
        let mut spec = SockSpec::of(ty);
        while self.eat(",") {
            self.skip_ws();
            let at = self.pos;
            if self.eat_word("BLOCKING") && !spec.blocking {
                spec.blocking = true;
            } else if self.eat_word("protocol") && spec.protocol.is_none() {
                self.expect("=")?;
                spec.protocol = Some(self.c_int("protocol")?);
            } else {
                return self.err_at(
                    at,
                    "socket options are BLOCKING and protocol=N, each at most once",
                );
            }
        }
        Ok(spec)
    }

    fn opt(&mut self) -> R<SockOpt> {
        self.skip_ws();
        let at = self.pos;
        if matches!(self.peek(), Some(b'0'..=b'9' | b'-' | b'+')) {
            let n = self.c_int("option")?;
            let o = SockOpt(n);
            if OPTS.iter().any(|t| t.1 == o) || INT_OPTS.contains(&n) {
                return Ok(o);
            }
            return self.err_at(
                at,
                format!("option {n} is neither one of the contract's options nor int-valued"),
            );
        }
        let id = self.ident()?;
        match OPTS.iter().find(|t| t.0 == id) {
            Some(t) => Ok(t.1),
            None => self.err_at(at, format!("unknown socket option `{id}`")),
        }
    }

    /// A duration `Nms`, if one is here.
    fn duration(&mut self) -> R<Option<u64>> {
        self.skip_ws();
        let start = self.pos;
        let mut end = start;
        while self.s.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end > start && self.s[end..].starts_with(b"ms") {
            let txt = std::str::from_utf8(&self.s[start..end]).unwrap_or("");
            match txt.parse::<u64>() {
                Ok(v) if v <= 1 << 40 => {
                    self.pos = end + 2;
                    Ok(Some(v))
                }
                _ => self.err("duration out of range"),
            }
        } else {
            Ok(None)
        }
    }

    fn opt_val(&mut self, o: SockOpt) -> R<OptVal> {
        self.skip_ws();
        let at = self.pos;
        if let Some(ms) = self.duration()? {
            if !o.is_timeout() {
                return self.err_at(at, "only SO_RCVTIMEO and SO_SNDTIMEO take a duration");
            }
            if ms != 0 && !(20..=1000).contains(&ms) {
                return self.err_at(at, "SO_RCVTIMEO and SO_SNDTIMEO take 0ms or 20ms to 1000ms");
            }
            return Ok(OptVal::Ms(ms));
        }
        if o.is_timeout() {
            return self.err_at(
                at,
                "SO_RCVTIMEO and SO_SNDTIMEO take a duration (e.g. 100ms)",
            );
        }
        Ok(OptVal::Int(self.integer()?))
    }

    fn mode(&mut self) -> R<u32> {
        self.skip_ws();
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let txt = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        match u32::from_str_radix(txt, 8) {
            Ok(m) if m <= 0o7777 => Ok(m),
            _ => self.err_at(start, "a mode is octal, at most 7777 (e.g. 0755)"),
        }
    }

    fn comma(&mut self) -> R<()> {
        self.expect(",")
    }

    /// `, key=N` options after the positional arguments (`buf=`, `space=`), each at most once.
    fn keywords(&mut self, allowed: &[&str]) -> R<Keywords> {
        let mut v: Keywords = Vec::new();
        while self.eat(",") {
            self.skip_ws();
            let at = self.pos;
            let key = self.ident()?;
            if !allowed.contains(&key.as_str()) || v.iter().any(|(k, _)| *k == key) {
                return self.err_at(
                    at,
                    format!(
                        "expected one of {} (each at most once)",
                        allowed.join("=, ") + "="
                    ),
                );
            }
            self.expect("=")?;
            let n = match key.as_str() {
                "space" => self.count("a control buffer size", MAX_SPACE)? as i64,
                _ => self.ranged("a buffer size", 0, MAX_BUF.into())?,
            };
            v.push((key, n));
        }
        Ok(v)
    }

    /// Optional FLAGS then keyword options: `recvfrom(S, N [, FLAGS] [, buf=K])`.
    fn flags_then_keywords(&mut self, allowed: &[&str]) -> R<(Option<Flags>, Keywords)> {
        let save = self.pos;
        let mut flags = None;
        if self.eat(",") {
            self.skip_ws();
            let kw = allowed.iter().any(|k| {
                self.s[self.pos..].starts_with(k.as_bytes())
                    && self.s[self.pos + k.len()..]
                        .iter()
                        .find(|b| **b != b' ')
                        .is_some_and(|b| *b == b'=')
            });
            if kw {
                self.pos = save;
            } else {
                flags = Some(self.flags()?);
            }
        }
        Ok((flags, self.keywords(allowed)?))
    }

    fn line(&mut self) -> R<Option<Line>> {
        if self.at_end() {
            return Ok(None);
        }
        let col = self.pos;
        let func = self.ident()?;
        self.expect("(")?;
        let call = match func.as_str() {
            "socket" => Call::Socket(self.sock_spec()?),
            "socketpair" => Call::Socketpair(self.sock_spec()?),
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
                Call::Listen(s, self.c_int("backlog")?)
            }
            "accept" => {
                let s = self.name()?;
                let save = self.pos;
                let mut blocking = false;
                if self.eat(",") {
                    if self.eat_word("BLOCKING") {
                        blocking = true;
                    } else {
                        self.pos = save;
                    }
                }
                let kw = self.keywords(&["buf"])?;
                Call::Accept(s, blocking, kw.first().map(|k| k.1 as u32))
            }
            "dup" => Call::Dup(self.name()?),
            "nonblock" => {
                let s = self.name()?;
                self.comma()?;
                Call::Nonblock(s, self.ranged("nonblock", 0, 1)? == 1)
            }
            "write" => {
                let s = self.name()?;
                self.comma()?;
                Call::Write(s, self.bytes_expr("data", MAX_DATA)?.into())
            }
            "read" => {
                let s = self.name()?;
                self.comma()?;
                Call::Read(s, self.count("read size", MAX_READ)?)
            }
            "send" => {
                let s = self.name()?;
                self.comma()?;
                let d: Payload = self.bytes_expr("data", MAX_DATA)?.into();
                self.comma()?;
                Call::Send(s, d, self.flags()?)
            }
            "sendto" => {
                let s = self.name()?;
                self.comma()?;
                let d: Payload = self.bytes_expr("data", MAX_DATA)?.into();
                self.comma()?;
                let a = self.addr()?;
                let f = if self.eat(",") {
                    Some(self.flags()?)
                } else {
                    None
                };
                Call::SendTo(s, d, a, f)
            }
            "sendmsg" => {
                let s = self.name()?;
                self.comma()?;
                let d: Payload = self.bytes_expr("data", MAX_DATA)?.into();
                let mut m = MsgOut::default();
                while self.eat(",") {
                    self.skip_ws();
                    let at = self.pos;
                    let key = self.ident()?;
                    self.expect("=")?;
                    match key.as_str() {
                        "to" if m.to.is_none() => m.to = Some(self.addr()?),
                        "rights" if m.rights.is_none() => m.rights = Some(self.name_list()?),
                        "creds" if m.creds.is_none() => m.creds = Some(self.creds()?),
                        "flags" if m.flags.is_none() => m.flags = Some(self.flags()?),
                        _ => {
                            return self.err_at(
                                at,
                                format!("`{key}` is not a sendmsg field (or is given twice): to, rights, creds, flags"),
                            )
                        }
                    }
                }
                Call::SendMsg(s, d, m)
            }
            "recv" => {
                let s = self.name()?;
                self.comma()?;
                let n = self.count("receive size", MAX_READ)?;
                self.comma()?;
                Call::Recv(s, n, self.flags()?)
            }
            "recvfrom" => {
                let s = self.name()?;
                self.comma()?;
                let n = self.count("receive size", MAX_READ)?;
                let (f, kw) = self.flags_then_keywords(&["buf"])?;
                Call::RecvFrom(s, n, f, kw.first().map(|k| k.1 as u32))
            }
            "recvmsg" => {
                let s = self.name()?;
                self.comma()?;
                let n = self.count("receive size", MAX_READ)?;
                let (f, kw) = self.flags_then_keywords(&["space", "buf"])?;
                let get = |k: &str| kw.iter().find(|e| e.0 == k).map(|e| e.1);
                Call::RecvMsg(
                    s,
                    n,
                    f,
                    get("space").map(|v| v as usize),
                    get("buf").map(|v| v as u32),
                )
            }
            "shutdown" => {
                let s = self.name()?;
                self.comma()?;
                self.skip_ws();
                let at = self.pos;
                let how = if matches!(self.peek(), Some(b'0'..=b'9' | b'-' | b'+')) {
                    How(self.c_int("shutdown direction")?)
                } else {
                    match self.ident()?.as_str() {
                        "RD" => How::RD,
                        "WR" => How::WR,
                        "RDWR" => How::RDWR,
                        other => {
                            return self.err_at(
                                at,
                                format!("shutdown takes RD, WR, RDWR or an integer, not `{other}`"),
                            )
                        }
                    }
                };
                Call::Shutdown(s, how)
            }
            "close" => Call::Close(self.name()?),
            "getsockname" | "getpeername" => {
                let s = self.name()?;
                let kw = self.keywords(&["buf"])?;
                let buf = kw.first().map(|k| k.1 as u32);
                if func == "getsockname" {
                    Call::GetSockName(s, buf)
                } else {
                    Call::GetPeerName(s, buf)
                }
            }
            "poll" => Call::Poll(self.name()?),
            "getsockopt" => {
                let s = self.name()?;
                self.comma()?;
                Call::GetSockOpt(s, self.opt()?)
            }
            "setsockopt" => {
                let s = self.name()?;
                self.comma()?;
                self.skip_ws();
                let at = self.pos;
                let o = self.opt()?;
                if o.unsettable() {
                    return self.err_at(
                        at,
                        "setting SO_PASSPIDFD or SO_PASSSEC is not expressible (they would install descriptors no rule names)",
                    );
                }
                self.comma()?;
                Call::SetSockOpt(s, o, self.opt_val(o)?)
            }
            "ioctl" => {
                let s = self.name()?;
                self.comma()?;
                self.skip_ws();
                let at = self.pos;
                let id = self.ident()?;
                match IOCTLS.iter().find(|t| t.0 == id) {
                    Some(t) => Call::Ioctl(s, t.1),
                    None => {
                        return self.err_at(
                            at,
                            format!("unknown ioctl `{id}` (SIOCINQ, SIOCOUTQ, SIOCATMARK)"),
                        )
                    }
                }
            }
            "unlink" => Call::Unlink(self.path()?),
            "mkdir" => Call::Mkdir(self.path()?),
            "mkfile" => Call::Mkfile(self.path()?),
            "stat" => Call::Stat(self.path()?),
            "symlink" => {
                let t = self.target()?;
                self.comma()?;
                Call::Symlink(t, self.path()?)
            }
            "link" | "rename" => {
                let a = self.path()?;
                self.comma()?;
                let b = self.path()?;
                if func == "link" {
                    Call::Link(a, b)
                } else {
                    Call::Rename(a, b)
                }
            }
            "chmod" => {
                let p = self.path()?;
                self.comma()?;
                Call::Chmod(p, self.mode()?)
            }
            "setcred" => {
                let u = self.ranged("uid", 0, u32::MAX.into())? as u32;
                self.comma()?;
                let g = self.ranged("gid", 0, u32::MAX.into())? as u32;
                Call::Setcred(u, g)
            }
            other => return self.err_at(col, format!("unknown call `{other}`")),
        };
        self.expect(")")?;
        let expect = if self.eat("->") {
            Some(self.result(&call)?)
        } else {
            None
        };
        if !self.at_end() {
            return self.err(format!("unexpected text after the result{}", self.found()));
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
            None => self.err_at(at, format!("unknown errno `{id}`")),
        }
    }

    /// `with SIGPIPE` and `after timeout`, in either order.
    fn suffix(&mut self, e: &mut Expect) -> R<()> {
        loop {
            if self.eat_word("with") {
                if !self.eat_word("SIGPIPE") {
                    return self.err(format!("expected `SIGPIPE` after `with`{}", self.found()));
                }
                e.sigpipe = true;
            } else if self.eat_word("after") {
                if !self.eat_word("timeout") {
                    return self.err(format!("expected `timeout` after `after`{}", self.found()));
                }
                e.waited = true;
            } else {
                return Ok(());
            }
        }
    }

    fn result(&mut self, call: &Call) -> R<Expect> {
        let mut e = if let Some(err) = self.errno(matches!(call, Call::Poll(_)))? {
            Expect::is(Value::Err(err))
        } else {
            Expect::plain(self.value(call)?)
        };
        self.suffix(&mut e)?;
        Ok(e)
    }

    /// A returned address: `"P"`, `@autoN`, `@"N"`, `unnamed`, `{path=COPIED, len=RETURNED}`.
    fn addr_out(&mut self) -> R<AddrOut> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            Some(b'"') => {
                let p = self.bytes_expr("address", MAX_ADDR)?;
                Ok(match p.first() {
                    // v1 spelled returned abstract names as their raw sun_path bytes, leading NUL included.
                    Some(0) => AddrOut::Raw {
                        len: 2 + p.len() as u32,
                        path: p,
                    },
                    Some(_) => AddrOut::path(&p),
                    None => AddrOut::abstract_name(b""),
                })
            }
            Some(b'@') => {
                self.pos += 1;
                if self.eat_word_prefix("auto") {
                    let n = self.ranged("an autobind number", 1, u32::MAX.into())?;
                    return Ok(AddrOut::Auto(n as u32));
                }
                Ok(AddrOut::abstract_name(
                    &self.bytes_expr("abstract name", MAX_ADDR)?,
                ))
            }
            Some(b'{') => {
                self.pos += 1;
                self.skip_ws();
                if !self.eat_word("path") {
                    return self.err("a returned address is {path=COPIED, len=RETURNED}");
                }
                self.expect("=")?;
                let path = self.bytes_expr("address", MAX_ADDR)?;
                self.comma()?;
                if !self.eat_word("len") {
                    return self.err("a returned address is {path=COPIED, len=RETURNED}");
                }
                self.expect("=")?;
                let len = self.ranged("an address length", 0, u32::MAX.into())? as u32;
                self.expect("}")?;
                Ok(AddrOut::Raw { path, len })
            }
            _ if self.eat_word("unnamed") => Ok(AddrOut::unnamed()),
            _ => self.err_at(
                at,
                format!("expected an address, `unnamed` or an errno{}", self.found()),
            ),
        }
    }

    fn recv_pat(&mut self, call: &Call) -> R<RecvPat> {
        self.skip_ws();
        let data = if self.eat("<") {
            let n = self.count("byte count", MAX_READ)?;
            if !self.eat_word("bytes") {
                return self.err(format!("expected `bytes`{}", self.found()));
            }
            self.expect(">")?;
            DataPat::Len(n)
        } else {
            DataPat::Exact(self.bytes_expr("data", MAX_READ)?)
        };
        let ret = if self.eat("(") {
            let r = self.count("a return value", usize::MAX >> 1)?;
            self.expect(")")?;
            Some(r)
        } else {
            None
        };
        let mut p = RecvPat {
            data,
            ret,
            from: None,
            flags: 0,
            rights: Vec::new(),
            creds: None,
        };
        if matches!(call, Call::RecvFrom(..) | Call::RecvMsg(..)) {
            if !self.eat_word("from") {
                return self.err(format!(
                    "a {} result names its sender: `from ADDR` or `from none`{}",
                    call.kind().name(),
                    self.found()
                ));
            }
            p.from = Some(if self.eat_word("none") {
                AddrOut::NONE
            } else {
                self.addr_out()?
            });
        }
        if matches!(call, Call::RecvMsg(..)) {
            if self.eat_word("flags") {
                self.expect("=")?;
                p.flags = self.flags()?.0;
            }
            if self.eat_word("rights") {
                self.expect("=")?;
                p.rights = self.name_list()?;
            }
            if self.eat_word("creds") {
                self.expect("=")?;
                p.creds = Some(self.creds()?);
            }
        }
        Ok(p)
    }

    fn value(&mut self, call: &Call) -> R<ExpectValue> {
        self.skip_ws();
        let at = self.pos;
        let v = match call {
            Call::Socket(_) | Call::Dup(_) => ExpectValue::Named(vec![self.name()?]),
            Call::Socketpair(_) => {
                let a = self.name()?;
                self.comma()?;
                ExpectValue::Named(vec![a, self.name()?])
            }
            Call::Accept(..) => {
                let n = self.name()?;
                let from = if self.eat_word("from") {
                    Some(self.addr_out()?)
                } else {
                    None
                };
                ExpectValue::Accepted(n, from)
            }
            Call::Write(..) | Call::Send(..) | Call::SendTo(..) | Call::SendMsg(..) => {
                ExpectValue::Is(Value::Wrote(self.count("byte count", usize::MAX >> 1)?))
            }
            Call::Read(..) | Call::Recv(..) | Call::RecvFrom(..) | Call::RecvMsg(..) => {
                ExpectValue::Recv(self.recv_pat(call)?)
            }
            Call::GetSockName(..) | Call::GetPeerName(..) => {
                ExpectValue::Is(Value::Addr(self.addr_out()?))
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
                                return self.err_at(
                                    at,
                                    format!("unknown poll flag `{id}` (flags: IN PRI OUT ERR HUP RDHUP NVAL, or 0)"),
                                )
                            }
                        }
                    }
                    if !self.eat("|") {
                        break;
                    }
                }
                ExpectValue::Is(Value::Ready(ev))
            }
            Call::GetSockOpt(..) => {
                if self.peek() == Some(b'{') {
                    let save = self.pos;
                    self.pos += 1;
                    if self.eat_word("error") {
                        self.expect("=")?;
                        let eat = self.pos;
                        match self.errno(false)? {
                            Some(e) => {
                                self.expect("}")?;
                                ExpectValue::Is(Value::SoError(e))
                            }
                            None => return self.err_at(eat, "expected an errno name"),
                        }
                    } else {
                        self.pos = save;
                        ExpectValue::Is(Value::Cred(self.creds()?))
                    }
                } else if let Some(ms) = self.duration()? {
                    ExpectValue::Is(Value::Ms(ms))
                } else {
                    ExpectValue::Is(Value::Int(self.integer()?))
                }
            }
            Call::Ioctl(..) => ExpectValue::Is(Value::Int(self.integer()?)),
            Call::Stat(_) => {
                let kat = self.pos;
                let k = self.ident()?;
                let Some(&(_, kind)) = FileKind::NAMES.iter().find(|(n, _)| *n == k) else {
                    return self.err_at(
                        kat,
                        format!(
                            "unknown file type `{k}` (socket, file, dir, symlink, fifo, chr, blk)"
                        ),
                    );
                };
                ExpectValue::Is(Value::Stat(kind, self.mode()?))
            }
            _ => {
                if self.integer().ok() == Some(0) {
                    ExpectValue::Is(Value::Ok)
                } else {
                    return self.err_at(at, "expected `0` or an errno");
                }
            }
        };
        Ok(v)
    }
}
