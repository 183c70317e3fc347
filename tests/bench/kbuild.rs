//! `lvh kernels build` with its toolchains and compiler cache, on the demo
//! kernel (`make demo`'s configuration: tinyconfig with the virtio,
//! minimize, namespaces and runner groups) from Debian's linux-source-6.12:
//! - gcc: a cold build (empty cache) and the rebuild after `make clean` with
//!   the warm cache (goal: at most 0.3x the cold time); a one-file change,
//!   `lvh kernels build` against plain make with the same variables and
//!   environment, interleaved (goal: within 5%);
//! - cache: that cache pushed to a local registry, wiped, pulled into an empty
//!   directory, and the rebuild after `make clean` from it (goal: above 90% hits);
//! - llvm: the same kernel cold with llvm-19, against gcc's cold time; it
//!   boots and runs a command;
//! - arm64: the fixture configuration cross-built for arm64 with llvm-19; it boots;
//! - runner: the runner's system tests on the fixture kernel built with llvm-19.
//!
//! `LVH_BENCH_KBUILD=gcc,cache,llvm,arm64,runner` picks parts (default: all).
//! The tree lives in the fixture cache (`bench-kbuild/`), fetched once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use lvh::arch::Arch;
use lvh::kernels::record::BuildRecord;

use crate::util::{secs, timed};

use crate::support::registry;

const KERNEL: &str = "demo";
const COMMON_GROUPS: &str = "virtio,minimize,namespaces";
const KERNEL_GROUPS: &str = "runner";
const LLVM: &str = "llvm-19";
/// The file the one-file change edits (compiled in every configuration).
const EDITED: &str = "init/main.c";
const EDIT_RUNS: usize = 2;
const WARM_GOAL: f64 = 0.3;
const EDIT_GOAL: f64 = 1.05;
const HIT_GOAL: f64 = 0.9;

fn lvh(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.args(args).env("CI", "true");
    c
}

