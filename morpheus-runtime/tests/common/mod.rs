// SPDX-License-Identifier: GPL-2.0-only
//! A stand-in for scx_morpheus's loader: a real Unix SOCK_SEQPACKET socket
//! speaking the real protocol (`morpheus_common::protocol`), serving a memfd
//! as the SCB array. It lets the host tests exercise the registration
//! client, the fallback and the hint path without a kernel scheduler. The
//! real loader and BPF program are tested against this runtime in the VM.
#![allow(dead_code)]

pub mod logs;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use morpheus_common::protocol::Message;
use morpheus_common::seqpacket::{self, Received};
use morpheus_common::{ABI_MAGIC, ABI_VERSION, SCB_SIZE, Scb, Status};

/// How the fake loader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Accept everything.
    Ok,
    /// Answer hello with status BAD_VERSION.
    BadVersionStatus,
    /// Answer hello with a header of another ABI version.
    WrongHeaderVersion,
    /// Accept hello, answer register with TABLE_FULL.
    TableFull,
}

/// What the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Hello,
    /// Register with the flags and the tid the attached pidfd refers to.
    Register {
        flags: u32,
        pidfd_tid: Option<i32>,
    },
    Unregister {
        slot: u32,
        generation: u64,
    },
}

pub struct Server {
    pub path: PathBuf,
    pub max_workers: u32,
    pub grace_ns: u64,
    base: *mut u8,
    len: usize,
    memfd: OwnedFd,
    stop: Arc<AtomicBool>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

unsafe impl Send for Server {}
unsafe impl Sync for Server {}

fn check(rc: i64, what: &str) -> i64 {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
    rc
}

/// Sends a reply, as the loader does; a client that went away is not an
/// error here (its session ends at the next receive).
fn send(sock: BorrowedFd<'_>, msg: &Message, pass: Option<BorrowedFd<'_>>) {
    let _ = seqpacket::send(sock, msg, pass);
}

/// The tid a pidfd refers to (from /proc/self/fdinfo).
fn pidfd_tid(fd: &OwnedFd) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

impl Server {
    /// Starts a fake loader at `path` (replacing any stale socket file).
    pub fn start(path: &Path, behaviour: Behaviour) -> Server {
        let _ = std::fs::remove_file(path);
        let max_workers = 4u32;
        let len = 4096usize;
        let memfd = unsafe {
            OwnedFd::from_raw_fd(check(
                libc::memfd_create(c"scb".as_ptr(), libc::MFD_CLOEXEC) as i64,
                "memfd",
            ) as i32)
        };
        check(
            unsafe { libc::ftruncate(memfd.as_raw_fd(), len as i64) } as i64,
            "ftruncate",
        );
        let (base, _) = morpheus_common::shm::SharedMapping::new(memfd.as_fd(), len)
            .expect("mmap the fake SCB array")
            .leak();
        let lfd = seqpacket::bind(path).expect("bind the fake loader's socket");
        seqpacket::listen(lfd.as_fd(), 8).expect("listen");
        let mut server = Server {
            path: path.to_path_buf(),
            max_workers,
            grace_ns: 100_000_000,
            base: base.cast(),
            len,
            memfd,
            stop: Arc::new(AtomicBool::new(false)),
            seen: Arc::new(Mutex::new(Vec::new())),
            threads: Vec::new(),
        };
        let stop = server.stop.clone();
        let shared = Shared {
            behaviour,
            stop: server.stop.clone(),
            seen: server.seen.clone(),
            map_fd: server.memfd.as_raw_fd(),
            base: server.base as usize,
            // One slot table for every session, as one SCB array serves
            // them all here (the real loader has one array per process): a
            // forked child's session gets other slots than its parent's.
            used: Arc::new(Mutex::new(vec![false; max_workers as usize])),
            grace_ns: server.grace_ns,
        };
        server.threads.push(std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop.load(Relaxed) {
                let mut p = libc::pollfd {
                    fd: lfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                if unsafe { libc::poll(&mut p, 1, 10) } <= 0 {
                    continue;
                }
                let Ok(conn) = seqpacket::accept(lfd.as_fd()) else {
                    continue;
                };
                let mut session = Session {
                    shared: shared.clone(),
                    mine: Vec::new(),
                    generation: 0,
                };
                conns.push(std::thread::spawn(move || session.serve(conn)));
            }
            for c in conns {
                let _ = c.join();
            }
        }));
        server
    }

