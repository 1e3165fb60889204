// SPDX-License-Identifier: GPL-2.0-only
//! Registration, kernel hints, fallback and reconnection against a fake
//! loader (tests/common) speaking the real protocol over a real socket with
//! a memfd as the SCB array. The real scx_morpheus is exercised in the VM
//! tests; this checks the runtime's side of the contract on any host.

mod common;

use std::time::Duration;

use common::{Behaviour, Seen, Server, wait_until};
use morpheus_runtime::metrics::snapshot;
use morpheus_runtime::{
    Config, RegistrationState, RuntimeKind, RuntimeMode, WorkerOptions, YieldCause, bindings,
    critical_section, current_worker,
};

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn register_hint_fallback_and_reconnect() {
    let path = common::socket_path("registration");
    let server = Server::start(&path, Behaviour::Ok);
    morpheus_runtime::configure(Config {
        socket_path: path.clone(),
        reconnect_interval: Duration::from_millis(100),
        // Long enough that no budget yield interferes with the hint checks.
        budget: Duration::from_secs(5),
        ..Config::default()
    })
    .unwrap();

    // Happy path: hello + register, on the worker's own thread.
    morpheus_runtime::attach_worker(WorkerOptions {
        kind: RuntimeKind::Tokio,
        escapable: Some(true),
        ..WorkerOptions::default()
    })
    .unwrap();
    let me = current_worker().unwrap();
    assert_eq!(me.slot, Some(0), "{me:?}");
    let tid = unsafe { libc::gettid() };
    assert_eq!(
        server.seen(),
        vec![
            Seen::Hello,
            Seen::Register {
                flags: morpheus_common::WORKER_ESCAPABLE,
                pidfd_tid: Some(tid)
            }
        ]
    );
    assert_eq!(server.user_flags(0), morpheus_common::WORKER_ESCAPABLE);
    let s = snapshot();
    assert_eq!(s.registration, RegistrationState::Connected);
    assert!(s.sources.active.kernel);
    // The monitor's next housekeeping sees the registration: PRESSURED.
    assert!(wait_until(WAIT, || snapshot().mode == RuntimeMode::Pressured));

    // No hint pending: the fast path says nothing.
    assert_eq!(bindings::checkpoint(), None);

    // Hint path: the "scheduler" writes the deadline, then bumps hint_seq.
    let seq = server.hint(0);
    assert_eq!(bindings::checkpoint(), Some(YieldCause::Hint));
    assert_eq!(server.ack_seq(0), seq);
    assert_eq!(bindings::checkpoint(), None, "answered once");
    let me = current_worker().unwrap();
    assert_eq!(me.ledger.yields_by(YieldCause::Hint), 1);
    assert_eq!(me.ledger.hints_seen, 1);
    assert_eq!(me.ledger.hints_answered, 1);
    assert_eq!(me.ledger.hint_response.count(), 1);
    assert_eq!(me.ledger.hints_late, 0, "answered within grace");

    // Inside a critical section the hint is deferred, not answered.
    {
        let _g = critical_section();
        assert_eq!(server.critical_depth(0), 1, "the kernel sees the section");
        let seq = server.hint(0);
        assert_eq!(bindings::checkpoint(), None);
        assert_eq!(bindings::checkpoint(), None);
        assert_eq!(server.ack_seq(0), seq - 1, "not acknowledged inside");
    }
    assert_eq!(server.critical_depth(0), 0);
    assert_eq!(bindings::checkpoint(), Some(YieldCause::Hint));
    let me = current_worker().unwrap();
    assert_eq!(me.ledger.checkpoints_deferred, 2);
    assert_eq!(me.ledger.hints_answered, 2);

    // Escalation observed: DEFENSIVE, counted as an escalated yield.
    server.escalate(0);
    assert!(wait_until(WAIT, || snapshot().mode == RuntimeMode::Defensive));
    let s = snapshot();
    assert_eq!(s.escalations, 1);
    assert_eq!(s.process.yields_by(YieldCause::Escalated), 1);

    // The scheduler goes away: fall back, keep working.
    server.stop();
    assert!(wait_until(WAIT, || snapshot().registration
        == RegistrationState::Unavailable));
    let s = snapshot();
    assert!(
        s.registration_reason
            .as_deref()
            .unwrap()
            .contains("lost the connection"),
        "{s:?}"
    );
    assert_eq!(current_worker().unwrap().slot, None);
    assert!(!s.sources.active.kernel);
    assert_eq!(bindings::checkpoint(), None);

    // It comes back: the monitor reconnects and re-registers live workers.
    let server = Server::start(&path, Behaviour::Ok);
    assert!(wait_until(WAIT, || current_worker()
        .unwrap()
        .slot
        .is_some()));
    let s = snapshot();
    assert_eq!(s.registration, RegistrationState::Connected);
    assert_eq!(s.connects, 2);
    let seen = server.seen();
    assert_eq!(seen[0], Seen::Hello);
    assert!(
        matches!(seen[1], Seen::Register { pidfd_tid: Some(t), .. } if t == tid),
        "{seen:?}"
    );
    // The worker adopts its new slot at its next checkpoint (no yield)...
    assert_eq!(bindings::checkpoint(), None);
    // ...and answers hints there.
    let slot = current_worker().unwrap().slot.unwrap();
    let seq = server.hint(slot);
    assert_eq!(bindings::checkpoint(), Some(YieldCause::Hint));
    assert_eq!(server.ack_seq(slot), seq);

    // Unregister on detach.
    morpheus_runtime::detach_worker();
    assert!(matches!(
        server.seen().last(),
        Some(Seen::Unregister {
            slot: 0,
            generation: 1
        })
    ));
    assert!(current_worker().is_err());
    let s = snapshot();
    assert_eq!(s.retired_workers, 1);
    assert_eq!(s.process.yields.iter().sum::<u64>(), s.process.yields_total);
    assert_eq!(s.process.yields_by(YieldCause::Hint), 3);

    // OpenMetrics shows it all.
    let text = morpheus_runtime::metrics::openmetrics();
    assert!(
        text.contains("morpheus_runtime_yields_total{cause=\"hint\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("morpheus_runtime_hints_answered_total 3\n"),
        "{text}"
    );
    assert!(
        text.contains("morpheus_runtime_registration{state=\"connected\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("morpheus_runtime_hint_response_seconds_count 3\n"),
        "{text}"
    );
    server.stop();
}
