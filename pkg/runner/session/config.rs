//! A plan's QEMU configuration for a run directory: which console, which
//! channel and shares, which disk, kernel and initramfs. The one place that
//! decides the devices of a run; `qemu` turns the result into argv.

use std::path::Path;

use super::memory::MemoryBacking;
use super::qemu::{Channel, Console, QemuConfig, Share, ShareFs};
use super::rundir::{initramfs_in, share_in, Endpoint};
use crate::runner::guest::{CONTROL_TAG, HOST_MOUNT_TAG};
use crate::runner::plan::cmdline::Init;
use crate::runner::plan::decision::{Mode, RunPlan};
use crate::runner::plan::hostmount::ShareModel;
use crate::runner::plan::sharefs::HostFs;
use crate::runner::plan::sshkey;

/// The console of a run: lvh reads it in command and shell mode.
fn console(plan: &RunPlan, dir: &Path) -> Console {
    match &plan.mode {
        Mode::Command { .. } | Mode::Shell(_) => Console::Socket(Endpoint::Console.path_in(dir)),
        Mode::Interactive => match plan.serial_port {
            Some(port) => Console::Telnet {
                port,
                log: plan.console_log.clone(),
            },
            None => Console::Stdio {
                log: plan.console_log.clone(),
            },
        },
        Mode::Daemon { .. } => match (plan.serial_port, &plan.console_log) {
            (Some(port), log) => Console::Telnet {
                port,
                log: log.clone(),
            },
            (None, Some(log)) => Console::File(log.clone()),
            (None, None) => Console::Null,
        },
    }
}

/// The shared host directories: `--host-mount`, then the shell init's control share.
fn shares(plan: &RunPlan, dir: &Path) -> Vec<Share> {
    let mut v = vec![];
    if let Some(h) = &plan.host_mount {
        v.push(Share {
            id: "host_id",
            dir: h.clone(),
            tag: HOST_MOUNT_TAG,
            readonly: false,
            fs: match plan.host_mount_fs {
                HostFs::NineP => ShareFs::NineP(plan.host_mount_model),
                // `virtiofsd::start` sets the socket it listens on.
                HostFs::Virtiofs(_) => ShareFs::Virtiofs {
                    socket: super::virtiofsd::placeholder(),
                },
            },
        });
    }
    if plan.init == Init::Shell {
        v.push(Share {
            id: "lvhctl",
            dir: share_in(dir),
            tag: CONTROL_TAG,
            readonly: true,
            // lvh's own files, read-only: the guest can change nothing there.
            fs: ShareFs::NineP(ShareModel::Passthrough),
        });
    }
    v
}

/// `--qemu-arg`s, after the systemd credential of `--ssh-key` when the
/// image's own init boots (lvh's init takes the keys itself).
fn extra_args(plan: &RunPlan) -> Vec<String> {
    let mut v = match (&plan.init, &plan.ssh_key) {
        (Init::Image, Some((_, keys))) => sshkey::credential_args(keys),
        _ => vec![],
    };
    v.extend(plan.qemu_args.iter().cloned());
    v
}

/// The QEMU configuration for a run whose private files live in `dir`.
pub fn qemu_config(plan: &RunPlan, dir: &Path) -> QemuConfig {
    let channel = matches!(plan.mode, Mode::Command { .. } | Mode::Shell(_)).then(|| Channel {
        stdout_sock: Endpoint::Stdout.path_in(dir),
        stderr_sock: Endpoint::Stderr.path_in(dir),
        control_sock: Endpoint::Control.path_in(dir),
    });
    let daemonize = matches!(plan.mode, Mode::Daemon { .. }).then(|| dir.join("qemu.pid"));
    QemuConfig {
        arch: plan.arch,
        accel: plan.accel,
        cpus: plan.cpus,
        mem: plan.mem.qemu_arg(),
        memory: match plan.host_mount_fs {
            HostFs::Virtiofs(_) if plan.host_mount.is_some() => MemoryBacking::SharedMemfd,
            _ => MemoryBacking::Anonymous,
        },
        cpu_kind: plan.cpu_kind.clone(),
        image: plan.image.clone(),
        image_format: plan.image_format,
        root_dev: plan.root_dev,
        snapshot: !plan.persist,
        kernel: plan.fast.kernel.clone().or_else(|| plan.kernel.clone()),
        bios: plan.fast.bios.clone(),
        initrd: matches!(plan.init, Init::Static(_)).then(|| initramfs_in(dir)),
        // A saved VM keeps QEMU's stock q35: its devices must match
        // between the save and every restore, whatever --fast-boot says.
        q35_props: match plan.state {
            Some(_) => vec![],
            None => plan.fast.q35_props.clone(),
        },
        cmdline: plan.cmdline.clone().unwrap_or_default(),
        ports: plan.ports.clone(),
        shares: shares(plan, dir),
        console: console(plan, dir),
        channel,
        monitor_port: plan.monitor_port,
        daemonize,
        gdb: plan.gdb.clone(),
        seed_fd: None,
        extra: extra_args(plan),
    }
}
