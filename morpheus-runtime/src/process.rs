// SPDX-License-Identifier: GPL-2.0-only
//! The per-process state: one [`Process`] per process, created on first
//! use. It owns the configuration, the list of live workers, the
//! [`Session`] with scx_morpheus, the mode state machine and one monitor
//! thread ([`crate::monitor`]). A child of `fork()` starts over with a
//! fresh one ([`Process::after_fork`]).

use std::collections::HashSet;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use morpheus_common::RuntimeMode;

use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::ledger::{Ledger, LedgerSnapshot};
use crate::monitor::mode::{ModeConfig, ModeInputs, ModeMachine};
use crate::session::Session;
use crate::worker::{self, Worker};

/// Per-process state (one per process, see [`Process::get`]).
pub(crate) struct Process {
    config: Config,
    workers: Mutex<Vec<Arc<Worker>>>,
    /// Wakes the monitor when a worker is added, or unparks while the
    /// monitor sleeps with every worker parked.
    monitor_cv: Condvar,
    /// The monitor sleeps with every worker parked, until one unparks
    /// ([`Process::monitor_may_idle`]).
    monitor_idle: AtomicBool,
    monitor_started: std::sync::Once,
    /// The ledgers of exited workers, summed.
    retired: Ledger,
    retired_workers: AtomicU64,
    next_id: AtomicU64,
    mode: AtomicU32,
    machine: Mutex<ModeMachine>,
    session: Session,
    /// PSI `some avg10` as f64 bits; NaN = unknown.
    psi_avg10: AtomicU64,
    escalations: AtomicU64,
    said: Mutex<HashSet<String>>,
}

/// The process state: a leaked box, created on first use. A child after
/// `fork()` starts over with a fresh one (see [`Process::after_fork`]).
static PROCESS: AtomicPtr<Process> = AtomicPtr::new(std::ptr::null_mut());
/// In a forked child: the parent's state, whose configuration the child's
/// fresh state takes (the child never touches anything else of it).
static PARENT: AtomicPtr<Process> = AtomicPtr::new(std::ptr::null_mut());

