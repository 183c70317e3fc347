//! The QEMU command line, from small pure builders (one per device or option)
//! assembled in one place, [`argv`]. Every builder returns plain strings so the
//! whole command is unit-tested as data for each arch, accelerator and flag.
//! Host directories reach the guest through [`share_args`], the one builder
//! of their devices (9p, or virtiofs through a `virtiofsd` socket, which needs
//! guest RAM that virtiofsd can map: [`MemoryBacking`]).

use std::path::{Path, PathBuf};

use super::memory::{self, MemoryBacking};
use crate::arch::Arch;
use crate::runner::debug::gdb::{self, GdbStub};
use crate::runner::guest::{PORT_CONTROL, PORT_STDERR, PORT_STDOUT};
use crate::runner::plan::accel::Accel;
use crate::runner::plan::hostmount::ShareModel;
use crate::runner::plan::image::ImageFormat;
use crate::runner::plan::options::RootDev;
use crate::runner::plan::ports::PortForward;

/// Where the guest's first serial port (its console) goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Console {
    /// A unix socket lvh listens on (command mode: lvh watches the console).
    Socket(PathBuf),
    /// lvh's terminal, with QEMU's monitor muxed in (Ctrl-A X quits); optional log copy.
    Stdio { log: Option<PathBuf> },
    /// A telnet server on 127.0.0.1 (`--serial-port`); optional log copy.
    Telnet { port: u16, log: Option<PathBuf> },
    /// A file (daemonized with `--console-log-file`).
    File(PathBuf),
    /// Nowhere.
    Null,
}

/// The guest command channel: virtio-serial ports to unix sockets lvh listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub stdout_sock: PathBuf,
    pub stderr_sock: PathBuf,
    pub control_sock: PathBuf,
}

/// A host directory shared with the guest: `--host-mount`, and the
/// read-only control share of lvh's shell init (its static init has its
/// plan in its initramfs and needs none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// QEMU's id for the device.
    pub id: &'static str,
    pub dir: PathBuf,
    /// The tag the guest mounts it by.
    pub tag: &'static str,
    pub readonly: bool,
    pub fs: ShareFs,
}

/// How a share is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareFs {
    /// QEMU's 9p server, with how guest modes and owners map to the host's.
    NineP(ShareModel),
    /// A vhost-user-fs device talking to the virtiofsd listening on `socket`.
    Virtiofs { socket: PathBuf },
}

/// Everything the command line depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuConfig {
    pub arch: Arch,
    pub accel: Accel,
    pub cpus: u32,
    pub mem: String,
    pub memory: MemoryBacking,
    pub cpu_kind: Option<String>,
    pub image: PathBuf,
    pub image_format: ImageFormat,
    pub root_dev: RootDev,
    /// Writes go to a throwaway overlay (`snapshot=on`) unless false (`--persist`).
    pub snapshot: bool,
    pub kernel: Option<PathBuf>,
    /// Firmware (`-bios`) instead of QEMU's default (SeaBIOS on x86).
    pub bios: Option<PathBuf>,
    /// `-initrd` (lvh's static init, only used with `kernel`).
    pub initrd: Option<PathBuf>,
    /// Properties added to `-machine q35` (ignored on other machines).
    pub q35_props: Vec<String>,
    /// The kernel command line (only used with `kernel`).
    pub cmdline: String,
    pub ports: Vec<PortForward>,
    /// Host directories for the guest, in device order.
    pub shares: Vec<Share>,
    pub console: Console,
    pub channel: Option<Channel>,
    pub monitor_port: Option<u16>,
    /// `-daemonize` with this pid file.
    pub daemonize: Option<PathBuf>,
    /// `--gdb`: QEMU's gdbstub on 127.0.0.1.
    pub gdb: Option<GdbStub>,
    /// `--cloud-init`'s seed drive: an inherited descriptor (see `seed`).
    pub seed_fd: Option<i32>,
    /// Extra arguments appended verbatim (`--qemu-arg`).
    pub extra: Vec<String>,
}

