// SPDX-License-Identifier: GPL-2.0-only
//! No scheduler: the unregistered path, misuse errors, critical sections.

mod common;

use std::time::Duration;

use common::spin;
use morpheus_runtime::metrics::snapshot;
use morpheus_runtime::{
    Error, RegistrationState, YieldCause, bindings, critical_depth, critical_section,
    current_worker,
};

fn setup() {
    // Every test in this file uses the same (absent) socket via the
    // environment, as a deployment would.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let path = common::socket_path("absent");
        let _ = morpheus_runtime::configure(morpheus_runtime::Config {
            socket_path: path,
            budget: Duration::from_millis(10),
            // The host's real PSI would turn some budget yields into
            // pressure yields; these tests check exact causes.
            sources: morpheus_runtime::Sources {
                pressure: false,
                ..Default::default()
            },
            ..Default::default()
        });
    });
}

#[test]
fn sync_checkpoint_on_a_plain_thread_attaches_and_budgets() {
    setup();
    std::thread::spawn(|| {
        assert_eq!(current_worker().unwrap_err(), Error::NotAWorker);
        // First checkpoint: attaches, never yields.
        assert_eq!(bindings::checkpoint(), None);
        let me = current_worker().unwrap();
        assert_eq!(me.slot, None, "no scheduler: not registered");
        let s = snapshot();
        assert_eq!(s.registration, RegistrationState::Unavailable);
        assert!(
            s.registration_reason
                .unwrap()
                .contains("scx_morpheus is not running")
        );
        assert!(s.sources.active.budget && !s.sources.active.kernel);
        // CPU-bound loop: the budget source makes a checkpoint yield.
        let start = std::time::Instant::now();
        let cause = loop {
            spin(Duration::from_micros(50));
            if let Some(c) = bindings::checkpoint() {
                break c;
            }
            // Generous: a loaded host may give this thread little CPU.
            assert!(start.elapsed() < Duration::from_secs(60), "no budget yield");
        };
        assert_eq!(cause, YieldCause::Budget);
        assert!(
            current_worker()
                .unwrap()
                .ledger
                .yields_by(YieldCause::Budget)
                >= 1
        );
    })
    .join()
    .unwrap();
}

#[test]
fn misuse_gives_clear_errors() {
    setup();
    std::thread::spawn(|| {
        let err = bindings::exit_critical().unwrap_err();
        assert_eq!(err, Error::UnbalancedCriticalSection);
        assert!(
            err.to_string().contains("pair every enter_critical()"),
            "{err}"
        );
        assert!(
            Error::NotAWorker
                .to_string()
                .contains("morpheus_runtime::Builder")
        );
        bindings::enter_critical().unwrap();
        bindings::enter_critical().unwrap();
        assert_eq!(critical_depth(), 2);
        bindings::exit_critical().unwrap();
        bindings::exit_critical().unwrap();
        assert_eq!(
            bindings::exit_critical(),
            Err(Error::UnbalancedCriticalSection)
        );
        assert_eq!(critical_depth(), 0);
        assert_eq!(
            morpheus_runtime::configure(Default::default()),
            Err(Error::AlreadyConfigured)
        );
    })
    .join()
    .unwrap();
}

#[test]
fn nested_and_panicking_critical_sections_restore_the_depth() {
    setup();
    std::thread::spawn(|| {
        let outer = critical_section();
        let r = std::panic::catch_unwind(|| {
            let _a = critical_section();
            let _b = critical_section();
            assert_eq!(critical_depth(), 3);
            panic!("boom");
        });
        assert!(r.is_err());
        assert_eq!(critical_depth(), 1, "unwinding closed the inner sections");
        drop(outer);
        assert_eq!(critical_depth(), 0);
    })
    .join()
    .unwrap();
}

#[test]
fn checkpoints_inside_a_critical_section_defer() {
    setup();
    std::thread::spawn(|| {
        assert_eq!(bindings::checkpoint(), None); // attach
        {
            let _g = critical_section();
            // Run well past the budget (in CPU time: what the budget
            // counts): no yield inside the section.
            common::for_cpu(Duration::from_millis(60), Duration::from_secs(60), || {
                spin(Duration::from_micros(50));
                assert_eq!(bindings::checkpoint(), None);
            });
        }
        assert!(current_worker().unwrap().ledger.checkpoints_deferred > 0);
        // The first checkpoint after the section answers the deferred signal.
        assert_eq!(bindings::checkpoint(), Some(YieldCause::Budget));
    })
    .join()
    .unwrap();
}

/// Needs the runtime's `tokio` feature (`yield_now`).
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "current_thread")]
async fn async_checkpoint_outside_any_builder_works() {
    setup();
    for _ in 0..100 {
        morpheus_runtime::checkpoint!();
    }
    morpheus_runtime::yield_now().await;
    let me = current_worker().unwrap();
    assert_eq!(me.ledger.yields_by(YieldCause::Voluntary), 1);
}

/// Needs the runtime's `tokio` feature (a task's identity).
#[cfg(all(debug_assertions, feature = "tokio"))]
#[test]
fn holding_a_guard_across_await_on_a_current_thread_runtime_is_caught() {
    setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&rt, async {
        let holder = tokio::task::spawn_local(async {
            let _g = critical_section();
            tokio::task::yield_now().await; // the mistake
        });
        let other = tokio::task::spawn_local(async {
            morpheus_runtime::checkpoint!();
        });
        let other = other.await;
        holder.abort();
        other
    });
    let err = result.unwrap_err();
    assert!(err.is_panic());
    let msg = err.into_panic();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("held across an .await"), "{msg}");
}

/// A guardless exit: `bindings::exit_critical` or `exit_critical_answering`.
type Exit = fn() -> Result<Option<YieldCause>, Error>;

/// Leaving the outermost of two guardless sections in which a yield was
/// deferred answers it while the section is still open, through `exit`.
fn leaving_answers_the_deferred_yield(exit: Exit) {
    setup();
    std::thread::spawn(move || {
        assert_eq!(bindings::checkpoint(), None); // attach
        bindings::enter_critical().unwrap();
        bindings::enter_critical().unwrap();
        common::for_cpu(Duration::from_millis(60), Duration::from_secs(60), || {
            spin(Duration::from_micros(50));
            assert_eq!(bindings::checkpoint(), None);
        });
        assert!(current_worker().unwrap().ledger.checkpoints_deferred > 0);
        // An inner level: nothing answered yet.
        assert_eq!(exit(), Ok(None));
        // The outermost: acknowledged while still inside, then closed.
        let before = current_worker().unwrap().ledger.yields_total;
        assert_eq!(exit(), Ok(Some(YieldCause::Budget)));
        assert_eq!(critical_depth(), 0);
        assert_eq!(current_worker().unwrap().ledger.yields_total, before + 1);
        assert_eq!(bindings::checkpoint(), None, "answered already");
        assert_eq!(exit(), Err(Error::UnbalancedCriticalSection));
    })
    .join()
    .unwrap();
}

#[test]
fn leaving_a_section_can_answer_its_deferred_yield_before_it_ends() {
    leaving_answers_the_deferred_yield(morpheus_runtime::bindings::exit_critical_answering);
}

/// The same through `exit_critical`, which also gives up the CPU: one
/// behaviour for `exit_critical` in Rust and in Python.
#[test]
fn exit_critical_takes_the_deferred_yield_as_python_does() {
    leaving_answers_the_deferred_yield(morpheus_runtime::bindings::exit_critical);
}
