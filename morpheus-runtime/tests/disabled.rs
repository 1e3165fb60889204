// SPDX-License-Identifier: GPL-2.0-only
//! MORPHEUS_DISABLE: checkpoints never yield, critical sections still nest.

mod common;

use std::time::Duration;

use morpheus_runtime::metrics::snapshot;
use morpheus_runtime::{Config, RegistrationState, bindings, critical_depth, critical_section};

#[test]
fn disabled_runtime_is_inert() {
    let mut config = Config::from_env().unwrap();
    config.enabled = false;
    config.budget = Duration::from_millis(1);
    morpheus_runtime::configure(config).unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(30) {
        common::spin(Duration::from_micros(50));
        assert_eq!(bindings::checkpoint(), None);
    }
    {
        let _a = critical_section();
        let _b = critical_section();
        assert_eq!(critical_depth(), 2);
    }
    assert_eq!(critical_depth(), 0);
    let s = snapshot();
    assert!(!s.enabled);
    assert_eq!(s.registration, RegistrationState::Disabled);
    assert!(!s.sources.active.budget);
    assert_eq!(s.process.yields_total, 0);
}