/// A path inside a QEMU option value: commas are doubled.
pub fn opt_path(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// No default devices, no display, exit instead of rebooting.
pub fn base_args() -> Vec<String> {
    s(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
}

/// Machine type and accelerator. An IDE root disk gets QEMU's `pc` machine,
/// which is what little-vm-helper runs `-hda` on: on q35 the same disk sits
/// behind AHCI, which needs a driver (`SATA_AHCI`) that kernels configured for
/// little-vm-helper's `hda` (`ATA_PIIX`) need not have.
///
/// `q35_props` (the fast boot's, see `fastboot::LEAN_Q35`) are added on q35 only.
/// `memory` names the RAM's backend object, if it has one ([`memory_args`]).
pub fn machine_args(
    arch: Arch,
    accel: Accel,
    dev: RootDev,
    q35_props: &[String],
    memory: &MemoryBacking,
) -> Vec<String> {
    let mut machine = match (arch, dev) {
        (Arch::Amd64, RootDev::Vda) => "q35".to_string(),
        (Arch::Amd64, RootDev::Hda) => "pc".into(),
        // gic-version=max: GICv3 under TCG, whatever the host has under KVM.
        (Arch::Arm64, _) => "virt,gic-version=max".into(),
    };
    if machine == "q35" {
        for p in q35_props {
            machine.push(',');
            machine.push_str(p);
        }
    }
    if let Some(p) = memory::machine_prop(memory) {
        machine.push(',');
        machine.push_str(&p);
    }
    vec![
        "-machine".into(),
        machine,
        "-accel".into(),
        accel.as_str().into(),
    ]
}

/// The CPU model: `--cpu-kind` if given, else `host` under KVM and `max` under
/// TCG (arm64 with the cheap implementation-defined pointer auth, which is far
/// faster to emulate than the architected one).
pub fn cpu_args(arch: Arch, accel: Accel, kind: Option<&str>) -> Vec<String> {
    let cpu = match (kind, accel, arch) {
        (Some(k), _, _) => k.to_string(),
        (None, Accel::Kvm, _) => "host".into(),
        (None, Accel::Tcg, Arch::Amd64) => "max".into(),
        (None, Accel::Tcg, Arch::Arm64) => "max,pauth-impdef=on".into(),
    };
    vec!["-cpu".into(), cpu]
}

/// vCPUs and memory. On amd64 each vCPU is its own socket: a kernel without
/// ACPI (tinyconfig, lvh's `runner` group) finds the CPUs in the MP table,
/// which holds one core per socket, and since QEMU 6.2 prefers cores a plain
/// `-smp 2` left such a guest with one CPU (`nproc` said 1).
pub fn smp_mem_args(arch: Arch, cpus: u32, mem: &str) -> Vec<String> {
    let smp = match arch {
        Arch::Amd64 => format!("{cpus},sockets={cpus},cores=1,threads=1"),
        Arch::Arm64 => cpus.to_string(),
    };
    vec!["-smp".into(), smp, "-m".into(), mem.into()]
}

/// The root disk. `snapshot=on` sends writes to a temporary overlay (created
/// by QEMU under `$TMPDIR`, which lvh points into its run directory).
pub fn drive_args(image: &Path, format: ImageFormat, dev: RootDev, snapshot: bool) -> Vec<String> {
    let iface = match dev {
        RootDev::Vda => "virtio",
        RootDev::Hda => "ide",
    };
    let mut v = format!(
        "file={},format={},if={iface},index=0,media=disk",
        opt_path(image),
        format.as_str()
    );
    if snapshot {
        v.push_str(",snapshot=on");
    }
    vec!["-drive".into(), v]
}

/// The fd set the seed drive's descriptor is added to.
const SEED_FDSET: u32 = 7;

/// The NoCloud seed: the inherited read-only descriptor `fd` as a second
/// virtio disk (the root stays the first, `/dev/vda`).
pub fn seed_args(fd: i32) -> Vec<String> {
    vec![
        "-add-fd".into(),
        format!("fd={fd},set={SEED_FDSET},opaque=cidata"),
        "-drive".into(),
        format!("file=/dev/fdset/{SEED_FDSET},format=raw,if=virtio,readonly=on,media=disk"),
    ]
}

pub fn kernel_args(kernel: &Path, cmdline: &str) -> Vec<String> {
    vec![
        "-kernel".into(),
        kernel.to_string_lossy().into_owned(),
        "-append".into(),
        cmdline.into(),
    ]
}

/// User-mode networking with a virtio NIC, and the port forwards. The NIC
/// gets no option ROM (`romfile=`): lvh never network-boots, and SeaBIOS
/// loading and running iPXE costs about 0.3 s of every boot under TCG.
pub fn net_args(ports: &[PortForward]) -> Vec<String> {
    let mut netdev = String::from("user,id=user.0");
    for p in ports {
        netdev.push(',');
        netdev.push_str(&p.hostfwd());
    }
    vec![
        "-netdev".into(),
        netdev,
        "-device".into(),
        "virtio-net-pci,netdev=user.0,romfile=".into(),
    ]
}

/// A shared host directory: 9p over virtio with its security model, or a
/// virtiofs device (virtiofsd itself enforces `readonly`, see `virtiofsd`).
pub fn share_args(sh: &Share) -> Vec<String> {
    let model = match &sh.fs {
        ShareFs::NineP(model) => model,
        ShareFs::Virtiofs { socket } => {
            return vec![
                "-chardev".into(),
                format!("socket,id={}_vfs,path={}", sh.id, opt_path(socket)),
                "-device".into(),
                format!("vhost-user-fs-pci,chardev={}_vfs,tag={}", sh.id, sh.tag),
            ]
        }
    };
    let mut fsdev = format!(
        "local,id={},path={},{}",
        sh.id,
        opt_path(&sh.dir),
        model.fsdev_opts()
    );
    if sh.readonly {
        fsdev.push_str(",readonly=on");
    }
    vec![
        "-fsdev".into(),
        fsdev,
        "-device".into(),
        format!("virtio-9p-pci,fsdev={},mount_tag={}", sh.id, sh.tag),
    ]
}

/// The command channel: three virtio-serial ports.
pub fn channel_args(ch: &Channel) -> Vec<String> {
    let mut v = s(&["-device", "virtio-serial-pci,id=lvhser"]);
    for (id, sock, name) in [
        ("lvhout", &ch.stdout_sock, PORT_STDOUT),
        ("lvherr", &ch.stderr_sock, PORT_STDERR),
        ("lvhctl", &ch.control_sock, PORT_CONTROL),
    ] {
        v.push("-chardev".into());
        v.push(format!("socket,id={id},path={}", opt_path(sock)));
        v.push("-device".into());
        v.push(format!(
            "virtserialport,bus=lvhser.0,chardev={id},name={name}"
        ));
    }
    v
}

fn with_log(mut chardev: String, log: &Option<PathBuf>) -> String {
    if let Some(l) = log {
        chardev.push_str(&format!(",logfile={},logappend=on", opt_path(l)));
    }
    chardev
}

/// The first serial port: the guest console.
pub fn console_args(c: &Console) -> Vec<String> {
    let chardev = match c {
        Console::Socket(p) => format!("socket,id=con,path={}", opt_path(p)),
        Console::Stdio { log } => with_log("stdio,id=con,mux=on,signal=off".into(), log),
        Console::Telnet { port, log } => with_log(
            format!("socket,id=con,host=127.0.0.1,port={port},server=on,wait=off,telnet=on"),
            log,
        ),
        Console::File(p) => format!("file,id=con,path={}", opt_path(p)),
        Console::Null => "null,id=con".into(),
    };
    let mut v = vec![
        "-chardev".into(),
        chardev,
        "-serial".into(),
        "chardev:con".into(),
    ];
    if matches!(c, Console::Stdio { .. }) {
        v.extend(s(&["-mon", "chardev=con,mode=readline"]));
    }
    v
}

pub fn monitor_args(port: u16) -> Vec<String> {
    vec![
        "-monitor".into(),
        format!("tcp:127.0.0.1:{port},server=on,wait=off"),
    ]
}

pub fn daemonize_args(pidfile: &Path) -> Vec<String> {
    vec![
        "-daemonize".into(),
        "-pidfile".into(),
        pidfile.to_string_lossy().into_owned(),
    ]
}

/// The whole argument list (without the program, see [`Arch::qemu_binary`]).
pub fn argv(c: &QemuConfig) -> Vec<String> {
    let mut v = base_args();
    v.extend(machine_args(
        c.arch,
        c.accel,
        c.root_dev,
        &c.q35_props,
        &c.memory,
    ));
    v.extend(cpu_args(c.arch, c.accel, c.cpu_kind.as_deref()));
    v.extend(smp_mem_args(c.arch, c.cpus, &c.mem));
    v.extend(memory::args(&c.memory, &c.mem));
    if let Some(b) = &c.bios {
        v.extend(["-bios".into(), b.to_string_lossy().into_owned()]);
    }
    v.extend(drive_args(&c.image, c.image_format, c.root_dev, c.snapshot));
    if let Some(fd) = c.seed_fd {
        v.extend(seed_args(fd));
    }
    if let Some(k) = &c.kernel {
        v.extend(kernel_args(k, &c.cmdline));
        if let Some(i) = &c.initrd {
            v.extend(["-initrd".into(), i.to_string_lossy().into_owned()]);
        }
    }
    v.extend(net_args(&c.ports));
    for sh in &c.shares {
        v.extend(share_args(sh));
    }
    v.extend(console_args(&c.console));
    if let Some(ch) = &c.channel {
        v.extend(channel_args(ch));
    }
    if let Some(p) = c.monitor_port {
        v.extend(monitor_args(p));
    }
    if let Some(pid) = &c.daemonize {
        v.extend(daemonize_args(pid));
    }
    if let Some(g) = &c.gdb {
        v.extend(gdb::qemu_args(g));
    }
    v.extend(c.extra.iter().cloned());
    v
}

#[cfg(test)]
#[path = "qemu_tests.rs"]
mod tests;
