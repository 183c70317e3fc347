//! lvh on a machine without libguestfs: `libguestfs.so.0` is hidden by
//! bind-mounting an empty file over it in a private mount namespace
//! (`unshare -m`, root). `lvh run` must still boot a guest and run a command;
//! an `images build` that needs an appliance must fail naming the Debian
//! package to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lvh::arch::Arch;

use crate::support::text;

/// Where Debian's libguestfs0 puts the library on this host.
fn library_path() -> PathBuf {
    let triple = match Arch::host() {
        Arch::Amd64 => "x86_64-linux-gnu",
        Arch::Arm64 => "aarch64-linux-gnu",
    };
    let p = PathBuf::from(format!("/usr/lib/{triple}/libguestfs.so.0"));
    assert!(
        p.exists(),
        "{} is missing: install libguestfs0 (scripts/install-deps.sh); \
         without it this test would hide nothing",
        p.display()
    );
    p
}

/// `lvh args...` in a mount namespace where the library is an empty file.
fn lvh_without_libguestfs(empty: &Path, args: &[&std::ffi::OsStr]) -> Output {
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "sh",
        "-c",
        r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#,
    ])
    .arg("sh")
    .arg(empty)
    .arg(library_path())
    .arg(crate::support::lvh().get_program())
    .args(args)
    .env("LVH_ACCEL", "tcg")
    .env("CI", "true")
    .env_remove("LVH_LOG")
    .stdin(Stdio::null());
    c.output().expect("run unshare (util-linux)")
}

#[test]
fn run_and_images_build_without_libguestfs() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("empty");
    std::fs::write(&empty, b"").unwrap();

    // The hiding works: a build that needs an appliance fails with the hint.
    let dir = d.path().join("data");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let parent = std::fs::File::create(dir.join("images/parent.img")).unwrap();
    parent.set_len(64 << 20).unwrap();
    std::fs::write(
        dir.join("images.json"),
        r#"[{"name": "child.img", "parent": "parent.img", "actions": [
            {"comment": "needs an appliance", "op": {"Hostname": "lvh"}, "type": "set-hostname"}]}]"#,
    )
    .unwrap();
    let o = lvh_without_libguestfs(
        &empty,
        &[
            "images".as_ref(),
            "build".as_ref(),
            "--dir".as_ref(),
            dir.as_os_str(),
        ],
    );
    crate::support::assert_code(&o, 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("libguestfs.so.0") && err.contains("install the Debian package libguestfs0"),
        "{}",
        text(&o)
    );
    assert!(!dir.join("images/child.img").exists());

    // `lvh run` never needs the library.
    let kernel = crate::support::fixtures::kernel::kernel(Arch::host()).expect("kernel fixture");
    let image =
        crate::support::fixtures::image::root_image(Arch::host()).expect("root image fixture");
    let o = lvh_without_libguestfs(
        &empty,
        &[
            "run".as_ref(),
            "--kernel".as_ref(),
            kernel.image.as_os_str(),
            "--image".as_ref(),
            image.as_os_str(),
            "--mem".as_ref(),
            "512M".as_ref(),
            "--".as_ref(),
            "echo".as_ref(),
            "booted without libguestfs".as_ref(),
        ],
    );
    crate::support::assert_code(&o, 0);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "booted without libguestfs\n"
    );
}
