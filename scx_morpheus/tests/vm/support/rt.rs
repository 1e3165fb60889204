// SPDX-License-Identifier: GPL-2.0-only
//! A real-time thread that keeps interrupting a CPU: a task outside
//! sched_ext (as the CPU stopper of the soft-lockup watchdog is, every few
//! seconds on any machine). The kernel puts the task it interrupts back at
//! the head of its CPU's queue, with no decision of the scheduler's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pin_to;

/// The interrupting thread; [`Interrupter::stop`] ends it.
pub struct Interrupter {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl Interrupter {
    /// A SCHED_FIFO thread on `cpu` that spins `busy` every `every`.
    pub fn start(cpu: usize, every: Duration, busy: Duration) -> Interrupter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_to(cpu);
                let param = libc::sched_param { sched_priority: 1 };
                // SAFETY: a valid sched_param for this thread (0: itself).
                let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
                assert_eq!(rc, 0, "SCHED_FIFO: {}", std::io::Error::last_os_error());
                let mut interruptions = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    let t = Instant::now();
                    while t.elapsed() < busy {
                        std::hint::spin_loop();
                    }
                    interruptions += 1;
                }
                interruptions
            })
        };
        Interrupter { stop, thread }
    }

    /// Stops the thread; returns how many times it interrupted.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("interrupter")
    }
}
