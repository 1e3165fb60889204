// SPDX-License-Identifier: GPL-2.0-only
//! The mode state machine: pure logic, driven by the monitor thread once a
//! second (and by tests with a fake clock).
//!
//! ```text
//!              escalation seen                 escalation seen
//!  DETERMINISTIC ---------------> DEFENSIVE <----------------- PRESSURED
//!       |  ^                         |  no escalation for defensive_hold   ^
//!       |  | pressure low for        |  and pressure low                   |
//!       |  | pressure_hold           +-----------> base mode --------------+
//!       v  | (and not registered)
//!     PRESSURED  (registered with the kernel, or PSI above pressure_high)
//! ```
//!
//! The base mode is PRESSURED when any worker is registered with the kernel
//! (kernel hints are honoured) or the machine is overloaded by PSI, else
//! DETERMINISTIC (budget only). A pinned mode never changes.

use morpheus_common::{PRESSURE_ONE, RuntimeMode};

/// Thresholds of the machine (see `crate::Config`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModeConfig {
    /// Mode to hold forever, if any.
    pub(crate) pinned: Option<RuntimeMode>,
    /// PSI `some avg10` percent that starts an overload.
    pub(crate) pressure_high: f64,
    /// PSI `some avg10` percent below which an overload may end.
    pub(crate) pressure_low: f64,
    /// Nanoseconds pressure must stay below `pressure_low` to end an overload.
    pub(crate) pressure_hold_ns: u64,
    /// Nanoseconds without escalations before DEFENSIVE is left.
    pub(crate) defensive_hold_ns: u64,
}

/// What the monitor observed since the previous update.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ModeInputs {
    /// Some worker of the process is registered with the kernel.
    pub(crate) registered: bool,
    /// Escalations applied to this process's workers since the last update.
    pub(crate) new_escalations: u64,
    /// PSI `some avg10` percent, if readable.
    pub(crate) psi_avg10: Option<f64>,
    /// Highest kernel-reported pressure over registered workers
    /// (`PRESSURE_ONE` = one runnable task per CPU).
    pub(crate) kernel_pressure: Option<u32>,
}

/// The mode state machine with hysteresis.
#[derive(Debug, Clone)]
pub(crate) struct ModeMachine {
    cfg: ModeConfig,
    mode: RuntimeMode,
    overloaded: bool,
    low_since_ns: Option<u64>,
    last_escalation_ns: Option<u64>,
    transitions: u64,
}

impl ModeMachine {
    /// A machine in its initial mode (the pin, or DETERMINISTIC).
    pub(crate) fn new(cfg: ModeConfig) -> Self {
        ModeMachine {
            cfg,
            mode: cfg.pinned.unwrap_or(RuntimeMode::Deterministic),
            overloaded: false,
            low_since_ns: None,
            last_escalation_ns: None,
            transitions: 0,
        }
    }

    /// The current mode.
    pub(crate) fn mode(&self) -> RuntimeMode {
        self.mode
    }

    /// Whether PSI currently counts as an overload.
    pub(crate) fn overloaded(&self) -> bool {
        self.overloaded
    }

    /// Mode changes so far.
    pub(crate) fn transitions(&self) -> u64 {
        self.transitions
    }

    /// A worker of the process has just registered with the kernel: the
    /// base mode is PRESSURED from now on, not from the monitor's next
    /// observation (up to a second later), so that a kernel hint that
    /// arrives meanwhile is honoured rather than ignored. A pinned mode,
    /// and DEFENSIVE, stay. Returns the mode.
    pub(crate) fn worker_registered(&mut self) -> RuntimeMode {
        if self.cfg.pinned.is_none() && self.mode == RuntimeMode::Deterministic {
            self.mode = RuntimeMode::Pressured;
            self.transitions += 1;
        }
        self.mode
    }

    /// Feeds one observation at monotonic time `now_ns`; returns the mode.
    pub(crate) fn update(&mut self, now_ns: u64, inputs: ModeInputs) -> RuntimeMode {
        // PSI overload with hysteresis: enter at `high`, leave after
        // `pressure_hold` below `low`.
        let psi = inputs.psi_avg10.unwrap_or(0.0);
        if psi >= self.cfg.pressure_high {
            self.overloaded = true;
            self.low_since_ns = None;
        } else if self.overloaded {
            if psi < self.cfg.pressure_low {
                let since = *self.low_since_ns.get_or_insert(now_ns);
                if now_ns.saturating_sub(since) >= self.cfg.pressure_hold_ns {
                    self.overloaded = false;
                    self.low_since_ns = None;
                }
            } else {
                self.low_since_ns = None;
            }
        }
        if inputs.new_escalations > 0 {
            self.last_escalation_ns = Some(now_ns);
        }
        let next = match self.cfg.pinned {
            Some(p) => p,
            None => self.automatic(now_ns, inputs),
        };
        if next != self.mode {
            self.transitions += 1;
            self.mode = next;
        }
        self.mode
    }

