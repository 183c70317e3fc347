//! The decision: [`RunPlan::decide`] checks every option, alone and with
//! the others, against what the facts say, and settles the mode, the
//! accelerator, the boot (fast boot, init, kernel command line) and the
//! limits. Pure: no file is read and no probe runs in here.

use std::path::PathBuf;
use std::time::Duration;

use super::accel::{self, Accel};
use super::cloudinit::{self, CloudInit};
use super::cmdline::{self, Init};
use super::facts::{Facts, ImageFacts};
use super::fastboot::{self, FastBoot};
use super::hostmount::ShareModel;
use super::image::ImageFormat;
use super::kcheck;
use super::limits;
use super::options::{MemSize, RootDev, RunOptions, CPUS};
use super::ports::PortForward;
use super::sharefs::{self, FsFacts, HostFs};

use crate::arch::Arch;
use crate::runner::debug::gdb::{self, GdbListen, GdbStub};
use crate::runner::error::RunError;
use crate::runner::guest::initramfs;
use crate::runner::guest::steps::ShellGuest;
use crate::runner::guest::{GuestCommand, GuestFs};
use crate::runner::saved::state::{SavedInit, StateOp};

/// What the run does once QEMU is up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run a command, stream its output, return its exit code.
    Command {
        cmd: GuestCommand,
        timeout: Option<Duration>,
    },
    /// The console on lvh's terminal (lvh becomes QEMU, as little-vm-helper did).
    Interactive,
    /// A root shell on the console with lvh's init (see `debug::shell`).
    Shell(ShellGuest),
    /// QEMU daemonizes; optionally wait until ssh answers on this host port.
    Daemon {
        ssh_port: Option<u16>,
        ssh_timeout: Duration,
    },
}

/// A validated run.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub arch: Arch,
    pub accel: Accel,
    /// Why `auto` did not use KVM, when it was there but unusable (printed once).
    pub accel_note: Option<String>,
    /// Why a command run boots the shell init where the static init would
    /// apply: this lvh has no static init for the arch (printed with `-v`).
    pub init_note: Option<String>,
    pub image: PathBuf,
    pub image_format: ImageFormat,
    pub persist: bool,
    pub kernel: Option<PathBuf>,
    pub root_dev: RootDev,
    pub cpus: u32,
    pub mem: MemSize,
    pub cpu_kind: Option<String>,
    /// `--append`, word by word.
    pub append: Vec<String>,
    pub ports: Vec<PortForward>,
    pub host_mount: Option<PathBuf>,
    /// How QEMU serves the host mount over 9p.
    pub host_mount_model: ShareModel,
    /// virtiofs or 9p (see `sharefs`).
    pub host_mount_fs: HostFs,
    /// Why `--host-mount-fs auto` took 9p (printed once).
    pub host_mount_note: Option<String>,
    pub serial_port: Option<u16>,
    pub monitor_port: Option<u16>,
    pub console_log: Option<PathBuf>,
    pub boot_timeout: Duration,
    pub qemu_args: Vec<String>,
    pub mode: Mode,
    /// How the kernel is booted (PVH vmlinux, firmware, parameters).
    pub fast: FastBoot,
    /// The guest's init.
    pub init: Init,
    /// The kernel command line (with `--kernel`).
    pub cmdline: Option<String>,
    /// `--kernel`'s configuration, where it was found (`kcheck::find`).
    pub kernel_config: Option<(kcheck::Source, kcheck::Config)>,
    pub gdb: Option<GdbStub>,
    /// `--ssh-key`: the file and the checked public keys it holds.
    pub ssh_key: Option<(PathBuf, String)>,
    /// `--save-state` / `--from-state` (see `saved`).
    pub state: Option<StateOp>,
    /// `--cloud-init`: the NoCloud seed's checked content.
    pub cloud_init: Option<CloudInit>,
}

/// `--cloud-init`: only where the image's own init boots (cloud-init runs
/// there), never with a saved VM (its devices are fixed at save time).
fn cloud_init(
    o: &RunOptions,
    f: &Facts,
    init: &Init,
    state: Option<&StateOp>,
) -> Result<Option<CloudInit>, RunError> {
    let Some(files) = &f.cloud_init else {
        if o.cloud_init_meta.is_some() {
            return Err(refused(
                cloudinit::META_FLAG,
                "needs --cloud-init USER-DATA",
            ));
        }
        return Ok(None);
    };
    if *init != Init::Image {
        return Err(refused(
            cloudinit::USER_FLAG,
            "provisions the image's own init, which a command or --shell replaces with lvh's: boot the image without a command (with --daemonize and ssh, or on the console)",
        ));
    }
    if state.is_some() {
        return Err(refused(
            cloudinit::USER_FLAG,
            "cannot be combined with --save-state or --from-state; provision once with --persist, then save or restore that image",
        ));
    }
    cloudinit::check(files, o.host_mount.is_some()).map(Some)
}

