// SPDX-License-Identifier: GPL-2.0-only
//! A kernel hint that reaches a worker right after it registered is
//! answered. The process's mode used to become PRESSURED (hints honoured)
//! only at the monitor's next observation, up to a second later; a hint in
//! between was ignored as in DETERMINISTIC mode, and since it was never
//! acknowledged the scheduler, which sends no new hint while one is
//! outstanding, never hinted that worker again: the `liar` benchmark's
//! honest worker then held its CPU to the overrun cap (200 ms) again and
//! again. Run against the fake loader (tests/common).

mod common;

use std::time::Duration;

use morpheus_runtime::{RuntimeMode, YieldCause, bindings, current_worker};

#[test]
fn a_hint_at_once_after_registration_is_answered() {
    let path = common::socket_path("first-hint");
    let server = common::Server::start(&path, common::Behaviour::Ok);
    morpheus_runtime::configure(morpheus_runtime::Config {
        socket_path: path,
        budget: Duration::from_secs(5),
        ..morpheus_runtime::Config::default()
    })
    .unwrap();
    morpheus_runtime::attach_worker(morpheus_runtime::WorkerOptions::default()).unwrap();
    let slot = current_worker().unwrap().slot.expect("registered");
    // No waiting for the monitor: the hint comes at once.
    assert_eq!(
        morpheus_runtime::metrics::snapshot().mode,
        RuntimeMode::Pressured,
        "a registered process does not honour kernel hints yet"
    );
    let seq = server.hint(slot);
    assert_eq!(bindings::checkpoint(), Some(YieldCause::Hint));
    assert_eq!(server.ack_seq(slot), seq, "the hint was not acknowledged");
    let me = current_worker().unwrap();
    assert_eq!(me.ledger.hints_answered, 1, "{:?}", me.ledger);
}
