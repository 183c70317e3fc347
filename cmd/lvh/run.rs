//! `lvh run`: flags, and turning them into a validated run plan for the runner.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::Ctx;
use lvh::arch::Arch;
use lvh::error::ExitCode;
use lvh::runner::{
    duration, parse_accel, parse_ports, parse_root_dev, Host, MemSize, Outcome, RunOptions,
    RunRequest, Sinks, StateRequest,
};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # Run a command in a VM and return its exit code
  lvh run --kernel _data/kernels/bpf-next/arch/x86_64/boot/bzImage --image _data/images/base.qcow2 -- uname -a

  # Boot a bootable image, expose ssh on 127.0.0.1:2222, mount a host directory
  lvh run --image _data/images/kind.qcow2 --port 2222:22 --host-mount ~/src --cpu 4 --mem 8G")]
pub struct RunArgs {
    /// VM image file path (or an OCI reference to pull)
    #[arg(long, required_unless_present_any = ["from_state", "list_states", "remove_state"])]
    pub image: Option<String>,
    /// Directory to keep pulled images (in <dir>/images)
    #[arg(long, default_value = "_data")]
    pub dir: PathBuf,
    /// Pull the image from an OCI repository if it is not a local file
    #[arg(long, default_value_t = true)]
    pub pull_image: bool,
    /// Kernel image to boot (if empty, boot the image's own bootloader)
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Do not run QEMU, just print its command on stdout (after pulling the image);
    /// -v/--verbose prints it (on stderr) and runs it
    #[arg(long)]
    pub qemu_cmd_print: bool,
    /// Do not use hardware acceleration (KVM); emulate with TCG
    #[arg(long, alias = "qemu-disable-kvm")]
    pub no_hw_accel: bool,
    /// Daemonize QEMU after initializing
    #[arg(long)]
    pub daemonize: bool,
    /// Save the VM console output to this file
    #[arg(long)]
    pub console_log_file: Option<PathBuf>,
    /// Mount this host directory in the VM at /host (mount tag host_mount)
    #[arg(long)]
    pub host_mount: Option<PathBuf>,
    /// How --host-mount is served: auto (virtiofs where it works, else 9p and why), virtiofs or 9p
    #[arg(long, default_value = "auto", value_parser = ["auto", "virtiofs", "9p"])]
    pub host_mount_fs: String,
    /// Forward a port: hostport[:vmport[:tcp|udp]] or addr:hostport:vmport[:proto] (repeatable)
    #[arg(short, long = "port")]
    pub ports: Vec<String>,
    /// Host port for the serial console (telnet on 127.0.0.1: any local user can connect)
    #[arg(long, default_value_t = 0)]
    pub serial_port: u16,
    /// CPU count (-smp)
    #[arg(long, visible_alias = "cpus", default_value_t = lvh::runner::DEFAULT_CPUS)]
    pub cpu: u32,
    /// RAM size (-m)
    #[arg(long, visible_alias = "memory", default_value = lvh::runner::DEFAULT_MEM)]
    pub mem: String,
    /// CPU kind (-cpu)
    #[arg(long)]
    pub cpu_kind: Option<String>,
    /// Host port for the QEMU monitor (TCP on 127.0.0.1: any local user can connect)
    #[arg(long, default_value_t = 0)]
    pub qemu_monitor_port: u16,
    /// Root device (vda, or hda/sda for an IDE disk)
    #[arg(long, default_value = "vda")]
    pub root_dev: String,
    /// Guest architecture
    #[arg(long, default_value = Arch::host().as_str())]
    pub qemu_arch: Arch,
    /// Extra kernel command line arguments (repeatable; before lvh's init in command mode)
    #[arg(long, value_name = "ARGS")]
    pub append: Vec<String>,
    /// Print the QEMU command and exit without touching anything
    #[arg(long)]
    pub dry_run: bool,
    /// Accelerator: kvm, tcg, or auto (KVM for a native guest when a KVM probe guest runs)
    /// [default: $LVH_ACCEL, else auto]
    #[arg(long, value_name = "ACCEL")]
    pub accel: Option<String>,
    /// Let the guest's writes reach the image (default: a throwaway overlay keeps it unchanged)
    #[arg(long)]
    pub persist: bool,
    /// Directory to run CMD in; relative to the host mount (/host) when one is given
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Seconds (or a duration: 90s, 5m) the guest may take to start the command
    /// (or show any console output) [default: 20 with KVM, 90 with TCG]
    #[arg(long, value_name = "SECS")]
    pub boot_timeout: Option<String>,
    /// Seconds (or a duration: 30s, 20m, 1h30m) CMD may run before the VM is stopped
    /// (exit code 244) [default: no limit]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<String>,
    /// With --daemonize: return only when ssh answers on the port forwarded to guest port 22
    #[arg(long)]
    pub wait_ssh: bool,
    /// Seconds (or a duration) --wait-ssh waits for ssh
    #[arg(long, value_name = "SECS", default_value = lvh::runner::DEFAULT_SSH_TIMEOUT)]
    pub ssh_timeout: String,
    /// Give root this ssh public key at boot, without changing the image
    /// [default FILE: the first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub]
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
    pub ssh_key: Option<String>,
    /// Provision the image at boot with this cloud-init user-data (#cloud-config),
    /// given as a NoCloud seed drive; for cloud images booted with their own init
    #[arg(long, value_name = "FILE")]
    pub cloud_init: Option<PathBuf>,
    /// The NoCloud meta-data for --cloud-init [default: an instance-id from the user-data]
    #[arg(long, value_name = "FILE")]
    pub cloud_init_meta: Option<PathBuf>,
    /// Extra argument passed to QEMU as is (repeatable, e.g. --qemu-arg=-S)
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_arg: Vec<String>,
    /// Kernel splats (WARN, BUG, Oops, lockups, sanitizers, new taint) in command mode:
    /// fail (exit code 245), warn (report on stderr), or off
    #[arg(long, value_name = "MODE", default_value = "fail")]
    pub splat: lvh::runner::SplatMode,
    /// After the command, have the kernel's kmemleak scan for memory leaks (about 6 s
    /// more); a leak fails the run as a splat, with its backtrace. Needs --kernel
    /// with CONFIG_DEBUG_KMEMLEAK (the `kmemleak` option group)
    #[arg(long)]
    pub kmemleak: bool,
    /// JSON allowlist of known splats: [{"pattern": REGEX, "reason": TEXT, "expires": "YYYY-MM-DD"}]
    #[arg(long, value_name = "FILE")]
    pub splat_allow: Option<PathBuf>,
    /// Write how the run ended (verdict, times, splats, kernel) to this JSON file
    #[arg(long, value_name = "FILE")]
    pub result_json: Option<PathBuf>,
    /// Boot --kernel even when its configuration (build tree .config, config-VER
    /// beside it, or IKCONFIG) lacks what the run needs (virtio-blk, ext4, 9p, ...)
    #[arg(long)]
    pub no_kernel_check: bool,
    /// x86: boot the PVH vmlinux of the same build beside --kernel (vmlinux-<release>
    /// beside vmlinuz-<release>, <tree>/vmlinux for <tree>/arch/x86/boot/bzImage), and
    /// under TCG give the kernel the host's TSC frequency and no APIC timer; with
    /// --cpu above 1 and a kernel with CPU hotplug, boot on one CPU and bring the others
    /// online from lvh's init before the command; false boots --kernel as given
    #[arg(long, default_value_t = true)]
    pub fast_boot: bool,
    /// With --kernel and no command: a root shell on the console with lvh's init, the
    /// host mount as working directory; lvh exits with the shell's code (Ctrl-A x
    /// leaves). Without it (the default, as little-vm-helper): the console from the
    /// kernel's first line and the image's own init. Without --kernel: the image's
    /// console login
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = crate::gobool::parse)]
    pub shell: Option<bool>,
    /// QEMU's gdbstub: without PORT on a unix socket in a private directory (only
    /// you can attach), with PORT on 127.0.0.1:PORT (any local user can); adds nokaslr
    /// and prints the gdb command line (with the kernel's vmlinux when found beside --kernel)
    #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "")]
    pub gdb: Option<String>,
    /// With --gdb: the guest stops at its first instruction until gdb continues (-S)
    #[arg(long)]
    pub gdb_wait: bool,
    /// Run the setup command (-- SETUP), then save the VM as NAME in <dir>/states
    /// (with --kernel, lvh's init; without, a bootable image's own init and ssh;
    /// nothing is saved unless SETUP exits 0)
    #[arg(long, value_name = "NAME", conflicts_with = "from_state")]
    pub save_state: Option<String>,
    /// Restore the VM saved as NAME and run the command (-- CMD) in it, without booting
    #[arg(long, value_name = "NAME")]
    pub from_state: Option<String>,
    /// List the saved VMs in <dir>/states and exit
    #[arg(long)]
    pub list_states: bool,
    /// Remove the saved VM NAME from <dir>/states and exit
    #[arg(long, value_name = "NAME")]
    pub remove_state: Option<String>,
    /// Command to run in the guest; lvh exits with its exit code
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// The flags as the runner's typed options (the checks that need several
/// flags happen in the runner's front door). The flags are checked before
/// `--image` is resolved, which may pull it.
pub fn options(a: &RunArgs, ctx: &Ctx) -> anyhow::Result<RunOptions> {
    let env = std::env::var("LVH_ACCEL").ok().filter(|v| !v.is_empty());
    let accel = parse_accel(a.no_hw_accel, a.accel.as_deref(), env.as_deref())?;
    let root_dev = parse_root_dev(&a.root_dev)?;
    let mem: MemSize = a.mem.parse()?;
    let boot_timeout = a
        .boot_timeout
        .as_deref()
        .map(|v| duration("--boot-timeout", v))
        .transpose()?;
    let timeout = a
        .timeout
        .as_deref()
        .map(|v| duration("--timeout", v))
        .transpose()?;
    let ssh_timeout = duration("--ssh-timeout", &a.ssh_timeout)?;
    let ports = parse_ports(&a.ports)?;
    Ok(RunOptions {
        image: match a.image {
            Some(_) => Some(image_path(a, ctx)?),
            // --from-state: the state's disk
            None => None,
        },
        kernel: a.kernel.clone(),
        accel,
        daemonize: a.daemonize,
        console_log: a.console_log_file.clone(),
        host_mount: a.host_mount.clone(),
        host_mount_fs: lvh::runner::FsRequest::parse(&a.host_mount_fs)
            .expect("clap checked the value"),
        ports,
        serial_port: (a.serial_port != 0).then_some(a.serial_port),
        cpus: a.cpu,
        mem,
        cpu_kind: a.cpu_kind.clone(),
        monitor_port: (a.qemu_monitor_port != 0).then_some(a.qemu_monitor_port),
        root_dev,
        arch: a.qemu_arch,
        append: a.append.clone(),
        cmd: a.cmd.clone(),
        cwd: a.cwd.clone(),
        persist: a.persist,
        boot_timeout,
        timeout,
        wait_ssh: a.wait_ssh,
        ssh_timeout,
        qemu_args: a.qemu_arg.clone(),
        fast_boot: a.fast_boot,
        shell: a.shell.unwrap_or(false),
        gdb: gdb_port(a.gdb.as_deref())?,
        gdb_wait: a.gdb_wait,
        ssh_key: ssh_key(a)?,
        cloud_init: a.cloud_init.clone(),
        cloud_init_meta: a.cloud_init_meta.clone(),
        kmemleak: a.kmemleak,
    })
}

