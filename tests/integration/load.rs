//! Two `lvh kernels build` of the same kernel at once (real git and make, a
//! stand-in kernel tree whose build takes a few seconds): the kernel's lock
//! makes the second wait, saying so, the builds never overlap, and both end
//! with the same complete install.

use std::process::{Command, Stdio};

use crate::common::{assert_code, lvh_bin, stderr};
use crate::fake_kernel::{ADD_ARGS, BUILD_ARGS};
use crate::kernels::{fake_kernel, git, ok};

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
#[cfg_attr(lvh_no_make, ignore = "needs make on PATH (Debian package make)")]
fn two_builds_of_one_kernel_take_turns() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let src = fake_kernel(root);
    // The build step notes when it starts and ends, and takes 2 s.
    let events = root.join("events");
    let mk = std::fs::read_to_string(src.join("Makefile")).unwrap();
    let mk = mk.replacen(
        "bzImage:\n",
        &format!(
            "bzImage:\n\techo start >> {e}\n\tsleep 2\n\techo end >> {e}\n",
            e = events.display()
        ),
        1,
    );
    std::fs::write(src.join("Makefile"), mk).unwrap();
    git(&src, &["commit", "-q", "-am", "slow build"]);
    ok(root, &["kernels", "init", "--dir", "d"]);
    ok(root, &ADD_ARGS);
    let build = || {
        Command::new(lvh_bin())
            .args(BUILD_ARGS)
            .current_dir(root)
            .env("CI", "true")
            .env_remove("LVH_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = build();
    let b = build();
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    for o in &outs {
        assert_code(o, 0);
    }
    let waited = outs
        .iter()
        .filter(|o| stderr(o).contains("is in use by another lvh process; waiting for it"))
        .count();
    assert_eq!(waited, 1, "{}\n---\n{}", stderr(&outs[0]), stderr(&outs[1]));
    // Never two builds at once: starts and ends alternate.
    let ev = std::fs::read_to_string(&events).unwrap();
    let ev: Vec<&str> = ev.lines().collect();
    assert!(!ev.is_empty() && ev.len() % 2 == 0, "{ev:?}");
    for pair in ev.chunks(2) {
        assert_eq!(pair, ["start", "end"], "{ev:?}");
    }
    let boot = root.join("d/kernels/f/tar-install/boot");
    assert!(boot.is_dir(), "no install at {}", boot.display());
}
