//! `lvh kernels bisect`: finds the commit of a kernel's history that made a
//! command fail or the kernel splat. Each step checks a commit out in the
//! kernel's worktree, builds it incrementally with the kernel builder (and
//! its compiler cache), runs the command through the runner's front door as
//! `lvh run` does (splat gate included), and marks the commit good, bad or
//! skip ([`decide`]); the state survives Ctrl-C ([`state`]).
//!
//! It sits beside `matrix`: it uses the kernel builder and the runner, which
//! never use each other.

pub mod decide;
pub mod error;
pub mod git;
pub mod state;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use decide::{BadOn, Mark, Next};
pub use error::BisectError;
pub use git::Commit;
pub use state::{State, Step};

use crate::cancel::CancelToken;
use crate::error::InvalidInput;
use crate::kernels::{self, KernelPlan};
use crate::progress::{self, Reporter};
use crate::runner::{Host, RunOptions, RunRequest, RunResult, Sinks, SplatPolicy};

/// What `lvh kernels bisect` was asked, validated by the binary.
#[derive(Clone, Debug)]
pub struct BisectPlan {
    /// The kernel (directory, name, arch, toolchain, jobs, cache).
    pub kernel: KernelPlan,
    pub good: String,
    pub bad: String,
    pub bad_on: BadOn,
    /// The runner's options for every step: image, command, accelerator,
    /// limits (the kernel is set per step).
    pub run: RunOptions,
    pub policy: SplatPolicy,
}

/// A bisection about to start or continue.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub tree: PathBuf,
    pub state: State,
    /// Whether a saved state is continued.
    pub resumed: bool,
}

/// How a bisection ended.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Found {
    pub kernel: String,
    pub good: Commit,
    pub bad: Commit,
    /// The first bad commit, when the skips left only one.
    pub first_bad: Option<Commit>,
    /// Otherwise the commits that could be the first bad one.
    pub candidates: Vec<Commit>,
    /// Why the first bad commit was marked bad (its crash title when a splat did).
    pub reason: Option<String>,
    pub title: Option<String>,
    pub steps: Vec<Step>,
    pub log: PathBuf,
}

fn tree_of(plan: &KernelPlan) -> Result<PathBuf, BisectError> {
    let conf = kernels::config::load(&plan.dir)?;
    if conf.kernel(&plan.name).is_none() {
        return Err(conf.unknown(&plan.name, &plan.dir).into());
    }
    let tree = kernels::layout::Layout::new(&plan.dir).tree(&plan.name);
    if !tree.join("Makefile").is_file() {
        return Err(kernels::KernelsError::NotFetched {
            name: plan.name.clone(),
            path: tree,
        }
        .into());
    }
    Ok(tree)
}

/// Checks the plan against the kernel's tree and any saved state: the
/// revisions exist, good is an ancestor of bad, something lies between; a
/// saved state of the same bisection is continued, a finished one of
/// another is replaced, an unfinished one of another is refused.
pub fn prepare(plan: &BisectPlan) -> Result<Prepared, BisectError> {
    let tree = tree_of(&plan.kernel)?;
    let good = git::resolve(&tree, &plan.good, "--good")?;
    let bad = git::resolve(&tree, &plan.bad, "--bad")?;
    let saved = state::load(&tree)?;
    let cmd = &plan.run.cmd;
    if let Some(s) = saved {
        if s.same_as(&plan.kernel.name, &good, &bad, cmd, plan.bad_on) {
            return Ok(Prepared {
                tree,
                state: s,
                resumed: true,
            });
        }
        if !s.done {
            return Err(BisectError::Other(format!(
                "another bisection of {} is under way ({}..{}, {} step(s) done; its state: {}): continue it with the same --good, --bad, --bad-on and command, or end it with `lvh kernels bisect {} --dir {} --reset`",
                s.kernel,
                short(&s.good.commit),
                short(&s.bad.commit),
                s.steps.len(),
                state::state_file(&tree).display(),
                s.kernel,
                plan.kernel.dir.display()
            )));
        }
    }
    if good == bad || !git::is_ancestor(&tree, &good, &bad)? {
        return Err(InvalidInput::value(
            "--good",
            &plan.good,
            format!(
                "is not an ancestor of --bad {} ({}): the good commit must come before the bad one",
                plan.bad,
                short(&bad)
            ),
        )
        .into());
    }
    let candidates = git::candidates(&tree, &good, &bad)?;
    if candidates.last().map(|c| c.commit.as_str()) != Some(bad.as_str()) {
        return Err(InvalidInput::value(
            "--good",
            &plan.good,
            format!("is not on the first-parent line of --bad {}", plan.bad),
        )
        .into());
    }
    let changed = git::changed_files(&tree)?;
    if !changed.is_empty() {
        return Err(BisectError::Other(format!(
            "the kernel's tree {} has local changes ({}): commit or stash them first",
            tree.display(),
            changed.join(", ")
        )));
    }
    let state = State {
        format: state::FORMAT,
        kernel: plan.kernel.name.clone(),
        good: Commit {
            subject: git::subject(&tree, &good)?,
            commit: good,
        },
        bad: candidates.last().cloned().expect("bad is a candidate"),
        restore: git::head(&tree)?,
        command: cmd.clone(),
        bad_on: plan.bad_on,
        image: plan.run.image.clone().unwrap_or_default(),
        candidates,
        steps: vec![],
        done: false,
    };
    Ok(Prepared {
        tree,
        state,
        resumed: false,
    })
}

