//! The checker's own speed, on a fixed corpus of generated scripts (seeds 0..SCRIPTS, MAX_OPS
//! calls each, the sizes `udsim explore` uses):
//!
//! - `checker/model_steps`: `Model::step` alone, names precomputed (element = one step);
//! - `checker/check_ops`: `Checker::run` (model + kernel in lock-step; element = one call);
//! - `checker/kernel_only_ops`: `Checker::run_kernel_only` (the kernel executor alone, the
//!   baseline for the checker's overhead);
//! - `checker/parse_lines`: `script::parse` of the printed corpus (element = one line).
//!
//! Only scripts on which model and kernel agree are kept, so check and kernel-only run the same
//! calls. The corpus' shape goes to `<criterion>/udsim-meta/checker.json`.
//!
//! Criterion measures check and kernel-only one after the other, seconds apart; on this shared
//! machine the host's speed changes in between (and the kernel's own cost drifts as the file system
//! recycles the executor's inodes), so the ratio target is judged on an **interleaved pass** after
//! criterion: round after round, the whole corpus checked and then run kernel-only (the order
//! alternating), the median of the per-round ratios. It goes to `checker.json` as `interleaved`.

#[path = "common/mod.rs"]
mod common;

use criterion::{black_box, Throughput};
use std::time::Instant;
use udsim::check::{Checker, Options};
use udsim::gen::{generate, Rng};
use udsim::model::{Model, Params};
use udsim::script::{fmt_script, parse, Call, Outcome, Script};

const SCRIPTS: u64 = 100;
const MAX_OPS: usize = 40;

/// A script's calls with the name each creating call gives its socket (`s{N}`, N = sockets created
/// so far, as the checker names them).
fn named_steps(params: &Params, script: &Script) -> Vec<(Call, Vec<String>)> {
    let mut model = Model::new(params.clone());
    let mut created = 0;
    let mut out = Vec::new();
    for line in &script.lines {
        let p = model.step(&line.call).expect("generated names are known");
        let n = p.allowed.first().map_or(0, Outcome::new_fds);
        let names: Vec<String> = (created..created + n).map(|i| format!("s{i}")).collect();
        model.name_new(&names);
        created += n;
        out.push((line.call.clone(), names));
    }
    out
}

fn main() {
    let placement = common::apply_placement();
    let params = udsim::kernel::calibrate::params().expect("calibration");
    let mut checker = Checker::new().expect("checker");

    let mut scripts = Vec::new();
    let mut diverging = 0;
    for seed in 0..SCRIPTS {
        let s = generate(&mut Rng(seed), &params, MAX_OPS);
        let run = checker.run(&s, Options::default()).expect("check");
        if run.agrees() {
            scripts.push(s);
        } else {
            diverging += 1;
        }
    }
    let ops: usize = scripts.iter().map(|s| s.lines.len()).sum();
    let steps: Vec<Vec<(Call, Vec<String>)>> =
        scripts.iter().map(|s| named_steps(&params, s)).collect();
    let texts: Vec<String> = scripts.iter().map(fmt_script).collect();
    let text_lines: usize = texts.iter().map(|t| t.lines().count()).sum();
    let text_bytes: usize = texts.iter().map(|t| t.len()).sum();

    common::write_meta(
        "checker",
        &["checker"],
        &placement,
        serde_json::json!({
            "scripts": scripts.len(),
            "diverging_skipped": diverging,
            "max_ops": MAX_OPS,
            "ops": ops,
            "parse_lines": text_lines,
            "parse_bytes": text_bytes,
        }),
    );

    let mut c = common::criterion();
    let mut g = c.benchmark_group("checker");

    g.throughput(Throughput::Elements(ops as u64));
    g.bench_function("model_steps", |b| {
        b.iter(|| {
            for script in &steps {
                let mut m = Model::new(params.clone());
                for (call, names) in script {
                    let _ = black_box(m.step(call));
                    m.name_new(names);
                }
            }
        })
    });
    g.bench_function("check_ops", |b| {
        b.iter(|| {
            for s in &scripts {
                let run = checker.run(s, Options::default()).expect("check");
                black_box(run);
            }
        })
    });
    g.bench_function("kernel_only_ops", |b| {
        b.iter(|| {
            for s in &scripts {
                black_box(checker.run_kernel_only(s).expect("kernel"));
            }
        })
    });

    g.throughput(Throughput::Elements(text_lines as u64));
    g.bench_function("parse_lines", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(parse(t).expect("parse"));
            }
        })
    });
    g.finish();
    c.final_summary();
    interleaved(&mut checker, &scripts, ops);
    common::finish_meta("checker");
}

/// The interleaved pass (see the module comment): calls/s of check and kernel-only per round, and
/// the median of their per-round ratio.
fn interleaved(checker: &mut Checker, scripts: &[Script], ops: usize) {
    if !common::measuring() || ops == 0 {
        return;
    }
    let rounds = if common::quick() { 10 } else { 30 };
    let check = |c: &mut Checker| {
        let t = Instant::now();
        for s in scripts {
            black_box(c.run(s, Options::default()).expect("check"));
        }
        ops as f64 / t.elapsed().as_secs_f64()
    };
    let kernel = |c: &mut Checker| {
        let t = Instant::now();
        for s in scripts {
            black_box(c.run_kernel_only(s).expect("kernel"));
        }
        ops as f64 / t.elapsed().as_secs_f64()
    };
    // One of each to warm up.
    check(checker);
    kernel(checker);
    let (mut c, mut k, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (cr, kr) = if r % 2 == 0 {
            let cr = check(checker);
            (cr, kernel(checker))
        } else {
            let kr = kernel(checker);
            (check(checker), kr)
        };
        c.push(cr);
        k.push(kr);
        ratio.push(cr / kr);
    }
    let mid = common::median(&mut ratio); // (sorts: the range is its ends)
    let v = serde_json::json!({
        "rounds": rounds,
        "check_calls_per_s": common::median(&mut c),
        "kernel_only_calls_per_s": common::median(&mut k),
        "ratio": mid,
        "ratio_min": ratio.first(),
        "ratio_max": ratio.last(),
    });
    println!(
        "checker/interleaved: {rounds} rounds, check {:.1} k calls/s, kernel-only {:.1} k calls/s, \
         median ratio {:.3} (range {:.3}–{:.3})",
        v["check_calls_per_s"].as_f64().unwrap_or(0.0) / 1e3,
        v["kernel_only_calls_per_s"].as_f64().unwrap_or(0.0) / 1e3,
        v["ratio"].as_f64().unwrap_or(0.0),
        v["ratio_min"].as_f64().unwrap_or(0.0),
        v["ratio_max"].as_f64().unwrap_or(0.0),
    );
    common::add_meta("checker", "interleaved", v);
}
