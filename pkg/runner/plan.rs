//! The run plan: `lvh run`'s flags as given ([`RunOptions`]) checked once and
//! turned into a [`RunPlan`] whose every value is valid, with errors that name
//! the flag and the value. The plan then yields the QEMU configuration for a
//! given run directory.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::accel::{self, Accel, AccelChoice, KvmStatus};
use super::fastboot::{self, FastBoot};
use super::gdb::{self, GdbStub};
use super::guest::{self, GuestCommand};
use super::image::ImageFormat;
use super::initramfs;
use super::kcheck;
use super::ports::{self, PortForward};
use super::qemu::{self, Channel, Console, QemuConfig, RootDev};
use super::shell::{self, ShellGuest};
use super::sshkey;
use super::RunError;
use crate::arch::Arch;

/// `lvh run`'s flags, as the binary parsed them.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// A local path: references are pulled before the runner sees them.
    pub image: PathBuf,
    pub kernel: Option<PathBuf>,
    /// From `--no-hw-accel`, `--accel` and `LVH_ACCEL` (see [`accel::choose`]).
    pub accel: AccelChoice,
    pub daemonize: bool,
    pub console_log_file: Option<PathBuf>,
    pub host_mount: Option<PathBuf>,
    pub ports: Vec<String>,
    pub serial_port: u16,
    pub cpu: u32,
    pub mem: MemSize,
    pub cpu_kind: Option<String>,
    pub qemu_monitor_port: u16,
    pub root_dev: RootDev,
    pub arch: Arch,
    pub append: Vec<String>,
    pub cmd: Vec<String>,
    pub cwd: Option<String>,
    pub persist: bool,
    pub boot_timeout: Option<Duration>,
    pub timeout: Option<Duration>,
    pub wait_ssh: bool,
    pub ssh_timeout: Duration,
    pub qemu_args: Vec<String>,
    /// Boot an x86 kernel the fast way when possible (`--fast-boot`, see `fastboot`).
    pub fast_boot: bool,
    /// `--shell`: `Some(true)` a shell, `Some(false)` the console (little-vm-helper's
    /// way); `None` a shell when there is `--kernel`, no command and stdin is a terminal.
    pub shell: Option<bool>,
    /// Whether lvh's stdin is a terminal (for the `--shell` default).
    pub stdin_tty: bool,
    /// `--gdb [PORT]` and `--gdb-wait`.
    pub gdb: Option<u16>,
    pub gdb_wait: bool,
    /// `--ssh-key`: a public key file for root's authorized_keys (see `sshkey`).
    pub ssh_key: Option<PathBuf>,
}

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
    /// A root shell on the console with lvh's init (see [`shell`]).
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
    pub image: PathBuf,
    pub image_format: ImageFormat,
    pub persist: bool,
    pub kernel: Option<PathBuf>,
    pub root_dev: RootDev,
    pub cpus: u32,
    pub mem: MemSize,
    pub cpu_kind: Option<String>,
    pub append: Vec<String>,
    pub ports: Vec<PortForward>,
    pub host_mount: Option<PathBuf>,
    pub serial_port: Option<u16>,
    pub monitor_port: Option<u16>,
    pub console_log: Option<PathBuf>,
    pub boot_timeout: Duration,
    pub qemu_args: Vec<String>,
    pub mode: Mode,
    /// How the kernel is booted (PVH vmlinux, firmware, parameters).
    pub fast: FastBoot,
    /// `--kernel`'s configuration, where it was found ([`kcheck::find`]).
    pub kernel_config: Option<(kcheck::Source, kcheck::Config)>,
    pub gdb: Option<GdbStub>,
    /// `--ssh-key`: the file and the checked public keys it holds.
    pub ssh_key: Option<(PathBuf, String)>,
    /// `--save-state` / `--from-state` (see `saved`); set after `new`.
    pub state: Option<super::saved::StateOp>,
}

/// The initramfs of lvh's static init, in the run directory.
pub const INITRAMFS_FILE: &str = "initramfs.cpio";