/// The short form of a commit id.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// About how many more steps `marks` need (log2 of the open range).
pub fn steps_left(marks: &[Option<Mark>]) -> usize {
    let open = marks.iter().filter(|m| m.is_none()).count();
    (usize::BITS - open.leading_zeros()) as usize
}

/// The bisection's result from a state whose next step is not a test.
fn found(tree: &Path, s: &State, next: &Next) -> Found {
    let (first_bad, candidates) = match next {
        Next::FirstBad(i) => (Some(s.candidates[*i].clone()), vec![]),
        Next::OneOf(v) => (None, v.iter().map(|&i| s.candidates[i].clone()).collect()),
        Next::Test(_) => (None, vec![]),
    };
    let step = first_bad.as_ref().and_then(|c| s.step_of(&c.commit));
    Found {
        kernel: s.kernel.clone(),
        good: s.good.clone(),
        bad: s.bad.clone(),
        reason: match (&first_bad, step) {
            (_, Some(st)) => Some(st.reason.clone()),
            (Some(_), None) => Some("given as --bad (not run)".into()),
            _ => None,
        },
        title: step.and_then(|st| st.title.clone()),
        first_bad,
        candidates,
        steps: s.steps.clone(),
        log: state::log_file(tree),
    }
}

/// Runs (or continues) the bisection to its end. Interrupted, it keeps its
/// state and says so; finished, it checks out what HEAD was before.
pub fn run(p: Prepared, plan: &BisectPlan, reporter: &dyn Reporter) -> Result<Found, BisectError> {
    let Prepared {
        tree, mut state, ..
    } = p;
    let cancel = CancelToken::global();
    let host = Host::probe();
    state::make_steps_dir(&tree)?;
    state::save(&tree, &state)?;
    loop {
        let marks = state.marks();
        let next = decide::next(&marks);
        let Next::Test(i) = next else {
            if !state.done {
                git::checkout(&tree, &state.restore, false)
                    .or_else(|_| git::checkout(&tree, &state.restore, true))?;
                state.done = true;
                state::save(&tree, &state)?;
            }
            return Ok(found(&tree, &state, &next));
        };
        let c = state.candidates[i].clone();
        let n = state.steps.len() + 1;
        progress::info(
            reporter,
            format!(
                "bisect step {n}: {} {} (about {} step(s) left)",
                short(&c.commit),
                c.subject,
                steps_left(&marks)
            ),
        );
        let step = test_one(&tree, &c, n, plan, &host, reporter)?;
        if cancel.is_cancelled() {
            return Err(BisectError::Interrupted(state::state_file(&tree)));
        }
        let Some(step) = step else {
            return Err(BisectError::Interrupted(state::state_file(&tree)));
        };
        progress::info(
            reporter,
            format!(
                "bisect step {n}: {} is {}: {}",
                short(&c.commit),
                step.mark,
                step.reason
            ),
        );
        let at = kernels::record::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        );
        state::append_log(&tree, &state::log_line(n, &step, &at))?;
        state.steps.push(step);
        state::save(&tree, &state)?;
    }
}

