//! Every rule the model names, with the description its source gives (read at build time by `build.rs`):
//! what `udsim rules` lists.
include!(concat!(env!("OUT_DIR"), "/rules.rs"));

/// The description of a rule, if the model has a rule of that name.
pub fn describe(name: &str) -> Option<&'static str> {
    RULES.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

#[cfg(test)]
mod tests {
    /// A rule's description is the text its source gives; a name that is no rule has none.
    #[test]
    fn a_rule_is_described_and_a_stranger_is_not() {
        let d = super::describe("backlog_admits_n_plus_one").expect("a rule");
        assert!(d.len() > 20 && d.contains("backlog"), "{d}");
        assert_eq!(super::describe("no such rule"), None);
    }
}
