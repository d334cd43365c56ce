//! Shrinking: from a script on which the model and the kernel disagree, the smallest script that still makes
//! them disagree (lines removed, data cut), with names renumbered `s0, s1, …` in creation order.

use crate::check::{auto_name, CheckError, Checker, Options, Run};
use crate::script::{Expect, ExpectValue, Line, Name, Script, Value};
use std::collections::HashMap;

/// Whether the model disagrees with the kernel on `s`.
fn diverges(ck: &mut Checker, s: &Script) -> Result<bool, CheckError> {
    Ok(ck.run(s, Options::default())?.model_diverged())
}

/// Writes every created name into its line (`-> sN`), so deleting a line cannot renumber later sockets.
fn pin_names(run: &Run) -> Script {
    let lines = run
        .steps
        .iter()
        .map(|st| Line {
            call: st.line.call.clone(),
            expect: match &st.kernel.value {
                Value::Created | Value::Pair => {
                    Some(Expect::plain(ExpectValue::Named(st.created.clone())))
                }
                Value::Accepted(_) => Some(Expect::plain(ExpectValue::Accepted(
                    st.created.first().cloned().unwrap_or_default(),
                    None,
                ))),
                _ => None,
            },
            line_no: 0,
        })
        .collect();
    Script { lines }
}

/// Renames sockets to `s0, s1, …` in order of creation and drops the written names again.
fn renumber(s: &Script) -> Script {
    let mut map: HashMap<Name, Name> = HashMap::new();
    let mut out = s.clone();
    for l in &mut out.lines {
        l.line_no = 0;
        for n in l.call.names_mut() {
            if let Some(new) = map.get(n) {
                *n = new.clone();
            }
        }
        let written: Vec<Name> = match l.expect.as_ref().map(|e| &e.value) {
            Some(ExpectValue::Named(v)) => v.clone(),
            Some(ExpectValue::Accepted(n, None)) => vec![n.clone()],
            _ => continue,
        };
        for n in written {
            let new = auto_name(map.len());
            map.insert(n, new);
        }
        l.expect = None;
    }
    out
}

fn with_data(l: &Line, d: Vec<u8>) -> Option<Line> {
    let mut out = l.clone();
    let old = out.call.data_mut()?;
    if d.len() >= old.len() {
        return None;
    }
    *old = d.into();
    Some(out)
}

/// The minimal diverging script, or `None` if `script` does not diverge.
pub fn shrink(ck: &mut Checker, script: &Script) -> Result<Option<Script>, CheckError> {
    let run = ck.run(script, Options::default())?;
    let Some(d) = run.divergence().filter(|d| d.model_disagrees) else {
        return Ok(None);
    };
    let mut cur = pin_names(&run);
    cur.lines.truncate(d.step + 1);
    loop {
        let mut changed = false;
        // Remove lines, last first (later lines depend on earlier ones).
        let mut i = cur.lines.len();
        while i > 0 {
            i -= 1;
            let mut cand = cur.clone();
            cand.lines.remove(i);
            if diverges(ck, &cand)? {
                cur = cand;
                changed = true;
            }
        }
        // Cut written data.
        for i in 0..cur.lines.len() {
            let Some(data) = cur.lines[i].call.data() else {
                continue;
            };
            let byte = data.first().copied().unwrap_or(b'x');
            for len in [1, data.len() / 2] {
                let Some(l) = with_data(&cur.lines[i], vec![byte; len]) else {
                    continue;
                };
                let mut cand = cur.clone();
                cand.lines[i] = l;
                if diverges(ck, &cand)? {
                    cur = cand;
                    changed = true;
                    break;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let out = renumber(&cur);
    Ok(Some(if diverges(ck, &out)? { out } else { cur }))
}
