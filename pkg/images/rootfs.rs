//! The external tools of the pipeline: mmdebstrap for the root tree,
//! `mkfs.ext4 -d` for the whole-disk filesystem (no appliance needed), and
//! qemu-img for qcow2 conversion, overlays and copies.

use std::path::Path;
use std::time::Duration;

use super::plan::Settings;
use crate::arch::Arch;
use crate::exec::Cmd;
use crate::progress::Stage;

/// mmdebstrap downloads and unpacks; generous under emulation (arm64 on amd64).
pub const MMDEBSTRAP_TIMEOUT: Duration = Duration::from_secs(60 * 60);
pub const MKFS_TIMEOUT: Duration = Duration::from_secs(20 * 60);
pub const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The kernel package a bootable image gets.
pub fn kernel_package(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "linux-image-amd64",
        Arch::Arm64 => "linux-image-arm64",
    }
}

/// Packages a root image gets: the kernel and boot loader first when bootable.
pub fn root_packages(s: &Settings, packages: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if s.bootable {
        out.push(kernel_package(s.arch).to_string());
        out.push("extlinux".to_string());
    }
    for p in packages {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// Where downloaded .debs are kept between root image builds, per suite and
/// arch (`$LVH_CACHE_DIR/debs/...`); `LVH_DEB_CACHE=off` turns it off. apt checks
/// every cached .deb against the repository's hashes, so the image is the same as
/// with a fresh download.
pub fn deb_cache_dir(s: &Settings) -> Option<std::path::PathBuf> {
    if std::env::var("LVH_DEB_CACHE").is_ok_and(|v| v == "off" || v == "0") {
        return None;
    }
    let d = crate::fsutil::cache_dir().join("debs").join(format!(
        "{}-{}",
        s.suite.replace('/', "_"),
        s.arch
    ));
    std::fs::create_dir_all(&d).ok()?;
    Some(d)
}

/// The mmdebstrap command that builds the root tree into the directory `target`,
/// reusing and refilling `deb_cache` when given.
pub fn mmdebstrap_cmd(
    s: &Settings,
    packages: &[String],
    target: &Path,
    deb_cache: Option<&Path>,
) -> Cmd {
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    mmdebstrap_cmd_as(root, s, packages, target, deb_cache)
}

/// [`mmdebstrap_cmd`] as root or not. As root, mmdebstrap (root mode) mounts
/// proc, sysfs, a devpts and a bind of the host's `/dev/shm` inside the tree,
/// in the mount namespace it runs in; killed outright (SIGKILL of lvh) it
/// leaves them there, and removing the tree later would recurse into the
/// host's `/dev/shm`. So it runs in a private mount namespace of its own,
/// which the kernel tears down with its last process. Without root,
/// mmdebstrap's unshare mode makes its own namespace.
fn mmdebstrap_cmd_as(
    root: bool,
    s: &Settings,
    packages: &[String],
    target: &Path,
    deb_cache: Option<&Path>,
) -> Cmd {
    let c = if root {
        Cmd::new("unshare").args(["--mount", "--propagation", "private", "--", "mmdebstrap"])
    } else {
        Cmd::new("mmdebstrap")
    };
    let mut c = c
        .arg(format!("--architectures={}", s.arch.debian_arch()))
        .arg("--mode=auto");
    if let Some(cache) = deb_cache {
        let q = crate::exec::shell_quote(cache.as_os_str());
        c = c
            .arg("--skip=essential/unlink")
            .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/")
            .arg(format!("--setup-hook=sync-in {q} /var/cache/apt/archives/"))
            .arg(format!(
                "--customize-hook=sync-out /var/cache/apt/archives {q}"
            ));
    }
    if let Some(v) = &s.variant {
        c = c.arg(format!("--variant={v}"));
    }
    let pkgs = root_packages(s, packages);
    if !pkgs.is_empty() {
        c = c.arg(format!("--include={}", pkgs.join(",")));
    }
    if s.suite == "sid" || s.suite == "unstable" {
        // sid's Release file is often past its Valid-Until on mirrors
        c = c.arg("--aptopt=Acquire::Check-Valid-Until \"false\"");
    }
    c.arg(&s.suite)
        .arg(target)
        .arg(&s.mirror)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .timeout(MMDEBSTRAP_TIMEOUT)
}

/// The label of the root filesystem lvh makes (`mkfs.ext4 -L`).
pub const ROOT_LABEL: &str = "root";

/// extlinux.conf for a whole-disk ext4 root. The root is found by its label
/// (Debian's initramfs resolves `LABEL=`), so the image boots whatever bus
/// `lvh run --root-dev` puts it on: virtio-blk (`vda`) or IDE (`hda`, `sda`).
pub fn extlinux_conf(arch: Arch) -> String {
    format!(
        "DEFAULT linux\nTIMEOUT 0\nPROMPT 0\n\nLABEL linux\n  KERNEL /vmlinuz\n  \
         APPEND initrd=/initrd.img root=LABEL={ROOT_LABEL} rw console={}\n",
        arch.console()
    )
}

/// Files a bootable root tree needs besides the packages: fstab and the boot
/// loader config (the boot sector itself is written through libguestfs).
pub fn write_boot_files(root: &Path, arch: Arch) -> std::io::Result<()> {
    std::fs::write(
        root.join("etc/fstab"),
        format!("LABEL={ROOT_LABEL} / ext4 rw,relatime,errors=remount-ro 0 1\n"),
    )?;
    std::fs::create_dir_all(root.join("boot/extlinux"))?;
    std::fs::write(
        root.join("boot/extlinux/extlinux.conf"),
        extlinux_conf(arch),
    )
}

/// A sparse raw file of `size` bytes holding an ext4 filesystem (whole disk,
/// no partition table) made from the tree at `root`.
pub fn make_ext4(
    root: &Path,
    file: &Path,
    size: u64,
    stage: &Stage,
) -> Result<(), super::error::ImagesError> {
    let f = std::fs::File::create(file).map_err(|e| {
        super::error::ImagesError::io(format!("cannot create {}", file.display()), e)
    })?;
    f.set_len(size)
        .map_err(|e| super::error::ImagesError::io(format!("cannot size {}", file.display()), e))?;
    drop(f);
    mkfs_cmd(root, file)
        .stage(stage.id())
        .run(stage.reporter())
        .map_err(|e| {
            super::error::ImagesError::step(&file.display().to_string(), "mkfs.ext4", e)
        })?;
    Ok(())
}

pub fn mkfs_cmd(root: &Path, file: &Path) -> Cmd {
    Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-L", ROOT_LABEL, "-d"])
        .arg(root)
        .arg(file)
        .timeout(MKFS_TIMEOUT)
}

/// `qemu-img convert` from one format to another (sparse output).
pub fn convert_cmd(src: &Path, src_fmt: &str, dst: &Path, dst_fmt: &str) -> Cmd {
    Cmd::new("qemu-img")
        .args(["convert", "-f", src_fmt, "-O", dst_fmt])
        .arg(src)
        .arg(dst)
        .timeout(QEMU_IMG_TIMEOUT)
}

/// A qcow2 overlay on `backing` (a name relative to the overlay's directory, so
/// the images directory can move), optionally larger than its backing file.
pub fn overlay_cmd(backing_name: &str, backing_fmt: &str, dst: &Path, size: Option<u64>) -> Cmd {
    let mut c = Cmd::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            backing_name,
            "-F",
            backing_fmt,
        ])
        .arg(dst);
    if let Some(s) = size {
        c = c.arg(s.to_string());
    }
    c.timeout(QEMU_IMG_TIMEOUT)
}

