//! The host mount over virtiofs against 9p against the host itself, on the
//! system tests' 6.12 kernel tree (about 86,000 files), interleaved rounds,
//! medians, ratios printed: in the guest (TCG, timed inside the guest so the
//! boot is not counted), `find . -type f | wc -l` over the whole tree, then
//! `cat` of every file under `arch/x86/kernel`; on the host, the same two
//! commands on the same copy. Then a real BPF test binary run from the
//! mount, as in the edit-test loop: the kernel's `test_verifier` (built from
//! the same tree, see `fixtures::bpf_selftests`), once for its first test
//! only (mostly loading the binary, 20 MB with its debug information, from
//! the mount) and once whole (mostly the guest kernel's verifier: the mount
//! matters little there).
//!
//! The tree is copied (without `.git`) to a directory owned by `nobody`:
//! when lvh runs as root it runs virtiofsd as the shared directory's owner
//! and serves a root-owned directory over 9p. `LVH_BENCH_KERNEL` /
//! `LVH_BENCH_IMAGE` choose the kernel and image (the fixtures otherwise).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::support::fixtures::bpf_selftests::{SELFTESTS_BPF, TEST_VERIFIER};
use crate::util::{inputs, median};

const ROUNDS: usize = 3;
/// The guest's two measurements, in nanoseconds, and the file count.
const GUEST: &str = "t0=$(date +%s%N); n=$(find . -type f | wc -l); t1=$(date +%s%N)
find arch/x86/kernel -type f -exec cat {} + | wc -c >/dev/null; t2=$(date +%s%N)
mount | grep ' /host ' | cut -d' ' -f5
echo $n $((t1 - t0)) $((t2 - t1))";
/// `test_verifier` from the mount: its first test alone, then all of them
/// (times in nanoseconds), then its summary. It exits non-zero when a test
/// fails, as some do on the small fixture kernel.
const BPF: &str = "cd tools/testing/selftests/bpf
t0=$(date +%s%N); ./test_verifier 0 >/dev/null 2>&1; t1=$(date +%s%N)
s=$(./test_verifier 2>&1 | grep '^Summary:'); t2=$(date +%s%N)
mount | grep ' /host ' | cut -d' ' -f5
echo $((t1 - t0)) $((t2 - t1))
echo \"$s\"";

/// Runs `script` in the guest over `fs` and returns its output after the
/// first line, which must name the file system the guest mounted.
fn guest_lines(
    kernel: &Path,
    image: &Path,
    tree: &Path,
    fs: &str,
    script: &str,
) -> anyhow::Result<Vec<String>> {
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
            script,
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
    let mut lines = out.lines().map(String::from);
    let got = lines.next().unwrap_or_default();
    anyhow::ensure!(got == fs, "asked for {fs}, the guest mounted {got:?}");
    Ok(lines.collect())
}

/// The numbers of `line`, which must be `n` of them.
fn numbers(line: &str, n: usize) -> anyhow::Result<Vec<u64>> {
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    anyhow::ensure!(v.len() == n, "unexpected guest output: {line:?}");
    Ok(v)
}

/// One guest run over `fs`: (file count, find, cat).
fn guest(
    kernel: &Path,
    image: &Path,
    tree: &Path,
    fs: &str,
) -> anyhow::Result<(u64, Duration, Duration)> {
    let lines = guest_lines(kernel, image, tree, fs, GUEST)?;
    let v = numbers(lines.first().map_or("", |l| l.as_str()), 3)?;
    Ok((v[0], Duration::from_nanos(v[1]), Duration::from_nanos(v[2])))
}

/// One run of `test_verifier` from the mount over `fs`: (first start,
/// whole run, its summary line).
fn bpf(
    kernel: &Path,
    image: &Path,
    tree: &Path,
    fs: &str,
) -> anyhow::Result<(Duration, Duration, String)> {
    let lines = guest_lines(kernel, image, tree, fs, BPF)?;
    let v = numbers(lines.first().map_or("", |l| l.as_str()), 2)?;
    let summary = lines.get(1).cloned().unwrap_or_default();
    anyhow::ensure!(
        summary.starts_with("Summary: "),
        "test_verifier over {fs} did not finish: {lines:?}"
    );
    Ok((
        Duration::from_nanos(v[0]),
        Duration::from_nanos(v[1]),
        summary,
    ))
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

fn guest_line(what: &str, nine: Duration, vfs: Duration) {
    let s = |d: Duration| d.as_secs_f64();
    println!(
        "  {what:<28}                9p {:>7.2} s   virtiofs {:>7.2} s   virtiofs/9p {:.3}",
        s(nine),
        s(vfs),
        s(vfs) / s(nine)
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
    let tv = crate::support::fixtures::bpf_selftests::test_verifier()?;
    std::fs::copy(&tv, tree.join(SELFTESTS_BPF).join(TEST_VERIFIER))?;
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(d.path())
        .status()?;
    anyhow::ensure!(st.success(), "chown the copy to nobody");
    println!(
        "kernel {}, image {}; tree {} and {} copied in {:.1} s",
        kernel.display(),
        image.display(),
        src.display(),
        tv.display(),
        t.elapsed().as_secs_f64()
    );
    let (mut h, mut n, mut v) = (vec![], vec![], vec![]);
    let (mut bn, mut bv) = (vec![], vec![]);
    let mut summaries = (String::new(), String::new());
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
        let (s9, a9, r9) = bpf(&kernel, &image, &tree, "9p")?;
        let (sv, av, rv) = bpf(&kernel, &image, &tree, "virtiofs")?;
        bn.push((s9, a9));
        bv.push((sv, av));
        println!(
            "round {round}: test_verifier first start 9p {:.2} s, virtiofs {:.2} s; all 9p {:.2} s, virtiofs {:.2} s",
            s9.as_secs_f64(),
            sv.as_secs_f64(),
            a9.as_secs_f64(),
            av.as_secs_f64()
        );
        summaries = (r9, rv);
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
    println!("test_verifier from the host mount (same rounds):");
    guest_line("first start (its test 0)", m(&bn, 0), m(&bv, 0));
    guest_line("all tests", m(&bn, 1), m(&bv, 1));
    println!("  last round: 9p {}; virtiofs {}", summaries.0, summaries.1);
    Ok(())
}
