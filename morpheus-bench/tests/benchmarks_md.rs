// SPDX-License-Identifier: GPL-2.0-only
//! BENCHMARKS.md's current figures are what `demo-table --markdown` prints
//! for the committed JSON: each block between
//! `<!-- demo-table ARGS -->` and `<!-- end demo-table -->` must equal that
//! program's output for ARGS (paths relative to the repository root), so
//! that no figure there can drift from its raw data. With
//! `MORPHEUS_BLESS=1` the blocks are rewritten instead.

use std::path::{Path, PathBuf};
use std::process::Command;

const OPEN: &str = "<!-- demo-table ";
const CLOSE: &str = "<!-- end demo-table -->";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// demo-table's output for `args`, run in the repository root.
fn demo_table(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_demo-table"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "demo-table {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One generated block of a document: where its body lies and the
/// arguments its opening marker names.
struct Block {
    args: Vec<String>,
    body: std::ops::Range<usize>,
}

/// Every generated block of `text`, in order.
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(OPEN).map(|i| i + from) {
        let head_end = i + text[i..]
            .find("-->")
            .expect("an unclosed demo-table marker");
        let args = text[i + OPEN.len()..head_end]
            .split_whitespace()
            .map(String::from)
            .collect();
        let body_start = head_end + "-->".len();
        let body_end = body_start
            + text[body_start..]
                .find(CLOSE)
                .expect("a demo-table block without its end marker");
        out.push(Block {
            args,
            body: body_start..body_end,
        });
        from = body_end + CLOSE.len();
    }
    out
}

#[test]
fn current_figures_are_demo_tables_output_for_the_committed_json() {
    let path = root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let found = blocks(&text);
    assert!(
        !found.is_empty(),
        "BENCHMARKS.md has no `{OPEN}...-->` block: its current figures must be generated"
    );
    let bless = std::env::var_os("MORPHEUS_BLESS").is_some();
    let mut blessed = String::new();
    let mut last = 0;
    for b in &found {
        let args: Vec<&str> = b.args.iter().map(String::as_str).collect();
        let want = format!("\n{}", demo_table(&args));
        if bless {
            blessed.push_str(&text[last..b.body.start]);
            blessed.push_str(&want);
            last = b.body.end;
        } else {
            assert_eq!(
                text[b.body.clone()].trim(),
                want.trim(),
                "BENCHMARKS.md's block for `demo-table {}` is not that program's output \
                 for the committed JSON: run the test with MORPHEUS_BLESS=1 to rewrite it \
                 (after checking that the JSON is the one you mean)",
                args.join(" ")
            );
        }
    }
    if bless {
        blessed.push_str(&text[last..]);
        std::fs::write(&path, blessed).unwrap();
    }
}

#[test]
fn blocks_are_found_with_their_arguments() {
    let text = "a\n<!-- demo-table --markdown x.json -->\nbody\n<!-- end demo-table -->\nb\n\
                <!-- demo-table y.json -->\n<!-- end demo-table -->";
    let found = blocks(text);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].args, ["--markdown", "x.json"]);
    assert_eq!(text[found[0].body.clone()].trim(), "body");
    assert_eq!(found[1].args, ["y.json"]);
    assert_eq!(text[found[1].body.clone()].trim(), "");
}
