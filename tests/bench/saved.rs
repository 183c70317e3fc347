//! Restore-to-command against boot-to-command under TCG, interleaved rounds,
//! medians, the ratio printed:
//!
//! - **command mode** (`--kernel`, lvh's init): `lvh run --from-state S -- true`
//!   (a VM saved after `--save-state S -- true`) against `lvh run --kernel K
//!   --image I -- true`, with `LVH_BENCH_KERNEL` / `LVH_BENCH_IMAGE` (e.g. the
//!   `make demo` kernel and image), else the system tests' fixtures; then two
//!   restores of the state at once, which must both pass;
//! - **bootable systemd image** (no `--kernel`; the ssh fixture's `boot.qcow2`,
//!   or `LVH_BENCH_BOOTABLE`): `lvh run --from-state B -- true` (over ssh)
//!   against what the same command costs without a state: boot with
//!   `--daemonize -p P:22 --wait-ssh --ssh-key`, `ssh root@ true`, stop QEMU.
//!   It runs first (each of its boots takes one to two minutes under TCG);
//!   `LVH_BENCH_SAVED_BOOTABLE=0` skips it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::support::{daemon_pid, free_port, ssh_root, terminate};
use crate::util::{inputs, median, timed};

const RUNS: usize = 5;
/// Rounds with the bootable image (its boots are slow).
const BOOTABLE_RUNS: usize = 3;

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

fn report(what: &str, booted: &[Duration], restored: &[Duration]) {
    let (b, r) = (median(booted), median(restored));
    println!(
        "{what} to-command, `true` (TCG, {} interleaved rounds, medians):",
        booted.len()
    );
    println!("  boot    {:.2} s  {booted:.2?}", b.as_secs_f64());
    println!("  restore {:.2} s  {restored:.2?}", r.as_secs_f64());
    println!(
        "  ratio restore / boot {:.3}",
        r.as_secs_f64() / b.as_secs_f64()
    );
}

/// The space a file takes on disk (a sparse file's allocated blocks).
fn on_disk(p: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(p)?.blocks() * 512)
}

/// Saves `name` with `save` and prints how long it took and the state's sizes.
fn save(mut save: Command, dir: &Path, name: &str) -> anyhow::Result<()> {
    let saved = timed(&mut save, "save")?;
    let state = dir.join("states").join(name);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "saving {name} (boot + `true` + save): {:.2} s, RAM file {:.1} MiB on disk, device state {:.2} MiB",
        saved.as_secs_f64(),
        mib(on_disk(&state.join("ram"))?),
        mib(std::fs::metadata(state.join("devices"))?.len()),
    );
    Ok(())
}

/// Two restores of one state at once: both must pass; prints how long the
/// pair took.
fn concurrent(restore: impl Fn() -> Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let children: Vec<_> = (0..2)
        .map(|_| restore().stdin(Stdio::null()).spawn())
        .collect::<Result<_, _>>()?;
    for c in children {
        let o = c.wait_with_output()?;
        anyhow::ensure!(
            o.status.success(),
            "a concurrent restore failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(t.elapsed())
}

pub fn run() -> anyhow::Result<()> {
    if std::env::var("LVH_BENCH_SAVED_BOOTABLE").as_deref() != Ok("0") {
        bootable()?;
    }
    command_mode()
}

fn command_mode() -> anyhow::Result<()> {
    let (kernel, image) = inputs(Arch::Amd64, "LVH_BENCH_KERNEL", "LVH_BENCH_IMAGE")?;
    println!("kernel {}, image {}", kernel.display(), image.display());
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
    let mut s = boot();
    s.args(["--save-state", "bench", "--", "true"]);
    save(s, d.path(), "bench")?;
    let (mut booted, mut restored) = (vec![], vec![]);
    for _ in 0..RUNS {
        let mut b = boot();
        b.args(["--", "true"]);
        booted.push(timed(&mut b, "boot")?);
        let mut r = lvh(d.path());
        r.args(["--from-state", "bench", "--", "true"]);
        restored.push(timed(&mut r, "restore")?);
    }
    report("command mode (--kernel, 512M)", &booted, &restored);
    let both = concurrent(|| {
        let mut r = lvh(d.path());
        r.args(["--from-state", "bench", "--", "true"]);
        r
    })?;
    println!(
        "  two concurrent restores of the state: both passed, {:.2} s for the pair",
        both.as_secs_f64()
    );
    Ok(())
}

/// One boot of the bootable image to a command without a state: boot until
/// ssh answers, run `true` over ssh, stop QEMU.
fn boot_over_ssh(image: &Path, key: &Path) -> anyhow::Result<Duration> {
    let port = free_port();
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_lvh"))
        .arg("run")
        .arg("--image")
        .arg(image)
        .args(["--daemonize", "-p", &format!("{port}:22"), "--wait-ssh"])
        .args(["--ssh-timeout", "900", "--mem", "1G", "--ssh-key"])
        .arg(key.with_extension("pub"))
        .env("LVH_ACCEL", "tcg")
        .env("CI", "true")
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "booting {} failed: {}",
        image.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let pid = daemon_pid(&String::from_utf8_lossy(&o.stderr));
    let ssh = ssh_root(key, port, "true");
    let took = t.elapsed();
    terminate(pid)?;
    anyhow::ensure!(
        ssh.status.success(),
        "ssh true failed: {}",
        String::from_utf8_lossy(&ssh.stderr)
    );
    // The next round starts once this QEMU is gone.
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    for _ in 0..100 {
        if !proc.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(took)
}

fn bootable() -> anyhow::Result<()> {
    let image = match std::env::var_os("LVH_BENCH_BOOTABLE") {
        Some(i) => i.into(),
        None => crate::support::fixtures::image::ssh_image()?
            .image
            .with_file_name("boot.qcow2"),
    };
    println!("bootable image {}", image.display());
    let d = tempfile::tempdir()?;
    let key = d.path().join("key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()?;
    anyhow::ensure!(st.success(), "ssh-keygen failed: {st}");
    let mut s = lvh(d.path());
    s.arg("--image")
        .arg(&image)
        .args(["--mem", "1G", "--ssh-timeout", "900"])
        .args(["--save-state", "boot", "--", "true"]);
    save(s, d.path(), "boot")?;
    let (mut booted, mut restored) = (vec![], vec![]);
    for _ in 0..BOOTABLE_RUNS {
        booted.push(boot_over_ssh(&image, &key)?);
        let mut r = lvh(d.path());
        r.args(["--from-state", "boot", "--", "true"]);
        restored.push(timed(&mut r, "restore")?);
    }
    report("bootable systemd image (ssh, 1G)", &booted, &restored);
    Ok(())
}
