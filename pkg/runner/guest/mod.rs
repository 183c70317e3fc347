//! The guest protocol: everything lvh's host side and its guest inits agree
//! on, in one place (docs/guest-protocol.md describes it for users). The
//! guest gets a read-only 9p control share (tag [`CONTROL_TAG`]) or an
//! initramfs, three virtio-serial ports ([`PORT_STDOUT`], [`PORT_STDERR`],
//! [`PORT_CONTROL`]) and, with `--host-mount`, the share [`HOST_MOUNT_TAG`]
//! (virtiofs or 9p, [`GuestFs`]) at [`HOST_MOUNT_PATH`] in every mode.
//! On the control port the guest says [`ControlMsg`]s, one per line, and the
//! host answers with [`HostMsg`]s.
//!
//! What the guest's init does is a plan ([`steps`]), the same for both of
//! lvh's inits: the shell init ([`shell_init`]: `init.sh` run by the image's
//! `/bin/sh`) and the static init ([`initramfs`]: `guest_init.c` from an
//! initramfs).

pub mod initramfs;
pub mod shell_init;
pub mod steps;

/// virtio-serial port names: the command's stdout, stderr, and the control port.
pub const PORT_STDOUT: &str = "lvh.stdout";
pub const PORT_STDERR: &str = "lvh.stderr";
pub const PORT_CONTROL: &str = "lvh.ctl";
/// The mount tag of `--host-mount` (little-vm-helper's), over 9p or virtiofs.
pub const HOST_MOUNT_TAG: &str = "host_mount";
/// The 9p mount tag of lvh's read-only control share (the shell init's files).
pub const CONTROL_TAG: &str = "lvhctl";
/// Where `--host-mount DIR` appears in the guest: a command, the shell and
/// a restored VM alike (and little-vm-helper's images and action).
pub const HOST_MOUNT_PATH: &str = "/host";
/// Where the bootstrap mounts the control share. The init then covers it
/// with a tmpfs; the shell keeps reading its script through its open file.
pub const CONTROL_PATH: &str = "/run";
/// Static guest networking for QEMU's user network, set by the kernel
/// (`CONFIG_IP_PNP`) or, without it, by the init.
pub const IP_CONFIG: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";
/// [`IP_CONFIG`]'s parts: device, address, netmask, gateway.
pub const NET: [&str; 4] = ["eth0", "10.0.2.15", "255.255.255.0", "10.0.2.2"];
/// The environment the command gets (besides what the kernel passes to init).
pub const ENV: [&str; 4] = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "USER=root",
    "LOGNAME=root",
];
/// The guest's hostname when the image has no `/etc/hostname` (systemd's default).
pub const FALLBACK_HOSTNAME: &str = "localhost";
/// Console lines from the guest init that mean "lvh could not set up".
pub const GUEST_ERROR_PREFIX: &str = "lvh-guest: error: ";
/// What follows "CPUs N-M" when a late CPU stayed offline.
pub const LATE_CPUS_ERROR: &str = "did not come online (lvh booted the kernel with maxcpus=1 and onlines the rest; --fast-boot=false boots them all with the kernel)";

/// `--kmemleak`'s wrapper around the command (a real file, `kmemleak.sh`).
const KMEMLEAK_SH: &str = include_str!("kmemleak.sh");
/// The kernel parameters of a `--kmemleak` boot: every leak a scan finds is
/// printed on the console, and memory is zeroed when it is allocated. Without
/// the zeroing, a stale copy of a leaked pointer in reused memory (an object
/// whose new owner does not write all of it) keeps the leak referenced: the
/// test kernel's five leaks went unreported in about one run in eight.
pub const KMEMLEAK_APPEND: [&str; 2] = ["kmemleak.verbose=1", "init_on_alloc=1"];

/// The guest argv that runs `argv` under the `--kmemleak` wrapper (its
/// comments left out).
pub fn kmemleak_argv(argv: &[String]) -> Vec<String> {
    let script: String = KMEMLEAK_SH
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let mut v = vec!["sh".into(), "-c".into(), script, "lvh-kmemleak".into()];
    v.extend(argv.iter().cloned());
    v
}

/// What the guest should run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestCommand {
    pub argv: Vec<String>,
    /// Directory to run in; relative paths are relative to the host mount.
    pub cwd: Option<String>,
    pub host_mount: bool,
    /// How the host mount is served.
    pub host_fs: GuestFs,
    /// `--persist`: flush the guest's writes to the image before reporting.
    pub persist: bool,
    /// `--ssh-key`: public keys for root, on a tmpfs over `/root/.ssh`.
    pub authorized_keys: Option<String>,
    /// The kernel boots with `maxcpus=1`: the init brings the other CPUs
    /// online while it sets up and waits for them before the command.
    pub late_cpus: bool,
}

/// The file system the guest mounts the host share with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GuestFs {
    #[default]
    NineP,
    Virtiofs,
}

impl GuestFs {
    /// `mount -t`'s type.
    pub fn fstype(self) -> &'static str {
        match self {
            GuestFs::NineP => "9p",
            GuestFs::Virtiofs => "virtiofs",
        }
    }

    /// The mount's data options.
    pub fn data(self) -> &'static str {
        match self {
            GuestFs::NineP => "trans=virtio,version=9p2000.L",
            GuestFs::Virtiofs => "",
        }
    }
}

/// A message the guest sends on the control port, one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    /// `started`: the init runs (the guest is alive and booted).
    Started,
    /// `shell`: the interactive shell is starting on the console.
    Shell,
    /// `exit STATUS OUTBYTES ERRBYTES TAINT_BEFORE TAINT_AFTER`: the command
    /// ended with `status`, having written this many bytes; the kernel's
    /// taint flags before and after it (`-` when unreadable).
    Exit {
        status: i32,
        stdout_bytes: u64,
        stderr_bytes: u64,
        taint: Option<(u64, u64)>,
    },
    /// `error MESSAGE`: the init could not set up.
    Error(String),
    /// `saving`: the guest detached its 9p shares and waits to be saved.
    Saving,
}

