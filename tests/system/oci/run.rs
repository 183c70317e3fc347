//! `lvh run --image <reference>`: the image is pulled into the content-addressed
//! cache and booted; a second run of the same reference downloads nothing.

use std::process::{Command, Output, Stdio};

use lvh::arch::Arch;

use super::registry::{Proxy, Registry};

fn run_via(reference: &str, kernel: &std::path::Path, cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lvh"))
        .args(["run", "--image", reference, "--kernel"])
        .arg(kernel)
        .args(["--mem", "512M", "--", "sh", "-c", "echo pulled-ok"])
        .env("LVH_ACCEL", "tcg")
        .env("LVH_CACHE_DIR", cache)
        .env("CI", "true")
        .env_remove("LVH_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run lvh")
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "pulled-ok\n");
}

#[test]
fn run_pulls_a_reference_once_and_boots_it() {
    let kernel = crate::fixtures::kernel::kernel(Arch::Amd64).expect("kernel fixture");
    let image = crate::fixtures::image::root_image(Arch::Amd64).expect("image fixture");
    let reg = Registry::start();
    let reference = reg.reference("root-images", "run");
    let push = Command::new(env!("CARGO_BIN_EXE_lvh"))
        .args(["images", "push"])
        .arg(&image)
        .arg(&reference)
        .env("CI", "true")
        .output()
        .expect("push");
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );

    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let proxy = Proxy::start(&reg.addr, None);
    let via = format!("{}/root-images:run", proxy.addr);

    let first = run_via(&via, &kernel.image, &cache);
    assert_ok(&first);
    let pulled = proxy.bytes();
    assert!(pulled > 1 << 20, "first run moved only {pulled} bytes");

    let second = run_via(&via, &kernel.image, &cache);
    assert_ok(&second);
    let moved = proxy.bytes() - pulled;
    assert!(moved < 64 << 10, "second run moved {moved} bytes");

    // The cached image itself was not changed by either boot.
    let cached: Vec<_> = std::fs::read_dir(cache.join("oci/images"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(!cached.is_empty());

    // A mistyped local path is not looked up in a registry.
    let typo = run_via("./no-such-dir/imgg.qcow2", &kernel.image, &cache);
    assert_eq!(
        typo.status.code(),
        Some(240),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
    assert!(String::from_utf8_lossy(&typo.stderr).contains("imgg.qcow2"));
}
