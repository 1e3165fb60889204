// SPDX-License-Identifier: GPL-2.0-only
//! The registration socket: a `SOCK_SEQPACKET` Unix socket on which runtimes
//! say HELLO (and receive their process's SCB array), REGISTER threads (with a
//! pidfd) and UNREGISTER them. One thread per connection; every message is
//! validated; identities come from the kernel.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use log::{debug, info, warn};
use morpheus_common::protocol::Message;
use morpheus_common::seqpacket::{self, Received};
use morpheus_common::{MAX_WORKERS_PER_PROCESS, SCB_SIZE, Status, WorkerState};

use crate::peer::{self, Peer};
use crate::registry::{Limits, Opened, Registry, Worker};
use crate::scb_maps::{Kernel, ScbArray};

/// Connections served at once; more are closed right after accept.
const MAX_CONNECTIONS: u64 = 1024;
/// Connections one user (other than root) may hold at once, so that no
/// user can take every connection from the others.
const MAX_CONNECTIONS_PER_USER: u64 = MAX_CONNECTIONS / 4;
/// Descriptors the loader needs at most: a pidfd per worker, a socket and
/// a pidfd per connection, an SCB array per process, and room to spare.
const FDS_NEEDED: u64 = morpheus_common::MAX_WORKERS as u64
    + 2 * MAX_CONNECTIONS
    + morpheus_common::MAX_PROCESSES as u64
    + 256;
/// Invalid messages tolerated on one connection before it is closed.
const MAX_BAD_MESSAGES: u32 = 16;
/// A connection that has not said HELLO after this long is closed.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Counters the loader keeps (the BPF program keeps the rest).
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerCounters {
    /// Registrations accepted.
    pub registrations: u64,
    /// Registrations refused (any status but OK).
    pub refusals: u64,
    /// Invalid messages received.
    pub bad_messages: u64,
    /// Workers released after their thread exited.
    pub reaped: u64,
    /// Hints outstanding when their worker left (counted as dropped).
    pub hints_dropped: u64,
}

/// Everything the connection threads share.
pub struct State {
    registry: Registry<OwnedFd>,
    arrays: HashMap<u32, ScbArray>,
    kernel: Kernel,
    /// Loader-side counters.
    pub counters: ServerCounters,
}

/// Workers by SCB state, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerCounts {
    /// Processes with a session.
    pub processes: u64,
    /// Live registrations, by the registry's own count (not by SCB state,
    /// which clients can write).
    pub workers: u64,
    /// Registered, not yet run.
    pub registered: u64,
    /// Have run under the scheduler.
    pub running: u64,
    /// Exited, not yet reaped.
    pub dead: u64,
}

impl State {
    /// Tears down one worker: detach from the thread (BPF stops acting on
    /// it at once), mark the slot dead. The pidfd closes when `w` drops.
    fn release(&mut self, tgid: u32, slot: u32, w: Worker<OwnedFd>) {
        if self.kernel.detach_worker(&w.handle) {
            self.counters.hints_dropped += 1;
        }
        if let Some(array) = self.arrays.get(&tgid) {
            array.set_state(slot, WorkerState::Dead);
        }
    }

    fn release_all(&mut self, tgid: u32, workers: Vec<(u32, Worker<OwnedFd>)>) {
        for (slot, w) in workers {
            self.release(tgid, slot, w);
        }
    }

    /// Forgets a process entirely (its SCB array leaves BPF and our mapping).
    fn drop_process(&mut self, tgid: u32) {
        self.kernel.remove_array(tgid);
        self.arrays.remove(&tgid);
    }

    /// Releases workers whose thread exited, as their pidfds say (a
    /// backstop for exit events lost to a full ring; the SCB's state is
    /// not asked: the client can write it). Returns how many were reaped.
    pub fn sweep(&mut self) -> usize {
        let mut gone = Vec::new();
        for (&tgid, p) in self.registry.iter() {
            for (slot, w) in p.slots.iter().enumerate() {
                let Some(w) = w else { continue };
                if peer::pidfd_exited(w.handle.as_fd()) {
                    gone.push((tgid, slot as u32, w.tid));
                }
            }
        }
        let n = gone.len();
        for (tgid, slot, tid) in gone {
            self.reap(tgid, slot, tid);
        }
        n
    }

