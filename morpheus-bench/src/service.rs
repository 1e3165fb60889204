// SPDX-License-Identifier: GPL-2.0-only
//! The `latency` benchmark's service and load generator: a Tokio service
//! over loopback TCP with light requests (answered at once) and CPU-heavy
//! requests (work with checkpoints, holding a shared lock briefly inside a
//! critical section), and a client that sends light requests open-loop at a
//! fixed rate (latency measured from the scheduled send time, so queueing
//! counts) and heavy requests closed-loop (throughput).
//!
//! Client and service run in one process, so a light request's latency is
//! split on one clock into its phases ([`LightPhases`]): the client's own
//! delay in sending it, the service's in reading it, and the way back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::work::work_unit;

const LIGHT: u8 = 1;
const HEAVY: u8 = 2;

/// What a heavy request does.
#[derive(Debug, Clone, Copy)]
pub struct HeavyWork {
    /// Work units per heavy request.
    pub units: u64,
    /// Units between checkpoints.
    pub every: u64,
    /// Units done while holding the shared lock, inside a critical section.
    pub locked_units: u64,
}

static SHARED: Mutex<u64> = Mutex::new(0);

/// The origin of the clock client and service share: its first use.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Now on the shared clock (nanoseconds since [`epoch`]).
fn stamp() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Attribution of the serve phase (`latency --attribute`): how long the
/// worker that read a light request waited in a run queue (for a CPU)
/// while the request waited for it. A worker records its thread id the
/// first time it reads a request and, for each light request, its
/// cumulative run-queue wait when it read it; the client samples every
/// recorded worker's when it sends one. Off by default: the client's
/// samples cost it a file read per worker and request.
mod attribution {
    use super::*;

    pub static ON: AtomicBool = AtomicBool::new(false);
    static WORKERS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
    static READS: Mutex<Option<HashMap<u64, (i32, u64)>>> = Mutex::new(None);

    thread_local! {
        static SEEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Thread `tid`'s cumulative run-queue wait (the second field of its
    /// schedstat), nanoseconds.
    fn runq_ns(tid: i32) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
        text.split_whitespace().nth(1)?.parse().ok()
    }

    fn gettid() -> i32 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::syscall(libc::SYS_gettid) as i32 }
    }

    /// The service read light request `id` on this thread.
    pub fn read(id: u64) {
        let tid = gettid();
        if !SEEN.replace(true) {
            WORKERS.lock().unwrap_or_else(|e| e.into_inner()).push(tid);
        }
        if let Some(rq) = runq_ns(tid) {
            READS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(HashMap::new)
                .insert(id, (tid, rq));
        }
    }

    /// Every recorded worker's run-queue wait now (at a send).
    pub fn sample() -> Vec<(i32, u64)> {
        let tids = WORKERS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        tids.into_iter()
            .filter_map(|t| Some((t, runq_ns(t)?)))
            .collect()
    }

    /// How long the worker that read request `id` waited in a run queue
    /// since `at_send` was sampled; `None` if it was not sampled then.
    pub fn waited(id: u64, at_send: &[(i32, u64)]) -> Option<u64> {
        let (tid, rq) = READS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()?
            .remove(&id)?;
        let (_, before) = at_send.iter().find(|(t, _)| *t == tid)?;
        Some(rq.saturating_sub(*before))
    }
}

/// Where one light request's latency went (nanoseconds, one clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LightPhases {
    /// From its scheduled send time to the client's write: the client
    /// thread's wake-up (its timer, then a CPU).
    pub send_ns: u64,
    /// From the write to the service reading it: a worker noticing the
    /// request (polling its I/O driver) and getting a CPU to do so.
    pub serve_ns: u64,
    /// From the service reading it to the client reading the answer: the
    /// answer's write and the client thread's wake-up.
    pub return_ns: u64,
    /// Of serve_ns, the time the worker that read it spent waiting in a
    /// run queue (with `--attribute`; else `None`).
    pub serve_runq_ns: Option<u64>,
}

impl LightPhases {
    /// The whole latency.
    pub fn total_ns(&self) -> u64 {
        self.send_ns + self.serve_ns + self.return_ns
    }
}

async fn heavy(w: HeavyWork, seed: u64) -> u64 {
    let mut acc = seed;
    let half = w.units / 2;
    for i in 0..w.units {
        acc = work_unit(acc);
        if i == half {
            let _cs = morpheus_runtime::critical_section();
            let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            for _ in 0..w.locked_units {
                acc = work_unit(acc);
            }
            *g = g.wrapping_add(acc);
        }
        if (i + 1).is_multiple_of(w.every) {
            morpheus_runtime::checkpoint!();
        }
    }
    acc
}

