//! Every ```uds block in docs/script-language.md is a script recorded on the kernel: it must still parse, and
//! the kernel and the model must agree with every result written in it.

use udsim::check::{Checker, Options};
use udsim::script::parse;

#[test]
fn the_language_guide_examples_agree_with_the_kernel() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/script-language.md"
    ))
    .expect("docs/script-language.md");
    let blocks: Vec<&str> = doc
        .split("```uds\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or(""))
        .collect();
    assert!(blocks.len() >= 7, "only {} examples", blocks.len());
    let mut ck = Checker::new().expect("checker");
    for b in blocks {
        let s = parse(b).unwrap_or_else(|e| panic!("{e}\n{b}"));
        assert!(
            s.lines.iter().all(|l| l.expect.is_some()),
            "every line has its result:\n{b}"
        );
        let run = ck.run(&s, Options::default()).expect("runs");
        assert!(run.fully_agrees(), "{}", udsim::cli::transcript(&run));
    }
}
