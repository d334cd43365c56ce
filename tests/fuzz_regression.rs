//! Stable regression for the cargo-fuzz targets: each target's body (`udsim::fuzzing`) runs over every committed
//! input, so CI exercises them without nightly.
//!
//! Inputs:
//! - `fuzz/corpus/<target>/*`: seeds (`scenario-*` from `scenarios/*.uds`, `gen-*` from the generator) and
//!   minimized inputs the fuzzer kept;
//! - `fuzz/regressions/<target>/*`: crash inputs, each committed once the bug it found is fixed;
//! - `fuzz/regressions/<target>/open-*`: crash inputs of bugs NOT fixed yet. They are skipped by the corpus
//!   tests, and `open_regressions_still_fail` checks they still fail; once one passes, the fix's author
//!   renames it (drop `open-`) so it guards the fix.
//!
//! Tools (ignored tests, run by hand):
//! - `cargo test --test fuzz_regression rebuild_corpora -- --ignored` rewrites the seed files from
//!   `scenarios/*.uds` and the generator, and `fuzz/script.dict`;
//! - `UDSIM_FUZZ_INPUT=crash-file cargo test --test fuzz_regression decode_input -- --ignored --nocapture`
//!   prints the script a `call_orderings` / `model_only` input stands for.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use udsim::fuzzing;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Input files under `dirs` (relative to the crate root), sorted; hidden files and README skipped.
fn inputs(dirs: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(root().join(d)) else {
            continue;
        };
        let mut v: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                let n = file_name(p);
                !n.starts_with('.') && !n.starts_with("README")
            })
            .collect();
        v.sort();
        out.extend(v);
    }
    out
}

/// A target's body.
type Body = fn(&[u8]);

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_open(p: &Path) -> bool {
    file_name(p).starts_with("open-")
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// Runs `body` over every (not open) input under `dirs`; fails listing every input that panicked.
fn run_all(target: &str, body: Body, dirs: &[&str]) {
    let files: Vec<PathBuf> = inputs(dirs).into_iter().filter(|p| !is_open(p)).collect();
    let mut failures = Vec::new();
    let mut slowest = (std::time::Duration::ZERO, PathBuf::new());
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        let t = std::time::Instant::now();
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| body(&data))) {
            failures.push(format!("{}:\n{}", f.display(), panic_text(&*e)));
        }
        if t.elapsed() > slowest.0 {
            slowest = (t.elapsed(), f.clone());
        }
    }
    eprintln!(
        "{target}: {} inputs; slowest {:?} ({})",
        files.len(),
        slowest.0,
        slowest.1.display()
    );
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs fail:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn call_orderings_corpus_and_regressions() {
    run_all(
        "call_orderings",
        fuzzing::call_orderings,
        &[
            "fuzz/corpus/call_orderings",
            "fuzz/regressions/call_orderings",
        ],
    );
}

#[test]
fn descriptors_in_flight_corpus_and_regressions() {
    run_all(
        "descriptors_in_flight",
        fuzzing::descriptors_in_flight,
        &[
            "fuzz/corpus/descriptors_in_flight",
            "fuzz/regressions/descriptors_in_flight",
        ],
    );
}

#[test]
fn script_parser_corpus_and_regressions() {
    run_all(
        "script_parser",
        fuzzing::script_parser,
        &[
            "fuzz/corpus/script_parser",
            "fuzz/regressions/script_parser",
            "scenarios",
        ],
    );
}

#[test]
fn model_only_corpus_and_regressions() {
    // call_orderings crash inputs decode the same way, so they exercise the invariants too (its corpus is left
    // out: it would double the test's time for little).
    run_all(
        "model_only",
        fuzzing::model_only,
        &[
            "fuzz/corpus/model_only",
            "fuzz/regressions/model_only",
            "fuzz/regressions/call_orderings",
        ],
    );
}

/// Known, unfixed bugs (`open-*`) must still fail their strict body; one that passes has been fixed.
#[test]
fn open_regressions_still_fail() {
    let targets: [(&str, Body); 3] = [
        ("call_orderings", fuzzing::call_orderings_strict),
        ("script_parser", fuzzing::script_parser),
        ("model_only", fuzzing::model_only),
    ];
    let mut fixed = Vec::new();
    for (t, body) in targets {
        let dir = format!("fuzz/regressions/{t}");
        for f in inputs(&[&dir]).into_iter().filter(|p| is_open(p)) {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_ok() {
                fixed.push(f.display().to_string());
            }
        }
    }
    assert!(
        fixed.is_empty(),
        "these open fuzz regressions pass now: rename each without its `open-` prefix (and drop its entry \
         in `udsim::fuzzing::known_open`) so it guards the fix:\n{}",
        fixed.join("\n")
    );
}