    /// The kernel line's view of `slot` (as BPF would write it).
    pub fn scb(&self, slot: u32) -> *mut Scb {
        assert!(slot < self.max_workers);
        unsafe { self.base.add(slot as usize * SCB_SIZE).cast() }
    }

    fn u64_at(&self, slot: u32, off: usize) -> &AtomicU64 {
        unsafe { AtomicU64::from_ptr(self.scb(slot).cast::<u8>().add(off).cast()) }
    }

    fn u32_at(&self, slot: u32, off: usize) -> &AtomicU32 {
        unsafe { AtomicU32::from_ptr(self.scb(slot).cast::<u8>().add(off).cast()) }
    }

    /// Issues a hint as scx_morpheus does: issue time and deadline, then
    /// one more in the signal word's hint sequence. Returns the new
    /// sequence (the word's hint bits).
    pub fn hint(&self, slot: u32) -> u64 {
        let now = monotonic_ns();
        self.u64_at(slot, std::mem::offset_of!(Scb, k.hint_issued_ns))
            .store(now, Relaxed);
        self.u64_at(slot, std::mem::offset_of!(Scb, k.hint_deadline_ns))
            .store(now + self.grace_ns, Relaxed);
        let word = self
            .u64_at(slot, std::mem::offset_of!(Scb, k.hint_seq))
            .fetch_add(1, SeqCst)
            + 1;
        word & morpheus_common::abi::MORPHEUS_HINT_SEQ_MASK
    }

    /// Sends a catch-up as scx_morpheus does: one more in the signal
    /// word's catch-up field (abi.h). Returns the new word.
    pub fn catch_up(&self, slot: u32) -> u64 {
        let one = 1u64 << morpheus_common::abi::MORPHEUS_CATCH_UP_SHIFT;
        self.u64_at(slot, std::mem::offset_of!(Scb, k.hint_seq))
            .fetch_add(one, SeqCst)
            + one
    }

    /// Counts an escalation against `slot`.
    pub fn escalate(&self, slot: u32) {
        self.u32_at(slot, std::mem::offset_of!(Scb, k.escalations))
            .fetch_add(1, SeqCst);
    }

    /// `u.ack_seq` of `slot`.
    pub fn ack_seq(&self, slot: u32) -> u64 {
        self.u64_at(slot, std::mem::offset_of!(Scb, u.ack_seq))
            .load(Acquire)
    }

    /// `u.critical_depth` of `slot`.
    pub fn critical_depth(&self, slot: u32) -> u32 {
        self.u32_at(slot, std::mem::offset_of!(Scb, u.critical_depth))
            .load(Relaxed)
    }

    /// `u.flags` of `slot`.
    pub fn user_flags(&self, slot: u32) -> u32 {
        self.u32_at(slot, std::mem::offset_of!(Scb, u.flags))
            .load(Relaxed)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops: closes the listener and every connection, removes the socket.
    pub fn stop(mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // The mapping is left in place: the runtime may still read it,
        // exactly as with a scheduler that went away.
    }
}

/// What every session of the fake loader shares.
#[derive(Clone)]
struct Shared {
    behaviour: Behaviour,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The memfd passed with every hello reply.
    map_fd: RawFd,
    /// Address of the server's mapping of the SCB array.
    base: usize,
    used: Arc<Mutex<Vec<bool>>>,
    grace_ns: u64,
}

/// One client connection: the slots it registered, released when it ends.
struct Session {
    shared: Shared,
    mine: Vec<usize>,
    generation: u64,
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut used = self.shared.used.lock().unwrap_or_else(|e| e.into_inner());
        for &s in &self.mine {
            used[s] = false;
        }
    }
}

