// SPDX-License-Identifier: GPL-2.0-only
//! Where the CPU time went during a measurement: the CPU time of this
//! process's threads with a given name prefix (`/proc/self/task/*/schedstat`,
//! nanoseconds on a CPU), the part of it spent in the kernel (`stime` of
//! `/proc/self/task/*/stat`, sampled at the tick), how often they moved
//! between CPUs (`se.nr_migrations` in `/proc/self/task/*/sched`), and the
//! machine's idle time (`/proc/stat`). A strategy that gets less work done could be losing
//! CPU time (to other tasks, or to idle CPUs while work waits) or doing less
//! per CPU second (for example on a CPU its caches are not warm on): these
//! tell which.

use std::collections::HashMap;
use std::time::Duration;

/// The CPU time, system time and migrations each of this process's
/// threads whose name starts with a prefix had when it was taken, by
/// thread id.
#[derive(Debug, Clone, Default)]
pub struct ThreadTimes(HashMap<u32, Counters>);

/// One thread's readings.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// Nanoseconds on a CPU.
    cpu_ns: u64,
    /// Nanoseconds of it in the kernel (clock-tick resolution).
    system_ns: u64,
    /// Moves to another CPU (0 where the kernel has no scheduler debug info).
    migrations: u64,
}

impl ThreadTimes {
    /// The threads named `prefix...` now.
    pub fn now(prefix: &str) -> ThreadTimes {
        let (Ok(tasks), Some(ticks_per_s)) =
            (std::fs::read_dir("/proc/self/task"), clock_ticks_per_s())
        else {
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
                let cpu_ns =
                    parse_schedstat(&std::fs::read_to_string(t.path().join("schedstat")).ok()?)?;
                let system_ticks =
                    parse_stat_stime(&std::fs::read_to_string(t.path().join("stat")).ok()?)?;
                // Absent where the kernel has no scheduler debug info.
                let migrations = std::fs::read_to_string(t.path().join("sched"))
                    .ok()
                    .and_then(|text| parse_migrations(&text))
                    .unwrap_or(0);
                let system_ns = system_ticks * 1_000_000_000 / ticks_per_s;
                Some((
                    tid,
                    Counters {
                        cpu_ns,
                        system_ns,
                        migrations,
                    },
                ))
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
        Duration::from_nanos(self.delta(before, |c| c.cpu_ns))
    }

    /// The part of [`ThreadTimes::since`] spent in the kernel (system
    /// calls, and the scheduler's work done on the thread's time), at the
    /// resolution of the clock tick.
    pub fn system_since(&self, before: &ThreadTimes) -> Duration {
        Duration::from_nanos(self.delta(before, |c| c.system_ns))
    }

    /// How many times the threads alive now moved to another CPU since
    /// `before` (counted as [`ThreadTimes::since`] counts CPU time).
    pub fn migrations_since(&self, before: &ThreadTimes) -> u64 {
        self.delta(before, |c| c.migrations)
    }

    fn delta(&self, before: &ThreadTimes, field: impl Fn(Counters) -> u64) -> u64 {
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

/// `stime` (clock ticks in the kernel) of a `/proc/.../stat` line: the
/// 15th field, the 13th after the command name's closing parenthesis (a
/// command name may hold spaces and parentheses).
fn parse_stat_stime(text: &str) -> Option<u64> {
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_whitespace().nth(12)?.parse().ok()
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

    use morpheus_common::clock::thread_cpu;

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
                let start = thread_cpu();
                while thread_cpu() - start < cpu {
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
    fn time_in_system_calls_counts_as_system_time_and_spinning_does_not() {
        let ms = Duration::from_millis;
        // Spins on the vDSO's clock (no system call) for 300 ms.
        let spin = std::thread::Builder::new()
            .name("cputime-user".into())
            .spawn(|| {
                let start = std::time::Instant::now();
                while start.elapsed() < Duration::from_millis(300) {
                    std::hint::spin_loop();
                }
                ThreadTimes::now("cputime-user")
            })
            .unwrap();
        let (done_tx, done) = channel();
        let (end, end_rx) = channel::<()>();
        let before = ThreadTimes::now("cputime-sys");
        let sys = std::thread::Builder::new()
            .name("cputime-sys".into())
            .spawn(move || {
                // Reading /dev/zero spends nearly all its time in the
                // kernel, clearing the buffer.
                let mut zero = std::fs::File::open("/dev/zero").unwrap();
                let mut buf = vec![1u8; 1 << 20];
                let start = thread_cpu();
                while thread_cpu() - start < ms(300) {
                    std::io::Read::read_exact(&mut zero, &mut buf).unwrap();
                }
                done_tx.send(()).unwrap();
                let _ = end_rx.recv();
            })
            .unwrap();
        done.recv().unwrap();
        let after = ThreadTimes::now("cputime-sys");
        let (cpu, system) = (after.since(&before), after.system_since(&before));
        drop(end);
        sys.join().unwrap();
        let user_only = spin.join().unwrap();
        let spin_system = user_only.system_since(&ThreadTimes::default());
        let spin_cpu = user_only.since(&ThreadTimes::default());
        assert!(system * 2 > cpu, "system {system:?} of {cpu:?}");
        assert!(
            spin_system * 4 < spin_cpu,
            "spinning: system {spin_system:?} of {spin_cpu:?}"
        );
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
                    let start = thread_cpu();
                    while thread_cpu() - start < Duration::from_millis(2) {
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
        let stat = "12 (a b) c) R 1 12 12 0 -1 4194560 100 0 0 0 731 42 0 0 20 0 1\n";
        assert_eq!(parse_stat_stime(stat), Some(42));
        assert_eq!(parse_stat_stime("12 (x) R 1 2\n"), None);
        assert!(machine_idle().is_some());
    }
}
