// SPDX-License-Identifier: GPL-2.0-only
//! Criterion version of the microbenchmarks (`cargo bench -p morpheus-bench`):
//! the same cases as the `microbench` program, timed by criterion.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use morpheus_bench::micro::CASES;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("morpheus");
    g.measurement_time(Duration::from_secs(3));
    for case in CASES {
        // Needs a process of its own (environment); `microbench` runs it.
        if !case.env.is_empty() {
            continue;
        }
        g.bench_function(case.name, |b| {
            b.iter_custom(|iters| (case.run)(iters.max(1)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
