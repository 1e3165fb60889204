// SPDX-License-Identifier: GPL-2.0-only
//! Catch-ups: a request for a process whose only worker is busy with a long
//! task is served at that task's next checkpoint, not at its next yield.
//! The worker's local budget is a second long, so it yields only at hints:
//! it shares its CPU with a bystander, another process with a busy worker
//! on each CPU, and takes turns with it (about 50 hints a run). With
//! catch-ups many pings are answered through catch-ups (25-35 of 40 seen)
//! and the bystander, whose process had no I/O, never gets one;
//! `--no-catch-up` (the control) sends none.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use morpheus_runtime::{Builder, YieldCause, checkpoint, metrics};

use crate::support::client::{metric, scraped};
use crate::support::fragile::Fragile;
use crate::support::process::{Board, Child, SharedBoard};
use crate::support::*;

/// Pings the busy worker answers while its long task still runs.
const PINGS: u64 = 40;
/// How long the long task runs at most: with catch-ups the pings take a
/// fraction of it; without, about one per budget (a second).
const BUSY: Duration = Duration::from_secs(3);

/// What one run saw.
#[derive(Debug)]
struct Run {
    /// Pings answered while the long task ran.
    answered_busy: u64,
    /// Catch-up yields the worker took.
    catch_up_yields: u64,
    /// The loader's catch-up counter.
    catch_ups: u64,
    /// Catch-ups due while the worker was off its CPU, and how many waits
    /// for it the loader's catch-up delay histogram counted.
    deferred: u64,
    delays: u64,
    /// The worker's yields by cause over the run, and the median round
    /// trip of the pings sent while it was busy (for the record).
    yields: String,
    busy_rtt_p50: Duration,
    /// Catch-ups in the bystander's workers' signal words, and the hints
    /// they answered (they shared the CPUs).
    bystander_catch_ups: u64,
    bystander_hints: u64,
}

/// Another process with a registered worker on each CPU, each spinning and
/// answering hints as a checkpointing worker does; each publishes on
/// `board` the catch-ups counted in its signal word (`work`) and the
/// hints it answered (`hinted`), and stops at `board.stop`.
fn bystander(board: &SharedBoard) -> Child {
    let board = board.0 as usize;
    Child::fork(move || {
        // SAFETY: the shared board outlives the child (the parent reaps it first).
        let b = unsafe { &*(board as *const Board) };
        let Some(s) = Fragile::open(morpheus_common::DEFAULT_SOCKET_PATH).map(Arc::new) else {
            return 1;
        };
        let threads: Vec<_> = (0..online_cpus())
            .map(|cpu| {
                let s = s.clone();
                std::thread::spawn(move || {
                    pin_to(cpu);
                    let Some((slot, generation)) = s.register(0) else {
                        return;
                    };
                    b.registered.fetch_add(1, Relaxed);
                    let (mut acked, mut catch_ups) = (0, 0);
                    while b.stop.load(Relaxed) == 0 {
                        spin_us(50);
                        if s.answer_hint(slot, &mut acked) {
                            b.hinted.fetch_add(1, Relaxed);
                        }
                        let now = s.catch_ups(slot);
                        if now != catch_ups {
                            b.work.fetch_add(now.wrapping_sub(catch_ups), Relaxed);
                            catch_ups = now;
                        }
                    }
                    s.unregister(slot, generation);
                })
            })
            .collect();
        threads.into_iter().for_each(|t| drop(t.join()));
        0
    })
}