fn run_ok(c: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = c.output().with_context(|| what.to_string())?;
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The kernels directory with the demo kernel fetched.
fn workspace() -> anyhow::Result<PathBuf> {
    let dir = crate::support::fixtures::cache_root().join("bench-kbuild");
    let d = dir.to_str().context("utf-8")?;
    if !dir.join("kernels.json").is_file() {
        let src = crate::support::fixtures::kernel::source_repo()?;
        std::fs::create_dir_all(&dir)?;
        run_ok(
            &mut lvh(&[
                "kernels",
                "init",
                "--dir",
                d,
                "--config-groups",
                COMMON_GROUPS,
            ]),
            "kernels init",
        )?;
        run_ok(
            lvh(&[
                "kernels",
                "add",
                KERNEL,
                src.to_str().context("utf-8")?,
                "--dir",
                d,
            ])
            .args([
                "--config-groups",
                KERNEL_GROUPS,
                "--base-config",
                "tinyconfig",
            ]),
            "kernels add",
        )?;
    }
    run_ok(
        &mut lvh(&["kernels", "fetch", KERNEL, "--dir", d]),
        "kernels fetch",
    )?;
    Ok(dir)
}

struct Bench {
    dir: PathBuf,
    tree: PathBuf,
    scratch: tempfile::TempDir,
}

impl Bench {
    fn d(&self) -> &str {
        self.dir.to_str().expect("utf-8")
    }

    fn cache_dir(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    fn configure(&self, toolchain: &str) -> anyhow::Result<()> {
        run_ok(
            &mut lvh(&[
                "kernels",
                "configure",
                KERNEL,
                "--dir",
                self.d(),
                "--toolchain",
                toolchain,
            ]),
            "kernels configure",
        )?;
        Ok(())
    }

    fn clean(&self) -> anyhow::Result<()> {
        run_ok(
            Command::new("make")
                .current_dir(&self.tree)
                .args(["ARCH=x86_64", "clean"]),
            "make clean",
        )?;
        Ok(())
    }

    /// `lvh kernels build` with `toolchain` and the cache in `cache`; its time and record.
    fn build(&self, toolchain: &str, cache: &Path) -> anyhow::Result<(Duration, BuildRecord)> {
        let cache = cache.to_str().context("utf-8")?;
        let t = timed(
            lvh(&["kernels", "build", KERNEL, "--dir", self.d()]).args([
                "--toolchain",
                toolchain,
                "--cache-dir",
                cache,
            ]),
            "kernels build",
        )?;
        let rec = BuildRecord::read(&self.tree.join(lvh::kernels::record::FILE_NAME))
            .map_err(anyhow::Error::msg)?;
        Ok((t, rec))
    }

    /// Plain make as the record ran it: its variables, environment and targets.
    fn plain_make(&self, rec: &BuildRecord) -> Command {
        let mut c = Command::new("make");
        c.current_dir(&self.tree)
            .args(&rec.make_vars)
            .arg(format!("-j{}", rec.jobs))
            .arg(Arch::Amd64.kernel_image_target())
            .envs(&rec.env);
        c
    }

    /// Gives the edited file a new function numbered `n`.
    fn edit(&self, n: usize) -> anyhow::Result<()> {
        let f = self.tree.join(EDITED);
        let mut text = std::fs::read_to_string(&f)?;
        if let Some(i) = text.find("\n/* lvh bench edit */") {
            text.truncate(i);
        }
        text.push_str(&format!(
            "\n/* lvh bench edit */\nint lvh_bench_edit_{n}(void);\nint lvh_bench_edit_{n}(void) {{ return {n}; }}\n"
        ));
        std::fs::write(&f, text)?;
        Ok(())
    }

    fn restore(&self) -> anyhow::Result<()> {
        run_ok(
            Command::new("git")
                .current_dir(&self.tree)
                .args(["checkout", "--", EDITED]),
            "git checkout",
        )?;
        Ok(())
    }
}

fn hit_rate(r: &BuildRecord) -> f64 {
    r.cache.as_ref().and_then(|c| c.hit_rate).unwrap_or(0.0)
}

fn report(what: &str, t: Duration, r: &BuildRecord) {
    println!(
        "  {what}: {} ({} warnings, cache {})",
        secs(t),
        r.warnings,
        r.cache
            .as_ref()
            .map_or("off".to_string(), |c| c.stats.to_string())
    );
}

/// Boots `kernel` with the fixture root image for `arch`; the guest's /proc/version.
fn boot(kernel: &Path, arch: Arch) -> anyhow::Result<String> {
    let image = crate::support::fixtures::image::root_image(arch)?;
    let out = run_ok(
        lvh(&["run", "--kernel"])
            .arg(kernel)
            .arg("--image")
            .arg(&image)
            .args([
                "--qemu-arch",
                arch.as_str(),
                "--accel",
                "tcg",
                "--mem",
                "1G",
            ])
            .args(["--", "cat", "/proc/version"]),
        "lvh run",
    )?;
    ensure!(
        out.contains("Linux version"),
        "no /proc/version from the guest: {out}"
    );
    Ok(out)
}

fn wanted(part: &str) -> bool {
    match std::env::var("LVH_BENCH_KBUILD") {
        Ok(v) if !v.is_empty() => v.split(',').any(|p| p.trim() == part),
        _ => true,
    }
}

pub fn run() -> anyhow::Result<()> {
    let mut gcc_cold = None;
    if wanted("gcc") || wanted("cache") || wanted("llvm") {
        let dir = workspace()?;
        let b = Bench {
            tree: dir.join("kernels").join(KERNEL),
            dir,
            scratch: tempfile::tempdir()?,
        };
        if wanted("gcc") || wanted("cache") {
            gcc_cold = Some(gcc(&b)?);
        }
        if wanted("llvm") {
            llvm(&b, gcc_cold)?;
        }
    }
    if wanted("arm64") {
        let t = Instant::now();
        let k = crate::support::fixtures::kernel::kernel_with(
            Arch::Arm64,
            crate::support::fixtures::kernel::KERNEL_GROUPS,
            Some(LLVM),
        )?;
        println!(
            "  arm64 fixture kernel with {LLVM} (cross): ready in {}",
            secs(t.elapsed())
        );
        let v = boot(&k.image, Arch::Arm64)?;
        ensure!(v.contains("clang version 19"), "not built by clang 19: {v}");
        println!("  it boots on arm64: {v}");
    }
    if wanted("runner") {
        runner_tests()?;
    }
    Ok(())
}

/// The gcc measurements and the registry round trip; gcc's cold time.
fn gcc(b: &Bench) -> anyhow::Result<Duration> {
    b.restore()?;
    b.configure("gcc")?;
    b.clean()?;
    let cache = b.cache_dir("gcc");
    let (cold, r) = b.build("gcc", &cache)?;
    report("gcc, cold (empty cache)", cold, &r);
    b.clean()?;
    let (warm, r) = b.build("gcc", &cache)?;
    report("gcc, after make clean, warm cache", warm, &r);
    let ratio = warm.as_secs_f64() / cold.as_secs_f64();
    println!(
        "  warm/cold {ratio:.2} (goal <= {WARM_GOAL}): {}",
        if ratio <= WARM_GOAL { "met" } else { "NOT met" }
    );

    if wanted("gcc") {
        let (mut ours, mut make) = (Vec::new(), Vec::new());
        let mut rec = r.clone();
        for i in 0..EDIT_RUNS {
            b.edit(2 * i)?;
            let (t, r) = b.build("gcc", &cache)?;
            ours.push(t);
            rec = r;
            b.edit(2 * i + 1)?;
            make.push(timed(&mut b.plain_make(&rec), "plain make")?);
        }
        b.restore()?;
        b.build("gcc", &cache)?;
        let (o, m) = (median(&ours), median(&make));
        let ratio = o.as_secs_f64() / m.as_secs_f64();
        println!(
            "  one-file change ({EDITED}): lvh {} ({}), plain make {} ({}), ratio {ratio:.3} (goal <= {EDIT_GOAL}): {}",
            secs(o),
            list(&ours),
            secs(m),
            list(&make),
            if ratio <= EDIT_GOAL { "met" } else { "NOT met" }
        );
        println!(
            "    plain make: make {} -j{} bzImage",
            rec.make_vars.join(" "),
            rec.jobs
        );
    }

    if wanted("cache") {
        let reg = registry::Registry::start();
        let reference = reg.reference("kernel-cache", "demo-gcc");
        let t = Instant::now();
        run_ok(
            lvh(&["kernels", "cache", "push", &reference, "--cache-dir"]).arg(&cache),
            "cache push",
        )?;
        let push = t.elapsed();
        let pulled = b.cache_dir("pulled");
        let t = Instant::now();
        run_ok(
            lvh(&["kernels", "cache", "pull", &reference, "--cache-dir"]).arg(&pulled),
            "cache pull",
        )?;
        let pull = t.elapsed();
        b.clean()?;
        let (t, r) = b.build("gcc", &pulled)?;
        report(
            "gcc, after make clean, cache pulled from the registry",
            t,
            &r,
        );
        println!(
            "  push {}, pull {} ({} MiB stored); hit rate {:.1}% (goal > {:.0}%)",
            secs(push),
            secs(pull),
            dir_size(&reg.storage) >> 20,
            hit_rate(&r) * 100.0,
            HIT_GOAL * 100.0
        );
        ensure!(
            hit_rate(&r) > HIT_GOAL,
            "the pulled cache served too few compiles"
        );
    }
    Ok(cold)
}

fn llvm(b: &Bench, gcc_cold: Option<Duration>) -> anyhow::Result<()> {
    b.restore()?;
    b.configure(LLVM)?;
    b.clean()?;
    let (t, r) = b.build(LLVM, &b.cache_dir("llvm"))?;
    report(&format!("{LLVM}, cold (empty cache)"), t, &r);
    if let Some(g) = gcc_cold {
        println!(
            "  {LLVM}/gcc cold: {:.2}",
            t.as_secs_f64() / g.as_secs_f64()
        );
    }
    ensure!(
        r.compiler.contains("clang version 19"),
        "compiler: {}",
        r.compiler
    );
    let v = boot(&b.tree.join(Arch::Amd64.kernel_image_path()), Arch::Amd64)?;
    ensure!(v.contains("clang version 19"), "not built by clang 19: {v}");
    println!("  it boots: {v}");
    Ok(())
}

/// The system tests' binary cargo built beside this one (`make bench` builds
/// it first: a nested cargo would wait for this one's lock on the target dir).
fn system_tests_binary() -> anyhow::Result<PathBuf> {
    let deps = std::env::current_exe()?
        .parent()
        .context("the bench binary's directory")?
        .to_path_buf();
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&deps)?
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("system-") && !n.contains('.')
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).with_context(|| {
        format!(
            "no system tests binary in {}: build it with `LVH_SYSTEM_TESTS=1 cargo test --release --test system --no-run`",
            deps.display()
        )
    })
}

/// The runner's system tests with the fixture kernels built by llvm-19.
fn runner_tests() -> anyhow::Result<()> {
    let bin = system_tests_binary()?;
    let t = Instant::now();
    let out = Command::new(&bin)
        .args(["runner::", "--test-threads=1"])
        .env("LVH_TEST_KERNEL_TOOLCHAIN", LLVM)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect::<Vec<_>>()
        .join("; ");
    println!(
        "  runner system tests on the {LLVM} fixture kernel ({}): {summary} ({})",
        bin.display(),
        secs(t.elapsed())
    );
    if !out.status.success() {
        bail!(
            "the runner's system tests failed on the {LLVM} kernel:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn median(v: &[Duration]) -> Duration {
    crate::util::median(v)
}

fn list(v: &[Duration]) -> String {
    v.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ")
}

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => n += dir_size(&e.path()),
                Ok(_) => n += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    n
}
