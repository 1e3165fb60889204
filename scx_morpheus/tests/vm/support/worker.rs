// SPDX-License-Identifier: GPL-2.0-only
//! Registered worker threads with scripted behaviour, for hint and
//! escalation tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::Session;
use super::{POLICY_SCHED_EXT, pin_to, set_policy, spin_us};

/// How a worker treats hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Never looks at its SCB: a CPU-bound loop with no checkpoints.
    Ignore,
    /// Checkpoints every ~50 µs of work: acknowledges and yields on a hint.
    Checkpoint,
    /// Holds a critical section for the whole run and never checkpoints.
    CriticalForever,
}

/// What a worker observed.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub slot: u32,
    pub generation: u64,
    pub hints: u64,
    pub acked: u64,
    pub escalations: u32,
    pub answered_in_grace: u64,
    pub pressure_max: u32,
    pub state_after_run: u16,
    /// The thread's scheduling policy once registered (`sched_getscheduler`).
    pub policy: i32,
    /// Its SCB said SCBK_THROTTLED at some point of the run.
    pub throttled_seen: bool,
}

/// Runs a registered worker on `cpu` for `dur`, returning what it saw.
pub fn run(
    session: Arc<Session>,
    flags: u32,
    behaviour: Behaviour,
    cpu: usize,
    dur: Duration,
) -> Report {
    std::thread::spawn(move || {
        pin_to(cpu);
        let (slot, generation) = session.register(flags).expect("registration accepted");
        let scb = session.scb(slot);
        // At once: a hint whose yield window ended before the section
        // began would rightly preempt it (seen once under load).
        if behaviour == Behaviour::CriticalForever {
            scb.set_critical_depth(1);
        }
        // Under --partial a worker switches itself, as morpheus-runtime does.
        if scb.flags() & morpheus_common::SCBK_PARTIAL != 0 {
            set_policy(POLICY_SCHED_EXT);
        }
        // SAFETY: sched_getscheduler on ourselves.
        let policy = unsafe { libc::sched_getscheduler(0) };
        // A registration hands out a zeroed SCB: every hint of this run
        // counts, also one issued before this line (the worker runs, and
        // may be hinted, from the moment the loader has replied).
        let start_hint = 0;
        let mut acked_seq = start_hint;
        let mut acked = 0;
        let mut pressure_max = 0;
        let mut throttled_seen = false;
        let end = Instant::now() + dur;
        while Instant::now() < end {
            spin_us(50);
            pressure_max = pressure_max.max(scb.pressure());
            throttled_seen |= scb.flags() & morpheus_common::SCBK_THROTTLED != 0;
            if behaviour == Behaviour::Checkpoint {
                let seq = scb.hint_seq();
                if seq != acked_seq {
                    acked_seq = seq;
                    scb.ack(seq);
                    acked += 1;
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                }
            }
        }
        // A critical section is held until the worker unregisters: leaving
        // it first would make it, with its long-expired hint, an escapable
        // worker outside a critical section for a moment, which --enforce
        // rightly escalates. (Registration resets the slot's SCB.)
        let report = Report {
            slot,
            generation,
            hints: scb.hint_seq() - start_hint,
            acked,
            escalations: scb.escalations(),
            answered_in_grace: scb.hints_answered(),
            pressure_max,
            state_after_run: scb.state(),
            policy,
            throttled_seen,
        };
        assert_eq!(
            session.unregister(slot, generation),
            morpheus_common::Status::Ok
        );
        report
    })
    .join()
    .expect("worker thread")
}