    /// Releases the slot of thread `tid` that exited.
    pub fn reap(&mut self, tgid: u32, slot: u32, tid: u32) {
        if let Some(w) = self.registry.reap(tgid, slot, tid) {
            debug!("worker {tgid}/{tid} exited; slot {slot} reclaimed");
            self.counters.reaped += 1;
            self.release(tgid, slot, w);
        }
    }

    /// Workers by state.
    pub fn counts(&self) -> WorkerCounts {
        let mut c = WorkerCounts {
            processes: self.registry.processes() as u64,
            workers: self.registry.workers() as u64,
            ..Default::default()
        };
        for (tgid, p) in self.registry.iter() {
            let Some(array) = self.arrays.get(tgid) else {
                continue;
            };
            for (slot, w) in p.slots.iter().enumerate() {
                if w.is_none() {
                    continue;
                }
                match array.state(slot as u32) {
                    Some(WorkerState::Registered) => c.registered += 1,
                    Some(WorkerState::Running) => c.running += 1,
                    Some(WorkerState::Dead) => c.dead += 1,
                    _ => {}
                }
            }
        }
        c
    }
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

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    /// Binds the socket (removing a stale one) and starts serving.
    pub fn start(cfg: ServerConfig, kernel: Kernel) -> Result<Server> {
        let listener = bind(&cfg)?;
        let state = Arc::new(Mutex::new(State {
            registry: Registry::new(cfg.limits),
            arrays: HashMap::new(),
            kernel,
            counters: ServerCounters::default(),
        }));
        let shutdown = Arc::new(AtomicBool::new(false));
        raise_fd_limit();
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

/// Creates, binds and permissions the listening socket.
fn bind(cfg: &ServerConfig) -> Result<OwnedFd> {
    let path = &cfg.path;
    if path.as_os_str().as_bytes().len() >= 108 {
        bail!(
            "socket path {} is too long (at most 107 bytes)",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the socket directory {}", dir.display()))?;
        check_socket_dir(dir)?;
    }
    remove_stale(path)?;

    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("cannot create the registration socket");
    }
    // SAFETY: a fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let (addr, len) = sockaddr(path);
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), len) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("cannot bind {}", path.display()));
    }
    let cpath = CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
    // The directory lets no one else replace what we bound (checked
    // above); still, never follow a symlink when setting permissions.
    use std::os::unix::fs::FileTypeExt;
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        bail!("{} is not the socket just bound", path.display());
    }
    // SAFETY: chmod/chown on the path we just bound.
    unsafe {
        if libc::chmod(cpath.as_ptr(), cfg.mode as libc::mode_t) != 0 {
            return Err(io::Error::last_os_error()).context("cannot chmod the socket");
        }
        if let Some(gid) = cfg.group
            && libc::fchownat(
                libc::AT_FDCWD,
                cpath.as_ptr(),
                u32::MAX,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            ) != 0
        {
            return Err(io::Error::last_os_error()).context("cannot chown the socket");
        }
        if libc::listen(fd, 128) != 0 {
            return Err(io::Error::last_os_error()).context("cannot listen on the socket");
        }
    }
    Ok(sock)
}

