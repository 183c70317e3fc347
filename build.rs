//! The build script, one job per file:
//!
//! - the version (here): what `lvh version` reports (see `pkg/version.rs`):
//!   `git describe` of the checkout lvh is built from (release tags `vX.Y.Z`)
//!   as LVH_GIT_DESCRIBE and its commit as LVH_GIT_COMMIT, the target triple
//!   (LVH_BUILD_TARGET) and `rustc -V` (LVH_BUILD_RUSTC). Git is asked only
//!   when the crate is the top of its checkout: the copy `cargo package`
//!   verifies under `target/package/` and a crate vendored into another
//!   repository get no description (the crate version is printed), the first
//!   with the commit `cargo package` recorded in `.cargo_vcs_info.json`;
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
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rustc-env=LVH_BUILD_TARGET={target}");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc_v = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "rustc (unknown)".into());
    println!("cargo:rustc-env=LVH_BUILD_RUSTC={rustc_v}");

    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let vcs_info = manifest_dir.join(".cargo_vcs_info.json");
    let ours = git(&["rev-parse", "--show-toplevel"])
        .and_then(|t| std::fs::canonicalize(t).ok())
        .is_some_and(|t| std::fs::canonicalize(&manifest_dir).is_ok_and(|m| m == t));
    if !ours {
        // A packaged crate: the commit `cargo package` was run at, if it says.
        if let Ok(json) = std::fs::read_to_string(&vcs_info) {
            println!("cargo:rerun-if-changed={}", vcs_info.display());
            if let Some(sha) = vcs_sha1(&json) {
                println!("cargo:rustc-env=LVH_GIT_COMMIT={sha}");
            }
        }
        return;
    }
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
    let describe = [
        "describe",
        "--tags",
        "--long",
        "--always",
        "--dirty",
        "--abbrev=7",
        "--match",
        "v[0-9]*",
    ];
    if let Some(v) = git(&describe) {
        println!("cargo:rustc-env=LVH_GIT_DESCRIBE={v}");
    }
    if let Some(sha) = git(&["rev-parse", "HEAD"]) {
        println!("cargo:rustc-env=LVH_GIT_COMMIT={sha}");
    }
}

/// The commit in `.cargo_vcs_info.json` (`{"git": {"sha1": "..."}, ...}`).
fn vcs_sha1(json: &str) -> Option<String> {
    let at = json.find("\"sha1\"")? + "\"sha1\"".len();
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    let sha: String = rest
        .strip_prefix('"')?
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    (sha.len() == 40).then_some(sha)
}
