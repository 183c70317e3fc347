//! The build script, one job per file:
//!
//! - the version (here): `git describe --tags --always --dirty` of the
//!   checkout lvh is built from, as LVH_GIT_VERSION (what `lvh version`
//!   prints, as little-vm-helper prints its tag). Outside a git checkout
//!   nothing is set and the crate version is used;
//! - the static guest init per architecture, next to its source
//!   (`pkg/runner/guest/build_init.rs`; `LVH_REQUIRE_GUEST_INITS=1` makes a
//!   missing cross compiler an error naming its Debian package);
//! - the test tiers' tool switches, next to the test support
//!   (`tests/support/build_switches.rs`).

use std::path::PathBuf;
use std::process::Command;

#[path = "pkg/runner/guest/build_init.rs"]
mod guest_init;
#[path = "tests/support/build_switches.rs"]
mod test_switches;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    git_version();
    guest_init::build();
    test_switches::emit();
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn git_version() {
    println!("cargo:rerun-if-env-changed=LVH_GIT_VERSION");
    let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ) else {
        return;
    };
    // HEAD moves on checkout (a worktree has its own), the branch it names on
    // commit, tags change `describe`. Only those: watching all of `refs` made
    // a commit on any branch rebuild the lvh crate in every worktree.
    let git_dir = PathBuf::from(git_dir);
    let common = PathBuf::from(common);
    for p in [
        git_dir.join("HEAD"),
        common.join("refs").join("tags"),
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
