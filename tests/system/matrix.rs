//! `lvh test` against real QEMU (TCG): a 2 kernels × 1 image × 3 tests
//! matrix (the fixture kernel and a copy of it; one test passing, one
//! failing, one timing out) gives the right verdicts, JUnit XML that a real
//! parser reads, the JSON report and a GitHub step summary; Ctrl-C in the
//! middle stops every VM, leaves no QEMU and no run directory, and marks what
//! did not finish as interrupted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lvh::arch::Arch;
use quick_xml::events::Event;

use crate::support::{assert_code, lvh, qemu_children, text};

/// A directory with the matrix file: the fixture kernel as "k1", a copy of
/// it as "k2", the fixture image, and `tests` (a JSON array's items).
fn matrix_dir(tests: &str) -> tempfile::TempDir {
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64)
        .expect("kernel fixture")
        .image;
    let image = crate::support::fixtures::image::root_image(Arch::Amd64).expect("image fixture");
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(&kernel, d.path().join("bzImage-copy")).unwrap();
    let text = format!(
        r#"{{
  "kernels": [
    {{"name": "k1", "path": {}}},
    {{"name": "k2", "path": "bzImage-copy"}}
  ],
  "images": [{{"name": "root", "path": {}}}],
  "tests": [{tests}]
}}
"#,
        serde_json::to_string(&kernel).unwrap(),
        serde_json::to_string(&image).unwrap()
    );
    std::fs::write(d.path().join("lvh-tests.json"), text).unwrap();
    d
}

fn lvh_test(dir: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = lvh();
    c.current_dir(dir)
        .args(["test", "--boot-timeout", "240"])
        .args(extra)
        .env("LVH_ACCEL", "tcg")
        .stdin(Stdio::null());
    c
}

/// The (testsuite, testcase, child element and its type) triples of a JUnit file, parsed.
fn junit_cases(xml: &[u8]) -> Vec<(String, String, String)> {
    let mut r = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut suite = String::new();
    let mut out = Vec::new();
    let attr = |e: &quick_xml::events::BytesStart, k: &str| -> String {
        e.attributes()
            .flatten()
            .find(|a| a.key.as_ref() == k)
            .map(|a| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .unwrap()
                    .into_owned()
            })
            .unwrap_or_default()
    };
    loop {
        match r.read_event_into(&mut buf).expect("well-formed JUnit XML") {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                "testsuite" => suite = attr(&e, "name"),
                "testcase" => {
                    out.push((suite.clone(), attr(&e, "name"), "passed".to_string()));
                }
                "failure" | "error" | "skipped" => {
                    out.last_mut().unwrap().2 = attr(&e, "type");
                }
                _ => {}
            },
            _ => {}
        }
        buf.clear();
    }
    out
}

const TESTS: &str = r#"{"name": "ok", "command": "echo hello from $NAME", "env": {"NAME": "matrix"}},
    {"name": "fails", "command": "echo about to fail; exit 3"},
    {"name": "slow", "command": "sleep 600", "timeout": "3s"}"#;

