//! build.rs's job for the test tiers (compiled into the build script): the
//! tests that drive a tool which plain `cargo test` cannot count on are
//! ignored, with the reason, when the tool is missing, so that `cargo test`
//! passes with only Rust installed:
//!
//! - `lvh_no_git` / `lvh_no_make`: the integration tests that drive `git` or
//!   `make`, when the tool is not on PATH;
//! - `lvh_no_guestfs_h`: the libguestfs struct layout unit test, when
//!   `/usr/include/guestfs.h` (libguestfs-dev) is missing.
//!
//! Only the tools' presence decides (nothing that changes between tiers, so
//! no tier rebuilds the library). PATH is looked at when the build script
//! runs, not on every PATH change (which would rebuild the crate); after
//! installing git or make, `touch build.rs` picks them up. The system tier
//! requires every tool (its `tools` tests), so `make test` fails without them.

/// libguestfs's header, for the unit test of the binding's struct layouts.
const GUESTFS_H: &str = "/usr/include/guestfs.h";

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Emits the switches.
pub fn emit() {
    println!("cargo::rustc-check-cfg=cfg(lvh_no_git, lvh_no_make, lvh_no_guestfs_h)");
    println!("cargo::rerun-if-changed={GUESTFS_H}");
    for (tool, cfg) in [("git", "lvh_no_git"), ("make", "lvh_no_make")] {
        if !on_path(tool) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    if !std::path::Path::new(GUESTFS_H).exists() {
        println!("cargo::rustc-cfg=lvh_no_guestfs_h");
    }
}
