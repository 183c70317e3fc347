//! Tests of the kernel configuration check: the needs per arch, root device
//! and mode, the verdict on real-shaped configs, and finding the config
//! beside an install, in a build tree and inside a (compressed) image.

use super::*;
use std::io::Write;

/// The options an lvh-built amd64 kernel has (the `runner` group), as
/// `make` writes them.
const GOOD_AMD64: &str = "\
# Automatically generated file; DO NOT EDIT.
CONFIG_BINFMT_ELF=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_PCI=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_BLK=y
CONFIG_EXT4_FS=y
CONFIG_DEVTMPFS=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_VIRTIO_CONSOLE=y
CONFIG_NET_9P=y
CONFIG_NET_9P_VIRTIO=m
CONFIG_9P_FS=y
CONFIG_LOCALVERSION=\"\"
";

fn with(base: &str, edits: &[(&str, Option<&str>)]) -> Config {
    let mut c = parse(base);
    for (sym, val) in edits {
        match val {
            Some(v) => c.insert(sym.to_string(), v.to_string()),
            None => c.remove(*sym),
        };
    }
    c
}

#[test]
fn dotconfig_parses() {
    let c = parse(GOOD_AMD64);
    assert_eq!(c["EXT4_FS"], "y");
    assert_eq!(c["NET_9P_VIRTIO"], "m");
    assert_eq!(c["LOCALVERSION"], "\"\"");
    let c = parse("# CONFIG_EXT4_FS is not set\n  CONFIG_X=1  \n# comment\nnoise");
    assert_eq!(c["EXT4_FS"], "n");
    assert_eq!(c["X"], "1");
    assert_eq!(c.len(), 2);
}

#[test]
fn the_verdict_names_each_missing_option_and_why() {
    let cmd = needs(Arch::Amd64, RootDev::Vda, true);
    let boot = needs(Arch::Amd64, RootDev::Vda, false);
    let cases: Vec<(Config, &[Need], Vec<&str>)> = vec![
        (parse(GOOD_AMD64), &cmd, vec![]),
        (
            with(GOOD_AMD64, &[("EXT4_FS", None)]),
            &cmd,
            vec!["CONFIG_EXT4_FS=y (the root filesystem (ext4); it is not set)"],
        ),
        (
            with(GOOD_AMD64, &[("EXT4_FS", Some("n"))]),
            &cmd,
            vec!["CONFIG_EXT4_FS=y (the root filesystem (ext4); it is not set)"],
        ),
        (
            with(GOOD_AMD64, &[("VIRTIO_BLK", Some("m"))]),
            &cmd,
            vec!["CONFIG_VIRTIO_BLK=y (the root disk /dev/vda (virtio-blk); it is a module, and lvh boots without an initramfs)"],
        ),
        // 9p as modules is fine: the root is mounted by then.
        (
            with(GOOD_AMD64, &[("9P_FS", Some("m"))]),
            &cmd,
            vec![],
        ),
        // Without a command, 9p and virtio-serial are not needed.
        (
            with(GOOD_AMD64, &[("9P_FS", None), ("VIRTIO_CONSOLE", None), ("DEVTMPFS", None)]),
            &boot,
            vec![],
        ),
        (
            with(GOOD_AMD64, &[("9P_FS", None), ("SERIAL_8250_CONSOLE", None)]),
            &cmd,
            vec![
                "CONFIG_SERIAL_8250_CONSOLE=y (the console on ttyS0; it is not set)",
                "CONFIG_9P_FS=y (lvh's control share (9p); it is not set)",
            ],
        ),
        (Config::new(), &boot, vec!["CONFIG_BINFMT_ELF=y", "CONFIG_SERIAL_8250_CONSOLE=y", "CONFIG_PCI=y", "CONFIG_VIRTIO_PCI=y", "CONFIG_VIRTIO_BLK=y", "CONFIG_EXT4_FS=y"]),
    ];
    for (i, (config, needs, want)) in cases.into_iter().enumerate() {
        let got = missing(&config, needs);
        assert_eq!(got.len(), want.len(), "case {i}: {got:#?}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                g.starts_with(w),
                "case {i}: {g:?} does not start with {w:?}"
            );
        }
    }
}

