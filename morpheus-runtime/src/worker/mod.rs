// SPDX-License-Identifier: GPL-2.0-only
//! Worker threads: their state, the checkpoint fast path and slow path.
//!
//! # The mechanism
//!
//! Every thread has two const-initialised thread-local words ([`hot`]):
//!
//! - `scb`: the SCB whose kernel line is polled, either the worker's slot in
//!   scx_morpheus's array or a process-local SCB no kernel writes;
//! - `expected`: the value of `scb.k.hint_seq` that means "nothing to do".
//!
//! A checkpoint is "`hint_seq` (relaxed load) `!= expected`?". The kernel
//! signals by bumping `hint_seq`; the in-process sources (budget, pressure,
//! defensive mode) signal by setting [`POISON`] in `expected` from the
//! monitor thread. One compare covers them all, and nothing on the fast path
//! writes memory, reads a clock or calls the kernel.
//!
//! A thread that is not a worker yet has `expected` poisoned and `scb`
//! pointing at a static zeroed SCB: its first checkpoint takes the slow path
//! ([`decide`]) and attaches it, so there is no null check on the fast path.
//! The monitor thread writes `expected` of other threads through a pointer
//! to their `HOT`, valid while the worker is listed (it is unlisted by the
//! thread's destructor, before the thread's TLS block goes away).
//!
//! A [`Worker`] holds the rest, grouped by who writes it ([`state`]); the
//! SCB it polls changes only on its own thread ([`slot`]).

pub(crate) mod decide;
pub(crate) mod hot;
mod options;
mod slot;
mod state;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, Release};

use morpheus_common::clock::{monotonic_ns, read_ns};
use morpheus_common::{RuntimeKind, RuntimeMode, WORKER_ESCAPABLE, YieldCause};

use self::hot::{HOT, Hot, POISON};
use self::state::{Own, Registration, Signal};
use crate::error::Error;
use crate::ledger::Ledger;
use crate::process::Process;
use crate::scb::{LocalScb, ScbRef};

pub use self::options::WorkerOptions;
pub(crate) use self::options::set_lazy_defaults;
#[cfg(feature = "tokio")]
pub(crate) use self::options::set_thread_defaults;
pub(crate) use self::state::Reg;

/// One worker thread's state.
pub(crate) struct Worker {
    /// Process-unique worker number.
    id: u64,
    /// Kernel thread id.
    tid: i32,
    /// The thread's CPU-time clock.
    cpu_clock: libc::clockid_t,
    kind: RuntimeKind,
    escapable: bool,
    pinned: Option<RuntimeMode>,
    budget_ns: u64,
    process: &'static Process,
    /// The owner thread's `HOT` words (see the module docs).
    hot: *const Hot,
    /// The SCB polled while not registered (no kernel writes it).
    local: LocalScb,
    /// Written by the owner thread.
    own: Own,
    /// Written by the monitor thread.
    signal: Signal,
    /// Written under the session lock.
    registration: Registration,
    /// Written by the owner (and the monitor, for escalations), read by
    /// anyone.
    ledger: Ledger,
}

// SAFETY: the only non-thread-safe field is the pointer to the owner's
// `HOT` atomics, which other threads use only while the worker is listed
// (under the process's worker lock), i.e. while the owner thread is alive.
unsafe impl Send for Worker {}
unsafe impl Sync for Worker {}

impl Worker {
    fn new(process: &'static Process, opts: WorkerOptions) -> Arc<Worker> {
        let cfg = process.config();
        // SAFETY: plain system calls about the calling thread.
        let tid = unsafe { libc::gettid() };
        let mut cpu_clock: libc::clockid_t = 0;
        // SAFETY: valid out-pointer; pthread_self is the calling thread.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut cpu_clock) };
        if rc != 0 {
            cpu_clock = libc::CLOCK_MONOTONIC; // degrade to wall time
        }
        let wall = monotonic_ns();
        let escapable = opts.escapable.unwrap_or(cfg.escapable);
        let w = Arc::new(Worker {
            id: process.next_worker_id(),
            tid,
            cpu_clock,
            kind: opts.kind,
            escapable,
            pinned: opts.mode,
            budget_ns: opts.budget.unwrap_or(cfg.budget).as_nanos().max(1) as u64,
            process,
            hot: HOT.with(|h| h as *const Hot),
            local: LocalScb::new(),
            own: Own::new(wall, read_ns(cpu_clock).unwrap_or(0)),
            signal: Signal::new(),
            registration: Registration::new(cfg.enabled && cfg.sources.kernel),
            ledger: Ledger::default(),
        });
        w.scb().user_flags().store(w.user_flags(), Relaxed);
        w
    }

