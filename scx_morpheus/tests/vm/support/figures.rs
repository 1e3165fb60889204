// SPDX-License-Identifier: GPL-2.0-only
//! Reading the loader's figures as it prints them (`--stats`, `--monitor`,
//! the exit totals: blocks of lines of "name value" pairs, see
//! src/lines.rs). Its OpenMetrics figures are read with
//! `morpheus_common::openmetrics::Scrape` (client::scraped).

/// The first line of each printed block.
pub const BLOCK_START: &str = "[scx_morpheus] slice ";

/// The printed blocks of `out`, each as one string (its lines joined).
pub fn blocks(out: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in out.lines() {
        if line.starts_with(BLOCK_START) {
            blocks.push(line.to_string());
        } else if line.starts_with("  ")
            && let Some(b) = blocks.last_mut()
        {
            b.push(' ');
            b.push_str(line.trim());
        }
    }
    blocks
}

/// The value after "`label` " in a block, for example `figure(b, "hints
/// sent")`: a number as printed (`5000us`, `12/7` gives 12, `1.2M`).
pub fn figure(block: &str, label: &str) -> Option<u64> {
    let key = format!(" {label} ");
    let at = block.find(&key)? + key.len();
    let token = block[at..].split([' ', '/']).next()?.trim_end_matches("us");
    let (digits, scale) = match token.char_indices().last()? {
        (i, 'k') => (&token[..i], 1e3),
        (i, 'M') => (&token[..i], 1e6),
        (i, 'G') => (&token[..i], 1e9),
        _ => (token, 1.0),
    };
    Some((digits.parse::<f64>().ok()? * scale) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two readings as `--monitor` prints them (src/lines.rs).
    const OUT: &str = "\
[scx_morpheus] slice 5000us pressure 1024 qmax 3 | ticks 250 timers 12 idle kicks 4
  dispatch direct 10 kthread 2 shared 7/6 local 1/1 steal 0
  hints sent 3 answered 3 (in grace 3) expired 0 dropped 0 | bad msgs 0
some log line
[scx_morpheus] slice 2000us pressure 0 qmax 0 | ticks 1.2M timers 0 idle kicks 0
  hints sent 0 answered 0 (in grace 0) expired 0 dropped 0 | bad msgs 0
";

    #[test]
    fn printed_figures_are_read_by_label() {
        let b = blocks(OUT);
        assert_eq!(b.len(), 2);
        assert_eq!(figure(&b[0], "slice"), Some(5000));
        assert_eq!(figure(&b[0], "ticks"), Some(250));
        assert_eq!(figure(&b[0], "shared"), Some(7));
        assert_eq!(figure(&b[0], "hints sent"), Some(3));
        assert_eq!(figure(&b[1], "ticks"), Some(1_200_000));
        assert_eq!(figure(&b[1], "hints sent"), Some(0));
        assert_eq!(figure(&b[1], "nothing"), None);
    }
}