fn invalid(field: &str, value: impl std::fmt::Display, reason: &str) -> RunError {
    RunError::invalid(field, value, reason)
}

fn refused(field: &str, reason: &str) -> RunError {
    RunError::refused(field, reason)
}

impl RunPlan {
    /// Decides the run: every option checked, alone and with the others,
    /// against what `facts` found. Pure.
    pub fn decide(o: &RunOptions, f: &Facts, state: Option<StateOp>) -> Result<RunPlan, RunError> {
        limits::check_options(o)?;
        let decision = accel::decide(o.accel, o.arch, f.host, &f.kvm).map_err(RunError::Setup)?;
        let accel = decision.accel;
        if o.root_dev == RootDev::Hda && o.arch == Arch::Arm64 {
            return Err(invalid(
                "--root-dev",
                "hda",
                "not available on arm64 (the virt machine has no IDE); use vda",
            ));
        }
        if o.cpus == 0 {
            return Err(invalid(
                CPUS.flag,
                0,
                "invalid CPU count: expected 1 or more",
            ));
        }
        if let Some(k) = &f.kernel {
            if !k.is_file {
                return Err(invalid("--kernel", k.abs.display(), "no such kernel file"));
            }
        }
        if let Some(h) = &f.host_mount {
            if !h.is_dir {
                return Err(invalid(
                    "--host-mount",
                    h.abs.display(),
                    "host mount is not a directory",
                ));
            }
        }
        let (image, image_format) = match &f.image {
            ImageFacts::File { abs, format } => (abs.clone(), *format),
            ImageFacts::NotGiven => {
                return Err(refused("--image", "is required (or --from-state NAME)"))
            }
            ImageFacts::Missing(p) => {
                return Err(invalid("--image", p.display(), "no such image file"))
            }
            ImageFacts::NotAFile(p) => {
                return Err(invalid("--image", p.display(), "not a regular file"))
            }
        };
        let ssh_key = match (&o.ssh_key, &f.ssh_keys) {
            (Some(file), Some(keys)) => Some((file.clone(), keys.clone())),
            _ => None,
        };
        let mut mode = mode(o)?;
        let (host_mount_fs, host_mount_note) = host_fs(o, f, &mode, state.is_some())?;
        let guest_fs = match host_mount_fs {
            HostFs::NineP => GuestFs::NineP,
            HostFs::Virtiofs(_) => GuestFs::Virtiofs,
        };
        match &mut mode {
            Mode::Command { cmd, .. } => cmd.host_fs = guest_fs,
            Mode::Shell(g) => g.host_mount = o.host_mount.as_ref().map(|_| guest_fs),
            _ => {}
        }
        if let (Mode::Command { cmd, .. }, Some((_, keys))) = (&mut mode, &ssh_key) {
            cmd.authorized_keys = Some(keys.clone());
        }
        if o.serial_port.is_some() && matches!(mode, Mode::Command { .. }) {
            return Err(refused(
                "--serial-port",
                "is for booting without a command: in command mode lvh reads the console itself (see --console-log-file and -v)",
            ));
        }
        let append: Vec<String> = o
            .append
            .iter()
            .flat_map(|a| a.split_whitespace().map(String::from))
            .collect();
        let mut fast = FastBoot::default();
        let mut init = match mode {
            Mode::Command { .. } | Mode::Shell(_) => Init::Shell,
            _ => Init::Image,
        };
        let mut init_note = None;
        if let Some(k) = &f.kernel {
            fast = fastboot::decide(o.fast_boot, o.arch, accel, &k.found);
            if let Mode::Command { cmd, .. } = &mut mode {
                cmd.late_cpus = fastboot::add_late_cpus(&mut fast, o, &k.found, &append);
                let words = cmdline::words(o.arch, o.root_dev, &fast.cmdline, &append);
                // A save boots the static init too (its serve record waits
                // for the restores); a restore boots nothing, but QEMU must
                // have the devices of the init the state was saved with.
                let static_init = match &state {
                    Some(StateOp::Restore { meta, .. }) => meta.init == SavedInit::Static,
                    _ => o.fast_boot && cmd.authorized_keys.is_none(),
                };
                if static_init {
                    if let Some(root) = initramfs::applies(k.found.initramfs, &words, &append) {
                        match initramfs::init_binary(o.arch) {
                            Some(_) => init = Init::Static(root),
                            None => init_note = Some(initramfs::missing_note(o.arch)),
                        }
                    }
                }
            }
        }
        let cloud_init = cloud_init(o, f, &init, state.as_ref())?;
        let gdb = match o.gdb {
            Some(Some(0)) => return Err(invalid("--gdb", 0, "invalid port: expected 1-65535")),
            Some(None) if o.daemonize => {
                return Err(refused(
                    "--gdb",
                    "with --daemonize needs a port (--gdb PORT): the private socket of a bare --gdb goes away when lvh exits",
                ))
            }
            Some(port) => Some(GdbStub {
                listen: port.map_or(GdbListen::Private, GdbListen::Tcp),
                wait: o.gdb_wait,
            }),
            None if o.gdb_wait => return Err(refused("--gdb-wait", "needs --gdb")),

            None => None,
        };
        let boot_timeout = match (o.boot_timeout, &gdb) {
            (Some(t), _) => t,
            (None, Some(_)) => gdb::BOOT_TIMEOUT,
            (None, None) => accel.default_boot_timeout(),
        };
        let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        // The console shows the kernel from its first line (a saved VM's
        // run is not watched on a terminal and keeps its command line).
        let mut words = fast.cmdline.clone();
        if mode == Mode::Interactive && state.is_none() {
            words.extend(cmdline::early_console(o.arch).map(String::from));
        }
        let cmdline = f.kernel.as_ref().map(|_| {
            cmdline::kernel_cmdline(o.arch, o.root_dev, &words, &append, gdb.is_some(), &init)
        });
        let plan = RunPlan {
            arch: o.arch,
            accel,
            accel_note: decision.note,
            init_note,
            image,
            image_format,
            persist: o.persist,
            kernel: f.kernel.as_ref().map(|k| k.abs.clone()),
            root_dev: o.root_dev,
            cpus: o.cpus,
            mem: o.mem,
            cpu_kind: o.cpu_kind.clone().filter(|k| !k.is_empty()),
            append,
            ports: o.ports.clone(),
            host_mount: f.host_mount.as_ref().map(|h| h.abs.clone()),
            host_mount_model: f
                .host_mount
                .as_ref()
                .map_or(ShareModel::Passthrough, |h| h.model),
            host_mount_fs,
            host_mount_note,
            serial_port: o.serial_port,
            monitor_port: o.monitor_port,
            console_log: o.console_log.as_deref().map(abs),
            boot_timeout,
            qemu_args: o.qemu_args.clone(),
            mode,
            fast: FastBoot {
                kernel: fast.kernel.as_deref().map(abs),
                ..fast
            },
            init,
            cmdline,
            kernel_config: f.kernel.as_ref().and_then(|k| k.config.clone()),
            gdb,
            ssh_key,
            state,
            cloud_init,
        };
        if let Some(cmdline) = &plan.cmdline {
            limits::check_cmdline(cmdline, &plan.append)?;
        }
        limits::check_ports(&plan.ports, plan.serial_port, plan.monitor_port)?;
        Ok(plan)
    }

