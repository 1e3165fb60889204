// SPDX-License-Identifier: GPL-2.0-only
//! Helpers for tests that run against a real sched_ext kernel (in the test VM
//! or natively as root): start and stop the loader, read sched_ext's state.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Only one scheduler can be attached at a time: tests take this lock.
static SCHEDULER_SLOT: Mutex<()> = Mutex::new(());

/// Counts the tests that gave the slot back, by returning or by panicking:
/// hogs started under one test end with it ([`hogs`]).
static SLOT_EPOCH: AtomicU64 = AtomicU64::new(0);

/// One test's hold on the scheduler slot. Dropping it, also while the test
/// unwinds from a failed assertion, ends the hogs the test started, so
/// that they do not load the CPU under the tests that follow.
pub struct Slot {
    _guard: MutexGuard<'static, ()>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Before the guard is released: the next test sees the new epoch.
        SLOT_EPOCH.fetch_add(1, Ordering::SeqCst);
    }
}

/// Serialises tests that attach a scheduler (a failed test must not poison
/// the others, nor leave its hogs running for them).
pub fn exclusive() -> Slot {
    Slot {
        _guard: SCHEDULER_SLOT.lock().unwrap_or_else(|e| e.into_inner()),
    }
}

const SCHED_EXT: &str = "/sys/kernel/sched_ext";

/// Panics with instructions unless this kernel has sched_ext and we are root.
pub fn require_sched_ext() {
    assert!(
        Path::new(SCHED_EXT).exists(),
        "this kernel ({}) has no sched_ext: run these tests with \
         `./morpheus-dev vm -- cargo test -p scx_morpheus --test vm`",
        kernel_release()
    );
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "attaching a scheduler needs root"
    );
}