fn invalid(msg: String) -> RunError {
    RunError::Invalid(msg)
}

/// A RAM size (`--mem`), in bytes. Parsed as QEMU parses `-m`: a positive
/// whole number with an optional K, M, G or T suffix (any case, binary units);
/// a plain number is MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemSize(u64);

impl MemSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The size as QEMU's `-m` value, in the largest unit that divides it.
    pub fn qemu_arg(self) -> String {
        for (shift, unit) in [(40, 'T'), (30, 'G'), (20, 'M')] {
            if self.0 % (1u64 << shift) == 0 {
                return format!("{}{unit}", self.0 >> shift);
            }
        }
        format!("{}K", self.0 >> 10)
    }
}

impl FromStr for MemSize {
    type Err = RunError;

    fn from_str(mem: &str) -> Result<MemSize, RunError> {
        let t = mem.trim();
        let (num, suffix) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], Some(c)),
            _ => (t, None),
        };
        let shift = match suffix.map(|c| c.to_ascii_uppercase()) {
            None | Some('M') => Some(20),
            Some('K') => Some(10),
            Some('G') => Some(30),
            Some('T') => Some(40),
            Some(_) => None,
        };
        let n: Option<u64> = num.parse().ok();
        match (n, shift) {
            (Some(n), Some(shift)) if n > 0 && num.chars().all(|c| c.is_ascii_digit()) => n
                .checked_mul(1u64 << shift)
                .map(MemSize)
                .ok_or_else(|| bad_mem(mem)),
            _ => Err(bad_mem(mem)),
        }
    }
}

fn bad_mem(mem: &str) -> RunError {
    invalid(format!(
        "invalid memory size {mem:?} (--mem): expected a positive number with an optional K, M, G or T suffix, e.g. 4G or 512M"
    ))
}

/// `--root-dev`: `vda`, or `hda` and its alias `sda`.
pub fn parse_root_dev(s: &str) -> Result<RootDev, RunError> {
    RootDev::parse(s).ok_or_else(|| {
        invalid(format!(
            "invalid root device {s:?} (--root-dev): expected vda, hda or sda"
        ))
    })
}

/// `--no-hw-accel`, `--accel` and `LVH_ACCEL` as the accelerator choice.
pub fn parse_accel(
    no_hw_accel: bool,
    flag: Option<&str>,
    env: Option<&str>,
) -> Result<AccelChoice, RunError> {
    accel::choose(no_hw_accel, flag, env).map_err(|e| invalid(e.to_string()))
}

fn check_image(p: &Path) -> Result<PathBuf, RunError> {
    if p.is_file() {
        Ok(p.to_path_buf())
    } else if p.exists() {
        Err(invalid(format!(
            "image {} (--image) is not a regular file",
            p.display()
        )))
    } else {
        Err(invalid(format!(
            "no such image file {} (--image)",
            p.display()
        )))
    }
}

impl RunPlan {
    /// Checks every flag. `kvm_opens`: whether `/dev/kvm` opens (see [`RunPlan::with_kvm`]).
    pub fn new(o: &RunOptions, kvm_opens: bool) -> Result<RunPlan, RunError> {
        let kvm = if kvm_opens {
            KvmStatus::Usable
        } else {
            KvmStatus::Missing
        };
        Self::with_kvm(o, &kvm)
    }