/// Parses one control line; `None` for something lvh does not know (the
/// static init's `trace` lines among them).
pub fn parse_control(line: &str) -> Option<ControlMsg> {
    let line = line.trim_end_matches(['\n', '\r']);
    match line {
        "started" => return Some(ControlMsg::Started),
        "shell" => return Some(ControlMsg::Shell),
        "saving" => return Some(ControlMsg::Saving),
        _ => {}
    }
    if let Some(rest) = line.strip_prefix("error ") {
        return Some(ControlMsg::Error(rest.to_string()));
    }
    let mut it = line.split_whitespace();
    if it.next()? != "exit" {
        return None;
    }
    let status = it.next()?.parse().ok()?;
    let stdout_bytes = it.next()?.parse().ok()?;
    let stderr_bytes = it.next()?.parse().ok()?;
    let taint = match (it.next(), it.next()) {
        (Some(b), Some(a)) => b.parse().ok().zip(a.parse().ok()),
        _ => None,
    };
    Some(ControlMsg::Exit {
        status,
        stdout_bytes,
        stderr_bytes,
        taint,
    })
}

/// A message the host sends on the control port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMsg {
    /// `save`: detach the shares and wait to be saved (`--save-state`).
    Save,
    /// `run LEN` and LEN bytes of shell text: what a restored VM runs.
    Run(String),
    /// `winsz ROWS COLS`: the shell's terminal changed size.
    Winsz { rows: u16, cols: u16 },
}

impl HostMsg {
    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            HostMsg::Save => b"save\n".to_vec(),
            HostMsg::Run(text) => {
                let mut m = format!("run {}\n", text.len()).into_bytes();
                m.extend_from_slice(text.as_bytes());
                m
            }
            HostMsg::Winsz { rows, cols } => format!("winsz {rows} {cols}\n").into_bytes(),
        }
    }
}

/// Quotes one word for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Where the command runs (`--cwd`, the host mount, or root's home) and
/// whether that is required: a `--cwd` that does not exist fails the run,
/// the defaults fall back to `/`.
pub fn workdir(cmd: &GuestCommand) -> (String, bool) {
    let cwd = match &cmd.cwd {
        Some(c) if c.starts_with('/') => c.clone(),
        Some(c) => format!("{HOST_MOUNT_PATH}/{c}"),
        None if cmd.host_mount => HOST_MOUNT_PATH.to_string(),
        None => "/root".to_string(),
    };
    (cwd, cmd.cwd.is_some())
}

/// Why a required working directory fails the run.
pub fn workdir_error(dir: &str) -> String {
    format!("cannot change to directory {dir}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_words_whole() {
        assert_eq!(sh_quote("uname"), "uname");
        assert_eq!(sh_quote("-a"), "-a");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$HOME;rm"), "'$HOME;rm'");
    }

    #[test]
    fn control_messages() {
        assert_eq!(parse_control("started\n"), Some(ControlMsg::Started));
        assert_eq!(parse_control("shell\n"), Some(ControlMsg::Shell));
        assert_eq!(parse_control("saving"), Some(ControlMsg::Saving));
        assert_eq!(
            parse_control("exit 42 10 0"),
            Some(ControlMsg::Exit {
                status: 42,
                stdout_bytes: 10,
                stderr_bytes: 0,
                taint: None,
            })
        );
        assert_eq!(
            parse_control("exit 0 1 2 0 512"),
            Some(ControlMsg::Exit {
                status: 0,
                stdout_bytes: 1,
                stderr_bytes: 2,
                taint: Some((0, 512)),
            })
        );
        assert_eq!(
            parse_control("exit 0 1 2 - -"),
            Some(ControlMsg::Exit {
                status: 0,
                stdout_bytes: 1,
                stderr_bytes: 2,
                taint: None,
            })
        );
        assert_eq!(
            parse_control("error cannot mount"),
            Some(ControlMsg::Error("cannot mount".into()))
        );
        for unknown in ["exit x 1 2", "exit 1 2", "hello", "trace 1.0 main"] {
            assert_eq!(parse_control(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn host_messages() {
        assert_eq!(HostMsg::Save.encode(), b"save\n");
        assert_eq!(HostMsg::Run("ls\n".into()).encode(), b"run 3\nls\n");
        assert_eq!(
            HostMsg::Winsz {
                rows: 50,
                cols: 132
            }
            .encode(),
            b"winsz 50 132\n"
        );
    }

    #[test]
    fn the_network_is_the_kernels_ip_parameter() {
        let [dev, addr, mask, gw] = NET;
        assert_eq!(IP_CONFIG, format!("ip={addr}::{gw}:{mask}::{dev}:off"));
    }

    #[test]
    fn working_directories() {
        let c = |cwd: Option<&str>, host_mount| GuestCommand {
            argv: vec!["ls".into()],
            cwd: cwd.map(String::from),
            host_mount,
            host_fs: GuestFs::NineP,
            persist: false,
            authorized_keys: None,
            late_cpus: false,
        };
        assert_eq!(workdir(&c(None, false)), ("/root".into(), false));
        assert_eq!(workdir(&c(None, true)), ("/host".into(), false));
        assert_eq!(workdir(&c(Some("t/x"), true)), ("/host/t/x".into(), true));
        assert_eq!(workdir(&c(Some("/tmp"), false)), ("/tmp".into(), true));
    }
}
