//! The build script does three things.
//!
//! Version: what `lvh version` reports (see `pkg/version.rs`): `git describe`
//! of the checkout lvh is built from (release tags `vX.Y.Z`) as
//! LVH_GIT_DESCRIBE and its commit as LVH_GIT_COMMIT, the target triple
//! (LVH_BUILD_TARGET) and `rustc -V` (LVH_BUILD_RUSTC). Git is asked only when
//! the crate is the top of its checkout: the copy `cargo package` verifies
//! under `target/package/` and a crate vendored into another repository get
//! no description (the crate version is printed), the first with the commit
//! `cargo package` recorded in `.cargo_vcs_info.json`.
//!
//! Test-tier switches, decided when the crate is built (libtest can only
//! ignore a test at compile time):
//! - `lvh_system`: `LVH_SYSTEM_TESTS=1` (the Makefile sets it) compiles the
//!   system tier; without it `cargo test` reports the tier as one ignored test
//!   that says how to run it.
//! - `lvh_no_git` / `lvh_no_make`: the integration tests that drive `git` or
//!   `make` are ignored, with the reason, when the tool is not on PATH, so plain
//!   `cargo test` passes with only Rust installed. Under `LVH_SYSTEM_TESTS=1`
//!   they always run (a missing tool is a failure there). PATH is looked at
//!   when this script runs (not on every PATH change, which would rebuild the
//!   crate); after installing git or make, `touch build.rs` picks them up.
//! - `lvh_no_guestfs_h`: likewise for the libguestfs struct layout unit test
//!   when `/usr/include/guestfs.h` (libguestfs-dev) is missing.
//!
//! The guest init: `pkg/runner/guest_init.c` compiled into a static program
//! for each guest architecture (the host's gcc for its own, the Debian cross
//! gcc for the other; `LVH_GUEST_CC_AMD64` / `LVH_GUEST_CC_ARM64` name others),
//! embedded through `$OUT_DIR/guest_init.rs`. An architecture whose compiler is
//! missing gets none, with a warning, and lvh boots it with the shell init;
//! under `LVH_SYSTEM_TESTS=1` that is an error.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    git_version();
    test_tiers();
    guest_init();
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

/// libguestfs's header, for the unit test of the binding's struct layouts.
const GUESTFS_H: &str = "/usr/include/guestfs.h";

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn test_tiers() {
    println!("cargo::rustc-check-cfg=cfg(lvh_system, lvh_no_git, lvh_no_make, lvh_no_guestfs_h)");
    println!("cargo::rerun-if-env-changed=LVH_SYSTEM_TESTS");
    println!("cargo::rerun-if-changed=build.rs");
    let system = std::env::var("LVH_SYSTEM_TESTS").is_ok_and(|v| v == "1");
    if system {
        println!("cargo::rustc-cfg=lvh_system");
    }
    for (tool, cfg) in [("git", "lvh_no_git"), ("make", "lvh_no_make")] {
        if !system && !on_path(tool) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    if !system && !std::path::Path::new(GUESTFS_H).exists() {
        println!("cargo::rustc-cfg=lvh_no_guestfs_h");
    }
}

/// The guest init's source, next to the module that ships it.
const GUEST_INIT_C: &str = "pkg/runner/guest_init.c";

/// The compiler for a guest architecture (`x86_64`, `aarch64`): the host's own
/// gcc for the host's architecture, else Debian's cross gcc.
fn guest_cc(arch: &str, env: &str) -> String {
    if let Ok(cc) = std::env::var(env) {
        return cc;
    }
    if std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == arch) {
        "gcc".into()
    } else {
        format!("{arch}-linux-gnu-gcc")
    }
}

/// Compiles the guest init for one architecture; the error says why not.
fn compile_guest_init(cc: &str, out: &std::path::Path) -> Result<(), String> {
    let o = Command::new(cc)
        .args(["-static", "-Os", "-s", "-Wall", "-Wextra", "-o"])
        .arg(out)
        .arg(GUEST_INIT_C)
        .output()
        .map_err(|e| format!("{cc}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cc} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

fn guest_init() {
    println!("cargo::rerun-if-changed={GUEST_INIT_C}");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo::rerun-if-env-changed=LVH_REQUIRE_GUEST_INITS");
    // Release builds (scripts/dist.sh) and the system tier ship both inits or fail.
    let required = ["LVH_SYSTEM_TESTS", "LVH_REQUIRE_GUEST_INITS"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| v == "1"));
    let mut rs =
        String::from("// Generated by build.rs: the static guest init per architecture.\n");
    for (name, arch, env) in [
        ("AMD64", "x86_64", "LVH_GUEST_CC_AMD64"),
        ("ARM64", "aarch64", "LVH_GUEST_CC_ARM64"),
    ] {
        println!("cargo::rerun-if-env-changed={env}");
        let cc = guest_cc(arch, env);
        let bin = out_dir.join(format!("lvh-init-{arch}"));
        match compile_guest_init(&cc, &bin) {
            Ok(()) => rs.push_str(&format!(
                "pub const {name}: Option<&[u8]> = Some(include_bytes!({:?}));\n",
                bin.display().to_string()
            )),
            Err(e) if required => panic!("the {arch} guest init: {e}"),
            Err(e) => {
                println!("cargo::warning=no {arch} guest init (lvh boots {arch} guests with its shell init): {e}");
                rs.push_str(&format!("pub const {name}: Option<&[u8]> = None;\n"));
            }
        }
    }
    std::fs::write(out_dir.join("guest_init.rs"), rs).expect("write guest_init.rs");
}
