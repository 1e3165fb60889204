// SPDX-License-Identifier: GPL-2.0-only
//! Per-thread worker state and the checkpoint fast path.
//!
//! # The mechanism
//!
//! Every thread has two const-initialised thread-local words, `HOT` (no
//! lazy initialisation, no destructor: a direct `%fs`-relative access):
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
//! and attaches it, so there is no null check on the fast path. The
//! monitor thread writes `expected` of other threads through a pointer to
//! their `HOT`, valid while the worker is listed (it is unlisted by the
//! thread's destructor, before the thread's TLS block goes away).

use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, fence};
use std::sync::{Arc, Mutex};

use morpheus_common::{
    RuntimeKind, RuntimeMode, SCBK_PARTIAL, SCHED_EXT, Scb, WORKER_ESCAPABLE, YieldCause,
};

use super::Process;
use super::error::Error;
use super::ledger::Ledger;
use super::scb::{LocalScb, ScbRef, clock_ns, monotonic_ns};

/// Bit of `expected` that an in-process source sets to make the next
/// checkpoint take the slow path (kernel sequence numbers never reach it).
pub(crate) const POISON: u64 = 1 << 63;
/// `poison_epoch` value meaning "not a budget signal, just look" (used to
/// make a worker adopt a new SCB).
const EPOCH_WAKE: u64 = u64::MAX;

/// The two words of a worker the fast path reads.
#[repr(C)]
pub(crate) struct Hot {
    /// The SCB polled by checkpoints.
    pub(crate) scb: AtomicPtr<Scb>,
    /// `hint_seq` value meaning "no signal"; [`POISON`] = in-process signal.
    pub(crate) expected: AtomicU64,
    /// The thread's critical-section depth: the source of truth, mirrored
    /// into the SCB in use (`u.critical_depth`) for the kernel. Written by
    /// the owner only; an atomic so the monitor may read it.
    pub(crate) depth: AtomicU32,
}

/// The SCB of threads that are not workers (never written).
static DETACHED_SCB: LocalScb = LocalScb::new();

impl LocalScb {
    const fn get_const(&self) -> *mut Scb {
        // Same as `get`, usable in a static initialiser.
        (&raw const *self).cast::<Scb>().cast_mut()
    }
}

thread_local! {
    /// The words the fast path reads. Const-initialised and without a
    /// destructor, so access is a plain TLS access. Detached state: always
    /// signalling, so that the first checkpoint attaches the thread.
    static HOT: Hot = const {
        Hot {
            scb: AtomicPtr::new(DETACHED_SCB.get_const()),
            expected: AtomicU64::new(POISON),
            depth: AtomicU32::new(0),
        }
    };
    /// The calling thread's worker, null if none (slow path only).
    static CURRENT: Cell<*const Worker> = const { Cell::new(std::ptr::null()) };
    /// Owns the worker of this thread; its destructor detaches it.
    static HANDLE: RefCell<Option<WorkerHandle>> = const { RefCell::new(None) };
    /// Options for this thread's lazy attachment (set by runtime builders).
    static THREAD_DEFAULTS: Cell<Option<WorkerOptions>> = const { Cell::new(None) };
}

/// Sets the options the calling thread uses when it attaches lazily.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn set_thread_defaults(opts: WorkerOptions) {
    let _ = THREAD_DEFAULTS.try_with(|d| d.set(Some(opts)));
}

/// Options of threads that attach lazily without thread defaults (a leaked
/// box, replaced whole: lock-free, so safe to read in a forked child).
static LAZY_DEFAULTS: AtomicPtr<WorkerOptions> = AtomicPtr::new(std::ptr::null_mut());

/// Sets the options of threads that attach lazily (see
/// `crate::set_lazy_worker_options`).
pub(crate) fn set_lazy_defaults(opts: WorkerOptions) {
    let new = Box::into_raw(Box::new(opts));
    // The old box is leaked: a reader may still copy from it. Setting this
    // is rare (once per process, by a binding or at start-up).
    LAZY_DEFAULTS.swap(new, AcqRel);
}

/// The options of threads that attach lazily without thread defaults.
pub(crate) fn lazy_defaults() -> WorkerOptions {
    let p = LAZY_DEFAULTS.load(Acquire);
    // SAFETY: a non-null pointer is a leaked, never-freed box.
    unsafe { p.as_ref() }.copied().unwrap_or_default()
}

