//! The plan's choice between a shell, the console, a daemon and a command
//! when no command is given, and `--gdb`'s effect on the plan.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::runner::debug::gdb;
use crate::runner::guest::initramfs;
use crate::runner::guest::steps::ShellGuest;
use crate::runner::guest::GuestFs;
use crate::runner::plan::cmdline::Init;
use crate::runner::plan::fastboot;
use crate::runner::plan::kcheck;
use crate::runner::plan::sharefs::{FsRequest, HostFs, RunAs, Virtiofs};
use crate::runner::session::memory::MemoryBacking;
use crate::runner::session::qemu;
use crate::runner::session::qemu::ShareFs;
use crate::runner::session::rundir::INITRAMFS_FILE;

fn err(o: &RunOptions) -> String {
    RunPlan::new(o, false).unwrap_err().to_string()
}

#[test]
fn console_by_default_shell_with_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let base = options(d.path());
    type Edit = Box<dyn Fn(&mut RunOptions)>;
    // What each run without a command (unless one is given) does: its mode,
    // its init and whether the console shows the kernel from its first line.
    let cases: Vec<(&str, Edit, &str, Init, bool)> = vec![
        (
            "--kernel: the console and the image's init",
            Box::new(|_| {}),
            "console",
            Init::Image,
            true,
        ),
        (
            "--shell=false",
            Box::new(|o| o.shell = false),
            "console",
            Init::Image,
            true,
        ),
        (
            "--shell",
            Box::new(|o| o.shell = true),
            "shell",
            Init::Shell,
            false,
        ),
        (
            "--shell without --kernel: the image's login",
            Box::new(|o| {
                o.shell = true;
                o.kernel = None;
            }),
            "console",
            Init::Image,
            false,
        ),
        (
            "no --kernel",
            Box::new(|o| o.kernel = None),
            "console",
            Init::Image,
            false,
        ),
        (
            "arm64: no early console",
            Box::new(|o| o.arch = Arch::Arm64),
            "console",
            Init::Image,
            false,
        ),
        (
            "--serial-port: the console on telnet",
            Box::new(|o| o.serial_port = Some(4444)),
            "console",
            Init::Image,
            true,
        ),
        (
            "--daemonize",
            Box::new(|o| o.daemonize = true),
            "daemon",
            Init::Image,
            false,
        ),
        (
            "--daemonize --wait-ssh",
            Box::new(|o| {
                o.daemonize = true;
                o.wait_ssh = true;
                o.ports = crate::runner::plan::tests::ports(&["2222:22"]);
            }),
            "daemon",
            Init::Image,
            false,
        ),
        (
            "-- CMD",
            Box::new(|o| o.cmd = vec!["true".into()]),
            "command",
            Init::Shell,
            false,
        ),
    ];
    for (what, edit, want, init, early) in cases {
        let mut o = base.clone();
        o.cmd.clear();
        edit(&mut o);
        let p = RunPlan::new(&o, false).unwrap();
        let got = match &p.mode {
            Mode::Shell(_) => "shell",
            Mode::Interactive => "console",
            Mode::Daemon { .. } => "daemon",
            Mode::Command { .. } => "command",
        };
        assert_eq!(got, want, "{what}");
        assert_eq!(p.init, init, "{what}");
        let cmdline = p.cmdline.clone().unwrap_or_default();
        assert_eq!(
            cmdline.contains("earlyprintk=ttyS0"),
            early,
            "{what}: {cmdline}"
        );
        if init == Init::Image && o.kernel.is_some() {
            // The image's own init: lvh's base line, no init= of lvh's.
            assert!(!cmdline.contains("init="), "{what}: {cmdline}");
            assert!(
                cmdline.starts_with("root=/dev/vda rw console="),
                "{what}: {cmdline}"
            );
            let c = qemu_config(&p, Path::new("/r"));
            assert!(
                c.initrd.is_none() && c.shares.is_empty() && c.channel.is_none(),
                "{what}"
            );
        }
    }
    let mut o = base.clone();
    o.cmd.clear();
    o.kernel = None;
    let p = RunPlan::new(&o, false).unwrap();
    assert_eq!(p.cmdline, None);
    assert_eq!(
        qemu_config(&p, Path::new("/r")).console,
        Console::Stdio { log: None }
    );
    let mut o = base.clone();
    o.cmd.clear();
    o.shell = true;
    o.host_mount = Some(d.path().to_path_buf());
    o.cwd = Some("sub".into());
    let p = RunPlan::new(&o, false).unwrap();
    assert_eq!(
        p.mode,
        Mode::Shell(ShellGuest {
            host_mount: Some(GuestFs::NineP),
            cwd: Some("sub".into()),
            persist: false,
        })
    );
    let c = qemu_config(&p, Path::new("/r"));
    assert_eq!(c.console, Console::Socket("/r/console.sock".into()));
    assert!(c.channel.is_some() && c.shares.iter().any(|s| s.tag == "lvhctl"));
    assert!(c.cmdline.contains(" init=/bin/sh "), "{}", c.cmdline);

    for (edit, want) in [
        (
            Box::new(|o: &mut RunOptions| o.shell = true) as Edit,
            "--shell: cannot be combined with a command",
        ),
        (
            Box::new(|o: &mut RunOptions| {
                o.cmd.clear();
                o.shell = true;
                o.daemonize = true;
            }),
            "--shell: cannot be combined with --daemonize",
        ),
        (
            Box::new(|o: &mut RunOptions| {
                o.cmd.clear();
                o.shell = true;
                o.serial_port = Some(4444);
            }),
            "--shell: cannot be combined with --serial-port",
        ),
        (
            Box::new(|o: &mut RunOptions| {
                o.cmd.clear();
                o.shell = true;
                o.wait_ssh = true;
            }),
            "--wait-ssh: needs --daemonize",
        ),
    ] {
        let mut o = base.clone();
        edit(&mut o);
        let e = err(&o);
        assert!(e.contains(want), "want {want:?} in {e:?}");
    }
}