    /// The owner thread's fast-path words.
    fn hot(&self) -> &Hot {
        // SAFETY: the owner's TLS outlives the worker's attachment; other
        // threads only use this while the worker is listed (see module docs).
        unsafe { &*self.hot }
    }

    /// Process-unique worker number.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Kernel thread id.
    pub(crate) fn tid(&self) -> i32 {
        self.tid
    }

    /// The runtime the worker belongs to.
    pub(crate) fn kind(&self) -> RuntimeKind {
        self.kind
    }

    /// Whether the scheduler may force it past the grace period.
    pub(crate) fn escapable(&self) -> bool {
        self.escapable
    }

    /// The `u.flags` the worker's SCBs carry.
    fn user_flags(&self) -> u32 {
        if self.escapable { WORKER_ESCAPABLE } else { 0 }
    }

    /// Its pinned mode, if any.
    pub(crate) fn pinned_mode(&self) -> Option<RuntimeMode> {
        self.pinned
    }

    /// Its configured local budget (ns).
    pub(crate) fn budget_ns(&self) -> u64 {
        self.budget_ns
    }

    /// This worker's effective mode.
    pub(crate) fn mode(&self) -> RuntimeMode {
        self.pinned.unwrap_or_else(|| self.process.mode())
    }

    /// Its current critical-section depth.
    pub(crate) fn critical_depth(&self) -> u32 {
        self.hot().depth()
    }

    /// Its yield ledger.
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The SCB in use.
    pub(crate) fn scb(&self) -> ScbRef {
        self.hot().scb()
    }

    /// CPU time the thread has consumed (read by the monitor and the owner).
    fn cpu_now(&self) -> u64 {
        read_ns(self.cpu_clock).unwrap_or(0)
    }

    // The owner's side: parking (Tokio's park hooks in `tokio_support`,
    // `bindings::will_park` for other event loops).

    /// The thread is about to park: no budget can run out while it is.
    pub(crate) fn will_park(&self) {
        self.own.park();
    }

    /// The thread unparked: its budget restarts now, and a monitor that
    /// sleeps because every worker was parked is woken to time it.
    pub(crate) fn unparked(&self) {
        self.own.unpark(self.cpu_now(), monotonic_ns());
        self.process.worker_unparked();
    }

    // The monitor's side: the budget and the in-process signal.

    /// Whether the thread is parked (then its budget cannot run out).
    pub(crate) fn is_parked(&self) -> bool {
        self.own.parked()
    }

    /// Whether an in-process signal is already raised (the worker has not
    /// yielded since).
    pub(crate) fn poisoned(&self) -> bool {
        self.hot().poisoned()
    }

    /// The worker's yield epoch. Read it before [`Worker::wall_since_yield`]
    /// and [`Worker::cpu_since_yield`], and raise a signal for it: if the
    /// worker yields in between, the signal is stale and ignored.
    pub(crate) fn yield_epoch(&self) -> u64 {
        self.own.epoch_acquire()
    }

    /// Monotonic time since the worker's budget started: its last yield or
    /// unpark (ns).
    pub(crate) fn wall_since_yield(&self) -> u64 {
        monotonic_ns().saturating_sub(self.own.wall_at_yield_ns())
    }

    /// CPU time the thread used since its budget started (ns).
    pub(crate) fn cpu_since_yield(&self) -> u64 {
        self.cpu_now().saturating_sub(self.own.cpu_at_yield_ns())
    }

    /// The monitor's signal: make the next checkpoint yield with `cause`,
    /// unless the worker yields first (then its epoch has moved on).
    pub(crate) fn poison(&self, epoch: u64, cause: YieldCause) {
        self.signal.raise(epoch, cause);
        self.hot().expected.fetch_or(POISON, Release);
    }

    /// Escalations of the registered SCB not accounted for yet: records
    /// `count` (the SCB's counter) as seen and returns the previous value.
    pub(crate) fn swap_escalations_seen(&self, count: u32) -> u32 {
        self.signal.swap_escalations(count)
    }

    // The session's side: the registration.