#[test]
fn a_matrix_gives_each_combination_its_verdict_and_every_report() {
    let d = matrix_dir(TESTS);
    let summary = d.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let start = Instant::now();
    let o = lvh_test(
        d.path(),
        &["--jobs", "2", "--junit", "j.xml", "--json", "r.json"],
    )
    .env("GITHUB_STEP_SUMMARY", &summary)
    .output()
    .unwrap();
    let took = start.elapsed();
    assert_code(&o, 4);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    // One streamed line per combination, then the table.
    for (word, id) in [
        ("PASS", "k1/root/ok"),
        ("FAIL", "k1/root/fails"),
        ("TIMEOUT", "k1/root/slow"),
        ("PASS", "k2/root/ok"),
        ("FAIL", "k2/root/fails"),
        ("TIMEOUT", "k2/root/slow"),
    ] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(word)
                && (l.ends_with(id)
                    || l.contains(&format!("{id} "))
                    || l.contains(&format!("{id}:")))),
            "no {word} line for {id}:\n{}",
            text(&o)
        );
    }
    let row = |k: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{k} ")))
            .unwrap_or_else(|| panic!("no table row for {k}:\n{out}"))
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("k1"), ["k1", "root", "1", "1", "0", "1", "0", "0", "0"]);
    assert_eq!(row("k2"), ["k2", "root", "1", "1", "0", "1", "0", "0", "0"]);

    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(v["interrupted"], false);
    assert_eq!(v["totals"]["passed"], 2);
    assert_eq!(v["totals"]["failed"], 2);
    assert_eq!(v["totals"]["timeout"], 2);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    let by_id = |id: &str| results.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(by_id("k1/root/ok")["verdict"], "passed");
    assert_eq!(by_id("k2/root/ok")["output"], "hello from matrix\n");
    assert_eq!(by_id("k1/root/fails")["verdict"], "failed");
    assert_eq!(by_id("k1/root/fails")["command_status"], 3);
    assert_eq!(by_id("k2/root/fails")["output"], "about to fail\n");
    assert_eq!(by_id("k2/root/slow")["verdict"], "timeout");
    assert_eq!(by_id("k2/root/slow")["exit_code"], 244);
    for r in results {
        assert_eq!(r["attempts"], 1, "a test failure is never retried: {r}");
    }

    let cases = junit_cases(&std::fs::read(d.path().join("j.xml")).unwrap());
    let want: Vec<(String, String, String)> = [
        ("k1/root", "ok", "passed"),
        ("k1/root", "fails", "failed"),
        ("k1/root", "slow", "timeout"),
        ("k2/root", "ok", "passed"),
        ("k2/root", "fails", "failed"),
        ("k2/root", "slow", "timeout"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(cases, want);

    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("earlier step\n## lvh test"), "{md}");
    assert!(md.contains("**2 of 6 passed**"), "{md}");
    assert!(
        md.contains("| k1 | root | 1 | 1 | 0 | 1 | 0 | 0 | 0 |"),
        "{md}"
    );
    assert_eq!(md.matches("<details>").count(), 4, "{md}");
    eprintln!(
        "6 combinations, 2 at a time, took {:.1}s",
        took.as_secs_f64()
    );
}

