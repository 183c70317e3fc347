//! Boot-to-command: `lvh run --kernel K --image I -- true` against bare QEMU
//! booting the same kernel and image with `init=/bin/true` (stock q35, SeaBIOS,
//! the bzImage; alternating runs, medians; goal 0.5x), `lvh run --fast-boot=false`
//! to show what the PVH / qboot / TSC levers gain, then the same kernel under danobi's vmtest and
//! virtme-ng doing `uname -r`, when they are installed and can boot it.
//!
//! Kernel and image are the system tests' cached fixtures (built on first use)
//! unless `LVH_BENCH_KERNEL` / `LVH_BENCH_IMAGE` name others. Guests use TCG.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::util::{median, secs, timed};

const RUNS: usize = 7;
/// Issue 13's goal: lvh boots to the command in half bare QEMU's time.
const GOAL: f64 = 0.5;

fn inputs() -> anyhow::Result<(PathBuf, PathBuf)> {
    let kernel = match std::env::var_os("LVH_BENCH_KERNEL") {
        Some(k) => PathBuf::from(k),
        None => {
            crate::support::fixtures::kernel::kernel_with_groups(Arch::Amd64, "runner,compat")?
                .image
        }
    };
    let image = match std::env::var_os("LVH_BENCH_IMAGE") {
        Some(i) => PathBuf::from(i),
        None => crate::support::fixtures::image::root_image(Arch::Amd64)?,
    };
    Ok((kernel, image))
}

/// Bare QEMU: same machine, CPU, memory, kernel and disk; no lvh devices.
/// `extra` is appended to the kernel command line.
fn bare_qemu(kernel: &Path, image: &Path, extra: &str) -> Command {
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
    .arg("-append")
    .arg(format!(
        "root=/dev/vda rw console=ttyS0 panic=-1 init=/bin/true{extra}"
    ));
    c
}

fn lvh_run(kernel: &Path, image: &Path, fast_boot: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.arg("run")
        .arg(format!("--fast-boot={fast_boot}"))
        .arg("--kernel")
        .arg(kernel)
        .arg("--image")
        .arg(image)
        .args(["--accel", "tcg", "--mem", "512M", "--", "true"]);
    c
}