/// The socket's directory must keep others from replacing the socket (and
/// so from redirecting clients, or the permissions we set, elsewhere): owned
/// by us or root, and writable by nobody else unless sticky (as /tmp is:
/// others cannot remove or rename what we bind there).
fn check_socket_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot inspect the socket directory {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        bail!(
            "the socket directory {} belongs to uid {}, who could replace the socket: \
             use a directory owned by root (the default /run/morpheus)",
            dir.display(),
            meta.uid()
        );
    }
    let sticky = meta.mode() & libc::S_ISVTX != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        bail!(
            "the socket directory {} (mode {:o}) is writable by others, who could replace \
             the socket: remove group/other write permission or use another --socket",
            dir.display(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

fn sockaddr(path: &Path) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
        *d = *s as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + path.as_os_str().len() + 1;
    (addr, len as libc::socklen_t)
}

/// Removes a socket left behind by a loader that died; refuses to touch a
/// live one or anything that is not a socket.
fn remove_stale(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket: remove it or pick another --socket",
            path.display()
        );
    }
    // SAFETY: plain socket(2) + connect(2) probe.
    let live = unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        let probe = OwnedFd::from_raw_fd(fd);
        let (addr, len) = sockaddr(path);
        libc::connect(
            probe.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        ) == 0
    };
    if live {
        bail!(
            "another scx_morpheus is serving {}: stop it first (or pick another --socket)",
            path.display()
        );
    }
    std::fs::remove_file(path)
        .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    info!(
        "removed a stale socket left by a previous loader: {}",
        path.display()
    );
    Ok(())
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

/// Raises the soft open-file limit to the hard one: every registered worker
/// holds a pidfd, and with the usual soft limit of 1024 one user's
/// registrations could exhaust it and make accept(2) fail for everyone.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let soft = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                debug!("open-file limit raised from {soft} to {}", lim.rlim_max);
            }
        }
    }
    if lim.rlim_cur < FDS_NEEDED {
        warn!(
            "the open-file limit is {}, below the {FDS_NEEDED} a full worker table needs: \
             registrations beyond it are refused (raise LimitNOFILE or `ulimit -Hn`)",
            lim.rlim_cur
        );
    }
}

fn accept_loop(
    listener: OwnedFd,
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
        // SAFETY: accept4 on our listening socket.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
            ) {
                // The pending connection stays queued and the socket stays
                // readable: back off instead of spinning on it.
                warn_now(&format!("cannot accept connections: {e}; retrying"));
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        // SAFETY: a fresh fd from accept4.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
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
            .admit(id, fd, uid)
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
                if let Err(e) = serve(sock.as_fd(), &peer, &state, grace_ns) {
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

/// Sends a reply without waiting: a client that leaves its replies unread
/// until they fill the socket is cut off, so no client keeps the thread
/// serving it blocked (HELLO's reply is even sent under the state lock).
fn reply(sock: BorrowedFd<'_>, msg: Message, fd: Option<BorrowedFd<'_>>) -> Result<()> {
    match seqpacket::try_send(sock, &msg, fd) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            bail!("the client does not read its replies: connection closed")
        }
        r => r.context("cannot reply"),
    }
}

