//! `lvh kernels bisect`: flags, turned into the bisection's plan (the
//! kernel builder's and the runner's options), the `--dry-run` plan, and the
//! result (text, or `--json`).

use std::path::PathBuf;

use clap::Args;

use crate::Ctx;
use lvh::arch::Arch;
use lvh::bisect::{self, BadOn, BisectPlan};
use lvh::error::{ExitCode, InvalidInput};
use lvh::runner::{duration, parse_accel, MemSize, RunOptions, SplatMode, SplatPolicy};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # Which commit between v6.11 and HEAD makes `cat /proc/version` WARN or fail?
  lvh kernels bisect bpf-next --dir _data --good v6.11 --bad HEAD \\
      --image _data/images/base.qcow2 -- cat /proc/version

  # See the plan first; end a bisection (and check the branch out again)
  lvh kernels bisect bpf-next --dir _data --good v6.11 --bad HEAD --image I --dry-run -- true
  lvh kernels bisect bpf-next --dir _data --reset")]
pub struct BisectArgs {
    /// Kernel name (its tree <dir>/kernels/<name> is bisected)
    pub name: String,
    /// Directory to place kernels
    #[arg(long)]
    pub dir: PathBuf,
    /// A commit (or tag, branch) known to be good
    #[arg(long, value_name = "REV", required_unless_present = "reset")]
    pub good: Option<String>,
    /// A commit (or tag, branch) known to be bad; a descendant of --good
    #[arg(long, value_name = "REV", required_unless_present = "reset")]
    pub bad: Option<String>,
    /// Root image to boot every step with (a local file)
    #[arg(long, required_unless_present = "reset")]
    pub image: Option<PathBuf>,
    /// What marks a commit bad: splat (a kernel splat in the run), exit (the
    /// command's non-zero exit or timeout), or any
    #[arg(long, value_name = "WHAT", default_value = "any")]
    pub bad_on: BadOn,
    /// Print the plan (revisions, commits to search, first step) and exit
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// End the bisection: check out the branch it started from and remove its state
    #[arg(long, conflicts_with_all = ["good", "bad", "dry_run"])]
    pub reset: bool,
    /// Target architecture (amd64 or arm64)
    #[arg(long, default_value = Arch::host().as_str())]
    pub arch: Arch,
    #[command(flatten)]
    pub toolchain: crate::kbuild::ToolchainArgs,
    /// Parallel make jobs [default: the number of CPUs]
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Compiler cache: auto (ccache when it is installed), on, off
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub cache: lvh::kernels::ccache::Mode,
    /// Accelerator: kvm, tcg, or auto [default: $LVH_ACCEL, else auto]
    #[arg(long, value_name = "ACCEL")]
    pub accel: Option<String>,
    /// CPU count of each step's VM
    #[arg(long, visible_alias = "cpus", default_value_t = lvh::runner::DEFAULT_CPUS)]
    pub cpu: u32,
    /// RAM size of each step's VM
    #[arg(long, visible_alias = "memory", default_value = lvh::runner::DEFAULT_MEM)]
    pub mem: String,
    /// Seconds (or a duration) the guest may take to start the command
    #[arg(long, value_name = "SECS")]
    pub boot_timeout: Option<String>,
    /// Seconds (or a duration) CMD may run before the step's VM is stopped (a timeout is bad)
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<String>,
    /// Command to run in the guest at every step
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

fn plan(a: &BisectArgs, ctx: &Ctx) -> anyhow::Result<BisectPlan> {
    if a.cmd.is_empty() {
        return Err(
            InvalidInput::field("CMD", "give the command to run at every step after --").into(),
        );
    }
    let image = a.image.clone().unwrap_or_default();
    if !image.is_file() {
        return Err(InvalidInput::value(
            "--image",
            image.display().to_string(),
            "no such file (bisect boots a local root image)",
        )
        .into());
    }
    let env = std::env::var("LVH_ACCEL").ok().filter(|v| !v.is_empty());
    let accel = parse_accel(false, a.accel.as_deref(), env.as_deref())?;
    let mem: MemSize = a.mem.parse()?;
    let d = |flag: &str, v: &Option<String>| v.as_deref().map(|v| duration(flag, v)).transpose();
    let mut k = lvh::kernels::KernelPlan::new(&a.dir, &a.name, a.arch);
    k.strict = ctx.strict;
    k.toolchain = a.toolchain.toolchain;
    k.make_vars = a.toolchain.make_var.clone();
    k.jobs = a.jobs.map(|j| j as usize);
    k.cache = lvh::kernels::CachePlan {
        mode: a.cache,
        dir: None,
    };
    Ok(BisectPlan {
        kernel: k,
        good: a.good.clone().unwrap_or_default(),
        bad: a.bad.clone().unwrap_or_default(),
        bad_on: a.bad_on,
        run: RunOptions {
            image: Some(image),
            arch: a.arch,
            accel,
            cpus: a.cpu,
            mem,
            cmd: a.cmd.clone(),
            boot_timeout: d("--boot-timeout", &a.boot_timeout)?,
            timeout: d("--timeout", &a.timeout)?,
            ..RunOptions::default()
        },
        policy: SplatPolicy {
            mode: SplatMode::Fail,
            ..Default::default()
        },
    })
}

fn line(c: &bisect::Commit) -> String {
    format!("{} {}", bisect::short(&c.commit), c.subject)
}

pub fn dispatch(a: &BisectArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let r = &ctx.reporter;
    if a.reset {
        match bisect::reset(&a.dir, &a.name)? {
            Some(head) => r.println(&format!(
                "bisection of {} ended; checked out {head}",
                a.name
            )),
            None => r.println(&format!("no bisection of {} under way", a.name)),
        }
        return Ok(ExitCode::Success);
    }
    let plan = plan(a, ctx)?;
    let p = bisect::prepare(&plan)?;
    if a.dry_run {
        let s = &p.state;
        let marks = s.marks();
        outln!("kernel {} in {}", s.kernel, p.tree.display());
        outln!("good {}", line(&s.good));
        outln!("bad  {}", line(&s.bad));
        outln!(
            "{} commit(s) after good, up to bad (first-parent); about {} step(s) to the first bad one",
            s.candidates.len(),
            bisect::steps_left(&marks)
        );
        if p.resumed {
            outln!(
                "continuing: {} step(s) done (state {})",
                s.steps.len(),
                bisect::state::state_file(&p.tree).display()
            );
        }
        match bisect::decide::next(&marks) {
            bisect::Next::Test(i) => outln!("first step: {}", line(&s.candidates[i])),
            _ => outln!("no step left: the result is known"),
        }
        outln!(
            "each step: lvh kernels build {} --dir {}, then lvh run --kernel <its image> --image {} -- {} (bad on: {})",
            s.kernel,
            a.dir.display(),
            s.image.display(),
            s.command.join(" "),
            s.bad_on
        );
        outln!("log: {}", bisect::state::log_file(&p.tree).display());
        return Ok(ExitCode::Success);
    }
    if p.resumed && !p.state.done {
        r.println(&format!(
            "continuing the bisection of {}: {} step(s) done",
            p.state.kernel,
            p.state.steps.len()
        ));
    }
    let found = bisect::run(p, &plan, r)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&found)?);
    }
    r.println(&format!(
        "{} step(s), log {}:",
        found.steps.len(),
        found.log.display()
    ));
    for (n, s) in found.steps.iter().enumerate() {
        r.println(&format!(
            "  {} {} {:<4} build {:.1}s run {} {}",
            n + 1,
            bisect::short(&s.commit),
            s.mark.to_string(),
            s.build_seconds,
            s.run_seconds.map_or("-".into(), |x| format!("{x:.1}s")),
            s.reason
        ));
    }
    let text = match &found.first_bad {
        Some(c) => {
            let mut t = format!("first bad commit: {} {}", c.commit, c.subject);
            if let Some(title) = &found.title {
                t.push_str(&format!("\n  crash: {title}"));
            } else if let Some(why) = &found.reason {
                t.push_str(&format!("\n  marked bad: {why}"));
            }
            t
        }
        None => {
            let list: Vec<String> = found.candidates.iter().map(line).collect();
            format!(
                "the first bad commit could not be told apart (skipped commits); it is one of:\n  {}",
                list.join("\n  ")
            )
        }
    };
    if a.json {
        r.println(&text);
    } else {
        outln!("{text}");
    }
    Ok(ExitCode::Success)
}