/// Runs `c` to completion, returning its wall time; fails on a bad exit.
fn compare_with_bare_qemu(kernel: &Path, image: &Path) -> anyhow::Result<()> {
    // lvh skips the PS/2 probe and the IO-APIC timer check on amd64 (see `runner::qemu::base_cmdline`);
    // the third variant gives bare QEMU the same parameters, so the cost of
    // lvh's own machinery (devices, guest script, supervision) shows apart.
    const LVH_PARAMS: &str = " i8042.noaux i8042.nokbd no_timer_check";
    type Variant<'a> = (&'a str, Box<dyn Fn() -> Command + 'a>, Vec<Duration>);
    let mut variants: [Variant; 4] = [
        (
            "lvh run -- true",
            Box::new(|| lvh_run(kernel, image, true)),
            vec![],
        ),
        (
            "bare qemu init=/bin/true",
            Box::new(|| bare_qemu(kernel, image, "")),
            vec![],
        ),
        (
            "bare qemu init=/bin/true + lvh's i8042 parameters",
            Box::new(|| bare_qemu(kernel, image, LVH_PARAMS)),
            vec![],
        ),
        (
            "lvh run --fast-boot=false -- true",
            Box::new(|| lvh_run(kernel, image, false)),
            vec![],
        ),
    ];
    // One unmeasured run each to warm the page cache, then interleaved rounds
    // so that drift in the machine's speed hits every variant alike.
    for (name, make, _) in &variants {
        timed(&mut make(), name)?;
    }
    for _ in 0..RUNS {
        for (name, make, times) in variants.iter_mut() {
            times.push(timed(&mut make(), name)?);
        }
    }
    let medians: Vec<Duration> = variants.iter().map(|v| median(&v.2)).collect();
    println!("boot-to-command (TCG, {RUNS} interleaved rounds, medians):");
    for ((name, _, times), m) in variants.iter().zip(&medians) {
        println!(
            "  {name}: {} ({})",
            secs(*m),
            times
                .iter()
                .map(|d| secs(*d))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let ratio = medians[0].as_secs_f64() / medians[1].as_secs_f64();
    let machinery = medians[3].as_secs_f64() / medians[2].as_secs_f64();
    let levers = medians[0].as_secs_f64() / medians[3].as_secs_f64();
    println!("  x86 ratio lvh / bare {ratio:.3} (goal {GOAL})");
    println!(
        "  fast boot / --fast-boot=false {levers:.3}; --fast-boot=false / bare with lvh's i8042 parameters {machinery:.3}"
    );
    if ratio > GOAL {
        println!("  OVER THE GOAL: lvh took {ratio:.3}x bare QEMU");
    }
    Ok(())
}

/// How long a reference tool may take before the bench stops it.
const REFERENCE_TIMEOUT: Duration = Duration::from_secs(120);

/// A reference tool's run of `uname -r`: when it printed the release, when it
/// exited (or that it had to be stopped), or why it could not run at all.
fn reference(name: &str, install: &str, mut c: Command, release: &str) {
    let program = c.get_program().to_string_lossy().into_owned();
    if lvh::exec::which(&program).is_none() {
        println!(
            "{name}: not installed ({program} not in PATH); install with `{install}` to compare"
        );
        return;
    }
    let t = Instant::now();
    let mut child = match c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
    {
        Ok(ch) => ch,
        Err(e) => {
            println!("{name}: could not start {program}: {e}");
            return;
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("piped");
    let want = release.to_string();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if line.trim() == want {
                let _ = tx.send(Instant::now());
            }
        }
    });
    let err = child.stderr.take().expect("piped");
    let err_tail = std::thread::spawn(move || {
        use std::io::Read;
        let mut s = String::new();
        let _ = std::io::BufReader::new(err).read_to_string(&mut s);
        s.lines()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ")
    });
    let deadline = t + REFERENCE_TIMEOUT;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            // The whole group: the tool and its QEMU.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let total = t.elapsed();
    let printed = rx.try_recv().ok().map(|at| at - t);
    match (status, printed) {
        (Some(st), Some(p)) if st.success() => println!(
            "{name} `uname -r`: {} (release printed after {})",
            secs(total),
            secs(p)
        ),
        (None, Some(p)) => println!(
            "{name} `uname -r`: printed the release after {} but did not exit; stopped after {}",
            secs(p),
            secs(total)
        ),
        (st, _) => println!(
            "{name} `uname -r`: could not run it ({}, after {}): {}",
            st.map(|s| s.to_string())
                .unwrap_or_else(|| "timed out".into()),
            secs(total),
            err_tail.join().unwrap_or_default()
        ),
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
    let release = match c.output() {
        Ok(o) if o.status.success() => {
            let r = String::from_utf8_lossy(&o.stdout).trim().to_string();
            println!("lvh `uname -r`: {} (printed {r:?})", secs(t.elapsed()));
            r
        }
        Ok(o) => {
            println!("lvh `uname -r`: failed ({})", o.status);
            return;
        }
        Err(e) => {
            println!("lvh `uname -r`: {e}");
            return;
        }
    };

    // vmtest asks QEMU for KVM, which hangs guests on our machines: give it a
    // QEMU wrapper that swaps in TCG. It needs qemu-guest-agent on the host
    // (its guest root is the host's /).
    let wrap_dir = tempfile::tempdir().expect("temp dir");
    let wrapper = wrap_dir.path().join("qemu-tcg");
    let script = r#"#!/bin/bash
args=()
skip=0
for a in "$@"; do
	if [ "$skip" = 1 ]; then skip=0; continue; fi
	case "$a" in
	-enable-kvm | --enable-kvm) ;;
	-cpu | -accel) skip=1 ;;
	*) args+=("$a") ;;
	esac
done
exec qemu-system-x86_64 "${args[@]}" -accel tcg -cpu max
"#;
    std::fs::write(&wrapper, script).expect("write wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut vmtest = Command::new("vmtest");
    vmtest
        .env("VMTEST_NO_UI", "1")
        .arg("--kernel")
        .arg(kernel)
        .arg("--qemu-command")
        .arg(&wrapper)
        .arg("uname -r");
    reference("vmtest", "cargo install vmtest", vmtest, &release);

    // virtme-ng, like vmtest, with the host's root (its usual mode) ...
    let mut vng = Command::new("vng");
    vng.arg("--run")
        .arg(kernel)
        .args(["--disable-kvm", "--memory", "512M", "--exec", "uname -r"]);
    reference("virtme-ng", "pip install virtme-ng", vng, &release);
    // ... and booting the same root image as lvh over virtio-blk. Its init
    // finds its I/O ports through udev's /dev/virtio-ports links, so in an
    // image without udev the output only reaches the console.
    let mut vng = Command::new("vng");
    vng.arg("--run")
        .arg(kernel)
        .arg("--root-disk")
        .arg(image)
        .args(["--disable-kvm", "--memory", "512M", "--exec", "uname -r"]);
    reference(
        "virtme-ng --root-disk",
        "pip install virtme-ng",
        vng,
        &release,
    );
}

pub fn run() -> anyhow::Result<()> {
    let (kernel, image) = inputs()?;
    println!("kernel {}, image {}", kernel.display(), image.display());
    compare_with_bare_qemu(&kernel, &image)?;
    compare_with_references(&kernel, &image);
    Ok(())
}
