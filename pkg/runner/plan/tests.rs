//! Table tests of the plan: good and bad options, modes and consoles,
//! accelerators, and the helpers the runner's other tests build plans with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::accel::{Accel, AccelChoice, KvmStatus};
use super::decision::{Mode, RunPlan};
use super::facts;
use super::image::ImageFormat;
use super::options::{RootDev, RunOptions};
use super::ports::PortForward;
use crate::arch::Arch;
use crate::runner::error::RunError;
use crate::runner::session::config::qemu_config;
use crate::runner::session::qemu::Console;

/// Options for a command run of a stand-in kernel and image in `dir`.
pub(crate) fn options(dir: &Path) -> RunOptions {
    let image = dir.join("root.img");
    let kernel = dir.join("bzImage");
    std::fs::write(&image, b"\0\0\0\0").unwrap();
    std::fs::write(&kernel, b"k").unwrap();
    RunOptions {
        image: Some(image),
        kernel: Some(kernel),
        accel: AccelChoice::Tcg,
        arch: Arch::Amd64,
        cmd: vec!["true".into()],
        // Host-dependent (qboot, the host's TSC): covered by fastboot's tests.
        fast_boot: false,
        ..RunOptions::default()
    }
}

/// Port forwards from `-p` values.
pub(crate) fn ports(values: &[&str]) -> Vec<PortForward> {
    values
        .iter()
        .map(|v| PortForward::parse(v).unwrap())
        .collect()
}

impl RunPlan {
    /// The plan for `o` with KVM open or missing, read from the disk as the
    /// front door reads it.
    pub(crate) fn new(o: &RunOptions, kvm_opens: bool) -> Result<RunPlan, RunError> {
        let kvm = if kvm_opens {
            KvmStatus::Usable
        } else {
            KvmStatus::Missing
        };
        RunPlan::decide(o, &facts::gather(o, kvm)?, None)
    }
}

fn err(o: &RunOptions) -> String {
    RunPlan::new(o, false).unwrap_err().to_string()
}

#[test]
fn a_good_plan() {
    let d = tempfile::tempdir().unwrap();
    let p = RunPlan::new(&options(d.path()), true).unwrap();
    assert_eq!(p.accel, Accel::Tcg);
    assert_eq!(p.image_format, ImageFormat::Raw);
    assert!(matches!(p.mode, Mode::Command { .. }));
    assert_eq!(p.boot_timeout, Accel::Tcg.default_boot_timeout());
    let c = qemu_config(&p, Path::new("/run/x"));
    assert!(c.snapshot);
    assert_eq!(c.console, Console::Socket("/run/x/console.sock".into()));
    assert_eq!(c.shares.len(), 1);
    assert_eq!(c.shares[0].dir, PathBuf::from("/run/x/share"));
    assert!(c
        .cmdline
        .starts_with("root=/dev/vda rw console=ttyS0 panic=-1 i8042.noaux i8042.nokbd no_timer_check ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off init=/bin/sh -c \":;mount"));
}