/// `--gdb` (a private socket) or `--gdb PORT`.
fn gdb_port(v: Option<&str>) -> anyhow::Result<Option<Option<u16>>> {
    Ok(match v {
        None => None,
        Some("") => Some(None),
        Some(p) => Some(Some(p.parse().map_err(|_| {
            lvh::error::InvalidInput::value("--gdb", p, "invalid port: expected 1-65535")
        })?)),
    })
}

/// `--ssh-key FILE`, or the user's default public key for a bare `--ssh-key`.
fn ssh_key(a: &RunArgs) -> anyhow::Result<Option<PathBuf>> {
    Ok(match &a.ssh_key {
        Some(f) if f.is_empty() => Some(lvh::runner::default_key(
            std::env::var_os("HOME").map(PathBuf::from).as_deref(),
        )?),
        other => other.as_ref().map(PathBuf::from),
    })
}

/// `--image` as a local path for the runner: a local file as is; an OCI
/// reference pulled into lvh's content-addressed cache (when `--pull-image`
/// allows it; never with `--dry-run`) and placed in `<dir>/images/` as
/// little-vm-helper does (a link to the cache). A second run of the same
/// reference downloads nothing. `REF#NAME` picks one image of an artifact with
/// several.
fn image_path(args: &RunArgs, ctx: &Ctx) -> anyhow::Result<PathBuf> {
    use lvh::error::InvalidInput;
    use lvh::oci::ImageSource;
    use lvh::runner::RunError;
    let arg = args.image.as_deref().unwrap_or_default();
    let (reference, image_name) = match ImageSource::parse(arg, |p| p.exists())? {
        ImageSource::Path(p) => return Ok(p),
        ImageSource::Reference { reference, name } => (reference, name),
    };
    if !args.pull_image {
        return Err(InvalidInput::value(
            "--image",
            arg,
            "no such image file, and --pull-image=false",
        )
        .into());
    }
    if args.dry_run {
        return Err(RunError::Setup(format!(
            "no such image file {arg} (--image); it looks like an OCI reference, which `lvh run` pulls (not with --dry-run; `lvh images pull` pulls it to {})",
            args.dir.join("images").display()
        ))
        .into());
    }
    let arch = args.qemu_arch;
    let cache = lvh::fsutil::cache_dir();
    let ropts = lvh::oci::ResolveOptions {
        pull: lvh::oci::PullOptions::for_arch(arch),
        image_name,
    };
    let resolved = lvh::oci::resolve_image_with(&reference, &ropts, &cache, &ctx.reporter)
        .with_context(|| {
            format!("no such local file {arg:?}; pulling it as an OCI reference failed")
        })?;
    if resolved.cached {
        tracing::info!(path = %resolved.path.display(), "using cached {reference}");
    }
    let (path, _) = lvh::oci::place::place_pulled(
        &resolved.path,
        &cache.join("oci").join("images"),
        &args.dir.join("images"),
        args.persist,
        &ctx.reporter,
    )?;
    Ok(path)
}

