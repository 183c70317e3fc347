//! Saved VMs, the host side: `--save-state NAME -- SETUP` boots, runs SETUP,
//! and (when it exits 0) has the guest detach its 9p shares (`serve`), then
//! stops QEMU and migrates it to `<dir>/states/NAME/memory` over QMP, beside a
//! qcow2 overlay holding the disk (`state`). `--from-state NAME -- CMD` starts
//! QEMU with the same devices and `-incoming`, continues the loaded VM and
//! sends CMD over the control port: no boot. The supervision (output, exit
//! code, splats, deadlines, Ctrl-C) is command mode's (`vm`, `verdict`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::accel::AccelChoice;
use super::allow::SplatPolicy;
use super::channel::{ControlWriter, Event};
use super::guest::{self, ControlMsg, GuestCommand};
use super::image::ImageFormat;
use super::plan::{RunOptions, RunPlan};
use super::saved_boot::SshRun;
use super::state::{self, FileId, StateMeta};
use super::verdict::{Limits, Verdict, Watch};
use super::vm::{self, Outcome, Sinks};
use super::{qemu, qmp, serve, RunError};
use crate::cancel::CancelToken;
use crate::exec::{Cmd, Io};
use crate::progress::{self, Reporter};

/// How long the guest may take to detach its shares after `save`.
const SAVE_READY: Duration = Duration::from_secs(60);
/// How long writing the VM to its file may take.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long QEMU gets to exit after SIGTERM.
const QEMU_GRACE: Duration = Duration::from_secs(5);

/// What a run does with saved VMs.
#[derive(Clone, Debug)]
pub enum StateOp {
    /// `--save-state NAME`: save into `states/NAME` after the setup command.
    Save {
        states: PathBuf,
        name: String,
        /// A bootable image: the setup command runs over ssh (`saved_boot`).
        ssh: Option<Box<SshRun>>,
    },
    /// `--from-state NAME`: the state's directory and what it was saved from.
    Restore {
        dir: PathBuf,
        meta: Box<StateMeta>,
        /// A bootable image's state: the command runs over ssh (`saved_boot`).
        ssh: Option<Box<SshRun>>,
    },
}

impl StateOp {
    /// The ssh run of a bootable image's state, if it is one.
    pub fn ssh(&self) -> Option<&SshRun> {
        match self {
            StateOp::Save { ssh, .. } | StateOp::Restore { ssh, .. } => ssh.as_deref(),
        }
    }
}

fn invalid(m: String) -> RunError {
    RunError::Invalid(m)
}

/// The checks `--save-state` adds to a plan.
/// `booted`: a bootable image without `--kernel` (see `saved_boot::prepare`).
pub fn check_save(plan: &RunPlan, booted: bool) -> Result<(), RunError> {
    if !booted && !matches!(plan.mode, super::Mode::Command { .. }) {
        return Err(invalid(
            "--save-state needs a setup command (-- SETUP), with --kernel or a bootable image"
                .into(),
        ));
    }
    if plan.persist {
        return Err(invalid(
            "--save-state keeps the disk in the state; it cannot be combined with --persist".into(),
        ));
    }
    Ok(())
}

/// `lvh run --from-state`'s options: the saved VM's kernel, machine and disk,
/// with this run's command, ports, deadlines and logs.
pub fn restore_options(
    o: &RunOptions,
    dir: &Path,
    meta: &StateMeta,
) -> Result<RunOptions, RunError> {
    if o.cmd.is_empty() {
        return Err(invalid(
            "--from-state needs a command (-- CMD): the restored VM runs it".into(),
        ));
    }
    if o.persist || o.daemonize {
        return Err(invalid(
            "--from-state runs a command on a throwaway copy: no --persist or --daemonize".into(),
        ));
    }
    if o.host_mount.is_some() != meta.host_mount {
        return Err(invalid(format!(
            "state {:?} was saved {} --host-mount: a restore needs the same devices, so {}",
            meta.name,
            if meta.host_mount { "with" } else { "without" },
            if meta.host_mount {
                "give --host-mount DIR"
            } else {
                "leave --host-mount out (or save a state with it)"
            }
        )));
    }
    let bad = |what: &str, v: &str| invalid(format!("state {:?}: bad {what} {v:?}", meta.name));
    let mut r = o.clone();
    r.image = dir.join(state::DISK);
    // A bootable image's state boots no kernel of lvh's (see `saved_boot`).
    r.kernel = (!meta.booted).then(|| meta.kernel.clone());
    r.arch = meta.arch.parse().map_err(|_| bad("arch", &meta.arch))?;
    r.accel = match meta.accel.as_str() {
        "kvm" => AccelChoice::Kvm,
        _ => AccelChoice::Tcg,
    };
    r.cpu = meta.cpus;
    r.mem = meta.mem.parse()?;
    r.cpu_kind = meta.cpu_kind.clone();
    r.root_dev = super::parse_root_dev(&meta.root_dev)?;
    Ok(r)
}