/// A one-worker service on the test CPU (a local budget of a second) with
/// an echo listener: a client on another CPU sends pings while a task of
/// the worker spins with a checkpoint every ~50 µs.
fn run(loader_args: &[&str], addr: &str) -> Run {
    let loader = Loader::start(&[&["--metrics-addr", addr], loader_args].concat());
    let board = SharedBoard::new();
    let mut bystander = bystander(&board);
    assert!(
        wait_for(Duration::from_secs(30), || board.registered.load(Relaxed)
            == online_cpus() as u64),
        "the bystander's workers did not register"
    );
    let cpu = test_cpu();
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .budget(Duration::from_secs(1))
        .on_thread_start(move || pin_to(cpu))
        .enable_all()
        .build()
        .unwrap();
    let registered = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicBool::new(false));
    let answered_busy = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (b, a) = (busy.clone(), answered_busy.clone());
    rt.spawn(async move {
        let l = tokio::net::TcpListener::from_std(listener).unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut byte = [0u8; 1];
        while s.read_exact(&mut byte).await.is_ok() {
            if b.load(Relaxed) {
                a.fetch_add(1, Relaxed);
            }
            if s.write_all(&byte).await.is_err() {
                return;
            }
        }
    });
    let before = metrics::snapshot().process;

    // The client: once the worker is registered, pings while it idles (it
    // is parked on its epoll instance, which the kernel learns from), then
    // while the long task runs.
    let other = (cpu + online_cpus() - 1) % online_cpus();
    let (r, b, a) = (registered.clone(), busy.clone(), answered_busy.clone());
    let client = std::thread::spawn(move || {
        pin_to(other);
        assert!(
            wait_for(Duration::from_secs(30), || r.load(Relaxed)),
            "never registered"
        );
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        let ping = |s: &mut TcpStream| {
            let t = Instant::now();
            s.write_all(b"p").unwrap();
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte).unwrap();
            t.elapsed()
        };
        for _ in 0..5 {
            ping(&mut s);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            wait_for(Duration::from_secs(30), || b.load(Relaxed)),
            "never busy"
        );
        let mut rtts = Vec::new();
        while b.load(Relaxed) && a.load(Relaxed) < PINGS {
            rtts.push(ping(&mut s));
            std::thread::sleep(Duration::from_millis(5));
        }
        rtts.sort();
        rtts.get(rtts.len() / 2).copied().unwrap_or_default()
    });

    rt.block_on(async {
        let (r, b, a) = (registered.clone(), busy.clone(), answered_busy.clone());
        tokio::spawn(async move {
            // Registered first: its first checkpoint attaches the worker.
            let deadline = Instant::now() + Duration::from_secs(30);
            while morpheus_runtime::current_worker().map_or(true, |w| w.slot.is_none()) {
                assert!(Instant::now() < deadline, "never registered");
                spin_us(50);
                checkpoint!();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // Let the idle pings through, then be busy.
            r.store(true, Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            b.store(true, Relaxed);
            let end = Instant::now() + BUSY;
            while Instant::now() < end && a.load(Relaxed) < PINGS {
                spin_us(50);
                checkpoint!();
            }
            b.store(false, Relaxed);
        })
        .await
        .unwrap()
    });
    let busy_rtt_p50 = client.join().unwrap();
    let after = metrics::snapshot().process;
    board.stop.store(1, Relaxed);
    assert_eq!(
        bystander.wait(Duration::from_secs(10)),
        Some(0),
        "the bystander did not finish"
    );
    let r = Run {
        answered_busy: answered_busy.load(Relaxed),
        catch_up_yields: after.yields_by(YieldCause::CatchUp)
            - before.yields_by(YieldCause::CatchUp),
        catch_ups: metric(addr, "catch_ups"),
        deferred: metric(addr, "catch_ups_deferred"),
        delays: scraped(addr).count("catch_up_delay_seconds"),
        yields: YieldCause::ALL
            .iter()
            .map(|&c| format!("{c}={}", after.yields_by(c) - before.yields_by(c)))
            .collect::<Vec<_>>()
            .join(" "),
        busy_rtt_p50,
        bystander_catch_ups: board.work.load(Relaxed),
        bystander_hints: board.hinted.load(Relaxed),
    };
    drop(rt);
    assert!(loader.stop().status.success());
    r
}

#[test]
fn a_busy_worker_serves_io_at_its_next_checkpoint() {
    require_sched_ext();
    let _slot = exclusive();
    let on = run(&[], "127.0.0.1:19431");
    let off = run(&["--no-catch-up"], "127.0.0.1:19432");
    for (name, r) in [("on", &on), ("off (control)", &off)] {
        println!(
            "catch-ups {name}: {} pings answered while busy (round trip p50 {:?}), catch-ups {} sent ({} deferred, {} waits timed) {} taken; yields {}; bystander: {} catch-ups, {} hints answered",
            r.answered_busy,
            r.busy_rtt_p50,
            r.catch_ups,
            r.deferred,
            r.delays,
            r.catch_up_yields,
            r.yields,
            r.bystander_catch_ups,
            r.bystander_hints
        );
    }
    // The bystander shared the CPUs (it answered hints) and, its own
    // process never having had I/O, got no catch-up.
    assert!(on.bystander_hints > 0, "{on:?}");
    assert_eq!(on.bystander_catch_ups, 0, "{on:?}");
    // On: nearly every ping is answered while the long task runs, many
    // through a catch-up the loader counted and the worker took (the
    // others at the worker's hint yields).
    assert!(on.answered_busy >= PINGS * 3 / 4, "{on:?}");
    assert!(on.catch_up_yields >= PINGS / 4, "{on:?}");
    assert!(on.catch_ups >= on.catch_up_yields, "{on:?}");
    // Some pings came while the worker had yielded its CPU to the
    // bystander: those catch-ups were deferred to its next run, and each
    // wait for it was timed (fewer when a second one came due before it
    // ran: one wait, one delivery).
    assert!(on.deferred >= 1, "{on:?}");
    assert!((1..=on.deferred).contains(&on.delays), "{on:?}");
    // Off: no catch-up is sent or taken.
    assert_eq!(off.catch_ups, 0, "{off:?}");
    assert_eq!(off.delays, 0, "{off:?}");
    assert_eq!(off.catch_up_yields, 0, "{off:?}");
}
