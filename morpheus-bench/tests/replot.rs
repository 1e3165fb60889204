// SPDX-License-Identifier: GPL-2.0-only
//! `--replot` redraws a program's plots from its JSON alone: the programs
//! run briefly on the host (whatever scheduler it has), then draw again
//! from the file with the options' defaults.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `program` with `args`, failing the test with its output if it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("morpheus-replot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Redraws `program`'s plots from `json` into `plots`, tagged "t".
fn replot(program: &str, json: &str, plots: &Path) {
    run(
        program,
        &[
            "--replot",
            json,
            "--plots",
            plots.to_str().unwrap(),
            "--tag",
            "t",
        ],
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn starvation_replots_the_strategies_it_measured_and_only_those() {
    let dir = scratch("starvation");
    let json = dir.join("s.json");
    let (json_s, plots) = (json.to_str().unwrap(), dir.join("plots"));
    let bin = env!("CARGO_BIN_EXE_starvation");
    run(
        bin,
        &[
            "--quick",
            "--variants",
            "blocking,morpheus",
            "--rounds",
            "1",
            "--json",
            json_s,
        ],
    );
    replot(bin, json_s, &plots);
    let bars = read(&plots.join("t-starvation-throughput.svg"));
    let tail = read(&plots.join("t-starvation-probe-tail.svg"));
    for svg in [&bars, &tail] {
        assert!(
            svg.contains(">Blocking<") && svg.contains(">Morpheus<"),
            "{svg}"
        );
        assert!(
            !svg.contains("Naive") && !svg.contains("Tokio coop"),
            "{svg}"
        );
    }
    assert!(tail.contains(">p99<"), "not a tail chart: {tail}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn latency_and_wakeup_replot_their_tail_charts() {
    let dir = scratch("latency-wakeup");
    let plots = dir.join("plots");
    for (program, plot) in [
        (env!("CARGO_BIN_EXE_latency"), "t-latency-light-tail.svg"),
        (env!("CARGO_BIN_EXE_wakeup"), "t-wakeup-delay-tail.svg"),
    ] {
        let json = dir.join("r.json");
        let json_s = json.to_str().unwrap();
        run(program, &["--quick", "--rounds", "1", "--json", json_s]);
        replot(program, json_s, &plots);
        let svg = read(&plots.join(plot));
        assert!(svg.contains("<path") && svg.contains(">p99<"), "{svg}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
