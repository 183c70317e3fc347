//! The accelerator as a user gets it without `--accel` or `LVH_ACCEL`: lvh
//! probes KVM (a tiny guest through the KVM API, cached per host boot) and on
//! a host where KVM cannot run a guest, like this one, falls back to TCG with
//! one line saying why, instead of hanging until the boot deadline.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::support::{assert_code, text};

/// `lvh run --kernel K --image I -- CMD` with no accelerator chosen anywhere,
/// the probe's cache under `runtime_dir`.
fn run_auto(runtime_dir: &Path, cmd: &[&str]) -> (Output, Duration) {
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64).expect("kernel fixture");
    let image =
        crate::support::fixtures::image::root_image(Arch::Amd64).expect("root image fixture");
    let mut c = crate::support::lvh();
    c.arg("run")
        .arg("--kernel")
        .arg(&kernel.image)
        .arg("--image")
        .arg(&image)
        .args(["--mem", "512M", "--"])
        .args(cmd)
        .env_remove("LVH_ACCEL")
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .stdin(Stdio::null());
    let t = Instant::now();
    let o = c.output().expect("run lvh");
    (o, t.elapsed())
}

/// The probe's cached verdict: (ok, reason).
fn cached(runtime_dir: &Path) -> (bool, String) {
    let p = runtime_dir.join("lvh/kvm-probe.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (
        v["ok"].as_bool().unwrap(),
        v["reason"].as_str().unwrap().to_string(),
    )
}

#[test]
fn auto_falls_back_to_tcg_with_one_line_when_kvm_cannot_run_a_guest() {
    let rt = tempfile::tempdir().unwrap();
    let (o, took) = run_auto(rt.path(), &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_code(&o, 3);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n", "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("KVM is not usable"))
        .collect();
    let (ok, reason) = cached(rt.path());
    if ok {
        // A host where KVM works: no note, and the run used it.
        assert!(notes.is_empty(), "{}", text(&o));
    } else {
        // This machine (see DESIGN.md): exactly one line, with the probe's reason.
        assert_eq!(notes.len(), 1, "{}", text(&o));
        assert!(notes[0].contains("lvh uses TCG"), "{}", notes[0]);
        assert!(notes[0].ends_with(&reason), "{} vs {reason}", notes[0]);
        assert!(reason.contains("did not finish within 250 ms"), "{reason}");
    }
    assert!(stderr.lines().any(|l| l == "err"), "{}", text(&o));
    assert!(took < Duration::from_secs(120), "took {took:?}");

    // The second run takes the verdict from the cache: the file is unchanged.
    let cache = rt.path().join("lvh/kvm-probe.json");
    let before = std::fs::metadata(&cache).unwrap().modified().unwrap();
    let (o, _) = run_auto(rt.path(), &["true"]);
    assert_code(&o, 0);
    let again = String::from_utf8_lossy(&o.stderr)
        .matches("KVM is not usable")
        .count();
    assert_eq!(again, usize::from(!ok), "{}", text(&o));
    assert_eq!(
        std::fs::metadata(&cache).unwrap().modified().unwrap(),
        before
    );
}