    /// Checks every flag. `kvm` is what was found out about KVM (see
    /// [`super::kvm_probe::status`]; passed in so this stays pure).
    pub fn with_kvm(o: &RunOptions, kvm: &KvmStatus) -> Result<RunPlan, RunError> {
        super::limits::check_options(o)?;
        let decision =
            accel::decide(o.accel, o.arch, Arch::host(), kvm).map_err(RunError::Setup)?;
        let accel = decision.accel;
        let root_dev = o.root_dev;
        if root_dev == RootDev::Hda && o.arch == Arch::Arm64 {
            return Err(invalid(
                "--root-dev hda is not available on arm64 (the virt machine has no IDE); use vda"
                    .into(),
            ));
        }
        if o.cpu == 0 {
            return Err(invalid(
                "invalid CPU count 0 (--cpu): expected 1 or more".into(),
            ));
        }
        let ports = ports::parse_all(&o.ports).map_err(|e| invalid(e.to_string()))?;
        if let Some(k) = &o.kernel {
            if !k.is_file() {
                return Err(invalid(format!(
                    "no such kernel file {} (--kernel)",
                    k.display()
                )));
            }
        }
        if let Some(h) = &o.host_mount {
            if !h.is_dir() {
                return Err(invalid(format!(
                    "host mount {} (--host-mount) is not a directory",
                    h.display()
                )));
            }
        }
        let image = check_image(&o.image)?;
        let image_format = ImageFormat::detect(&image)
            .map_err(|e| RunError::io(format!("read image {}", image.display()), e))?;
        let ssh_key = match &o.ssh_key {
            Some(f) => Some((f.clone(), sshkey::read_public_keys(f)?)),
            None => None,
        };
        let mut mode = Self::mode(o, &ports)?;
        if let (Mode::Command { cmd, .. }, Some((_, keys))) = (&mut mode, &ssh_key) {
            cmd.authorized_keys = Some(keys.clone());
        }
        let serial_port = (o.serial_port != 0).then_some(o.serial_port);
        if serial_port.is_some() && matches!(mode, Mode::Command { .. }) {
            return Err(invalid(
                "--serial-port is for booting without a command: in command mode lvh reads the console itself (see --console-log-file and -v)".into(),
            ));
        }
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        // What `--kernel` really is: a symlink to a build tree's bzImage has
        // its .config and vmlinux beside the file it points to.
        let real_kernel = o
            .kernel
            .as_deref()
            .map(|k| std::fs::canonicalize(k).unwrap_or_else(|_| abs(k)));
        // Read once: the boot-speed decisions and the check before booting use it.
        let kernel_config = real_kernel
            .as_deref()
            .and_then(kcheck::find)
            .map(|(source, text)| (source, kcheck::parse(&text)));
        let append: Vec<String> = o
            .append
            .iter()
            .flat_map(|a| a.split_whitespace().map(String::from))
            .collect();
        let mut fast = FastBoot::default();
        if let Some(k) = &real_kernel {
            let found = fastboot::find(k, o.arch, kernel_config.as_ref().map(|(_, c)| c));
            fast = fastboot::decide(o.fast_boot, o.arch, accel, &found);
            if let Mode::Command { cmd, .. } = &mut mode {
                cmd.late_cpus = fastboot::add_late_cpus(&mut fast, o, &found, &append);
                let mut words = qemu::base_cmdline(o.arch, root_dev);
                words.extend(fast.cmdline.iter().cloned());
                words.extend(append.iter().cloned());
                fast.initramfs = (o.fast_boot && cmd.authorized_keys.is_none())
                    .then(|| initramfs::usable(o.arch, found.initramfs, &words, &append))
                    .flatten();
            }
        }
        let gdb = match o.gdb {
            Some(0) => return Err(invalid("invalid port 0 (--gdb): expected 1-65535".into())),
            Some(port) => Some(GdbStub {
                port,
                wait: o.gdb_wait,
            }),
            None if o.gdb_wait => return Err(invalid("--gdb-wait needs --gdb".into())),
            None => None,
        };
        let boot_timeout = match (o.boot_timeout, gdb) {
            (Some(t), _) => t,
            (None, Some(_)) => gdb::BOOT_TIMEOUT,
            (None, None) => accel.default_boot_timeout(),
        };
        let plan = RunPlan {
            arch: o.arch,
            accel,
            accel_note: decision.note,
            image: abs(&image),
            image_format,
            persist: o.persist,
            kernel: o.kernel.as_deref().map(abs),
            root_dev,
            cpus: o.cpu,
            mem: o.mem,
            cpu_kind: o.cpu_kind.clone().filter(|k| !k.is_empty()),
            append,
            ports,
            host_mount: o.host_mount.as_deref().map(abs),
            serial_port,
            monitor_port: (o.qemu_monitor_port != 0).then_some(o.qemu_monitor_port),
            console_log: o.console_log_file.as_deref().map(abs),
            boot_timeout,
            qemu_args: o.qemu_args.clone(),
            mode,
            ssh_key,
            state: None,
            gdb,
            fast: FastBoot {
                kernel: fast.kernel.as_deref().map(abs),
                ..fast
            },
            kernel_config,
        };
        super::limits::check_plan(&plan)?;
        Ok(plan)
    }