#[test]
fn bad_options_name_flag_and_value() {
    let d = tempfile::tempdir().unwrap();
    let base = options(d.path());
    type Edit = Box<dyn Fn(&mut RunOptions)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|o| o.cpus = 0), "--cpu \"0\": invalid CPU count"),
        (
            Box::new(|o| o.kernel = Some("/nonexistent/bzImage".into())),
            "--kernel \"/nonexistent/bzImage\": no such kernel file",
        ),
        (
            Box::new(|o| o.image = Some("/nonexistent/root.img".into())),
            "--image \"/nonexistent/root.img\": no such image file",
        ),
        (
            Box::new(|o| o.image = Some("/".into())),
            "--image \"/\": not a regular file",
        ),
        (Box::new(|o| o.image = None), "--image: is required"),
        (
            Box::new(|o| o.host_mount = Some("/nonexistent/src".into())),
            "--host-mount \"/nonexistent/src\": host mount is not a directory",
        ),
        (
            Box::new(|o| o.daemonize = true),
            "--daemonize: cannot be combined",
        ),
        (Box::new(|o| o.kernel = None), "needs --kernel"),
        (
            Box::new(|o| o.serial_port = Some(4444)),
            "--serial-port: is for booting",
        ),
        (
            Box::new(|o| {
                o.cmd.clear();
                o.daemonize = true;
                o.wait_ssh = true;
            }),
            "--wait-ssh: needs a forward to guest port 22",
        ),
        (
            Box::new(|o| {
                o.cmd.clear();
                o.wait_ssh = true;
            }),
            "--wait-ssh: needs --daemonize",
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
        let e = RunPlan::new(&o, false).unwrap_err();
        assert!(matches!(e, RunError::Invalid(_)), "{e:?}");
        let e = e.to_string();
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
    let c = qemu_config(&p, Path::new("/r"));
    assert_eq!(c.console, Console::Stdio { log: None });
    assert_eq!(
        c.cmdline,
        "root=/dev/vda rw console=ttyS0 panic=-1 i8042.noaux i8042.nokbd no_timer_check earlyprintk=ttyS0"
    );
    assert!(c.shares.is_empty() && c.channel.is_none());

    o.daemonize = true;
    o.wait_ssh = true;
    o.ports = ports(&["2222:22"]);
    o.console_log = Some("/tmp/c.log".into());
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
    let c = qemu_config(&p, Path::new("/r"));
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
    o.arch = Arch::host();
    o.accel = AccelChoice::Kvm;
    assert_eq!(RunPlan::new(&o, true).unwrap().accel, Accel::Kvm);
    let e = err(&o);
    assert!(e.contains("--accel kvm: there is no /dev/kvm"), "{e}");
    let broken = KvmStatus::Broken("too slow".into());
    let decide =
        |o: &RunOptions| RunPlan::decide(o, &facts::gather(o, broken.clone()).unwrap(), None);
    let p = decide(&o).unwrap();
    assert_eq!(
        (p.accel, p.accel_note),
        (Accel::Kvm, None),
        "explicit kvm is obeyed"
    );
    o.accel = AccelChoice::Auto;
    let p = decide(&o).unwrap();
    assert_eq!(p.accel, Accel::Tcg);
    assert!(p.accel_note.unwrap().ends_with(": too slow"));
    assert_eq!(p.boot_timeout, Accel::Tcg.default_boot_timeout());
    o.accel = AccelChoice::Tcg;
    assert_eq!(RunPlan::new(&o, true).unwrap().accel, Accel::Tcg);
    o.accel = AccelChoice::Auto;
    assert_eq!(RunPlan::new(&o, true).unwrap().accel, Accel::Kvm);
    assert_eq!(RunPlan::new(&o, false).unwrap().accel, Accel::Tcg);
}

#[test]
fn a_missing_static_init_is_said_once_and_the_shell_init_boots() {
    let d = tempfile::tempdir().unwrap();
    let mut o = options(d.path());
    o.fast_boot = true;
    o.arch = Arch::Arm64;
    std::fs::write(d.path().join("Kconfig"), "").unwrap();
    let c = d.path().join(".config");
    std::fs::write(&c, "CONFIG_BLK_DEV_INITRD=y\nCONFIG_DEVTMPFS=y\n").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&c)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let p = RunPlan::new(&o, false).unwrap();
    let has = crate::runner::guest::initramfs::init_binary(Arch::Arm64).is_some();
    assert_eq!(p.static_init().is_some(), has);
    assert_eq!(p.init_note.is_some(), !has, "{:?}", p.init_note);
    if let Some(n) = p.init_note {
        assert!(n.contains("gcc-aarch64-linux-gnu"), "{n}");
    }
}

#[path = "modes_tests.rs"]
mod modes;