/// Attaches the calling thread with its thread defaults (set by a runtime
/// builder), else the lazy defaults, if it is not a worker yet.
pub(crate) fn attach_lazily() -> Result<&'static Worker, Error> {
    match current() {
        Some(w) => Ok(w),
        None => {
            let opts = THREAD_DEFAULTS
                .try_with(Cell::get)
                .ok()
                .flatten()
                .unwrap_or_else(lazy_defaults);
            attach(opts)
        }
    }
}

/// The checkpoint fast path: is a signal pending for this thread?
///
/// A TLS load of the SCB pointer, a relaxed load of its `hint_seq`, a
/// compare with the TLS `expected` word and a branch at the call site.
#[inline(always)]
pub(crate) fn signal_pending() -> bool {
    HOT.with(|hot| {
        // SAFETY: `scb` always points at a live SCB: the static detached
        // one, the worker's local one (the worker outlives its attachment)
        // or a slot of a mapping that is never unmapped.
        let seq = unsafe { ScbRef::new(hot.scb.load(Relaxed)) }
            .hint_seq()
            .load(Relaxed);
        seq != hot.expected.load(Relaxed)
    })
}

/// The worker of the calling thread, if it is one.
pub(crate) fn current() -> Option<&'static Worker> {
    let w = CURRENT.try_with(Cell::get).unwrap_or(std::ptr::null());
    // SAFETY: a non-null pointer is a live `Worker` owned by this thread's
    // HANDLE until detach resets CURRENT. 'static is a white lie limited to
    // this thread's use before detach; callers never store it.
    unsafe { w.as_ref() }
}

/// How a worker is set up; `None` fields take the process default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerOptions {
    /// The runtime the thread belongs to (reported to the scheduler).
    pub kind: RuntimeKind,
    /// Let the scheduler force this worker past the grace period.
    pub escapable: Option<bool>,
    /// Pin this worker's mode.
    pub mode: Option<RuntimeMode>,
    /// This worker's local time budget.
    pub budget: Option<std::time::Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            kind: RuntimeKind::Generic,
            escapable: None,
            mode: None,
            budget: None,
        }
    }
}

/// A live registration with the kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reg {
    pub(crate) slot: u32,
    pub(crate) generation: u64,
    pub(crate) session: u64,
    pub(crate) scb: *mut Scb,
}

// SAFETY: the SCB pointer targets a never-unmapped shared mapping.
unsafe impl Send for Reg {}

/// What the slow path decided: yield for `cause`, answering kernel hint
/// sequence `answer` if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) cause: YieldCause,
    pub(crate) answer: Option<u64>,
}

/// One worker thread's state.
pub(crate) struct Worker {
    /// The owner thread's `HOT` words (see the module docs).
    hot: *const Hot,
    /// Bumped by the owner at each yield (release); stale-poison detection.
    pub(crate) epoch: AtomicU64,
    /// The epoch the monitor saw when it poisoned.
    pub(crate) poison_epoch: AtomicU64,
    /// The cause the monitor attached to its poison.
    pub(crate) poison_cause: AtomicU32,
    /// Thread CPU time at the last yield (owner-written).
    pub(crate) cpu_at_yield_ns: AtomicU64,
    /// Monotonic time at the last yield (owner-written).
    pub(crate) wall_at_yield_ns: AtomicU64,
    /// An SCB registered on this worker's behalf, to adopt at the next
    /// slow path (with its grace period).
    pub(crate) pending: AtomicPtr<Scb>,
    pub(crate) pending_grace_ns: AtomicU64,
    /// The grace period of the SCB in use.
    pub(crate) grace_ns: AtomicU64,
    /// Last kernel sequence accounted for in `hints_seen` (owner).
    pub(crate) last_seq: AtomicU64,
    /// Escalation counter value already accounted (monitor).
    pub(crate) esc_seen: AtomicU32,
    /// Whether the kernel source should (still) try to register it.
    pub(crate) want_kernel: AtomicBool,
    /// The thread switched itself to `SCHED_EXT` (owner).
    on_sched_ext: AtomicBool,
    pub(crate) id: u64,
    pub(crate) tid: i32,
    cpu_clock: libc::clockid_t,
    pub(crate) kind: RuntimeKind,
    pub(crate) escapable: bool,
    pub(crate) pinned: Option<RuntimeMode>,
    pub(crate) budget_ns: u64,
    local: LocalScb,
    pub(crate) reg: Mutex<Option<Reg>>,
    pub(crate) ledger: Ledger,
    process: &'static Process,
}

