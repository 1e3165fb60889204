// SPDX-License-Identifier: GPL-2.0-only
//! The runtime-agnostic core: per-process state, hint sources, registration,
//! ledger, modes and metrics. No async runtime dependency; the Tokio layer
//! (`crate::tokio`) and the Python bindings build on it.
//!
//! One [`Process`] exists per process, created on first use. It owns the
//! list of live workers, the connection to scx_morpheus, the mode state
//! machine and one monitor thread (see [`budget`]).

pub(crate) mod budget;
pub(crate) mod client;
pub mod config;
pub(crate) mod critical;
pub mod error;
pub mod ledger;
pub mod metrics;
pub mod mode;
pub mod pressure;
pub(crate) mod scb;
pub(crate) mod worker;

use std::collections::HashSet;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use morpheus_common::{RuntimeKind, RuntimeMode};

use self::client::{ClientError, Connection};
use self::config::Config;
use self::error::Error;
use self::ledger::Ledger;
use self::mode::{ModeConfig, ModeMachine};
use self::worker::Worker;

/// State of the connection to scx_morpheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrationState {
    /// Morpheus or its kernel source is disabled by configuration.
    Disabled,
    /// Not tried yet (no worker has attached).
    Idle,
    /// No usable scheduler (absent, stopped, refused or incompatible): the
    /// budget source works alone and the runtime retries periodically.
    Unavailable,
    /// A session with scx_morpheus is open.
    Connected,
}

impl RegistrationState {
    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationState::Disabled => "disabled",
            RegistrationState::Idle => "idle",
            RegistrationState::Unavailable => "unavailable",
            RegistrationState::Connected => "connected",
        }
    }
}

pub(crate) struct ClientState {
    pub(crate) conn: Option<Connection>,
    pub(crate) session: u64,
    pub(crate) state: RegistrationState,
    pub(crate) reason: Option<String>,
    pub(crate) last_attempt: Option<Instant>,
    pub(crate) connects: u64,
}

/// Per-process state (one per process, see [`Process::get`]).
pub(crate) struct Process {
    pub(crate) config: Config,
    pub(crate) workers: Mutex<Vec<Arc<Worker>>>,
    pub(crate) monitor_cv: Condvar,
    monitor_started: std::sync::Once,
    pub(crate) retired: Ledger,
    pub(crate) retired_workers: AtomicU64,
    next_id: AtomicU64,
    mode: AtomicU32,
    pub(crate) machine: Mutex<ModeMachine>,
    pub(crate) client: Mutex<ClientState>,
    /// PSI `some avg10` as f64 bits; NaN = unknown.
    pub(crate) psi_avg10: AtomicU64,
    pub(crate) escalations: AtomicU64,
    said: Mutex<HashSet<String>>,
}