#[test]
fn gdb_stub_nokaslr_and_no_boot_deadline() {
    let d = tempfile::tempdir().unwrap();
    let mut o = options(d.path());
    o.gdb = Some(Some(1234));
    o.append = vec!["kaslr quiet".into()];
    let p = RunPlan::new(&o, false).unwrap();
    assert_eq!(p.boot_timeout, gdb::BOOT_TIMEOUT);
    let c = qemu_config(&p, Path::new("/r"));
    // amd64: last, after init's arguments (the kernel would hand a bare
    // word before `--` to init as its first argument)
    // (lvh's init is one quoted `init=/bin/sh -c "..."` word, so words after it
    // only become init's arguments)
    assert!(
        c.cmdline.contains("exit 1;}\" kaslr quiet"),
        "{}",
        c.cmdline
    );
    assert!(c.cmdline.ends_with(" kaslr quiet nokaslr"), "{}", c.cmdline);
    let argv = qemu::argv(&c).join(" ");
    assert!(argv.contains(" -gdb tcp:127.0.0.1:1234"), "{argv}");
    assert!(!argv.contains(" -S"), "{argv}");
    o.gdb_wait = true;
    o.boot_timeout = Some(Duration::from_secs(5));
    let p = RunPlan::new(&o, false).unwrap();
    assert_eq!(p.boot_timeout, Duration::from_secs(5));
    let argv = qemu::argv(&qemu_config(&p, Path::new("/r"))).join(" ");
    assert!(argv.contains(" -gdb tcp:127.0.0.1:1234 -S"), "{argv}");
    let mut n = options(d.path());
    assert!(!qemu::argv(&qemu_config(
        &RunPlan::new(&n, false).unwrap(),
        Path::new("/r")
    ))
    .iter()
    .any(|a| a == "-gdb" || a == "-S"));
    n.gdb_wait = true;
    assert!(err(&n).contains("--gdb-wait: needs --gdb"));
    n.gdb = Some(Some(0));
    assert!(err(&n).contains("--gdb \"0\": invalid port"));
    // A bare --gdb: a private socket, no warning; a port: TCP, with one.
    let tcp = RunPlan::new(&o, false).unwrap().exposure_warnings();
    assert_eq!(tcp.len(), 1, "{tcp:?}");
    assert!(
        tcp[0].starts_with(
            "--gdb 1234: the gdbstub listens on TCP 127.0.0.1, where any local user can connect"
        ),
        "{tcp:?}"
    );
    n.gdb = Some(None);
    let p = RunPlan::new(&n, false).unwrap();
    assert_eq!(p.exposure_warnings(), Vec::<String>::new());
    let g = p.gdb.as_ref().unwrap().placed_in(Path::new("/r/g"));
    assert_eq!(g.target(), "/r/g/gdb.sock");
    n.daemonize = true;
    n.cmd = vec![];
    assert!(
        err(&n).contains("--gdb: with --daemonize needs a port"),
        "{}",
        err(&n)
    );
}

