//! Helpers shared by the benches.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

/// The median of some timings (the upper one of the two middle values).
pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// A duration as the benches print it.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Runs `c` (stdin closed) and times it; a failure names `what` and shows its output.
pub fn timed(c: &mut Command, what: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = c.stdin(Stdio::null()).output()?;
    let d = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(d)
}

/// The kernel and image to boot: `kernel_var` / `image_var` when set, else the
/// system tests' cached fixtures for `arch`.
pub fn inputs(arch: Arch, kernel_var: &str, image_var: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let kernel = match std::env::var_os(kernel_var) {
        Some(k) => PathBuf::from(k),
        None => crate::support::fixtures::kernel::kernel(arch)?.image,
    };
    let image = match std::env::var_os(image_var) {
        Some(i) => PathBuf::from(i),
        None => crate::support::fixtures::image::root_image(arch)?,
    };
    Ok((kernel, image))
}