#[test]
fn ctrl_c_mid_matrix_stops_every_vm_and_marks_the_rest_interrupted() {
    let d = matrix_dir(
        r#"{"name": "a", "command": "sleep 600"},
    {"name": "b", "command": "sleep 600"},
    {"name": "c", "command": "sleep 600"}"#,
    );
    let tmp = tempfile::tempdir().unwrap();
    let child = lvh_test(
        d.path(),
        &["--jobs", "2", "--json", "r.json", "--junit", "j.xml"],
    )
    .env("TMPDIR", tmp.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let qemu = loop {
        let q = qemu_children(child.id());
        if q.len() == 2 {
            break q;
        }
        assert!(Instant::now() < deadline, "two VMs did not start: {q:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Let the guests boot into their commands.
    std::thread::sleep(Duration::from_secs(5));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let start = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 130);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    for q in &qemu {
        assert!(
            !PathBuf::from(format!("/proc/{q}")).exists(),
            "QEMU {q} outlived lvh test"
        );
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(v["interrupted"], true);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    for r in results {
        assert_eq!(r["verdict"], "interrupted", "{r}");
    }
    // Two were running when Ctrl-C came; the other four never started.
    let started = results.iter().filter(|r| r["attempts"] == 1).count();
    assert_eq!(started, 2, "{v}");
    let cases = junit_cases(&std::fs::read(d.path().join("j.xml")).unwrap());
    assert!(cases.iter().all(|c| c.2 == "interrupted"), "{cases:?}");
}

#[test]
fn a_boot_failure_is_retried_once_and_reported_as_such() {
    let image = crate::support::fixtures::image::root_image(Arch::Amd64).expect("image fixture");
    let d = tempfile::tempdir().unwrap();
    // Not a kernel: QEMU loads it and the guest never prints a thing.
    let junk: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(d.path().join("junk"), junk).unwrap();
    let file = format!(
        r#"{{"kernels": [{{"path": "junk"}}], "images": [{{"name": "root", "path": {}}}],
  "tests": [{{"name": "t", "command": "true"}}]}}"#,
        serde_json::to_string(&image).unwrap()
    );
    std::fs::write(d.path().join("lvh-tests.json"), file).unwrap();
    let mut c = lvh();
    c.current_dir(d.path())
        .args(["test", "--boot-timeout", "10", "--json", "r.json"])
        .env("LVH_ACCEL", "tcg")
        .stdin(Stdio::null());
    let o = c.output().unwrap();
    assert_code(&o, 4);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("retrying once").count(), 1, "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("r.json")).unwrap()).unwrap();
    let r = &v["results"][0];
    assert_eq!(r["verdict"], "boot_failure", "{r}");
    assert_eq!(r["attempts"], 2, "{r}");
    assert!(
        r["retried_after"]
            .as_str()
            .unwrap()
            .contains("no sign of life"),
        "{r}"
    );
    assert_eq!(v["totals"]["boot_failure"], 1);
}

fn out_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The crash line of a distinct crash in `lvh test`'s (or `lvh test merge`'s) output.
fn crash_lines(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.contains("distinct kernel crash"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The same LKDTM WARNING on two kernels: `lvh test` shows one crash line
/// naming both, with the title and fingerprint `lvh triage` gives the
/// console log; `lvh test merge` of two shards that each hit it shows the
/// same line, and names a shard that is missing.
#[test]
fn the_same_crash_on_two_kernels_is_one_line_in_a_run_and_in_a_merge() {
    let d = matrix_dir(
        r#"{"name": "warn", "command": "echo WARNING > /sys/kernel/debug/provoke-crash/DIRECT; echo after", "timeout": "120s"}"#,
    );
    let o = lvh_test(
        d.path(),
        &[
            "--jobs",
            "1",
            "--json",
            "all.json",
            "--console-dir",
            "consoles",
        ],
    )
    .output()
    .unwrap();
    assert_code(&o, 4);
    let out = out_of(&o);
    let lines = crash_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert!(out.contains("1 distinct kernel crash:"), "{out}");
    assert!(
        lines[0].starts_with("WARNING in lkdtm_WARNING (warning, ")
            && lines[0].ends_with("): 2 runs, kernels k1, k2; test warn"),
        "{out}"
    );
    // The fingerprint is the one `lvh triage` finds in the console log.
    let log = d.path().join("consoles/k1~root~warn.log");
    let t = lvh()
        .arg("triage")
        .arg("--json")
        .arg(&log)
        .output()
        .unwrap();
    assert_code(&t, 1);
    let reports: serde_json::Value = serde_json::from_slice(&t.stdout).unwrap();
    let fp = reports[0]["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(reports[0]["title"], "WARNING in lkdtm_WARNING");
    assert!(
        lines[0].contains(&format!("(warning, {fp})")),
        "{} vs {fp}",
        lines[0]
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("all.json")).unwrap()).unwrap();
    assert_eq!(v["crashes"][0]["fingerprint"], fp.as_str());
    assert_eq!(v["results"][1]["crashes"][0]["fingerprint"], fp.as_str());

    for k in 1..=2 {
        let o = lvh_test(
            d.path(),
            &[
                "--partition",
                &format!("count:{k}/2"),
                "--json",
                &format!("r{k}.json"),
            ],
        )
        .output()
        .unwrap();
        assert_code(&o, 4);
        assert_eq!(crash_lines(&out_of(&o)).len(), 1);
    }
    let merge = |files: &[&str]| {
        let mut c = lvh();
        c.current_dir(d.path())
            .args(["test", "merge"])
            .args(files)
            .env_remove("GITHUB_STEP_SUMMARY");
        c.output().unwrap()
    };
    let o = merge(&["r1.json", "r2.json"]);
    assert_code(&o, 4);
    assert_eq!(crash_lines(&out_of(&o)), lines, "{}", out_of(&o));
    assert!(!err_of(&o).contains("no result for shard"), "{}", text(&o));
    let o = merge(&["r2.json"]);
    assert_code(&o, 4);
    assert!(
        err_of(&o).contains("no result for shard(s) count:1/2"),
        "{}",
        err_of(&o)
    );
    let only = crash_lines(&out_of(&o));
    assert!(only[0].ends_with("1 run, kernel k2; test warn"), "{only:?}");
}
