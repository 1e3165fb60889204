// SPDX-License-Identifier: GPL-2.0-only
//! At a kernel hint, `checkpoint!()` lets the worker's ready tasks run
//! before it acknowledges the hint and gives its CPU away, and it answers a
//! hint once however many of its tasks reach a checkpoint meanwhile. Run
//! against the fake loader (tests/common) on a current-thread runtime whose
//! thread is the registered worker.

mod common;

use morpheus_runtime::{YieldCause, checkpoint, current_worker};

#[test]
fn ready_tasks_run_before_the_hint_is_answered_and_it_is_answered_once() {
    let (server, slot, rt) = common::pressured_worker("hint-order");

    // A task that is ready when the hint is taken (a short request) runs
    // before the worker acknowledges the hint and gives the CPU away.
    let (seq, ack_seen_by_short, ack_after) = rt.block_on(async {
        let seq = server.hint(slot);
        let s = server.clone();
        let short = tokio::spawn(async move { s.ack_seq(slot) });
        checkpoint!();
        let ack_after = server.ack_seq(slot);
        (seq, short.await.unwrap(), ack_after)
    });
    assert!(
        ack_seen_by_short < seq,
        "the short task ran after the hint was answered (ack {ack_seen_by_short}, hint {seq})"
    );
    assert_eq!(ack_after, seq, "answered when the checkpoint returned");
    let me = current_worker().unwrap();
    assert_eq!(me.ledger.yields_by(YieldCause::Hint), 1);
    assert_eq!(me.ledger.hints_answered, 1);

    // Two tasks reach a checkpoint for the same hint: it is answered (and
    // the CPU given away) once, not once per task.
    let seq = rt.block_on(async {
        let seq = server.hint(slot);
        let other = tokio::spawn(async { checkpoint!() });
        checkpoint!();
        other.await.unwrap();
        seq
    });
    assert_eq!(server.ack_seq(slot), seq);
    let me = current_worker().unwrap();
    assert_eq!(me.ledger.yields_by(YieldCause::Hint), 2, "{:?}", me.ledger);
    assert_eq!(me.ledger.hints_answered, 2);
}
