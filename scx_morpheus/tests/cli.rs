// SPDX-License-Identifier: GPL-2.0-only
//! The loader's informational commands, run on the host (no kernel needed).

use std::process::{Command, Stdio};

/// `scx_morpheus ARGS | head`: a reader that leaves before the loader
/// writes is no error, no panic and no message.
#[test]
fn output_cut_short_by_its_reader_is_not_an_error() {
    for args in [["--help-stats"], ["--version"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        // Every write to the pipe now fails with EPIPE.
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_scx_morpheus"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {} {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn help_stats_describes_every_metric() {
    let out = Command::new(env!("CARGO_BIN_EXE_scx_morpheus"))
        .arg("--help-stats")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "hints_sent",
        "hints_answered_in_grace",
        "slice_us",
        "ring_drops",
    ] {
        assert!(
            text.contains(name),
            "--help-stats does not list {name}:\n{text}"
        );
    }
}
