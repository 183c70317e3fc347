//! Running the combinations: each is planned through the runner's front door
//! (`runner::prepare`, as `lvh run` is: every combination checked, the host
//! and the kernel's configuration too, before the first VM starts) and runs
//! in its own VM through the runner library, never a child `lvh run`. Up to `jobs` VMs run at once on the
//! shared scheduler (`crate::sched`); a boot or infrastructure failure is
//! retried once ([`should_retry`]), a test's own failure never. Ctrl-C (the
//! global cancel token) stops the running VMs through the runner and marks
//! every combination not yet started as interrupted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::{Matrix, TestSpec};
use super::expand::Combo;
use super::report::{TestResult, OUTPUT_TAIL_BYTES};
use crate::arch::Arch;
use crate::cancel::CancelToken;
use crate::progress::Reporter;
use crate::runner::{
    AccelChoice, Host, ResultVerdict, RunError, RunOptions, RunPlan, RunRequest, RunResult, Sinks,
    SplatPolicy, CPUS, CWD, HOST_MOUNT, MEMORY, TIMEOUT,
};
use crate::sched;

/// What every combination shares.
#[derive(Clone, Debug)]
pub struct Setup {
    pub arch: Arch,
    pub accel: AccelChoice,
    pub boot_timeout: Option<Duration>,
    pub policy: SplatPolicy,
    /// Where each combination's console log goes (`<id with / as __>.log`).
    pub console_dir: Option<PathBuf>,
    /// `lvh test --kmemleak`: every test scans for leaks (a test's own
    /// `"kmemleak": true` does it for that test).
    pub kmemleak: bool,
}

/// One combination, ready to boot.
#[derive(Clone, Debug)]
pub struct Job {
    pub combo: Combo,
    pub kernel: String,
    pub image: String,
    pub test: String,
    pub plan: RunPlan,
}

/// The guest argv of a test: its command, behind `env` when it sets variables.
pub fn guest_argv(t: &TestSpec) -> Vec<String> {
    if t.env.is_empty() {
        return t.argv.clone();
    }
    let mut v = vec!["env".to_string()];
    v.extend(t.env.iter().map(|(k, val)| format!("{k}={val}")));
    v.extend(t.argv.iter().cloned());
    v
}

/// What a combination would run, as the equivalent `lvh run` line (`--dry-run`).
pub fn dry_run_line(m: &Matrix, c: &Combo, dir: &Path, arch: Arch, kmemleak: bool) -> String {
    use super::config::{ImageSource, KernelSource};
    use crate::runner::sh_quote as q;
    let t = &m.tests[c.test];
    let kernel = match &m.kernels[c.kernel].source {
        KernelSource::Path(p) => p.display().to_string(),
        KernelSource::Built(n) => super::resolve::built_kernel(dir, n, arch)
            .display()
            .to_string(),
        KernelSource::Pull(r) => format!("<{r} pulled to {}>", dir.display()),
    };
    let image = match &m.images[c.image].source {
        ImageSource::Path(p) => p.display().to_string(),
        ImageSource::Pull(r) => r.clone(),
    };
    let mut s = format!(
        "{}: lvh run --kernel {} --image {} {} {} {} {}",
        c.id,
        q(&kernel),
        q(&image),
        CPUS.flag,
        t.cpus,
        MEMORY.flag,
        t.memory.qemu_arg()
    );
    if let Some(d) = t.timeout {
        s.push_str(&format!(" {} {}", TIMEOUT.flag, d.as_secs_f64()));
    }
    if let Some(h) = &t.host_mount {
        s.push_str(&format!(
            " {} {}",
            HOST_MOUNT.flag,
            q(&h.display().to_string())
        ));
    }
    if let Some(cwd) = &t.cwd {
        s.push_str(&format!(" {} {}", CWD.flag, q(cwd)));
    }
    if t.kmemleak || kmemleak {
        s.push_str(" --kmemleak");
    }
    s.push_str(" --");
    for w in guest_argv(t) {
        s.push(' ');
        s.push_str(&q(&w));
    }
    s
}

/// The console log file name of a combination id.
pub fn console_file(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| match c {
            '/' => '~',
            c if c.is_ascii_alphanumeric() || "._-+".contains(c) => c,
            _ => '_',
        })
        .collect();
    format!("{safe}.log")
}

/// The runner's options for one combination: the test's settings, the
/// rest at `lvh run`'s defaults.
pub fn run_options(t: &TestSpec, kernel: &Path, image: &Path, s: &Setup, id: &str) -> RunOptions {
    RunOptions {
        image: Some(image.to_path_buf()),
        kernel: Some(kernel.to_path_buf()),
        accel: s.accel,
        console_log: s.console_dir.as_ref().map(|d| d.join(console_file(id))),
        host_mount: t.host_mount.clone(),
        cpus: t.cpus,
        mem: t.memory,
        arch: s.arch,
        cmd: guest_argv(t),
        cwd: t.cwd.clone(),
        boot_timeout: s.boot_timeout,
        timeout: t.timeout,
        kmemleak: t.kmemleak || s.kmemleak,
        ..RunOptions::default()
    }
}

