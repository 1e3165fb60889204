// SPDX-License-Identifier: GPL-2.0-only
//! Where the CPU time went during a measurement: the CPU time of this
//! process's threads with a given name prefix (`/proc/self/task/*/schedstat`,
//! nanoseconds on a CPU), and the machine's idle time (`/proc/stat`). A
//! strategy that gets less work done could be losing CPU time (to other
//! tasks, or to idle CPUs while work waits) or doing less per CPU second:
//! these tell which.

use std::time::Duration;

/// CPU time used so far by this process's threads whose name starts with
/// `prefix` (threads that exited are not counted: take both readings while
/// the threads live).
pub fn threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| parse_schedstat(&s))
        .sum();
    Duration::from_nanos(ns)
}

/// The first field of a schedstat line: nanoseconds spent on a CPU.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Idle time of all CPUs so far (idle and iowait, from `/proc/stat`'s
/// `cpu` line), or `None` where it cannot be read.
pub fn machine_idle() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_proc_stat_idle(&text, clock_ticks_per_s()?)
}

fn parse_proc_stat_idle(text: &str, ticks_per_s: u64) -> Option<Duration> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait ...
    let ticks = f.get(3)? + f.get(4)?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / ticks_per_s))
}

fn clock_ticks_per_s() -> Option<u64> {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (t > 0).then_some(t as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinning_thread_is_counted_by_its_name_and_others_are_not() {
        let spin = |name: &str, d: Duration| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let start = std::time::Instant::now();
                    while start.elapsed() < d {
                        std::hint::spin_loop();
                    }
                    std::thread::sleep(Duration::from_millis(300));
                })
                .unwrap()
        };
        let before = threads_cpu("cputime-spin");
        let a = spin("cputime-spin", Duration::from_millis(100));
        let b = spin("other-name", Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(200));
        let got = threads_cpu("cputime-spin") - before;
        a.join().unwrap();
        b.join().unwrap();
        // At most its 100 ms of spinning (plus scheduling slop), not the
        // other thread's too; at least some of it even on a busy machine.
        assert!(got > Duration::from_millis(5), "{got:?}");
        assert!(got < Duration::from_millis(190), "{got:?}");
    }

    #[test]
    fn proc_stat_idle_counts_idle_and_iowait() {
        let text = "cpu  10 0 5 200 50 0 0 0 0 0\ncpu0 5 0 2 100 25 0 0 0 0 0\n";
        assert_eq!(
            parse_proc_stat_idle(text, 100),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(parse_proc_stat_idle("cpu0 1 2 3 4 5\n", 100), None);
        assert_eq!(parse_schedstat("123456 789 10\n"), Some(123_456));
        assert!(machine_idle().is_some());
    }
}
