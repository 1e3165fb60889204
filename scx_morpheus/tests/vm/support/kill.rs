// SPDX-License-Identifier: GPL-2.0-only
//! Killing the loader: what a kill must leave behind (the default
//! scheduler within a bound, no pin, no socket served), and reproducible
//! pseudo-random moments to kill it at.

use std::time::{Duration, Instant};

use super::*;

/// How long the machine may stay on sched_ext after the loader is
/// SIGKILLed: SECURITY.md promises one second. Under software emulation
/// (the test VM without KVM, 10-50x slower) tearing down the killed
/// process alone takes 0.4-1.5 s, so a VM run allows ten times as much;
/// the measured figures are printed and recorded in SECURITY.md.
pub fn fallback_bound() -> Duration {
    if std::env::var("MORPHEUS_IN_VM").is_ok_and(|v| v == "1") {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(1)
    }
}

/// Whether the machine runs on the default scheduler: sched_ext disabled and
/// no `root/ops`.
pub fn on_default_scheduler() -> bool {
    sched_ext_state() == "disabled" && attached_ops().is_none()
}

/// BPF objects pinned by anyone named like us (the loader pins nothing; a
/// pin would outlive it and could block or confuse the next start).
pub fn morpheus_pins() -> Vec<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("morpheus"))
                .collect()
        })
        .unwrap_or_default()
}

/// splitmix64: the fault moments are pseudo-random but reproducible from
/// the printed seed (`MORPHEUS_FAULT_SEED=<seed>` replays a run).
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let seed = std::env::var("MORPHEUS_FAULT_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("fault seed {seed} (replay with MORPHEUS_FAULT_SEED={seed})");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration uniformly in `lo..=hi` milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}

/// What one SIGKILL of the loader showed.
pub struct Killed {
    /// From the signal to the default scheduler.
    pub to_default: Duration,
    /// From the signal to the loader's exit (reaped).
    pub to_exit: Duration,
    /// Whether the signal killed it (it may have exited by itself first).
    pub by_the_signal: bool,
}

/// SIGKILLs the loader process `pid`, measuring the way back to the
/// default scheduler while `reap` waits for the process; `reap` returns
/// whether the signal killed it.
pub fn sigkill_pid(pid: i32, reap: impl FnOnce() -> bool) -> Killed {
    let t0 = Instant::now();
    // SAFETY: kill(2) of our own child (reaped below, so the pid is ours).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for(Duration::from_secs(30), on_default_scheduler);
    let to_default = t0.elapsed();
    let by_the_signal = reap();
    Killed {
        to_default,
        to_exit: t0.elapsed(),
        by_the_signal,
    }
}

/// SIGKILLs a running loader (see [`sigkill_pid`]).
pub fn sigkill(loader: Loader) -> Killed {
    sigkill_pid(loader.pid(), move || {
        let exit = loader.wait(Duration::from_secs(30));
        std::os::unix::process::ExitStatusExt::signal(&exit.status) == Some(libc::SIGKILL)
    })
}

/// Asserts what every kill must leave behind: the default scheduler within
/// the bound, no pin, and a socket nobody serves.
pub fn check_after_kill(what: &str, k: &Killed, socket: &str) {
    println!(
        "{what}: default scheduler {:.0} ms after SIGKILL, loader reaped after {:.0} ms{} (state {}, ops {:?})",
        k.to_default.as_secs_f64() * 1e3,
        k.to_exit.as_secs_f64() * 1e3,
        if k.by_the_signal {
            ""
        } else {
            ", it had exited by itself"
        },
        sched_ext_state(),
        attached_ops()
    );
    assert!(
        on_default_scheduler(),
        "{what}: still on sched_ext 30 s after SIGKILL (state {})",
        sched_ext_state()
    );
    assert!(
        k.to_default <= fallback_bound(),
        "{what}: the default scheduler took {:?} (bound {:?})",
        k.to_default,
        fallback_bound()
    );
    assert!(
        morpheus_pins().is_empty(),
        "{what}: BPF pins left behind: {:?}",
        morpheus_pins()
    );
    assert!(
        crate::support::client::connect(socket.as_ref()).is_err(),
        "{what}: something still serves {socket}"
    );
}

/// How long a loader start-up may take, to place a kill inside it: BPF
/// verification dominates, ~13 s under emulation, well under 1 s natively.
pub fn start_up_window() -> Duration {
    if std::env::var("MORPHEUS_IN_VM").is_ok_and(|v| v == "1") {
        Duration::from_secs(12)
    } else {
        Duration::from_secs(1)
    }
}
