// SPDX-License-Identifier: GPL-2.0-only
//! At a catch-up (I/O arrived while the process's workers were busy),
//! `checkpoint!()` lets the worker's ready tasks run and keeps the CPU: the
//! catch-up is recorded once, needs no acknowledgement and is no hint; a
//! hint that arrives with it is answered with its own sequence. Run against
//! the fake loader (tests/common) on a current-thread runtime whose thread
//! is the registered worker.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use morpheus_runtime::{YieldCause, bindings, checkpoint, current_worker};

#[test]
fn a_catch_up_runs_the_ready_tasks_and_is_no_hint() {
    let (server, slot, rt) = common::pressured_worker("catch-up");

    // A task that became ready (a request) runs before the checkpoint
    // returns; nothing is acknowledged; one catch-up yield, no hint.
    let ack_before = server.ack_seq(slot);
    let ran = rt.block_on(async {
        server.catch_up(slot);
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let request = tokio::spawn(async move { r.store(true, Relaxed) });
        checkpoint!();
        let ran = ran.load(Relaxed);
        request.await.unwrap();
        ran
    });
    assert!(ran, "the ready task did not run at the catch-up");
    assert_eq!(
        server.ack_seq(slot),
        ack_before,
        "a catch-up is not acknowledged"
    );
    let me = current_worker().unwrap();
    assert_eq!(
        me.ledger.yields_by(YieldCause::CatchUp),
        1,
        "{:?}",
        me.ledger
    );
    assert_eq!(me.ledger.yields_by(YieldCause::Hint), 0, "{:?}", me.ledger);
    assert_eq!(me.ledger.hints_seen, 0, "a catch-up counted as a hint");

    // The same catch-up reached by two tasks is taken once; the next
    // checkpoint finds nothing pending.
    rt.block_on(async {
        server.catch_up(slot);
        let other = tokio::spawn(async { checkpoint!() });
        checkpoint!();
        other.await.unwrap();
        checkpoint!();
    });
    let me = current_worker().unwrap();
    assert_eq!(
        me.ledger.yields_by(YieldCause::CatchUp),
        2,
        "{:?}",
        me.ledger
    );

    // A hint and a catch-up pending together: a hint yield, acknowledged
    // with the hint's sequence (the word's hint bits, not the whole word).
    let seq = rt.block_on(async {
        server.catch_up(slot);
        let seq = server.hint(slot);
        checkpoint!();
        seq
    });
    assert_eq!(server.ack_seq(slot), seq);
    let me = current_worker().unwrap();
    assert_eq!(me.ledger.yields_by(YieldCause::Hint), 1, "{:?}", me.ledger);
    assert_eq!(
        me.ledger.yields_by(YieldCause::CatchUp),
        2,
        "{:?}",
        me.ledger
    );
    assert_eq!(me.ledger.hints_seen, 1);

    // The synchronous checkpoint reports a catch-up as such.
    server.catch_up(slot);
    assert_eq!(bindings::checkpoint(), Some(YieldCause::CatchUp));
    assert_eq!(bindings::checkpoint(), None);
}
