//! Saved VMs, the host side: `--save-state NAME -- SETUP` boots, runs SETUP,
//! and (when it exits 0) has the guest detach its 9p shares (the serve step
//! of the guest's plan), then stops QEMU and migrates it to
//! `<dir>/states/NAME/memory` over QMP, beside a qcow2 overlay holding the
//! disk ([`state`]). `--from-state NAME -- CMD` starts QEMU with the same
//! devices and `-incoming`, continues the loaded VM and sends CMD over the
//! control port: no boot. Both are command runs of the QEMU session with
//! another disk and QMP (`session::command::Launch`); the supervision
//! (output, exit code, splats, deadlines, Ctrl-C) is command mode's.
//! Bootable images' states go over ssh instead ([`boot`]).

pub mod boot;
pub mod request;
pub mod state;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use state::StateOp;
use state::{FileId, StateMeta};

use crate::cancel::CancelToken;
use crate::exec::Cmd;
use crate::progress;
use crate::runner::error::RunError;
use crate::runner::guest::{self, shell_init, steps, ControlMsg, HostMsg};
use crate::runner::plan::decision::RunPlan;
use crate::runner::session::channel::{ControlWriter, Sinks};
use crate::runner::session::command::{self, Job, Launch, Ran, Running};
use crate::runner::session::rundir::Endpoint;
use crate::runner::session::{qmp, Ctx};
use crate::runner::verdict::outcome::Outcome;
use crate::runner::verdict::{Event, Verdict};

/// How long the guest may take to detach its shares after `save`.
const SAVE_READY: Duration = Duration::from_secs(60);
/// How long writing the VM to its file may take.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(600);

/// The metadata of a state saved from `plan` (hashes the kernel, if any).
pub fn meta_base(plan: &RunPlan, name: &str, setup: &[String]) -> Result<StateMeta, RunError> {
    let kernel = plan.kernel.clone().unwrap_or_default();
    Ok(StateMeta {
        version: state::VERSION,
        name: name.into(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        arch: plan.arch.as_str().into(),
        accel: plan.accel.as_str().into(),
        cpus: plan.cpus,
        mem: plan.mem.qemu_arg(),
        cpu_kind: plan.cpu_kind.clone(),
        root_dev: plan.root_dev.as_str().into(),
        kernel_sha256: match plan.kernel {
            Some(_) => state::sha256_file(&kernel)?,
            None => String::new(),
        },
        kernel,
        image: plan.image.clone(),
        image_format: plan.image_format.as_str().into(),
        image_id: FileId::of(&plan.image)?,
        host_mount: plan.host_mount.is_some(),
        setup: setup.to_vec(),
        booted: false,
    })
}

/// Creates `disk`, a qcow2 overlay whose backing file is the plan's image.
pub fn create_overlay(plan: &RunPlan, disk: &Path, ctx: Ctx) -> Result<(), RunError> {
    Cmd::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            plan.image_format.as_str(),
            "-b",
        ])
        .arg(&plan.image)
        .arg(disk)
        .run(ctx.reporter)?;
    Ok(())
}

/// QEMU's arguments to load the VM saved in `memory`.
pub fn incoming_args(memory: &Path) -> Vec<String> {
    vec![
        "-incoming".into(),
        format!("exec:cat {}", guest::sh_quote(&memory.to_string_lossy())),
    ]
}

/// Stops the VM behind `qmp_sock` and migrates it into the file `to`.
pub fn migrate_to(qmp_sock: &Path, to: &Path) -> Result<(), RunError> {
    let uri = format!("exec:cat > {}", guest::sh_quote(&to.to_string_lossy()));
    let mut alive = || true;
    qmp::Qmp::connect(qmp_sock, Instant::now() + SAVE_READY, &mut alive)
        .and_then(|mut q| {
            q.execute("stop", None)?;
            q.execute("migrate", Some(serde_json::json!({ "uri": uri })))?;
            q.wait_migration(Instant::now() + MIGRATE_TIMEOUT)
        })
        .map_err(|e| RunError::Setup(format!("could not save the VM to {}: {e}", to.display())))
}

/// Waits until QEMU (started with `-incoming`) loaded the saved VM, and
/// continues it.
pub fn resume(
    qmp_sock: &Path,
    deadline: Instant,
    alive: &mut dyn FnMut() -> bool,
) -> std::io::Result<()> {
    let mut q = qmp::Qmp::connect(qmp_sock, deadline, alive)?;
    match q.wait_incoming(deadline)?.as_str() {
        "running" => Ok(()),
        _ => q.execute("cont", None).map(|_| ()),
    }
}

/// "could not load the saved VM" with what QEMU said.
pub fn load_failed(e: std::io::Error, qemu_stderr: &[String]) -> RunError {
    let said = if qemu_stderr.is_empty() {
        String::new()
    } else {
        format!("\n  QEMU said:\n    {}", qemu_stderr.join("\n    "))
    };
    RunError::Setup(format!("could not load the saved VM: {e}{said}"))
}

