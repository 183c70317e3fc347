//! `lvh kernels bisect` and `--kmemleak` on a real history: seven commits on
//! the 6.12 fixture tree (one breaks the build, one plants a WARN in
//! `/proc/version`'s read, one leaks on every read of `/proc/loadavg`),
//! built incrementally by lvh and booted under QEMU (TCG).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use lvh::arch::Arch;

use crate::support::assert_code;
use crate::support::fixtures::{history, image, kernel};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lvh() -> Command {
    let mut c = crate::support::lvh();
    c.env("LVH_ACCEL", "tcg")
        .env("CI", "true")
        .stdin(Stdio::null());
    c
}

/// A copy of the history kernel's directory (bisect checks commits out and
/// builds them; the cached fixture stays as it is).
fn copy_of(fixture: &Path, name: &str, into: &Path) -> std::path::PathBuf {
    let to = into.join("k");
    let st = Command::new("cp")
        .arg("-a")
        .arg(fixture)
        .arg(&to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {}", fixture.display());
    // The copy's links, not the cached fixture's.
    kernel::repoint_worktree(&to, fixture, &to, name).unwrap();
    to
}

#[test]
fn bisect_finds_the_commit_that_plants_a_warn_skipping_the_broken_build() {
    let h = history::history_kernel(Arch::Amd64).expect("history kernel");
    let img = image::root_image(Arch::Amd64).expect("root image");
    let t = tempfile::Builder::new()
        .prefix("lvh-bisect-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let dir = copy_of(&h.kernel.dir, &h.kernel.name, t.path());
    let ds = dir.to_str().unwrap();
    let args = |json: bool| {
        let mut c = lvh();
        c.args(["kernels", "bisect", &h.kernel.name, "--dir", ds])
            .args(["--good", &h.commits[0], "--bad", &h.commits[7]])
            .arg("--image")
            .arg(&img)
            .args(["--mem", "512M"]);
        if json {
            c.arg("--json");
        }
        c.args(["--", "cat", "/proc/version"]);
        c
    };
    let start = Instant::now();
    let o: Output = args(true).output().unwrap();
    let took = start.elapsed();
    let err = text(&o.stderr);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json result");
    eprintln!("bisect took {:.1} s:\n{err}", took.as_secs_f64());
    assert_eq!(v["first_bad"]["commit"], h.commits[6].as_str(), "{v}");
    assert_eq!(v["first_bad"]["subject"], history::WARN_SUBJECT);
    let title = v["title"].as_str().unwrap_or_default();
    assert!(title.contains("version_proc_show"), "{title}");
    assert!(title.to_ascii_lowercase().starts_with("warning"), "{title}");
    let steps = v["steps"].as_array().unwrap();
    let marks: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s["subject"].as_str().unwrap(), s["mark"].as_str().unwrap()))
        .collect();
    assert_eq!(
        marks,
        [
            (history::BROKEN_SUBJECT, "skip"),
            ("Documentation: a third note", "good"),
            ("proc: mend the build of fs/proc/version.c", "good"),
            (history::WARN_SUBJECT, "bad"),
        ],
        "{v}"
    );
    assert!(
        steps[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("the build failed"),
        "{v}"
    );
    for s in steps {
        eprintln!(
            "step {} {:<5} build {:>6.1} s run {:>5} s  {}",
            &s["commit"].as_str().unwrap()[..12],
            s["mark"].as_str().unwrap(),
            s["build_seconds"].as_f64().unwrap(),
            s["run_seconds"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.1}")),
            s["reason"].as_str().unwrap()
        );
    }
    // The log has a line per step; the tree is back on its branch.
    let tree = dir.join("kernels").join(&h.kernel.name);
    let log = std::fs::read_to_string(tree.join(".lvh/bisect.log")).unwrap();
    assert_eq!(log.lines().count(), 1 + steps.len(), "{log}");
    let branch = Command::new("git")
        .arg("-C")
        .arg(&tree)
        .args(["branch", "--show-current"])
        .output()
        .unwrap();
    assert_eq!(
        text(&branch.stdout).trim(),
        format!("lvh-{}", h.kernel.name)
    );
    // The same bisection again: its saved result, nothing built.
    let o = args(false).output().unwrap();
    assert_code(&o, 0);
    let out = text(&o.stdout);
    assert!(
        out.starts_with(&format!("first bad commit: {}", h.commits[6])),
        "{out}"
    );
    assert!(
        out.contains("crash: ") && out.contains("version_proc_show"),
        "{out}"
    );
    assert!(
        !text(&o.stderr).contains("bisect step"),
        "{}",
        text(&o.stderr)
    );
}

fn run_kmemleak(kernel: &Path, extra: &[&str], cmd: &[&str]) -> Output {
    let img = image::root_image(Arch::Amd64).expect("root image");
    lvh()
        .arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--image")
        .arg(&img)
        .args(["--mem", "512M"])
        .args(extra)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap()
}

#[test]
fn kmemleak_fails_a_run_that_leaks_and_names_the_leak() {
    let h = history::history_kernel(Arch::Amd64).expect("history kernel");
    let k = &h.kernel.image;
    let d = tempfile::tempdir().unwrap();
    let result = d.path().join("r.json");
    // No leak: passes.
    let o = run_kmemleak(k, &["--kmemleak"], &["cat", "/proc/uptime"]);
    assert_code(&o, 0);
    // The leak goes unseen without --kmemleak...
    let o = run_kmemleak(k, &[], &["cat", "/proc/loadavg"]);
    assert_code(&o, 0);
    // ...and fails the run with it, every time: lvh boots the kernel with
    // init_on_alloc=1, without which the five leaks went unreported in about
    // one run in eight (a stale copy of each pointer in reused memory).
    let o = run_kmemleak(
        k,
        &["--kmemleak", "--result-json", result.to_str().unwrap()],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do cat /proc/loadavg; done; echo status",
        ],
    );
    let err = text(&o.stderr);
    assert_code(&o, 245);
    assert_eq!(text(&o.stdout).lines().last(), Some("status"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("lvh: error:"))
        .unwrap_or_default();
    assert!(line.contains("loadavg_proc_show"), "{err}");
    assert!(err.contains("memory leak in loadavg_proc_show"), "{err}");
    assert!(
        err.contains("unreferenced object 0x") && err.contains("(size 128)"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    assert_eq!(v["splats"][0]["kind"], "memory-leak", "{v}");
    assert_eq!(v["command_status"], 0, "{v}");
}

#[test]
fn kmemleak_is_refused_for_a_kernel_without_it() {
    let k = kernel::kernel(Arch::Amd64).expect("fixture kernel");
    let o = run_kmemleak(&k.image, &["--kmemleak"], &["true"]);
    let err = text(&o.stderr);
    assert_code(&o, 3);
    assert!(err.contains("CONFIG_DEBUG_KMEMLEAK=y (--kmemleak"), "{err}");
}
