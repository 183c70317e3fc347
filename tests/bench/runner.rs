//! Boot-to-command: `lvh run --kernel K --image I -- true` against bare QEMU
//! booting the same kernel and image with `init=/bin/true` (alternating runs,
//! medians; budget 1.15x), then the same kernel under danobi's vmtest and
//! virtme-ng doing `uname -r`, when they are installed and can boot it.
//!
//! Kernel and image are the system tests' cached fixtures (built on first use)
//! unless `LVH_BENCH_KERNEL` / `LVH_BENCH_IMAGE` name others. Guests use TCG.

use std::os::unix::process::CommandExt;
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

    // virtme-ng boots the same root image over virtio-blk.
    let mut vng = Command::new("vng");
    vng.arg("--run")
        .arg(kernel)
        .arg("--root-disk")
        .arg(image)
        .args(["--disable-kvm", "--memory", "512M", "--exec", "uname -r"]);
    reference("virtme-ng", "pip install virtme-ng", vng, &release);
}

pub fn run() -> anyhow::Result<()> {
    let (kernel, image) = inputs()?;
    println!("kernel {}, image {}", kernel.display(), image.display());
    compare_with_bare_qemu(&kernel, &image)?;
    compare_with_references(&kernel, &image);
    Ok(())
}
