// SPDX-License-Identifier: GPL-2.0-only
//! A scheduler of another ABI version, and a full worker table: the runtime
//! keeps working on the budget source and says why. Uses the fake loader in
//! tests/common (the real one is tested in the VM).

mod common;

use std::time::Duration;

use common::{Behaviour, Server, spin, wait_until};
use morpheus_runtime::metrics::snapshot;
use morpheus_runtime::{Config, RegistrationState, YieldCause, bindings, current_worker};

const WAIT: Duration = Duration::from_secs(5);

/// Spins with checkpoints until one yields; returns its cause.
fn run_until_yield() -> YieldCause {
    // Generous wall-clock cap: a loaded host may give this thread little
    // CPU, and the budget counts CPU.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        spin(Duration::from_micros(50));
        if let Some(c) = bindings::checkpoint() {
            return c;
        }
    }
    panic!("no yield within 60 s");
}

fn reason() -> String {
    snapshot().registration_reason.unwrap_or_default()
}

#[test]
fn incompatible_or_full_scheduler_falls_back_to_the_budget() {
    let path = common::socket_path("errors");
    morpheus_runtime::configure(Config {
        socket_path: path.clone(),
        reconnect_interval: Duration::from_millis(100),
        budget: Duration::from_millis(10),
        // Exact causes: keep the host's real PSI out of it.
        sources: morpheus_runtime::Sources {
            pressure: false,
            ..Default::default()
        },
        ..Config::default()
    })
    .unwrap();

    // A loader whose messages carry another ABI version.
    let server = Server::start(&path, Behaviour::WrongHeaderVersion);
    assert_eq!(bindings::checkpoint(), None); // attaches this thread
    let s = snapshot();
    assert_eq!(s.registration, RegistrationState::Unavailable);
    assert!(reason().contains("another ABI version"), "{}", reason());
    assert_eq!(current_worker().unwrap().slot, None);
    assert_eq!(run_until_yield(), YieldCause::Budget);
    server.stop();

    // A loader that refuses our version explicitly.
    let server = Server::start(&path, Behaviour::BadVersionStatus);
    assert!(wait_until(WAIT, || !server.seen().is_empty()));
    assert!(
        wait_until(WAIT, || reason()
            .contains("upgrade the runtime and the scheduler together")),
        "{}",
        reason()
    );
    assert_eq!(run_until_yield(), YieldCause::Budget);
    server.stop();

    // A loader with a full worker table: connected, but not registered.
    let server = Server::start(&path, Behaviour::TableFull);
    assert!(wait_until(WAIT, || snapshot().registration
        == RegistrationState::Connected));
    assert!(
        wait_until(WAIT, || reason().contains("table is full")),
        "{}",
        reason()
    );
    assert_eq!(current_worker().unwrap().slot, None);
    assert!(!snapshot().sources.active.kernel);
    assert_eq!(run_until_yield(), YieldCause::Budget);
    server.stop();

    // No scheduler at all.
    assert!(
        wait_until(WAIT, || reason().contains("not running")),
        "{}",
        reason()
    );
    assert_eq!(run_until_yield(), YieldCause::Budget);
}
