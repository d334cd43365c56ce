//! Fuzz target `model_only` (body: `udsim::fuzzing::model_only`, shared with `tests/fuzz_regression.rs`).
//! Bytes → a script (as `call_orderings` decodes it) → the model alone, checking its invariants after
//! every call (bytes conserved, wmem = queued truesize, consistent states, poll predicts calls).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    udsim::fuzzing::model_only(data);
});
