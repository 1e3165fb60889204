// SPDX-License-Identifier: GPL-2.0-only
//! The shipped systemd unit (`scx_morpheus/dist/`), read as systemd would
//! for the settings a test can apply without systemd: ExecStart with its
//! environment file's flags, the capability bounding set, NoNewPrivileges
//! and LimitNOFILE.

use std::collections::HashMap;
use std::path::Path;

/// Capability numbers (linux/capability.h) of the names a unit may use.
const CAPS: &[(&str, u32)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_SETUID", 7),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
];

/// What a test applies of the unit.
#[derive(Debug, Clone)]
pub struct Unit {
    /// ExecStart's program and arguments, `$VAR`s expanded.
    pub exec: Vec<String>,
    /// CapabilityBoundingSet as a mask of capability bits.
    pub caps: u64,
    pub no_new_privs: bool,
    pub nofile: Option<u64>,
}

/// `KEY=value` lines of a unit or environment file (comments skipped; a
/// value in double quotes loses them). A key given twice keeps the last.
fn settings(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

/// Reads the unit at `unit` with the environment file at `env`.
pub fn read(unit: &Path, env: &Path) -> Unit {
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let s = settings(&read(unit));
    let vars = settings(&read(env));
    let exec = s["ExecStart"]
        .split_whitespace()
        .flat_map(|w| match w.strip_prefix('$') {
            // systemd splits an unquoted $VAR's value at whitespace.
            Some(var) => vars
                .get(var)
                .unwrap_or_else(|| panic!("ExecStart uses ${var}, which the env file lacks"))
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>(),
            None => vec![w.to_string()],
        })
        .collect();
    let caps = s["CapabilityBoundingSet"]
        .split_whitespace()
        .map(|name| {
            let (_, bit) = CAPS
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("capability {name} is not in the test's table"));
            1u64 << bit
        })
        .fold(0, |a, b| a | b);
    Unit {
        exec,
        caps,
        no_new_privs: s.get("NoNewPrivileges").is_some_and(|v| v == "yes"),
        nofile: s
            .get("LimitNOFILE")
            .map(|v| v.parse().expect("LimitNOFILE")),
    }
}

/// The unit and environment file shipped in the source tree.
pub fn shipped() -> Unit {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    read(
        &dist.join("scx_morpheus.service"),
        &dist.join("scx_morpheus.env"),
    )
}
