// SPDX-License-Identifier: GPL-2.0-only
//! The ledger adds up: yields by cause sum to the total, and per-worker
//! ledgers (live + exited) sum to the process's.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use morpheus_runtime::metrics::snapshot;
use morpheus_runtime::{Config, LedgerSnapshot, YieldCause, bindings};

#[test]
fn ledger_adds_up() {
    morpheus_runtime::configure(Config {
        socket_path: common::socket_path("ledger-absent"),
        budget: Duration::from_millis(2),
        sources: morpheus_runtime::Sources {
            pressure: false,
            ..Default::default()
        },
        ..Config::default()
    })
    .unwrap();
    let live = 2;
    let barrier = Arc::new(Barrier::new(live + 1));
    let done = Arc::new(Barrier::new(live + 1));
    let mut threads = Vec::new();
    for i in 0..3 {
        let (barrier, done) = (barrier.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            // 60 ms of CPU (budget 2 ms): budget yields however loaded
            // the host is.
            common::for_cpu(Duration::from_millis(60), Duration::from_secs(60), || {
                common::spin(Duration::from_micros(50));
                bindings::checkpoint();
            });
            for _ in 0..=i {
                bindings::record_voluntary_yield();
            }
            if i < live {
                barrier.wait(); // stay alive for the snapshot
                done.wait();
            }
        }));
    }
    barrier.wait();
    // Thread 2 has exited (retired), threads 0 and 1 are alive.
    let dead = threads.pop().unwrap();
    dead.join().unwrap();
    let s = snapshot();
    assert_eq!(s.workers.len(), live);
    assert_eq!(s.retired_workers, 1);
    let mut live_sum = LedgerSnapshot::default();
    for w in &s.workers {
        assert_eq!(
            w.ledger.yields.iter().sum::<u64>(),
            w.ledger.yields_total,
            "{w:?}"
        );
        assert!(w.ledger.yields_by(YieldCause::Budget) > 0, "{w:?}");
        for c in YieldCause::ALL {
            assert!(live_sum.yields_by(*c) <= s.process.yields_by(*c));
        }
        live_sum.yields_total += w.ledger.yields_total;
    }
    assert_eq!(s.process.yields.iter().sum::<u64>(), s.process.yields_total);
    assert_eq!(s.process.yields_by(YieldCause::Voluntary), 1 + 2 + 3);
    assert!(
        s.process.yields_total > live_sum.yields_total,
        "the exited worker's yields are kept"
    );
    done.wait();
    for t in threads {
        t.join().unwrap();
    }
    // Every worker exited: the process ledger is unchanged by retiring.
    let after = snapshot();
    assert!(after.workers.is_empty());
    assert_eq!(after.retired_workers, 3);
    assert_eq!(after.process, s.process);
    let text = morpheus_runtime::metrics::openmetrics();
    let total: u64 = text
        .lines()
        .filter(|l| l.starts_with("morpheus_runtime_yields_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, after.process.yields_total);
}
