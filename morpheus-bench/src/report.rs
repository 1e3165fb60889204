// SPDX-License-Identifier: GPL-2.0-only
//! What every result file records about the run (machine, kernel, command),
//! JSON output, and plain-text tables.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The machine and kernel a run happened on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// CPUs this process may use.
    pub cpus: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// True inside the test VM (`MORPHEUS_IN_VM=1`, set by tools/vm/run).
    pub in_vm: bool,
    /// Whether the kernel has sched_ext.
    pub sched_ext: bool,
    /// /proc/loadavg when the result was written (other load on a shared
    /// machine shows here).
    pub loadavg: String,
}

impl Machine {
    /// Reads the current machine's description.
    pub fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            in_vm: std::env::var("MORPHEUS_IN_VM").is_ok_and(|v| v == "1"),
            sched_ext: Path::new("/sys/kernel/sched_ext").exists(),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
        }
    }

    /// One line for the top of a report.
    pub fn describe(&self) -> String {
        format!(
            "kernel {}, {} CPUs ({}), load average {}{}",
            self.kernel,
            self.cpus,
            self.cpu_model,
            self.loadavg,
            if self.in_vm {
                ", in the QEMU test VM"
            } else {
                ""
            }
        )
    }
}

/// The command line of this process, for the record.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// This program's name (file name of argv[0]).
pub fn program() -> String {
    std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "bench".into())
}

/// Writes `value` as pretty JSON to `path` (creating parent directories).
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// The JSON document every program writes with `--json`.
#[derive(Debug, Serialize)]
pub struct Document<'a, O: Serialize, R: Serialize> {
    /// Program name.
    pub program: String,
    /// Full command line.
    pub command: String,
    /// Where it ran.
    pub machine: Machine,
    /// Its parsed options.
    pub options: &'a O,
    /// One entry per scheduler configuration.
    pub runs: &'a R,
}

/// Writes the JSON document for `options` and `runs` to `path`.
pub fn save(path: &Path, options: &impl Serialize, runs: &impl Serialize) -> anyhow::Result<()> {
    let doc = Document {
        program: program(),
        command: command_line(),
        machine: Machine::detect(),
        options,
        runs,
    };
    write_json(path, &doc)?;
    eprintln!("raw data written to {}", path.display());
    Ok(())
}

/// A plain-text table with a header row; columns are right-aligned except
/// the first.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub fn new<S: ToString>(header: &[S]) -> Table {
        Table {
            rows: vec![header.iter().map(ToString::to_string).collect()],
        }
    }

    /// Appends a row.
    pub fn row<S: ToString>(&mut self, cells: &[S]) {
        self.rows
            .push(cells.iter().map(ToString::to_string).collect());
    }

    /// Renders the table.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (i, row) in self.rows.iter().enumerate() {
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    if c == 0 {
                        format!("{s:<w$}", w = width[c])
                    } else {
                        format!("{s:>w$}", w = width[c])
                    }
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
            if i == 0 {
                let total = width.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        out
    }

    /// Renders the table as Markdown (GitHub's pipe tables), with the same
    /// alignment: the first column left, the others right.
    pub fn render_markdown(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = String::new();
        for (i, row) in self.rows.iter().enumerate() {
            let cells: Vec<String> = (0..cols)
                .map(|c| row.get(c).map_or("", String::as_str).replace('|', "\\|"))
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
            if i == 0 {
                let rule: Vec<&str> = (0..cols)
                    .map(|c| if c == 0 { "---" } else { "---:" })
                    .collect();
                out.push_str(&format!("|{}|\n", rule.join("|")));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["name", "value"]);
        t.row(&["a", "1"]);
        t.row(&["longer", "1000"]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "name    value");
        assert_eq!(lines[1], "-------------");
        assert_eq!(lines[2], "a           1");
        assert_eq!(lines[3], "longer   1000");
        assert_eq!(
            t.render_markdown(),
            "| name | value |\n|---|---:|\n| a | 1 |\n| longer | 1000 |\n"
        );
        let mut t = Table::new(&["a|b"]);
        t.row(&["x"]);
        assert_eq!(t.render_markdown(), "| a\\|b |\n|---|\n| x |\n");
    }

    #[test]
    fn machine_is_detected_and_json_written() {
        let m = Machine::detect();
        assert!(m.cpus >= 1 && !m.kernel.is_empty());
        let dir = std::env::temp_dir().join(format!("morpheus-bench-test-{}", std::process::id()));
        let path = dir.join("sub/m.json");
        write_json(&path, &m).unwrap();
        let back: Machine = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.kernel, m.kernel);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
