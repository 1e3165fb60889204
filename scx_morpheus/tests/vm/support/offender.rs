// SPDX-License-Identifier: GPL-2.0-only
//! An offender and its controls, for the tests of penalties that must
//! not outlive the loader (faults.rs): a forked process whose escapable
//! worker never looks at its hints, CPU-bound threads doing the same work,
//! and the offender's share of the CPU against theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use morpheus_common::WORKER_ESCAPABLE;

use super::fragile::Fragile;
use super::pin_to;
use super::process::{Board, Child, SharedBoard};

/// Work done in one step of a CPU-bound loop (offender and controls alike).
pub const WORK_STEP: u64 = 10_000;

pub fn work_step(x: &mut u64) {
    for _ in 0..WORK_STEP {
        *x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// A forked child with one escapable worker pinned to `cpu` that never
/// looks at its hints; it registers with whatever loader serves `sock`,
/// again after each restart, and publishes its work and SCB on `board`.
pub fn offender(sock: &str, cpu: usize, board: &SharedBoard) -> Child {
    let board = board.0 as usize;
    let sock = sock.to_string();
    Child::fork(move || {
        // SAFETY: the shared board outlives the child (the parent reaps it first).
        let b = unsafe { &*(board as *const Board) };
        pin_to(cpu);
        while b.go.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut current: Option<(Fragile, u32)> = None;
        let mut last_try: Option<Instant> = None;
        let mut x = 0u64;
        let mut steps = 0u64;
        let publish = |s: &Fragile, slot: u32| {
            b.escalations
                .store(s.escalations(slot).into(), Ordering::Relaxed);
            b.scb_flags
                .store(s.kernel_flags(slot).into(), Ordering::Relaxed);
            b.state.store(s.state(slot).into(), Ordering::Relaxed);
            b.hinted.store(s.hint_seq(slot), Ordering::Relaxed);
        };
        while b.stop.load(Ordering::Relaxed) == 0 {
            if current.is_none()
                && last_try.is_none_or(|t| t.elapsed() >= Duration::from_millis(20))
            {
                last_try = Some(Instant::now());
                if let Some(s) = Fragile::open(&sock)
                    && let Some((slot, _)) = s.register(WORKER_ESCAPABLE)
                {
                    publish(&s, slot);
                    b.registered.store(1, Ordering::Relaxed);
                    b.sessions.fetch_add(1, Ordering::Release);
                    current = Some((s, slot));
                }
            }
            work_step(&mut x);
            b.work.fetch_add(WORK_STEP, Ordering::Relaxed);
            steps += 1;
            if let Some((s, slot)) = &current {
                publish(s, *slot);
                if steps.is_multiple_of(16) && s.closed() {
                    b.registered.store(0, Ordering::Relaxed);
                    current = None;
                }
            }
        }
        0
    })
}

/// CPU-bound threads pinned to `cpu` counting their work, until `stop`.
pub fn counted_hogs(
    n: usize,
    cpu: usize,
    stop: &Arc<AtomicBool>,
) -> (Vec<Arc<AtomicU64>>, Vec<std::thread::JoinHandle<()>>) {
    let counters: Vec<_> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let threads = counters
        .iter()
        .map(|c| {
            let (c, stop) = (c.clone(), stop.clone());
            std::thread::spawn(move || {
                pin_to(cpu);
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    work_step(&mut x);
                    c.fetch_add(WORK_STEP, Ordering::Relaxed);
                }
            })
        })
        .collect();
    (counters, threads)
}

/// The offender's work rate over `window` divided by the controls' mean:
/// about 1 when the CPU is shared fairly.
pub fn offender_share(board: &Board, controls: &[Arc<AtomicU64>], window: Duration) -> f64 {
    let read = || {
        (
            board.work.load(Ordering::Relaxed),
            controls
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>(),
        )
    };
    let (o0, c0) = read();
    std::thread::sleep(window);
    let (o1, c1) = read();
    let control = (c1 - c0) as f64 / controls.len() as f64;
    (o1 - o0) as f64 / control.max(1.0)
}
