//! The differential property test: generated call orderings run on the model and on the kernel in lock-step.
//! A disagreement fails with the minimal script (proptest shrinks the choices, then udsim's shrinker the
//! script), printed in the script language so it can be pasted into a file and run with `udsim check`.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::RefCell;
use udsim::check::{Checker, Options};
use udsim::explore::Stats;
use udsim::gen::{generate, Choices};

/// Scripts per `cargo test` run.
const CASES: u32 = 2000;
/// Calls per script.
const MAX_OPS: usize = 60;

#[test]
fn model_agrees_with_kernel_on_generated_scripts() {
    let checker = RefCell::new(Checker::new().expect("calibrate and set up the executor"));
    let params = checker.borrow().params().clone();
    let stats = RefCell::new(Stats::default());
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(any::<u32>(), 0..MAX_OPS * 3);
    let result = runner.run(&strategy, |choices| {
        let script = generate(&mut Choices::new(&choices), &params, MAX_OPS);
        let mut ck = checker.borrow_mut();
        let run = ck
            .run(&script, Options::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        stats.borrow_mut().add(&params, &run);
        if run.model_diverged() {
            let min = udsim::shrink::shrink(&mut ck, &script)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .unwrap_or(script);
            let min_run = ck
                .run(&min, Options::default())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            return Err(TestCaseError::fail(format!(
                "model and kernel disagree; minimal script:\n{}",
                udsim::cli::transcript(&min_run)
            )));
        }
        Ok(())
    });
    let stats = stats.into_inner();
    eprintln!("{}", stats.report());
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generators must reach the interesting states, or the test proves little.
    for state in [
        "connected",
        "pending",
        "listening-with-pending",
        "half-closed-rd",
        "half-closed-wr",
        "shut-both",
        "reset",
        "peer-closed",
        "full-buffer",
        "closed",
        "dgram-bound",
        "dgram-connected",
        "dgram-unread-data",
        "dgram-peer-closed",
        "seqpacket-connected",
        "seqpacket-listening",
        "seqpacket-unread-data",
        "seqpacket-shut-both",
    ] {
        let n = stats.states.get(state).copied().unwrap_or(0);
        assert!(
            n >= 20,
            "state {state} reached after only {n} steps:\n{}",
            stats.report()
        );
    }
    assert!(
        stats.exact_rate() >= 0.95,
        "exact-prediction rate {:.3}",
        stats.exact_rate()
    );
}