impl Worker {
    fn new(process: &'static Process, opts: WorkerOptions) -> Arc<Worker> {
        let cfg = &process.config;
        // SAFETY: plain system calls about the calling thread.
        let tid = unsafe { libc::gettid() };
        let mut cpu_clock: libc::clockid_t = 0;
        // SAFETY: valid out-pointer; pthread_self is the calling thread.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut cpu_clock) };
        if rc != 0 {
            cpu_clock = libc::CLOCK_MONOTONIC; // degrade to wall time
        }
        let w = Arc::new(Worker {
            hot: HOT.with(|h| h as *const Hot),
            epoch: AtomicU64::new(0),
            poison_epoch: AtomicU64::new(EPOCH_WAKE),
            poison_cause: AtomicU32::new(YieldCause::Budget.as_u32()),
            cpu_at_yield_ns: AtomicU64::new(0),
            wall_at_yield_ns: AtomicU64::new(monotonic_ns()),
            pending: AtomicPtr::new(std::ptr::null_mut()),
            pending_grace_ns: AtomicU64::new(0),
            grace_ns: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
            esc_seen: AtomicU32::new(0),
            want_kernel: AtomicBool::new(cfg.enabled && cfg.sources.kernel),
            on_sched_ext: AtomicBool::new(false),
            id: process.next_worker_id(),
            tid,
            cpu_clock,
            kind: opts.kind,
            escapable: opts.escapable.unwrap_or(cfg.escapable),
            pinned: opts.mode,
            budget_ns: opts.budget.unwrap_or(cfg.budget).as_nanos().max(1) as u64,
            local: LocalScb::new(),
            reg: Mutex::new(None),
            ledger: Ledger::default(),
            process,
        });
        w.cpu_at_yield_ns.store(w.cpu_now(), Relaxed);
        let scb = w.scb();
        scb.user_flags()
            .store(if w.escapable { WORKER_ESCAPABLE } else { 0 }, Relaxed);
        w
    }

    /// The owner thread's fast-path words.
    pub(crate) fn hot(&self) -> &Hot {
        // SAFETY: the owner's TLS outlives the worker's attachment; other
        // threads only use this while the worker is listed (see module docs).
        unsafe { &*self.hot }
    }

    /// Switches the owner thread to its local SCB with no signal pending
    /// (owner thread only, at attach).
    fn activate(&self) {
        // SAFETY: the worker's own local SCB.
        let local = unsafe { ScbRef::new(self.local.get()) };
        local
            .critical_depth()
            .store(self.hot().depth.load(Relaxed), Relaxed);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        self.hot().scb.store(self.local.get(), Relaxed);
        self.hot().expected.store(0, Relaxed);
    }

    /// The SCB in use.
    pub(crate) fn scb(&self) -> ScbRef {
        // SAFETY: `hot.scb` always points at a live SCB (module docs).
        unsafe { ScbRef::new(self.hot().scb.load(Relaxed)) }
    }

    /// CPU time the thread has consumed (read by the monitor and the owner).
    pub(crate) fn cpu_now(&self) -> u64 {
        clock_ns(self.cpu_clock).unwrap_or(0)
    }

    /// This worker's effective mode.
    pub(crate) fn mode(&self) -> RuntimeMode {
        self.pinned.unwrap_or_else(|| self.process.mode())
    }

