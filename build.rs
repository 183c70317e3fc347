//! Records `git describe --tags --always --dirty` of the checkout lvh is built
//! from as LVH_GIT_VERSION (what `lvh version` prints, as little-vm-helper
//! prints its tag). Outside a git checkout nothing is set and the crate
//! version is used.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LVH_GIT_VERSION");
    let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ) else {
        return;
    };
    // HEAD moves on checkout and commit (a worktree has its own); tags and
    // branches live under the common dir; the index changes with staged edits.
    let git_dir = PathBuf::from(git_dir);
    let common = PathBuf::from(common);
    for p in [
        git_dir.join("HEAD"),
        git_dir.join("index"),
        common.join("refs"),
        common.join("packed-refs"),
    ] {
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let p = common.join(&head_ref);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    if let Some(v) = git(&["describe", "--tags", "--always", "--dirty"]) {
        println!("cargo:rustc-env=LVH_GIT_VERSION={v}");
    }
}
