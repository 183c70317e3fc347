//! `lvh test merge` on result files as `lvh test --json` writes them (no VM):
//! the shards' results become one table, one JUnit file, one JSON file and
//! one step summary; a crash that two shards hit is one line naming both
//! kernels; a missing shard is named and fails the merge; inputs that are not
//! shards of one run are refused with exit code 3.

use std::path::Path;

use std::process::{Command, Output};

use crate::common::{assert_code, lvh_bin, stderr, stdout};

/// `lvh args...` in `dir`, with the step summary going to `summary` if any.
fn lvh_in(dir: &Path, args: &[&str]) -> Output {
    lvh_summary(dir, args, None)
}

fn lvh_summary(dir: &Path, args: &[&str], summary: Option<&Path>) -> Output {
    let mut c = Command::new(lvh_bin());
    c.args(args)
        .current_dir(dir)
        .env("CI", "true")
        .env_remove("LVH_LOG");
    match summary {
        Some(s) => c.env("GITHUB_STEP_SUMMARY", s),
        None => c.env_remove("GITHUB_STEP_SUMMARY"),
    };
    c.output().expect("run lvh")
}

/// A result as `lvh test --json` writes it.
fn result(id: &str, verdict: &str, crashes: &str) -> String {
    let p: Vec<&str> = id.split('/').collect();
    format!(
        r#"{{"id": "{id}", "kernel": "{}", "image": "{}", "test": "{}", "verdict": "{verdict}",
  "attempts": 1, "retried_after": null, "exit_code": 0, "command_status": 0, "seconds": 3.5,
  "boot_seconds": 2.0, "error": null, "output": "", "console_log": null, "crashes": [{crashes}]}}"#,
        p[0], p[1], p[2]
    )
}

const WARN: &str = r#"{"title": "WARNING in lkdtm_WARNING", "kind": "warning", "fingerprint": "4cda48a19d14d057"}"#;

fn shard(dir: &Path, name: &str, partition: &str, results: &[String]) {
    let text = format!(
        r#"{{"schema_version": 1, "file": "lvh-tests.json", "partition": {partition},
  "interrupted": false, "totals": {{}}, "groups": [], "crashes": [], "results": [{}]}}"#,
        results.join(",\n")
    );
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn two_shards_that_hit_one_crash_merge_into_one_crash_line() {
    let d = tempfile::tempdir().unwrap();
    shard(
        d.path(),
        "r1.json",
        r#""hash:1/2""#,
        &[
            result("k1/img/warn", "splat", WARN),
            result("k1/img/ok", "passed", ""),
        ],
    );
    shard(
        d.path(),
        "r2.json",
        r#""hash:2/2""#,
        &[result("k2/img/warn", "splat", WARN)],
    );
    let summary = d.path().join("summary.md");
    std::fs::write(&summary, "").unwrap();
    let out = lvh_summary(
        d.path(),
        &[
            "test", "merge", "--junit", "j.xml", "--json", "m.json", "r2.json", "r1.json",
        ],
        Some(&summary),
    );
    assert_code(&out, 4);
    let so = stdout(&out);
    assert!(
        so.contains("1 distinct kernel crash:\n  WARNING in lkdtm_WARNING (warning, 4cda48a19d14d057): 2 runs, kernels k1, k2; test warn\n"),
        "{so}"
    );
    assert!(so.contains("total"), "{so}");
    assert!(
        !stderr(&out).contains("no result for shard"),
        "{}",
        stderr(&out)
    );

    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("m.json")).unwrap()).unwrap();
    assert_eq!(v["totals"]["splat"], 2);
    assert_eq!(v["totals"]["passed"], 1);
    assert_eq!(v["crashes"].as_array().unwrap().len(), 1);
    assert_eq!(v["crashes"][0]["kernels"], serde_json::json!(["k1", "k2"]));
    assert_eq!(v["missing_shards"], serde_json::json!([]));
    assert_eq!(v["results"][0]["id"], "k1/img/warn", "shard order");

    let junit = std::fs::read_to_string(d.path().join("j.xml")).unwrap();
    assert_eq!(
        junit
            .matches("<testcase name=\"WARNING in lkdtm_WARNING\"")
            .count(),
        1,
        "{junit}"
    );
    assert!(
        junit.contains("on 2 runs: kernels k1, k2; tests warn"),
        "{junit}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains(
            "| WARNING in lkdtm_WARNING | warning | `4cda48a19d14d057` | 2 | k1, k2 | warn |"
        ),
        "{md}"
    );
    assert!(md.contains("merged: hash:1/2, hash:2/2"), "{md}");
}

#[test]
fn a_missing_shard_is_named_and_fails_the_merge() {
    let d = tempfile::tempdir().unwrap();
    shard(
        d.path(),
        "r1.json",
        r#""count:1/3""#,
        &[result("k/i/a", "passed", "")],
    );
    shard(
        d.path(),
        "r3.json",
        r#""count:3/3""#,
        &[result("k/i/c", "passed", "")],
    );
    let out = lvh_in(
        d.path(),
        &[
            "test", "merge", "--json", "m.json", "r1.json", "r2.json", "r3.json",
        ],
    );
    assert_code(&out, 4);
    let e = stderr(&out);
    assert!(
        e.contains("r2.json: no such file; its shard counts as missing"),
        "{e}"
    );
    assert!(e.contains("lvh: no result for shard(s) count:2/3"), "{e}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("m.json")).unwrap()).unwrap();
    assert_eq!(v["missing_shards"], serde_json::json!(["count:2/3"]));
    assert_eq!(v["totals"]["passed"], 2);

    // All there and all passed: 0.
    shard(
        d.path(),
        "r2.json",
        r#""count:2/3""#,
        &[result("k/i/b", "passed", "")],
    );
    let out = lvh_in(
        d.path(),
        &["test", "merge", "r1.json", "r2.json", "r3.json"],
    );
    assert_code(&out, 0);
    assert!(!stdout(&out).contains("crash"), "{}", stdout(&out));
}

#[test]
fn inputs_that_are_not_shards_of_one_run_are_refused() {
    let d = tempfile::tempdir().unwrap();
    shard(d.path(), "a.json", r#""hash:1/2""#, &[]);
    shard(d.path(), "b.json", r#""hash:1/2""#, &[]);
    shard(d.path(), "c.json", r#""hash:2/3""#, &[]);
    std::fs::write(d.path().join("junk.json"), "{\"x\": 1}").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["a.json", "b.json"],
            "a.json and b.json are both shard hash:1/2",
        ),
        (&["a.json", "c.json"], "not shards of one split"),
        (
            &["a.json", "junk.json"],
            "junk.json: not a result file of `lvh test --json`",
        ),
        (&["nope.json"], "none of the result files exists"),
    ];
    for (files, want) in cases {
        let mut args = vec!["test", "merge", "--junit", "j.xml"];
        args.extend_from_slice(files);
        let out = lvh_in(d.path(), &args);
        assert_code(&out, 3);
        assert!(stderr(&out).contains(want), "{files:?}: {}", stderr(&out));
        assert!(!d.path().join("j.xml").exists(), "no output on bad input");
    }
    let out = lvh_in(d.path(), &["test", "merge"]);
    assert_code(&out, 2);
}