/// `uname -r` of the running kernel.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `/sys/kernel/sched_ext/state`: "enabled", "disabled", "enabling", ...
pub fn sched_ext_state() -> String {
    std::fs::read_to_string(format!("{SCHED_EXT}/state"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The attached scheduler's name, if any (`root/ops` exists only then).
pub fn attached_ops() -> Option<String> {
    std::fs::read_to_string(format!("{SCHED_EXT}/root/ops"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Generous: BPF verification under TCG emulation takes seconds.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(120);

/// A running scx_morpheus loader whose output is captured. Dropping it
/// (e.g. when a test panics) stops it, so one failure cannot cascade.
pub struct Loader {
    child: Child,
    /// Its stdout: an in-memory file, which never fills up and blocks the
    /// loader as an unread pipe would (`--debug` prints every event).
    stdout: File,
    done: bool,
}

/// How a loader run ended.
pub struct LoaderExit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// An anonymous in-memory file (memfd).
fn memfd(name: &std::ffi::CStr) -> File {
    // SAFETY: memfd_create with a valid name; the fd is checked and owned.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    File::from(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Loader {
    /// Starts the loader with `args` and waits until the kernel reports it
    /// attached; panics (with the loader's output) if it does not.
    pub fn start(args: &[&str]) -> Loader {
        Self::start_avoiding(args, None)
    }

    /// Like [`Loader::start`]; with `avoid`, the loader may run on every CPU
    /// but that one, so that it never competes with a test's worker there.
    pub fn start_avoiding(args: &[&str], avoid: Option<usize>) -> Loader {
        Self::start_with(args, avoid, None)
    }

    /// Starts the loader as the systemd `unit` would: its ExecStart (with
    /// this build's binary for the installed one), capability bounding set,
    /// NoNewPrivileges and LimitNOFILE.
    pub fn start_as_unit(unit: &unit::Unit) -> Loader {
        let args: Vec<&str> = unit.exec[1..].iter().map(String::as_str).collect();
        Self::start_with(&args, None, Some(unit))
    }

    fn start_with(args: &[&str], avoid: Option<usize>, unit: Option<&unit::Unit>) -> Loader {
        assert_eq!(
            sched_ext_state(),
            "disabled",
            "another scheduler is attached"
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scx_morpheus"));
        if let Some(unit) = unit {
            confine(&mut cmd, unit);
        }
        let stdout = memfd(c"scx_morpheus-stdout");
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().expect("dup the loader's stdout"))
            .stderr(Stdio::piped());
        if let Some(avoid) = avoid {
            let cpus = online_cpus();
            assert!(cpus > 1, "cannot keep the loader off the only CPU");
            // SAFETY: an all-zero cpu_set_t is the empty set.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            for cpu in (0..cpus).filter(|&c| c != avoid) {
                // SAFETY: cpu < online CPUs <= CPU_SETSIZE.
                unsafe { libc::CPU_SET(cpu, &mut set) };
            }
            // SAFETY: sched_setaffinity is async-signal-safe; the child
            // only calls it before exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("cannot start scx_morpheus");
        let mut loader = Loader {
            child,
            stdout,
            done: false,
        };
        let attached = wait_for(ATTACH_TIMEOUT, || {
            sched_ext_state() == "enabled" || loader.child.try_wait().ok().flatten().is_some()
        });
        if !attached || sched_ext_state() != "enabled" {
            let exit = loader.stop();
            panic!(
                "scx_morpheus did not attach (state {:?}, loader {}):\n{}",
                sched_ext_state(),
                exit.status,
                exit.stderr
            );
        }
        // Ready when its registration socket is served.
        let socket = args
            .iter()
            .position(|a| *a == "--socket")
            .map(|i| args[i + 1].to_string())
            .unwrap_or_else(|| morpheus_common::DEFAULT_SOCKET_PATH.to_string());
        if !wait_for(ATTACH_TIMEOUT, || {
            client::connect(Path::new(&socket)).is_ok()
        }) {
            let exit = loader.stop();
            panic!(
                "scx_morpheus attached but never served {socket}:\n{}",
                exit.stderr
            );
        }
        loader
    }

    /// The loader's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether the loader process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// Sends `signal` to the loader.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits for the loader to exit on its own (up to `timeout`).
    pub fn wait(mut self, timeout: Duration) -> LoaderExit {
        let exited = wait_for(timeout, || self.child.try_wait().ok().flatten().is_some());
        if !exited {
            self.signal(libc::SIGKILL);
        }
        self.collect()
    }

    /// Stops the loader with SIGINT and collects its exit.
    pub fn stop(self) -> LoaderExit {
        self.signal(libc::SIGINT);
        self.wait(Duration::from_secs(60))
    }

    fn collect(mut self) -> LoaderExit {
        self.done = true;
        let status = self.child.wait().expect("wait for scx_morpheus");
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let mut stdout = String::new();
        if self.stdout.seek(SeekFrom::Start(0)).is_ok() {
            let _ = self.stdout.read_to_string(&mut stdout);
        }
        eprintln!("--- scx_morpheus stdout ---\n{stdout}--- stderr ---\n{stderr}--- end ---");
        LoaderExit {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.signal(libc::SIGINT);
        let stopped = wait_for(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !stopped {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
        wait_for(Duration::from_secs(10), || sched_ext_state() == "disabled");
    }
}

/// Applies `unit`'s confinement to `cmd` before it execs, as systemd does:
/// capabilities outside CapabilityBoundingSet leave the bounding set (so a
/// root process keeps only those across exec), NoNewPrivileges, and
/// LimitNOFILE.
fn confine(cmd: &mut Command, unit: &unit::Unit) {
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .expect("cap_last_cap")
        .trim()
        .parse()
        .unwrap();
    let (caps, nnp, nofile) = (unit.caps, unit.no_new_privs, unit.nofile);
    // SAFETY: prctl and setrlimit are async-signal-safe system calls; the
    // child only calls them before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            for cap in 0..=last_cap {
                if caps & (1 << cap) == 0
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if nnp && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(n) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The effective capabilities of process `pid` (`CapEff`).
pub fn effective_caps(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff");
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

/// Takes a CPU offline for its lifetime; brings it back online on drop (also
/// when the test fails).
pub struct OfflineCpu(usize);

impl OfflineCpu {
    fn path(cpu: usize) -> String {
        format!("/sys/devices/system/cpu/cpu{cpu}/online")
    }

    pub fn new(cpu: usize) -> OfflineCpu {
        std::fs::write(Self::path(cpu), "0")
            .unwrap_or_else(|e| panic!("cannot take CPU {cpu} offline: {e}"));
        OfflineCpu(cpu)
    }
}

impl Drop for OfflineCpu {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(Self::path(self.0), "1") {
            eprintln!("cannot bring CPU {} back online: {e}", self.0);
        }
    }
}

/// How many times a scheduler was enabled since boot.
pub fn enable_seq() -> u64 {
    std::fs::read_to_string("/sys/kernel/sched_ext/enable_seq")
        .expect("/sys/kernel/sched_ext/enable_seq")
        .trim()
        .parse()
        .unwrap()
}

/// Waits until the scheduler was enabled `n` more times than `since` and is
/// attached again.
pub fn reattached(since: u64, n: u64) -> bool {
    wait_for(ATTACH_TIMEOUT, || {
        enable_seq() >= since + n && sched_ext_state() == "enabled"
    })
}

pub mod client;
pub mod figures;
pub mod fragile;
pub mod kill;
pub mod offender;
pub mod process;
pub mod rt;
pub mod service;
pub mod sleeper;
pub mod unit;
pub mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) {
    pin_to_any(&[cpu]);
}

/// Restricts the calling thread to `cpus`.
pub fn pin_to_any(cpus: &[usize]) {
    // SAFETY: cpu_set_t manipulation and sched_setaffinity on ourselves.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// The SCHED_EXT scheduling policy (`SCHED_EXT` in linux/sched.h).
pub const POLICY_SCHED_EXT: i32 = morpheus_common::SCHED_EXT;

/// Switches the calling thread to `policy` (e.g. [`POLICY_SCHED_EXT`]).
pub fn set_policy(policy: i32) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on ourselves with a valid parameter.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    assert_eq!(
        rc,
        0,
        "sched_setscheduler({policy}): {}",
        std::io::Error::last_os_error()
    );
}

/// CPU-bound threads pinned to `cpu` until `stop` is set.
pub fn hogs(n: usize, cpu: usize, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<u64>> {
    hogs_with_policy(n, cpu, None, stop)
}

/// Like [`hogs`], each thread first switching itself to `policy` if given.
pub fn hogs_with_policy(
    n: usize,
    cpu: usize,
    policy: Option<i32>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    let epoch = SLOT_EPOCH.load(Ordering::SeqCst);
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_to(cpu);
                if let Some(policy) = policy {
                    set_policy(policy);
                }
                let mut x = 0u64;
                // Until stopped, or until the test that started them has
                // ended (a failed one never sets `stop`).
                while !stop.load(Ordering::Relaxed) && SLOT_EPOCH.load(Ordering::Relaxed) == epoch {
                    for _ in 0..1000 {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                }
                x
            })
        })
        .collect()
}

/// Spins for about `us` microseconds of CPU work.
pub fn spin_us(us: u64) {
    let end = Instant::now() + Duration::from_micros(us);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// A unique socket path and metrics address for one test's loader.
pub fn endpoints(name: &str, port: u16) -> (String, String) {
    (
        format!("/run/morpheus/test-{name}.sock"),
        format!("127.0.0.1:{port}"),
    )
}

/// Online CPUs (not limited by the calling thread's affinity, unlike
/// `available_parallelism`).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// The CPU the contention tests use (the last one).
pub fn test_cpu() -> usize {
    online_cpus() - 1
}

/// Runs `f` while two CPU-bound threads compete for the test CPU.
pub fn with_hogs<T>(f: impl FnOnce() -> T) -> T {
    with_hogs_of_policy(None, f)
}

/// Like [`with_hogs`], the hogs switching themselves to `policy` if given.
pub fn with_hogs_of_policy<T>(policy: Option<i32>, f: impl FnOnce() -> T) -> T {
    let stop = Arc::new(AtomicBool::new(false));
    let hogs = hogs_with_policy(2, test_cpu(), policy, stop.clone());
    let r = f();
    stop.store(true, Ordering::Relaxed);
    hogs.into_iter().for_each(|h| drop(h.join()));
    r
}

/// The loader arguments that throttle escapable workers whose hints expire
/// (20 ms grace) for `throttle_ms`.
pub fn throttle_args(throttle_ms: &str) -> [&str; 7] {
    [
        "--enforce",
        "--escalation",
        "cgroup_throttle",
        "--grace-ms",
        "20",
        "--throttle-ms",
        throttle_ms,
    ]
}

/// The usual set-up of a kernel test: a loader on its own socket and
/// metrics address (see [`endpoints`]) and a registration session with it.
pub struct Harness {
    pub session: Arc<client::Session>,
    pub addr: String,
    pub loader: Loader,
}

impl Harness {
    /// Starts the loader with `--socket`, `--metrics-addr` and `extra`
    /// arguments, and opens a session.
    pub fn start(name: &str, port: u16, extra: &[&str]) -> Harness {
        Self::start_with(name, port, extra, None)
    }

    /// Like [`Harness::start`], with the loader kept off the test CPU: the
    /// loader's own threads then never wait for that CPU, so a worker alone
    /// there is genuinely uncontended (see `Loader::start_avoiding`).
    pub fn start_off_test_cpu(name: &str, port: u16, extra: &[&str]) -> Harness {
        Self::start_with(name, port, extra, Some(test_cpu()))
    }

    fn start_with(name: &str, port: u16, extra: &[&str], avoid: Option<usize>) -> Harness {
        let (sock, addr) = endpoints(name, port);
        let mut args = vec!["--socket", &sock, "--metrics-addr", &addr];
        args.extend_from_slice(extra);
        let loader = Loader::start_avoiding(&args, avoid);
        // If the loader drops the first session, say why (its output).
        let session = match std::panic::catch_unwind(|| client::Session::open(sock.as_ref())) {
            Ok(session) => Arc::new(session),
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let exit = loader.stop();
                panic!(
                    "no session with the loader on {sock} ({why}); loader exit {}:\n{}",
                    exit.status, exit.stderr
                );
            }
        };
        Harness {
            session,
            addr,
            loader,
        }
    }

    /// The loader's metric `name` (OpenMetrics, without prefix or `_total`).
    pub fn metric(&self, name: &str) -> u64 {
        client::metric(&self.addr, name)
    }

    /// Quantile `q` of the loader's histogram `family` (for example
    /// `hint_response_seconds`), as its bucket's upper bound in
    /// microseconds (0 if nothing was observed).
    pub fn quantile_us(&self, family: &str, q: f64) -> u64 {
        client::scraped(&self.addr)
            .quantile_us(family, q)
            .unwrap_or(0)
    }

    /// Runs one registered worker on the test CPU for `ms`, alone.
    pub fn alone(&self, flags: u32, behaviour: worker::Behaviour, ms: u64) -> worker::Report {
        let r = worker::run(
            self.session.clone(),
            flags,
            behaviour,
            test_cpu(),
            Duration::from_millis(ms),
        );
        println!("{behaviour:?} flags {flags} alone: {r:?}");
        r
    }

    /// Runs one registered worker against two hogs on the test CPU for `ms`.
    pub fn contended(&self, flags: u32, behaviour: worker::Behaviour, ms: u64) -> worker::Report {
        let r = with_hogs(|| {
            worker::run(
                self.session.clone(),
                flags,
                behaviour,
                test_cpu(),
                Duration::from_millis(ms),
            )
        });
        println!("{behaviour:?} flags {flags} contended: {r:?}");
        r
    }

    /// Closes the session and stops the loader, asserting a clean exit.
    pub fn stop(self) -> LoaderExit {
        drop(self.session);
        let exit = self.loader.stop();
        assert!(exit.status.success(), "loader exit: {}", exit.stderr);
        exit
    }
}

/// Open file descriptors of process `pid`.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