    /// What the user should know about this plan's exposure: control
    /// endpoints on TCP (any local user can connect to them) and the host
    /// mount's metadata files.
    pub fn exposure_warnings(&self) -> Vec<String> {
        let mut v = vec![];
        let tcp = |what: &str, flag: String| {
            format!("{flag}: {what} listens on TCP 127.0.0.1, where any local user can connect to it and take over the VM (and what it shares); use it only on a machine you do not share")
        };
        if let Some(p) = self.monitor_port {
            v.push(tcp("the QEMU monitor", format!("--qemu-monitor-port {p}")));
        }
        if let Some(p) = self.serial_port {
            v.push(tcp(
                "the guest's serial console",
                format!("--serial-port {p}"),
            ));
        }
        if let Some(GdbStub {
            listen: GdbListen::Tcp(p),
            ..
        }) = &self.gdb
        {
            v.push(
                tcp("the gdbstub", format!("--gdb {p}"))
                    + " (a bare --gdb listens on a socket only you can reach)",
            );
        }
        if let Some(h) = &self.host_mount {
            if self.host_mount_fs == HostFs::NineP {
                v.extend(super::hostmount::warning(self.host_mount_model, h));
            }
        }
        v
    }

    /// The virtiofsd of the host mount, when virtiofs serves it.
    pub fn virtiofs(&self) -> Option<&sharefs::Virtiofs> {
        match (&self.host_mount, &self.host_mount_fs) {
            (Some(_), HostFs::Virtiofs(v)) => Some(v),
            _ => None,
        }
    }

    /// The command and its plan for lvh's static init, when this run boots that way.
    pub fn static_init(&self) -> Option<(&GuestCommand, &crate::runner::guest::steps::RootSpec)> {
        match (&self.mode, &self.init) {
            (Mode::Command { cmd, .. }, Init::Static(root)) => Some((cmd, root)),
            _ => None,
        }
    }
}

