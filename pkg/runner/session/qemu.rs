//! The QEMU command line, from small pure builders (one per device or option)
//! assembled in one place, [`argv`]. Every builder returns plain strings so the
//! whole command is unit-tested as data for each arch, accelerator and flag.
//! Host directories reach the guest through [`share_args`], the one builder
//! of their devices (9p, or virtiofs through a `virtiofsd` socket, which needs
//! guest RAM that virtiofsd can map: [`MemoryBacking`]).

use std::path::{Path, PathBuf};

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

/// Where guest RAM lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryBacking {
    /// QEMU's private anonymous memory (the default, no `-object`).
    Anonymous,
    /// A shared memfd: vhost-user devices (virtiofsd) map guest RAM.
    SharedMemfd,
}

/// The id of the memory backend object.
const MEM_ID: &str = "lvhmem";

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
    if *memory != MemoryBacking::Anonymous {
        machine.push_str(&format!(",memory-backend={MEM_ID}"));
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

/// The RAM's backend object of `size` (`-m`'s value), if not QEMU's default.
pub fn memory_args(memory: &MemoryBacking, size: &str) -> Vec<String> {
    match memory {
        MemoryBacking::Anonymous => vec![],
        MemoryBacking::SharedMemfd => vec![
            "-object".into(),
            format!("memory-backend-memfd,id={MEM_ID},size={size},share=on"),
        ],
    }
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
    v.extend(memory_args(&c.memory, &c.mem));
    if let Some(b) = &c.bios {
        v.extend(["-bios".into(), b.to_string_lossy().into_owned()]);
    }
    v.extend(drive_args(&c.image, c.image_format, c.root_dev, c.snapshot));
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
mod tests {
    use super::*;

    fn config(arch: Arch, accel: Accel) -> QemuConfig {
        QemuConfig {
            arch,
            accel,
            cpus: 2,
            mem: "4G".into(),
            memory: MemoryBacking::Anonymous,
            cpu_kind: None,
            image: "/i/base.qcow2".into(),
            image_format: ImageFormat::Qcow2,
            root_dev: RootDev::Vda,
            snapshot: true,
            kernel: Some("/k/bzImage".into()),
            bios: None,
            initrd: None,
            q35_props: vec![],
            cmdline: "root=/dev/vda".into(),
            ports: vec![],
            shares: vec![],
            console: Console::Socket("/r/console.sock".into()),
            channel: None,
            monitor_port: None,
            daemonize: None,
            gdb: None,
            extra: vec![],
        }
    }

    fn joined(c: &QemuConfig) -> String {
        argv(c).join(" ")
    }

    #[test]
    fn machine_and_cpu_per_arch_and_accel() {
        use Accel::*;
        use Arch::*;
        for (arch, accel, want) in [
            (Amd64, Kvm, "-machine q35 -accel kvm -cpu host"),
            (Amd64, Tcg, "-machine q35 -accel tcg -cpu max"),
            (
                Arm64,
                Kvm,
                "-machine virt,gic-version=max -accel kvm -cpu host",
            ),
            (
                Arm64,
                Tcg,
                "-machine virt,gic-version=max -accel tcg -cpu max,pauth-impdef=on",
            ),
        ] {
            let j = joined(&config(arch, accel));
            assert!(j.contains(want), "{arch} {accel}: {j}");
            assert!(
                j.starts_with("-nodefaults -no-user-config -display none -no-reboot"),
                "{j}"
            );
        }
    }

    #[test]
    fn cpu_kind_overrides_the_default() {
        for arch in Arch::ALL {
            for accel in [Accel::Kvm, Accel::Tcg] {
                let mut c = config(arch, accel);
                c.cpu_kind = Some("kvm64".into());
                let smp = match arch {
                    Arch::Amd64 => "2,sockets=2,cores=1,threads=1",
                    Arch::Arm64 => "2",
                };
                assert!(joined(&c).contains(&format!("-cpu kvm64 -smp {smp} -m 4G")));
            }
        }
    }

    #[test]
    fn drive_snapshot_and_persist() {
        let c = config(Arch::Amd64, Accel::Tcg);
        assert!(joined(&c).contains(
            "-drive file=/i/base.qcow2,format=qcow2,if=virtio,index=0,media=disk,snapshot=on"
        ));
        let mut p = c.clone();
        p.snapshot = false;
        p.image_format = ImageFormat::Raw;
        p.image = "/i/a,b.img".into();
        assert!(joined(&p)
            .contains("-drive file=/i/a,,b.img,format=raw,if=virtio,index=0,media=disk -kernel"));
    }

    /// Every --root-dev value little-vm-helper takes (and `sda`, the guest's
    /// name for `hda`): the bus, the machine that bus works on, and root=.
    #[test]
    fn root_devices() {
        for (name, machine, drive, root) in [
            ("vda", "-machine q35", "if=virtio,index=0", "root=/dev/vda"),
            ("hda", "-machine pc ", "if=ide,index=0", "root=/dev/sda"),
            ("sda", "-machine pc ", "if=ide,index=0", "root=/dev/sda"),
        ] {
            let mut c = config(Arch::Amd64, Accel::Tcg);
            c.root_dev = RootDev::parse(name).unwrap();
            c.cmdline = crate::runner::plan::cmdline::base(Arch::Amd64, c.root_dev).join(" ");
            let j = joined(&c);
            for want in [machine, drive, root] {
                assert!(j.contains(want), "{name}: {want} not in {j}");
            }
        }
    }

    #[test]
    fn kernel_and_cmdline() {
        let c = config(Arch::Arm64, Accel::Tcg);
        let a = argv(&c);
        let i = a.iter().position(|x| x == "-kernel").unwrap();
        assert_eq!(a[i + 1], "/k/bzImage");
        assert_eq!(a[i + 2], "-append");
        assert_eq!(a[i + 3], "root=/dev/vda");
        let mut b = c.clone();
        b.bios = Some("/q/qboot.rom".into());
        assert!(joined(&b).contains("-m 4G -bios /q/qboot.rom -drive"));
        let mut n = c;
        n.kernel = None;
        assert!(!argv(&n).iter().any(|x| x == "-kernel" || x == "-append"));
    }

    #[test]
    fn network_and_forwards() {
        let mut c = config(Arch::Amd64, Accel::Tcg);
        assert!(joined(&c)
            .contains("-netdev user,id=user.0 -device virtio-net-pci,netdev=user.0,romfile= "));
        c.ports = vec![
            PortForward::parse("2222:22").unwrap(),
            PortForward::parse("0.0.0.0:53:53:udp").unwrap(),
        ];
        assert!(joined(&c).contains(
            "-netdev user,id=user.0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:0.0.0.0:53-:53 "
        ));
    }

    #[test]
    fn host_mount_uses_little_vm_helpers_tag() {
        let mut c = config(Arch::Amd64, Accel::Tcg);
        c.shares = vec![Share {
            id: "host_id",
            dir: "/src".into(),
            tag: "host_mount",
            readonly: false,
            fs: ShareFs::NineP(ShareModel::MappedXattr),
        }];
        assert!(joined(&c).contains(
            "-fsdev local,id=host_id,path=/src,security_model=mapped-xattr,fmode=0644,dmode=0755 -device virtio-9p-pci,fsdev=host_id,mount_tag=host_mount"
        ));
        c.shares[0].fs = ShareFs::NineP(ShareModel::Passthrough);
        assert!(joined(&c).contains("path=/src,security_model=none -device"));
        assert!(!joined(&c).contains("memory-backend"));
    }

    #[test]
    fn virtiofs_needs_shared_memory_on_every_machine() {
        for (arch, dev, machine) in [
            (
                Arch::Amd64,
                RootDev::Vda,
                "q35,sata=off,memory-backend=lvhmem",
            ),
            (Arch::Amd64, RootDev::Hda, "pc,memory-backend=lvhmem"),
            (
                Arch::Arm64,
                RootDev::Vda,
                "virt,gic-version=max,memory-backend=lvhmem",
            ),
        ] {
            let mut c = config(arch, Accel::Tcg);
            c.root_dev = dev;
            c.q35_props = vec!["sata=off".into()];
            c.memory = MemoryBacking::SharedMemfd;
            c.mem = "2048M".into();
            c.shares = vec![Share {
                id: "host_id",
                dir: "/src".into(),
                tag: "host_mount",
                readonly: false,
                fs: ShareFs::Virtiofs {
                    socket: "/r/a,b/vfs.sock".into(),
                },
            }];
            let j = joined(&c);
            for want in [
                format!("-machine {machine} -accel tcg"),
                "-m 2048M -object memory-backend-memfd,id=lvhmem,size=2048M,share=on -drive".into(),
                "-chardev socket,id=host_id_vfs,path=/r/a,,b/vfs.sock -device vhost-user-fs-pci,chardev=host_id_vfs,tag=host_mount -chardev".into(),
            ] {
                assert!(j.contains(&want), "{want}\n{j}");
            }
            assert!(!j.contains("-fsdev"), "{j}");
        }
        assert_eq!(
            memory_args(&MemoryBacking::Anonymous, "4G"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn consoles() {
        let cases = [
            (
                Console::Socket("/r/c.sock".into()),
                "-chardev socket,id=con,path=/r/c.sock -serial chardev:con",
            ),
            (
                Console::Stdio { log: None },
                "-chardev stdio,id=con,mux=on,signal=off -serial chardev:con -mon chardev=con,mode=readline",
            ),
            (
                Console::Stdio {
                    log: Some("/l".into()),
                },
                "-chardev stdio,id=con,mux=on,signal=off,logfile=/l,logappend=on -serial",
            ),
            (
                Console::Telnet {
                    port: 4444,
                    log: None,
                },
                "-chardev socket,id=con,host=127.0.0.1,port=4444,server=on,wait=off,telnet=on -serial chardev:con",
            ),
            (
                Console::File("/l".into()),
                "-chardev file,id=con,path=/l -serial chardev:con",
            ),
            (Console::Null, "-chardev null,id=con -serial chardev:con"),
        ];
        for (console, want) in cases {
            let mut c = config(Arch::Amd64, Accel::Tcg);
            c.console = console.clone();
            assert!(joined(&c).contains(want), "{console:?}: {}", joined(&c));
        }
    }

    #[test]
    fn lean_q35_properties_apply_to_q35_only() {
        let lean = vec!["sata=off".to_string(), "smbus=off".into()];
        assert_eq!(
            machine_args(
                Arch::Amd64,
                Accel::Tcg,
                RootDev::Vda,
                &lean,
                &MemoryBacking::Anonymous
            )[1],
            "q35,sata=off,smbus=off"
        );
        assert_eq!(
            machine_args(
                Arch::Amd64,
                Accel::Tcg,
                RootDev::Hda,
                &lean,
                &MemoryBacking::Anonymous
            )[1],
            "pc"
        );
        assert_eq!(
            machine_args(
                Arch::Arm64,
                Accel::Tcg,
                RootDev::Vda,
                &lean,
                &MemoryBacking::Anonymous
            )[1],
            "virt,gic-version=max"
        );
        assert_eq!(
            machine_args(
                Arch::Amd64,
                Accel::Kvm,
                RootDev::Vda,
                &[],
                &MemoryBacking::Anonymous
            )[1],
            "q35"
        );
    }

    #[test]
    fn command_channel() {
        let mut c = config(Arch::Amd64, Accel::Tcg);
        c.channel = Some(Channel {
            stdout_sock: "/r/out".into(),
            stderr_sock: "/r/err".into(),
            control_sock: "/r/ctl".into(),
        });
        c.shares = vec![Share {
            id: "lvhctl",
            dir: "/r/share".into(),
            tag: "lvhctl",
            readonly: true,
            fs: ShareFs::NineP(ShareModel::Passthrough),
        }];
        let j = joined(&c);
        for want in [
            "-fsdev local,id=lvhctl,path=/r/share,security_model=none,readonly=on -device virtio-9p-pci,fsdev=lvhctl,mount_tag=lvhctl",
            "-device virtio-serial-pci,id=lvhser",
            "-chardev socket,id=lvhout,path=/r/out -device virtserialport,bus=lvhser.0,chardev=lvhout,name=lvh.stdout",
            "-chardev socket,id=lvherr,path=/r/err -device virtserialport,bus=lvhser.0,chardev=lvherr,name=lvh.stderr",
            "-chardev socket,id=lvhctl,path=/r/ctl -device virtserialport,bus=lvhser.0,chardev=lvhctl,name=lvh.ctl",
        ] {
            assert!(j.contains(want), "{want}\n{j}");
        }
        // lvh's static init: its initramfs right after the kernel, no control share.
        c.shares.clear();
        c.initrd = Some("/r/initramfs.cpio".into());
        let j = joined(&c);
        assert!(
            j.contains(
                "-kernel /k/bzImage -append root=/dev/vda -initrd /r/initramfs.cpio -netdev"
            ),
            "{j}"
        );
        assert!(!j.contains("9p"), "{j}");
        assert!(j.contains("-device virtio-serial-pci,id=lvhser"), "{j}");
    }

    #[test]
    fn monitor_daemonize_and_extra_args() {
        let mut c = config(Arch::Amd64, Accel::Kvm);
        c.monitor_port = Some(5555);
        c.daemonize = Some("/r/qemu.pid".into());
        c.extra = vec!["-S".into()];
        let j = joined(&c);
        assert!(j.contains("-monitor tcp:127.0.0.1:5555,server=on,wait=off"));
        assert!(j.ends_with("-daemonize -pidfile /r/qemu.pid -S"), "{j}");
    }
}
