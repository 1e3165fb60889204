// SPDX-License-Identifier: GPL-2.0-only
//! The session with scx_morpheus: at most one per process, opened when the
//! first worker attaches, reopened by the monitor thread after the
//! scheduler went away, dropped (every worker falling back to the budget
//! source) when the connection breaks.
//!
//! Lock order: the session's lock, then the process's worker list.

mod connection;

use std::sync::atomic::AtomicI32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use morpheus_common::RuntimeKind;

use self::connection::{ClientError, Connection};
use crate::process::{Process, lock};
use crate::worker::{Reg, Worker};

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
    /// Every state, in declaration order.
    pub(crate) const ALL: [RegistrationState; 4] = [
        RegistrationState::Disabled,
        RegistrationState::Idle,
        RegistrationState::Unavailable,
        RegistrationState::Connected,
    ];

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

/// The descriptor of the open session's socket (-1 if none), mirrored here
/// so a forked child can close its copy without locking.
static SESSION_FD: AtomicI32 = AtomicI32::new(-1);

/// In a forked child: closes the child's copy of the parent's session
/// socket. Async-signal-safe.
pub(crate) fn close_after_fork() {
    let fd = SESSION_FD.swap(-1, Relaxed);
    if fd >= 0 {
        // SAFETY: the child's copy of the parent's session socket; the
        // parent's (leaked) state never uses it in this process again.
        unsafe { libc::close(fd) };
    }
}

/// What the session's status is, for metrics.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub(crate) state: RegistrationState,
    pub(crate) reason: Option<String>,
    pub(crate) connects: u64,
}

/// The process's session with scx_morpheus.
pub(crate) struct Session(Mutex<Inner>);

struct Inner {
    conn: Option<Connection>,
    /// Sessions opened so far, numbering them: a registration belongs to
    /// the session it was made in.
    number: u64,
    state: RegistrationState,
    reason: Option<String>,
    last_attempt: Option<Instant>,
    connects: u64,
}

impl Session {
    /// A session not opened yet; `kernel`: whether the kernel source is on.
    pub(crate) fn new(kernel: bool) -> Session {
        let state = if kernel {
            RegistrationState::Idle
        } else {
            RegistrationState::Disabled
        };
        Session(Mutex::new(Inner {
            conn: None,
            number: 0,
            state,
            reason: None,
            last_attempt: None,
            connects: 0,
        }))
    }

    /// The connection state, why the kernel source is off (if it is) and
    /// the sessions opened.
    pub(crate) fn status(&self) -> Status {
        let s = lock(&self.0);
        Status {
            state: s.state,
            reason: s.reason.clone(),
            connects: s.connects,
        }
    }

    /// A new worker, on its own thread: opens the session if it was never
    /// tried, and registers the worker if it is open.
    pub(crate) fn register_new(&self, p: &Process, w: &Worker) {
        let mut s = lock(&self.0);
        if s.conn.is_none() && s.last_attempt.is_none() {
            s.connect(p, w.kind());
        }
        if s.conn.is_some() {
            s.register(p, w, true);
        }
    }

    /// Releases a stopping worker's slot, if it belongs to this session.
    pub(crate) fn unregister(&self, p: &Process, reg: Reg) {
        let mut s = lock(&self.0);
        if s.number == reg.session
            && let Some(conn) = &s.conn
            && let Err(e) = conn.unregister(reg.slot, reg.generation)
        {
            p.say_once(
                log::Level::Warn,
                &format!("morpheus: unregistering a worker: {e}"),
            );
            if e.drops_connection() {
                s.disconnect(p, &e);
            }
        }
    }

    /// The monitor's round: drops a session the scheduler closed, reopens
    /// one every `retry` while workers wait for registration, and
    /// registers them.
    pub(crate) fn maintain(&self, p: &Process, workers: &[Arc<Worker>], retry: Duration) {
        let mut s = lock(&self.0);
        if let Some(conn) = &s.conn
            && !conn.is_alive()
        {
            let why = ClientError::Lost("the scheduler closed the connection".into());
            s.disconnect(p, &why);
        }
        let wanting: Vec<&Arc<Worker>> = workers
            .iter()
            .filter(|w| w.wants_kernel() && w.registration().is_none())
            .collect();
        if wanting.is_empty() {
            return;
        }
        let due = s.last_attempt.is_none_or(|t| t.elapsed() >= retry);
        if s.conn.is_none() && due {
            s.connect(p, wanting[0].kind());
        }
        if s.conn.is_some() {
            for w in wanting {
                s.register(p, w, false);
                if s.conn.is_none() {
                    break;
                }
            }
        }
    }
}

impl Inner {
    /// Opens a session.
    fn connect(&mut self, p: &Process, kind: RuntimeKind) {
        self.last_attempt = Some(Instant::now());
        let path = &p.config().socket_path;
        match Connection::open(path, kind, Duration::from_secs(1)) {
            Ok(conn) => {
                log::info!(
                    "morpheus: connected to scx_morpheus at {} ({} slots, grace {} ms)",
                    path.display(),
                    conn.max_workers,
                    conn.grace_ns / 1_000_000
                );
                SESSION_FD.store(conn.raw_fd(), Relaxed);
                self.conn = Some(conn);
                self.number += 1;
                self.connects += 1;
                self.state = RegistrationState::Connected;
                self.reason = None;
            }
            Err(e) => {
                let level = match e {
                    ClientError::NoScheduler(_) => log::Level::Info,
                    _ => log::Level::Warn,
                };
                p.say_once(level, &format!("morpheus: {e}"));
                self.state = RegistrationState::Unavailable;
                self.reason = Some(e.to_string());
            }
        }
    }

    /// Drops the session: every worker falls back to the budget source.
    fn disconnect(&mut self, p: &Process, why: &ClientError) {
        p.say_once(log::Level::Warn, &format!("morpheus: {why}"));
        SESSION_FD.store(-1, Relaxed);
        self.conn = None;
        self.state = RegistrationState::Unavailable;
        self.reason = Some(why.to_string());
        self.last_attempt = Some(Instant::now());
        for w in p.workers().iter() {
            w.take_registration();
        }
    }

    /// Registers `w` (connection open). On its own thread the worker
    /// switches to its slot at once; otherwise at its next checkpoint.
    fn register(&mut self, p: &Process, w: &Worker, own_thread: bool) {
        let Some(conn) = &self.conn else { return };
        if w.registration().is_some() {
            // The attaching thread and the monitor may both try (each
            // under the session lock): the first one did it.
            return;
        }
        let flags = if w.escapable() {
            morpheus_common::WORKER_ESCAPABLE
        } else {
            0
        };
        match conn.register(w.tid(), flags, w.kind()) {
            Ok((slot, generation)) => {
                // Before the worker can see its kernel SCB: a hint that
                // arrives at once must find the process honouring hints.
                p.worker_registered();
                let reg = Reg {
                    slot,
                    generation,
                    session: self.number,
                    scb: conn.scb(slot),
                };
                w.registered(reg, conn.grace_ns, own_thread);
            }
            Err(e) => {
                if let ClientError::System(_) = e {
                    // pidfd_open unsupported or the like: will not improve.
                    w.give_up_kernel();
                }
                if e.drops_connection() {
                    self.disconnect(p, &e);
                } else {
                    p.say_once(
                        log::Level::Warn,
                        &format!("morpheus: worker not registered: {e}"),
                    );
                    self.reason = Some(e.to_string());
                }
            }
        }
    }
}
