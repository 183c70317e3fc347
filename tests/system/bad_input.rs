//! Hostile and bad input against a real guest: `--append` words the kernel
//! hands to init (`init_debug`, `x=y`) no longer break command mode; a
//! command far longer than the kernel command line runs (it travels over 9p,
//! not on the command line); a real kernel whose config lacks ext4 is refused
//! before QEMU starts, and `--no-kernel-check` boots it anyway.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::runner::lvh_run;
use crate::support::{assert_code, text};

fn output(mut c: std::process::Command) -> Output {
    c.stdin(Stdio::null()).output().expect("run lvh")
}

#[test]
fn words_the_kernel_passes_to_init_do_not_break_command_mode() {
    // Before lvh put its bootstrap ahead of them, `init_debug` reached
    // /bin/sh as a script name: init exited and the kernel panicked (241).
    let o = output(lvh_run(
        Arch::Amd64,
        &[
            "--append",
            "init_debug",
            "--append",
            "lvh_fuzz_word lvhtestvar=from-kernel",
            "--",
            "sh",
            "-c",
            "echo ok; echo \"$lvhtestvar\"",
        ],
    ));
    assert_code(&o, 0);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "ok\nfrom-kernel\n",
        "{}",
        text(&o)
    );
}

#[test]
fn a_command_longer_than_the_kernel_command_line_runs() {
    let long = "x".repeat(8000);
    let o = output(lvh_run(
        Arch::Amd64,
        &["--", "sh", "-c", "echo ${#1}", "sh", &long],
    ));
    assert_code(&o, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "8000\n", "{}", text(&o));
}

/// The fixture kernel's own `.config` (its build tree's).
fn fixture_config(image: &std::path::Path) -> PathBuf {
    image
        .ancestors()
        .map(|a| a.join(".config"))
        .find(|c| c.is_file())
        .expect("the fixture kernel's .config")
}

#[test]
fn a_kernel_whose_config_lacks_ext4_is_refused_before_booting() {
    let k = crate::support::fixtures::kernel::kernel(Arch::Amd64).expect("kernel fixture");
    let image =
        crate::support::fixtures::image::root_image(Arch::Amd64).expect("root image fixture");
    let config = std::fs::read_to_string(fixture_config(&k.image)).unwrap();
    assert!(
        config.contains("\nCONFIG_EXT4_FS=y\n"),
        "the fixture has ext4"
    );
    // A copy of the real kernel beside a config-VER that says it has no ext4.
    let d = tempfile::tempdir().unwrap();
    let vmlinuz = d.path().join("vmlinuz-6.12.0-lvh");
    std::fs::copy(&k.image, &vmlinuz).unwrap();
    std::fs::write(
        d.path().join("config-6.12.0-lvh"),
        config.replace("\nCONFIG_EXT4_FS=y\n", "\n# CONFIG_EXT4_FS is not set\n"),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut c = crate::support::lvh();
        c.arg("run")
            .arg("--kernel")
            .arg(&vmlinuz)
            .arg("--image")
            .arg(&image)
            .args(["--qemu-arch", "amd64", "--mem", "512M"])
            .args(extra)
            .args(["--", "true"])
            .env("LVH_ACCEL", "tcg");
        output(c)
    };
    let t = Instant::now();
    let o = run(&[]);
    assert_code(&o, 3);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("config-6.12.0-lvh) lacks")
            && e.contains("CONFIG_EXT4_FS=y (the root filesystem (ext4); it is not set)")
            && e.contains("--no-kernel-check"),
        "{}",
        text(&o)
    );
    // Refused before QEMU: no boot happened.
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // The kernel really has ext4: skipping the check boots it.
    let o = run(&["--no-kernel-check"]);
    assert_code(&o, 0);
}
