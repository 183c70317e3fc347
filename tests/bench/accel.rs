//! What `--accel auto` (the default) costs over `--accel tcg` on a host whose
//! KVM cannot run a guest: `lvh run -- true` with no accelerator chosen, once
//! with the KVM probe's verdict cached (every run after the first in a host
//! boot) and once with an empty cache (the probe runs), against `--accel tcg`;
//! interleaved rounds, medians, the differences against the 1 s budget.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lvh::arch::Arch;

use crate::util::{median, secs, timed};

const RUNS: usize = 5;
const BUDGET: Duration = Duration::from_secs(1);

fn lvh(kernel: &Path, image: &Path, accel: Option<&str>, runtime_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--image")
        .arg(image)
        .args(["--mem", "512M"])
        .args(accel.map(|a| format!("--accel={a}")))
        .args(["--", "true"])
        .env_remove("LVH_ACCEL")
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .stdin(Stdio::null());
    c
}

pub fn run() -> anyhow::Result<()> {
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64)?.image;
    let image: PathBuf = crate::support::fixtures::image::root_image(Arch::Amd64)?;
    let cached = tempfile::tempdir()?;
    let (mut tcg, mut auto_cached, mut auto_fresh) = (vec![], vec![], vec![]);
    // Warm-up; also leaves the probe's verdict in `cached`.
    timed(
        &mut lvh(&kernel, &image, None, cached.path()),
        "lvh run (auto)",
    )?;
    for _ in 0..RUNS {
        tcg.push(timed(
            &mut lvh(&kernel, &image, Some("tcg"), cached.path()),
            "lvh run --accel tcg",
        )?);
        auto_cached.push(timed(
            &mut lvh(&kernel, &image, None, cached.path()),
            "lvh run (auto, cached)",
        )?);
        let fresh = tempfile::tempdir()?;
        auto_fresh.push(timed(
            &mut lvh(&kernel, &image, None, fresh.path()),
            "lvh run (auto, fresh probe)",
        )?);
    }
    println!("accel auto vs tcg, `lvh run -- true` ({RUNS} interleaved rounds, medians):");
    let (t, c, f) = (median(&tcg), median(&auto_cached), median(&auto_fresh));
    for (name, m, all) in [
        ("--accel tcg", t, &tcg),
        ("auto, probe verdict cached", c, &auto_cached),
        ("auto, probe runs", f, &auto_fresh),
    ] {
        let all: Vec<String> = all.iter().map(|d| secs(*d)).collect();
        println!("  {name}: {} ({})", secs(m), all.join(", "));
    }
    for (name, m) in [("cached", c), ("probe runs", f)] {
        let extra = m.as_secs_f64() - t.as_secs_f64();
        println!(
            "  auto ({name}) - tcg: {extra:+.2} s (budget +{} s){}",
            BUDGET.as_secs(),
            if extra > BUDGET.as_secs_f64() {
                "  OVER BUDGET"
            } else {
                ""
            }
        );
    }
    Ok(())
}
