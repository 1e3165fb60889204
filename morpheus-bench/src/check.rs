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
/// `label` and either a non-empty `result` or, for programs run in rounds,
/// a non-empty list of `rounds` (each with a non-empty `result`, the same
/// number for every configuration) and a non-empty `headline` list (each
/// figure named, its value a median/min/max/per_round object or null); with
/// `runs`, exactly that many, one per scheduler configuration) or `results`
/// (asyncio_bench.py: a non-empty list of rows). Returns a one-line
/// description.
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
        let mut rounds = None;
        for (i, run) in list.iter().enumerate() {
            let label = run["label"]
                .as_str()
                .with_context(|| format!("run {i} has no label"))?;
            match run.get("rounds") {
                None => ensure!(filled(&run["result"]), "run {i} ({label}) has no result"),
                Some(r) => {
                    let n = check_rounds(r, &run["headline"])
                        .with_context(|| format!("run {i} ({label})"))?;
                    ensure!(
                        rounds.is_none_or(|m| m == n),
                        "run {i} ({label}) has {n} rounds, an earlier run {}",
                        rounds.unwrap_or(0)
                    );
                    rounds = Some(n);
                }
            }
        }
        if let Some(n) = runs {
            ensure!(
                list.len() == n,
                "{} runs, expected {n} (one per scheduler configuration)",
                list.len()
            );
        }
        Ok(match rounds {
            Some(n) => format!("{} runs of {n} round(s)", list.len()),
            None => format!("{} runs", list.len()),
        })
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

fn filled(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// A configuration's `rounds` and `headline` (see [`check_json`]); returns
/// the number of rounds.
fn check_rounds(rounds: &Value, headline: &Value) -> Result<usize> {
    let rounds = rounds
        .as_array()
        .filter(|l| !l.is_empty())
        .context("'rounds' is not a non-empty list")?;
    for (k, r) in rounds.iter().enumerate() {
        ensure!(filled(&r["result"]), "round {k} has no result");
    }
    let headline = headline
        .as_array()
        .filter(|l| !l.is_empty())
        .context("no 'headline' figures")?;
    for h in headline {
        let name = h["figure"]
            .as_str()
            .with_context(|| format!("a headline figure without a name: {h}"))?;
        for key in ["value", "vs_default"] {
            match &h[key] {
                Value::Null => {}
                Value::Object(s) => {
                    for k in ["median", "min", "max"] {
                        ensure!(
                            s.get(k).is_some_and(Value::is_number),
                            "headline '{name}': {key} has no number '{k}'"
                        );
                    }
                    let per_round = s["per_round"]
                        .as_array()
                        .with_context(|| format!("headline '{name}': {key} has no per_round"))?;
                    ensure!(
                        per_round.len() == rounds.len(),
                        "headline '{name}': {key} has {} per-round values for {} rounds",
                        per_round.len(),
                        rounds.len()
                    );
                }
                other => bail!("headline '{name}': {key} is {other}, not an object or null"),
            }
        }
    }
    Ok(rounds.len())
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
        let spread = r#"{"median":1.0,"min":1.0,"max":1.0,"per_round":[1.0]}"#;
        let rounds = format!(
            r#"{{"program":"p","command":"c","machine":{{}},"runs":[{{"label":"a","rounds":[{{"label":"a","result":{{"x":1}}}}],"headline":[{{"figure":"x","value":{spread},"vs_default":null}}]}}]}}"#
        );
        assert_eq!(
            check_json(&rounds, Some(1)).unwrap(),
            "1 runs of 1 round(s)"
        );
        for (from, to, why) in [
            (
                r#""per_round":[1.0]"#,
                r#""per_round":[]"#,
                "per-round values",
            ),
            (r#""median":1.0"#, r#""median":"x""#, "no number 'median'"),
            (r#""figure":"x","#, "", "without a name"),
            (r#"{"x":1}"#, "{}", "round 0 has no result"),
            (r#"[{"figure""#, r#"[],"h":[{"figure""#, "no 'headline'"),
        ] {
            let bad = rounds.replacen(from, to, 1);
            let err = format!("{:#}", check_json(&bad, None).unwrap_err());
            assert!(err.contains(why), "{from} -> {to}: {err}");
        }
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
