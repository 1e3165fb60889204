// SPDX-License-Identifier: GPL-2.0-only
//! The clocks Morpheus reads: `CLOCK_MONOTONIC`, in which the kernel
//! stamps the SCB (`bpf_ktime_get_ns()`: a hint's issue time and
//! deadline), and a thread's CPU time.

use std::time::Duration;

/// Reads `clock` in nanoseconds; `None` if the kernel refuses (a CPU-time
/// clock of a thread that has exited, say).
pub fn read_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel fills a valid timespec.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The current `CLOCK_MONOTONIC` time in nanoseconds: the clock of the
/// SCB's timestamps.
pub fn monotonic_ns() -> u64 {
    read_ns(libc::CLOCK_MONOTONIC).unwrap_or(0)
}

/// The CPU time the calling thread has used.
pub fn thread_cpu() -> Duration {
    Duration::from_nanos(read_ns(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_counts_this_threads_work_only() {
        let before = thread_cpu();
        let wall = std::time::Instant::now();
        // Sleeping uses no CPU; spinning does.
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu() - before;
        let spin_start = thread_cpu();
        while thread_cpu() - spin_start < Duration::from_millis(20) {}
        assert!(slept < Duration::from_millis(15), "slept {slept:?} of CPU");
        assert!(wall.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn monotonic_never_goes_back() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
        assert!(read_ns(libc::CLOCK_MONOTONIC).unwrap() >= b);
        // An invalid clock id is refused, not read as zero.
        assert_eq!(read_ns(-1234), None);
    }
}
