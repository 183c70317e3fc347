//! `lvh test`: flags, and wiring the matrix library: load and check the test
//! file, select combinations, resolve kernels and images, run, stream a line
//! per finished test to stdout, print the table, write the reports.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::{Args, Subcommand};

use crate::Ctx;
use lvh::arch::Arch;
use lvh::error::{ExitCode, InvalidInput};
use lvh::matrix::{config, crashes, execute, expand, junit, merge, report, resolve};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # Run every kernel x image x test of ./lvh-tests.json, as many VMs at once as fit
  lvh test

  # The second of four disjoint slices (one GitHub Actions job each), with JUnit output
  lvh test -f ci/lvh-tests.json --partition hash:2/4 --junit results.xml

  # What would run, without booting anything
  lvh test --list --filter 'bpf-next/.*/selftests'

Exit codes: 0 every test passed; 4 some test did not pass (failed, splat,
timeout, boot or infrastructure failure); 3 invalid input (nothing ran);
130 interrupted (partial reports written, the rest marked interrupted).")]
#[command(args_conflicts_with_subcommands = true)]
pub struct TestArgs {
    /// The test file
    #[arg(short, long, default_value = config::DEFAULT_FILE)]
    pub file: PathBuf,
    /// Directory of kernels.json kernels (<dir>/kernels/<name>), pulled kernels (<dir>/<tag>) and images (<dir>/images)
    #[arg(long, default_value = "_data")]
    pub dir: PathBuf,
    /// VMs at once [default: as many as the CPUs and available memory hold]
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Only the combinations whose id (kernel/image/test) matches this regex
    #[arg(long, value_name = "REGEX")]
    pub filter: Option<String>,
    /// Only the K-th of N disjoint slices: count:K/N (round robin) or hash:K/N (by id)
    #[arg(long, value_name = "SPEC")]
    pub partition: Option<String>,
    /// List the selected combinations (kernel/image/test) and exit
    #[arg(long)]
    pub list: bool,
    /// Check everything, print what each combination would run, and exit without booting
    #[arg(long)]
    pub dry_run: bool,
    /// Write JUnit XML results to this file
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the results as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Keep each combination's console log in this directory
    #[arg(long, value_name = "DIR")]
    pub console_dir: Option<PathBuf>,
    /// Guest architecture
    #[arg(long, default_value = Arch::host().as_str())]
    pub qemu_arch: Arch,
    /// Do not use hardware acceleration (KVM); emulate with TCG
    #[arg(long)]
    pub no_hw_accel: bool,
    /// Accelerator: kvm, tcg, or auto [default: $LVH_ACCEL, else auto]
    #[arg(long, value_name = "ACCEL")]
    pub accel: Option<String>,
    /// Seconds (or a duration: 90s, 5m) a guest may take to start its command
    /// [default: 20 with KVM, 90 with TCG]
    #[arg(long, value_name = "SECS")]
    pub boot_timeout: Option<String>,
    /// Kernel splats: fail (the test's verdict is splat), warn, or off
    #[arg(long, value_name = "MODE", default_value = "fail")]
    pub splat: lvh::runner::SplatMode,
    /// JSON allowlist of known splats (as `lvh run --splat-allow`)
    #[arg(long, value_name = "FILE")]
    pub splat_allow: Option<PathBuf>,
    /// Every test scans for kernel memory leaks after its command (as `lvh run
    /// --kmemleak`; a test's "kmemleak": true does it for that test)
    #[arg(long)]
    pub kmemleak: bool,
    #[command(subcommand)]
    pub command: Option<TestCommand>,
}

