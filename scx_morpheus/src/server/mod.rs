// SPDX-License-Identifier: GPL-2.0-only
//! The registration socket: a `SOCK_SEQPACKET` Unix socket on which runtimes
//! say HELLO (and receive their process's SCB array), REGISTER threads (with a
//! pidfd) and UNREGISTER them. One thread per connection; every message is
//! validated; identities come from the kernel.
//!
//! - `listener.rs`: the socket file (where, whose, stale or live).
//! - `session.rs`: one connection's conversation, message by message.
//! - `state.rs`: what the connections share (the registry applied to the
//!   kernel's maps) and the loader's counters.
//! - here: accepting connections, each user's share of them, shutdown.

mod listener;
mod session;
mod state;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::{debug, info, warn};
use morpheus_common::seqpacket;

use crate::peer::Peer;
use crate::registry::Limits;
use crate::scb_maps::Kernel;
use session::Session;
pub use state::State;

/// Connections served at once; more are closed right after accept.
const MAX_CONNECTIONS: u64 = 1024;
/// Connections one user (other than root) may hold at once, so that no
/// user can take every connection from the others.
const MAX_CONNECTIONS_PER_USER: u64 = MAX_CONNECTIONS / 4;

/// How the socket is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Socket path.
    pub path: PathBuf,
    /// Permission bits of the socket file.
    pub mode: u32,
    /// Group owning the socket file (members may register), if any.
    pub group: Option<u32>,
    /// The grace period announced to clients.
    pub grace_ns: u64,
    /// Registry limits.
    pub limits: Limits,
}

/// The running socket server.
pub struct Server {
    path: PathBuf,
    state: Arc<Mutex<State>>,
    shutdown: Arc<AtomicBool>,
    conns: Arc<Mutex<Conns>>,
    active: Arc<AtomicU64>,
    acceptor: Option<JoinHandle<()>>,
}

/// Locks the shared state, poisoned or not: a connection thread that
/// panicked must not take the others down with it.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    /// Binds the socket (removing a stale one) and starts serving.
    pub fn start(cfg: ServerConfig, kernel: Kernel) -> Result<Server> {
        let listener = listener::bind(&cfg)?;
        let state = Arc::new(Mutex::new(State::new(cfg.limits, kernel)));
        let shutdown = Arc::new(AtomicBool::new(false));
        listener::raise_fd_limit();
        let conns = Arc::new(Mutex::new(Conns::default()));
        let active = Arc::new(AtomicU64::new(0));
        let acceptor = {
            let (state, shutdown, conns, active) = (
                state.clone(),
                shutdown.clone(),
                conns.clone(),
                active.clone(),
            );
            let grace_ns = cfg.grace_ns;
            std::thread::Builder::new()
                .name("morpheus-accept".into())
                .spawn(move || accept_loop(listener, state, shutdown, conns, active, grace_ns))
                .context("cannot start the registration server thread")?
        };
        info!(
            "registration socket: {} (mode {:o})",
            cfg.path.display(),
            cfg.mode
        );
        Ok(Server {
            path: cfg.path,
            state,
            shutdown,
            conns,
            active,
            acceptor: Some(acceptor),
        })
    }

    /// The shared state (for sweeps and metrics).
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        // Wake every connection thread; clients see the scheduler go away.
        for fd in self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fds
            .values()
        {
            // SAFETY: shutdown(2) on a socket its connection thread still owns.
            unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The open connections: their sockets (to shut them down when the loader
/// stops) and how many each user holds.
#[derive(Default)]
struct Conns {
    fds: HashMap<u64, RawFd>,
    by_user: HashMap<u32, u64>,
}

impl Conns {
    /// Admits a connection of `uid`, unless that user already holds its
    /// share (root is not limited).
    fn admit(&mut self, id: u64, fd: RawFd, uid: u32) -> bool {
        let held = self.by_user.entry(uid).or_default();
        if uid != 0 && *held >= MAX_CONNECTIONS_PER_USER {
            return false;
        }
        *held += 1;
        self.fds.insert(id, fd);
        true
    }

    fn remove(&mut self, id: u64, uid: u32) {
        self.fds.remove(&id);
        if let Some(held) = self.by_user.get_mut(&uid) {
            *held -= 1;
            if *held == 0 {
                self.by_user.remove(&uid);
            }
        }
    }
}

/// An admitted connection's place in [`Conns`] and the active count,
/// given back when it is dropped: when its thread ends, or with the
/// thread's closure if the thread could not start.
struct Admitted {
    conns: Arc<Mutex<Conns>>,
    active: Arc<AtomicU64>,
    id: u64,
    uid: u32,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.id, self.uid);
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections until shutdown, each served by its own thread once
/// the kernel has said who the peer is and its user has a connection left.
fn accept_loop(
    listener: std::os::fd::OwnedFd,
    state: Arc<Mutex<State>>,
    shutdown: Arc<AtomicBool>,
    conns: Arc<Mutex<Conns>>,
    active: Arc<AtomicU64>,
    grace_ns: u64,
) {
    let mut next_id = 0u64;
    let mut last_warning: Option<Instant> = None;
    let mut warn_now = |what: &str| {
        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            last_warning = Some(Instant::now());
            warn!("{what}");
        }
    };
    while !shutdown.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 200) } <= 0 {
            continue;
        }
        let sock = match seqpacket::accept(listener.as_fd()) {
            Ok(sock) => sock,
            Err(e) => {
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) {
                    // The pending connection stays queued and the socket
                    // stays readable: back off instead of spinning on it.
                    warn_now(&format!("cannot accept connections: {e}; retrying"));
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
        };
        if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            warn_now(&format!(
                "refusing connections: {MAX_CONNECTIONS} already open"
            ));
            continue;
        }
        let peer = match Peer::of(sock.as_fd()) {
            Ok(peer) => peer,
            Err(e) => {
                debug!("cannot identify a peer (SO_PEERCRED, SO_PEERPIDFD): {e}");
                continue;
            }
        };
        let uid = peer.uid;
        next_id += 1;
        let id = next_id;
        if !conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(id, sock.as_raw_fd(), uid)
        {
            warn_now(&format!(
                "refusing connections of uid {uid}: it holds {MAX_CONNECTIONS_PER_USER} already"
            ));
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted {
            conns: conns.clone(),
            active: active.clone(),
            id,
            uid,
        };
        let state = state.clone();
        let spawned = std::thread::Builder::new()
            .name("morpheus-conn".into())
            .spawn(move || {
                let served = Session::new(sock.as_fd(), &peer, &state, grace_ns)
                    .and_then(|mut session| session.serve());
                if let Err(e) = served {
                    debug!("connection ended: {e:#}");
                }
                drop(sock);
                drop(admitted);
            });
        if spawned.is_err() {
            // The closure was dropped unrun: its socket closed, its slot freed.
            warn_now("cannot start a connection thread");
        }
    }
}