/// The process state: a leaked box, created on first use. A child after
/// `fork()` starts over with a fresh one (see [`Process::after_fork`]).
static PROCESS: AtomicPtr<Process> = AtomicPtr::new(std::ptr::null_mut());
/// In a forked child: the parent's state, whose configuration the child's
/// fresh state takes (the child never touches anything else of it).
static PARENT: AtomicPtr<Process> = AtomicPtr::new(std::ptr::null_mut());
/// The descriptor of the open session with scx_morpheus (-1 if none),
/// mirrored here so a forked child can close its copy without locking.
static SESSION_FD: AtomicI32 = AtomicI32::new(-1);

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
        let state = if config.enabled && config.sources.kernel {
            RegistrationState::Idle
        } else {
            RegistrationState::Disabled
        };
        Process {
            mode: AtomicU32::new(machine.mode().as_u32()),
            machine: Mutex::new(machine),
            config,
            workers: Mutex::new(Vec::new()),
            monitor_cv: Condvar::new(),
            monitor_started: std::sync::Once::new(),
            retired: Ledger::default(),
            retired_workers: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            client: Mutex::new(ClientState {
                conn: None,
                session: 0,
                state,
                reason: None,
                last_attempt: None,
                connects: 0,
            }),
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

    /// The configuration used without [`crate::init`]: the environment's
    /// (with the invalid values found), or in a forked child the parent's
    /// (already reported there).
    fn default_config() -> (Config, Vec<config::ConfigError>) {
        // SAFETY: a non-null pointer is a leaked, never-freed state.
        if let Some(parent) = unsafe { PARENT.load(Acquire).as_ref() } {
            return (parent.config.clone(), Vec::new());
        }
        let mut config = Config::default();
        let errors = config.apply_env(|k| std::env::var(k).ok());
        (config, errors)
    }

    /// A state as first use would build it, not installed and silent (for
    /// metrics before first use).
    pub(crate) fn unstarted() -> Process {
        Process::new(Process::default_config().0)
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
        let fd = SESSION_FD.swap(-1, Relaxed);
        if fd >= 0 {
            // SAFETY: the child's copy of the parent's session socket; the
            // parent's (leaked) state never uses it in this process again.
            unsafe { libc::close(fd) };
        }
        worker::forget_after_fork();
    }

    /// Installs an explicit configuration; fails once the process state
    /// exists.
    pub(crate) fn init(config: Config) -> Result<(), Error> {
        if Process::try_get().is_some() {
            return Err(Error::AlreadyInitialized);
        }
        Process::install(Some(config))
            .map(|_| ())
            .map_err(|_| Error::AlreadyInitialized)
    }

    /// The state if it exists (metrics must not create it).
    pub(crate) fn try_get() -> Option<&'static Process> {
        // SAFETY: a non-null pointer is a leaked, never-freed state.
        unsafe { PROCESS.load(Acquire).as_ref() }
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

    /// The automatic (or configured) process mode.
    pub(crate) fn mode(&self) -> RuntimeMode {
        RuntimeMode::try_from(self.mode.load(Relaxed)).unwrap_or(RuntimeMode::Deterministic)
    }

    pub(crate) fn set_mode(&self, mode: RuntimeMode) {
        let old = self.mode.swap(mode.as_u32(), Relaxed);
        if old != mode.as_u32() {
            log::info!("morpheus: mode is now {mode}");
        }
    }

    /// PSI `some avg10`, if known.
    pub(crate) fn psi(&self) -> Option<f64> {
        let v = f64::from_bits(self.psi_avg10.load(Relaxed));
        (!v.is_nan()).then_some(v)
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
                .spawn(move || budget::run(self));
            if let Err(e) = spawned {
                self.say_once(
                    log::Level::Warn,
                    &format!("morpheus: cannot start the monitor thread ({e}); budget and pressure sources are off"),
                );
            }
        });
        self.monitor_cv.notify_all();
        if w.want_kernel.load(Relaxed) {
            let mut c = lock(&self.client);
            if c.conn.is_none() && c.last_attempt.is_none() {
                self.connect(&mut c, w.kind);
            }
            if c.conn.is_some() {
                self.register(&mut c, w, true);
            }
            drop(c);
            // If the monitor registered it first, it offered the slot:
            // switch now (this is the owner thread), not at a later
            // checkpoint, so that a critical section opened next reaches
            // the kernel.
            w.adopt_pending();
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
            w.ledger.add_into(&self.retired);
            self.retired_workers.fetch_add(1, Relaxed);
        }
        let reg = lock(&w.reg).take();
        if let Some(reg) = reg {
            let mut c = lock(&self.client);
            if c.session == reg.session
                && let Some(conn) = &c.conn
                && let Err(e) = conn.unregister(reg.slot, reg.generation)
            {
                self.say_once(
                    log::Level::Warn,
                    &format!("morpheus: unregistering a worker: {e}"),
                );
                if e.drops_connection() {
                    self.disconnect(&mut c, &e);
                }
            }
        }
    }

    /// Opens a session (client lock held).
    pub(crate) fn connect(&self, c: &mut ClientState, kind: RuntimeKind) -> bool {
        c.last_attempt = Some(Instant::now());
        let timeout = std::time::Duration::from_secs(1);
        match Connection::open(&self.config.socket_path, kind, timeout) {
            Ok(conn) => {
                log::info!(
                    "morpheus: connected to scx_morpheus at {} ({} slots, grace {} ms)",
                    self.config.socket_path.display(),
                    conn.max_workers,
                    conn.grace_ns / 1_000_000
                );
                SESSION_FD.store(conn.raw_fd(), Relaxed);
                c.conn = Some(conn);
                c.session += 1;
                c.connects += 1;
                c.state = RegistrationState::Connected;
                c.reason = None;
                true
            }
            Err(e) => {
                let level = match e {
                    ClientError::NoScheduler(_) => log::Level::Info,
                    _ => log::Level::Warn,
                };
                self.say_once(level, &format!("morpheus: {e}"));
                c.state = RegistrationState::Unavailable;
                c.reason = Some(e.to_string());
                false
            }
        }
    }

    /// Drops the session: every worker falls back to the budget source.
    pub(crate) fn disconnect(&self, c: &mut ClientState, why: &ClientError) {
        self.say_once(log::Level::Warn, &format!("morpheus: {why}"));
        SESSION_FD.store(-1, Relaxed);
        c.conn = None;
        c.state = RegistrationState::Unavailable;
        c.reason = Some(why.to_string());
        c.last_attempt = Some(Instant::now());
        for w in lock(&self.workers).iter() {
            *lock(&w.reg) = None;
        }
    }

    /// Registers `w` (client lock held, connection open). On its own thread
    /// the worker switches to its slot at once; otherwise at its next
    /// checkpoint.
    pub(crate) fn register(&self, c: &mut ClientState, w: &Worker, own_thread: bool) {
        let Some(conn) = &c.conn else { return };
        if w.registration().is_some() {
            // The attaching thread and the monitor may both try (each
            // under the client lock): the first one did it.
            return;
        }
        let flags = if w.escapable {
            morpheus_common::WORKER_ESCAPABLE
        } else {
            0
        };
        match conn.register(w.tid, flags, w.kind) {
            Ok((slot, generation)) => {
                let scb = conn.scb(slot);
                w.esc_seen
                    // SAFETY: a slot of a never-unmapped mapping.
                    .store(
                        unsafe { scb::ScbRef::new(scb) }.escalations().load(Relaxed),
                        Relaxed,
                    );
                if own_thread {
                    w.adopt(scb, conn.grace_ns);
                } else {
                    w.offer_scb(scb, conn.grace_ns);
                }
                *lock(&w.reg) = Some(worker::Reg {
                    slot,
                    generation,
                    session: c.session,
                    scb,
                });
            }
            Err(e) => {
                if let ClientError::System(_) = e {
                    // pidfd_open unsupported or the like: will not improve.
                    w.want_kernel.store(false, Relaxed);
                }
                if e.drops_connection() {
                    self.disconnect(c, &e);
                } else {
                    self.say_once(
                        log::Level::Warn,
                        &format!("morpheus: worker not registered: {e}"),
                    );
                    c.reason = Some(e.to_string());
                }
            }
        }
    }
}
