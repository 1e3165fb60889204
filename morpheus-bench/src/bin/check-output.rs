// SPDX-License-Identifier: GPL-2.0-only
//! check-output: proves that a benchmark wrote well-formed output (the test
//! suite's check after each quick run; see `morpheus_bench::check`). Exits
//! 1 with the reason on the first failure. Checks form only, never figures.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use morpheus_bench::check::{check_json, check_svg};

/// Checks a program's JSON output and its SVG plots.
#[derive(Debug, Parser)]
#[command(name = "check-output")]
struct Opts {
    /// The JSON document a program wrote with --json.
    json: Option<PathBuf>,
    /// Exact number of runs (one per scheduler configuration).
    #[arg(long)]
    runs: Option<usize>,
    /// SVG plots to check.
    #[arg(long, num_args = 1.., value_name = "SVG_FILE")]
    svg: Vec<PathBuf>,
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("{}: missing (the program wrote no {what})", path.display()))
}

fn main() -> Result<()> {
    let o = Opts::parse();
    if let Some(path) = &o.json {
        let what = check_json(&read(path, "--json output")?, o.runs)
            .with_context(|| format!("{}", path.display()))?;
        println!("check-output: {}: ok ({what})", path.display());
    }
    for path in &o.svg {
        check_svg(&read(path, "plot")?)
            .with_context(|| format!("{}: not a well-formed SVG plot", path.display()))?;
    }
    if !o.svg.is_empty() {
        println!("check-output: {} SVG plot(s) ok", o.svg.len());
    }
    Ok(())
}
