//! `lvh kernels bisect` without building or booting: `--dry-run` prints the
//! plan for the stand-in tree's history, and bad input (an unknown
//! revision, a good commit that is not an ancestor of the bad one, a kernel
//! that is not there, a missing image or command) is refused with words that
//! name the flag and value, before anything is checked out; so is a `.lvh`
//! state directory, or a state file in it, planted as a symlink.

use std::path::Path;

use crate::common::{assert_code, lvh_in, stderr, stdout};
use crate::kernels::{fake_kernel, git, ok};

/// The stand-in tree with three more commits, fetched as kernel `f` of `d`,
/// and an image file.
fn history(root: &Path) {
    let src = fake_kernel(root);
    for n in 1..=3 {
        std::fs::write(src.join(format!("note{n}")), format!("{n}\n")).unwrap();
        git(&src, &["add", "-A"]);
        git(&src, &["commit", "-q", "-m", &format!("note {n}")]);
    }
    ok(root, &["kernels", "init", "--dir", "d"]);
    ok(root, &crate::fake_kernel::ADD_ARGS);
    std::fs::write(root.join("root.img"), vec![0u8; 4096]).unwrap();
}

fn bisect(root: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["kernels", "bisect"];
    args.extend_from_slice(extra);
    lvh_in(root, &args)
}

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
fn a_dry_run_prints_the_plan_and_touches_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    history(root);
    let tree = root.join("d/kernels/f");
    let head = git(&tree, &["rev-parse", "HEAD"]);
    let first = git(&tree, &["rev-parse", "HEAD~3"]);
    let o = bisect(
        root,
        &[
            "f",
            "--dir",
            "d",
            "--good",
            "HEAD~3",
            "--bad",
            "HEAD",
            "--image",
            "root.img",
            "--dry-run",
            "--",
            "cat",
            "/proc/version",
        ],
    );
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("good {} fake kernel", &first[..12])),
        "{out}"
    );
    assert!(
        out.contains(&format!("bad  {} note 3", &head[..12])),
        "{out}"
    );
    assert!(out.contains("3 commit(s) after good, up to bad"), "{out}");
    assert!(
        out.contains("first step: ") && out.contains(" note 2"),
        "{out}"
    );
    assert!(out.contains("-- cat /proc/version (bad on: any)"), "{out}");
    assert_eq!(
        git(&tree, &["rev-parse", "HEAD"]),
        head,
        "nothing checked out"
    );
    assert!(!tree.join(".lvh/bisect.json").exists(), "no state written");
    // A reset with nothing under way says so.
    let o = bisect(root, &["f", "--dir", "d", "--reset"]);
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("no bisection of f under way"),
        "{}",
        stderr(&o)
    );
}

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
fn bad_revisions_kernels_images_and_commands_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    history(root);
    let base = ["--dir", "d", "--image", "root.img", "--dry-run"];
    let cases: &[(&[&str], &str)] = &[
        (
            &["f", "--good", "nosuch", "--bad", "HEAD", "--", "true"],
            "--good \"nosuch\": no such commit in the kernel's tree",
        ),
        (
            &["f", "--good", "HEAD~3", "--bad", "v9.9", "--", "true"],
            "--bad \"v9.9\": no such commit in the kernel's tree",
        ),
        (
            &["f", "--good", "HEAD", "--bad", "HEAD~2", "--", "true"],
            "--good \"HEAD\": is not an ancestor of --bad HEAD~2",
        ),
        (
            &["f", "--good", "HEAD", "--bad", "HEAD", "--", "true"],
            "is not an ancestor of --bad HEAD",
        ),
        (
            &["nope", "--good", "HEAD~1", "--bad", "HEAD", "--", "true"],
            "kernel \"nope\" is not in d/kernels.json (known: f)",
        ),
        (
            &["f", "--good", "HEAD~1", "--bad", "HEAD"],
            "CMD: give the command to run at every step after --",
        ),
    ];
    for (args, want) in cases {
        let mut a = base.to_vec();
        a.extend_from_slice(args);
        let o = bisect(root, &a);
        assert_code(&o, 3);
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = bisect(
        root,
        &[
            "f", "--dir", "d", "--good", "HEAD~1", "--bad", "HEAD", "--image", "no.img", "--",
            "true",
        ],
    );
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("--image \"no.img\": no such file"),
        "{}",
        stderr(&o)
    );
    let o = bisect(root, &["f", "--dir", "d", "--good", "HEAD", "--", "true"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--bad <REV>"), "{}", stderr(&o));
}

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
fn a_planted_symlink_in_the_state_directory_is_refused_and_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    history(root);
    let tree = root.join("d/kernels/f");
    let head = git(&tree, &["rev-parse", "HEAD"]);
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let keep = elsewhere.join("keep");
    std::fs::write(&keep, "keep\n").unwrap();
    let lvh = tree.join(".lvh");
    let _ = std::fs::remove_dir_all(&lvh);
    let args = [
        "f", "--dir", "d", "--good", "HEAD~3", "--bad", "HEAD", "--image", "root.img", "--", "true",
    ];
    let refused = |planted: &Path| {
        let o = bisect(root, &args);
        assert_code(&o, 1);
        let e = stderr(&o);
        assert!(
            e.contains(&planted.display().to_string()) && e.contains("symbolic link"),
            "{e}"
        );
        assert_eq!(
            git(&tree, &["rev-parse", "HEAD"]),
            head,
            "nothing checked out"
        );
        assert_eq!(std::fs::read_to_string(&keep).unwrap(), "keep\n");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
    };
    std::os::unix::fs::symlink(&elsewhere, &lvh).unwrap();
    refused(&lvh);
    std::fs::remove_file(&lvh).unwrap();
    std::fs::create_dir(&lvh).unwrap();
    for name in ["bisect.json", "bisect"] {
        let planted = lvh.join(name);
        std::os::unix::fs::symlink(&keep, &planted).unwrap();
        refused(&planted);
        std::fs::remove_file(&planted).unwrap();
    }
}
