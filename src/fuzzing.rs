//! Bodies of the cargo-fuzz targets, shared with the stable regression test (filled in by the fuzzing work).