#[test]
fn tcp_control_endpoints_are_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let mut o = options(d.path());
    o.cmd = vec![];
    o.monitor_port = Some(4444);
    o.serial_port = Some(4445);
    let w = RunPlan::new(&o, false).unwrap().exposure_warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("--qemu-monitor-port 4444: the QEMU monitor listens on TCP 127.0.0.1, where any local user"), "{w:?}");
    assert!(
        w[1].starts_with("--serial-port 4445: the guest's serial console listens on TCP"),
        "{w:?}"
    );
}

/// A build tree's `.config` in `dir` (beside the test kernel), older than the
/// image, as lvh only trusts such a one.
fn kernel_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("Kconfig"), "").unwrap();
    let c = dir.join(".config");
    std::fs::write(&c, text).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    let f = std::fs::File::options().write(true).open(&c).unwrap();
    f.set_modified(old).unwrap();
}

#[test]
fn late_cpus_when_the_kernel_can_hotplug_them() {
    let d = tempfile::tempdir().unwrap();
    let mut o = options(d.path());
    o.fast_boot = true;
    let plan = |o: &RunOptions| RunPlan::new(o, false).unwrap();
    let late = |p: &RunPlan| match &p.mode {
        Mode::Command { cmd, .. } => cmd.late_cpus,
        _ => panic!("a command run"),
    };
    // Configuration unknown: every CPU boots with the kernel.
    let p = plan(&o);
    assert!(!late(&p) && !line(&p).contains("maxcpus"));
    let kernel = o.kernel.clone().unwrap();
    let config = |text: &str| kernel_config(d.path(), text);
    config("CONFIG_HOTPLUG_CPU=y\n");
    let p = plan(&o);
    assert!(late(&p), "{}", kernel.display());
    assert!(
        line(&p).contains(" maxcpus=1 noreplace-smp "),
        "{}",
        line(&p)
    );
    // The user's own CPU limit, one CPU, --fast-boot=false: no.
    let mut u = o.clone();
    u.append = vec!["quiet nr_cpus=2".into()];
    assert!(!late(&plan(&u)));
    let mut one = o.clone();
    one.cpus = 1;
    assert!(!late(&plan(&one)));
    let mut slow = o.clone();
    slow.fast_boot = false;
    assert!(!late(&plan(&slow)) && !line(&plan(&slow)).contains("maxcpus"));
    // Without hotplug in the configuration: no.
    config("# CONFIG_HOTPLUG_CPU is not set\n");
    assert!(!late(&plan(&o)));
}

