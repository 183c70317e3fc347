//! Table tests of the QEMU command line: every builder's output as data,
//! per arch, accelerator, device and option.

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
        seed_fd: None,
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
        memory::args(&MemoryBacking::Anonymous, "4G"),
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
        j.contains("-kernel /k/bzImage -append root=/dev/vda -initrd /r/initramfs.cpio -netdev"),
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

#[test]
fn the_cloud_init_seed_is_a_read_only_second_virtio_disk() {
    let mut c = config(Arch::Amd64, Accel::Tcg);
    c.seed_fd = Some(9);
    let a = argv(&c).join(" ");
    assert!(a.contains(
        "-drive file=/i/base.qcow2,format=qcow2,if=virtio,index=0,media=disk,snapshot=on -add-fd fd=9,set=7,opaque=cidata -drive file=/dev/fdset/7,format=raw,if=virtio,readonly=on,media=disk"
    ), "{a}");
    c.seed_fd = None;
    assert!(!argv(&c).join(" ").contains("fdset"));
}