#[derive(Debug, Subcommand)]
pub enum TestCommand {
    /// Join the --json results of the shards of one run (--partition K/N) into one summary
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # The four shards' results of a GitHub Actions matrix, as one table and step summary
  lvh test merge --junit junit.xml results-*.json

Exit codes: 0 every shard is there and every test passed; 4 some test did
not pass or some shard has no result (named on stderr); 3 invalid input (a
file that is not an `lvh test --json` result, shards of different splits).")]
pub struct MergeArgs {
    /// Result files written by `lvh test --json` (a shard with no file is named missing)
    #[arg(value_name = "RESULT.json", required = true)]
    pub results: Vec<PathBuf>,
    /// Write the merged results as JUnit XML to this file
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the merged results as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `lvh test merge`.
fn merge(a: &MergeArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let invalid = |reason: String| -> anyhow::Error {
        InvalidInput {
            reason,
            ..Default::default()
        }
        .into()
    };
    let mut inputs = Vec::new();
    for p in &a.results {
        let name = p.display().to_string();
        match std::fs::read_to_string(p) {
            Ok(text) => inputs.push((name.clone(), merge::parse(&name, &text).map_err(invalid)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => lvh::progress::warn(
                &ctx.reporter,
                format!("{name}: no such file; its shard counts as missing"),
            ),
            Err(e) => return Err(anyhow::anyhow!("failed to read {name}: {e}")),
        }
    }
    if inputs.is_empty() {
        return Err(invalid(
            "none of the result files exists: nothing to merge".into(),
        ));
    }
    let m = merge::merge(inputs).map_err(invalid)?;
    let mut r = report::JsonReport::new(&m.file, None, m.interrupted, &m.results);
    r.missing_shards = m.missing.clone();
    crate::out::stdout(end_summary(&m.results).as_bytes());
    if !m.missing.is_empty() {
        errln!("lvh: no result for shard(s) {}", m.missing.join(", "));
    }
    let what = if m.shards.is_empty() {
        "whole runs".to_string()
    } else {
        m.shards.join(", ")
    };
    let title = format!("lvh test {} (merged: {what})", m.file);
    write_outputs(&title, a.junit.as_deref(), a.json.as_deref(), &r)?;
    let failed = report::totals(&m.results).not_passed() > 0;
    Ok(if failed || !m.missing.is_empty() {
        ExitCode::Partial
    } else {
        ExitCode::Success
    })
}

fn bad(field: &str, value: impl Into<String>, reason: impl Into<String>) -> anyhow::Error {
    InvalidInput::value(field, value, reason).into()
}

/// The combinations the flags select, in file order.
fn select(a: &TestArgs, m: &config::Matrix) -> anyhow::Result<Vec<expand::Combo>> {
    let mut combos = expand::expand(m);
    if let Some(f) = &a.filter {
        let re = regex::Regex::new(f).map_err(|e| bad("--filter", f, e.to_string()))?;
        combos = expand::filter(combos, &re);
        if combos.is_empty() {
            return Err(bad(
                "--filter",
                f,
                "matches no combination (see `lvh test --list`)",
            ));
        }
    }
    if let Some(p) = &a.partition {
        let p: expand::Partition = p.parse().map_err(|e: String| bad("--partition", p, e))?;
        combos = expand::partition(combos, p);
    }
    Ok(combos)
}

fn write_reports(a: &TestArgs, m: &config::Matrix, r: &report::JsonReport) -> anyhow::Result<()> {
    let title = format!("lvh test {}", m.file.display());
    write_outputs(&title, a.junit.as_deref(), a.json.as_deref(), r)
}

/// Writes `--junit`, `--json` and the step summary of a report.
fn write_outputs(
    title: &str,
    junit: Option<&Path>,
    json: Option<&Path>,
    r: &report::JsonReport,
) -> anyhow::Result<()> {
    let write = |p: &Path, bytes: &[u8]| -> anyhow::Result<()> {
        lvh::fsutil::write_atomic(p, bytes)
            .map_err(|e| anyhow::anyhow!("failed to write {}: {e}", p.display()))
    };
    if let Some(p) = junit {
        write(p, &junit::junit(title, r.results, &r.missing_shards))?;
    }
    if let Some(p) = json {
        write(p, &r.to_bytes())?;
    }
    if let Some(p) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        use std::io::Write;
        let md = report::markdown(title, r.interrupted, r.results, &r.missing_shards);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| anyhow::anyhow!("failed to open $GITHUB_STEP_SUMMARY {p:?}: {e}"))?;
        f.write_all(md.as_bytes())
            .map_err(|e| anyhow::anyhow!("failed to append to $GITHUB_STEP_SUMMARY {p:?}: {e}"))?;
    }
    Ok(())
}

/// The table and the distinct crashes, printed when the run ends.
fn end_summary(results: &[report::TestResult]) -> String {
    let crashes = crashes::summary(&report::crash_groups(results));
    let sep = if crashes.is_empty() { "" } else { "\n" };
    format!("\n{}{sep}{crashes}", report::table(results))
}

pub fn dispatch(a: &TestArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    if let Some(TestCommand::Merge(m)) = &a.command {
        return merge(m, ctx);
    }
    let (m, warnings) = config::load(&a.file)?;
    crate::warn_unknown_keys(warnings, ctx)?;
    let combos = select(a, &m)?;
    if a.jobs == Some(0) {
        return Err(bad("--jobs", "0", "must be at least 1"));
    }
    if a.list {
        for c in &combos {
            outln!("{}", c.id);
        }
        return Ok(ExitCode::Success);
    }
    let env = std::env::var("LVH_ACCEL").ok().filter(|v| !v.is_empty());
    let accel = lvh::runner::parse_accel(a.no_hw_accel, a.accel.as_deref(), env.as_deref())?;
    let boot_timeout = a
        .boot_timeout
        .as_deref()
        .map(|v| lvh::runner::duration("--boot-timeout", v))
        .transpose()?;
    let (policy, w) = lvh::runner::SplatPolicy::load(
        a.splat,
        a.splat_allow.as_deref(),
        lvh::runner::Date::today(),
    )?;
    for w in w {
        lvh::progress::warn(&ctx.reporter, w);
    }
    let setup = execute::Setup {
        arch: a.qemu_arch,
        accel,
        boot_timeout,
        policy,
        console_dir: a.console_dir.clone(),
        kmemleak: a.kmemleak,
    };
    let host = lvh::runner::Host::probe();
    if a.dry_run {
        for c in &combos {
            execute::dry_check(&m, c, &setup, &host)?;
            outln!(
                "{}",
                execute::dry_run_line(&m, c, &a.dir, a.qemu_arch, a.kmemleak)
            );
        }
        return Ok(ExitCode::Success);
    }
    if combos.is_empty() {
        errln!(
            "lvh: this slice ({}) holds no combination; nothing to run",
            a.partition.as_deref().unwrap_or("all")
        );
        let r = report::JsonReport::new(
            &m.file.display().to_string(),
            a.partition.clone(),
            false,
            &[],
        );
        write_reports(a, &m, &r)?;
        return Ok(ExitCode::Success);
    }
    let mut used_k = vec![false; m.kernels.len()];
    let mut used_i = vec![false; m.images.len()];
    for c in &combos {
        used_k[c.kernel] = true;
        used_i[c.image] = true;
    }
    let r = resolve::resolve(&m, &used_k, &used_i, &a.dir, a.qemu_arch, &ctx.reporter)?;
    let kernels: Vec<PathBuf> = r
        .kernels
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    let images: Vec<PathBuf> = r
        .images
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    if let Some(d) = &a.console_dir {
        std::fs::create_dir_all(d)
            .map_err(|e| anyhow::anyhow!("failed to create --console-dir {}: {e}", d.display()))?;
    }
    let jobs = execute::prepare(&m, &kernels, &images, &combos, &setup, &host)?;
    if let Some(w) = jobs.iter().find_map(|j| j.plan.accel_note.clone()) {
        lvh::progress::warn(&ctx.reporter, w);
    }
    if ctx.verbose > 0 {
        let mut notes: Vec<&String> = jobs
            .iter()
            .filter_map(|j| j.plan.init_note.as_ref())
            .collect();
        notes.sort();
        notes.dedup();
        for n in notes {
            lvh::progress::info(&ctx.reporter, n.clone());
        }
    }
    let parallel = a.jobs.unwrap_or_else(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let used: Vec<config::TestSpec> = m.tests.clone();
        execute::default_jobs(cpus, execute::mem_available(), &used)
    });
    errln!(
        "lvh: running {} combination(s), {} at a time",
        jobs.len(),
        parallel.min(jobs.len())
    );
    let printed = Mutex::new(());
    let results = execute::run(&jobs, parallel, &setup.policy, &ctx.reporter, &|r| {
        let _g = printed.lock();
        outln!("{}", report::line(r));
    });
    let interrupted = lvh::cancel::CancelToken::global().is_cancelled()
        || results
            .iter()
            .any(|r| r.verdict == lvh::runner::ResultVerdict::Interrupted);
    crate::out::stdout(end_summary(&results).as_bytes());
    let r = report::JsonReport::new(
        &m.file.display().to_string(),
        a.partition.clone(),
        interrupted,
        &results,
    );
    write_reports(a, &m, &r)?;
    let t = report::totals(&results);
    Ok(if interrupted {
        ExitCode::Interrupted
    } else if t.not_passed() > 0 {
        ExitCode::Partial
    } else {
        ExitCode::Success
    })
}