#[test]
fn the_static_init_when_the_kernel_can_run_it() {
    let d = tempfile::tempdir().unwrap();
    let mut o = options(d.path());
    o.fast_boot = true;
    let plan = |o: &RunOptions| RunPlan::new(o, false).unwrap();
    let fast = |p: &RunPlan| {
        let c = qemu_config(p, Path::new("/r"));
        let init = p.static_init().is_some();
        let line = line(p);
        assert_eq!(c.initrd.is_some(), init, "{line}");
        assert_eq!(c.shares.is_empty(), init, "{line}");
        assert_eq!(
            line.contains(" rdinit=/lvh-init init=/lvh-init"),
            init,
            "{line}"
        );
        assert_eq!(!line.contains(" -c \":;mount -t 9p"), init, "{line}");
        assert_eq!(!line.contains(" ip=10.0.2.15"), init, "{line}");
        init
    };
    // Configuration unknown: the shell init.
    assert!(!fast(&plan(&o)));
    kernel_config(
        d.path(),
        "CONFIG_BLK_DEV_INITRD=y\nCONFIG_DEVTMPFS=y\nCONFIG_LEGACY_PTYS=y\n",
    );
    let p = plan(&o);
    assert_eq!(fast(&p), initramfs::init_binary(o.arch).is_some());
    assert!(line(&p).contains(fastboot::NO_LEGACY_PTYS));
    let q35 = |p: &RunPlan| qemu_config(p, Path::new("/r")).q35_props;
    assert_eq!(q35(&p), ["sata=off", "smbus=off"]);
    assert_eq!(
        qemu_config(&p, Path::new("/r")).initrd,
        fast(&p).then(|| Path::new("/r").join(INITRAMFS_FILE))
    );
    // What keeps the shell init: --fast-boot=false, the user's init or
    // root, --ssh-key. A save boots the static init (its serve record waits
    // for the restores).
    let mut slow = o.clone();
    slow.fast_boot = false;
    assert!(!fast(&plan(&slow)));
    assert!(!line(&plan(&slow)).contains(fastboot::NO_LEGACY_PTYS));
    assert!(q35(&plan(&slow)).is_empty());
    for own in ["init=/bin/bash", "rdinit=/init", "root=PARTUUID=00-01"] {
        let mut u = o.clone();
        u.append = vec![own.into()];
        assert!(!fast(&plan(&u)), "{own}");
    }
    let key = d.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 me@host\n").unwrap();
    let mut k = o.clone();
    k.ssh_key = Some(key);
    assert!(!fast(&plan(&k)));
    let save = crate::runner::saved::state::StateOp::Save {
        states: d.path().join("states"),
        name: "x".into(),
        ssh: None,
    };
    let saved = RunPlan::decide(
        &o,
        &facts::gather(&o, KvmStatus::Missing).unwrap(),
        Some(save),
    )
    .unwrap();
    let have_init = initramfs::init_binary(o.arch).is_some();
    assert_eq!(fast(&saved), have_init);
    assert!(q35(&saved).is_empty(), "a saved VM keeps the stock q35");
    // A restore has the devices of the init its state was saved with.
    use crate::runner::saved::state::{SavedInit, StateOp};
    let mut meta = crate::runner::saved::meta_base(&saved, "x", &["true".into()]).unwrap();
    assert_eq!(meta.init == SavedInit::Static, have_init);
    for (init, want) in [(SavedInit::Static, have_init), (SavedInit::Shell, false)] {
        meta.init = init;
        let restore = StateOp::Restore {
            dir: d.path().join("states/x"),
            meta: Box::new(meta.clone()),
            ssh: None,
        };
        let facts = facts::gather(&o, KvmStatus::Missing).unwrap();
        let restored = RunPlan::decide(&o, &facts, Some(restore)).unwrap();
        assert_eq!(fast(&restored), want, "{init:?}");
    }
    // A symlink to the kernel finds the same configuration.
    let link_dir = tempfile::tempdir().unwrap();
    let link = link_dir.path().join("bzImage");
    std::os::unix::fs::symlink(o.kernel.as_ref().unwrap(), &link).unwrap();
    let mut l = o.clone();
    l.kernel = Some(link.clone());
    assert_eq!(fast(&plan(&l)), fast(&plan(&o)));
    assert_eq!(
        plan(&l).kernel.as_deref(),
        Some(link.as_path()),
        "shown as given"
    );
    // A kernel without initramfs or devtmpfs support.
    kernel_config(d.path(), "CONFIG_DEVTMPFS=y\n");
    assert!(!fast(&plan(&o)));
    kernel_config(d.path(), "CONFIG_BLK_DEV_INITRD=y\n");
    assert!(!fast(&plan(&o)));
}

fn line(p: &RunPlan) -> String {
    p.cmdline.clone().unwrap_or_default()
}

#[test]
fn cloud_init_only_where_the_images_init_boots() {
    let d = tempfile::tempdir().unwrap();
    let ud = d.path().join("user-data");
    std::fs::write(&ud, "#cloud-config\n").unwrap();
    let mut o = options(d.path());
    o.cloud_init = Some(ud.clone());
    let e = RunPlan::new(&o, false).unwrap_err().to_string();
    assert!(e.contains("--cloud-init") && e.contains("lvh's"), "{e}");
    o.cmd.clear();
    o.kernel = None;
    o.daemonize = true;
    let p = RunPlan::new(&o, false).unwrap();
    let ci = p.cloud_init.expect("a seed");
    assert!(ci.vendor_data.is_none());
    // The console with --kernel boots the image's own init too.
    let mut k = options(d.path());
    k.cmd.clear();
    k.cloud_init = Some(ud.clone());
    k.host_mount = Some(d.path().to_path_buf());
    let p = RunPlan::new(&k, false).unwrap();
    assert!(p.cloud_init.unwrap().vendor_data.is_some(), "mounts /host");
    k.shell = true;
    assert!(RunPlan::new(&k, false).is_err(), "--shell is lvh's init");
    let mut m = options(d.path());
    m.cloud_init_meta = Some(ud);
    let e = RunPlan::new(&m, false).unwrap_err().to_string();
    assert!(
        e.contains("--cloud-init-meta") && e.contains("needs --cloud-init"),
        "{e}"
    );
}

