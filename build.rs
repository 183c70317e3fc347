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

/// libguestfs's header, for the unit test of the binding's struct layouts.
const GUESTFS_H: &str = "/usr/include/guestfs.h";

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn main() {
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
