// SPDX-License-Identifier: GPL-2.0-only
//! Where the CPU time went during a measurement: the CPU time of this
//! process's threads with a given name prefix (`/proc/self/task/*/schedstat`,
//! nanoseconds on a CPU) and how often they moved between CPUs
//! (`se.nr_migrations` in `/proc/self/task/*/sched`), and the machine's idle
//! time (`/proc/stat`). A strategy that gets less work done could be losing
//! CPU time (to other tasks, or to idle CPUs while work waits) or doing less
//! per CPU second (for example on a CPU its caches are not warm on): these
//! tell which.

use std::collections::HashMap;
use std::time::Duration;

/// The CPU time (ns) and migrations each of this process's threads whose
/// name starts with a prefix had when it was taken, by thread id.
#[derive(Debug, Clone, Default)]
pub struct ThreadTimes(HashMap<u32, (u64, u64)>);

impl ThreadTimes {
    /// The threads named `prefix...` now.
    pub fn now(prefix: &str) -> ThreadTimes {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return ThreadTimes::default();
        };
        let times = tasks
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim_end().starts_with(prefix))
            })
            .filter_map(|t| {
                let tid = t.file_name().to_str()?.parse().ok()?;
                let ns =
                    parse_schedstat(&std::fs::read_to_string(t.path().join("schedstat")).ok()?)?;
                // Absent where the kernel has no scheduler debug info.
                let migrations = std::fs::read_to_string(t.path().join("sched"))
                    .ok()
                    .and_then(|text| parse_migrations(&text))
                    .unwrap_or(0);
                Some((tid, (ns, migrations)))
            })
            .collect();
        ThreadTimes(times)
    }

    /// The CPU time the threads alive now used since `before`: threads
    /// that started since count whole, threads that ended do not count
    /// (take both readings while the threads measured live; others of the
    /// same name, such as a previous runtime's winding down, then do not
    /// disturb the sum).
    pub fn since(&self, before: &ThreadTimes) -> Duration {
        Duration::from_nanos(self.delta(before, |(ns, _)| ns))
    }

    /// How many times the threads alive now moved to another CPU since
    /// `before` (counted as [`ThreadTimes::since`] counts CPU time).
    pub fn migrations_since(&self, before: &ThreadTimes) -> u64 {
        self.delta(before, |(_, migrations)| migrations)
    }

    fn delta(&self, before: &ThreadTimes, field: impl Fn((u64, u64)) -> u64) -> u64 {
        self.0
            .iter()
            .map(|(tid, &now)| {
                let then = before.0.get(tid).map_or(0, |&b| field(b));
                field(now).saturating_sub(then)
            })
            .sum()
    }
}

/// `se.nr_migrations` of a `/proc/.../sched` text.
fn parse_migrations(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("se.nr_migrations"))?;
    line.split(':').nth(1)?.trim().parse().ok()
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
    use std::sync::mpsc::{Receiver, Sender, channel};

    /// The calling thread's CPU time.
    fn own_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec for the kernel to fill.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
            0
        );
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// A thread named `name` that spins until it has used `cpu` of CPU
    /// time, says so, and lives on until told to end.
    fn spinner(
        name: &str,
        cpu: Duration,
    ) -> (std::thread::JoinHandle<()>, Sender<()>, Receiver<()>) {
        let (spun_tx, spun) = channel();
        let (end, end_rx) = channel::<()>();
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let start = own_cpu();
                while own_cpu() - start < cpu {
                    std::hint::spin_loop();
                }
                spun_tx.send(()).unwrap();
                let _ = end_rx.recv();
            })
            .unwrap();
        (t, end, spun)
    }

    #[test]
    fn a_spinning_thread_is_counted_by_its_name_and_others_are_not() {
        let ms = Duration::from_millis;
        // A thread of the same name that ends between the readings (as a
        // previous runtime's does while it winds down) must not lower the
        // sum: it had 50 ms at the first reading.
        let (ending, end_it, spun) = spinner("cputime-spin", ms(50));
        spun.recv().unwrap();
        let before = ThreadTimes::now("cputime-spin");
        drop(end_it);
        ending.join().unwrap();
        let (a, end_a, spun_a) = spinner("cputime-spin", ms(100));
        let (b, end_b, spun_b) = spinner("other-name", ms(100));
        spun_a.recv().unwrap();
        spun_b.recv().unwrap();
        let got = ThreadTimes::now("cputime-spin").since(&before);
        drop((end_a, end_b));
        a.join().unwrap();
        b.join().unwrap();
        // The new thread's 100 ms, not less for the one that ended, nor
        // the other name's 100 ms more.
        assert!(got >= ms(100) && got < ms(150), "{got:?}");
    }

    #[test]
    fn a_thread_moved_between_cpus_counts_its_migrations() {
        if crate::hogs::cpus() < 2 {
            eprintln!("skipped: one CPU, nowhere to move to");
            return;
        }
        let (moved_tx, moved) = channel();
        let (end, end_rx) = channel::<()>();
        let before = ThreadTimes::now("cputime-move");
        let t = std::thread::Builder::new()
            .name("cputime-move".into())
            .spawn(move || {
                for cpu in [0, 1, 0, 1] {
                    crate::hogs::pin_to(cpu).unwrap();
                    let start = own_cpu();
                    while own_cpu() - start < Duration::from_millis(2) {
                        std::hint::spin_loop();
                    }
                }
                moved_tx.send(()).unwrap();
                let _ = end_rx.recv();
            })
            .unwrap();
        moved.recv().unwrap();
        let n = ThreadTimes::now("cputime-move").migrations_since(&before);
        drop(end);
        t.join().unwrap();
        // Pinned to the other CPU three times (and maybe once more to the
        // first, from wherever it started).
        assert!((3..=8).contains(&n), "{n} migrations");
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
        let sched = "x (1, #threads: 1)\n---\nse.exec_start   :   1.5\n\
                     se.nr_migrations                             :                   42\n";
        assert_eq!(parse_migrations(sched), Some(42));
        assert_eq!(parse_migrations("nr_switches : 3\n"), None);
        assert!(machine_idle().is_some());
    }
}