/// The metadata of a state saved from `plan` (hashes the kernel, if any).
pub(super) fn meta_base(
    plan: &RunPlan,
    name: &str,
    setup: &[String],
) -> Result<StateMeta, RunError> {
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
        root_dev: match plan.root_dev {
            qemu::RootDev::Vda => "vda".into(),
            qemu::RootDev::Hda => "hda".into(),
        },
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
pub(super) fn create_overlay(
    plan: &RunPlan,
    disk: &Path,
    reporter: &dyn Reporter,
) -> Result<(), RunError> {
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
        .run(reporter)?;
    Ok(())
}

/// Stops the VM behind `qmp_sock` and migrates it into the file `to`.
pub(super) fn migrate_to(qmp_sock: &Path, to: &Path) -> Result<(), RunError> {
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
pub(super) fn resume(
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

type Ran = Result<(Result<Outcome, RunError>, Watch, Instant), RunError>;

/// Runs a command-mode plan that saves or restores a VM.
pub(crate) fn run(
    plan: &RunPlan,
    gcmd: &GuestCommand,
    timeout: Option<Duration>,
    policy: &SplatPolicy,
    sinks: Sinks,
    reporter: &dyn Reporter,
    print_cmd: bool,
) -> Ran {
    match plan.state.as_ref().expect("a state run") {
        StateOp::Save { states, name, .. } => {
            let partial = state::Partial::new(states, name)?;
            let meta = meta_base(plan, name, &gcmd.argv)?;
            let disk = partial.dir.join(state::DISK);
            create_overlay(plan, &disk, reporter)?;
            let memory = partial.dir.join(state::MEMORY);
            let ctx = Ctx {
                plan,
                gcmd,
                timeout,
                policy,
                reporter,
                print_cmd,
            };
            let (result, watch, ended) = ctx.session(sinks, &disk, Some(&memory), None)?;
            let result = match result {
                Ok(Outcome::Command(0)) => {
                    let path = partial.commit(&meta)?;
                    progress::info(
                        reporter,
                        format!("saved the VM as {name:?} in {}", path.display()),
                    );
                    Ok(Outcome::Command(0))
                }
                Ok(Outcome::Command(code)) => {
                    progress::warn(
                        reporter,
                        format!(
                            "the setup command exited with {code}: state {name:?} was not saved"
                        ),
                    );
                    Ok(Outcome::Command(code))
                }
                other => other,
            };
            Ok((result, watch, ended))
        }
        StateOp::Restore { dir, .. } => {
            let ctx = Ctx {
                plan,
                gcmd,
                timeout,
                policy,
                reporter,
                print_cmd,
            };
            ctx.session(
                sinks,
                &dir.join(state::DISK),
                None,
                Some(&dir.join(state::MEMORY)),
            )
        }
    }
}

struct Ctx<'a> {
    plan: &'a RunPlan,
    gcmd: &'a GuestCommand,
    timeout: Option<Duration>,
    policy: &'a SplatPolicy,
    reporter: &'a dyn Reporter,
    print_cmd: bool,
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

impl Ctx<'_> {
    /// One QEMU session. Saving: boot on `disk` (written), run the setup, and
    /// on success migrate into `save_to`. Restoring: a throwaway overlay over
    /// `disk`, the VM loaded from `load_from`, then the command.
    fn session(
        &self,
        sinks: Sinks,
        disk: &Path,
        save_to: Option<&Path>,
        load_from: Option<&Path>,
    ) -> Ran {
        let plan = self.plan;
        let dir = vm::run_dir()?;
        let mut w = vm::wire(plan, self.gcmd, dir.path())?;
        let share = w
            .cfg
            .channel
            .as_ref()
            .expect("command mode")
            .share_dir
            .clone()
            .expect("a saved VM boots with the shell init");
        if save_to.is_some() {
            vm::write_file(&share.join("init"), serve::save_init_script(self.gcmd))?;
        }
        let qmp_sock = dir.path().join("qmp.sock");
        w.cfg.image = disk.to_path_buf();
        w.cfg.image_format = ImageFormat::Qcow2;
        w.cfg.snapshot = load_from.is_some();
        w.cfg.extra.extend(qmp::qmp_args(&qmp_sock));
        if let Some(m) = load_from {
            w.cfg.extra.push("-incoming".into());
            w.cfg.extra.push(format!(
                "exec:cat {}",
                guest::sh_quote(&m.to_string_lossy())
            ));
        }
        let cmd = Cmd::new(plan.arch.qemu_binary())
            .args(qemu::argv(&w.cfg))
            .env("TMPDIR", dir.path())
            .grace(QEMU_GRACE);
        if self.print_cmd {
            progress::info(self.reporter, format!("qemu command: {}", cmd.display()));
        }
        let start = Instant::now();
        let mut child = cmd.spawn(Io::Null, Io::Null, Io::Piped)?;
        let qemu_stderr = vm::collect_stderr(child.take_stderr().expect("piped stderr"));
        let pumps = vm::start_pumps(w, sinks);
        let deadline = start + plan.boot_timeout;
        if load_from.is_some() {
            let mut alive = || matches!(child.try_wait(), Ok(None));
            if let Err(e) = resume(&qmp_sock, deadline, &mut alive) {
                let _ = child.terminate();
                return Err(RunError::Setup(format!(
                    "could not load the saved VM: {e}{}",
                    qemu_lines(&qemu_stderr)
                )));
            }
            let mut c = wait_writer(&pumps.control, deadline)?;
            c.write_all(&serve::command_message(self.gcmd))
                .map_err(|e| RunError::io("send the command to the restored VM", e))?;
        }
        let limits = Limits {
            start,
            boot_timeout: plan.boot_timeout,
            timeout: self.timeout,
        };
        let mut watch = Watch::new(limits, self.policy.clone());
        let (verdict, status) = vm::supervise(&mut child, &pumps, &mut watch)?;
        let ended = Instant::now();
        if let (Some(to), Verdict::Done(0)) = (save_to, &verdict) {
            let saved = self.save(&mut child, &pumps, &qmp_sock, to);
            let _ = child.terminate();
            vm::report_splats(&watch, self.reporter);
            if let Err(e) = saved {
                return Ok((Err(e), watch, ended));
            }
            return Ok((Ok(Outcome::Command(0)), watch, ended));
        }
        let _ = child.terminate();
        vm::report_splats(&watch, self.reporter);
        let result = vm::conclude(
            verdict,
            status,
            &watch,
            plan,
            cmd.display(),
            &pumps.tail,
            &qemu_stderr,
        );
        Ok((result, watch, ended))
    }

    /// The setup ended well: detach the guest's shares, then migrate.
    fn save(
        &self,
        child: &mut crate::exec::Child,
        pumps: &vm::Pumps,
        qmp_sock: &Path,
        to: &Path,
    ) -> Result<(), RunError> {
        let stage = progress::Stage::start(self.reporter, "saving the VM".to_string());
        let deadline = Instant::now() + SAVE_READY;
        let mut c = wait_writer(&pumps.control, deadline)?;
        c.write_all(serve::SAVE)
            .map_err(|e| RunError::io("ask the guest to get ready for saving", e))?;
        let cancel = CancelToken::global();
        loop {
            match pumps.rx.recv_timeout(Duration::from_millis(5)) {
                Ok(Event::Control(ControlMsg::Saving)) => break,
                Ok(Event::GuestError(m) | Event::Control(ControlMsg::Error(m))) => {
                    return Err(RunError::Guest(m))
                }
                Ok(Event::Panic(l)) => {
                    return Err(RunError::KernelPanic {
                        line: l,
                        console: pumps.tail.lines(),
                    })
                }
                _ => {}
            }
            if cancel.is_cancelled() {
                return Err(RunError::Interrupted);
            }
            if !matches!(child.try_wait(), Ok(None)) || Instant::now() >= deadline {
                return Err(RunError::Setup(format!(
                    "the guest did not get ready to be saved within {}s",
                    SAVE_READY.as_secs()
                )));
            }
        }
        migrate_to(qmp_sock, to)?;
        stage.finish(progress::Outcome::Done);
        Ok(())
    }
}

pub(super) fn qemu_lines(t: &std::sync::Mutex<std::collections::VecDeque<String>>) -> String {
    let l: Vec<String> = t
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    if l.is_empty() {
        String::new()
    } else {
        format!("\n  QEMU said:\n    {}", l.join("\n    "))
    }
}
