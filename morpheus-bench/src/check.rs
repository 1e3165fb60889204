// SPDX-License-Identifier: GPL-2.0-only
//! Form checks of the programs' output, for the test suite (the
//! `check-output` program): a quick run proves a program works when it exits
//! successfully and writes well-formed JSON and plots. Only the form is
//! checked, never a figure.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// Checks a document written with `--json`: strict JSON (serde_json rejects
/// NaN and Infinity), an object with `program`, `command` and `machine`,
/// then either `runs` (the Rust programs: a non-empty list, each run with a
/// `label` and a non-empty `result`; with `runs`, exactly that many, one per
/// scheduler configuration) or `results` (asyncio_bench.py: a non-empty
/// list of rows). Returns a one-line description.
pub fn check_json(text: &str, runs: Option<usize>) -> Result<String> {
    let doc: Value = serde_json::from_str(text).context("malformed JSON")?;
    ensure!(doc.is_object(), "not a JSON object");
    for key in ["program", "command", "machine"] {
        ensure!(doc.get(key).is_some(), "no '{key}'");
    }
    if let Some(list) = doc.get("runs") {
        let list = list
            .as_array()
            .filter(|l| !l.is_empty())
            .context("'runs' is not a non-empty list")?;
        for (i, run) in list.iter().enumerate() {
            let label = run["label"]
                .as_str()
                .with_context(|| format!("run {i} has no label"))?;
            let filled = match &run["result"] {
                Value::Object(m) => !m.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => false,
            };
            ensure!(filled, "run {i} ({label}) has no result");
        }
        if let Some(n) = runs {
            ensure!(
                list.len() == n,
                "{} runs, expected {n} (one per scheduler configuration)",
                list.len()
            );
        }
        Ok(format!("{} runs", list.len()))
    } else if let Some(rows) = doc.get("results") {
        let rows = rows
            .as_array()
            .filter(|l| !l.is_empty() && l.iter().all(Value::is_object))
            .context("'results' is not a non-empty list of rows")?;
        Ok(format!("{} rows", rows.len()))
    } else {
        bail!("neither 'runs' nor 'results'")
    }
}

/// Checks that `text` is a well-formed SVG document as the programs write
/// it: one `<svg>` root, every element closed in order, quoted attributes,
/// character data free of `<` and of `&` outside entity references.
/// (A structural check, not a full XML parser: no DTDs or CDATA.)
pub fn check_svg(text: &str) -> Result<()> {
    let mut stack: Vec<&str> = Vec::new();
    let mut root_seen = false;
    let mut rest = text;
    loop {
        let (chars, tail) = match rest.find('<') {
            Some(p) => (&rest[..p], Some(&rest[p..])),
            None => (rest, None),
        };
        check_chars(chars, !stack.is_empty())?;
        let Some(tail) = tail else { break };
        if let Some(t) = tail.strip_prefix("<?") {
            rest = &t[t.find("?>").context("unterminated <?...?>")? + 2..];
            continue;
        }
        if let Some(t) = tail.strip_prefix("<!--") {
            rest = &t[t.find("-->").context("unterminated comment")? + 3..];
            continue;
        }
        let end = tail.find('>').context("unterminated tag")?;
        let tag = &tail[1..end];
        rest = &tail[end + 1..];
        ensure!(
            tag.matches('"').count() % 2 == 0,
            "unbalanced quotes in <{tag}>"
        );
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack
                .pop()
                .with_context(|| format!("</{name}> closes nothing"))?;
            ensure!(name.trim() == open, "</{name}> closes <{open}>");
            continue;
        }
        let empty = tag.ends_with('/');
        let name = tag
            .trim_end_matches('/')
            .split_whitespace()
            .next()
            .with_context(|| format!("a tag without a name: <{tag}>"))?;
        if stack.is_empty() {
            ensure!(!root_seen, "a second root element <{name}>");
            ensure!(name == "svg", "the root element is <{name}>, not <svg>");
            root_seen = true;
        }
        if !empty {
            stack.push(name);
        }
    }
    ensure!(root_seen, "no <svg> element");
    if let Some(open) = stack.last() {
        bail!("<{open}> is never closed");
    }
    Ok(())
}

/// Character data: inside the root, `&` only as an entity reference; outside
/// it, whitespace only.
fn check_chars(s: &str, in_root: bool) -> Result<()> {
    if !in_root {
        ensure!(
            s.trim().is_empty(),
            "text outside the root element: {:?}",
            s.trim()
        );
        return Ok(());
    }
    for (i, _) in s.match_indices('&') {
        let entity = s[i + 1..].split(';').next().unwrap_or("");
        let ok = s[i + 1..].contains(';')
            && !entity.is_empty()
            && entity
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '#');
        ensure!(ok, "a bare '&' in text: {:?}", &s[i..s.len().min(i + 12)]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_documents_are_checked_for_form() {
        let ok =
            r#"{"program":"p","command":"c","machine":{},"runs":[{"label":"a","result":{"x":1}}]}"#;
        assert_eq!(check_json(ok, Some(1)).unwrap(), "1 runs");
        let err = check_json(ok, Some(2)).unwrap_err().to_string();
        assert!(err.contains("expected 2"), "{err}");
        let nan = ok.replace("1}}", "NaN}}");
        assert!(check_json(&nan, None).is_err());
        let empty = ok.replace(r#"{"x":1}"#, "{}");
        assert!(
            check_json(&empty, None)
                .unwrap_err()
                .to_string()
                .contains("no result")
        );
        let py = r#"{"program":"p","command":"c","machine":{},"results":[{"tasks":1}]}"#;
        assert_eq!(check_json(py, None).unwrap(), "1 rows");
        assert!(check_json(r#"{"program":"p","command":"c","machine":{}}"#, None).is_err());
    }

    #[test]
    fn the_programs_plots_pass_and_broken_svg_fails() {
        let bars = vec![("a & b".to_string(), 1.0), ("<c>".to_string(), 2.5)];
        check_svg(&crate::svg::bar_chart("t", "u", &bars)).unwrap();
        for bad in [
            "",
            "<svg><g></svg>",
            "<svg></svg><svg></svg>",
            "<html></html>",
            "<svg><text>a & b</text></svg>",
            "<svg><rect x=\"1/></svg>",
            "<svg>",
        ] {
            assert!(check_svg(bad).is_err(), "accepted {bad:?}");
        }
        check_svg(
            "<?xml version=\"1.0\"?>\n<svg a=\"1\"><!-- c --><g/><text>&lt;&#38;</text></svg>\n",
        )
        .unwrap();
    }
}