impl Session {
    fn serve(&mut self, conn: OwnedFd) {
        let sock = conn.as_fd();
        while !self.shared.stop.load(Relaxed) {
            let mut p = libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            if unsafe { libc::poll(&mut p, 1, 10) } <= 0 {
                continue;
            }
            let (decoded, passed) = match seqpacket::recv(sock) {
                Ok(Received::Packet(decoded, passed)) => (decoded, passed),
                Ok(Received::Closed) | Err(_) => return,
            };
            let reply = match decoded {
                Err(e) => Message::Error { status: e.status() },
                Ok(Message::Hello { .. }) => {
                    self.hello(sock);
                    continue;
                }
                Ok(Message::Register { flags, .. }) => self.register(flags, passed),
                Ok(Message::Unregister { slot, generation }) => self.unregister(slot, generation),
                Ok(_) => Message::Error {
                    status: Status::BadMessage,
                },
            };
            send(sock, &reply, None);
        }
    }

    /// Records a message the server received.
    fn saw(&self, seen: Seen) {
        self.shared.seen.lock().unwrap().push(seen);
    }

    fn hello(&mut self, sock: BorrowedFd<'_>) {
        self.saw(Seen::Hello);
        let sh = &self.shared;
        let ok = Message::HelloReply {
            status: Status::Ok,
            max_workers: sh.used.lock().unwrap().len() as u32,
            scb_size: SCB_SIZE as u32,
            flags: 0,
            grace_ns: sh.grace_ns,
        };
        // SAFETY: the memfd lives as long as the server, which outlives
        // every session.
        let map_fd = unsafe { BorrowedFd::borrow_raw(sh.map_fd) };
        match sh.behaviour {
            Behaviour::BadVersionStatus => {
                let refused = Message::HelloReply {
                    status: Status::BadVersion,
                    max_workers: 0,
                    scb_size: 0,
                    flags: 0,
                    grace_ns: 0,
                };
                send(sock, &refused, None);
            }
            Behaviour::WrongHeaderVersion => {
                let mut b = ok.encode();
                b[4..6].copy_from_slice(&((ABI_VERSION + 1) as u16).to_ne_bytes());
                let _ = seqpacket::send_bytes(sock, &b, Some(map_fd));
            }
            _ => send(sock, &ok, Some(map_fd)),
        }
    }

    fn register(&mut self, flags: u32, passed: Option<OwnedFd>) -> Message {
        let pidfd_tid = passed.as_ref().and_then(pidfd_tid);
        self.saw(Seen::Register { flags, pidfd_tid });
        let mut used = self.shared.used.lock().unwrap();
        let free = used.iter().position(|u| !u);
        match (self.shared.behaviour, free, passed) {
            (Behaviour::TableFull, _, _) | (_, None, _) => Message::RegisterReply {
                status: Status::TableFull,
                slot: 0,
                generation: 0,
            },
            (_, _, None) => Message::Error {
                status: Status::BadMessage,
            },
            (_, Some(slot), Some(_)) => {
                used[slot] = true;
                self.mine.push(slot);
                self.generation += 1;
                // SAFETY: `slot` is below max_workers, whose SCBs fit in
                // the server's mapping, which outlives every session.
                unsafe {
                    let base = self.shared.base as *mut u8;
                    let scb = base.add(slot * SCB_SIZE).cast::<Scb>();
                    std::ptr::write_bytes(scb, 0, 1);
                    (*scb).k.magic = ABI_MAGIC;
                    (*scb).k.abi_version = ABI_VERSION as u16;
                    (*scb).k.state = 1;
                    (*scb).k.generation = self.generation;
                }
                Message::RegisterReply {
                    status: Status::Ok,
                    slot: slot as u32,
                    generation: self.generation,
                }
            }
        }
    }

