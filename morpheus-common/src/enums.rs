// SPDX-License-Identifier: GPL-2.0-only
//! Checked Rust enums over the header's C enums.
//!
//! Values cross trust boundaries (a runtime's SCB, a protocol message), so
//! they are never transmuted: [`TryFrom<u32>`] rejects unknown values.

use crate::abi;

/// A value that is not a member of the named ABI enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownValue {
    /// The enum the value was meant for.
    pub enum_name: &'static str,
    /// The value received.
    pub value: u32,
}

impl core::fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} is not a valid {}", self.value, self.enum_name)
    }
}

impl std::error::Error for UnknownValue {}

/// Defines a Rust enum whose discriminants are the header's constants.
macro_rules! abi_enum {
    ($(#[$meta:meta])* $name:ident ($c_name:literal) {
        $($(#[$vmeta:meta])* $variant:ident = $value:path => $text:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// Every member, in ABI order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The lower-case name used in logs, metrics and Python.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The raw ABI value.
            pub const fn as_u32(self) -> u32 {
                self as u32
            }
        }

        impl TryFrom<u32> for $name {
            type Error = UnknownValue;
            fn try_from(value: u32) -> Result<Self, UnknownValue> {
                $(if value == $value { return Ok($name::$variant); })+
                Err(UnknownValue { enum_name: $c_name, value })
            }
        }

        impl core::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == wanted)
                    .ok_or_else(|| {
                        let names: Vec<_> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        format!("'{s}' is not a valid {}: expected one of {}", $c_name, names.join(", "))
                    })
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

abi_enum! {
    /// Life cycle of a worker slot.
    WorkerState ("worker state") {
        /// Slot free or being set up.
        Init = abi::MORPHEUS_WORKER_INIT => "init",
        /// Registered, not yet run under the scheduler.
        Registered = abi::MORPHEUS_WORKER_REGISTERED => "registered",
        /// Has run under the scheduler.
        Running = abi::MORPHEUS_WORKER_RUNNING => "running",
        /// Unregistering; no more hints.
        Quiescing = abi::MORPHEUS_WORKER_QUIESCING => "quiescing",
        /// The thread exited; the slot is reclaimable.
        Dead = abi::MORPHEUS_WORKER_DEAD => "dead",
    }
}

abi_enum! {
    /// What the scheduler may do to an escapable worker that ignored a hint.
    EscalationPolicy ("escalation policy") {
        /// Record the overrun, never force.
        None = abi::MORPHEUS_ESCALATION_NONE => "none",
        /// Zero the slice and preempt the worker's CPU.
        ThreadKick = abi::MORPHEUS_ESCALATION_THREAD_KICK => "thread_kick",
        /// Serve the offender at a reduced share for a bounded window.
        CgroupThrottle = abi::MORPHEUS_ESCALATION_CGROUP_THROTTLE => "cgroup_throttle",
        /// Kick first; throttle repeat offenders.
        Hybrid = abi::MORPHEUS_ESCALATION_HYBRID => "hybrid",
    }
}

abi_enum! {
    /// How a runtime treats hints.
    RuntimeMode ("runtime mode") {
        /// Local budget only; kernel hints ignored.
        Deterministic = abi::MORPHEUS_MODE_DETERMINISTIC => "deterministic",
        /// Kernel hints honoured, with the budget as a floor.
        Pressured = abi::MORPHEUS_MODE_PRESSURED => "pressured",
        /// Escalations observed: yield eagerly until pressure subsides.
        Defensive = abi::MORPHEUS_MODE_DEFENSIVE => "defensive",
    }
}

abi_enum! {
    /// Why a worker yielded.
    YieldCause ("yield cause") {
        /// The application asked for it.
        Voluntary = abi::MORPHEUS_YIELD_VOLUNTARY => "voluntary",
        /// The kernel asked for it.
        Hint = abi::MORPHEUS_YIELD_HINT => "hint",
        /// The local time budget ran out.
        Budget = abi::MORPHEUS_YIELD_BUDGET => "budget",
        /// Defensive mode's tighter budget ran out.
        Defensive = abi::MORPHEUS_YIELD_DEFENSIVE => "defensive",
        /// The kernel forced it.
        Escalated = abi::MORPHEUS_YIELD_ESCALATED => "escalated",
        /// System CPU pressure tightened the budget.
        Pressure = abi::MORPHEUS_YIELD_PRESSURE => "pressure",
        /// Back on a CPU after waiting for one: the kernel's catch-up
        /// (serve what arrived meanwhile, keep the CPU).
        CatchUp = abi::MORPHEUS_YIELD_CATCH_UP => "catch_up",
    }
}

abi_enum! {
    /// The runtime a worker thread belongs to.
    RuntimeKind ("runtime kind") {
        /// Any other runtime or a plain thread.
        Generic = abi::MORPHEUS_RUNTIME_GENERIC => "generic",
        /// A Tokio worker.
        Tokio = abi::MORPHEUS_RUNTIME_TOKIO => "tokio",
        /// A Python asyncio event loop thread.
        Asyncio = abi::MORPHEUS_RUNTIME_ASYNCIO => "asyncio",
    }
}

abi_enum! {
    /// Kind of a record in the scheduler's event ring buffer.
    EventKind ("event kind") {
        /// A hint was issued.
        Hint = abi::MORPHEUS_EVENT_HINT => "hint",
        /// A hint was acknowledged, or the worker yielded.
        Answered = abi::MORPHEUS_EVENT_ANSWERED => "answered",
        /// The grace period passed without an answer.
        Expired = abi::MORPHEUS_EVENT_EXPIRED => "expired",
        /// An escalation was applied.
        Escalated = abi::MORPHEUS_EVENT_ESCALATED => "escalated",
        /// A critical section hit its cap.
        CriticalCap = abi::MORPHEUS_EVENT_CRITICAL_CAP => "critical_cap",
        /// A worker changed state.
        WorkerState = abi::MORPHEUS_EVENT_WORKER_STATE => "worker_state",
    }
}

abi_enum! {
    /// Result of a registration-protocol request.
    Status ("protocol status") {
        /// Success.
        Ok = abi::MORPHEUS_STATUS_OK => "ok",
        /// Malformed or unexpected message.
        BadMessage = abi::MORPHEUS_STATUS_BAD_MESSAGE => "bad_message",
        /// ABI version mismatch between runtime and scheduler.
        BadVersion = abi::MORPHEUS_STATUS_BAD_VERSION => "bad_version",
        /// No free worker slot.
        TableFull = abi::MORPHEUS_STATUS_TABLE_FULL => "table_full",
        /// The thread does not belong to the caller.
        NotPermitted = abi::MORPHEUS_STATUS_NOT_PERMITTED => "not_permitted",
        /// No such registration.
        NotFound = abi::MORPHEUS_STATUS_NOT_FOUND => "not_found",
        /// The loader failed; see its log.
        Internal = abi::MORPHEUS_STATUS_INTERNAL => "internal",
        /// The caller's user holds its share of the worker table.
        UserQuota = abi::MORPHEUS_STATUS_USER_QUOTA => "user_quota",
    }
}

impl Status {
    /// What a user should do about this status, for error messages.
    pub const fn explain(self) -> &'static str {
        match self {
            Status::Ok => "success",
            Status::BadMessage => "the loader rejected a malformed message (a client bug)",
            Status::BadVersion => {
                "the runtime and scx_morpheus speak different ABI versions: upgrade them together"
            }
            Status::TableFull => {
                "the scheduler's worker table is full: unregister idle workers or raise the limit"
            }
            Status::NotPermitted => "a process may only register its own threads",
            Status::NotFound => {
                "no such registration (already unregistered, or the scheduler restarted)"
            }
            Status::Internal => "the loader failed: see the scx_morpheus log",
            Status::UserQuota => {
                "this user holds its share of the scheduler's worker table: unregister idle \
                 workers, or ask the operator to raise scx_morpheus --max-workers-per-user"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_c_enum_member_has_a_rust_variant() {
        assert_eq!(
            WorkerState::ALL.len(),
            abi::MORPHEUS_WORKER_STATE_NR as usize
        );
        assert_eq!(
            EscalationPolicy::ALL.len(),
            abi::MORPHEUS_ESCALATION_POLICY_NR as usize
        );
        assert_eq!(RuntimeMode::ALL.len(), abi::MORPHEUS_MODE_NR as usize);
        assert_eq!(YieldCause::ALL.len(), abi::MORPHEUS_YIELD_CAUSE_NR as usize);
        assert_eq!(
            RuntimeKind::ALL.len(),
            abi::MORPHEUS_RUNTIME_KIND_NR as usize
        );
        assert_eq!(Status::ALL.len(), abi::MORPHEUS_STATUS_NR as usize);
        // Dense enums: the value is the index (ledgers index arrays by it).
        for (i, c) in YieldCause::ALL.iter().enumerate() {
            assert_eq!(c.as_u32() as usize, i);
        }
    }

    #[test]
    fn conversions_round_trip_and_reject_unknown_values() {
        for s in WorkerState::ALL {
            assert_eq!(WorkerState::try_from(s.as_u32()), Ok(*s));
            assert_eq!(s.as_str().parse::<WorkerState>(), Ok(*s));
        }
        let err = WorkerState::try_from(99).unwrap_err();
        assert_eq!(err.to_string(), "99 is not a valid worker state");
        assert_eq!(
            "THREAD-KICK".parse::<EscalationPolicy>(),
            Ok(EscalationPolicy::ThreadKick)
        );
        let msg = "kick".parse::<EscalationPolicy>().unwrap_err();
        assert!(
            msg.contains("none, thread_kick, cgroup_throttle, hybrid"),
            "{msg}"
        );
    }
}
