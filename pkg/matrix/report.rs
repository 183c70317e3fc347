//! What a matrix run found, and three ways to show it: the end-of-run table
//! (counts per kernel and image), the `--json` file, and the GitHub step
//! summary (markdown), each with one entry per distinct kernel crash
//! ([`super::crashes`]). Every renderer is a pure function of the results;
//! JUnit XML is in `junit`.

use serde::{Deserialize, Serialize};

use super::crashes::{self, Crash, CrashGroup, Hit};
use crate::runner::ResultVerdict;

/// The version of the `--json` file's schema.
pub const SCHEMA_VERSION: u32 = 1;
/// How much of a test's output (stdout and stderr, interleaved) reports keep: its tail.
pub const OUTPUT_TAIL_BYTES: usize = 16 * 1024;

/// One combination's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// `kernel/image/test`.
    pub id: String,
    pub kernel: String,
    pub image: String,
    pub test: String,
    pub verdict: ResultVerdict,
    /// VM boots tried: 0 when interrupted before it started, 2 after a retry.
    pub attempts: u32,
    /// Why the first attempt was retried (a boot or infrastructure failure).
    pub retried_after: Option<String>,
    /// What `lvh run` would have exited with.
    pub exit_code: Option<i32>,
    /// The guest command's own exit status, when it ended.
    pub command_status: Option<i32>,
    /// Wall time of the last attempt, boot included.
    pub seconds: f64,
    pub boot_seconds: Option<f64>,
    /// lvh's error message, when the run did not end with the command's status.
    pub error: Option<String>,
    /// The tail of the command's output (stdout and stderr as they came).
    pub output: String,
    /// The console log file, with `--console-dir`.
    pub console_log: Option<String>,
    /// The kernel crashes the run saw that no allowlist entry covers, once
    /// per fingerprint.
    #[serde(default)]
    pub crashes: Vec<Crash>,
}

impl TestResult {
    /// The result of a combination Ctrl-C kept from starting.
    pub fn not_started(id: &str, kernel: &str, image: &str, test: &str) -> TestResult {
        TestResult {
            id: id.into(),
            kernel: kernel.into(),
            image: image.into(),
            test: test.into(),
            verdict: ResultVerdict::Interrupted,
            attempts: 0,
            retried_after: None,
            exit_code: None,
            command_status: None,
            seconds: 0.0,
            boot_seconds: None,
            error: Some("interrupted before it started".into()),
            output: String::new(),
            console_log: None,
            crashes: Vec::new(),
        }
    }
}

/// The distinct crashes of `results`, by fingerprint, with the kernels and
/// tests that hit each.
pub fn crash_groups(results: &[TestResult]) -> Vec<CrashGroup> {
    crashes::group(results.iter().map(|r| Hit {
        id: &r.id,
        kernel: &r.kernel,
        test: &r.test,
        crashes: &r.crashes,
    }))
}

/// The one word the streamed line and the tables use for a verdict.
pub fn word(v: ResultVerdict) -> &'static str {
    match v {
        ResultVerdict::Passed => "PASS",
        ResultVerdict::Failed => "FAIL",
        ResultVerdict::Splat => "SPLAT",
        ResultVerdict::Timeout => "TIMEOUT",
        ResultVerdict::BootFailure => "BOOT-FAIL",
        ResultVerdict::InfrastructureFailure => "INFRA-FAIL",
        ResultVerdict::Interrupted => "INTERRUPTED",
    }
}

/// The line printed when a combination finishes.
pub fn line(r: &TestResult) -> String {
    let mut s = format!("{:>11} [{:>7.2}s] {}", word(r.verdict), r.seconds, r.id);
    match r.verdict {
        ResultVerdict::Failed => {
            if let Some(c) = r.command_status {
                s.push_str(&format!(" (exit status {c})"));
            }
        }
        ResultVerdict::Passed => {}
        _ => {
            if let Some(e) = &r.error {
                s.push_str(&format!(": {}", e.lines().next().unwrap_or_default()));
            }
        }
    }
    if r.attempts > 1 {
        s.push_str(" (retried once after a boot or infrastructure failure)");
    }
    s
}

/// Counts of each verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub splat: usize,
    pub timeout: usize,
    pub boot_failure: usize,
    pub infrastructure_failure: usize,
    pub interrupted: usize,
}

