//! The kernel builder against a real kernel tree: Debian's linux-source-6.12
//! built by `lvh kernels` (the cached fixtures the runner boots), natively and
//! cross.

use lvh::arch::Arch;

use crate::support::fixtures::kernel::kernel;

fn file_says(path: &std::path::Path) -> String {
    let out = std::process::Command::new("file")
        .arg("-L")
        .arg(path)
        .output()
        .expect("run file");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn amd64_kernel_builds_and_installs() {
    let k = kernel(Arch::Amd64).unwrap();
    assert!(
        k.image.ends_with("arch/x86/boot/bzImage"),
        "{}",
        k.image.display()
    );
    let what = file_says(&k.image);
    assert!(what.contains("Linux kernel x86 boot executable"), "{what}");
    let boot: Vec<String> = std::fs::read_dir(k.install.join("boot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let vmlinuz = boot
        .iter()
        .find(|n| n.starts_with("vmlinuz-"))
        .expect("vmlinuz");
    let release = vmlinuz.trim_start_matches("vmlinuz-");
    assert!(release.starts_with("6.12"), "{release}");
    assert!(k.install.join("lib/modules").join(release).is_dir());
    assert_eq!(
        std::fs::read(k.install.join("boot").join(vmlinuz)).unwrap(),
        std::fs::read(&k.image).unwrap()
    );
    let config =
        std::fs::read_to_string(k.install.join("boot").join(format!("config-{release}"))).unwrap();
    for want in [
        "CONFIG_VIRTIO_BLK=y",
        "CONFIG_SERIAL_8250_CONSOLE=y",
        "CONFIG_9P_FS=y",
        "CONFIG_EXT4_FS=y",
    ] {
        assert!(config.lines().any(|l| l == want), "{want} missing");
    }
}

#[test]
fn arm64_kernel_cross_builds_to_an_arm64_image_gz() {
    let k = kernel(Arch::Arm64).unwrap();
    assert!(
        k.image.ends_with("arch/arm64/boot/Image.gz"),
        "{}",
        k.image.display()
    );
    let mut raw = Vec::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(std::fs::File::open(&k.image).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    // The arm64 Image header: magic "ARM\x64" at offset 0x38.
    assert_eq!(&raw[0x38..0x3c], b"ARM\x64", "not an arm64 Image");
    let raw_image = k.image.with_file_name("Image");
    let what = file_says(&raw_image);
    assert!(what.contains("ARM64") || what.contains("aarch64"), "{what}");
    let boot = k.install.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .expect("vmlinuz");
    assert_eq!(
        std::fs::read(vmlinuz).unwrap(),
        std::fs::read(&k.image).unwrap()
    );
    let config =
        std::fs::read_to_string(k.dir.join("kernels").join(&k.name).join(".config")).unwrap();
    for want in [
        "CONFIG_ARM64=y",
        "CONFIG_SERIAL_AMBA_PL011_CONSOLE=y",
        "CONFIG_PCI_HOST_GENERIC=y",
        "CONFIG_VIRTIO_BLK=y",
    ] {
        assert!(config.lines().any(|l| l == want), "{want} missing");
    }
}

/// `git daemon` serving the repositories under `base` on a loopback port.
fn git_daemon(base: &std::path::Path) -> crate::support::Server {
    let port = crate::support::free_port();
    let mut cmd = std::process::Command::new("git");
    cmd.args([
        "daemon",
        "--listen=127.0.0.1",
        "--reuseaddr",
        "--export-all",
    ])
    .arg(format!("--port={port}"))
    .arg(format!("--base-path={}", base.display()))
    .arg(base);
    crate::support::Server::start(cmd, "git", port)
}

/// A source across the network (here `git://` on loopback) is fetched by the
/// `git` program into the shared repository: branch HEAD, `#branch`, an
/// update, and a missing branch named in the error. lvh itself links no TLS
/// or ssh library for this.
#[test]
fn a_kernel_across_the_network_is_fetched_with_git() {
    use crate::support::fixtures::fake_kernel::git;
    use crate::support::{assert_code, lvh, text};
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let src = root.join("srv/linux");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "-b", "trunk"]);
    let commit = |file: &str| {
        std::fs::write(src.join(file), file).unwrap();
        git(&src, &["add", "-A"]);
        git(&src, &["commit", "-q", "-m", file]);
        git(&src, &["rev-parse", "HEAD"])
    };
    commit("Makefile");
    git(&src, &["checkout", "-q", "-b", "dev"]);
    commit("dev-only");
    git(&src, &["checkout", "-q", "trunk"]);
    let daemon = git_daemon(&root.join("srv"));
    let url = format!("{}/linux", daemon.url);
    let run = |args: &[&str]| lvh().current_dir(root).args(args).output().unwrap();

    assert_code(&run(&["kernels", "init", "--dir", "d"]), 0);
    let o = run(&["kernels", "add", "k", &url, "--dir", "d", "--fetch"]);
    assert_code(&o, 0);
    let tree = root.join("d/kernels/k");
    assert_eq!(
        git(&tree, &["rev-parse", "HEAD"]),
        git(&src, &["rev-parse", "trunk"])
    );
    assert!(!tree.join("dev-only").exists());

    let new = commit("b");
    let o = run(&["kernels", "fetch", "k", "--dir", "d"]);
    assert_code(&o, 0);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("updated"),
        "{}",
        text(&o)
    );
    assert_eq!(git(&tree, &["rev-parse", "HEAD"]), new);

    let o = run(&[
        "kernels",
        "add",
        "kdev",
        &format!("{url}#dev"),
        "--dir",
        "d",
        "--fetch",
    ]);
    assert_code(&o, 0);
    assert!(root.join("d/kernels/kdev/dev-only").is_file());

    let o = run(&[
        "kernels",
        "add",
        "nope",
        &format!("{url}#nope"),
        "--dir",
        "d",
        "--fetch",
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no branch or tag \"nope\"") && e.contains(&url),
        "{e}"
    );
}