    fn unregister(&mut self, slot: u32, generation: u64) -> Message {
        self.saw(Seen::Unregister { slot, generation });
        let mut used = self.shared.used.lock().unwrap();
        let own = self.mine.iter().position(|&s| s == slot as usize);
        match (used.get_mut(slot as usize), own) {
            (Some(u), Some(i)) if *u => {
                *u = false;
                self.mine.swap_remove(i);
                Message::UnregisterReply { status: Status::Ok }
            }
            _ => Message::UnregisterReply {
                status: Status::NotFound,
            },
        }
    }
}

/// `CLOCK_MONOTONIC` now (ns): the clock of the SCB's timestamps.
pub use morpheus_common::clock::monotonic_ns;

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

/// Context switches (voluntary and not) of the thread named `name` (as
/// `comm` shows it: its first 15 bytes).
pub fn switches_of(name: &str) -> u64 {
    let name = &name[..name.len().min(15)];
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = entry.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        return status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .map(|l| l.split(':').nth(1).unwrap().trim().parse::<u64>().unwrap())
            .sum();
    }
    panic!("no thread named {name}");
}

/// Configures this test process: no scheduler (socket `name`, absent),
/// the given budget, and no pressure source (host CPU pressure would
/// halve the budget, and change how often the monitor wakes).
pub fn configure_budget_only(name: &str, budget: Duration) {
    morpheus_runtime::configure(morpheus_runtime::Config {
        socket_path: socket_path(name),
        budget,
        sources: morpheus_runtime::Sources {
            pressure: false,
            ..morpheus_runtime::Sources::default()
        },
        ..morpheus_runtime::Config::default()
    })
    .unwrap();
}

/// CPU time of the calling thread.
pub use morpheus_common::clock::thread_cpu;

/// Runs `f` in a loop until the thread has used `cpu` of CPU time (not wall
/// time: on a loaded host a thread may get a small share of a wall-clock
/// interval, and what budgets count is CPU). Panics after `wall_cap`.
pub fn for_cpu(cpu: Duration, wall_cap: Duration, mut f: impl FnMut()) {
    let (start, cpu_start) = (Instant::now(), thread_cpu());
    while thread_cpu().saturating_sub(cpu_start) < cpu {
        f();
        assert!(
            start.elapsed() < wall_cap,
            "got less than {cpu:?} of CPU in {wall_cap:?}"
        );
    }
}

/// Burns CPU for `d` (wall clock).
pub fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A unique socket path for one test process.
pub fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("morpheus-test-{name}-{}.sock", std::process::id()))
}

/// The calling thread as a registered Tokio worker of this process,
/// against a fake loader on a socket of its own (`name`), with kernel
/// signals honoured (the monitor has seen the registration) and a budget
/// too long to interfere; and a current-thread runtime for it to run
/// tasks. Once per test process (`configure` is).
pub fn pressured_worker(name: &str) -> (Arc<Server>, u32, tokio::runtime::Runtime) {
    let path = socket_path(name);
    let server = Arc::new(Server::start(&path, Behaviour::Ok));
    morpheus_runtime::configure(morpheus_runtime::Config {
        socket_path: path,
        budget: Duration::from_secs(5),
        ..morpheus_runtime::Config::default()
    })
    .unwrap();
    morpheus_runtime::attach_worker(morpheus_runtime::WorkerOptions {
        kind: morpheus_runtime::RuntimeKind::Tokio,
        ..morpheus_runtime::WorkerOptions::default()
    })
    .unwrap();
    let slot = morpheus_runtime::current_worker().unwrap().slot.unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        morpheus_runtime::metrics::snapshot().mode == morpheus_runtime::RuntimeMode::Pressured
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (server, slot, rt)
}
