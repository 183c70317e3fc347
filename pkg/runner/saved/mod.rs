//! Saved VMs, the host side: `--save-state NAME -- SETUP` boots with the
//! guest's RAM in the file `<dir>/states/NAME/ram`, runs SETUP, and (when it
//! exits 0) has the guest detach its 9p shares (the serve step of the
//! guest's plan), then stops QEMU and migrates its device state to
//! `devices` over QMP, beside a qcow2 overlay holding the disk ([`state`],
//! [`layout`]). `--from-state NAME -- CMD` starts QEMU with the same devices,
//! `ram` mapped private and copy-on-write and `-incoming`, loads the device
//! state, continues the VM and sends CMD over the control port: no boot, and
//! no copy of the memory. Both are command runs of the QEMU session with
//! another disk and QMP (`session::command::Launch`); the supervision
//! (output, exit code, splats, deadlines, Ctrl-C) is command mode's.
//! Bootable images' states go over ssh instead ([`boot`]).

pub mod boot;
pub mod layout;
pub mod request;
pub mod state;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use layout::Layout;
use state::StateOp;
use state::{FileId, SavedInit, StateMeta};

use crate::cancel::CancelToken;
use crate::exec::Cmd;
use crate::progress;
use crate::runner::error::RunError;
use crate::runner::guest::{initramfs, shell_init, steps, ControlMsg, HostMsg};
use crate::runner::plan::cmdline::Init;
use crate::runner::plan::decision::RunPlan;
use crate::runner::session::channel::{ControlWriter, Sinks};
use crate::runner::session::command::{self, Job, Launch, Ran, Running};
use crate::runner::session::memory::MemoryBacking;
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
        kernel_id: match plan.kernel {
            Some(_) => Some(FileId::of(&kernel)?),
            None => None,
        },
        kernel,
        image: plan.image.clone(),
        image_format: plan.image_format.as_str().into(),
        image_id: FileId::of(&plan.image)?,
        host_mount: plan.host_mount.is_some(),
        setup: setup.to_vec(),
        booted: false,
        ram_size: 0,
        devices_sha256: String::new(),
        init: match plan.init {
            Init::Static(_) => SavedInit::Static,
            _ => SavedInit::Shell,
        },
    })
}

/// Records the saved files' size and checksum in `meta` (after the save).
pub fn record_files(meta: &mut StateMeta, state: &Path) -> Result<(), RunError> {
    let ram = state.join(layout::RAM);
    meta.ram_size = std::fs::metadata(&ram)
        .map_err(|e| RunError::io(format!("read the metadata of {}", ram.display()), e))?
        .len();
    meta.devices_sha256 = state::sha256_file(&state.join(layout::DEVICES))?;
    Ok(())
}

