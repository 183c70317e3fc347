//! SIGKILL of lvh at random points of `kernels build` and `kernels pull`.
//!
//! `kernels build` runs lvh's real build path (the git worktree `kernels add
//! --fetch` made, `make tinyconfig`, `scripts/config`, `make olddefconfig`,
//! `make -jN bzImage`, the install into `tar-install`) on the stand-in tree
//! of `fixtures::fake_kernel` with its slow build: make runs child shells
//! that sleep and write their outputs in place the way kbuild does, so a
//! real kernel's 8 minutes become a few seconds with the same kinds of
//! processes and half-written files. Afterwards no process is left in the
//! tree, the kernel's lock is free, `tar-install` is either absent or whole,
//! and the rerun gives the same install as an uninterrupted build.
//!
//! `kernels pull` goes through a slowed proxy to a real registry: no partial
//! kernel under its final name, the rerun pulls the same files, and nothing
//! temporary is left.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::kill::figures;
use super::{
    kill_after, kill_points, names, partials_under, procs_in, run, snapshot, Rng, SeedOnPanic,
};
use crate::oci::registry::{test_bytes, write_file, Proxy, Registry};
use crate::support::fixtures::fake_kernel::{fake_kernel, git, slow_build, ADD_ARGS, BUILD_ARGS};
use crate::support::{assert_code, text};

/// A kernels directory `<root>/d` with kernel `f` fetched from the slow
/// stand-in tree: 6 objects of 0.7 s each, built two at a time.
fn kernels_dir(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let src = fake_kernel(root);
    slow_build(&src, 6, 0.7);
    let lvh = |args: &[&str]| {
        let o = run({
            let mut c = crate::support::lvh();
            c.args(args).current_dir(root);
            c
        });
        assert_code(&o, 0);
    };
    lvh(&["kernels", "init", "--dir", "d"]);
    lvh(&ADD_ARGS);
}

fn kernels_build(root: &Path) -> Command {
    let mut c = crate::support::lvh();
    c.args(BUILD_ARGS).current_dir(root);
    c
}

fn tree(root: &Path) -> PathBuf {
    root.join("d/kernels/f")
}

/// What a build produced that must not depend on where or how often it ran:
/// the install tree and the image.
fn outputs(root: &Path) -> (std::collections::BTreeMap<String, Vec<u8>>, Option<Vec<u8>>) {
    let t = tree(root);
    (
        snapshot(&t.join("tar-install")),
        std::fs::read(t.join("arch/x86/boot/bzImage")).ok(),
    )
}

#[test]
fn sigkill_during_kernels_build() {
    let mut rng = Rng::new();
    let _seed = SeedOnPanic(rng.seed, "sigkill_during_kernels_build");
    let t = tempfile::tempdir().unwrap();
    let (reference, root) = (t.path().join("ref"), t.path().join("killed"));
    kernels_dir(&reference);
    kernels_dir(&root);
    let t0 = Instant::now();
    let o = run(kernels_build(&reference));
    let total = t0.elapsed();
    assert_code(&o, 0);
    let (want_install, want_image) = outputs(&reference);
    assert!(
        want_install.contains_key("boot/vmlinuz-6.12.0-fake"),
        "{:?}",
        want_install.keys().collect::<Vec<_>>()
    );
    let want_image = want_image.expect("the reference build made no image");
    let lock = root.join("d/kernels/.f.lock");
    let (mut killed, mut most) = (0, 0);
    for i in 0..kill_points() {
        if i > 0 {
            // Every kill point lands in a build from scratch (configure included).
            git(&tree(&root), &["clean", "-fdxq"]);
        }
        let delay = rng.between(Duration::from_millis(50), total);
        let what = format!("kernels build, kill point {i} at {delay:?} of {total:?}");
        let k = kill_after(kernels_build(&root), delay, &what);
        most = most.max(k.children_seen);
        killed += usize::from(k.finished_first.is_none());
        // make's children (here sh and sleep; a kernel's gcc and cc1) went too.
        let left = procs_in(&tree(&root));
        assert!(left.is_empty(), "{what}: running in the tree: {left:?}");
        // The lock died with lvh: a new holder gets it at once.
        let held = lvh::fsutil::Lock::acquire(&lock, "kernel \"f\"", Duration::ZERO);
        assert!(held.is_ok(), "{what}: the kernel lock is still held");
        drop(held);
        // Nothing looks complete that is not: tar-install is whole or absent,
        // an image whose build step finished (kbuild's saved command) is whole.
        let (install, image) = outputs(&root);
        assert!(
            install.is_empty() || install == want_install,
            "{what}: a partial tar-install has the final name: {:?}",
            install.keys().collect::<Vec<_>>()
        );
        if tree(&root).join(".bzImage.cmd").exists() {
            assert!(image.as_ref() == Some(&want_image), "{what}: image");
        }
        let o = run(kernels_build(&root));
        assert!(o.status.success(), "{what}: rerun failed: {}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            tree(&root)
                .join("arch/x86/boot/bzImage")
                .display()
                .to_string(),
            "{what}"
        );
        let (install, image) = outputs(&root);
        assert!(
            install == want_install,
            "{what}: the rerun's install differs"
        );
        assert!(
            image == Some(want_image.clone()),
            "{what}: the rerun's image differs"
        );
        let left = partials_under(&tree(&root));
        assert!(left.is_empty(), "{what}: left behind: {left:?}");
    }
    figures("kernels build (stand-in tree)", kill_points(), killed, most);
}

