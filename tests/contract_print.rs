//! The ten version-2 contract examples (recorded on Linux 6.18 by another executor, copied from the shared
//! contract folder into `tests/contract/`): each parses, and printing it gives back every call line byte for byte.

use udsim::script::{fmt_line, parse};

fn examples() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract");
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("tests/contract exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "uds"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            (p.display().to_string(), text)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn contract_examples_print_back_byte_for_byte() {
    let ex = examples();
    assert_eq!(ex.len(), 10, "the ten contract examples");
    for (name, text) in ex {
        let script = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let calls: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .collect();
        assert_eq!(script.lines.len(), calls.len(), "{name}");
        for (line, want) in script.lines.iter().zip(calls) {
            assert_eq!(fmt_line(line), want, "{name}");
        }
        let printed = udsim::script::fmt_script(&script);
        assert!(
            parse(&printed).expect("reparses").same_as(&script),
            "{name}"
        );
    }
}