impl Counts {
    pub fn add(&mut self, v: ResultVerdict) {
        match v {
            ResultVerdict::Passed => self.passed += 1,
            ResultVerdict::Failed => self.failed += 1,
            ResultVerdict::Splat => self.splat += 1,
            ResultVerdict::Timeout => self.timeout += 1,
            ResultVerdict::BootFailure => self.boot_failure += 1,
            ResultVerdict::InfrastructureFailure => self.infrastructure_failure += 1,
            ResultVerdict::Interrupted => self.interrupted += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.passed + self.not_passed()
    }

    pub fn not_passed(&self) -> usize {
        self.failed
            + self.splat
            + self.timeout
            + self.boot_failure
            + self.infrastructure_failure
            + self.interrupted
    }

    fn cells(&self) -> [usize; 7] {
        [
            self.passed,
            self.failed,
            self.splat,
            self.timeout,
            self.boot_failure,
            self.infrastructure_failure,
            self.interrupted,
        ]
    }
}

const HEADERS: [&str; 7] = [
    "passed",
    "failed",
    "splat",
    "timeout",
    "boot failure",
    "infra failure",
    "interrupted",
];

/// Counts per kernel and image, in the order they first appear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Group {
    pub kernel: String,
    pub image: String,
    pub counts: Counts,
}

pub fn groups(results: &[TestResult]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for r in results {
        let g = match out
            .iter_mut()
            .position(|g| g.kernel == r.kernel && g.image == r.image)
        {
            Some(i) => &mut out[i],
            None => {
                out.push(Group {
                    kernel: r.kernel.clone(),
                    image: r.image.clone(),
                    counts: Counts::default(),
                });
                out.last_mut().expect("just pushed")
            }
        };
        g.counts.add(r.verdict);
    }
    out
}

pub fn totals(results: &[TestResult]) -> Counts {
    let mut c = Counts::default();
    for r in results {
        c.add(r.verdict);
    }
    c
}

/// The end-of-run table, aligned for a terminal.
pub fn table(results: &[TestResult]) -> String {
    let gs = groups(results);
    let mut rows: Vec<Vec<String>> = vec![["kernel", "image"]
        .into_iter()
        .chain(HEADERS)
        .map(String::from)
        .collect()];
    for g in &gs {
        let mut row = vec![g.kernel.clone(), g.image.clone()];
        row.extend(g.counts.cells().iter().map(|c| c.to_string()));
        rows.push(row);
    }
    let mut total = vec!["total".to_string(), String::new()];
    total.extend(totals(results).cells().iter().map(|c| c.to_string()));
    rows.push(total);
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < 2 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
    }
    s
}

/// The `--json` file.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub schema_version: u32,
    /// The test file.
    pub file: String,
    pub partition: Option<String>,
    /// Ctrl-C stopped the run: some results are `interrupted`.
    pub interrupted: bool,
    pub totals: Counts,
    pub groups: Vec<Group>,
    /// One entry per distinct kernel crash, the most widespread first.
    pub crashes: Vec<CrashGroup>,
    /// `lvh test merge`: the shards with no result.
    pub missing_shards: Vec<String>,
    pub results: &'a [TestResult],
}

