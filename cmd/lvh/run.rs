//! `lvh run`: flags, and turning them into a validated run plan for the runner.

use std::path::PathBuf;

use clap::{ArgAction, Args};

use crate::Ctx;
use lvh::arch::Arch;
use lvh::error::ExitCode;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # Run a command in a VM and return its exit code
  lvh run --kernel _data/kernels/bpf-next/arch/x86_64/boot/bzImage --image _data/images/base.qcow2 -- uname -a

  # Boot a bootable image, expose ssh on 127.0.0.1:2222, mount a host directory
  lvh run --image _data/images/kind.qcow2 --port 2222:22 --host-mount ~/src --cpu 4 --mem 8G")]
pub struct RunArgs {
    /// VM image file path (or an OCI reference to pull)
    #[arg(long)]
    pub image: String,
    /// Directory to keep pulled images (in <dir>/images)
    #[arg(long, default_value = "_data")]
    pub dir: PathBuf,
    /// Pull the image from an OCI repository if it is not a local file
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub pull_image: bool,
    /// Kernel image to boot (if empty, boot the image's own bootloader)
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Print the QEMU command before running it
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub qemu_cmd_print: bool,
    /// Do not use hardware acceleration (KVM); emulate with TCG
    #[arg(long, alias = "qemu-disable-kvm", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub no_hw_accel: bool,
    /// Daemonize QEMU after initializing
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub daemonize: bool,
    /// Save the VM console output to this file
    #[arg(long)]
    pub console_log_file: Option<PathBuf>,
    /// Mount this host directory in the VM (9p, mount tag host_mount)
    #[arg(long)]
    pub host_mount: Option<PathBuf>,
    /// Forward a port: hostport[:vmport[:tcp|udp]] or addr:hostport:vmport[:proto] (repeatable)
    #[arg(short, long = "port")]
    pub ports: Vec<String>,
    /// Host port for the serial console (telnet on 127.0.0.1)
    #[arg(long, default_value_t = 0)]
    pub serial_port: u16,
    /// CPU count (-smp)
    #[arg(long, default_value_t = 2)]
    pub cpu: u32,
    /// RAM size (-m)
    #[arg(long, default_value = "4G")]
    pub mem: String,
    /// CPU kind (-cpu)
    #[arg(long)]
    pub cpu_kind: Option<String>,
    /// Host port for the QEMU monitor (127.0.0.1)
    #[arg(long, default_value_t = 0)]
    pub qemu_monitor_port: u16,
    /// Root device (vda or hda)
    #[arg(long, default_value = "vda")]
    pub root_dev: String,
    /// Guest architecture
    #[arg(long, default_value = Arch::host().as_str())]
    pub qemu_arch: Arch,
    /// Command to run in the guest; lvh exits with its exit code
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

pub fn dispatch(_args: &RunArgs, _ctx: &Ctx) -> anyhow::Result<ExitCode> {
    crate::not_implemented("run")
}