/// virtiofs where lvh's init mounts the share and lvh supervises the run,
/// 9p with the reason elsewhere, and the guest and QEMU told the same.
#[test]
fn the_host_mount_file_system_follows_the_mode() {
    let d = tempfile::tempdir().unwrap();
    let mut base = options(d.path());
    base.host_mount = Some(d.path().to_path_buf());
    let mut f = facts::gather(&base, KvmStatus::Missing).unwrap();
    let k = f.kernel.as_mut().unwrap();
    let config = kcheck::parse("CONFIG_VIRTIO_FS=y\nCONFIG_FUSE_FS=y\n");
    k.config = Some((kcheck::Source::Beside(d.path().join(".config")), config));
    let h = f.host_mount.as_mut().unwrap();
    h.virtiofsd = Some("/usr/libexec/virtiofsd".into());
    (h.root, h.owner, h.owner_reaches) = (true, (1000, 1000), true);
    let vfs = HostFs::Virtiofs(Virtiofs {
        daemon: "/usr/libexec/virtiofsd".into(),
        run_as: RunAs::Owner {
            uid: 1000,
            gid: 1000,
        },
    });
    type Edit = Box<dyn Fn(&mut RunOptions)>;
    let cases: Vec<(Edit, bool, Option<&str>)> = vec![
        (Box::new(|_| {}), true, None),
        (
            Box::new(|o| {
                o.cmd.clear();
                o.shell = true
            }),
            true,
            None,
        ),
        (
            Box::new(|o| o.cmd.clear()),
            false,
            Some("the image's own init mounts the host share"),
        ),
        (
            Box::new(|o| o.host_mount_fs = FsRequest::NineP),
            false,
            None,
        ),
    ];
    for (edit, virtiofs, note) in cases {
        let mut o = base.clone();
        edit(&mut o);
        let p = RunPlan::decide(&o, &f, None).unwrap();
        let c = qemu_config(&p, Path::new("/r"));
        let share = c.shares.iter().find(|s| s.tag == "host_mount").unwrap();
        assert_eq!(
            p.host_mount_note
                .as_deref()
                .map(|n| n.contains(note.unwrap())),
            note.map(|_| true)
        );
        if virtiofs {
            assert_eq!(p.host_mount_fs, vfs);
            assert_eq!(c.memory, MemoryBacking::SharedMemfd);
            assert!(matches!(share.fs, ShareFs::Virtiofs { .. }));
            let guest = match &p.mode {
                Mode::Command { cmd, .. } => cmd.host_fs,
                Mode::Shell(g) => g.host_mount.unwrap(),
                m => panic!("{m:?}"),
            };
            assert_eq!(guest, GuestFs::Virtiofs);
        } else {
            assert_eq!(p.host_mount_fs, HostFs::NineP);
            assert_eq!(c.memory, MemoryBacking::Anonymous);
            assert!(matches!(share.fs, ShareFs::NineP(_)));
        }
    }
    // An explicit virtiofs that cannot work is an error naming why.
    let mut o = base.clone();
    o.cmd.clear();
    o.host_mount_fs = FsRequest::Virtiofs;
    let e = RunPlan::decide(&o, &f, None).unwrap_err().to_string();
    assert!(
        e.contains("--host-mount-fs") && e.contains("the image's own init"),
        "{e}"
    );
    f.host_mount.as_mut().unwrap().virtiofsd = None;
    let mut o = base.clone();
    o.host_mount_fs = FsRequest::Virtiofs;
    let e = RunPlan::decide(&o, &f, None).unwrap_err().to_string();
    assert!(
        e.contains("virtiofsd was not found (install it with"),
        "{e}"
    );
}
