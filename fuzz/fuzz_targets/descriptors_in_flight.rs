//! Fuzz target `descriptors_in_flight` (body: `udsim::fuzzing::descriptors_in_flight`, shared with
//! `tests/fuzz_regression.rs`). Bytes → a rights-heavy script (text if it starts with `#`, else choices for the
//! state-aware generator's `Mix::Rights`) → model and kernel in lock-step. A divergence panics with the minimal
//! script, printed in the script language.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        udsim::fuzzing::prefer_tmpfs();
    },
    |data: &[u8]| {
        udsim::fuzzing::descriptors_in_flight(data);
    }
);