async fn serve_conn(mut s: TcpStream, w: HeavyWork) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut req = [0u8; 16];
    loop {
        if s.read_exact(&mut req).await.is_err() {
            return Ok(()); // client closed
        }
        let id = u64::from_le_bytes(req[8..16].try_into().expect("8 bytes"));
        let answer = match req[0] {
            // A light request's answer is when the service read it.
            LIGHT => {
                let read = stamp();
                if attribution::ON.load(Relaxed) {
                    attribution::read(id);
                }
                read
            }
            HEAVY => heavy(w, id).await,
            _ => return Ok(()),
        };
        let mut resp = [0u8; 16];
        resp[..8].copy_from_slice(&id.to_le_bytes());
        resp[8..].copy_from_slice(&answer.to_le_bytes());
        s.write_all(&resp).await?;
    }
}

/// Starts the service on `rt` (listening on 127.0.0.1, any port).
pub fn start_server(rt: &tokio::runtime::Runtime, w: HeavyWork) -> std::io::Result<SocketAddr> {
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve_conn(s, w));
        }
    });
    Ok(addr)
}

/// Sends one request and returns the answer's value.
async fn call(s: &mut TcpStream, kind: u8, id: u64) -> std::io::Result<u64> {
    let mut req = [0u8; 16];
    req[0] = kind;
    req[8..].copy_from_slice(&id.to_le_bytes());
    s.write_all(&req).await?;
    let mut resp = [0u8; 16];
    s.read_exact(&mut resp).await?;
    if resp[..8] != req[8..] {
        return Err(std::io::Error::other("response for another request"));
    }
    Ok(u64::from_le_bytes(resp[8..].try_into().expect("8 bytes")))
}

/// Load settings.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Light requests per second (open loop).
    pub light_rate: f64,
    /// Connections the light requests are spread over.
    pub light_conns: usize,
    /// Closed-loop heavy clients.
    pub heavy_clients: usize,
    /// Time before the measurement window.
    pub warmup: Duration,
    /// The measurement window.
    pub window: Duration,
    /// Attribute the serve phase ([`LightPhases::serve_runq_ns`]).
    pub attribute: bool,
}

/// What the client measured.
#[derive(Debug, Default)]
pub struct ClientResult {
    /// Latency of each light request scheduled in the window (ns from its
    /// scheduled send time), including requests still unanswered at the
    /// end (their wait so far).
    pub light_ns: Vec<u64>,
    /// The phases of each answered light request of the window.
    pub light_phases: Vec<LightPhases>,
    /// Light requests scheduled in the window.
    pub light_sent: u64,
    /// Heavy requests completed in the window.
    pub heavy_done: u64,
    /// Connection or protocol errors.
    pub errors: u64,
}

struct Shared {
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    samples: Mutex<Vec<(u64, LightPhases)>>,
    /// Per light connection: scheduled time (ns since start) of the
    /// request in flight, or u64::MAX.
    in_flight: Vec<AtomicU64>,
    heavy_done: AtomicU64,
    errors: AtomicU64,
}

async fn light_conn(addr: SocketAddr, sh: Arc<Shared>, k: usize, period: Duration) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        sh.errors.fetch_add(1, Relaxed);
        return;
    };
    let _ = s.set_nodelay(true);
    let n = sh.in_flight.len() as u32;
    let mut i = k as u32;
    loop {
        let at = sh.start + period * i;
        if at >= sh.window_end {
            return;
        }
        tokio::time::sleep_until(at.into()).await;
        sh.in_flight[k].store(at.duration_since(sh.start).as_nanos() as u64, Relaxed);
        let due = at.duration_since(epoch()).as_nanos() as u64;
        let runq = attribution::ON.load(Relaxed).then(attribution::sample);
        let sent = stamp();
        let r = call(&mut s, LIGHT, u64::from(i)).await;
        let done = stamp();
        let lat = done - due;
        sh.in_flight[k].store(u64::MAX, Relaxed);
        let Ok(read) = r else {
            sh.errors.fetch_add(1, Relaxed);
            return;
        };
        if at >= sh.window_start {
            let phases = LightPhases {
                send_ns: sent.saturating_sub(due),
                serve_ns: read.saturating_sub(sent),
                return_ns: done.saturating_sub(read),
                serve_runq_ns: runq.and_then(|r| attribution::waited(u64::from(i), &r)),
            };
            sh.samples
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((lat, phases));
        }
        i += n;
    }
}

