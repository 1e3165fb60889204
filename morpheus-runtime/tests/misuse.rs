// SPDX-License-Identifier: GPL-2.0-only
//! Misuse gives a clear error: a checkpoint polled outside a Tokio runtime,
//! unbalanced critical sections through the manual API, a thread that ends
//! inside a section.

mod common;

use std::time::Duration;

use common::logs;
use morpheus_runtime::{Config, Error, bindings, critical_depth, critical_section, detach_worker};

fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        logs::install();
        morpheus_runtime::configure(Config {
            socket_path: common::socket_path("misuse"),
            budget: Duration::from_millis(2),
            sources: morpheus_runtime::Sources {
                pressure: false,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
    });
}

/// A checkpoint polled outside a Tokio runtime: the check needs the
/// runtime's `tokio` feature (the Python bindings build without it).
#[cfg(feature = "tokio")]
mod outside_a_runtime {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::{Duration, Instant};

    use super::common::{logs, spin};
    use super::setup;
    use morpheus_runtime::{Error, checkpoint, current_worker, try_checkpoint};

    /// A minimal executor that is not Tokio: polls on the calling thread and
    /// parks until woken.
    fn block_on<F: Future>(fut: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    const OUTSIDE: &str = "polled outside a Tokio runtime";

    #[test]
    fn checkpoint_outside_a_runtime_says_so_once_and_keeps_working() {
        setup();
        for _ in 0..2 {
            let yields = std::thread::spawn(|| {
                block_on(async {
                    let start = Instant::now();
                    // Budget yields (2 ms) while spinning; the generic self-wake
                    // lets this executor poll again.
                    while current_worker().map_or(0, |w| w.ledger.yields_total) < 3 {
                        spin(Duration::from_micros(100));
                        checkpoint!();
                        assert!(
                            start.elapsed() < Duration::from_secs(20),
                            "no budget yields"
                        );
                    }
                    current_worker().unwrap().ledger.yields_total
                })
            })
            .join()
            .unwrap();
            assert!(yields >= 3);
        }
        // Two threads, several slow paths each: one message, naming the fix.
        assert_eq!(logs::count(OUTSIDE), 1, "{:#?}", logs::all());
        let line = logs::all()
            .into_iter()
            .find(|l| l.contains(OUTSIDE))
            .unwrap();
        assert!(line.starts_with("ERROR"), "{line}");
        assert!(line.contains("#[tokio::main]") && line.contains("bindings::checkpoint()"));

        // The fallible form reports it as a value, on every call.
        let r = std::thread::spawn(|| block_on(try_checkpoint()))
            .join()
            .unwrap();
        assert_eq!(r, Err(Error::OutsideRuntime));
        assert!(
            Error::OutsideRuntime
                .to_string()
                .contains("without its `tokio` feature")
        );

        // Inside a runtime (current-thread and multi-thread) it is fine.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(try_checkpoint()).map(|_| ()), Ok(()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let r = rt.block_on(async { tokio::spawn(try_checkpoint()).await.unwrap() });
        assert!(r.is_ok(), "{r:?}");
        rt.block_on(async {
            for _ in 0..100 {
                checkpoint!();
            }
        });
        assert_eq!(logs::count(OUTSIDE), 1, "in a runtime: nothing more said");
    }
}

const LEFT_OPEN: &str = "a thread ended inside a critical section";

#[test]
fn unbalanced_manual_sections_are_clear_errors() {
    setup();
    std::thread::spawn(|| {
        // Leaving a section that is not open.
        let e = bindings::exit_critical().unwrap_err();
        assert_eq!(e, Error::UnbalancedCriticalSection);
        assert!(e.to_string().contains("pair every enter_critical()"), "{e}");

        // bindings::exit_critical() cannot close a guard's section.
        let guard = critical_section();
        let e = bindings::exit_critical().unwrap_err();
        assert_eq!(e, Error::CriticalSectionNotManual);
        assert!(e.to_string().contains("closes its own section"), "{e}");
        assert_eq!(critical_depth(), 1);
        bindings::enter_critical().unwrap();
        assert_eq!(critical_depth(), 2);
        bindings::exit_critical().unwrap();
        drop(guard);
        assert_eq!(critical_depth(), 0);
        assert_eq!(
            bindings::exit_critical(),
            Err(Error::UnbalancedCriticalSection)
        );

        // Detaching inside a guard's section is legitimate: the guard
        // still closes it, nothing is reported.
        let guard = critical_section();
        detach_worker();
        assert_eq!(critical_depth(), 1);
        drop(guard);
        assert_eq!(critical_depth(), 0);
    })
    .join()
    .unwrap();
    assert_eq!(logs::count(LEFT_OPEN), 0, "{:#?}", logs::all());

    // Threads that end inside a bindings::enter_critical() section: said once.
    for _ in 0..3 {
        std::thread::spawn(|| bindings::enter_critical().unwrap())
            .join()
            .unwrap();
    }
    assert_eq!(logs::count(LEFT_OPEN), 1, "{:#?}", logs::all());
}