/// Serves one connection until it closes; then releases its process's
/// workers if it was the process's last connection.
fn serve(sock: BorrowedFd<'_>, peer: &Peer, state: &Mutex<State>, grace_ns: u64) -> Result<()> {
    let identity = peer
        .identity()
        .context("cannot identify the peer (fstat of its pidfd)")?;
    let tgid = peer.pid;
    let mut session = false;
    let mut bad = 0u32;

    // A connection holds one of the user's connection slots: it must say
    // HELLO soon or give the slot back. An open session may stay quiet.
    seqpacket::set_recv_timeout(sock, Some(HELLO_TIMEOUT))
        .context("cannot set the connection's receive timeout")?;
    let result = (|| -> Result<()> {
        loop {
            let received = match seqpacket::recv(sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !session => {
                    bail!("pid {tgid}: no HELLO within {HELLO_TIMEOUT:?}: connection closed")
                }
                r => r?,
            };
            let (msg, fd) = match received {
                Received::Closed => return Ok(()),
                Received::Packet(Ok(msg), fd) => (msg, fd),
                Received::Packet(Err(e), _) => {
                    lock(state).counters.bad_messages += 1;
                    bad += 1;
                    debug!("pid {tgid}: invalid message: {e}");
                    reply(sock, Message::Error { status: e.status() }, None)?;
                    if bad >= MAX_BAD_MESSAGES {
                        bail!("pid {tgid}: too many invalid messages");
                    }
                    continue;
                }
            };
            // The connection speaks for the process that connected, and
            // for no one once it has exited (its pid may be another's by
            // now). Checked under the lock: while it is held and the peer
            // lives, no other process can hold its pid here.
            let mut st = lock(state);
            if !peer.alive() {
                st.counters.refusals += 1;
                drop(st);
                reply(
                    sock,
                    Message::Error {
                        status: Status::NotPermitted,
                    },
                    None,
                )?;
                bail!("pid {tgid} has exited: its connection speaks for no one");
            }
            match (msg, fd) {
                (Message::Hello { runtime_kind }, None) if !session => {
                    match hello(&mut st, tgid, identity, peer.uid) {
                        Ok(()) => {
                            session = true;
                            seqpacket::set_recv_timeout(sock, None)
                                .context("cannot lift the receive timeout")?;
                            let array = st.arrays.get(&tgid).expect("created by hello");
                            debug!(
                                "pid {tgid} (uid {}) opened a session ({runtime_kind})",
                                peer.uid
                            );
                            reply(
                                sock,
                                Message::HelloReply {
                                    status: Status::Ok,
                                    max_workers: MAX_WORKERS_PER_PROCESS,
                                    scb_size: SCB_SIZE as u32,
                                    flags: st.kernel.scb_flags,
                                    grace_ns,
                                },
                                Some(array.fd()),
                            )?;
                        }
                        Err(status) => {
                            st.counters.refusals += 1;
                            drop(st);
                            reply(
                                sock,
                                Message::HelloReply {
                                    status,
                                    max_workers: 0,
                                    scb_size: SCB_SIZE as u32,
                                    flags: 0,
                                    grace_ns,
                                },
                                None,
                            )?;
                        }
                    }
                }
                (
                    Message::Register {
                        flags,
                        runtime_kind,
                    },
                    Some(pidfd),
                ) if session => {
                    let (status, slot, generation) =
                        match register(&mut st, peer, pidfd, flags, runtime_kind.as_u32()) {
                            Ok((slot, generation)) => (Status::Ok, slot, generation),
                            Err(status) => (status, 0, 0),
                        };
                    drop(st);
                    reply(
                        sock,
                        Message::RegisterReply {
                            status,
                            slot,
                            generation,
                        },
                        None,
                    )?;
                }
                (Message::Unregister { slot, generation }, None) if session => {
                    let status = match st.registry.unregister(tgid, slot, generation) {
                        Ok(w) => {
                            st.release(tgid, slot, w);
                            Status::Ok
                        }
                        Err(status) => status,
                    };
                    drop(st);
                    reply(sock, Message::UnregisterReply { status }, None)?;
                }
                (msg, _) => {
                    // Out of order, wrong direction, or a stray fd (closed on drop).
                    st.counters.bad_messages += 1;
                    drop(st);
                    bad += 1;
                    debug!("pid {tgid}: unexpected {msg:?} (session open: {session})");
                    // A request before HELLO has no session to act on; anything
                    // else (a reply type, a stray or missing fd) is malformed.
                    let request =
                        matches!(msg, Message::Register { .. } | Message::Unregister { .. });
                    let status = if request && !session {
                        Status::NotFound
                    } else {
                        Status::BadMessage
                    };
                    reply(sock, Message::Error { status }, None)?;
                    if bad >= MAX_BAD_MESSAGES {
                        bail!("pid {tgid}: too many invalid messages");
                    }
                }
            }
        }
    })();

    if session {
        let mut st = lock(state);
        if let Some(workers) = st.registry.close(tgid, identity) {
            let n = workers.len();
            st.release_all(tgid, workers);
            st.drop_process(tgid);
            debug!("pid {tgid}: last connection closed, {n} worker(s) released");
        }
    }
    result
}

