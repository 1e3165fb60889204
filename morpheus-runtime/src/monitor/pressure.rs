// SPDX-License-Identifier: GPL-2.0-only
//! The pressure source: Linux PSI (`/proc/pressure/cpu` and the cgroup's
//! `cpu.pressure`), read by the monitor thread about once a second.
//!
//! Used when the kernel source is not: without scx_morpheus there are no
//! kernel hints, but an overloaded machine still shows in PSI, and the budget
//! is halved while `some avg10` stays high (see `crate::Config`).

use std::path::{Path, PathBuf};

/// One parsed PSI file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Psi {
    /// `some avg10`: percent of the last 10 s in which at least one task
    /// waited for a CPU.
    pub(crate) some_avg10: f64,
    /// `full avg10`, when the kernel reports it.
    pub(crate) full_avg10: Option<f64>,
}

/// Why a PSI text could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PsiParseError(String);

impl std::fmt::Display for PsiParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed PSI text: {}", self.0)
    }
}

impl std::error::Error for PsiParseError {}

fn parse_avg10(line: &str) -> Result<f64, PsiParseError> {
    let field = line
        .split_whitespace()
        .skip(1)
        .find_map(|kv| kv.strip_prefix("avg10="))
        .ok_or_else(|| PsiParseError(format!("no avg10 in {line:?}")))?;
    let v: f64 = field
        .parse()
        .map_err(|_| PsiParseError(format!("avg10={field:?} is not a number")))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(PsiParseError(format!("avg10={v} is outside 0..=100")));
    }
    Ok(v)
}

/// Parses the text of a PSI file such as `/proc/pressure/cpu`:
///
/// ```text
/// some avg10=1.23 avg60=0.50 avg300=0.10 total=123456
/// full avg10=0.00 avg60=0.00 avg300=0.00 total=0
/// ```
pub(crate) fn parse_psi(text: &str) -> Result<Psi, PsiParseError> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let line = line.trim();
        match line.split_whitespace().next() {
            Some("some") => some = Some(parse_avg10(line)?),
            Some("full") => full = Some(parse_avg10(line)?),
            Some(other) => return Err(PsiParseError(format!("unknown line kind {other:?}"))),
            None => {}
        }
    }
    Ok(Psi {
        some_avg10: some.ok_or_else(|| PsiParseError("no 'some' line".into()))?,
        full_avg10: full,
    })
}

/// The cgroup v2 path of this process from `/proc/self/cgroup` text
/// (the `0::/path` line), if any.
pub(crate) fn parse_cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
        .filter(|p| p.starts_with('/'))
}

/// The PSI files this process reads: the system's and its cgroup's.
pub(crate) fn psi_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/proc/pressure/cpu")];
    if let Ok(text) = std::fs::read_to_string("/proc/self/cgroup")
        && let Some(path) = parse_cgroup_v2_path(&text)
    {
        let rel = path.trim_start_matches('/');
        let file = Path::new("/sys/fs/cgroup").join(rel).join("cpu.pressure");
        if !rel.is_empty() && file.exists() {
            files.push(file);
        }
    }
    files
}

/// Reads every file and returns the highest `some avg10`, or why none was
/// readable.
pub(crate) fn read_pressure(files: &[PathBuf]) -> Result<f64, String> {
    let mut best: Option<f64> = None;
    let mut last_err = String::from("no PSI file");
    for f in files {
        match std::fs::read_to_string(f) {
            Ok(text) => match parse_psi(&text) {
                Ok(p) => best = Some(best.map_or(p.some_avg10, |b: f64| b.max(p.some_avg10))),
                Err(e) => last_err = format!("{}: {e}", f.display()),
            },
            Err(e) => last_err = format!("{}: {e} (kernel without PSI?)", f.display()),
        }
    }
    best.ok_or(last_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_system_and_cgroup_psi() {
        let text = "some avg10=12.50 avg60=3.00 avg300=0.75 total=987654\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(
            parse_psi(text),
            Ok(Psi {
                some_avg10: 12.5,
                full_avg10: Some(0.0)
            })
        );
        // Older kernels have no "full" line for cpu.
        let p = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0").unwrap();
        assert_eq!(p.full_avg10, None);
    }

    #[test]
    fn rejects_malformed_psi() {
        for bad in [
            "",
            "full avg10=1.00 avg60=0 avg300=0 total=0",
            "some avg60=1.00 avg300=0 total=0",
            "some avg10=abc avg60=0 avg300=0 total=0",
            "some avg10=250.0 avg60=0 avg300=0 total=0",
            "some avg10=-1 avg60=0",
            "garbage avg10=1.0",
            "some avg10=",
        ] {
            assert!(parse_psi(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            parse_psi("x")
                .unwrap_err()
                .to_string()
                .contains("malformed PSI")
        );
    }

    #[test]
    fn finds_the_cgroup_v2_path() {
        assert_eq!(
            parse_cgroup_v2_path("0::/system.slice/app.service\n"),
            Some("/system.slice/app.service")
        );
        assert_eq!(parse_cgroup_v2_path("1:cpu:/x\n0::/\n"), Some("/"));
        assert_eq!(parse_cgroup_v2_path("1:cpu:/x\n"), None);
        assert_eq!(parse_cgroup_v2_path("0::garbage"), None);
    }

    #[test]
    fn reading_missing_files_says_why() {
        let err = read_pressure(&[PathBuf::from("/nonexistent/cpu")]).unwrap_err();
        assert!(err.contains("/nonexistent/cpu"), "{err}");
    }
}
