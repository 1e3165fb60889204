// SPDX-License-Identifier: GPL-2.0-only
//! Start-up check of the privileges a sched_ext scheduler needs, so that a
//! missing one is reported as such instead of as an EPERM from libbpf.
//!
//! What the kernel checks (kernel/bpf/syscall.c): creating the struct_ops
//! map and loading BTF need CAP_BPF; loading struct_ops programs needs
//! CAP_BPF and CAP_PERFMON. CAP_SYS_ADMIN stands in for both
//! (`bpf_capable()`, `perfmon_capable()`).

use anyhow::{Result, bail};

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The effective capability mask (`CapEff:`) of `/proc/<pid>/status` text.
pub fn parse_cap_eff(status: &str) -> Result<u64, String> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or("no CapEff line")?;
    let hex = line.trim();
    u64::from_str_radix(hex, 16).map_err(|_| format!("CapEff '{hex}' is not a hexadecimal mask"))
}

/// The capabilities `cap_eff` lacks to load and attach the scheduler, by
/// name; empty when nothing is missing.
pub fn missing(cap_eff: u64) -> Vec<&'static str> {
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect()
}

/// Fails, saying what is missing and what to do, when this process may not
/// load a sched_ext scheduler. An unreadable status only warns: the kernel
/// has the last word anyway.
pub fn check() -> Result<()> {
    let cap_eff = match std::fs::read_to_string("/proc/self/status")
        .map_err(|e| e.to_string())
        .and_then(|s| parse_cap_eff(&s))
    {
        Ok(mask) => mask,
        Err(e) => {
            log::warn!("cannot check capabilities in /proc/self/status ({e}); loading anyway");
            return Ok(());
        }
    };
    let missing = missing(cap_eff);
    if !missing.is_empty() {
        // SAFETY: geteuid cannot fail and touches no memory of ours.
        let root = unsafe { libc::geteuid() } == 0;
        bail!(
            "scx_morpheus lacks {} (effective capabilities {cap_eff:#x}): loading a sched_ext \
             scheduler needs CAP_SYS_ADMIN, or both CAP_BPF and CAP_PERFMON. {}; under \
             systemd, keep CAP_BPF and CAP_PERFMON in the unit's CapabilityBoundingSet=, \
             and in AmbientCapabilities= if it runs as a User= other than root",
            missing.join(" and "),
            if root {
                "It runs as root, but something dropped them (a container, capsh, setpriv): \
                 start it with them kept"
            } else {
                "Run it as root (`sudo scx_morpheus ...`)"
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "Name:\tscx_morpheus\nCapInh:\t0000000000000000\n\
                        CapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n\
                        CapBnd:\t000001ffffffffff\n";

    #[test]
    fn cap_eff_is_read_from_status() {
        assert_eq!(parse_cap_eff(ROOT), Ok(0x1ff_ffff_ffff));
        assert_eq!(
            parse_cap_eff("CapPrm:\t0000000000200000\nCapEff:\t0000000000000000\n"),
            Ok(0)
        );
        assert_eq!(parse_cap_eff("CapEff:\t0000008000000000"), Ok(1 << CAP_BPF));
    }

    #[test]
    fn unreadable_status_is_an_error_that_says_why() {
        assert_eq!(
            parse_cap_eff("Name:\tx\nCapPrm:\t0\n"),
            Err("no CapEff line".into())
        );
        assert!(parse_cap_eff("").is_err());
        let e = parse_cap_eff("CapEff:\tzzzz\n").unwrap_err();
        assert!(e.contains("'zzzz' is not a hexadecimal mask"), "{e}");
        assert!(parse_cap_eff("CapEff:\t\n").is_err());
        // 17 hex digits do not fit a 64-bit mask.
        assert!(parse_cap_eff("CapEff:\t1ffffffffffffffff\n").is_err());
    }

    #[test]
    fn sys_admin_alone_or_bpf_with_perfmon_suffice() {
        assert!(missing(0x1ff_ffff_ffff).is_empty());
        assert!(missing(1 << CAP_SYS_ADMIN).is_empty());
        assert!(missing(1 << CAP_BPF | 1 << CAP_PERFMON).is_empty());
    }

    #[test]
    fn what_is_missing_is_named() {
        assert_eq!(missing(0), ["CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(missing(1 << CAP_BPF), ["CAP_PERFMON"]);
        assert_eq!(missing(1 << CAP_PERFMON), ["CAP_BPF"]);
        // CAP_NET_ADMIN (12) and CAP_SYS_RESOURCE (24) are not substitutes.
        assert_eq!(missing(1 << 12 | 1 << 24), ["CAP_BPF", "CAP_PERFMON"]);
    }
}
