//! Every rule the model names, with the description its source gives (read at build time by `build.rs`):
//! what `udsim rules` lists.
include!(concat!(env!("OUT_DIR"), "/rules.rs"));

/// The description of a rule, if the model has a rule of that name.
pub fn describe(name: &str) -> Option<&'static str> {
    RULES.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}
