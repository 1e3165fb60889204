// SPDX-License-Identifier: GPL-2.0-only
//! Background CPU hogs: threads doing [`work_unit`]s until stopped, counting
//! what they got done.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::work::work_unit;

/// Running hog threads; [`Hogs::stop`] ends them.
pub struct Hogs {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl Hogs {
    /// Starts `n` hog threads (pinned to `cpu` when given).
    pub fn start(n: usize, cpu: Option<usize>) -> Hogs {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|i| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("hog-{i}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu {
                            let _ = pin_to(cpu);
                        }
                        let mut units = 0u64;
                        let mut acc = i as u64;
                        while !stop.load(Ordering::Relaxed) {
                            acc = work_unit(acc);
                            units += 1;
                        }
                        std::hint::black_box(acc);
                        units
                    })
                    .expect("cannot spawn a hog thread")
            })
            .collect();
        Hogs { stop, threads }
    }

    /// Stops the hogs; returns the work units each completed.
    pub fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap_or(0))
            .collect()
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on ourselves.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Number of CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hogs_make_progress_and_stop() {
        let h = Hogs::start(2, None);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let counts = h.stop();
        assert_eq!(counts.len(), 2);
        assert!(counts.iter().sum::<u64>() > 0);
    }
}
