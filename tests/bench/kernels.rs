//! `lvh kernels` budgets, on the cached amd64 kernel fixture:
//! - `kernels build` with nothing changed against make's own no-op time
//!   (target: at most make's time + 2 s);
//! - `kernels fetch` of an already fetched kernel with no new commits against
//!   `git fetch` of the same remote (target: under 1 s).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lvh::arch::Arch;

use crate::support::fixtures;

use crate::util::median;

const RUNS: usize = 3;

fn time(cmd: &mut Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(t.elapsed())
}

fn side_by_side(what: &str, ours: Duration, theirs: Duration, reference: &str) {
    println!(
        "{what}: lvh median {:.2} s, {reference} median {:.2} s, ratio {:.2}, difference {:+.2} s",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        ours.as_secs_f64() / theirs.as_secs_f64().max(1e-9),
        ours.as_secs_f64() - theirs.as_secs_f64()
    );
}

pub fn run() -> anyhow::Result<()> {
    let k = fixtures::kernel::kernel(Arch::Amd64)?;
    let lvh = env!("CARGO_BIN_EXE_lvh");
    let dir = k.dir.to_str().context("utf-8")?;
    let tree = k.dir.join("kernels").join(&k.name);
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Warm both before measuring. The first make in a freshly cached fixture is
    // not a no-op (observed: Kbuild rebuilds after the fixture directory was
    // renamed into place), so this first build may take minutes.
    time(
        Command::new(lvh)
            .args(["kernels", "build", &k.name, "--dir", dir])
            .env("CI", "1"),
    )?;
    let (mut ours, mut make) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        make.push(time(Command::new("make").current_dir(&tree).args([
            "ARCH=x86_64",
            &format!("-j{jobs}"),
            "bzImage",
        ]))?);
        ours.push(time(
            Command::new(lvh)
                .args(["kernels", "build", &k.name, "--dir", dir])
                .env("CI", "1"),
        )?);
    }
    side_by_side(
        "kernels build, nothing changed",
        median(&ours),
        median(&make),
        "make no-op",
    );

    let git_dir = k.dir.join("kernels/git");
    let (mut ours, mut git) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        git.push(time(
            Command::new("git")
                .arg("-C")
                .arg(&git_dir)
                .args(["fetch", "-q", &k.name]),
        )?);
        ours.push(time(
            Command::new(lvh)
                .args(["kernels", "fetch", &k.name, "--dir", dir])
                .env("CI", "1"),
        )?);
    }
    side_by_side(
        "kernels fetch, no new commits",
        median(&ours),
        median(&git),
        "git fetch",
    );
    Ok(())
}
