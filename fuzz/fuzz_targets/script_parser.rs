//! Fuzz target `script_parser` (body: `udsim::fuzzing::script_parser`, shared with `tests/fuzz_regression.rs`).
//! Bytes → text → the parser never panics, and every script it accepts prints and re-parses to the same
//! script.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    udsim::fuzzing::script_parser(data);
});
