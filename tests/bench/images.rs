//! Image builder budgets, measured side by side in one run:
//! - a root image (minbase + 5 packages, qcow2) by `lvh images build` against
//!   little-vm-helper's pipeline done by hand with the same tools (mmdebstrap to a
//!   tarball, `guestfish -N` with `mkfs ext4` + `tar-in`, `qemu-img convert`);
//! - a child with three steps: lvh (qcow2 overlay, one appliance) against a full
//!   `qemu-img convert` copy and one `virt-customize` call per step; and the
//!   child's size on disk against the full copy;
//! - an unchanged rebuild of the whole forest (budget: under 2 s).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lvh::images::rootfs::size_on_disk;

const PACKAGES: &[&str] = &["netcat-openbsd", "iproute2", "procps", "less", "kmod"];
const SUITE: &str = lvh::images::config::DEFAULT_SUITE;
const MIRROR: &str = lvh::images::config::DEFAULT_MIRROR;

fn lvh_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lvh")
}

fn timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = cmd
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .env("CI", "true")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(t.elapsed())
}

fn root_entry() -> serde_json::Value {
    serde_json::json!({"name": "root.qcow2", "bootable": false, "variant": "minbase",
                       "image_size": "8G", "packages": PACKAGES})
}

fn config(with_child: bool) -> String {
    let mut v = vec![root_entry()];
    if with_child {
        v.push(serde_json::json!(
            {"name": "child.qcow2", "parent": "root.qcow2", "actions": [
                {"op": {"Dir": "/opt/bench"}, "type": "mkdir"},
                {"op": {"File": "payload.txt", "Dest": "/opt/bench/payload.txt"}, "type": "upload"},
                {"op": {"Cmd": "echo bench > /etc/motd"}, "type": "run-command"}
            ]}
        ));
    }
    serde_json::to_string_pretty(&v).expect("json")
}

/// little-vm-helper's pipeline, by hand.
fn reference(d: &Path) -> anyhow::Result<(Duration, Duration)> {
    let tar = d.join("root.tar");
    let raw = d.join("root.img");
    let qcow = d.join("root.qcow2");
    let t = Instant::now();
    timed(
        Command::new("mmdebstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg(SUITE)
            .arg(&tar)
            .arg(MIRROR),
    )?;
    timed(
        Command::new("guestfish")
            .arg("-N")
            .arg(format!("{}=disk:8G", raw.display()))
            .args([
                "--", "mkfs", "ext4", "/dev/sda", ":", "mount", "/dev/sda", "/", ":", "tar-in",
            ])
            .arg(&tar)
            .arg("/"),
    )?;
    timed(
        Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qcow),
    )?;
    let root = t.elapsed();
    std::fs::remove_file(&tar)?;
    std::fs::remove_file(&raw)?;

    let child = d.join("child.qcow2");
    let t = Instant::now();
    timed(
        Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(&qcow)
            .arg(&child),
    )?;
    for step in [
        vec!["--mkdir".to_string(), "/opt/bench".to_string()],
        vec![
            "--upload".to_string(),
            format!("{}:/opt/bench/payload.txt", d.join("payload.txt").display()),
        ],
        vec![
            "--run-command".to_string(),
            "echo bench > /etc/motd".to_string(),
        ],
    ] {
        timed(
            Command::new("virt-customize")
                .arg("-q")
                .arg("-a")
                .arg(&child)
                .args(&step),
        )?;
    }
    Ok((root, t.elapsed()))
}

pub fn run() -> anyhow::Result<()> {
    let base = tempfile::tempdir()?;
    let lvh_dir = base.path().join("lvh");
    let ref_dir = base.path().join("ref");
    std::fs::create_dir_all(&lvh_dir)?;
    std::fs::create_dir_all(&ref_dir)?;
    for d in [&lvh_dir, &ref_dir] {
        std::fs::write(d.join("payload.txt"), "payload\n")?;
    }
    std::fs::write(lvh_dir.join("images.json"), config(false))?;

    let bin = lvh_bin();
    let build = |extra: &[&str]| {
        let mut c = Command::new(bin);
        c.args(["images", "build", "--dir"])
            .arg(&lvh_dir)
            .args(extra);
        timed(&mut c)
    };
    // a private, empty .deb cache: the first root build downloads like the reference
    std::env::set_var("LVH_CACHE_DIR", base.path().join("lvh-cache"));
    let lvh_root = build(&[])?;
    // the root again with the .debs kept from the first build
    let lvh_root_warm = build(&["--force-rebuild"])?;
    // the child (the root is cached)
    std::fs::write(lvh_dir.join("images.json"), config(true))?;
    let lvh_child = build(&[])?;
    let lvh_unchanged = build(&[])?;
    let (ref_root, ref_child) = reference(&ref_dir)?;

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "root image (minbase + {} packages, qcow2): lvh {:.1}s, little-vm-helper pipeline {:.1}s, ratio {:.2} (goal <= 0.6)",
        PACKAGES.len(),
        lvh_root.as_secs_f64(),
        ref_root.as_secs_f64(),
        ratio(lvh_root, ref_root)
    );
    println!(
        "root image with the .deb cache warm: lvh {:.1}s, ratio {:.2}",
        lvh_root_warm.as_secs_f64(),
        ratio(lvh_root_warm, ref_root)
    );
    println!(
        "child image (3 steps): lvh {:.1}s, qemu-img copy + virt-customize per step {:.1}s, ratio {:.2}",
        lvh_child.as_secs_f64(),
        ref_child.as_secs_f64(),
        ratio(lvh_child, ref_child)
    );
    let lvh_child_size = size_on_disk(&lvh_dir.join("images/child.qcow2")).unwrap_or(0);
    let ref_child_size = size_on_disk(&ref_dir.join("child.qcow2")).unwrap_or(0);
    println!(
        "child size on disk: lvh overlay {}, full copy {}, ratio {:.3}",
        lvh::images::build::human(lvh_child_size),
        lvh::images::build::human(ref_child_size),
        lvh_child_size as f64 / ref_child_size.max(1) as f64
    );
    println!(
        "unchanged rebuild of the forest: {:.2}s (budget < 2 s)",
        lvh_unchanged.as_secs_f64()
    );
    Ok(())
}