    /// Whether a live kernel registration backs this worker.
    pub(crate) fn registration(&self) -> Option<Reg> {
        *self.reg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The monitor's signal: make the next checkpoint yield with `cause`,
    /// unless the worker yields first (then `epoch` has moved on).
    pub(crate) fn poison(&self, epoch: u64, cause: YieldCause) {
        self.poison_cause.store(cause.as_u32(), Relaxed);
        self.poison_epoch.store(epoch, Relaxed);
        self.hot().expected.fetch_or(POISON, Release);
    }

    /// Hands this worker a newly registered SCB; it switches to it at its
    /// next checkpoint (only the owner thread changes `hot.scb`).
    pub(crate) fn offer_scb(&self, scb: *mut Scb, grace_ns: u64) {
        // SAFETY: a slot of a never-unmapped mapping.
        let new = unsafe { ScbRef::new(scb) };
        // Pre-fill the user line so the kernel sees the right state during
        // the short window before adoption.
        new.critical_depth()
            .store(self.hot().depth.load(Relaxed), Relaxed);
        new.user_flags()
            .store(if self.escapable { WORKER_ESCAPABLE } else { 0 }, Relaxed);
        self.pending_grace_ns.store(grace_ns, Relaxed);
        self.pending.store(scb, Release);
        self.poison(EPOCH_WAKE, YieldCause::Budget);
    }

    /// Switches to an offered SCB (owner thread only).
    pub(crate) fn adopt_pending(&self) {
        let scb = self.pending.swap(std::ptr::null_mut(), Acquire);
        if !scb.is_null() {
            self.adopt(scb, self.pending_grace_ns.load(Relaxed));
        }
    }

    /// Switches to `scb` now (owner thread only). Hints issued on the slot
    /// before adoption are acknowledged without a yield: they were meant
    /// for the previous owner, or were sent in the instant before the
    /// worker could see its slot.
    pub(crate) fn adopt(&self, scb: *mut Scb, grace_ns: u64) {
        // SAFETY: a slot of a never-unmapped mapping.
        let new = unsafe { ScbRef::new(scb) };
        new.critical_depth()
            .store(self.hot().depth.load(Relaxed), Relaxed);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        new.user_flags()
            .store(if self.escapable { WORKER_ESCAPABLE } else { 0 }, Relaxed);
        new.mode().store(self.mode().as_u32(), Relaxed);
        let seq = new.hint_seq().load(Acquire);
        new.ack_seq().store(seq, Release);
        self.esc_seen
            .store(new.escalations().load(Relaxed), Relaxed);
        self.last_seq.store(seq, Relaxed);
        self.grace_ns.store(grace_ns, Relaxed);
        self.hot().scb.store(scb, Relaxed);
        if new.kernel_flags().load(Relaxed) & SCBK_PARTIAL != 0 {
            self.switch_to_sched_ext();
        }
        // Keep a pending budget signal (the monitor re-checks anyway).
        let keep = self.hot().expected.load(Relaxed) & POISON;
        self.hot().expected.store(seq | keep, Relaxed);
    }

    /// Under a `--partial` scheduler (which schedules only `SCHED_EXT`
    /// threads), the worker thread switches itself to `SCHED_EXT`: the
    /// loader never changes a thread's policy by its id, which a new thread
    /// may have taken over. Owner thread only; once per thread (the policy
    /// outlives the scheduler instance).
    fn switch_to_sched_ext(&self) {
        if self.on_sched_ext.swap(true, Relaxed) {
            return;
        }
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sets the calling thread's own policy; `param` is valid.
        if unsafe { libc::sched_setscheduler(0, SCHED_EXT, &param) } != 0 {
            let err = std::io::Error::last_os_error();
            self.process.say_once(
                log::Level::Warn,
                &format!(
                    "morpheus: cannot switch worker thread {} to SCHED_EXT ({err}): \
                     scx_morpheus runs --partial and will not schedule or hint it",
                    self.tid
                ),
            );
        }
    }

    /// The slow path: a signal is pending. Decides whether the caller must
    /// yield now and why, without yielding or acknowledging: that is
    /// [`Worker::took_yield`], once the caller commits to the yield. No
    /// system call, no clock read.
    pub(crate) fn decide(&self) -> Option<Due> {
        self.decide_in(false)
    }

    /// [`Worker::decide`]; with `leaving` the caller is about to close its
    /// outermost critical section, so the section does not defer.
    pub(crate) fn decide_in(&self, leaving: bool) -> Option<Due> {
        fence(Acquire);
        self.ledger.slow_checkpoint();
        self.adopt_pending();
        let scb = self.scb();
        let checkpoints = scb.checkpoints();
        checkpoints.store(checkpoints.load(Relaxed).wrapping_add(1), Relaxed);
        let seq = scb.hint_seq().load(Acquire);
        let expected = self.hot().expected.load(Acquire);
        let epoch = self.epoch.load(Relaxed);
        let kernel = seq != expected & !POISON;
        let local =
            (expected & POISON != 0 && self.poison_epoch.load(Relaxed) == epoch).then(|| {
                YieldCause::try_from(self.poison_cause.load(Relaxed)).unwrap_or(YieldCause::Budget)
            });
        if kernel {
            let last = self.last_seq.swap(seq, Relaxed);
            self.ledger.hints_seen(seq.wrapping_sub(last));
        }
        if !kernel && local.is_none() {
            // A stale poison (the worker yielded since) or an adoption wake.
            self.hot().expected.store(seq, Relaxed);
            return None;
        }
        if !leaving && self.hot().depth.load(Relaxed) > 0 {
            // Inside a critical section: never yield here. The signal stays
            // pending (so is not acknowledged) and the first checkpoint
            // after the section answers it.
            self.ledger.deferred();
            return None;
        }
        let mode = self.mode();
        scb.mode().store(mode.as_u32(), Relaxed);
        let honour = kernel && mode != RuntimeMode::Deterministic;
        if kernel && !honour {
            self.ledger.hint_ignored();
        }
        let cause = if honour {
            YieldCause::Hint
        } else if let Some(c) = local {
            c
        } else {
            self.hot().expected.store(seq, Relaxed);
            return None;
        };
        Some(Due {
            cause,
            answer: honour.then_some(seq),
        })
    }

    /// Records a yield (about to happen) and, if `answer` is a kernel
    /// sequence, acknowledges it and records the response time.
    pub(crate) fn took_yield(&self, cause: YieldCause, answer: Option<u64>) {
        let scb = self.scb();
        self.ledger.yielded(cause, 1);
        let yields = scb.yields();
        yields.store(yields.load(Relaxed).wrapping_add(1), Relaxed);
        let seq = match answer {
            Some(seq) => {
                let grace = self.grace_ns.load(Relaxed);
                let issued = scb.hint_issued_ns().load(Relaxed);
                let response = monotonic_ns().saturating_sub(issued);
                scb.ack_seq().store(seq, Release);
                self.ledger.hint_answered(response, grace);
                seq
            }
            None => scb.hint_seq().load(Acquire),
        };
        self.cpu_at_yield_ns.store(self.cpu_now(), Relaxed);
        self.wall_at_yield_ns.store(monotonic_ns(), Relaxed);
        self.epoch.fetch_add(1, Release);
        // Clears any budget poison: the budget restarts now. A hint that
        // arrives after `seq` was read still differs and is seen next time.
        self.hot().expected.store(seq, Relaxed);
    }

    /// A voluntary yield by the application: recorded, and it answers a
    /// pending kernel hint (the worker is yielding anyway).
    pub(crate) fn voluntary(&self) {
        self.adopt_pending();
        if self.hot().depth.load(Relaxed) > 0 {
            self.ledger.deferred();
        }
        let scb = self.scb();
        let seq = scb.hint_seq().load(Acquire);
        let expected = self.hot().expected.load(Relaxed) & !POISON;
        let answer = (seq != expected && self.mode() != RuntimeMode::Deterministic).then_some(seq);
        if answer.is_some() {
            let last = self.last_seq.swap(seq, Relaxed);
            self.ledger.hints_seen(seq.wrapping_sub(last));
        }
        self.took_yield(YieldCause::Voluntary, answer);
    }
}

/// Owns a worker for its thread; dropping it (thread exit, or `detach`
/// when the flag is set) detaches.
struct WorkerHandle(Arc<Worker>, bool);

// SAFETY: the only non-thread-safe field is the pointer to the owner's
// `HOT` atomics, which other threads use only while the worker is listed
// (under the process's worker lock), i.e. while the owner thread is alive.
unsafe impl Send for Worker {}
unsafe impl Sync for Worker {}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(std::ptr::null()));
        let hot = self.0.hot();
        let explicit = self.1;
        if !explicit && hot.depth.load(Relaxed) > 0 {
            // A guard cannot outlive its thread's stack: a level opened by
            // enter_critical() was never closed.
            self.0.process.say_once(
                log::Level::Error,
                &Error::CriticalSectionLeftOpen.to_string(),
            );
        }
        self.0.process.remove_worker(&self.0);
        // Back to the detached state: the next checkpoint re-attaches.
        hot.scb.store(DETACHED_SCB.get_const(), Relaxed);
        hot.expected.store(POISON, Relaxed);
    }
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