/// Opens (or joins) the session of process `tgid` with `identity`, running
/// as `uid`.
fn hello(st: &mut State, tgid: u32, identity: u64, uid: u32) -> Result<(), Status> {
    match st.registry.open(tgid, identity, uid)? {
        Opened::Existing if st.arrays.contains_key(&tgid) => return Ok(()),
        Opened::Existing | Opened::New => {}
        Opened::Replaced(old) => {
            st.release_all(tgid, old);
            st.drop_process(tgid);
        }
    }
    match st.kernel.create_array(tgid) {
        Ok(array) => {
            st.arrays.insert(tgid, array);
            Ok(())
        }
        Err(e) => {
            warn!("pid {tgid}: {e:#}");
            let _ = st.registry.close(tgid, identity);
            Err(Status::Internal)
        }
    }
}

/// Registers the thread behind `pidfd`, which must be a live thread of
/// `peer` running as its user.
fn register(
    st: &mut State,
    peer: &Peer,
    pidfd: OwnedFd,
    flags: u32,
    kind: u32,
) -> Result<(u32, u64), Status> {
    let tgid = peer.pid;
    let result = (|| {
        let tid = peer.owns_thread(pidfd.as_fd()).map_err(|why| {
            warn!(
                "pid {tgid} (uid {}) may not register that thread: {why}",
                peer.uid
            );
            Status::NotPermitted
        })?;
        let raw = pidfd.as_raw_fd();
        let a = st.registry.register(tgid, tid, pidfd).inspect_err(|s| {
            if *s == Status::UserQuota {
                debug!(
                    "pid {tgid} thread {tid}: uid {} holds its quota of {} workers (--max-workers-per-user)",
                    peer.uid,
                    st.registry.workers_of_user(peer.uid)
                );
            }
        })?;
        let array = st.arrays.get(&tgid).ok_or(Status::NotFound)?;
        let kflags = st.kernel.scb_flags;
        let existing = st
            .registry
            .process(tgid)
            .and_then(|p| p.slots[a.slot as usize].as_ref())
            .is_some_and(|w| w.handle.as_raw_fd() != raw);
        if existing {
            // Re-registration of a live thread: nothing to set up again.
            return Ok((a.slot, a.generation));
        }
        array.init_slot(a.slot, a.generation, kflags);
        // SAFETY: borrowing the fd owned by the registry entry just created.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        if let Err(e) = st.kernel.attach_worker(fd, tgid, a.slot, flags, kind) {
            warn!("pid {tgid} thread {tid}: {e:#}");
            if let Ok(w) = st.registry.unregister(tgid, a.slot, a.generation) {
                st.release(tgid, a.slot, w);
            }
            return Err(Status::Internal);
        }
        debug!(
            "pid {tgid} thread {tid} registered in slot {} gen {} ({} workers in all)",
            a.slot,
            a.generation,
            st.registry.workers()
        );
        Ok((a.slot, a.generation))
    })();
    match result {
        Ok(_) => st.counters.registrations += 1,
        Err(_) => st.counters.refusals += 1,
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir_with_mode(name: &str, mode: u32) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("morpheus-sockdir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    #[test]
    fn a_socket_directory_others_can_write_is_refused_unless_sticky() {
        let private = dir_with_mode("private", 0o755);
        let open = dir_with_mode("open", 0o777);
        let group = dir_with_mode("group", 0o775);
        let sticky = dir_with_mode("sticky", 0o1777);
        assert!(check_socket_dir(&private).is_ok());
        assert!(check_socket_dir(&sticky).is_ok());
        for d in [&open, &group] {
            let e = check_socket_dir(d).unwrap_err().to_string();
            assert!(e.contains("is writable by others"), "{e}");
        }
        for d in [private, open, group, sticky] {
            std::fs::remove_dir(d).unwrap();
        }
    }

    #[test]
    fn a_socket_directory_of_another_user_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: only root can give a directory away (CI runs as root)");
            return;
        }
        let d = dir_with_mode("theirs", 0o755);
        let c = CString::new(d.as_os_str().as_bytes()).unwrap();
        // SAFETY: chown of the directory just created.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        let e = check_socket_dir(&d).unwrap_err().to_string();
        assert!(e.contains("belongs to uid 65534"), "{e}");
        std::fs::remove_dir(d).unwrap();
    }
}
