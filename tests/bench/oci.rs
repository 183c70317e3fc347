//! Pull of a ~1 GiB (uncompressed) root image from a local registry: `lvh images
//! pull` against `skopeo copy` to a directory plus `zstd -d` of the same image,
//! side by side, alternating, best of three each. Budget: ratio <= 1.2.

use std::path::Path;
use std::time::{Duration, Instant};

use lvh::exec::Cmd;
use lvh::progress::NullReporter;

use crate::util::median;

#[path = "../system/oci/registry.rs"]
pub mod registry;

const SIZE: usize = 1 << 30;
const ROUNDS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(600);

fn run_cmd(program: &str, args: &[&str]) -> anyhow::Result<()> {
    Cmd::new(program)
        .args(args)
        .env("CI", "true")
        .timeout(TIMEOUT)
        .run(&NullReporter)?;
    Ok(())
}

fn lvh_pull(reference: &str, out: &Path) -> anyhow::Result<Duration> {
    lvh::fsutil::remove_any(out)?;
    let t = Instant::now();
    run_cmd(
        env!("CARGO_BIN_EXE_lvh"),
        &["images", "pull", reference, "--dir", out.to_str().unwrap()],
    )?;
    Ok(t.elapsed())
}

fn reference_pull(reference: &str, out: &Path) -> anyhow::Result<Duration> {
    lvh::fsutil::remove_any(out)?;
    std::fs::create_dir_all(out)?;
    let t = Instant::now();
    let copy = out.join("copy");
    run_cmd(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("dir:{}", copy.display()),
        ],
    )?;
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(copy.join("manifest.json"))?)?;
    let layer = copy.join(
        m["layers"][0]["digest"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("sha256:"),
    );
    // The layer is a tar around the .zst: stream the member into zstd -d.
    let script = format!(
        "tar -xOf '{}' data/images/bench.qcow2.zst | zstd -q -d -o '{}'",
        layer.display(),
        out.join("bench.qcow2").display()
    );
    run_cmd("sh", &["-c", &script])?;
    Ok(t.elapsed())
}

pub fn run() -> anyhow::Result<()> {
    let reg = registry::Registry::start();
    let work = tempfile::tempdir()?;
    let img = work.path().join("bench.qcow2");
    registry::write_file(&img, &registry::test_bytes(SIZE, 42));
    let reference = reg.reference("bench/root-images", "big");
    run_cmd(
        env!("CARGO_BIN_EXE_lvh"),
        &["images", "push", img.to_str().unwrap(), &reference],
    )?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // Alternate which side goes first, so neither always meets a warmer cache.
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            ours.push(lvh_pull(&reference, &work.path().join("lvh"))?);
            theirs.push(reference_pull(&reference, &work.path().join("ref"))?);
        } else {
            theirs.push(reference_pull(&reference, &work.path().join("ref"))?);
            ours.push(lvh_pull(&reference, &work.path().join("lvh"))?);
        }
    }
    let same = std::fs::read(work.path().join("lvh/images/bench.qcow2"))?
        == std::fs::read(work.path().join("ref/bench.qcow2"))?;
    anyhow::ensure!(same, "lvh and skopeo+zstd produced different images");
    let o = ours.iter().min().copied().unwrap_or_default();
    let r = theirs.iter().min().copied().unwrap_or_default();
    println!(
        "oci pull of a {} MiB image (best of {ROUNDS}): lvh images pull {:.2} s, skopeo copy + zstd -d {:.2} s, ratio {:.2} (budget 1.20)",
        SIZE >> 20,
        o.as_secs_f64(),
        r.as_secs_f64(),
        o.as_secs_f64() / r.as_secs_f64()
    );
    let (om, rm) = (median(&ours), median(&theirs));
    println!(
        "  medians: lvh {:.2} s, reference {:.2} s, ratio {:.2}",
        om.as_secs_f64(),
        rm.as_secs_f64(),
        om.as_secs_f64() / rm.as_secs_f64()
    );
    println!("  all lvh runs: {ours:.2?}; all reference runs: {theirs:.2?}");
    Ok(())
}