/// Detaches the calling thread (no-op if it is not a worker).
pub(crate) fn detach() {
    let handle = HANDLE.try_with(|h| h.borrow_mut().take()).ok().flatten();
    if let Some(mut h) = handle {
        h.1 = true;
        drop(h);
    }
}

/// Whether the calling thread is a worker (one TLS read).
#[inline]
pub(crate) fn is_worker() -> bool {
    CURRENT.with(|c| !c.get().is_null())
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
    HOT.with(|hot| {
        hot.scb.store(DETACHED_SCB.get_const(), Relaxed);
        hot.expected.store(POISON, Relaxed);
    });
}

/// The slow path's decision: attaches a new thread (no yield then), or
/// decides about the pending signal without acting on it.
#[cold]
#[inline(never)]
pub(crate) fn decide_slow() -> Option<Due> {
    match current() {
        Some(w) => w.decide(),
        None => {
            // First checkpoint on this thread: become a worker. No yield now;
            // the budget starts counting from here.
            let _ = attach_lazily();
            None
        }
    }
}

/// Records and acknowledges a decided yield (no-op if the thread stopped
/// being a worker in between).
pub(crate) fn commit(due: Due) {
    if let Some(w) = current() {
        w.took_yield(due.cause, due.answer);
    }
}

/// Which worker the calling thread is and how many yields it has taken. A
/// yield decided under one mark is still the caller's to take only while
/// the mark stays the same: an async task may have moved to another worker
/// thread, or another task on this thread may have yielded meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct YieldMark {
    worker: u64,
    epoch: u64,
}