#[test]
fn needs_follow_arch_and_root_device() {
    let syms =
        |n: Vec<Need>| -> Vec<&str> { n.iter().flat_map(|n| n.symbols.iter().copied()).collect() };
    let arm = syms(needs(Arch::Arm64, RootDev::Vda, false));
    assert!(arm.contains(&"SERIAL_AMBA_PL011_CONSOLE") && arm.contains(&"PCI_HOST_GENERIC"));
    assert!(!arm.contains(&"SERIAL_8250_CONSOLE"));
    let hda = syms(needs(Arch::Amd64, RootDev::Hda, false));
    assert!(hda.contains(&"ATA_PIIX") && hda.contains(&"BLK_DEV_SD"));
    assert!(!hda.contains(&"VIRTIO_BLK"));
    let cmd = syms(needs(Arch::Amd64, RootDev::Vda, true));
    for s in ["9P_FS", "NET_9P_VIRTIO", "VIRTIO_CONSOLE", "DEVTMPFS"] {
        assert!(cmd.contains(&s), "{s}");
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A vmlinux-like blob with the kernel's `kernel/configs.c` layout.
fn vmlinux(config: &str) -> Vec<u8> {
    let mut v = vec![0x7f, b'E', b'L', b'F'];
    v.extend(std::iter::repeat_n(0xccu8, 4096));
    v.extend_from_slice(b"IKCFG_ST");
    v.extend(gzip(config.as_bytes()));
    v.extend_from_slice(b"IKCFG_ED");
    v.extend(std::iter::repeat_n(0u8, 4096));
    v
}

#[test]
fn ikconfig_is_found_raw_gzipped_and_zstd_compressed() {
    let raw = vmlinux(GOOD_AMD64);
    assert_eq!(ikconfig(&raw).as_deref(), Some(GOOD_AMD64));
    // bzImage-like: a setup header, the compressed vmlinux, trailing bytes.
    let mut bz = vec![0x4d, 0x5a];
    bz.extend(std::iter::repeat_n(0x11u8, 1000));
    bz.extend(gzip(&raw));
    bz.extend(std::iter::repeat_n(0x22u8, 100));
    assert_eq!(ikconfig(&bz).as_deref(), Some(GOOD_AMD64));
    let mut zs = vec![0u8; 512];
    zs.extend(zstd::encode_all(&raw[..], 3).unwrap());
    zs.extend([0xffu8; 16]);
    assert_eq!(ikconfig(&zs).as_deref(), Some(GOOD_AMD64));
    // No IKCONFIG, stray magics, garbage after the marker: nothing, no panic.
    assert_eq!(ikconfig(&[0u8; 100]), None);
    assert_eq!(ikconfig(b"IKCFG_ST not gzip"), None);
    assert_eq!(ikconfig(&[0x1f, 0x8b, 0x08, 0x00, 1, 2, 3]), None);
    assert_eq!(ikconfig(&[0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]), None);
}

#[test]
fn the_config_is_found_beside_in_the_tree_or_inside() {
    let d = tempfile::tempdir().unwrap();
    // An install tree: boot/vmlinuz-V and boot/config-V.
    let boot = d.path().join("tar-install/boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(boot.join("vmlinuz-6.12.0"), b"kernel").unwrap();
    std::fs::write(boot.join("config-6.12.0"), GOOD_AMD64).unwrap();
    let (src, text) = find(&boot.join("vmlinuz-6.12.0")).unwrap();
    assert_eq!(src, Source::Beside(boot.join("config-6.12.0")));
    assert_eq!(text, GOOD_AMD64);

    // A build tree: <tree>/.config, <tree>/Kconfig, <tree>/arch/x86/boot/bzImage.
    let tree = d.path().join("linux");
    let img = tree.join("arch/x86/boot/bzImage");
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    std::fs::write(tree.join("Kconfig"), b"").unwrap();
    std::fs::write(tree.join(".config"), GOOD_AMD64).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&img, b"kernel").unwrap();
    assert_eq!(find(&img).unwrap().0, Source::Tree(tree.join(".config")));
    // A .config newer than the image may not describe it: not used.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(tree.join(".config"), GOOD_AMD64).unwrap();
    assert_eq!(find(&img), None);

    // Nothing around it: the image's own copy, else unknown.
    let lone = d.path().join("bzImage");
    std::fs::write(&lone, vmlinux(GOOD_AMD64)).unwrap();
    assert_eq!(find(&lone).unwrap().0, Source::Embedded(lone.clone()));
    std::fs::write(&lone, b"no config here").unwrap();
    assert_eq!(find(&lone), None);
}
