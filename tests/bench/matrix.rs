//! `lvh test` against the same tests run one `lvh run` after another: 8
//! `-- true` tests × 1 kernel × 1 image with `--jobs 2` (goal: at most 0.6×
//! the sequential time), and with `--jobs 1` for the per-test overhead of the
//! matrix over a single `lvh run` (goal: at most 5%). Interleaved rounds,
//! medians, same machine and run. Guests use TCG, 1 vCPU and 1G each (the
//! matrix's defaults, given to `lvh run` too).
//!
//! Kernel and image are the system tests' fixtures unless `LVH_BENCH_KERNEL` /
//! `LVH_BENCH_IMAGE` name others.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lvh::arch::Arch;

use crate::util::{inputs as bench_inputs, median, timed};

const TESTS: usize = 8;
const ROUNDS: usize = 3;

fn lvh_run(kernel: &Path, image: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--image")
        .arg(image)
        .args(["--cpu", "1", "--mem", "1G", "--", "true"]);
    c
}

fn lvh_test(dir: &Path, jobs: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.current_dir(dir)
        .args(["test", "--jobs", &jobs.to_string()]);
    c
}

fn s(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn run() -> anyhow::Result<()> {
    let (kernel, image) = bench_inputs(Arch::Amd64, "LVH_BENCH_KERNEL", "LVH_BENCH_IMAGE")?;
    let dir = tempfile::tempdir()?;
    let tests: Vec<String> = (0..TESTS)
        .map(|i| format!(r#"{{"name": "t{i}", "command": ["true"]}}"#))
        .collect();
    let text = format!(
        r#"{{"kernels": [{{"name": "k", "path": {}}}], "images": [{{"name": "i", "path": {}}}], "tests": [{}]}}"#,
        serde_json::to_string(&kernel)?,
        serde_json::to_string(&image)?,
        tests.join(", ")
    );
    std::fs::write(dir.path().join("lvh-tests.json"), text)?;
    // Warm the page cache once each.
    timed(lvh_run(&kernel, &image).env("LVH_ACCEL", "tcg"), "lvh run")?;
    timed(lvh_test(dir.path(), 2).env("LVH_ACCEL", "tcg"), "lvh test")?;
    let (mut seq, mut single, mut j2, mut j1) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let mut total = Duration::ZERO;
        for _ in 0..TESTS {
            let d = timed(lvh_run(&kernel, &image).env("LVH_ACCEL", "tcg"), "lvh run")?;
            single.push(d);
            total += d;
        }
        seq.push(total);
        j2.push(timed(
            lvh_test(dir.path(), 2).env("LVH_ACCEL", "tcg"),
            "lvh test --jobs 2",
        )?);
        j1.push(timed(
            lvh_test(dir.path(), 1).env("LVH_ACCEL", "tcg"),
            "lvh test --jobs 1",
        )?);
    }
    let (seq, single, j2, j1) = (median(&seq), median(&single), median(&j2), median(&j1));
    println!("matrix: {TESTS} `true` tests x 1 kernel x 1 image (TCG, {ROUNDS} interleaved rounds, medians):");
    println!("  {TESTS} x lvh run, one after another: {}", s(seq));
    println!("  lvh test --jobs 2: {}", s(j2));
    println!("  lvh test --jobs 1: {}", s(j1));
    let ratio = j2.as_secs_f64() / seq.as_secs_f64();
    println!("  ratio lvh test --jobs 2 / sequential lvh run: {ratio:.3} (goal <= 0.6)");
    let per_test = j1.as_secs_f64() / TESTS as f64;
    let overhead = per_test / single.as_secs_f64() - 1.0;
    println!(
        "  per-test time with --jobs 1: {:.2} s vs one lvh run {}: overhead {:+.1}% (goal <= 5%)",
        per_test,
        s(single),
        overhead * 100.0
    );
    if ratio > 0.6 || overhead > 0.05 {
        println!("  OVER BUDGET");
    }
    Ok(())
}
