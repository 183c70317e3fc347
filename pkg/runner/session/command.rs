//! Command mode, a policy of the QEMU session: boot with lvh's init (the
//! static init from an initramfs, or the shell init from the control share),
//! stream the command's output, and end the run at the first of: the
//! command's exit (after every output byte arrived), a kernel panic, a lockup
//! splat, a guest that stays silent or never starts the command before the
//! boot deadline, QEMU or virtiofsd exiting early, the command timeout, or
//! Ctrl-C. The decisions are `verdict`'s ([`Watch`]); this module moves
//! bytes and maps the verdict to the run's outcome or error. Saved VMs launch the same way
//! with another disk and more devices ([`Launch`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::channel::{self, Pumps, Sinks};
use super::memory::MemoryBacking;
use super::rundir::{RunDir, INITRAMFS_FILE};
use super::{config, qemu, virtiofsd, Ctx, Now, Session};
use crate::progress;
use crate::runner::error::RunError;
use crate::runner::guest::steps::{self, Step};
use crate::runner::guest::{initramfs, shell_init, GuestCommand};
use crate::runner::plan::cmdline::Init;
use crate::runner::plan::decision::RunPlan;
use crate::runner::plan::image::ImageFormat;
use crate::runner::verdict::allow::SplatPolicy;
use crate::runner::verdict::outcome::Outcome;
use crate::runner::verdict::splat::SplatKind;
use crate::runner::verdict::{Action, Event, Limits, Tick, Verdict, Watch};
use crate::triage::Kind;

/// How often the supervisor polls QEMU, deadlines and Ctrl-C.
const TICK: Duration = Duration::from_millis(5);

/// How a command run's machine differs from its plan's (saved VMs).
#[derive(Default)]
pub struct Launch {
    /// A qcow2 disk instead of the plan's image, and whether writes go to
    /// a throwaway overlay.
    pub disk: Option<(PathBuf, bool)>,
    /// The init's plan instead of the command's (a save's).
    pub steps: Option<Vec<Step>>,
    /// Further QEMU arguments (QMP, `-incoming`).
    pub extra: Vec<String>,
    /// The guest's memory (a state's RAM file).
    pub memory: MemoryBacking,
}

/// What a command run is: the plan, its command and deadline, the splat policy.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub plan: &'a RunPlan,
    pub cmd: &'a GuestCommand,
    pub timeout: Option<Duration>,
    pub policy: &'a SplatPolicy,
}

/// A command run under way: QEMU, the channels, the watch and the run
/// directory (in this order they go: QEMU is stopped before its files).
pub struct Running {
    pub session: Session,
    pub pumps: Pumps,
    pub watch: Watch,
    pub dir: RunDir,
}

/// Writes what the plan's init needs into the run directory.
fn write_init(
    plan: &RunPlan,
    cmd: &GuestCommand,
    dir: &RunDir,
    steps: Option<Vec<Step>>,
) -> Result<(), RunError> {
    match &plan.init {
        Init::Static(root) => {
            let steps = steps.unwrap_or_else(|| steps::command(cmd, Some(root)));
            let bytes = initramfs::archive(plan.arch, &steps)
                .ok_or_else(|| RunError::Setup(initramfs::missing_note(plan.arch)))?;
            dir.write(INITRAMFS_FILE, &bytes)?;
        }
        Init::Shell | Init::Image => {
            let steps = steps.unwrap_or_else(|| steps::command(cmd, None));
            let f = shell_init::render(&steps);
            dir.write_share(&[
                (shell_init::INIT_FILE, f.init.as_bytes()),
                (shell_init::FSTAB_FILE, f.fstab.as_bytes()),
            ])?;
        }
    }
    Ok(())
}

/// Starts a command run: the run directory with the init's files and the
/// channel's sockets, QEMU, the pumps. `launch` says, given the run
/// directory, how the machine differs from the plan's.
pub fn launch(
    job: Job,
    sinks: Sinks,
    ctx: Ctx,
    launch: impl FnOnce(&std::path::Path) -> Launch,
) -> Result<Running, RunError> {
    let Job {
        plan,
        cmd,
        timeout,
        policy,
    } = job;
    let dir = RunDir::new()?;
    let l = launch(dir.path());
    write_init(plan, cmd, &dir, l.steps)?;
    let mut cfg = config::qemu_config(plan, dir.path());
    if let Some((disk, snapshot)) = l.disk {
        cfg.image = disk;
        cfg.image_format = ImageFormat::Qcow2;
        cfg.snapshot = snapshot;
    }
    cfg.extra.extend(l.extra);
    // A restore's RAM file; otherwise the plan's (a shared memfd for virtiofs).
    if l.memory != MemoryBacking::Anonymous {
        cfg.memory = l.memory;
    }
    let (listeners, log) = dir.channels(plan.console_log.as_deref())?;
    let daemon = virtiofsd::start(&mut cfg, plan.virtiofs())?;
    let session = Session::start(plan.arch, qemu::argv(&cfg), dir.path(), ctx)?.with_daemon(daemon);
    let pumps = channel::start(listeners, log, sinks, false);
    let limits = Limits {
        start: session.start,
        boot_timeout: plan.boot_timeout,
        timeout,
    };
    Ok(Running {
        session,
        pumps,
        watch: Watch::new(limits, policy.clone()),
        dir,
    })
}

