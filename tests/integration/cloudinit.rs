//! `lvh run --cloud-init` without QEMU: the seed's files are checked before
//! anything boots (YAML errors with their line, clear-text passwords warned
//! about) and the flag is refused where lvh's init replaces the image's.

use std::path::Path;
use std::process::Output;

use crate::common::{assert_code, lvh_in, stderr};

fn dir_with(user_data: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("disk.qcow2"), b"QFI\xfb\0\0\0\x03").unwrap();
    std::fs::write(d.path().join("bzImage"), b"kernel").unwrap();
    std::fs::write(d.path().join("ud.yaml"), user_data).unwrap();
    d
}

/// `lvh run --dry-run --image disk.qcow2 EXTRA...` in `dir`.
fn dry_run(dir: &Path, extra: &[&str]) -> Output {
    let mut a = vec!["run", "--dry-run", "--image", "disk.qcow2"];
    a.extend_from_slice(extra);
    lvh_in(dir, &a)
}

#[test]
fn a_clear_text_password_is_warned_about_by_key() {
    let d = dir_with("#cloud-config\nchpasswd:\n  list: |\n    root:hunter2\n");
    let o = dry_run(d.path(), &["--cloud-init", "ud.yaml"]);
    assert_code(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains("ud.yaml: `chpasswd.list` sets a clear-text password"),
        "{err}"
    );
    assert!(err.contains("--ssh-key"), "{err}");
}

#[test]
fn bad_seed_files_and_misplaced_flags_are_refused() {
    let d = dir_with("#cloud-config\nusers: [\n");
    let o = dry_run(d.path(), &["--cloud-init", "ud.yaml"]);
    assert_code(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("--cloud-init") && err.contains("ud.yaml"),
        "{err}"
    );
    assert!(err.contains("not valid YAML at line"), "{err}");

    let d = dir_with("#cloud-config\n");
    for (args, want) in [
        (
            &[
                "--kernel",
                "bzImage",
                "--cloud-init",
                "ud.yaml",
                "--",
                "true",
            ][..],
            "lvh's",
        ),
        (&["--cloud-init", "missing.yaml"][..], "missing.yaml"),
        (&["--cloud-init-meta", "ud.yaml"][..], "needs --cloud-init"),
    ] {
        let o = dry_run(d.path(), args);
        assert_code(&o, 3);
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}
