//! The splat gate and the result file against real kernels: LKDTM provokes a
//! WARN, a BUG and a soft lockup in the fixture kernel (`testing` options)
//! and `lvh run` must fail each with exit code 245 naming kind and function;
//! allowlists and `--splat warn` let a known splat pass; `--result-json` is
//! written for every verdict; a taint that appears during the command counts
//! as a splat. And a real BPF program: an XDP program built on
//! the host with clang, loaded with bpftool in the guest and test-run on
//! known input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::support::assert_code;

const DIRECT: &str = "/sys/kernel/debug/provoke-crash/DIRECT";

fn run(extra: &[&str]) -> Output {
    crate::runner::lvh_run(Arch::Amd64, extra)
        .stdin(Stdio::null())
        .output()
        .expect("run lvh")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `lvh: error:` line of stderr.
fn error_line(o: &Output) -> String {
    text(&o.stderr)
        .lines()
        .find(|l| l.starts_with("lvh: error:"))
        .unwrap_or_default()
        .to_string()
}

fn provoke(what: &str) -> String {
    format!("echo {what} > {DIRECT}; echo after")
}

fn read_result(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).expect("result file")).expect("result JSON")
}

#[test]
fn a_warning_fails_the_run_after_the_output_and_the_result_says_why() {
    let d = tempfile::tempdir().unwrap();
    let result = d.path().join("result.json");
    let o = run(&[
        "--result-json",
        result.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &provoke("WARNING"),
    ]);
    assert_code(&o, 245);
    assert_eq!(text(&o.stdout), "after\n", "the command ran to its end");
    let err = text(&o.stderr);
    assert!(
        error_line(&o).starts_with("lvh: error: kernel splat: warning in lkdtm_WARNING"),
        "{err}"
    );
    assert!(err.contains("(the command exited with 0)"), "{err}");
    assert!(
        err.contains("Call Trace:") && err.contains("---[ end trace"),
        "{err}"
    );

    let v = read_result(&result);
    assert_eq!(v["verdict"], "splat");
    assert_eq!(v["exit_code"], 245);
    assert_eq!(v["command_status"], 0);
    let s = &v["splats"][0];
    assert_eq!(s["kind"], "warning");
    assert_eq!(s["function"], "lkdtm_WARNING");
    assert!(s["first_line"]
        .as_str()
        .unwrap()
        .starts_with("WARNING: CPU:"));
    assert!(s["lines"].as_array().unwrap().len() > 5);
    assert_eq!(v["taint"]["before"], 0);
    assert_eq!(
        v["taint"]["after"].as_u64().unwrap() & (1 << 9),
        1 << 9,
        "W"
    );
    assert!(v["kernel"]["release"].as_str().unwrap().starts_with("6.12"));
    assert!(v["kernel"]["cmdline"]
        .as_str()
        .unwrap()
        .contains("console=ttyS0"));
    assert!(v["boot_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["command_seconds"].as_f64().unwrap() >= 0.0);
    let log = PathBuf::from(v["console_log"].as_str().unwrap());
    assert_eq!(log, d.path().join("result.json.console.log"));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("lkdtm_WARNING"));

    // The title and fingerprint are the ones `lvh triage` finds in the console log.
    assert_eq!(s["title"], "WARNING in lkdtm_WARNING");
    let fp = s["fingerprint"].as_str().unwrap();
    assert!(
        err.contains(&format!("WARNING in lkdtm_WARNING [fingerprint {fp}]:")),
        "{err}"
    );
    let t = crate::support::lvh()
        .arg("triage")
        .arg("--json")
        .arg(&log)
        .output()
        .unwrap();
    assert_code(&t, 1);
    let reports: serde_json::Value = serde_json::from_slice(&t.stdout).unwrap();
    assert_eq!(reports[0]["title"], s["title"]);
    assert_eq!(reports[0]["fingerprint"], fp);
}

#[test]
fn a_bug_is_caught_and_classified() {
    let o = run(&["--", "sh", "-c", &provoke("BUG")]);
    assert_code(&o, 245);
    let e = error_line(&o);
    assert!(
        e.starts_with("lvh: error: kernel splat: bug in lkdtm_BUG"),
        "{e}"
    );
    assert!(text(&o.stderr).contains("kernel BUG at drivers/misc/lkdtm/bugs.c"));
}

#[test]
fn a_soft_lockup_stops_a_command_that_would_never_end() {
    let t = Instant::now();
    let o = run(&[
        "--append",
        "watchdog_thresh=1",
        "--timeout",
        "300",
        "--",
        "sh",
        "-c",
        // The kernel switches to the TSC clocksource with stop_machine about a
        // second after boot; a CPU already spinning in LKDTM then gets the
        // soft lockup reported in the stopper thread (`stop_machine_yield`).
        &format!(
            "cs=/sys/devices/system/clocksource/clocksource0/current_clocksource; \
             for i in $(seq 100); do grep -qx tsc $cs && break; sleep 0.1; done; \
             echo SOFTLOCKUP > {DIRECT}"
        ),
    ]);
    assert_code(&o, 245);
    let e = error_line(&o);
    assert!(
        e.starts_with("lvh: error: kernel splat: soft-lockup in lkdtm_SOFTLOCKUP"),
        "{e}"
    );
    assert!(e.contains("the command could not finish"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(200), "{:?}", t.elapsed());
}

#[test]
fn a_known_warning_passes_by_allowlist_or_warn_mode_and_an_expired_entry_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let allow = d.path().join("allow.json");
    std::fs::write(
        &allow,
        r#"[{"pattern": "warning in lkdtm_WARNING$", "reason": "provoked by the test", "expires": "2099-12-31"}]"#,
    )
    .unwrap();
    let cmd = provoke("WARNING");
    let o = run(&[
        "--splat-allow",
        allow.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &cmd,
    ]);
    assert_code(&o, 0);
    assert_eq!(text(&o.stdout), "after\n");
    assert!(
        text(&o.stderr).contains("allowed by entry 1 of")
            && text(&o.stderr).contains("(provoked by the test): warning in lkdtm_WARNING"),
        "{}",
        text(&o.stderr)
    );

    let o = run(&[
        "--splat",
        "warn",
        "--",
        "sh",
        "-c",
        &format!("{cmd}; exit 4"),
    ]);
    assert_code(&o, 4);
    let err = text(&o.stderr);
    assert!(
        err.contains("warning: kernel splat: warning in lkdtm_WARNING"),
        "{err}"
    );
    assert!(err.contains("---[ end trace"), "{err}");

    std::fs::write(
        &allow,
        r#"[{"pattern": "lkdtm", "reason": "flaky", "expires": "2024-01-31"}]"#,
    )
    .unwrap();
    let t = Instant::now();
    let o = run(&["--splat-allow", allow.to_str().unwrap(), "--", "true"]);
    assert_code(&o, 3);
    let e = error_line(&o);
    assert!(
        e.contains("allow.json: entry 1") && e.contains("expired on 2024-01-31"),
        "{e}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "refused before booting"
    );
}

#[test]
fn the_result_file_for_pass_fail_and_timeout() {
    let d = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], i32, &str); 3] = [
        ("pass", &["--", "true"], 0, "passed"),
        ("fail", &["--", "sh", "-c", "exit 3"], 3, "failed"),
        (
            "timeout",
            &["--timeout", "2", "--", "sleep", "600"],
            244,
            "timeout",
        ),
    ];
    for (name, args, code, verdict) in cases {
        let result = d.path().join(format!("{name}.json"));
        let mut all = vec!["--result-json", result.to_str().unwrap()];
        all.extend_from_slice(args);
        let o = run(&all);
        assert_code(&o, code);
        let v = read_result(&result);
        assert_eq!(v["verdict"], verdict, "{name}: {v}");
        assert_eq!(v["exit_code"], code, "{name}");
        assert_eq!(v["splats"], serde_json::json!([]), "{name}");
        assert!(v["boot_seconds"].as_f64().unwrap() > 0.0, "{name}");
        if name == "timeout" {
            assert_eq!(v["command_status"], serde_json::Value::Null);
            assert!(v["command_seconds"].as_f64().unwrap() >= 2.0, "{v}");
            assert!(v["error"]
                .as_str()
                .unwrap()
                .contains("did not finish within 2s"));
        } else {
            assert_eq!(v["command_status"], code);
            assert_eq!(v["error"], serde_json::Value::Null);
            assert_eq!(v["taint"]["before"], v["taint"]["after"]);
        }
    }
}

