//! `udsim check --bless`: a script file rewritten in place with the kernel's results written in.

use crate::check::{recorded_line, Run};
use std::io::Write;
use std::path::Path;

/// Where the comment of a script line starts: the first `#` outside a string literal (escapes `\"` and
/// `\\` inside literals, as the parser reads them).
fn comment_start(line: &str) -> Option<usize> {
    let mut in_str = false;
    let mut escaped = false;
    for (i, b) in line.bytes().enumerate() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
        } else if b == b'"' {
            in_str = true;
        } else if b == b'#' {
            return Some(i);
        }
    }
    None
}

/// `text` with each line the kernel's outcome does not satisfy (a wrong written result, or none) replaced by
/// the line with the kernel's result written in, as `--record` prints it; everything else (comments, blank
/// lines, lines whose written result holds, the indentation and trailing comment of a rewritten line, line
/// ends) is kept byte for byte. `run` must be a record-mode run of `text`. Returns the new text and how many
/// lines were rewritten.
pub fn rewrite(text: &str, run: &Run) -> (String, usize) {
    let mut by_line = std::collections::HashMap::new();
    for st in &run.steps {
        let holds = st
            .line
            .expect
            .as_ref()
            .is_some_and(|e| e.admits(&st.kernel));
        if !holds {
            by_line.insert(st.line.line_no, recorded_line(st));
        }
    }
    let mut out = String::with_capacity(text.len() + 64 * by_line.len());
    let mut n = 0;
    // The parser numbers lines by '\n' from 1; '\r' before it is whitespace to the parser and kept here.
    for (i, raw) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let Some(new) = by_line.get(&(i + 1)) else {
            out.push_str(raw);
            continue;
        };
        n += 1;
        let (body, cr) = match raw.strip_suffix('\r') {
            Some(b) => (b, "\r"),
            None => (raw, ""),
        };
        let indent = &body[..body.len() - body.trim_start().len()];
        out.push_str(indent);
        out.push_str(new);
        if let Some(c) = comment_start(body) {
            let code = &body[..c];
            let gap = &code[code.trim_end().len()..];
            out.push_str(if gap.is_empty() { " " } else { gap });
            out.push_str(&body[c..]);
        }
        out.push_str(cr);
    }
    (out, n)
}

/// Replaces the file at `path` by `text` atomically: a temporary file in the same directory, with the old
/// file's permissions, synced, then renamed over it (a symlink is followed: its target is rewritten).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let perms = std::fs::metadata(&target)?.permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".udsim-bless-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().set_permissions(perms)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::comment_start;

    #[test]
    fn comments_start_outside_string_literals() {
        assert_eq!(comment_start("write(a, \"#x\") -> 2 # c"), Some(20));
        assert_eq!(comment_start("write(a, \"\\\"#\") -> 2"), None);
        assert_eq!(comment_start("write(a, \"\\\\\") -> 1#c"), Some(19));
        assert_eq!(comment_start("# all comment"), Some(0));
    }
}
