//! `lvh test merge`: joins the `--json` results of the shards of one run
//! (`lvh test --partition K/N` on N machines) into one list of results, from
//! which the usual table, JUnit file and step summary are rendered, with
//! crashes deduplicated across shards. The shards must be of one split (the
//! same `count:` or `hash:` and N) and of one test file; the ones with no
//! result are named. Pure: the caller reads the files.

use std::path::Path;

use serde::Deserialize;

use super::expand::Partition;
use super::report::{TestResult, SCHEMA_VERSION};

/// What merging reads of a `--json` file (totals, groups and crashes are
/// computed again from the results).
#[derive(Clone, Debug, Deserialize)]
pub struct ShardReport {
    pub schema_version: u32,
    pub file: String,
    pub partition: Option<String>,
    #[serde(default)]
    pub interrupted: bool,
    pub results: Vec<TestResult>,
}

/// Reads a `--json` file's text; the error names the file.
pub fn parse(name: &str, text: &str) -> Result<ShardReport, String> {
    let r: ShardReport = serde_json::from_str(text)
        .map_err(|e| format!("{name}: not a result file of `lvh test --json`: {e}"))?;
    if r.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "{name}: schema_version {} is not one this lvh reads ({SCHEMA_VERSION})",
            r.schema_version
        ));
    }
    Ok(r)
}

/// The shards joined.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// The test file the shards ran.
    pub file: String,
    /// The shards present (`hash:1/4`), in order; empty for whole runs.
    pub shards: Vec<String>,
    /// The shards of the split with no result.
    pub missing: Vec<String>,
    /// Some shard was interrupted.
    pub interrupted: bool,
    /// Every shard's results, in shard order.
    pub results: Vec<TestResult>,
}

fn base_name(file: &str) -> &str {
    Path::new(file)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(file)
}

/// Joins `(name, report)` inputs: the shards of one split (any subset of
/// them, the rest named missing), or whole runs of one test file.
pub fn merge(inputs: Vec<(String, ShardReport)>) -> Result<Merged, String> {
    let Some((first_name, first)) = inputs.first() else {
        return Err("no result file to merge".into());
    };
    let mut shards: Vec<(Option<Partition>, &str, &ShardReport)> = Vec::new();
    for (name, r) in &inputs {
        if base_name(&r.file) != base_name(&first.file) {
            return Err(format!(
                "{name} ran {} but {first_name} ran {}: not shards of one run",
                r.file, first.file
            ));
        }
        let p = match &r.partition {
            Some(p) => Some(
                p.parse::<Partition>()
                    .map_err(|e| format!("{name}: partition: {e}"))?,
            ),
            None => None,
        };
        shards.push((p, name, r));
    }
    let split = |p: Partition| match p {
        Partition::Count { n, .. } => ("count", n),
        Partition::Hash { n, .. } => ("hash", n),
    };
    let k_of = |p: Partition| match p {
        Partition::Count { k, .. } | Partition::Hash { k, .. } => k,
    };
    let (p0, n0, _) = shards[0];
    for &(p, name, _) in &shards[1..] {
        match (p0, p) {
            (Some(a), Some(b)) if split(a) != split(b) => {
                return Err(format!(
                    "{name} is shard {b} but {n0} is shard {a}: not shards of one split"
                ))
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(format!(
                    "{name} and {n0}: one is a shard (--partition), the other a whole run"
                ))
            }
            _ => {}
        }
    }
    shards.sort_by_key(|(p, _, _)| p.map(k_of));
    for w in shards.windows(2) {
        if let (Some(a), Some(b)) = (w[0].0, w[1].0) {
            if a == b {
                return Err(format!("{} and {} are both shard {a}", w[0].1, w[1].1));
            }
        }
    }
    let missing = match p0 {
        Some(p) => {
            let (kind, n) = split(p);
            (1..=n)
                .filter(|k| !shards.iter().any(|(q, _, _)| q.map(k_of) == Some(*k)))
                .map(|k| format!("{kind}:{k}/{n}"))
                .collect()
        }
        None => vec![],
    };
    let mut results: Vec<TestResult> = Vec::new();
    let mut seen: std::collections::HashMap<String, &str> = Default::default();
    for (_, name, r) in &shards {
        for t in &r.results {
            if let Some(other) = seen.insert(t.id.clone(), name) {
                return Err(format!(
                    "combination {} is in both {other} and {name}",
                    t.id
                ));
            }
            results.push(t.clone());
        }
    }
    Ok(Merged {
        file: first.file.clone(),
        shards: shards
            .iter()
            .filter_map(|(p, _, _)| p.map(|p| p.to_string()))
            .collect(),
        missing,
        interrupted: shards.iter().any(|(_, _, r)| r.interrupted),
        results,
    })
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
