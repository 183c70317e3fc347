//! `lvh run --image <reference>`: the image is pulled into the content-addressed
//! cache and booted; a second run of the same reference downloads nothing.

use std::process::{Command, Output, Stdio};

use lvh::arch::Arch;

use super::layout;
use super::registry::{Proxy, Registry};

fn run_via(reference: &str, kernel: &std::path::Path, cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lvh"))
        .args(["run", "--image", reference, "--kernel"])
        .arg(kernel)
        .arg("--dir")
        .arg(cache.with_file_name("data"))
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
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64).expect("kernel fixture");
    let image = crate::support::fixtures::image::root_image(Arch::Amd64).expect("image fixture");
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
        Some(3),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
    assert!(String::from_utf8_lossy(&typo.stderr).contains("imgg.qcow2"));
}

/// little-vm-helper's README runs `--image quay.io/lvh-images/root-images:...`,
/// an artifact with many `/data/images/*.qcow2.zst`: the first by name is
/// booted (and stderr says how to pick another), `REF#NAME` picks one, and
/// the image is left in `--dir/images/` as a link to the cache, not a copy.
#[test]
fn run_takes_the_first_of_several_images_or_the_named_one() {
    use std::os::unix::fs::MetadataExt;
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64).expect("kernel fixture");
    let image = crate::support::fixtures::image::root_image(Arch::Amd64).expect("image fixture");
    let t = tempfile::tempdir().unwrap();
    let qcow2 = t.path().join("root.qcow2");
    let zst = t.path().join("root.qcow2.zst");
    for c in [
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&image)
            .arg(&qcow2)
            .status(),
        Command::new("zstd")
            .args(["-q", "-T0"])
            .arg(&qcow2)
            .arg("-o")
            .arg(&zst)
            .status(),
    ] {
        assert!(c.unwrap().success());
    }
    let zst = std::fs::read(&zst).unwrap();
    let oci = t.path().join("layout");
    let images = layout::tar_of(&[
        ("data/images/kind.qcow2.zst", 0o644, &zst),
        ("data/images/base.qcow2.zst", 0o644, &zst),
    ]);
    let m = layout::image(&oci, "amd64", &[images]);
    layout::finish(&oci, &m, "main");
    let reg = Registry::start();
    let r = reg.reference("lvh-images/root-images", "main");
    let copy = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:main", oci.display()))
        .arg(format!("docker://{r}"))
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );

    let cache = t.path().join("cache");
    let data = t.path().join("data/images");
    let first = run_via(&r, &kernel.image, &cache);
    assert_ok(&first);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(
        err.contains("holds 2 images (base.qcow2, kind.qcow2); using base.qcow2")
            && err.contains(&format!("{r}#NAME")),
        "{err}"
    );
    let placed = std::fs::metadata(data.join("base.qcow2")).unwrap();
    assert!(placed.nlink() >= 2, "not a link to the cache");
    assert!(!data.join("kind.qcow2").exists());

    let named = run_via(&format!("{r}#kind"), &kernel.image, &cache);
    assert_ok(&named);
    assert!(!String::from_utf8_lossy(&named.stderr).contains("holds 2 images"));
    let kind = std::fs::metadata(data.join("kind.qcow2")).unwrap();
    assert!(kind.nlink() >= 2);
    assert_ne!(kind.ino(), placed.ino());
}
