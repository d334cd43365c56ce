//! The simulated world's speed: calls per second of the echo on the model (8 clients, each
//! sending 64 KiB in 64-byte messages and reading 64 bytes at a time, so the run is many small
//! calls), with and without recording the trace. Criterion reports elements (calls) per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use udsim::model::Params;
use udsim::sim::echo::{simulate, ClientPlan, Workload};

fn workload() -> Workload {
    Workload {
        clients: (0..8)
            .map(|_| ClientPlan {
                chunk: 64,
                read: 64,
                ..ClientPlan::plain(64 * 1024)
            })
            .collect(),
        buffer: 64 * 1024,
        seed: 1,
    }
}

fn bench(c: &mut Criterion) {
    let params = Params::preset("linux-6.18-host").expect("bundled preset");
    let w = workload();
    let calls = simulate(params.clone(), &w, false)
        .expect("runs")
        .stats
        .calls;
    let mut g = c.benchmark_group("sim_echo");
    g.throughput(Throughput::Elements(calls));
    g.sample_size(20);
    g.bench_function("calls_no_trace", |b| {
        b.iter(|| simulate(params.clone(), &w, false).expect("runs"))
    });
    g.bench_function("calls_with_trace", |b| {
        b.iter(|| simulate(params.clone(), &w, true).expect("runs"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