/// Locks, ignoring poisoning (state stays consistent: counters only).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Process {
    pub(crate) fn new(config: Config) -> Process {
        let cfg = ModeConfig {
            pinned: config.mode,
            pressure_high: config.pressure_high,
            pressure_low: config.pressure_low,
            pressure_hold_ns: config.pressure_hold.as_nanos() as u64,
            defensive_hold_ns: config.defensive_hold.as_nanos() as u64,
        };
        let machine = ModeMachine::new(cfg);
        Process {
            mode: AtomicU32::new(machine.mode().as_u32()),
            machine: Mutex::new(machine),
            session: Session::new(config.enabled && config.sources.kernel),
            config,
            workers: Mutex::new(Vec::new()),
            monitor_cv: Condvar::new(),
            monitor_idle: AtomicBool::new(false),
            monitor_started: std::sync::Once::new(),
            retired: Ledger::default(),
            retired_workers: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            psi_avg10: AtomicU64::new(f64::NAN.to_bits()),
            escalations: AtomicU64::new(0),
            said: Mutex::new(HashSet::new()),
        }
    }

    /// The process state, created from the environment on first use.
    pub(crate) fn get() -> &'static Process {
        match Process::try_get() {
            Some(p) => p,
            None => Process::install(None).unwrap_or_else(|p| p),
        }
    }

    /// The state if it exists (metrics must not create it).
    pub(crate) fn try_get() -> Option<&'static Process> {
        // SAFETY: a non-null pointer is a leaked, never-freed state.
        unsafe { PROCESS.load(Acquire).as_ref() }
    }

    /// Installs an explicit configuration; fails once the process state
    /// exists.
    pub(crate) fn configure(config: Config) -> Result<(), Error> {
        if Process::try_get().is_some() {
            return Err(Error::AlreadyConfigured);
        }
        Process::install(Some(config))
            .map(|_| ())
            .map_err(|_| Error::AlreadyConfigured)
    }

    /// A state as first use would build it, not installed and silent (for
    /// metrics before first use).
    pub(crate) fn unstarted() -> Process {
        Process::new(Process::default_config().0)
    }

    /// Installs a new state: `config`, or in a forked child the parent's
    /// configuration, or the environment's. `Err` holds the state another
    /// thread installed first.
    #[cold]
    fn install(config: Option<Config>) -> Result<&'static Process, &'static Process> {
        let (config, errors) = match config {
            Some(c) => (c, Vec::new()),
            None => Process::default_config(),
        };
        let new = Box::into_raw(Box::new(Process::new(config)));
        match PROCESS.compare_exchange(std::ptr::null_mut(), new, AcqRel, Acquire) {
            Ok(_) => {
                // SAFETY: just leaked, never freed.
                let p: &'static Process = unsafe { &*new };
                Process::register_fork_handler();
                for e in errors {
                    p.say_once(
                        log::Level::Warn,
                        &format!("morpheus: {e}; using the default"),
                    );
                }
                Ok(p)
            }
            Err(winner) => {
                // SAFETY: ours was never shared; the winner is never freed.
                drop(unsafe { Box::from_raw(new) });
                Err(unsafe { &*winner })
            }
        }
    }

    /// The configuration used without an explicit one: the environment's
    /// (with the invalid values found), or in a forked child the parent's
    /// (already reported there).
    fn default_config() -> (Config, Vec<ConfigError>) {
        // SAFETY: a non-null pointer is a leaked, never-freed state.
        if let Some(parent) = unsafe { PARENT.load(Acquire).as_ref() } {
            return (parent.config.clone(), Vec::new());
        }
        let mut config = Config::default();
        let errors = config.apply_env(|k| std::env::var(k).ok());
        (config, errors)
    }

    /// Registers [`Process::after_fork`] as a `pthread_atfork` child
    /// handler, once per process image (a child inherits it).
    fn register_fork_handler() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            extern "C" fn child() {
                Process::after_fork();
            }
            // SAFETY: a plain function pointer that lives forever.
            let rc = unsafe { libc::pthread_atfork(None, None, Some(child)) };
            if rc != 0 {
                log::warn!(
                    "morpheus: pthread_atfork failed ({}): a child forked from this process \
                     must not use Morpheus",
                    std::io::Error::from_raw_os_error(rc)
                );
            }
        });
    }

    /// In the child of `fork()`, on its only thread: forget the parent's
    /// state instead of using it. The parent's registrations, SCBs, session
    /// and monitor thread are the parent's (its SCB mapping is shared, so a
    /// write would land in the parent's slot), and its locks may have been
    /// held by threads that do not exist here. The child's next checkpoint
    /// builds a fresh state with the same configuration: a new session and
    /// registration when the scheduler runs, the budget source otherwise.
    /// Async-signal-safe: atomic swaps, `close`, TLS stores.
    fn after_fork() {
        let old = PROCESS.swap(std::ptr::null_mut(), AcqRel);
        if !old.is_null() {
            PARENT.store(old, Release);
        }
        crate::session::close_after_fork();
        worker::forget_after_fork();
    }

    /// The process's configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The session with scx_morpheus.
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// Logs `msg` the first time it is said in this process.
    pub(crate) fn say_once(&self, level: log::Level, msg: &str) {
        if lock(&self.said).insert(msg.to_string()) {
            log::log!(level, "{msg}");
        }
    }

    pub(crate) fn next_worker_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    /// The live workers (locked).
    pub(crate) fn workers(&self) -> MutexGuard<'_, Vec<Arc<Worker>>> {
        lock(&self.workers)
    }

    /// Waits until a worker is added or `timeout` passes (the monitor).
    pub(crate) fn wait_for_workers<'a>(
        &self,
        workers: MutexGuard<'a, Vec<Arc<Worker>>>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Vec<Arc<Worker>>> {
        match timeout {
            None => self
                .monitor_cv
                .wait(workers)
                .unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                self.monitor_cv
                    .wait_timeout(workers, t)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        }
    }

    /// Whether the monitor may sleep without a budget deadline: every one
    /// of `workers` is parked. Announces the sleep first, so that a worker
    /// that unparks from now on wakes it ([`Process::worker_unparked`]):
    /// either the worker sees the announcement or this check sees the
    /// worker unparked (both sequentially consistent). Called with the
    /// worker list locked, which the monitor keeps until it waits.
    pub(crate) fn monitor_may_idle(&self, workers: &[Arc<Worker>]) -> bool {
        self.monitor_idle.store(true, SeqCst);
        if workers.iter().all(|w| w.is_parked()) {
            return true;
        }
        self.monitor_idle.store(false, Relaxed);
        false
    }

    /// The monitor woke up: unparking workers need not wake it.
    pub(crate) fn monitor_awake(&self) {
        self.monitor_idle.store(false, Relaxed);
    }

    /// A worker unparked: wakes the monitor if it sleeps with every worker
    /// parked (else one load). Taking the worker lock before notifying
    /// means the monitor is already waiting, not between its check and
    /// its wait.
    pub(crate) fn worker_unparked(&self) {
        if self.monitor_idle.load(SeqCst) && self.monitor_idle.swap(false, SeqCst) {
            let _workers = lock(&self.workers);
            self.monitor_cv.notify_all();
        }
    }

    /// The automatic (or configured) process mode.
    pub(crate) fn mode(&self) -> RuntimeMode {
        RuntimeMode::try_from(self.mode.load(Relaxed)).unwrap_or(RuntimeMode::Deterministic)
    }

    /// Feeds the mode machine one observation at `now_ns`; adopts and logs
    /// the mode it chooses.
    pub(crate) fn update_mode(&self, now_ns: u64, inputs: ModeInputs) {
        let mode = lock(&self.machine).update(now_ns, inputs);
        let old = self.mode.swap(mode.as_u32(), Relaxed);
        if old != mode.as_u32() {
            log::info!("morpheus: mode is now {mode}");
        }
    }

    /// A worker has just registered with the kernel: kernel hints are
    /// honoured from now on (see `ModeMachine::worker_registered`).
    pub(crate) fn worker_registered(&self) {
        let mode = lock(&self.machine).worker_registered();
        let old = self.mode.swap(mode.as_u32(), Relaxed);
        if old != mode.as_u32() {
            log::info!("morpheus: mode is now {mode}");
        }
    }

    /// The mode machine as it is now (metrics).
    pub(crate) fn mode_machine(&self) -> ModeMachine {
        lock(&self.machine).clone()
    }

    /// Whether PSI counts as an overload now.
    pub(crate) fn overloaded(&self) -> bool {
        lock(&self.machine).overloaded()
    }

    /// PSI `some avg10`, if known.
    pub(crate) fn psi(&self) -> Option<f64> {
        let v = f64::from_bits(self.psi_avg10.load(Relaxed));
        (!v.is_nan()).then_some(v)
    }

    /// Records PSI `some avg10` (`None`: unknown).
    pub(crate) fn set_psi(&self, psi: Option<f64>) {
        self.psi_avg10
            .store(psi.unwrap_or(f64::NAN).to_bits(), Relaxed);
    }

    /// Escalations observed against this process's workers.
    pub(crate) fn escalations(&self) -> u64 {
        self.escalations.load(Relaxed)
    }

    /// Counts `n` more escalations.
    pub(crate) fn add_escalations(&self, n: u64) {
        self.escalations.fetch_add(n, Relaxed);
    }

    /// The summed ledgers of exited workers, and how many they were.
    pub(crate) fn retired(&self) -> (LedgerSnapshot, u64) {
        (self.retired.snapshot(), self.retired_workers.load(Relaxed))
    }

    /// A new worker: listed, watched by the monitor, registered with the
    /// kernel if possible (on its own thread, so it uses its SCB at once).
    pub(crate) fn add_worker(&'static self, w: &Arc<Worker>) {
        if !self.config.enabled {
            return;
        }
        lock(&self.workers).push(w.clone());
        self.monitor_started.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("morpheus-monitor".into())
                .spawn(move || crate::monitor::run(self));
            if let Err(e) = spawned {
                self.say_once(
                    log::Level::Warn,
                    &format!("morpheus: cannot start the monitor thread ({e}); budget and pressure sources are off"),
                );
            }
        });
        self.monitor_cv.notify_all();
        if w.wants_kernel() {
            self.session.register_new(self, w);
            // If the monitor registered it first, it offered the slot:
            // switch now (this is the owner thread), not at a later
            // checkpoint, so that a critical section opened next reaches
            // the kernel.
            w.adopt_offered();
        }
    }

    /// A worker whose thread stops: unregistered, its ledger folded into
    /// the process's.
    pub(crate) fn remove_worker(&self, w: &Arc<Worker>) {
        {
            let mut list = lock(&self.workers);
            let Some(i) = list.iter().position(|x| Arc::ptr_eq(x, w)) else {
                return;
            };
            list.swap_remove(i);
            w.ledger().add_into(&self.retired);
            self.retired_workers.fetch_add(1, Relaxed);
        }
        if let Some(reg) = w.take_registration() {
            self.session.unregister(self, reg);
        }
    }
}