/// The script an input stands for, in the script language (`UDSIM_FUZZ_INPUT=path`).
#[test]
#[ignore = "tool: UDSIM_FUZZ_INPUT=crash-file cargo test --test fuzz_regression decode_input -- --ignored --nocapture"]
fn decode_input() {
    let path = std::env::var("UDSIM_FUZZ_INPUT").expect("set UDSIM_FUZZ_INPUT to an input file");
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let params = udsim::kernel::calibrate::params().expect("calibrate");
    for (target, max) in [
        ("call_orderings", fuzzing::CALL_ORDERINGS_MAX_OPS),
        ("model_only", fuzzing::MODEL_ONLY_MAX_OPS),
    ] {
        match fuzzing::decode(&data, &params, max) {
            Some(s) => println!("# {path} as a {target} input\n{s}"),
            None => {
                println!("# {path}: skipped by {target} (text that does not parse, or over limits)")
            }
        }
    }
}

/// Seeds per target made from the generator (a seeded RNG, recorded as choice bytes).
const GENERATED_SEEDS: usize = 24;

/// Rewrites the seed files (`scenario-*`, `gen-*`) of every corpus and the dictionary.
#[test]
#[ignore = "tool: cargo test --test fuzz_regression rebuild_corpora -- --ignored"]
fn rebuild_corpora() {
    let params = udsim::kernel::calibrate::params().expect("calibrate");
    let targets = ["call_orderings", "script_parser", "model_only"];
    for t in targets {
        let dir = root().join("fuzz/corpus").join(t);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for f in inputs(&[&format!("fuzz/corpus/{t}")]) {
            let n = file_name(&f);
            if n.starts_with("scenario-") || n.starts_with("gen-") {
                std::fs::remove_file(&f).expect("remove old seed");
            }
        }
    }
    let scenarios = inputs(&["scenarios"]);
    let mut n_scen = 0;
    for s in scenarios
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "uds"))
    {
        let text = std::fs::read_to_string(s).expect("read scenario");
        let stem = s
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = format!("scenario-{stem}.uds");
        std::fs::write(root().join("fuzz/corpus/script_parser").join(&name), &text).expect("write");
        // Text mode needs a leading `#`: a comment line naming the scenario.
        let as_input = format!("# scenarios/{stem}.uds\n{text}");
        for t in ["call_orderings", "model_only"] {
            std::fs::write(root().join("fuzz/corpus").join(t).join(&name), &as_input)
                .expect("write");
        }
        n_scen += 1;
    }
    let mut n_gen = 0;
    for (t, max) in [
        ("call_orderings", fuzzing::CALL_ORDERINGS_MAX_OPS),
        ("model_only", fuzzing::MODEL_ONLY_MAX_OPS),
    ] {
        for i in 0..GENERATED_SEEDS {
            let seed = udsim::explore::case_seed(0xf022, i);
            let (script, bytes) = fuzzing::record(udsim::gen::Rng(seed), &params, max);
            let back = fuzzing::decode(&bytes, &params, max).expect("generated mode");
            assert!(back.same_as(&script), "recorded bytes replay the script");
            std::fs::write(
                root()
                    .join("fuzz/corpus")
                    .join(t)
                    .join(format!("gen-{i:02}.bin")),
                &bytes,
            )
            .expect("write");
            n_gen += 1;
        }
    }
    std::fs::write(root().join("fuzz/script.dict"), dictionary()).expect("write dict");
    eprintln!("{n_scen} scenarios, {n_gen} generated seeds, fuzz/script.dict");
}

/// libFuzzer dictionary: the script language's tokens, call names, errno names, poll flags, paths.
fn dictionary() -> String {
    let mut toks: Vec<String> = vec![
        "socket(STREAM)",
        "socket(",
        "STREAM",
        "bind(",
        "listen(",
        "accept(",
        "connect(",
        "write(",
        "read(",
        "shutdown(",
        "close(",
        "unlink(",
        "getsockname(",
        "getpeername(",
        "poll(",
        "RD",
        "WR",
        "RDWR",
        " -> ",
        "->",
        ", ",
        ")",
        "unnamed",
        "<",
        " bytes>",
        "\" * ",
        " + ",
        "\"a.sock\"",
        "\"b.sock\"",
        "\"sub/x.sock\"",
        "\"./a.sock\"",
        "\".\"",
        "\"\\0",
        "\\x",
        "\\n",
        "# ",
        "s0",
        "s1",
        "s2",
        "srv",
        "cli",
        "conn",
        "108",
        "109",
        "-1",
        "65536",
        "IN",
        "PRI",
        "OUT",
        "ERR",
        "HUP",
        "RDHUP",
        "NVAL",
        "|",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for v in 1..200 {
        if let Some(n) = udsim::script::Errno(v).name() {
            toks.push(n.to_string());
        }
    }
    let mut out = String::from(
        "# libFuzzer dictionary for udsim scripts (fuzz/script.dict), written by\n\
         # `cargo test --test fuzz_regression rebuild_corpora -- --ignored`.\n",
    );
    for t in toks {
        let mut esc = String::new();
        for b in t.bytes() {
            match b {
                b'"' => esc.push_str("\\\""),
                b'\\' => esc.push_str("\\\\"),
                0x20..=0x7e => esc.push(b as char),
                _ => esc.push_str(&format!("\\x{b:02X}")),
            }
        }
        out.push_str(&format!("\"{esc}\"\n"));
    }
    out
}