impl Running {
    /// Feeds the channels' events and the ticks to the watch until it
    /// decides; returns the verdict.
    pub fn supervise(&mut self) -> Result<Verdict, RunError> {
        let Running {
            session,
            pumps,
            watch,
            ..
        } = self;
        let (out, err) = (pumps.out.clone(), pumps.err.clone());
        let watch = std::cell::RefCell::new(watch);
        session.supervise(
            &pumps.rx,
            TICK,
            |ev: Event, at| watch.borrow_mut().take(ev, at),
            |now: &Now| {
                use std::sync::atomic::Ordering::SeqCst;
                let tick = Tick {
                    now: now.at,
                    qemu_exit: now.qemu_ended(),
                    daemon_exit: now.daemon_ended(),
                    out_bytes: out.bytes.load(SeqCst),
                    err_bytes: err.bytes.load(SeqCst),
                    cancelled: now.cancelled,
                };
                match watch.borrow_mut().next(&tick) {
                    Action::Stop(v) => Some(v),
                    Action::Wait => None,
                }
            },
        )
    }

    /// Stops QEMU, reports the splats that did not fail the run, and turns
    /// the verdict into the run's outcome or error.
    pub fn conclude(
        &mut self,
        verdict: Verdict,
        plan: &RunPlan,
        ctx: Ctx,
    ) -> Result<Outcome, RunError> {
        tracing::debug!(elapsed = ?self.session.start.elapsed(), ?verdict, "run ends");
        if matches!(verdict, Verdict::GuestError(_)) {
            // Let the console catch up so the tail shows the failure.
            std::thread::sleep(Duration::from_millis(100));
        }
        self.session.stop();
        report_splats(&self.watch, ctx);
        let tail = &self.pumps.tail;
        match verdict {
            Verdict::Done(code) => Ok(Outcome::Command(code)),
            Verdict::Splat(command_status) => Err(RunError::Splat {
                splats: self.watch.failing().into_iter().cloned().collect(),
                command_status,
            }),
            Verdict::Interrupted => Err(RunError::Interrupted),
            Verdict::Incomplete { stream, got, want } => {
                Err(RunError::Incomplete { stream, got, want })
            }
            Verdict::GuestError(msg) => Err(RunError::Guest(msg)),
            Verdict::Panic(line) => Err(RunError::KernelPanic {
                line,
                console: tail.lines(),
            }),
            Verdict::QemuFailed => Err(self.session.failed()),
            Verdict::QemuExited => Err(self.session.exited_early(tail.lines())),
            Verdict::DaemonDied => Err(self.session.daemon_died(tail.lines())),
            Verdict::NoSignOfLife => {
                Err(self.session.no_sign_of_life(plan.boot_timeout, plan.accel))
            }
            Verdict::NotStarted => Err(RunError::NotStarted {
                after: plan.boot_timeout,
                console: tail.lines(),
            }),
            Verdict::Timeout(t) => Err(RunError::CommandTimeout(t, tail.lines())),
        }
    }
}

/// Warns about the splats that did not fail the run and notes the allowed ones.
pub fn report_splats(watch: &Watch, ctx: Ctx) {
    let failing = watch.failing().len();
    for s in &watch.splats {
        match &s.allowed {
            Some((entry, reason)) => progress::info(
                ctx.reporter,
                format!(
                    "kernel splat allowed by entry {entry} of {} ({reason}): {} ({})",
                    watch
                        .policy
                        .allow_file
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    s.splat.summary(),
                    s.splat.headline()
                ),
            ),
            None if failing == 0 && s.splat.kind != SplatKind::Report(Kind::Panic) => {
                progress::warn(
                    ctx.reporter,
                    format!(
                        "kernel splat: {}\n  {}:\n    {}",
                        s.splat.summary(),
                        s.splat.headline(),
                        s.splat.lines.join("\n    ")
                    ),
                )
            }
            None => {}
        }
    }
}

/// A finished command run: its outcome or error, the watch (what it saw),
/// and when it ended.
pub type Ran = Result<(Result<Outcome, RunError>, Watch, Instant), RunError>;

/// Runs a command-mode plan.
pub fn run(job: Job, sinks: Sinks, ctx: Ctx) -> Ran {
    let mut r = launch(job, sinks, ctx, |_| Launch::default())?;
    let verdict = r.supervise()?;
    let ended = Instant::now();
    let result = r.conclude(verdict, job.plan, ctx);
    Ok((result, r.watch, ended))
}
