// SPDX-License-Identifier: GPL-2.0-only
//! The shipped systemd unit (dist/scx_morpheus.service) is one systemd
//! accepts without a warning, and its sandboxing rates "OK" or better in
//! `systemd-analyze security` (exposure at most 5.0 of 10). What it allows
//! the loader to do is checked in the VM
//! (`operator::the_shipped_unit_runs_the_loader_with_its_bounded_capabilities`).

use std::path::Path;
use std::process::Command;

/// The unit with ExecStart pointing at an executable that exists here
/// (systemd-analyze checks that it does), in a directory of its own.
fn unit_here() -> std::path::PathBuf {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    let text = std::fs::read_to_string(dist.join("scx_morpheus.service")).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/scx_morpheus "));
    let dir = std::env::temp_dir().join(format!("morpheus-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scx_morpheus.service");
    std::fs::write(
        &path,
        text.replace(
            "/usr/local/bin/scx_morpheus",
            env!("CARGO_BIN_EXE_scx_morpheus"),
        ),
    )
    .unwrap();
    path
}

fn systemd_analyze(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze (package systemd) is needed for this test");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn systemd_accepts_the_unit_without_a_warning() {
    let unit = unit_here();
    let (ok, text) = systemd_analyze(&["verify", unit.to_str().unwrap()]);
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

#[test]
fn the_unit_is_sandboxed() {
    let unit = unit_here();
    let (ok, text) = systemd_analyze(&[
        "security",
        "--offline=yes",
        "--threshold=50",
        unit.to_str().unwrap(),
    ]);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default();
    assert!(ok, "exposure above 5.0: {overall}\n{text}");
    assert!(!overall.is_empty(), "no overall exposure in:\n{text}");
}
