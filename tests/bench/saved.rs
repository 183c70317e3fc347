//! Restore-to-command against boot-to-command under TCG: `lvh run --from-state
//! S -- true` (a VM saved after `--save-state S -- true`) against `lvh run
//! --kernel K --image I -- true`, with the system tests' fixture kernel and
//! image, interleaved rounds, medians, the ratio printed.
//!
//! Saved VMs need lvh's init (command mode, `--kernel`): a bootable systemd
//! image booted by its own init cannot be saved yet, so that comparison is
//! not measured (the README says so).

use std::path::Path;
use std::process::{Command, Stdio};

use lvh::arch::Arch;

use crate::util::{median, timed};

const RUNS: usize = 5;

fn lvh(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.arg("run")
        .arg("--dir")
        .arg(dir)
        .env("LVH_ACCEL", "tcg")
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

pub fn run() -> anyhow::Result<()> {
    let kernel = crate::fixtures::kernel::kernel(Arch::Amd64)?.image;
    let image = crate::fixtures::image::root_image(Arch::Amd64)?;
    let d = tempfile::tempdir()?;
    let boot = || {
        let mut c = lvh(d.path());
        c.arg("--kernel")
            .arg(&kernel)
            .arg("--image")
            .arg(&image)
            .args(["--mem", "512M"]);
        c
    };
    let mut save = boot();
    save.args(["--save-state", "bench", "--", "true"]);
    let saved = timed(&mut save, "save")?;
    let memory = std::fs::metadata(d.path().join("states/bench/memory"))?.len();
    println!(
        "saving (boot + `true` + save): {:.2} s, memory file {:.1} MiB",
        saved.as_secs_f64(),
        memory as f64 / (1 << 20) as f64
    );
    let (mut booted, mut restored) = (vec![], vec![]);
    for _ in 0..RUNS {
        let mut b = boot();
        b.args(["--", "true"]);
        booted.push(timed(&mut b, "boot")?);
        let mut r = lvh(d.path());
        r.args(["--from-state", "bench", "--", "true"]);
        restored.push(timed(&mut r, "restore")?);
    }
    let (b, r) = (median(&booted), median(&restored));
    println!("to-command, `true` (TCG, 512M, {RUNS} interleaved rounds, medians):");
    println!("  boot    {:.2} s  {booted:.2?}", b.as_secs_f64());
    println!("  restore {:.2} s  {restored:.2?}", r.as_secs_f64());
    println!(
        "  ratio restore / boot {:.3}",
        r.as_secs_f64() / b.as_secs_f64()
    );
    Ok(())
}