async fn heavy_client(addr: SocketAddr, sh: Arc<Shared>, seed: u64) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        sh.errors.fetch_add(1, Relaxed);
        return;
    };
    let _ = s.set_nodelay(true);
    let mut id = seed << 32;
    while Instant::now() < sh.window_end {
        if call(&mut s, HEAVY, id).await.is_err() {
            sh.errors.fetch_add(1, Relaxed);
            return;
        }
        let now = Instant::now();
        if now >= sh.window_start && now < sh.window_end {
            sh.heavy_done.fetch_add(1, Relaxed);
        }
        id += 1;
    }
}

fn client_thread(
    name: &str,
    f: impl FnOnce(&tokio::runtime::Runtime) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            f(&rt);
            rt.shutdown_background();
        })
}

/// Runs the load against `addr` for warmup + window and returns what it
/// measured. Light and heavy clients run on two threads of their own
/// (current-thread Tokio runtimes, not Morpheus workers).
pub fn run_client(addr: SocketAddr, load: Load) -> std::io::Result<ClientResult> {
    stamp();
    attribution::ON.store(load.attribute, Relaxed);
    let start = Instant::now();
    let sh = Arc::new(Shared {
        start,
        window_start: start + load.warmup,
        window_end: start + load.warmup + load.window,
        samples: Mutex::new(Vec::new()),
        in_flight: (0..load.light_conns.max(1))
            .map(|_| AtomicU64::new(u64::MAX))
            .collect(),
        heavy_done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let period = Duration::from_secs_f64(1.0 / load.light_rate);
    let (s1, s2) = (sh.clone(), sh.clone());
    let light = client_thread("light-client", move |rt| {
        rt.block_on(async move {
            let tasks: Vec<_> = (0..s1.in_flight.len())
                .map(|k| tokio::spawn(light_conn(addr, s1.clone(), k, period)))
                .collect();
            // Unanswered requests must not hold up the end: give them a grace
            // period and count their wait so far.
            let _ =
                tokio::time::timeout_at((s1.window_end + Duration::from_secs(2)).into(), async {
                    for t in tasks {
                        let _ = t.await;
                    }
                })
                .await;
        });
    })?;
    let heavy_clients = load.heavy_clients;
    let heavy = client_thread("heavy-client", move |rt| {
        rt.block_on(async move {
            let tasks: Vec<_> = (0..heavy_clients)
                .map(|i| tokio::spawn(heavy_client(addr, s2.clone(), i as u64)))
                .collect();
            let _ =
                tokio::time::timeout_at((s2.window_end + Duration::from_secs(2)).into(), async {
                    for t in tasks {
                        let _ = t.await;
                    }
                })
                .await;
        });
    })?;
    let _ = light.join();
    let _ = heavy.join();
    let now_ns = start.elapsed().as_nanos() as u64;
    let samples = std::mem::take(&mut *sh.samples.lock().unwrap_or_else(|e| e.into_inner()));
    let (mut light_ns, light_phases): (Vec<u64>, Vec<LightPhases>) = samples.into_iter().unzip();
    let ws = (sh.window_start - start).as_nanos() as u64;
    for f in &sh.in_flight {
        let at = f.load(Relaxed);
        if at != u64::MAX && at >= ws {
            light_ns.push(now_ns - at);
        }
    }
    let light_sent = ((load.window.as_secs_f64() * load.light_rate).round()) as u64;
    Ok(ClientResult {
        light_ns,
        light_phases,
        light_sent,
        heavy_done: sh.heavy_done.load(Relaxed),
        errors: sh.errors.load(Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn light_and_heavy_requests_are_served() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let w = HeavyWork {
            units: 50,
            every: 10,
            locked_units: 2,
        };
        let addr = start_server(&rt, w).unwrap();
        let load = Load {
            light_rate: 200.0,
            light_conns: 4,
            heavy_clients: 2,
            warmup: Duration::from_millis(100),
            window: Duration::from_millis(300),
            attribute: true,
        };
        let r = run_client(addr, load).unwrap();
        assert_eq!(r.errors, 0);
        assert!(r.light_ns.len() >= 40, "{} light samples", r.light_ns.len());
        assert!(r.heavy_done > 0);
        // Every answered request is split into phases that add up to its
        // latency, the service reading it after it was sent (a phase that
        // clamped at zero would break the sum or the check).
        assert_eq!(r.light_phases.len(), r.light_ns.len());
        for (p, lat) in r.light_phases.iter().zip(&r.light_ns) {
            assert_eq!(p.total_ns(), *lat, "{p:?}");
            assert!(p.serve_ns > 0 && p.return_ns > 0, "{p:?}");
        }
        // Attributed: once the workers have read a request (the warm-up),
        // each request's reader was sampled when it was sent.
        let attributed = r
            .light_phases
            .iter()
            .filter(|p| p.serve_runq_ns.is_some())
            .count();
        assert!(
            attributed * 2 >= r.light_phases.len(),
            "{attributed} attributed"
        );
    }
}
