//! `lvh triage` symbolization budget: a 20-frame trace against a 6.12
//! vmlinux with DEBUG_INFO in under 1 s, end to end (a fresh process that
//! reads the symbol table and the DWARF it needs), side by side with the
//! kernel's own `scripts/decode_stacktrace.sh` (binutils' `nm` and
//! `addr2line` per frame) on the same trace. The frames are 20 functions
//! spread over the whole kernel, so each one is in another compilation unit
//! (the worst case for a DWARF reader that parses units as it needs them).
//! `LVH_BENCH_VMLINUX` (with `LVH_BENCH_TREE`, its source tree) measures
//! another vmlinux, e.g. a distribution kernel's; the default is the
//! system tests' debug fixture kernel.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use lvh::arch::Arch;
use object::{Object, ObjectSymbol, SymbolKind};

use crate::util::{median, secs};

const FRAMES: usize = 20;
const RUNS: usize = 5;
const BUDGET: Duration = Duration::from_secs(1);

/// A WARNING report whose call trace has `FRAMES` functions of `vmlinux`,
/// picked evenly over its text symbols.
fn trace(vmlinux: &Path) -> anyhow::Result<String> {
    let data = std::fs::read(vmlinux).with_context(|| vmlinux.display().to_string())?;
    let obj = object::File::parse(&*data)?;
    let mut funcs: Vec<(u64, String, u64)> = obj
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.size() >= 32)
        .filter_map(|s| Some((s.address(), s.name().ok()?.to_string(), s.size())))
        .filter(|(_, n, _)| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    funcs.sort();
    funcs.dedup_by(|a, b| a.1 == b.1);
    ensure!(
        funcs.len() >= FRAMES,
        "{} has too few functions",
        vmlinux.display()
    );
    let step = funcs.len() / FRAMES;
    let mut t = String::from(
        "------------[ cut here ]------------\nWARNING: CPU: 0 PID: 1 at kernel/bench.c:1 bench+0x1/0x2\nCall Trace:\n <TASK>\n",
    );
    for (_, name, size) in funcs.iter().step_by(step).take(FRAMES) {
        t.push_str(&format!(" {name}+{:#x}/{size:#x}\n", size / 2));
    }
    t.push_str(" </TASK>\n---[ end trace 0000000000000000 ]---\n");
    Ok(t)
}

fn time(c: &mut Command, what: &str) -> anyhow::Result<(Duration, String)> {
    let t = Instant::now();
    let out = c
        .stderr(Stdio::piped())
        .output()
        .with_context(|| what.to_string())?;
    let d = t.elapsed();
    ensure!(
        out.status.code().is_some_and(|c| c <= 1),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((d, String::from_utf8_lossy(&out.stdout).into_owned()))
}

pub fn run() -> anyhow::Result<()> {
    let (vmlinux, tree) = match std::env::var_os("LVH_BENCH_VMLINUX") {
        Some(v) => (
            PathBuf::from(v),
            std::env::var_os("LVH_BENCH_TREE").map(PathBuf::from),
        ),
        None => {
            let k = crate::support::fixtures::kernel::debug_kernel(Arch::Amd64)?;
            let tree = k.dir.join("kernels").join(&k.name);
            (tree.join("vmlinux"), Some(tree))
        }
    };
    let mb = std::fs::metadata(&vmlinux)?.len() / (1 << 20);
    let d = tempfile::tempdir()?;
    let log = d.path().join("trace.log");
    std::fs::write(&log, trace(&vmlinux)?)?;

    let lvh = env!("CARGO_BIN_EXE_lvh");
    let mut ours = Vec::new();
    let mut text = String::new();
    for _ in 0..RUNS {
        let (t, out) = time(
            Command::new(lvh)
                .arg("triage")
                .arg("--vmlinux")
                .arg(&vmlinux)
                .arg(&log),
            "lvh triage",
        )?;
        ours.push(t);
        text = out;
    }
    let symbolized = text
        .lines()
        .filter(|l| l.contains(".c:") || l.contains(".h:"))
        .count();
    ensure!(
        symbolized >= FRAMES - 2,
        "only {symbolized} of {FRAMES} frames symbolized:\n{text}"
    );
    let ours = median(&ours);
    println!(
        "triage: {FRAMES}-frame trace, vmlinux {mb} MiB: lvh triage --vmlinux median {} of {RUNS} ({symbolized} frames with file:line)",
        secs(ours)
    );
    if let Some(script) = tree
        .map(|t| t.join("scripts/decode_stacktrace.sh"))
        .filter(|s| s.exists())
    {
        let input = std::fs::File::open(&log)?;
        let (theirs, _) = time(
            Command::new("bash").arg(&script).arg(&vmlinux).stdin(input),
            "decode_stacktrace.sh",
        )?;
        println!(
            "triage: scripts/decode_stacktrace.sh {} (once): lvh is {:.0}x faster",
            secs(theirs),
            theirs.as_secs_f64() / ours.as_secs_f64().max(1e-9)
        );
    }
    ensure!(ours < BUDGET, "over the {} budget", secs(BUDGET));
    Ok(())
}
