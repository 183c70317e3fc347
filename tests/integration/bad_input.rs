//! `lvh run` refuses hostile and impossible input before QEMU starts, with
//! exit code 3 (invalid input) and the flag and value named: control
//! characters and unbalanced quotes in `--append`, a kernel command line over
//! the kernel's 2048 bytes, CPU and memory counts QEMU cannot give, host ports
//! asked for twice or already in use, and a `--kernel` whose configuration
//! lacks what the run needs (`--no-kernel-check` boots it anyway).

use std::path::Path;
use std::process::Output;

use crate::common::{assert_code, lvh_in, stderr, stdout};

/// A temp dir with a fake kernel and a raw image. Nothing here reaches QEMU
/// except where a test says so.
fn files() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bzImage"), b"kernel").unwrap();
    std::fs::write(d.path().join("root.img"), vec![0u8; 4096]).unwrap();
    d
}

fn run(dir: &Path, kernel: &str, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--kernel", kernel, "--image", "root.img"];
    args.extend_from_slice(extra);
    lvh_in(dir, &args)
}

#[track_caller]
fn assert_invalid(out: &Output, wants: &[&str]) {
    assert_code(out, 3);
    let e = stderr(out);
    for w in wants {
        assert!(e.contains(w), "missing {w:?} in stderr: {e}");
    }
    assert!(stdout(out).is_empty(), "{}", stdout(out));
}

#[test]
fn bad_run_input_is_refused_before_qemu_with_the_flag_named() {
    let d = files();
    let long = format!("x={}", "y".repeat(2100));
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--append", "quiet\ninit=/bin/bash"],
            vec![
                "--append \"quiet\\ninit=/bin/bash\": invalid kernel argument",
                "control character '\\n'",
            ],
        ),
        (
            vec!["--append", "dyndbg=\"file x.c +p"],
            vec![
                "--append \"dyndbg=\\\"file x.c +p\": invalid kernel argument",
                "unbalanced double quote",
            ],
        ),
        (
            vec!["--append", &long],
            vec!["over the kernel's limit of 2048", "shorten --append"],
        ),
        (
            vec!["--cpu", "5000"],
            vec!["--cpu \"5000\": invalid CPU count", "at most 4096"],
        ),
        (vec!["--cpu", "-1"], vec!["--cpu"]),
        (
            vec!["--mem", "16M"],
            vec!["--mem \"16M\": invalid memory size", "at least 32M"],
        ),
        (
            vec!["--mem", "64T"],
            vec![
                "--mem \"64T\": invalid memory size: the host has",
                "RAM and swap",
            ],
        ),
        (
            vec!["-p", "2222:22", "-p", "2222:80"],
            vec!["host port 2222/tcp is asked for twice"],
        ),
        (vec!["-p", "0:22"], vec!["out of range 1-65535"]),
    ];
    for (extra, wants) in cases {
        let mut args = extra.clone();
        args.extend(["--", "true"]);
        let out = run(d.path(), "bzImage", &args);
        if extra == ["--cpu", "-1"] {
            // clap refuses a negative count itself (usage).
            assert_code(&out, 2);
            continue;
        }
        assert_invalid(&out, &wants);
    }
    // Nothing was started: no run directory, no overlay.
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn a_port_in_use_is_refused_before_qemu() {
    let d = files();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let fwd = format!("{port}:22");
    let out = run(d.path(), "bzImage", &["-p", &fwd, "--", "true"]);
    assert_invalid(
        &out,
        &[&format!(
            "--port {port}:22: host port 127.0.0.1:{port}/tcp cannot be used"
        )],
    );
    let out = lvh_in(
        d.path(),
        &[
            "run",
            "--image",
            "root.img",
            "--qemu-monitor-port",
            &port.to_string(),
        ],
    );
    assert_invalid(&out, &["--qemu-monitor-port: host port 127.0.0.1:"]);
}

#[test]
fn a_kernel_without_ext4_is_refused_and_the_check_can_be_skipped() {
    let d = files();
    std::fs::write(d.path().join("vmlinuz-6.12.0"), b"not really a kernel").unwrap();
    std::fs::write(
        d.path().join("config-6.12.0"),
        "CONFIG_BINFMT_ELF=y\nCONFIG_SERIAL_8250_CONSOLE=y\nCONFIG_PCI=y\nCONFIG_VIRTIO_PCI=y\n\
         CONFIG_VIRTIO_BLK=m\n# CONFIG_EXT4_FS is not set\nCONFIG_DEVTMPFS=y\nCONFIG_PROC_FS=y\n\
         CONFIG_SYSFS=y\nCONFIG_VIRTIO_CONSOLE=y\nCONFIG_NET_9P_VIRTIO=y\nCONFIG_9P_FS=y\n",
    )
    .unwrap();
    let out = run(d.path(), "vmlinuz-6.12.0", &["--", "true"]);
    assert_invalid(
        &out,
        &[
            "/vmlinuz-6.12.0\": this kernel cannot run this: its configuration (",
            "/config-6.12.0) lacks\n",
            "CONFIG_VIRTIO_BLK=y (the root disk /dev/vda (virtio-blk); it is a module",
            "CONFIG_EXT4_FS=y (the root filesystem (ext4); it is not set)",
            "--no-kernel-check",
        ],
    );
    assert!(!stderr(&out).contains("9P"), "{}", stderr(&out));
    // Skipped, lvh goes on to QEMU, which refuses the fake kernel (240).
    let out = run(
        d.path(),
        "vmlinuz-6.12.0",
        &["--no-kernel-check", "--accel", "tcg", "--", "true"],
    );
    assert_code(&out, 240);
    assert!(!stderr(&out).contains("lacks"), "{}", stderr(&out));
}