/// An error about a combination's options, in the test file's words: the
/// test's key for a setting a test sets, the kernel or image entry for
/// `--kernel` and `--image`, and the combination it is about.
fn in_file(e: RunError, m: &Matrix, c: &Combo) -> RunError {
    let RunError::Invalid(mut e) = e else {
        return e;
    };
    let entry = match e.field.as_str() {
        "--kernel" => Some(format!("kernels[{}]", c.kernel)),
        "--image" => Some(format!("images[{}]", c.image)),
        f => crate::runner::file_key(f).map(|k| format!("tests[{}].{k}", c.test)),
    };
    if let Some(entry) = entry {
        e.field = entry;
        e.file = Some(m.file.clone());
    }
    e.reason = format!("{} (combination {})", e.reason, c.id);
    RunError::Invalid(e)
}

/// Plans every combination through the runner's front door; the first
/// refused one stops it all before any VM starts. `kernels` and `images`
/// are the matrix's, resolved to local paths, by index.
pub fn prepare(
    m: &Matrix,
    kernels: &[PathBuf],
    images: &[PathBuf],
    combos: &[Combo],
    s: &Setup,
    host: &Host,
) -> Result<Vec<Job>, RunError> {
    combos
        .iter()
        .map(|c| {
            let t = &m.tests[c.test];
            let o = run_options(t, &kernels[c.kernel], &images[c.image], s, &c.id);
            let plan = crate::runner::prepare(RunRequest::new(o), host)
                .map_err(|e| in_file(e, m, c))?
                .plan;
            Ok(Job {
                combo: c.clone(),
                kernel: m.kernels[c.kernel].name.clone(),
                image: m.images[c.image].name.clone(),
                test: t.name.clone(),
                plan,
            })
        })
        .collect()
}

/// `--dry-run`'s check of one combination, planned as `lvh run --dry-run`
/// plans it (no host or kernel checks), when its kernel and image are local
/// files; the others are planned when `lvh test` runs, after they are pulled
/// or built.
pub fn dry_check(m: &Matrix, c: &Combo, s: &Setup, host: &Host) -> Result<(), RunError> {
    use super::config::{ImageSource, KernelSource};
    let (KernelSource::Path(kernel), ImageSource::Path(image)) =
        (&m.kernels[c.kernel].source, &m.images[c.image].source)
    else {
        return Ok(());
    };
    let o = run_options(&m.tests[c.test], kernel, image, s, &c.id);
    let req = RunRequest {
        check_host: false,
        check_kernel: false,
        ..RunRequest::new(o)
    };
    crate::runner::prepare(req, host)
        .map(|_| ())
        .map_err(|e| in_file(e, m, c))
}

/// How many VMs at once by default: as many as the host's CPUs hold the
/// largest test's vCPUs, and 80% of the available memory its RAM; at least one.
pub fn default_jobs(host_cpus: usize, mem_available: Option<u64>, tests: &[TestSpec]) -> usize {
    let cpus = tests
        .iter()
        .map(|t| t.cpus as usize)
        .max()
        .unwrap_or(1)
        .max(1);
    let mem = tests
        .iter()
        .map(|t| t.memory.bytes())
        .max()
        .unwrap_or(1)
        .max(1);
    let by_cpu = host_cpus / cpus;
    let by_mem = mem_available.map_or(usize::MAX, |a| (a / 10 * 8 / mem) as usize);
    by_cpu.min(by_mem).max(1)
}

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Whether an attempt that ended with `v` is tried again: boot and
/// infrastructure failures once, never a test's own verdict, never after Ctrl-C.
pub fn should_retry(v: ResultVerdict, attempt: u32, cancelled: bool) -> bool {
    !cancelled
        && attempt == 1
        && matches!(
            v,
            ResultVerdict::BootFailure | ResultVerdict::InfrastructureFailure
        )
}

/// Keeps the last bytes written to it (the command's stdout and stderr).
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<Vec<u8>>>);