/// Builds the XDP test program with the host's clang.
fn build_bpf(out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/bpf/xdp_first_byte.c");
    let clang = ["clang-19", "clang"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect("clang (scripts/install-deps.sh installs clang-19)");
    let o = Command::new(clang)
        .args(["-target", "bpf", "-O2", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{clang}: {}", text(&o.stderr));
}

#[test]
fn a_real_bpf_program_loads_and_runs_on_known_input() {
    let d = tempfile::tempdir().unwrap();
    build_bpf(&d.path().join("prog.o"));
    let mut pass = vec![0u8; 64];
    pass[0] = 0x42;
    std::fs::write(d.path().join("pass.bin"), &pass).unwrap();
    std::fs::write(d.path().join("drop.bin"), vec![0u8; 64]).unwrap();
    let script = "set -e
bpftool prog load prog.o /sys/fs/bpf/p
for f in pass drop; do bpftool prog run pinned /sys/fs/bpf/p data_in $f.bin repeat 1; done
bpftool prog show pinned /sys/fs/bpf/p";
    let o = run(&[
        "--host-mount",
        d.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_code(&o, 0);
    let out = text(&o.stdout);
    let retvals: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Return value: "))
        .map(|r| r.split(',').next().unwrap_or(r))
        .collect();
    // XDP_PASS for the packet starting with 0x42, XDP_DROP for the other.
    assert_eq!(retvals, ["2", "1"], "{out}\n{}", text(&o.stderr));
    assert!(out.contains("xdp") && out.contains("first_byte"), "{out}");
}

#[test]
fn a_taint_that_appears_during_the_command_fails_it_unless_allowed() {
    let cmd = "echo 64 > /proc/sys/kernel/tainted; echo done";
    let o = run(&["--", "sh", "-c", cmd]);
    assert_code(&o, 245);
    assert_eq!(text(&o.stdout), "done\n");
    let e = error_line(&o);
    assert!(e.starts_with("lvh: error: kernel splat: taint"), "{e}");
    assert!(
        text(&o.stderr).contains("U (taint requested by userspace) (tainted 0x0 -> 0x40)"),
        "{}",
        text(&o.stderr)
    );
    let d = tempfile::tempdir().unwrap();
    let allow = d.path().join("allow.json");
    std::fs::write(
        &allow,
        r#"[{"pattern": "taint requested by userspace", "reason": "the test asks for it", "expires": "2099-12-31"}]"#,
    )
    .unwrap();
    let o = run(&[
        "--splat-allow",
        allow.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        cmd,
    ]);
    assert_code(&o, 0);
}