/// `qemu-img resize` of a standalone image (grow only).
pub fn resize_cmd(file: &Path, fmt: &str, size: u64) -> Cmd {
    Cmd::new("qemu-img")
        .args(["resize", "-q", "-f", fmt])
        .arg(file)
        .arg(size.to_string())
        .timeout(QEMU_IMG_TIMEOUT)
}

/// A sparse full copy of a raw image.
pub fn copy_cmd(src: &Path, dst: &Path) -> Cmd {
    Cmd::new("cp")
        .args(["--sparse=always", "--reflink=auto"])
        .arg(src)
        .arg(dst)
        .timeout(QEMU_IMG_TIMEOUT)
}

/// The virtual size of an image, from `qemu-img info`.
pub fn virtual_size(file: &Path, fmt: &str) -> Result<u64, String> {
    let out = Cmd::new("qemu-img")
        .args(["info", "--output=json", "-U", "-f", fmt])
        .arg(file)
        .timeout(Duration::from_secs(60))
        .read()
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    v["virtual-size"]
        .as_u64()
        .ok_or_else(|| format!("no virtual-size in qemu-img info for {}", file.display()))
}

/// Bytes the file occupies on disk (allocated blocks, not its apparent size).
pub fn size_on_disk(file: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(file).ok().map(|m| m.blocks() * 512)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::config::Format;

    fn settings() -> Settings {
        Settings {
            arch: Arch::Amd64,
            format: Format::Raw,
            bootable: true,
            size: Some(1 << 30),
            flatten: false,
            suite: "bookworm".into(),
            mirror: "http://deb.debian.org/debian".into(),
            variant: Some("minbase".into()),
        }
    }

    #[test]
    fn mmdebstrap_argv() {
        for (root, prefix) in [
            (false, ""),
            (true, "unshare --mount --propagation private -- "),
        ] {
            let c = mmdebstrap_cmd_as(
                root,
                &settings(),
                &["vim".into(), "extlinux".into()],
                Path::new("/t"),
                None,
            );
            assert_eq!(
                c.display(),
                format!(
                    "{prefix}mmdebstrap --architectures=amd64 --mode=auto --variant=minbase \
                     --include=linux-image-amd64,extlinux,vim bookworm /t http://deb.debian.org/debian"
                )
            );
        }
        let mut s = settings();
        s.bootable = false;
        s.variant = None;
        s.suite = "sid".into();
        s.arch = Arch::Arm64;
        let c = mmdebstrap_cmd_as(false, &s, &[], Path::new("/t"), None);
        assert_eq!(
            c.display(),
            "mmdebstrap --architectures=arm64 --mode=auto \
             '--aptopt=Acquire::Check-Valid-Until \"false\"' sid /t http://deb.debian.org/debian"
        );
    }

    #[test]
    fn deb_cache_hooks() {
        let c = mmdebstrap_cmd(&settings(), &[], Path::new("/t"), Some(Path::new("/c d")));
        let args: Vec<String> = c
            .get_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"--skip=essential/unlink".to_string()));
        assert!(args.contains(&"--setup-hook=sync-in '/c d' /var/cache/apt/archives/".to_string()));
        assert!(
            args.contains(&"--customize-hook=sync-out /var/cache/apt/archives '/c d'".to_string())
        );
    }

    #[test]
    fn qemu_img_argv() {
        assert_eq!(
            overlay_cmd("base.img", "raw", Path::new("/d/.k.partial"), Some(10)).display(),
            "qemu-img create -q -f qcow2 -b base.img -F raw /d/.k.partial 10"
        );
        assert_eq!(
            convert_cmd(Path::new("a"), "raw", Path::new("b"), "qcow2").display(),
            "qemu-img convert -f raw -O qcow2 a b"
        );
    }

    #[test]
    fn extlinux_config_finds_the_root_on_any_bus() {
        let c = extlinux_conf(Arch::Amd64);
        assert!(
            c.contains("root=LABEL=root ") && c.contains("console=ttyS0"),
            "{c}"
        );
        assert!(!c.contains("/dev/vda"), "{c}");
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        write_boot_files(d.path(), Arch::Amd64).unwrap();
        let fstab = std::fs::read_to_string(d.path().join("etc/fstab")).unwrap();
        assert!(fstab.starts_with("LABEL=root / ext4 "), "{fstab}");
        assert!(mkfs_cmd(d.path(), Path::new("x"))
            .display()
            .contains(&format!("-L {ROOT_LABEL} ")));
    }
}
