//! The image builder's appliance (libguestfs under TCG): a `run-command`'s
//! output reaches `lvh images build -v` while the command runs, not when it
//! ends, and a failing command's error carries its last lines.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::support::fixtures::image::{root_image, ROOT_IMAGE};
use crate::support::{lvh, text};

/// A build directory whose `images/root.img` is the shared root fixture, with
/// one child image running `cmd`.
fn dir_with_command(cmd: &str) -> tempfile::TempDir {
    let root = root_image(Arch::host()).expect("root image fixture");
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("images")).unwrap();
    std::os::unix::fs::symlink(&root, d.path().join("images").join(ROOT_IMAGE)).unwrap();
    let config = serde_json::json!([{
        "name": "streamed.qcow2",
        "parent": ROOT_IMAGE,
        "actions": [{"comment": "", "op": {"Cmd": cmd}, "type": "run-command"}],
    }]);
    std::fs::write(d.path().join("images.json"), config.to_string()).unwrap();
    d
}

fn build(d: &tempfile::TempDir) -> std::process::Command {
    let mut c = lvh();
    c.args(["images", "build", "-v", "--dir"])
        .arg(d.path())
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg");
    c
}

#[test]
fn a_commands_output_streams_while_it_runs() {
    // The gap between the two lines must show on lvh's side: were the output
    // returned only at the end, both would arrive together.
    let d = dir_with_command("echo lvh-early; echo lvh-stderr >&2; sleep 8; echo lvh-late");
    let mut child = build(&d)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen: Vec<(String, Instant)> = Vec::new();
    let mut all = String::new();
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        all.push_str(&line);
        all.push('\n');
        for want in ["lvh-early", "lvh-stderr", "lvh-late"] {
            if line.trim_start().starts_with('|') && line.ends_with(want) {
                seen.push((want.to_string(), Instant::now()));
            }
        }
    }
    let st = child.wait().unwrap();
    assert!(st.success(), "{st}\n{all}");
    let at = |w: &str| {
        seen.iter()
            .find(|(n, _)| n == w)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("{w} was not shown as a line:\n{all}"))
    };
    at("lvh-stderr");
    let gap = at("lvh-late") - at("lvh-early");
    assert!(
        gap >= Duration::from_secs(4),
        "lvh-early came only {gap:?} before lvh-late:\n{all}"
    );
}

#[test]
fn a_failing_commands_error_ends_with_its_output() {
    let d = dir_with_command("for i in $(seq 1 100); do echo lvh-n-$i; done; exit 7");
    let o = build(&d).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // Every line streamed by; the error has the last ones only.
    assert!(
        err.contains("| lvh-n-1\n") && err.contains("| lvh-n-100"),
        "{}",
        text(&o)
    );
    let in_error: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim_start().starts_with('|'))
        .collect();
    assert!(
        in_error.iter().any(|l| l.contains("lvh-n-")),
        "{}",
        text(&o)
    );
    assert!(
        !in_error.iter().any(|l| l.ends_with("lvh-n-60")),
        "{}",
        text(&o)
    );
    assert!(!d.path().join("images/streamed.qcow2").exists());
}
