//! A fingerprint of the model's predictions on generated scripts (no kernel): every prediction — allowed
//! outcomes and rule — of 20 000 scripts of each mix (`gen::Mix::Rights`, `gen::Mix::All`, 40 calls each, seeds
//! 0..20 000) hashed in order. Two builds of the model that print the same fingerprint predicted the same on
//! about 1.6 million calls: how a surviving mutant is checked for equivalence (README, *Mutation testing*).
//! (`DefaultHasher` is fixed for one toolchain: compare builds made with the same one.)
//!
//! `cargo run --release --example model_fingerprint [-- --no-purge]` (`--no-purge`: the collector kind no
//! kernel has shown, `gc_purges_cycle_queues = false`).
use std::hash::{Hash, Hasher};
use udsim::gen::{generate_mix, Mix, Rng};

fn main() {
    let mut params = udsim::model::Params::preset("linux-6.18-host").expect("a bundled preset");
    if std::env::args().any(|a| a == "--no-purge") {
        params.gc_purges_cycle_queues = false;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let (mut steps, mut several) = (0usize, 0usize);
    for mix in [Mix::Rights, Mix::All] {
        for seed in 0..20_000u64 {
            let script = generate_mix(&mut Rng(seed), &params, 40, mix);
            let predictions = udsim::check::model_only(&params, &script)
                .expect("generated scripts name only what they made");
            for p in &predictions {
                format!("{:?}|{}", p.allowed, p.rule).hash(&mut h);
                steps += 1;
                several += usize::from(p.allowed.len() > 1);
            }
        }
    }
    println!(
        "fingerprint {:016x}: {steps} predictions, {several} allowing more than one outcome",
        h.finish()
    );
}