    fn automatic(&self, now_ns: u64, inputs: ModeInputs) -> RuntimeMode {
        let base = if inputs.registered || self.overloaded {
            RuntimeMode::Pressured
        } else {
            RuntimeMode::Deterministic
        };
        if inputs.new_escalations > 0 {
            return RuntimeMode::Defensive;
        }
        if self.mode == RuntimeMode::Defensive {
            let quiet = self
                .last_escalation_ns
                .is_none_or(|t| now_ns.saturating_sub(t) >= self.cfg.defensive_hold_ns);
            let kernel_calm = inputs.kernel_pressure.is_none_or(|p| p <= PRESSURE_ONE);
            if !(quiet && !self.overloaded && kernel_calm) {
                return RuntimeMode::Defensive;
            }
        }
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RuntimeMode::*;

    const S: u64 = 1_000_000_000;

    fn machine(pinned: Option<RuntimeMode>) -> ModeMachine {
        ModeMachine::new(ModeConfig {
            pinned,
            pressure_high: 40.0,
            pressure_low: 20.0,
            pressure_hold_ns: 5 * S,
            defensive_hold_ns: 10 * S,
        })
    }

    fn inp(registered: bool, esc: u64, psi: f64) -> ModeInputs {
        ModeInputs {
            registered,
            new_escalations: esc,
            psi_avg10: Some(psi),
            kernel_pressure: None,
        }
    }

    #[test]
    fn a_registration_makes_the_mode_pressured_at_once_unless_pinned_or_defensive() {
        let mut m = machine(None);
        assert_eq!(m.worker_registered(), Pressured);
        assert_eq!(m.transitions(), 1);
        // The monitor's next observation keeps it (a worker is registered).
        assert_eq!(m.update(S, inp(true, 0, 0.0)), Pressured);
        let mut pinned = machine(Some(Deterministic));
        assert_eq!(pinned.worker_registered(), Deterministic);
        let mut defensive = machine(None);
        assert_eq!(defensive.update(0, inp(true, 1, 0.0)), Defensive);
        assert_eq!(defensive.worker_registered(), Defensive);
    }

    #[test]
    fn registration_selects_pressured_and_loss_falls_back() {
        let mut m = machine(None);
        assert_eq!(m.mode(), Deterministic);
        assert_eq!(m.update(0, inp(false, 0, 0.0)), Deterministic);
        assert_eq!(m.update(S, inp(true, 0, 0.0)), Pressured);
        assert_eq!(m.update(2 * S, inp(false, 0, 0.0)), Deterministic);
        assert_eq!(m.transitions(), 2);
    }

    #[test]
    fn escalations_enter_defensive_and_leave_after_the_hold() {
        let mut m = machine(None);
        m.update(0, inp(true, 0, 0.0));
        assert_eq!(m.update(S, inp(true, 1, 0.0)), Defensive);
        // Still defensive while within the hold.
        assert_eq!(m.update(5 * S, inp(true, 0, 0.0)), Defensive);
        // A new escalation restarts the hold.
        assert_eq!(m.update(8 * S, inp(true, 2, 0.0)), Defensive);
        assert_eq!(m.update(17 * S, inp(true, 0, 0.0)), Defensive);
        assert_eq!(m.update(18 * S, inp(true, 0, 0.0)), Pressured);
    }

    #[test]
    fn defensive_waits_for_pressure_to_subside() {
        let mut m = machine(None);
        m.update(0, inp(true, 1, 50.0));
        assert_eq!(m.mode(), Defensive);
        // Escalations stopped long ago, but PSI is still high.
        assert_eq!(m.update(20 * S, inp(true, 0, 45.0)), Defensive);
        // Below low, but not yet for pressure_hold.
        assert_eq!(m.update(21 * S, inp(true, 0, 10.0)), Defensive);
        assert_eq!(m.update(25 * S, inp(true, 0, 10.0)), Defensive);
        assert_eq!(m.update(26 * S, inp(true, 0, 10.0)), Pressured);
        // Kernel pressure above one task per CPU also holds DEFENSIVE.
        let mut m = machine(None);
        m.update(0, inp(true, 1, 0.0));
        let busy = ModeInputs {
            kernel_pressure: Some(3 * PRESSURE_ONE),
            ..inp(true, 0, 0.0)
        };
        assert_eq!(m.update(30 * S, busy), Defensive);
        let calm = ModeInputs {
            kernel_pressure: Some(PRESSURE_ONE / 2),
            ..inp(true, 0, 0.0)
        };
        assert_eq!(m.update(31 * S, calm), Pressured);
    }

    #[test]
    fn psi_overload_has_hysteresis_when_unregistered() {
        let mut m = machine(None);
        assert_eq!(m.update(0, inp(false, 0, 39.0)), Deterministic);
        assert_eq!(m.update(S, inp(false, 0, 41.0)), Pressured);
        assert!(m.overloaded());
        // Between low and high: stays overloaded indefinitely.
        assert_eq!(m.update(100 * S, inp(false, 0, 30.0)), Pressured);
        // Dips below low, then back above it: the hold restarts.
        assert_eq!(m.update(101 * S, inp(false, 0, 10.0)), Pressured);
        assert_eq!(m.update(104 * S, inp(false, 0, 25.0)), Pressured);
        assert_eq!(m.update(105 * S, inp(false, 0, 10.0)), Pressured);
        assert_eq!(m.update(109 * S, inp(false, 0, 10.0)), Pressured);
        assert_eq!(m.update(110 * S, inp(false, 0, 10.0)), Deterministic);
        assert!(!m.overloaded());
        // No PSI at all counts as no pressure.
        let none = ModeInputs {
            psi_avg10: None,
            ..Default::default()
        };
        assert_eq!(m.update(111 * S, none), Deterministic);
    }

    #[test]
    fn a_pinned_mode_never_moves() {
        for pin in RuntimeMode::ALL {
            let mut m = machine(Some(*pin));
            assert_eq!(m.mode(), *pin);
            for (t, i) in [inp(true, 3, 90.0), inp(false, 0, 0.0), inp(true, 0, 50.0)]
                .into_iter()
                .enumerate()
            {
                assert_eq!(m.update(t as u64 * 100 * S, i), *pin);
            }
            assert_eq!(m.transitions(), 0);
        }
    }
}
