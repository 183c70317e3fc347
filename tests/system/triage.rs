//! Crash triage against a real kernel: LKDTM provokes a WARNING and a BUG in
//! the debug fixture kernel (DEBUG_INFO), and `lvh triage --kernel` must
//! title them and symbolize their frames, with the vmlinux it finds beside
//! the kernel, to the right `drivers/misc/lkdtm/*.c:LINE`: the WARN and BUG
//! sites the kernel itself names in the reports' first lines, and the line of
//! `lkdtm_do_action()` that calls the crash function, found in the source.

use std::path::Path;
use std::process::Stdio;

use lvh::arch::Arch;

use crate::support::assert_code;

const DIRECT: &str = "/sys/kernel/debug/provoke-crash/DIRECT";

/// The line number (1-based) of the first line of `file` containing `needle`.
fn line_of(file: &Path, needle: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let i = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {}", file.display()));
    i as u64 + 1
}

/// The outermost (not inlined) source line of a JSON frame.
fn outer_source(frame: &serde_json::Value) -> (String, u64) {
    let src = frame["source"].as_array().expect("a symbolized frame");
    let last = src.last().expect("source lines");
    assert_eq!(last["inlined"], false, "{frame}");
    (
        last["file"].as_str().expect("file").to_string(),
        last["line"].as_u64().expect("line"),
    )
}

#[test]
fn lkdtm_warning_and_bug_are_titled_and_symbolized() {
    let kernel =
        crate::support::fixtures::kernel::debug_kernel(Arch::Amd64).expect("debug kernel fixture");
    let image =
        crate::support::fixtures::image::root_image(Arch::Amd64).expect("root image fixture");
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("console.log");
    let o = crate::support::lvh()
        .arg("run")
        .arg("--kernel")
        .arg(&kernel.image)
        .arg("--image")
        .arg(&image)
        .args(["--qemu-arch", "amd64", "--mem", "512M", "--splat", "warn"])
        .arg("--console-log-file")
        .arg(&log)
        .args([
            "--",
            "sh",
            "-c",
            &format!("echo WARNING > {DIRECT}; sh -c 'echo BUG > {DIRECT}'; echo after"),
        ])
        .env("LVH_ACCEL", "tcg")
        .stdin(Stdio::null())
        .output()
        .expect("run lvh");
    assert_code(&o, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "after\n");

    let o = crate::support::lvh()
        .args(["triage", "--json", "--kernel"])
        .arg(&kernel.image)
        .arg(&log)
        .output()
        .expect("lvh triage");
    assert_code(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let reports = v.as_array().expect("reports");
    let titles: Vec<&str> = reports
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["WARNING in lkdtm_WARNING", "kernel BUG in lkdtm_BUG"]
    );

    let tree = kernel.dir.join("kernels").join(&kernel.name);
    let bugs = tree.join("drivers/misc/lkdtm/bugs.c");
    let core = tree.join("drivers/misc/lkdtm/core.c");
    let call_line = line_of(&core, "crashtype->func();");
    for (r, site) in reports.iter().zip(["WARN_ON(++warn_counter)", "BUG();"]) {
        let report = r["report"].as_str().unwrap();
        let rip = &r["frames"][0];
        assert_eq!(rip["role"], "ip", "{report}");
        let (file, line) = outer_source(rip);
        assert_eq!(file, "drivers/misc/lkdtm/bugs.c", "{report}");
        assert_eq!(line, line_of(&bugs, site), "{report}");
        // the kernel names the same site in the report's first line
        assert!(
            report
                .lines()
                .next()
                .unwrap()
                .contains(&format!("bugs.c:{line}")),
            "{report}"
        );
        let caller = r["frames"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["function"] == "lkdtm_do_action")
            .expect("lkdtm_do_action frame");
        assert_eq!(
            outer_source(caller),
            ("drivers/misc/lkdtm/core.c".to_string(), call_line),
            "{report}"
        );
        // the text as decode_stacktrace.sh prints it
        assert!(
            report.contains(&format!(
                "lkdtm_do_action (drivers/misc/lkdtm/core.c:{call_line})"
            )),
            "{report}"
        );
    }
    assert_ne!(reports[0]["fingerprint"], reports[1]["fingerprint"]);
}