#[test]
fn sigkill_during_kernels_pull() {
    let mut rng = Rng::new();
    let _seed = SeedOnPanic(rng.seed, "sigkill_during_kernels_pull");
    let reg = Registry::start();
    // Slow enough that a pull takes seconds: room for kill points inside it.
    let slow = Proxy::start_slow(&reg.addr, 1 << 20);
    let t = tempfile::tempdir().unwrap();
    let install = t.path().join("tar-install");
    crate::oci::kernel_tree(&install);
    // A kernel image big enough that its layer takes a few seconds here.
    write_file(
        &install.join("boot/vmlinuz-6.6.0"),
        &test_bytes(8 << 20, 41),
    );
    let cache = t.path().join("cache");
    let lvh = |args: &[&str]| {
        let mut c = crate::support::lvh();
        c.args(args).env("LVH_CACHE_DIR", &cache);
        c
    };
    let o = run(lvh(&[
        "kernels",
        "push",
        install.to_str().unwrap(),
        &format!("{}/lvh/kernel-images:6.6-main", reg.addr),
        "--arch",
        "amd64",
    ]));
    assert_code(&o, 0);
    let out = t.path().join("out");
    let repo = format!("{}/lvh/kernel-images", slow.addr);
    let pull = || {
        lvh(&[
            "kernels",
            "pull",
            "6.6-main",
            "--repo",
            &repo,
            "-d",
            out.to_str().unwrap(),
            "-p",
            "linux/amd64",
        ])
    };
    let t0 = Instant::now();
    let o = run(pull());
    let total = t0.elapsed();
    assert_code(&o, 0);
    let pulled = out.join("6.6-main");
    let want = snapshot(&pulled);
    assert!(
        want.get("boot/vmlinuz-6.6.0") == Some(&test_bytes(8 << 20, 41)),
        "{:?}",
        want.keys().collect::<Vec<_>>()
    );
    let (mut killed, mut most) = (0, 0);
    for i in 0..kill_points() {
        // Start from nothing so every kill point lands in a real download.
        std::fs::remove_dir_all(&out).unwrap();
        std::fs::remove_dir_all(cache.join("oci")).ok();
        let delay = rng.between(Duration::from_millis(50), total);
        let what = format!("kernels pull, kill point {i} at {delay:?} of {total:?}");
        let k = kill_after(pull(), delay, &what);
        most = most.max(k.children_seen);
        killed += usize::from(k.finished_first.is_none());
        if pulled.exists() {
            assert!(
                snapshot(&pulled) == want,
                "{what}: a partial kernel has the final name"
            );
        }
        let o = run(pull());
        assert!(o.status.success(), "{what}: rerun failed: {}", text(&o));
        assert!(
            snapshot(&pulled) == want,
            "{what}: the rerun pulled other files"
        );
        let visible: Vec<String> = names(&out)
            .into_iter()
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert_eq!(visible, ["6.6-main"], "{what}");
        let left: Vec<String> = partials_under(&out)
            .into_iter()
            .chain(partials_under(&cache))
            .collect();
        assert!(left.is_empty(), "{what}: left behind: {left:?}");
        let scratch = names(&cache.join("tmp"));
        assert!(scratch.is_empty(), "{what}: scratch left: {scratch:?}");
    }
    figures("kernels pull", kill_points(), killed, most);
}
