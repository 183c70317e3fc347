//! Boot-to-command: `lvh run --kernel K --image I -- true` against bare QEMU
//! booting the same kernel and image with `init=/bin/true` (alternating runs,
//! medians; budget 1.15x), then the same kernel under danobi's vmtest and
//! virtme-ng doing `uname -r`, when they are installed and can boot it.
//!
//! Kernel and image are the system tests' cached fixtures (built on first use)
//! unless `LVH_BENCH_KERNEL` / `LVH_BENCH_IMAGE` name others. Guests use TCG.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

const RUNS: usize = 5;
const BUDGET: f64 = 1.15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn inputs() -> anyhow::Result<(PathBuf, PathBuf)> {
    let kernel = match std::env::var_os("LVH_BENCH_KERNEL") {
        Some(k) => PathBuf::from(k),
        None => crate::fixtures::kernel::kernel(Arch::Amd64)?.image,
    };
    let image = match std::env::var_os("LVH_BENCH_IMAGE") {
        Some(i) => PathBuf::from(i),
        None => crate::fixtures::image::root_image(Arch::Amd64)?,
    };
    Ok((kernel, image))
}

/// Bare QEMU: same machine, CPU, memory, kernel and disk; no lvh devices.
fn bare_qemu(kernel: &Path, image: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        "2",
        "-m",
        "512M",
        "-serial",
        "file:/dev/null",
        "-drive",
    ])
    .arg(format!(
        "file={},format=raw,if=virtio,snapshot=on",
        image.display()
    ))
    .arg("-kernel")
    .arg(kernel)
    .args([
        "-append",
        "root=/dev/vda rw console=ttyS0 panic=-1 init=/bin/true",
    ]);
    c
}

fn lvh_run(kernel: &Path, image: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--image")
        .arg(image)
        .args(["--accel", "tcg", "--mem", "512M", "--", "true"]);
    c
}

/// Runs `c` to completion, returning its wall time; fails on a bad exit.
fn timed(c: &mut Command, what: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = c.stdin(Stdio::null()).output()?;
    let d = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(d)
}

fn compare_with_bare_qemu(kernel: &Path, image: &Path) -> anyhow::Result<()> {
    // One unmeasured run each to warm the page cache.
    timed(&mut bare_qemu(kernel, image), "bare qemu")?;
    timed(&mut lvh_run(kernel, image), "lvh run")?;
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        bare.push(timed(&mut bare_qemu(kernel, image), "bare qemu")?);
        ours.push(timed(&mut lvh_run(kernel, image), "lvh run")?);
    }
    let (o, b) = (median(ours.clone()), median(bare.clone()));
    let ratio = o.as_secs_f64() / b.as_secs_f64();
    println!(
        "boot-to-command (TCG, {RUNS} alternating runs): lvh run -- true median {}, bare qemu init=/bin/true median {}, ratio {ratio:.3} (budget {BUDGET})",
        secs(o),
        secs(b)
    );
    println!(
        "  lvh runs:  {}",
        ours.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ")
    );
    println!(
        "  bare runs: {}",
        bare.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ")
    );
    if ratio > BUDGET {
        println!("  OVER BUDGET: lvh took {ratio:.3}x bare QEMU");
    }
    Ok(())
}

/// A reference tool's run of `uname -r`, or why it could not run.
fn reference(name: &str, install: &str, mut c: Command) {
    let program = c.get_program().to_string_lossy().into_owned();
    if lvh::exec::which(&program).is_none() {
        println!(
            "{name}: not installed ({program} not in PATH); install with `{install}` to compare"
        );
        return;
    }
    let t = Instant::now();
    let out = match c.stdin(Stdio::null()).output() {
        Ok(o) => o,
        Err(e) => {
            println!("{name}: could not start {program}: {e}");
            return;
        }
    };
    let d = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        println!(
            "{name} `uname -r`: {} (printed {:?})",
            secs(d),
            stdout.trim().lines().last().unwrap_or("")
        );
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        println!(
            "{name} `uname -r`: failed after {} ({}): {}",
            secs(d),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
}

fn compare_with_references(kernel: &Path, image: &Path) {
    let t = Instant::now();
    let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--image")
        .arg(image)
        .args(["--accel", "tcg", "--mem", "512M", "--", "uname", "-r"]);
    match c.output() {
        Ok(o) if o.status.success() => println!(
            "lvh `uname -r`: {} (printed {:?})",
            secs(t.elapsed()),
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        Ok(o) => println!("lvh `uname -r`: failed ({})", o.status),
        Err(e) => println!("lvh `uname -r`: {e}"),
    }

    let mut vmtest = Command::new("vmtest");
    vmtest.arg("--kernel").arg(kernel).arg("uname -r");
    reference("vmtest", "cargo install vmtest", vmtest);

    let mut vng = Command::new("vng");
    vng.arg("--run")
        .arg(kernel)
        .args(["--disable-kvm", "--memory", "512M", "--", "uname", "-r"]);
    reference("virtme-ng", "pip install virtme-ng", vng);
}

pub fn run() -> anyhow::Result<()> {
    let (kernel, image) = inputs()?;
    println!("kernel {}, image {}", kernel.display(), image.display());
    compare_with_bare_qemu(&kernel, &image)?;
    compare_with_references(&kernel, &image);
    Ok(())
}
