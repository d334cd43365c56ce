//! The scenario library (`scenarios/*.uds`), bundled at build time.
include!(concat!(env!("OUT_DIR"), "/scenarios.rs"));
