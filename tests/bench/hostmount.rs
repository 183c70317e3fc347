//! The host mount over virtiofs against 9p against the host itself, on the
//! system tests' 6.12 kernel tree (about 86,000 files), interleaved rounds,
//! medians, ratios printed: in the guest (TCG, timed inside the guest so the
//! boot is not counted), `find . -type f | wc -l` over the whole tree, then
//! `cat` of every file under `arch/x86/kernel`; on the host, the same two
//! commands on the same copy.
//!
//! The tree is copied (without `.git`) to a directory owned by `nobody`:
//! when lvh runs as root it runs virtiofsd as the shared directory's owner
//! and serves a root-owned directory over 9p. `LVH_BENCH_KERNEL` /
//! `LVH_BENCH_IMAGE` choose the kernel and image (the fixtures otherwise).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::util::{inputs, median};

const ROUNDS: usize = 3;
/// The guest's two measurements, in nanoseconds, and the file count.
const GUEST: &str = "t0=$(date +%s%N); n=$(find . -type f | wc -l); t1=$(date +%s%N)
find arch/x86/kernel -type f -exec cat {} + | wc -c >/dev/null; t2=$(date +%s%N)
mount | grep ' /host ' | cut -d' ' -f5
echo $n $((t1 - t0)) $((t2 - t1))";

/// One guest run over `fs`: (file count, find, cat).
fn guest(
    kernel: &Path,
    image: &Path,
    tree: &Path,
    fs: &str,
) -> anyhow::Result<(u64, Duration, Duration)> {
    let o = Command::new(env!("CARGO_BIN_EXE_lvh"))
        .arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--image")
        .arg(image)
        .args(["--mem", "1G", "--cpu", "2", "--host-mount"])
        .arg(tree)
        .args([
            "--host-mount-fs",
            fs,
            "--timeout",
            "30m",
            "--",
            "sh",
            "-c",
            GUEST,
        ])
        .env("LVH_ACCEL", "tcg")
        .env("CI", "true")
        .stdin(Stdio::null())
        .output()?;
    let out = String::from_utf8_lossy(&o.stdout);
    anyhow::ensure!(
        o.status.success(),
        "guest over {fs} failed ({}):\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let mut lines = out.lines();
    let got = lines.next().unwrap_or("");
    anyhow::ensure!(got == fs, "asked for {fs}, the guest mounted {got:?}");
    let v: Vec<u64> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    anyhow::ensure!(v.len() == 3, "unexpected guest output: {out}");
    Ok((v[0], Duration::from_nanos(v[1]), Duration::from_nanos(v[2])))
}

/// The same two commands on the host.
fn host(tree: &Path) -> anyhow::Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let st = Command::new("sh")
        .args(["-c", "find . -type f | wc -l >/dev/null"])
        .current_dir(tree)
        .status()?;
    let t1 = Instant::now();
    let st2 = Command::new("sh")
        .args([
            "-c",
            "find arch/x86/kernel -type f -exec cat {} + | wc -c >/dev/null",
        ])
        .current_dir(tree)
        .status()?;
    anyhow::ensure!(st.success() && st2.success(), "host commands failed");
    Ok((t1 - t0, t1.elapsed()))
}

fn line(what: &str, host: Duration, nine: Duration, vfs: Duration) {
    let s = |d: Duration| d.as_secs_f64();
    println!(
        "  {what:<28} host {:>7.3} s   9p {:>7.2} s   virtiofs {:>7.2} s   virtiofs/9p {:.3}   virtiofs/host {:.1}x",
        s(host),
        s(nine),
        s(vfs),
        s(vfs) / s(nine),
        s(vfs) / s(host)
    );
}

pub fn run() -> anyhow::Result<()> {
    let (kernel, image) = inputs(Arch::Amd64, "LVH_BENCH_KERNEL", "LVH_BENCH_IMAGE")?;
    let src = crate::support::fixtures::kernel::source_repo()?;
    let d = tempfile::Builder::new()
        .prefix("lvh-bench-hostmount")
        .tempdir_in("/tmp")?;
    let tree = d.path().join("linux");
    let t = Instant::now();
    let st = Command::new("rsync")
        .args(["-a", "--exclude=.git"])
        .arg(format!("{}/", src.display()))
        .arg(&tree)
        .status()?;
    anyhow::ensure!(st.success(), "copy the kernel tree");
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(d.path())
        .status()?;
    anyhow::ensure!(st.success(), "chown the copy to nobody");
    println!(
        "kernel {}, image {}; tree {} copied in {:.1} s",
        kernel.display(),
        image.display(),
        src.display(),
        t.elapsed().as_secs_f64()
    );
    let (mut h, mut n, mut v) = (vec![], vec![], vec![]);
    let mut count = 0;
    for round in 0..ROUNDS {
        let (c9, f9, k9) = guest(&kernel, &image, &tree, "9p")?;
        let (cv, fv, kv) = guest(&kernel, &image, &tree, "virtiofs")?;
        anyhow::ensure!(c9 == cv, "9p counted {c9} files, virtiofs {cv}");
        count = cv;
        h.push(host(&tree)?);
        n.push((f9, k9));
        v.push((fv, kv));
        println!(
            "round {round}: find 9p {:.2} s, virtiofs {:.2} s; cat 9p {:.2} s, virtiofs {:.2} s",
            f9.as_secs_f64(),
            fv.as_secs_f64(),
            k9.as_secs_f64(),
            kv.as_secs_f64()
        );
    }
    let m = |v: &[(Duration, Duration)], i: usize| {
        median(
            &v.iter()
                .map(|x| if i == 0 { x.0 } else { x.1 })
                .collect::<Vec<_>>(),
        )
    };
    println!(
        "host mount, kernel tree of {count} files (TCG, 1G, 2 vCPUs, {ROUNDS} interleaved rounds, medians, timed inside the guest):"
    );
    line("find . -type f | wc -l", m(&h, 0), m(&n, 0), m(&v, 0));
    line("cat arch/x86/kernel (all)", m(&h, 1), m(&n, 1), m(&v, 1));
    Ok(())
}
