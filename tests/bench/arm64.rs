//! arm64 guests on an amd64 host (TCG): `lvh run --qemu-arch arm64 -- true`
//! against bare `qemu-system-aarch64` as a user would run it (stock
//! `-machine virt`, `-cpu max`, `-smp 2`, the same kernel and disk,
//! `init=/bin/true`), interleaved rounds, medians, ratio against the 0.5 goal.
//! With `LVH_BENCH_LEVERS=1` it also times bare QEMU with each boot lever
//! (CPU model and pointer authentication, GIC version, one vCPU, `quiet`) so
//! the README's keep/drop table can be re-measured.
//!
//! Kernel and image are the system tests' arm64 fixtures (built on first use)
//! unless `LVH_BENCH_ARM64_KERNEL` / `LVH_BENCH_ARM64_IMAGE` name others.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lvh::arch::Arch;

use crate::util::{inputs as bench_inputs, median, secs, timed};

const RUNS: usize = 5;
const GOAL: f64 = 0.5;

/// Bare QEMU as a user would boot the kernel: `machine` and `cpu` stock
/// unless a lever changes them; `extra` goes on the kernel command line.
fn bare(kernel: &Path, image: &Path, machine: &str, cpu: &str, smp: &str, extra: &str) -> Command {
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-no-reboot", "-machine", machine, "-accel", "tcg"])
        .args(["-cpu", cpu, "-smp", smp, "-m", "512M"])
        .args(["-serial", "file:/dev/null", "-drive"])
        .arg(format!(
            "file={},format=raw,if=virtio,snapshot=on",
            image.display()
        ))
        .arg("-kernel")
        .arg(kernel)
        .arg("-append")
        .arg(format!(
            "root=/dev/vda rw console=ttyAMA0 panic=-1 init=/bin/true{extra}"
        ));
    c
}

fn lvh_run(kernel: &Path, image: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--image")
        .arg(image)
        .args(["--qemu-arch", "arm64", "--accel", "tcg", "--mem", "512M"])
        .args(["--", "true"]);
    c
}

/// Runs `c` to completion, returning its wall time; fails on a bad exit.
type Variant<'a> = (String, Box<dyn Fn() -> Command + 'a>, Vec<Duration>);

/// One warm-up run each, then `RUNS` interleaved rounds; prints the medians.
fn measure(variants: &mut [Variant]) -> anyhow::Result<Vec<Duration>> {
    for (name, make, _) in variants.iter() {
        timed(&mut make(), name)?;
    }
    for _ in 0..RUNS {
        for (name, make, times) in variants.iter_mut() {
            times.push(timed(&mut make(), name)?);
        }
    }
    let medians: Vec<Duration> = variants.iter().map(|v| median(&v.2)).collect();
    for ((name, _, times), m) in variants.iter().zip(&medians) {
        let all: Vec<String> = times.iter().map(|d| secs(*d)).collect();
        println!("  {name}: {} ({})", secs(*m), all.join(", "));
    }
    Ok(medians)
}

pub fn run() -> anyhow::Result<()> {
    let (k, i) = bench_inputs(
        Arch::Arm64,
        "LVH_BENCH_ARM64_KERNEL",
        "LVH_BENCH_ARM64_IMAGE",
    )?;
    println!("kernel {}, image {}", k.display(), i.display());
    println!("arm64 boot-to-command (TCG, {RUNS} interleaved rounds, medians):");
    let mut v: Vec<Variant> = vec![
        (
            "lvh run --qemu-arch arm64 -- true".into(),
            Box::new(|| lvh_run(&k, &i)),
            vec![],
        ),
        (
            "bare qemu-system-aarch64 virt -cpu max init=/bin/true".into(),
            Box::new(|| bare(&k, &i, "virt", "max", "2", "")),
            vec![],
        ),
    ];
    let m = measure(&mut v)?;
    let ratio = m[0].as_secs_f64() / m[1].as_secs_f64();
    println!("  ratio lvh / bare {ratio:.3} (goal {GOAL})");
    if ratio > GOAL {
        println!("  GOAL NOT MET: lvh took {ratio:.3}x bare QEMU");
    }
    if std::env::var_os("LVH_BENCH_LEVERS").is_none() {
        return Ok(());
    }
    println!("levers, bare qemu-system-aarch64 init=/bin/true (relative to stock -cpu max):");
    let levers: [(&str, &str, &str, &str, &str); 7] = [
        ("stock: virt, -cpu max, -smp 2", "virt", "max", "2", ""),
        (
            "-cpu max,pauth-impdef=on",
            "virt",
            "max,pauth-impdef=on",
            "2",
            "",
        ),
        ("-cpu max,pauth=off", "virt", "max,pauth=off", "2", ""),
        ("-cpu cortex-a57", "virt", "cortex-a57", "2", ""),
        (
            "gic-version=3 + pauth-impdef",
            "virt,gic-version=3",
            "max,pauth-impdef=on",
            "2",
            "",
        ),
        (
            "-smp 1 + pauth-impdef",
            "virt",
            "max,pauth-impdef=on",
            "1",
            "",
        ),
        (
            "quiet + pauth-impdef",
            "virt",
            "max,pauth-impdef=on",
            "2",
            " quiet",
        ),
    ];
    let mut v: Vec<Variant> = levers
        .iter()
        .map(|&(name, machine, cpu, smp, extra)| {
            let (k, i) = (&k, &i);
            (
                name.to_string(),
                Box::new(move || bare(k, i, machine, cpu, smp, extra)) as Box<dyn Fn() -> Command>,
                vec![],
            )
        })
        .collect();
    let m = measure(&mut v)?;
    for ((name, _, _), d) in v.iter().zip(&m).skip(1) {
        println!(
            "  {name}: {:.3}x stock",
            d.as_secs_f64() / m[0].as_secs_f64()
        );
    }
    Ok(())
}
