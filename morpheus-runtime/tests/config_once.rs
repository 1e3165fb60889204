// SPDX-License-Identifier: GPL-2.0-only
//! Configuration problems are said once per process, however many threads
//! attach and however often metrics are read.

mod common;

use common::logs;
use morpheus_runtime::metrics::snapshot;

#[test]
fn configuration_warnings_are_said_once() {
    // SAFETY: the only test of this binary, before any other thread runs.
    unsafe {
        std::env::set_var("MORPHEUS_BUDGET_MS", "banana");
        std::env::set_var("MORPHEUS_SOCKET", common::socket_path("config-once"));
        std::env::set_var("MORPHEUS_SOURCES", "kernel,budget");
    }
    logs::install();
    // Metrics before first use describe the configuration, silently.
    for _ in 0..3 {
        assert_eq!(snapshot().workers.len(), 0);
    }
    assert_eq!(logs::count("MORPHEUS_BUDGET_MS"), 0, "{:#?}", logs::all());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                morpheus_runtime::bindings::checkpoint();
                assert!(morpheus_runtime::is_worker());
                snapshot()
            })
        })
        .collect();
    for t in threads {
        let s = t.join().unwrap();
        assert_eq!(
            s.workers.iter().map(|w| w.budget).max(),
            Some(morpheus_runtime::DEFAULT_BUDGET)
        );
    }
    let _ = snapshot();
    assert_eq!(
        logs::count("MORPHEUS_BUDGET_MS=\"banana\""),
        1,
        "{:#?}",
        logs::all()
    );
    assert_eq!(
        logs::count("scx_morpheus is not running"),
        1,
        "{:#?}",
        logs::all()
    );
}
