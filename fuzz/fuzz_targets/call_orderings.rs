//! Fuzz target `call_orderings` (body: `udsim::fuzzing::call_orderings`, shared with `tests/fuzz_regression.rs`).
//! Bytes → a script (text if it starts with `#`, else choices for the state-aware generator) → model and
//! kernel in lock-step. A divergence panics with the minimal script, printed in the script language.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // The private directory on tmpfs unless TMPDIR is set (about twice the exec/s of ext4).
        udsim::fuzzing::prefer_tmpfs();
    },
    |data: &[u8]| {
        udsim::fuzzing::call_orderings(data);
    }
);