/// Runs a command-mode plan that saves or restores a VM.
pub fn run(job: Job, op: &StateOp, sinks: Sinks, ctx: Ctx) -> Ran {
    match op {
        StateOp::Save { states, name, .. } => {
            let partial = state::Partial::new(states, name)?;
            let meta = meta_base(job.plan, name, &job.cmd.argv)?;
            let disk = partial.dir.join(state::DISK);
            create_overlay(job.plan, &disk, ctx)?;
            let mut r = command::launch(job, sinks, ctx, |dir| Launch {
                disk: Some((disk.clone(), false)),
                steps: Some(steps::save(job.cmd)),
                extra: qmp::qmp_args(&Endpoint::Qmp.path_in(dir)),
            })?;
            let verdict = r.supervise()?;
            let ended = Instant::now();
            let result = if verdict == Verdict::Done(0) {
                let saved = save(&mut r, &partial.dir.join(state::MEMORY), ctx);
                r.session.stop();
                command::report_splats(&r.watch, ctx);
                saved.map(|()| Outcome::Command(0))
            } else {
                r.conclude(verdict, job.plan, ctx)
            };
            let result = match result {
                Ok(Outcome::Command(0)) => {
                    let path = partial.commit(&meta)?;
                    progress::info(
                        ctx.reporter,
                        format!("saved the VM as {name:?} in {}", path.display()),
                    );
                    Ok(Outcome::Command(0))
                }
                Ok(Outcome::Command(code)) => {
                    progress::warn(
                        ctx.reporter,
                        format!(
                            "the setup command exited with {code}: state {name:?} was not saved"
                        ),
                    );
                    Ok(Outcome::Command(code))
                }
                other => other,
            };
            Ok((result, r.watch, ended))
        }
        StateOp::Restore { dir, .. } => {
            let memory = dir.join(state::MEMORY);
            let mut r = command::launch(job, sinks, ctx, |run| {
                let mut extra = qmp::qmp_args(&Endpoint::Qmp.path_in(run));
                extra.extend(incoming_args(&memory));
                Launch {
                    disk: Some((dir.join(state::DISK), true)),
                    steps: None,
                    extra,
                }
            })?;
            restore(&mut r, job)?;
            let verdict = r.supervise()?;
            let ended = Instant::now();
            let result = r.conclude(verdict, job.plan, ctx);
            Ok((result, r.watch, ended))
        }
    }
}

/// Continues the VM QEMU loaded and sends it the command.
fn restore(r: &mut Running, job: Job) -> Result<(), RunError> {
    let deadline = r.session.start + job.plan.boot_timeout;
    let qmp_sock = Endpoint::Qmp.path_in(r.dir.path());
    let session = &mut r.session;
    let mut alive = || session.alive();
    if let Err(e) = resume(&qmp_sock, deadline, &mut alive) {
        r.session.stop();
        return Err(load_failed(e, &r.session.stderr_lines()));
    }
    let mut w = wait_writer(&r.pumps.control, deadline)?;
    w.write_all(&shell_init::command_message(job.cmd).encode())
        .map_err(|e| RunError::io("send the command to the restored VM", e))
}

fn wait_writer(
    w: &ControlWriter,
    deadline: Instant,
) -> Result<std::os::unix::net::UnixStream, RunError> {
    loop {
        if let Some(s) = w.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return s
                .try_clone()
                .map_err(|e| RunError::io("use the control port", e));
        }
        if Instant::now() >= deadline {
            return Err(RunError::Setup(
                "QEMU never connected the guest's control port".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The setup ended well: detach the guest's shares, then migrate.
fn save(r: &mut Running, to: &Path, ctx: Ctx) -> Result<(), RunError> {
    let stage = progress::Stage::start(ctx.reporter, "saving the VM".to_string());
    let deadline = Instant::now() + SAVE_READY;
    let mut c = wait_writer(&r.pumps.control, deadline)?;
    c.write_all(&HostMsg::Save.encode())
        .map_err(|e| RunError::io("ask the guest to get ready for saving", e))?;
    let cancel = CancelToken::global();
    loop {
        match r.pumps.rx.recv_timeout(Duration::from_millis(5)) {
            Ok(Event::Control(ControlMsg::Saving)) => break,
            Ok(Event::GuestError(m) | Event::Control(ControlMsg::Error(m))) => {
                return Err(RunError::Guest(m))
            }
            Ok(Event::Panic(l)) => {
                return Err(RunError::KernelPanic {
                    line: l,
                    console: r.pumps.tail.lines(),
                })
            }
            _ => {}
        }
        if cancel.is_cancelled() {
            return Err(RunError::Interrupted);
        }
        if !r.session.alive() || Instant::now() >= deadline {
            return Err(RunError::Setup(format!(
                "the guest did not get ready to be saved within {}s",
                SAVE_READY.as_secs()
            )));
        }
    }
    migrate_to(&Endpoint::Qmp.path_in(r.dir.path()), to)?;
    stage.finish(progress::Outcome::Done);
    Ok(())
}
