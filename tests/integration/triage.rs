//! `lvh triage` on logs: reports found (exit 1) or none (exit 0), the text
//! and JSON outputs, stdin, and bad input (exit 2) that names the file.

use std::path::Path;

use crate::common::{assert_code, lvh, lvh_in, stderr, stdout};

const WARN: &str = "\
[    1.728065] lkdtm: Performing direct entry WARNING
[    1.728065] ------------[ cut here ]------------
[    1.728065] WARNING: CPU: 0 PID: 41 at drivers/misc/lkdtm/bugs.c:112 lkdtm_WARNING+0x8/0xb
[    1.728065] CPU: 0 UID: 0 PID: 41 Comm: sh Not tainted 6.12.117+ #1
[    1.732065] RIP: 0010:lkdtm_WARNING+0x8/0xb
[    1.736066] Call Trace:
[    1.736066]  <TASK>
[    1.736066]  ? lkdtm_do_action+0x18/0x1b
[    1.736066]  ? direct_entry+0xa5/0xc4
[    1.740066]  </TASK>
[    1.740066] ---[ end trace 0000000000000000 ]---
[    1.740066] after
";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn a_log_with_a_crash_prints_its_report_and_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let log = write(d.path(), "console.log", WARN);
    let o = lvh_in(d.path(), &["triage", &log]);
    assert_code(&o, 1);
    let out = stdout(&o);
    assert!(out.starts_with("== WARNING in lkdtm_WARNING\n"), "{out}");
    assert!(
        out.contains("warning, fingerprint ") && out.contains(&format!("{log}:3")),
        "{out}"
    );
    assert!(
        out.contains("\nWARNING: CPU: 0 PID: 41 at drivers/misc/lkdtm/bugs.c:112"),
        "{out}"
    );
    assert!(
        !out.contains("Performing direct entry") && !out.contains("after"),
        "{out}"
    );
}

#[test]
fn json_lists_every_report_with_its_log() {
    let d = tempfile::tempdir().unwrap();
    let a = write(d.path(), "a.log", WARN);
    let b = write(
        d.path(),
        "b.log",
        "boot ok\nWARNING: apt does not have a stable CLI interface.\n",
    );
    let o = lvh_in(d.path(), &["triage", "--json", &a, &b, &a]);
    assert_code(&o, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    let reports = v.as_array().expect("array");
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["fingerprint"], reports[1]["fingerprint"]);
    let r = &reports[0];
    assert_eq!(r["title"], "WARNING in lkdtm_WARNING");
    assert_eq!(r["kind"], "warning");
    assert_eq!(r["culprit"], "lkdtm_WARNING");
    assert_eq!(r["log"], a.as_str());
    assert_eq!(r["line"], 3);
    assert_eq!(r["frames"][1]["function"], "lkdtm_do_action");
    assert_eq!(r["frames"][1]["reliable"], false);
    assert!(r["report"]
        .as_str()
        .unwrap()
        .ends_with("---[ end trace 0000000000000000 ]---"));
}

#[test]
fn no_crash_exits_0_and_stdin_is_read() {
    let o = {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut c = Command::new(crate::common::lvh_bin())
            .args(["triage", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(b"BUG: this is a program's line\nok\n")
            .unwrap();
        c.wait_with_output().unwrap()
    };
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), "[]");
}

#[test]
fn bad_input_exits_2_and_names_it() {
    let d = tempfile::tempdir().unwrap();
    let log = write(d.path(), "console.log", WARN);
    let missing = d.path().join("missing.log").display().to_string();
    let o = lvh(&["triage", &missing]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains(&missing), "{}", stderr(&o));

    let not_elf = write(d.path(), "vmlinux", "text");
    let o = lvh(&["triage", "--vmlinux", &not_elf, &log]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains(&not_elf) && stderr(&o).contains("not an ELF"),
        "{}",
        stderr(&o)
    );

    let kernel = write(d.path(), "bzImage", "x");
    std::fs::remove_file(d.path().join("vmlinux")).unwrap();
    let o = lvh(&["triage", "--kernel", &kernel, &log]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("no vmlinux beside it"),
        "{}",
        stderr(&o)
    );

    let o = lvh(&["triage", "--vmlinux", "a", "--kernel", "b"]);
    assert_code(&o, 2);
}
