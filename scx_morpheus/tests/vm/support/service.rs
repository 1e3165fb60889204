// SPDX-License-Identifier: GPL-2.0-only
//! A Tokio service on morpheus-runtime whose workers checkpoint all the
//! time, as a real service would, for tests that break the loader under it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::spin_us;

/// A Tokio service on morpheus-runtime (default socket): its workers
/// checkpoint continuously and fall back / re-register by themselves.
pub struct Service {
    pub rt: Option<tokio::runtime::Runtime>,
    pub stop: Arc<AtomicBool>,
    pub progress: Arc<AtomicU64>,
    pub tids: Arc<Mutex<Vec<i32>>>,
    pub workers: usize,
}

impl Service {
    pub fn start(workers: usize) -> Service {
        let tids = Arc::new(Mutex::new(Vec::new()));
        let rt = {
            let tids = tids.clone();
            morpheus_runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .on_thread_start(move || {
                    // SAFETY: gettid has no preconditions.
                    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
                    tids.lock().unwrap().push(tid);
                })
                .enable_all()
                .build()
                .unwrap()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        // Light load (about a quarter of a CPU per worker): the loader's
        // BPF verification must not compete with busy workers under
        // emulation; the kills under full load bring their own hogs.
        for _ in 0..workers {
            let (stop, progress) = (stop.clone(), progress.clone());
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    spin_us(500);
                    morpheus_runtime::checkpoint!();
                    progress.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
        }
        Service {
            rt: Some(rt),
            stop,
            progress,
            tids,
            workers,
        }
    }

    /// How many of our workers hold a slot, and whether the session is open.
    pub fn registered(&self) -> (usize, bool) {
        let s = morpheus_runtime::metrics::snapshot();
        let tids = self.tids.lock().unwrap().clone();
        let n = s
            .workers
            .iter()
            .filter(|w| tids.contains(&w.tid) && w.slot.is_some())
            .count();
        (
            n,
            s.registration == morpheus_runtime::RegistrationState::Connected,
        )
    }

    pub fn all_registered(&self) -> bool {
        self.registered() == (self.workers, true)
    }

    pub fn fell_back(&self) -> bool {
        self.registered() == (0, false)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(10));
        }
    }
}