/// The calling thread's [`YieldMark`], if it is a worker.
pub(crate) fn yield_mark() -> Option<YieldMark> {
    current().map(|w| YieldMark {
        worker: w.id,
        epoch: w.epoch.load(Relaxed),
    })
}

/// [`commit`], if the calling thread's mark is still `mark`; returns
/// whether it committed.
pub(crate) fn commit_if_unchanged(due: Due, mark: Option<YieldMark>) -> bool {
    if mark.is_none() || yield_mark() != mark {
        return false;
    }
    commit(due);
    true
}

/// Opens a critical-section level on the calling thread (the fast path of
/// `critical_section()`): the TLS counter, and its mirror in the SCB in use
/// for the kernel. A thread that is not a worker attaches first (once).
#[inline(always)]
pub(crate) fn critical_enter() {
    HOT.with(|hot| {
        let d = hot.depth.load(Relaxed).saturating_add(1);
        hot.depth.store(d, Relaxed);
        let scb = hot.scb.load(Relaxed);
        if scb == DETACHED_SCB.get_const() {
            critical_enter_detached();
        } else {
            // SAFETY: `scb` points at a live SCB (module docs).
            unsafe { ScbRef::new(scb) }
                .critical_depth()
                .store(d, Relaxed);
        }
        // The ABI's ordering contract: the depth is stored before the
        // section's first instruction.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    })
}

/// A section opened on a thread that is not a worker: attach it (its new
/// SCB takes the depth from the TLS counter). A thread that cannot attach
/// (exiting) keeps the count in TLS only.
#[cold]
#[inline(never)]
fn critical_enter_detached() {
    let _ = attach_lazily();
}

/// Closes a critical-section level; `false` if none is open (misuse).
#[inline(always)]
pub(crate) fn critical_exit() -> bool {
    HOT.with(|hot| {
        let d = hot.depth.load(Relaxed);
        if d == 0 {
            return false;
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        hot.depth.store(d - 1, Relaxed);
        let scb = hot.scb.load(Relaxed);
        if scb != DETACHED_SCB.get_const() {
            // SAFETY: `scb` points at a live SCB (module docs).
            unsafe { ScbRef::new(scb) }
                .critical_depth()
                .store(d - 1, Relaxed);
        }
        true
    })
}

/// The calling thread's critical-section depth.
#[inline]
pub(crate) fn critical_depth() -> u32 {
    HOT.with(|hot| hot.depth.load(Relaxed))
}