    fn mode(o: &RunOptions, ports: &[PortForward]) -> Result<Mode, RunError> {
        if !o.cmd.is_empty() && o.shell == Some(true) {
            return Err(invalid(
                "--shell cannot be combined with a command (-- CMD)".into(),
            ));
        }
        if !o.cmd.is_empty() {
            if o.daemonize {
                return Err(invalid(
                    "--daemonize cannot be combined with a command (-- CMD): lvh waits for the command"
                        .into(),
                ));
            }
            if o.kernel.is_none() {
                return Err(invalid(
                    "running a command (-- CMD) needs --kernel: lvh boots the kernel with its own init".into(),
                ));
            }
            if o.cmd[0].is_empty() {
                return Err(invalid("the command (-- CMD) is empty".into()));
            }
            return Ok(Mode::Command {
                cmd: GuestCommand {
                    argv: o.cmd.clone(),
                    cwd: o.cwd.clone(),
                    host_mount: o.host_mount.is_some(),
                    persist: o.persist,
                    authorized_keys: None,
                    late_cpus: false,
                },
                timeout: o.timeout,
            });
        }
        if o.daemonize && o.shell == Some(true) {
            return Err(invalid(
                "--shell cannot be combined with --daemonize: the shell needs lvh's terminal"
                    .into(),
            ));
        }
        if let Some(g) = shell::choose(o)? {
            return Ok(Mode::Shell(g));
        }
        if o.cwd.is_some() {
            return Err(invalid(
                "--cwd only applies to a command (-- CMD) or a shell (--shell)".into(),
            ));
        }
        if o.daemonize {
            let ssh_port = if o.wait_ssh {
                let p = ports.iter().find(|p| p.guest_port == 22).ok_or_else(|| {
                    invalid("--wait-ssh needs a forward to guest port 22, e.g. -p 2222:22".into())
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
            return Err(invalid(
                "--wait-ssh needs --daemonize (lvh returns once ssh answers and leaves the VM running)"
                    .into(),
            ));
        }
        Ok(Mode::Interactive)
    }

    /// The command that lvh's static init runs from an initramfs
    /// ([`initramfs`]), when this run boots that way: a command run with a
    /// kernel that can (decided in `new`), not restoring or saving a VM.
    pub fn initramfs_command(&self) -> Option<&GuestCommand> {
        match &self.mode {
            Mode::Command { cmd, .. } if self.fast.initramfs.is_some() && self.state.is_none() => {
                Some(cmd)
            }
            _ => None,
        }
    }

    /// The kernel command line (only used with `--kernel`).
    pub fn cmdline(&self) -> String {
        let mut base = qemu::base_cmdline(self.arch, self.root_dev);
        base.extend(self.fast.cmdline.iter().cloned());
        let (mut append, after) = gdb::cmdline_args(self.arch, self.gdb.is_some());
        append.extend(self.append.iter().cloned());
        let mut line = match &self.mode {
            Mode::Command { .. } if self.initramfs_command().is_some() => {
                let mut parts = base;
                parts.extend(initramfs::cmdline_params());
                parts.extend(append);
                parts.join(" ")
            }
            Mode::Command { .. } | Mode::Shell(_) => guest::command_cmdline(&base, &append),
            _ => {
                let mut parts = base;
                parts.extend(append);
                parts.join(" ")
            }
        };
        for a in after {
            line.push(' ');
            line.push_str(&a);
        }
        line
    }

    /// `--qemu-arg`s, after the systemd credential of `--ssh-key` when the
    /// image's own init boots (command mode gives the keys to lvh's init).
    fn extra_args(&self) -> Vec<String> {
        let mut v = match (&self.mode, &self.ssh_key) {
            (Mode::Command { .. }, _) | (_, None) => vec![],
            (_, Some((_, keys))) => sshkey::credential_args(keys),
        };
        v.extend(self.qemu_args.iter().cloned());
        v
    }

    /// The QEMU configuration for a run whose private files live in `run_dir`.
    pub fn qemu_config(&self, run_dir: &Path) -> QemuConfig {
        let (console, channel) = match &self.mode {
            Mode::Command { .. } | Mode::Shell(_) => (
                Console::Socket(run_dir.join("console.sock")),
                Some(Channel {
                    stdout_sock: run_dir.join("stdout.sock"),
                    stderr_sock: run_dir.join("stderr.sock"),
                    control_sock: run_dir.join("control.sock"),
                    share_dir: self
                        .initramfs_command()
                        .is_none()
                        .then(|| run_dir.join("share")),
                }),
            ),
            Mode::Interactive => (
                match self.serial_port {
                    Some(port) => Console::Telnet {
                        port,
                        log: self.console_log.clone(),
                    },
                    None => Console::Stdio {
                        log: self.console_log.clone(),
                    },
                },
                None,
            ),
            Mode::Daemon { .. } => (
                match (self.serial_port, &self.console_log) {
                    (Some(port), log) => Console::Telnet {
                        port,
                        log: log.clone(),
                    },
                    (None, Some(log)) => Console::File(log.clone()),
                    (None, None) => Console::Null,
                },
                None,
            ),
        };
        let daemonize = matches!(self.mode, Mode::Daemon { .. }).then(|| run_dir.join("qemu.pid"));
        QemuConfig {
            arch: self.arch,
            accel: self.accel,
            cpus: self.cpus,
            mem: self.mem.qemu_arg(),
            cpu_kind: self.cpu_kind.clone(),
            image: self.image.clone(),
            image_format: self.image_format,
            root_dev: self.root_dev,
            snapshot: !self.persist,
            kernel: self.fast.kernel.clone().or_else(|| self.kernel.clone()),
            bios: self.fast.bios.clone(),
            initrd: self
                .initramfs_command()
                .map(|_| run_dir.join(INITRAMFS_FILE)),
            // A saved VM keeps QEMU's stock q35: its devices must match
            // between the save and every restore, whatever --fast-boot says.
            q35_props: match self.state {
                Some(_) => vec![],
                None => self.fast.q35_props.clone(),
            },
            cmdline: self.cmdline(),
            ports: self.ports.clone(),
            host_mount: self.host_mount.clone(),
            console,
            channel,
            monitor_port: self.monitor_port,
            daemonize,
            gdb: self.gdb,
            extra: self.extra_args(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn options(dir: &Path) -> RunOptions {
        let image = dir.join("root.img");
        let kernel = dir.join("bzImage");
        std::fs::write(&image, b"\0\0\0\0").unwrap();
        std::fs::write(&kernel, b"k").unwrap();
        RunOptions {
            image,
            kernel: Some(kernel),
            accel: AccelChoice::Tcg,
            daemonize: false,
            console_log_file: None,
            host_mount: None,
            ports: vec![],
            serial_port: 0,
            cpu: 2,
            mem: "4G".parse().unwrap(),
            cpu_kind: None,
            qemu_monitor_port: 0,
            root_dev: RootDev::Vda,
            arch: Arch::Amd64,
            append: vec![],
            cmd: vec!["true".into()],
            cwd: None,
            persist: false,
            boot_timeout: None,
            timeout: None,
            wait_ssh: false,
            ssh_timeout: Duration::from_secs(300),
            qemu_args: vec![],
            // Host-dependent (qboot, the host's TSC): covered by fastboot's tests.
            fast_boot: false,
            shell: None,
            stdin_tty: false,
            gdb: None,
            gdb_wait: false,
            ssh_key: None,
        }
    }

    fn err(o: &RunOptions) -> String {
        RunPlan::new(o, false).unwrap_err().to_string()
    }

    #[test]
    fn memory_sizes() {
        const M: u64 = 1 << 20;
        for (ok, bytes, qemu) in [
            ("4G", 4096 * M, "4G"),
            ("512M", 512 * M, "512M"),
            ("4096", 4096 * M, "4G"),
            ("1g", 1024 * M, "1G"),
            ("2T", 2 * 1024 * 1024 * M, "2T"),
            ("1536k", 1536 * 1024, "1536K"),
            (" 8G ", 8192 * M, "8G"),
        ] {
            let m: MemSize = ok.parse().unwrap();
            assert_eq!((m.bytes(), m.qemu_arg().as_str()), (bytes, qemu), "{ok}");
        }
        for bad in [
            "",
            "0",
            "4X",
            "G",
            "-1G",
            "4.5G",
            "4 G",
            "99999999999T",
            "lots",
        ] {
            let e = bad.parse::<MemSize>().unwrap_err().to_string();
            assert!(
                e.contains(&format!("invalid memory size {bad:?} (--mem)")),
                "{e}"
            );
        }
    }

    #[test]
    fn root_devs_and_accels() {
        assert_eq!(parse_root_dev("vda").unwrap(), RootDev::Vda);
        assert_eq!(parse_root_dev("hda").unwrap(), RootDev::Hda);
        assert_eq!(parse_root_dev("sda").unwrap(), RootDev::Hda);
        let e = parse_root_dev("sdb").unwrap_err().to_string();
        assert!(e.contains("\"sdb\" (--root-dev)"), "{e}");
        assert_eq!(
            parse_accel(true, Some("kvm"), None).unwrap(),
            AccelChoice::Tcg
        );
        assert_eq!(
            parse_accel(false, None, Some("kvm")).unwrap(),
            AccelChoice::Kvm
        );
        let e = parse_accel(false, Some("hvf"), None).unwrap_err();
        assert!(matches!(e, RunError::Invalid(_)) && e.to_string().contains("\"hvf\""));
    }

    #[test]
    fn a_good_plan() {
        let d = tempfile::tempdir().unwrap();
        let p = RunPlan::new(&options(d.path()), true).unwrap();
        assert_eq!(p.accel, Accel::Tcg);
        assert_eq!(p.image_format, ImageFormat::Raw);
        assert!(matches!(p.mode, Mode::Command { .. }));
        assert_eq!(p.boot_timeout, Accel::Tcg.default_boot_timeout());
        let c = p.qemu_config(Path::new("/run/x"));
        assert!(c.snapshot);
        assert_eq!(c.console, Console::Socket("/run/x/console.sock".into()));
        assert_eq!(
            c.channel.unwrap().share_dir,
            Some(PathBuf::from("/run/x/share"))
        );
        assert!(c
            .cmdline
            .starts_with("root=/dev/vda rw console=ttyS0 panic=-1 i8042.noaux i8042.nokbd no_timer_check ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off init=/bin/sh -c \":;mount"));
    }

    #[test]
    fn bad_flags_name_flag_and_value() {
        let d = tempfile::tempdir().unwrap();
        let base = options(d.path());
        type Edit = Box<dyn Fn(&mut RunOptions)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|o| o.ports = vec!["x:22".into()]),
                "\"x:22\" (--port)",
            ),
            (Box::new(|o| o.cpu = 0), "(--cpu)"),
            (
                Box::new(|o| o.kernel = Some("/nonexistent/bzImage".into())),
                "no such kernel file /nonexistent/bzImage (--kernel)",
            ),
            (
                Box::new(|o| o.image = "/nonexistent/root.img".into()),
                "no such image file /nonexistent/root.img (--image)",
            ),
            (
                Box::new(|o| o.host_mount = Some("/nonexistent/src".into())),
                "/nonexistent/src (--host-mount) is not a directory",
            ),
            (
                Box::new(|o| o.daemonize = true),
                "--daemonize cannot be combined",
            ),
            (Box::new(|o| o.kernel = None), "needs --kernel"),
            (
                Box::new(|o| o.serial_port = 4444),
                "--serial-port is for booting",
            ),
            (
                Box::new(|o| {
                    o.cmd.clear();
                    o.daemonize = true;
                    o.wait_ssh = true;
                }),
                "--wait-ssh needs a forward to guest port 22",
            ),
            (
                Box::new(|o| {
                    o.cmd.clear();
                    o.wait_ssh = true;
                }),
                "--wait-ssh needs --daemonize",
            ),
            (
                Box::new(|o| {
                    o.arch = Arch::Arm64;
                    o.root_dev = RootDev::Hda;
                }),
                "not available on arm64",
            ),
        ];
        for (edit, want) in cases {
            let mut o = base.clone();
            edit(&mut o);
            let e = err(&o);
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
    }

    #[test]
    fn modes_and_consoles() {
        let d = tempfile::tempdir().unwrap();
        let mut o = options(d.path());
        o.cmd.clear();
        let p = RunPlan::new(&o, false).unwrap();
        assert_eq!(p.mode, Mode::Interactive);
        let c = p.qemu_config(Path::new("/r"));
        assert_eq!(c.console, Console::Stdio { log: None });
        assert_eq!(
            c.cmdline,
            "root=/dev/vda rw console=ttyS0 panic=-1 i8042.noaux i8042.nokbd no_timer_check"
        );

        o.daemonize = true;
        o.wait_ssh = true;
        o.ports = vec!["2222:22".into()];
        o.console_log_file = Some("/tmp/c.log".into());
        o.persist = true;
        o.append = vec!["quiet loglevel=3".into()];
        let p = RunPlan::new(&o, false).unwrap();
        assert!(matches!(
            p.mode,
            Mode::Daemon {
                ssh_port: Some(2222),
                ..
            }
        ));
        let c = p.qemu_config(Path::new("/r"));
        assert_eq!(c.console, Console::File("/tmp/c.log".into()));
        assert_eq!(c.daemonize, Some(PathBuf::from("/r/qemu.pid")));
        assert!(!c.snapshot);
        assert!(c
            .cmdline
            .ends_with("panic=-1 i8042.noaux i8042.nokbd no_timer_check quiet loglevel=3"));
    }

    #[test]
    fn accel_choices_resolve() {
        let d = tempfile::tempdir().unwrap();
        let mut o = options(d.path());
        o.accel = AccelChoice::Kvm;
        assert_eq!(RunPlan::new(&o, true).unwrap().accel, Accel::Kvm);
        let e = RunPlan::new(&o, false).unwrap_err().to_string();
        assert!(e.contains("--accel kvm: there is no /dev/kvm"), "{e}");
        let broken = KvmStatus::Broken("too slow".into());
        let p = RunPlan::with_kvm(&o, &broken).unwrap();
        assert_eq!(
            (p.accel, p.accel_note),
            (Accel::Kvm, None),
            "explicit kvm is obeyed"
        );
        o.accel = AccelChoice::Auto;
        let p = RunPlan::with_kvm(&o, &broken).unwrap();
        assert_eq!(p.accel, Accel::Tcg);
        assert!(p.accel_note.unwrap().ends_with(": too slow"));
        assert_eq!(p.boot_timeout, Accel::Tcg.default_boot_timeout());
        o.accel = AccelChoice::Tcg;
        assert_eq!(RunPlan::new(&o, true).unwrap().accel, Accel::Tcg);
        o.accel = AccelChoice::Auto;
        assert_eq!(RunPlan::new(&o, true).unwrap().accel, Accel::Kvm);
        assert_eq!(RunPlan::new(&o, false).unwrap().accel, Accel::Tcg);
    }
}

#[cfg(test)]
#[path = "plan_modes_tests.rs"]
mod modes_tests;