impl<'a> JsonReport<'a> {
    pub fn new(
        file: &str,
        partition: Option<String>,
        interrupted: bool,
        results: &'a [TestResult],
    ) -> Self {
        JsonReport {
            schema_version: SCHEMA_VERSION,
            file: file.into(),
            partition,
            interrupted,
            totals: totals(results),
            groups: groups(results),
            crashes: crash_groups(results),
            missing_shards: Vec::new(),
            results,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a report serializes");
        v.push(b'\n');
        v
    }
}

/// Escapes text for a markdown table cell or inline text.
fn md(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', " ")
}

/// The GitHub step summary: the table, the distinct crashes, the shards with
/// no result (`missing`, from `lvh test merge`), then each test that did not
/// pass with its error and output tail folded away.
pub fn markdown(
    title: &str,
    interrupted: bool,
    results: &[TestResult],
    missing: &[String],
) -> String {
    let t = totals(results);
    let mut s = format!("## {}\n\n", md(title));
    let status = if interrupted {
        "interrupted"
    } else if !missing.is_empty() {
        "shards missing"
    } else if t.not_passed() == 0 {
        "all passed"
    } else {
        "some tests did not pass"
    };
    s.push_str(&format!(
        "**{} of {} passed** ({status})\n\n",
        t.passed,
        t.total()
    ));
    s.push_str("| kernel | image |");
    for h in HEADERS {
        s.push_str(&format!(" {h} |"));
    }
    s.push_str("\n| --- | --- |");
    s.push_str(&" ---: |".repeat(HEADERS.len()));
    s.push('\n');
    for g in groups(results) {
        s.push_str(&format!("| {} | {} |", md(&g.kernel), md(&g.image)));
        for c in g.counts.cells() {
            s.push_str(&format!(" {c} |"));
        }
        s.push('\n');
    }
    s.push_str(&markdown_crashes(&crash_groups(results)));
    if !missing.is_empty() {
        s.push_str(&format!(
            "\n### Missing shards\n\nNo result for {}.\n",
            missing
                .iter()
                .map(|m| format!("`{}`", md(m)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let bad: Vec<&TestResult> = results
        .iter()
        .filter(|r| r.verdict != ResultVerdict::Passed)
        .collect();
    if !bad.is_empty() {
        s.push_str("\n### Not passed\n\n");
        for r in bad {
            s.push_str(&format!(
                "<details><summary>{} <code>{}</code></summary>\n\n",
                word(r.verdict),
                md(&r.id)
            ));
            if let Some(e) = &r.error {
                s.push_str(&fence(e));
            }
            if !r.output.is_empty() {
                s.push_str(&fence(&r.output));
            }
            s.push_str("</details>\n\n");
        }
    }
    s
}

/// The step summary's table of distinct crashes: nothing when there was none.
pub fn markdown_crashes(groups: &[CrashGroup]) -> String {
    if groups.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\n### Kernel crashes ({} distinct)\n\n| crash | kind | fingerprint | runs | kernels | tests |\n| --- | --- | --- | ---: | --- | --- |\n",
        groups.len()
    );
    for g in groups {
        s.push_str(&format!(
            "| {} | {} | `{}` | {} | {} | {} |\n",
            md(&g.title),
            md(&g.kind),
            md(&g.fingerprint),
            g.ids.len(),
            md(&g.kernels.join(", ")),
            md(&g.tests.join(", "))
        ));
    }
    s
}

/// A fenced code block that the text cannot close early.
fn fence(text: &str) -> String {
    let mut ticks = "```".to_string();
    while text.contains(&ticks) {
        ticks.push('`');
    }
    format!("{ticks}\n{}\n{ticks}\n\n", text.trim_end())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn result(id: &str, verdict: ResultVerdict) -> TestResult {
        let mut parts = id.split('/');
        let (k, i, t) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        TestResult {
            verdict,
            attempts: 1,
            seconds: 1.5,
            command_status: (verdict == ResultVerdict::Failed).then_some(3),
            exit_code: Some(0),
            error: (verdict != ResultVerdict::Passed && verdict != ResultVerdict::Failed)
                .then(|| "the guest command did not finish within 5s".into()),
            output: if verdict == ResultVerdict::Failed {
                "oops <&> | ```\n".into()
            } else {
                String::new()
            },
            ..TestResult::not_started(id, k, i, t)
        }
    }

    fn sample() -> Vec<TestResult> {
        vec![
            result("k1/img/ok", ResultVerdict::Passed),
            result("k1/img/bad", ResultVerdict::Failed),
            result("k1/img/slow", ResultVerdict::Timeout),
            result("k2/img/ok", ResultVerdict::Passed),
            result("k2/img/bad", ResultVerdict::Failed),
            result("k2/img/slow", ResultVerdict::Interrupted),
        ]
    }

    #[test]
    fn the_table_counts_per_kernel_and_image() {
        let t = table(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("kernel  image  passed  failed  splat  timeout"));
        let cells = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[1]),
            ["k1", "img", "1", "1", "0", "1", "0", "0", "0"]
        );
        assert_eq!(
            cells(lines[2]),
            ["k2", "img", "1", "1", "0", "0", "0", "0", "1"]
        );
        assert_eq!(
            cells(lines[3]),
            ["total", "2", "2", "0", "1", "0", "0", "1"]
        );
    }

    #[test]
    fn streamed_lines_name_verdict_and_reason() {
        let cases = [
            (result("k/i/a", ResultVerdict::Passed), "PASS", ""),
            (
                result("k/i/a", ResultVerdict::Failed),
                "FAIL",
                "(exit status 3)",
            ),
            (
                result("k/i/a", ResultVerdict::Timeout),
                "TIMEOUT",
                ": the guest command did not finish",
            ),
        ];
        for (r, w, tail) in cases {
            let l = line(&r);
            assert!(l.trim_start().starts_with(w), "{l}");
            assert!(l.contains("k/i/a") && l.contains(tail), "{l}");
        }
        let mut r = result("k/i/a", ResultVerdict::Passed);
        r.attempts = 2;
        assert!(line(&r).contains("retried once"));
    }

    #[test]
    fn json_has_totals_groups_and_results() {
        let rs = sample();
        let v: serde_json::Value = serde_json::from_slice(
            &JsonReport::new("t.json", Some("hash:1/2".into()), true, &rs).to_bytes(),
        )
        .unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["interrupted"], true);
        assert_eq!(v["partition"], "hash:1/2");
        assert_eq!(v["totals"]["passed"], 2);
        assert_eq!(v["totals"]["timeout"], 1);
        assert_eq!(v["groups"][1]["kernel"], "k2");
        assert_eq!(v["groups"][1]["counts"]["interrupted"], 1);
        assert_eq!(v["results"][2]["verdict"], "timeout");
        assert_eq!(v["results"][5]["verdict"], "interrupted");
    }

    /// Two kernels that hit the same WARN, one that hit another crash too.
    pub fn crashed() -> Vec<TestResult> {
        let crash = |title: &str, fp: &str| Crash {
            title: title.into(),
            kind: "warning".into(),
            fingerprint: fp.into(),
        };
        let mut rs = sample();
        rs[1].verdict = ResultVerdict::Splat;
        rs[1].crashes = vec![
            crash("WARNING in f", "aaaa"),
            crash("WARNING: x|y in g", "bbbb"),
        ];
        rs[4].verdict = ResultVerdict::Splat;
        rs[4].crashes = vec![crash("WARNING in f", "aaaa")];
        rs
    }

    #[test]
    fn crashes_are_grouped_in_json_and_markdown() {
        let rs = crashed();
        let v: serde_json::Value =
            serde_json::from_slice(&JsonReport::new("t.json", None, false, &rs).to_bytes())
                .unwrap();
        assert_eq!(v["crashes"].as_array().unwrap().len(), 2);
        assert_eq!(v["crashes"][0]["fingerprint"], "aaaa");
        assert_eq!(v["crashes"][0]["kernels"], serde_json::json!(["k1", "k2"]));
        assert_eq!(v["crashes"][0]["tests"], serde_json::json!(["bad"]));
        assert_eq!(v["results"][1]["crashes"][1]["title"], "WARNING: x|y in g");
        // A result reads back as it was written (`lvh test merge`).
        let back: TestResult = serde_json::from_value(v["results"][1].clone()).unwrap();
        assert_eq!(back, rs[1]);
        let m = markdown("t", false, &rs, &["hash:2/2".into()]);
        assert!(m.contains("### Kernel crashes (2 distinct)"), "{m}");
        assert!(
            m.contains("| WARNING in f | warning | `aaaa` | 2 | k1, k2 | bad |"),
            "{m}"
        );
        assert!(m.contains("| WARNING: x\\|y in g |"), "{m}");
        assert!(
            m.contains("(shards missing)") && m.contains("No result for `hash:2/2`."),
            "{m}"
        );
        assert!(!markdown("t", false, &sample(), &[]).contains("Kernel crashes"));
    }

    #[test]
    fn markdown_escapes_and_folds_failures() {
        let m = markdown("lvh test", false, &sample(), &[]);
        assert!(m.starts_with("## lvh test\n\n**2 of 6 passed** (some tests did not pass)"));
        assert!(
            m.contains("| k1 | img | 1 | 1 | 0 | 1 | 0 | 0 | 0 |"),
            "{m}"
        );
        assert_eq!(m.matches("<details>").count(), 4);
        // Output holding ``` is fenced with more backticks.
        assert!(m.contains("````\noops <&> | ```\n````"), "{m}");
        let ok = markdown("t", false, &sample()[..1], &[]);
        assert!(ok.contains("(all passed)") && !ok.contains("Not passed"));
        assert!(md("a|b<c>").contains("a\\|b&lt;c&gt;"));
    }
}