impl Write for Tail {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.extend_from_slice(buf);
        if v.len() > 2 * OUTPUT_TAIL_BYTES {
            let cut = v.len() - OUTPUT_TAIL_BYTES;
            v.drain(..cut);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Tail {
    fn text(&self) -> String {
        let v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let from = v.len().saturating_sub(OUTPUT_TAIL_BYTES);
        String::from_utf8_lossy(&v[from..]).into_owned()
    }
}

fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Boots one combination (twice after a boot or infrastructure failure).
fn run_one(job: &Job, policy: &SplatPolicy, reporter: &dyn Reporter) -> TestResult {
    let cancel = CancelToken::global();
    let mut attempts = 0;
    let mut retried_after = None;
    loop {
        attempts += 1;
        let tail = Tail::default();
        let sinks = Sinks {
            stdout: Box::new(tail.clone()),
            stderr: Box::new(tail.clone()),
            console: None,
        };
        let start = Instant::now();
        let report = crate::runner::run_report(&job.plan, policy, sinks, reporter, false);
        let took = start.elapsed();
        let r = RunResult::new(&report.result, &report.facts);
        if should_retry(r.verdict, attempts, cancel.is_cancelled()) {
            crate::progress::warn(
                reporter,
                format!(
                    "{}: retrying once after a boot or infrastructure failure: {}",
                    job.combo.id,
                    r.error.as_deref().unwrap_or("(no message)")
                ),
            );
            retried_after = r.error;
            continue;
        }
        let crashes = super::crashes::of_run(&r);
        return TestResult {
            id: job.combo.id.clone(),
            kernel: job.kernel.clone(),
            image: job.image.clone(),
            test: job.test.clone(),
            verdict: r.verdict,
            attempts,
            retried_after,
            exit_code: Some(r.exit_code),
            command_status: r.command_status,
            seconds: round(took),
            boot_seconds: r.boot_seconds,
            error: r.error,
            output: tail.text(),
            console_log: r.console_log,
            crashes,
        };
    }
}

/// Runs `jobs`, `parallel` at a time, calling `on_done` as each finishes;
/// returns the results in the order of `jobs`.
pub fn run(
    jobs: &[Job],
    parallel: usize,
    policy: &SplatPolicy,
    reporter: &dyn Reporter,
    on_done: &(dyn Fn(&TestResult) + Sync),
) -> Vec<TestResult> {
    let cancel = CancelToken::global();
    let n = jobs.len();
    let statuses = sched::run::<TestResult, (), _>(
        &vec![None; n],
        &vec![true; n],
        parallel,
        &|| cancel.is_cancelled(),
        |k| {
            let r = run_one(&jobs[k], policy, reporter);
            on_done(&r);
            Ok(r)
        },
    );
    statuses
        .into_iter()
        .zip(jobs)
        .map(|(s, j)| match s {
            sched::Status::Succeeded(r) => r,
            _ => {
                let r = TestResult::not_started(&j.combo.id, &j.kernel, &j.image, &j.test);
                on_done(&r);
                r
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cpus: u32, mem: &str) -> TestSpec {
        TestSpec {
            name: "t".into(),
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            timeout: None,
            host_mount: None,
            cwd: None,
            cpus,
            memory: mem.parse().unwrap(),
            env: Default::default(),
            kmemleak: false,
        }
    }

    #[test]
    fn default_jobs_fit_cpus_and_memory() {
        const G: u64 = 1 << 30;
        let cases: Vec<(usize, Option<u64>, Vec<TestSpec>, usize)> = vec![
            (2, Some(20 * G), vec![spec(1, "1G")], 2),
            (8, Some(20 * G), vec![spec(1, "1G"), spec(2, "512M")], 4),
            (8, Some(5 * G), vec![spec(1, "2G")], 2),
            (1, Some(20 * G), vec![spec(4, "1G")], 1),
            (2, Some(G / 2), vec![spec(1, "1G")], 1),
            (16, None, vec![spec(1, "1G")], 16),
        ];
        for (cpus, mem, tests, want) in cases {
            assert_eq!(default_jobs(cpus, mem, &tests), want, "{cpus} {mem:?}");
        }
    }

    #[test]
    fn only_boot_and_infrastructure_failures_are_retried_once() {
        use ResultVerdict::*;
        let cases = [
            (BootFailure, 1, false, true),
            (InfrastructureFailure, 1, false, true),
            (BootFailure, 2, false, false),
            (BootFailure, 1, true, false),
            (Failed, 1, false, false),
            (Timeout, 1, false, false),
            (Splat, 1, false, false),
            (Passed, 1, false, false),
            (Interrupted, 1, false, false),
        ];
        for (v, attempt, cancelled, want) in cases {
            assert_eq!(should_retry(v, attempt, cancelled), want, "{v:?} {attempt}");
        }
    }

    #[test]
    fn env_goes_before_the_command_and_logs_get_safe_names() {
        let mut t = spec(1, "1G");
        assert_eq!(guest_argv(&t), ["sh", "-c", "true"]);
        t.env.insert("B".into(), "2 3".into());
        t.env.insert("A".into(), "1".into());
        assert_eq!(guest_argv(&t), ["env", "A=1", "B=2 3", "sh", "-c", "true"]);
        assert_eq!(
            console_file("6.6-main/base.qcow2/a b"),
            "6.6-main~base.qcow2~a_b.log"
        );
    }

    #[test]
    fn meminfo_parses() {
        let t = "MemTotal:       24000000 kB\nMemFree: 1 kB\nMemAvailable:   2000 kB\n";
        assert_eq!(parse_meminfo(t), Some(2000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn output_keeps_its_tail() {
        let mut t = Tail::default();
        for _ in 0..5 {
            t.write_all(&vec![b'a'; OUTPUT_TAIL_BYTES]).unwrap();
        }
        t.write_all(b"end").unwrap();
        let s = t.text();
        assert_eq!(s.len(), OUTPUT_TAIL_BYTES);
        assert!(s.ends_with("aend"));
    }
}