    /// The live kernel registration, if any.
    pub(crate) fn registration(&self) -> Option<Reg> {
        self.registration.get()
    }

    /// Removes and returns the registration (the worker stops).
    pub(crate) fn take_registration(&self) -> Option<Reg> {
        self.registration.take()
    }

    /// Whether the kernel source should try to register the worker.
    pub(crate) fn wants_kernel(&self) -> bool {
        self.registration.wants_kernel()
    }

    /// Stops trying to register the worker (it cannot work).
    pub(crate) fn give_up_kernel(&self) {
        self.registration.give_up_kernel()
    }
}

thread_local! {
    /// The calling thread's worker, null if none (slow path only).
    static CURRENT: Cell<*const Worker> = const { Cell::new(std::ptr::null()) };
    /// Owns the worker of this thread; its destructor detaches it.
    static HANDLE: RefCell<Option<WorkerHandle>> = const { RefCell::new(None) };
}

/// The worker of the calling thread, if it is one.
pub(crate) fn current() -> Option<&'static Worker> {
    let w = CURRENT.try_with(Cell::get).unwrap_or(std::ptr::null());
    // SAFETY: a non-null pointer is a live `Worker` owned by this thread's
    // HANDLE until detach resets CURRENT. 'static is a white lie limited to
    // this thread's use before detach; callers never store it.
    unsafe { w.as_ref() }
}

/// Whether the calling thread is a worker (one TLS read).
#[inline]
pub(crate) fn is_worker() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}

/// Makes the calling thread a worker (idempotent: an attached thread keeps
/// its worker and settings).
pub(crate) fn attach(opts: WorkerOptions) -> Result<&'static Worker, Error> {
    if let Some(w) = current() {
        return Ok(w);
    }
    let process = Process::get();
    let w = Worker::new(process, opts);
    let ptr: *const Worker = Arc::as_ptr(&w);
    HANDLE
        .try_with(|h| *h.borrow_mut() = Some(WorkerHandle(w.clone(), false)))
        .map_err(|_| Error::ThreadExiting)?;
    CURRENT.with(|c| c.set(ptr));
    w.activate();
    process.add_worker(&w);
    // SAFETY: see `current`.
    Ok(unsafe { &*ptr })
}

/// Attaches the calling thread with its lazy options (see
/// [`options::lazy_options`]) if it is not a worker yet.
pub(crate) fn attach_lazily() -> Result<&'static Worker, Error> {
    match current() {
        Some(w) => Ok(w),
        None => attach(options::lazy_options()),
    }
}

/// The calling thread unparked (no-op if it is not a worker): see
/// [`Worker::unparked`].
pub(crate) fn unparked() {
    if let Some(w) = current() {
        w.unparked();
    }
}

/// Detaches the calling thread (no-op if it is not a worker).
pub(crate) fn detach() {
    let handle = HANDLE.try_with(|h| h.borrow_mut().take()).ok().flatten();
    if let Some(mut h) = handle {
        h.1 = true;
        drop(h);
    }
}

/// Owns a worker for its thread; dropping it (thread exit, or `detach`
/// when the flag is set) detaches.
struct WorkerHandle(Arc<Worker>, bool);

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(std::ptr::null()));
        let hot = self.0.hot();
        let explicit = self.1;
        if !explicit && hot.depth() > 0 {
            // A guard cannot outlive its thread's stack: a level opened by
            // enter_critical() was never closed.
            self.0.process.say_once(
                log::Level::Error,
                &Error::CriticalSectionLeftOpen.to_string(),
            );
        }
        self.0.process.remove_worker(&self.0);
        // Back to the detached state: the next checkpoint re-attaches.
        hot.detach();
    }
}

/// In a child after `fork()`: the calling thread (the only one) forgets its
/// worker without touching the parent's state, which the child does not
/// own: no unregistering (the registration is the parent's), no locks (a
/// parent thread may have held them at the fork), no writes to the SCB
/// (shared with the parent). Its next checkpoint attaches it afresh.
/// Only async-signal-safe operations: TLS stores and a leak.
pub(crate) fn forget_after_fork() {
    let _ = CURRENT.try_with(|c| c.set(std::ptr::null()));
    let _ = HANDLE.try_with(|h| {
        if let Ok(mut h) = h.try_borrow_mut() {
            std::mem::forget(h.take());
        }
    });
    HOT.with(Hot::detach);
}