fn secs(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 10.0).round() / 10.0
}

/// Checks out, builds and runs one commit; `None` when interrupted.
fn test_one(
    tree: &Path,
    c: &Commit,
    n: usize,
    plan: &BisectPlan,
    host: &Host,
    reporter: &dyn Reporter,
) -> Result<Option<Step>, BisectError> {
    git::checkout(tree, &c.commit, true)?;
    let skip = |why: String, build: f64| Step {
        commit: c.commit.clone(),
        subject: c.subject.clone(),
        mark: Mark::Skip,
        reason: why,
        title: None,
        build_seconds: build,
        run_seconds: None,
        output: None,
        console_log: None,
    };
    let t = Instant::now();
    let built = kernels::build(&plan.kernel, reporter);
    let build_seconds = secs(t);
    if CancelToken::global().is_cancelled() {
        return Ok(None);
    }
    let built = match built {
        Ok(b) => b,
        Err(e) => {
            let why = crate::error::error_chain(&e);
            let first = why.lines().next().unwrap_or_default().to_string();
            return Ok(Some(skip(
                format!("the build failed: {first}"),
                build_seconds,
            )));
        }
    };
    let base = state::make_steps_dir(tree)?.join(format!("{n:02}-{}", short(&c.commit)));
    let out_file = base.with_extension("out");
    let console = base.with_extension("console.log");
    // The run refuses a symlinked console log too, but as a failed run.
    state::check_step_file(&console)?;
    let mut o = plan.run.clone();
    o.kernel = Some(built.image.clone());
    o.console_log = Some(console.clone());
    let prepared = match crate::runner::prepare(RunRequest::new(o), host) {
        Ok(p) => p,
        Err(e) => {
            let why = crate::error::error_chain(&e);
            return Ok(Some(skip(
                format!("the run was refused: {why}"),
                build_seconds,
            )));
        }
    };
    let out = crate::fsutil::open_output(&out_file)
        .map_err(|e| BisectError::io("failed to create", &out_file, e))?;
    let err = out
        .try_clone()
        .map_err(|e| BisectError::io("failed to open", &out_file, e))?;
    let sinks = Sinks {
        stdout: Box::new(out),
        stderr: Box::new(err),
        console: None,
    };
    let t = Instant::now();
    let report = crate::runner::run_report(&prepared.plan, &plan.policy, sinks, reporter, false);
    let run_seconds = secs(t);
    let r = RunResult::new(&report.result, &report.facts);
    let summary = decide::RunSummary {
        verdict: Some(r.verdict),
        command_status: r.command_status,
        splat: r
            .splats
            .iter()
            .find(|s| s.allowed_by.is_none())
            .map(|s| s.title.clone()),
        error: r.error.clone(),
    };
    let Some((mark, reason)) = decide::mark_of(&summary, plan.bad_on) else {
        return Ok(None);
    };
    Ok(Some(Step {
        commit: c.commit.clone(),
        subject: c.subject.clone(),
        title: (mark == Mark::Bad).then_some(summary.splat).flatten(),
        mark,
        reason,
        build_seconds,
        run_seconds: Some(run_seconds),
        output: Some(out_file),
        console_log: Some(console),
    }))
}

/// `--reset`: ends the bisection of `name`: checks out what HEAD was before
/// it and removes its state (the log stays). Returns what was checked out.
pub fn reset(dir: &Path, name: &str) -> Result<Option<String>, BisectError> {
    let plan = KernelPlan::new(dir, name, crate::arch::Arch::host());
    let tree = tree_of(&plan)?;
    let Some(s) = state::load(&tree).ok().flatten() else {
        state::remove(&tree)?;
        return Ok(None);
    };
    if !s.done {
        git::checkout(&tree, &s.restore, false)
            .or_else(|_| git::checkout(&tree, &s.restore, true))?;
    }
    state::remove(&tree)?;
    Ok(Some(s.restore))
}