/// How the host mount is served (see `sharefs`): virtiofs only where lvh's
/// own init mounts it and lvh supervises the run, and never in a saved VM.
fn host_fs(
    o: &RunOptions,
    f: &Facts,
    mode: &Mode,
    saved: bool,
) -> Result<(HostFs, Option<String>), RunError> {
    let Some(h) = &f.host_mount else {
        return Ok((HostFs::NineP, None));
    };
    let mode_blocks = match mode {
        _ if saved => Some("a saved VM keeps 9p (QEMU cannot save a VM with a virtiofs mount)"),
        Mode::Interactive | Mode::Daemon { .. } => {
            Some("the image's own init mounts the host share (little-vm-helper's images mount 9p)")
        }
        Mode::Command { .. } | Mode::Shell(_) => None,
    };
    let kernel_virtiofs = f
        .kernel
        .as_ref()
        .and_then(|k| k.config.as_ref())
        .map(|(_, c)| {
            ["VIRTIO_FS", "FUSE_FS"]
                .iter()
                .all(|s| c.get(*s).map(String::as_str) == Some("y"))
        });
    let facts = FsFacts {
        virtiofsd: h.virtiofsd.clone(),
        root: h.root,
        owner: h.owner,
        owner_reaches: h.owner_reaches,
        kernel_virtiofs,
        mode_blocks,
    };
    sharefs::decide(o.host_mount_fs, &facts)
        .map_err(|why| invalid("--host-mount-fs", "virtiofs", &why))
}

/// What the run does: a command, a shell, the console or a daemon.
fn mode(o: &RunOptions) -> Result<Mode, RunError> {
    if !o.cmd.is_empty() && o.shell {
        return Err(refused(
            "--shell",
            "cannot be combined with a command (-- CMD)",
        ));
    }
    if !o.cmd.is_empty() {
        if o.daemonize {
            return Err(refused(
                "--daemonize",
                "cannot be combined with a command (-- CMD): lvh waits for the command",
            ));
        }
        if o.kernel.is_none() {
            return Err(refused(
                "-- CMD",
                "running a command needs --kernel: lvh boots the kernel with its own init",
            ));
        }
        if o.cmd[0].is_empty() {
            return Err(refused("-- CMD", "the command is empty"));
        }
        return Ok(Mode::Command {
            cmd: GuestCommand {
                argv: o.cmd.clone(),
                cwd: o.cwd.clone(),
                host_mount: o.host_mount.is_some(),
                host_fs: GuestFs::NineP,
                persist: o.persist,
                authorized_keys: None,
                late_cpus: false,
            },
            timeout: o.timeout,
        });
    }
    if o.daemonize && o.shell {
        return Err(refused(
            "--shell",
            "cannot be combined with --daemonize: the shell needs lvh's terminal",
        ));
    }
    if let Some(g) = shell(o)? {
        return Ok(Mode::Shell(g));
    }
    if o.cwd.is_some() {
        return Err(refused(
            "--cwd",
            "only applies to a command (-- CMD) or a shell (--shell)",
        ));
    }
    if o.daemonize {
        let ssh_port = if o.wait_ssh {
            let p = o.ports.iter().find(|p| p.guest_port == 22).ok_or_else(|| {
                refused(
                    "--wait-ssh",
                    "needs a forward to guest port 22, e.g. -p 2222:22",
                )
            })?;
            Some(p.host_port)
        } else {
            None
        };
        return Ok(Mode::Daemon {
            ssh_port,
            ssh_timeout: o.ssh_timeout,
        });
    }
    if o.wait_ssh {
        return Err(refused(
            "--wait-ssh",
            "needs --daemonize (lvh returns once ssh answers and leaves the VM running)",
        ));
    }
    Ok(Mode::Interactive)
}

/// Whether a run without a command is lvh's shell: only with `--shell` and
/// `--kernel`. Without `--shell` the console shows the kernel from its first
/// line and the image's own init, as little-vm-helper does; without
/// `--kernel`, `--shell` is the image's own console login: `None`.
fn shell(o: &RunOptions) -> Result<Option<ShellGuest>, RunError> {
    if !o.shell || o.kernel.is_none() {
        return Ok(None);
    }
    if o.serial_port.is_some() {
        return Err(refused(
            "--shell",
            "cannot be combined with --serial-port: the shell is on lvh's terminal",
        ));
    }
    if o.wait_ssh {
        return Err(refused(
            "--wait-ssh",
            "needs --daemonize (lvh returns once ssh answers and leaves the VM running)",
        ));
    }
    Ok(Some(ShellGuest {
        host_mount: o.host_mount.as_ref().map(|_| GuestFs::NineP),
        cwd: o.cwd.clone(),
        persist: o.persist,
    }))
}