/// `--splat` and `--splat-allow`, checked (an expired entry fails here).
fn splat_policy(args: &RunArgs, ctx: &Ctx) -> anyhow::Result<lvh::runner::SplatPolicy> {
    use lvh::runner::{Date, SplatPolicy};
    let (policy, warnings) =
        SplatPolicy::load(args.splat, args.splat_allow.as_deref(), Date::today())?;
    for w in warnings {
        lvh::progress::warn(&ctx.reporter, w);
    }
    Ok(policy)
}

pub fn dispatch(args: &RunArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let states = lvh::runner::states_dir(&args.dir);
    if args.list_states {
        for s in lvh::runner::list_states(&states) {
            match s {
                Ok(m) => outln!("{}", lvh::runner::describe_state(&m)),
                Err(e) => lvh::progress::warn(&ctx.reporter, e),
            }
        }
        return Ok(ExitCode::Success);
    }
    if let Some(name) = &args.remove_state {
        lvh::runner::remove_state(&states, name)?;
        return Ok(ExitCode::Success);
    }
    let mut opts = options(args, ctx)?;
    if let (Some(r), None) = (&args.result_json, &opts.console_log) {
        // The console goes beside the result, where the result says it is.
        let mut name = r.as_os_str().to_owned();
        name.push(".console.log");
        opts.console_log = Some(name.into());
    }
    let state = match (&args.save_state, &args.from_state) {
        (Some(name), _) => Some(StateRequest::Save {
            states: states.clone(),
            name: name.clone(),
        }),
        (None, Some(name)) => Some(StateRequest::Restore {
            states: states.clone(),
            name: name.clone(),
        }),
        (None, None) => None,
    };
    let dry = args.dry_run || args.qemu_cmd_print;
    let req = RunRequest {
        options: opts,
        state,
        check_host: !dry,
        check_kernel: !dry && !args.no_kernel_check,
    };
    let prepared = lvh::runner::prepare(req, &Host::probe())?;
    for w in &prepared.warnings {
        lvh::progress::warn(&ctx.reporter, w.clone());
    }
    if ctx.verbose > 0 {
        for n in &prepared.notes {
            lvh::progress::info(&ctx.reporter, n.clone());
        }
    }
    if let Some(source) = &prepared.kernel_checked {
        tracing::debug!("kernel configuration checked: {source}");
    }
    let mut plan = prepared.plan;
    let policy = splat_policy(args, ctx)?;
    if dry {
        let dir = std::env::temp_dir().join("lvh-run-XXXXXX");
        if let Some(g) = &plan.gdb {
            plan.gdb = Some(g.placed_in(&std::env::temp_dir().join("lvh-gdb-XXXXXX")));
        }
        outln!("{}", lvh::runner::qemu_cmd(&plan, &dir).display());
        return Ok(ExitCode::Success);
    }
    let sinks = Sinks {
        stdout: Box::new(std::io::stdout()),
        stderr: Box::new(std::io::stderr()),
        console: (ctx.verbose > 0).then(|| Box::new(std::io::stderr()) as Box<dyn Write + Send>),
    };
    // little-vm-helper's run --verbose: print the QEMU command, then run it.
    let print_cmd = ctx.verbose > 0;
    let report = lvh::runner::run_report(&plan, &policy, sinks, &ctx.reporter, print_cmd);
    if let Some(path) = &args.result_json {
        lvh::runner::RunResult::new(&report.result, &report.facts).write(path)?;
    }
    match report.result? {
        Outcome::Command(code) | Outcome::Exited(code) => {
            Ok(ExitCode::Command((code & 0xff) as u8))
        }
        Outcome::Daemonized { .. } => {
            if let lvh::runner::Mode::Daemon {
                ssh_port: Some(port),
                ..
            } = plan.mode
            {
                let key = plan.ssh_key.as_ref().map(|(f, _)| f.as_path());
                outln!("{}", lvh::runner::login_line(port, key));
            }
            Ok(ExitCode::Success)
        }
    }
}