/// The layout of a loaded state (`state::load` refused the others).
pub fn layout_of(meta: &StateMeta) -> Result<Layout, RunError> {
    meta.layout().ok_or_else(|| {
        RunError::Setup(format!(
            "state {:?} has layout {}, which this lvh does not read",
            meta.name, meta.version
        ))
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

/// Stops the VM behind `qmp_sock` and saves its device state into the
/// state directory `to` (its RAM is already there).
pub fn migrate_to(qmp_sock: &Path, to: &Path) -> Result<(), RunError> {
    let mut alive = || true;
    qmp::Qmp::connect(qmp_sock, Instant::now() + SAVE_READY, &mut alive)
        .and_then(|mut q| {
            q.execute("stop", None)?;
            for (cmd, args) in layout::save_commands(to) {
                q.execute(cmd, Some(args))?;
            }
            q.wait_migration(Instant::now() + MIGRATE_TIMEOUT)
        })
        .map_err(|e| RunError::Setup(format!("could not save the VM to {}: {e}", to.display())))
}

/// How QEMU restores a state: its memory, its `-incoming`, and the QMP
/// commands that start the load.
pub struct Incoming {
    pub memory: MemoryBacking,
    pub args: Vec<String>,
    pub commands: Vec<(&'static str, serde_json::Value)>,
}

impl Incoming {
    pub fn new(layout: Layout, state: &Path) -> Incoming {
        Incoming {
            memory: layout::restore_memory(layout, state),
            args: layout::incoming_args(layout, state),
            commands: layout::incoming_commands(layout, state),
        }
    }
}

/// Loads the saved VM into QEMU, waits until it is loaded, and continues it
/// if it did not run by itself.
pub fn resume(
    qmp_sock: &Path,
    incoming: &Incoming,
    deadline: Instant,
    alive: &mut dyn FnMut() -> bool,
) -> std::io::Result<()> {
    let mut q = qmp::Qmp::connect(qmp_sock, deadline, alive)?;
    for (cmd, args) in &incoming.commands {
        q.execute(cmd, Some(args.clone()))?;
    }
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
            let mut meta = meta_base(job.plan, name, &job.cmd.argv)?;
            let disk = partial.dir.join(state::DISK);
            create_overlay(job.plan, &disk, ctx)?;
            let mut r = command::launch(job, sinks, ctx, |dir| Launch {
                disk: Some((disk.clone(), false)),
                steps: Some(steps::save(job.cmd, root_of(job.plan))),
                extra: qmp::qmp_args(&Endpoint::Qmp.path_in(dir)),
                memory: layout::save_memory(&partial.dir),
            })?;
            let verdict = r.supervise()?;
            let ended = Instant::now();
            let result = if verdict == Verdict::Done(0) {
                let saved = save(&mut r, &partial.dir, ctx);
                r.session.stop();
                command::report_splats(&r.watch, ctx);
                saved
                    .and_then(|()| record_files(&mut meta, &partial.dir))
                    .map(|()| Outcome::Command(0))
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
        StateOp::Restore { dir, meta, .. } => {
            let incoming = Incoming::new(layout_of(meta)?, dir);
            let mut r = command::launch(job, sinks, ctx, |run| {
                let mut extra = qmp::qmp_args(&Endpoint::Qmp.path_in(run));
                extra.extend(incoming.args.iter().cloned());
                Launch {
                    disk: Some((dir.join(state::DISK), true)),
                    steps: None,
                    extra,
                    memory: incoming.memory.clone(),
                }
            })?;
            send_command(&mut r, job, meta.init)?;
            load(&mut r, job, &incoming)?;
            let verdict = r.supervise()?;
            let ended = Instant::now();
            let result = r.conclude(verdict, job.plan, ctx);
            Ok((result, r.watch, ended))
        }
    }
}

/// The root the static init mounts, when the plan boots it.
fn root_of(plan: &RunPlan) -> Option<&steps::RootSpec> {
    match &plan.init {
        Init::Static(root) => Some(root),
        _ => None,
    }
}

/// Loads the state into the restoring QEMU and continues the VM.
fn load(r: &mut Running, job: Job, incoming: &Incoming) -> Result<(), RunError> {
    let deadline = r.session.start + job.plan.boot_timeout;
    let qmp_sock = Endpoint::Qmp.path_in(r.dir.path());
    let session = &mut r.session;
    let mut alive = || session.alive();
    if let Err(e) = resume(&qmp_sock, incoming, deadline, &mut alive) {
        r.session.stop();
        return Err(load_failed(e, &r.session.stderr_lines()));
    }
    tracing::debug!(elapsed = ?r.session.start.elapsed(), "resumed");
    Ok(())
}

/// Sends the restored VM its command, as the init serving it reads it, as
/// soon as QEMU connects the control port: while the state loads, so that
/// the guest reads it the moment it runs again.
fn send_command(r: &mut Running, job: Job, init: SavedInit) -> Result<(), RunError> {
    let deadline = r.session.start + job.plan.boot_timeout;
    let mut w = wait_writer(&r.pumps.control, deadline)?;
    let message = match init {
        SavedInit::Shell => shell_init::command_message(job.cmd),
        SavedInit::Static => initramfs::restore_message(job.cmd),
    };
    w.write_all(&message.encode())
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

/// The setup ended well: detach the guest's shares, then migrate into the
/// state directory `to`.
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
