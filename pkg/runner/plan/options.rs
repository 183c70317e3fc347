//! What a run is asked to do, typed ([`RunOptions`], with the defaults of
//! `lvh run`), and the one vocabulary `lvh run`'s flags and `lvh test`'s
//! test files share ([`KEYS`]): each setting has one name per place (and the
//! other place's spelling as an alias), one parser and one default. The
//! parsers turn text into typed values and name the field in their errors.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::accel::AccelChoice;
use super::ports::PortForward;
use crate::arch::Arch;
use crate::error::InvalidInput;

/// One setting both `lvh run` (a flag) and a test of `lvh-tests.json` (a
/// key) take, with the same value syntax and the same default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The flag (little-vm-helper's spelling where it has one).
    pub flag: &'static str,
    /// Other spellings of the flag (the test file's).
    pub flag_aliases: &'static [&'static str],
    /// The test file's key.
    pub file: &'static str,
    /// Other spellings of the key (the flag's).
    pub file_aliases: &'static [&'static str],
    /// The default as a user writes it, when the setting has one.
    pub default: Option<&'static str>,
}

/// vCPUs.
pub const CPUS: Key = Key {
    flag: "--cpu",
    flag_aliases: &["--cpus"],
    file: "cpus",
    file_aliases: &["cpu"],
    default: Some("2"),
};
/// Guest RAM.
pub const MEMORY: Key = Key {
    flag: "--mem",
    flag_aliases: &["--memory"],
    file: "memory",
    file_aliases: &["mem"],
    default: Some("4G"),
};
/// How long the command may run.
pub const TIMEOUT: Key = Key {
    flag: "--timeout",
    flag_aliases: &[],
    file: "timeout",
    file_aliases: &[],
    default: None,
};
/// A host directory mounted in the guest.
pub const HOST_MOUNT: Key = Key {
    flag: "--host-mount",
    flag_aliases: &[],
    file: "host_mount",
    file_aliases: &["host-mount"],
    default: None,
};
/// Where the command runs.
pub const CWD: Key = Key {
    flag: "--cwd",
    flag_aliases: &[],
    file: "cwd",
    file_aliases: &[],
    default: None,
};

/// Every shared setting.
pub const KEYS: [Key; 5] = [CPUS, MEMORY, TIMEOUT, HOST_MOUNT, CWD];

/// The test file's name for the setting a flag names (`--mem` → `memory`),
/// for errors about a test.
pub fn file_key(flag: &str) -> Option<&'static str> {
    KEYS.iter()
        .find(|k| k.flag == flag || k.flag_aliases.contains(&flag))
        .map(|k| k.file)
}

/// `--cpu`'s default.
pub const DEFAULT_CPUS: u32 = 2;
/// `--mem`'s default.
pub const DEFAULT_MEM: &str = "4G";
/// `--ssh-timeout`'s default, in seconds.
pub const DEFAULT_SSH_TIMEOUT: &str = "300";

/// A RAM size (`--mem`), in bytes. Parsed as QEMU parses `-m`: a positive
/// whole number with an optional K, M, G or T suffix (any case, binary units);
/// a plain number is MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemSize(u64);

impl MemSize {
    /// A size of `bytes` (not checked: for sizes that came from one).
    pub(crate) const fn from_bytes(bytes: u64) -> MemSize {
        MemSize(bytes)
    }

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
    type Err = InvalidInput;

    fn from_str(mem: &str) -> Result<MemSize, InvalidInput> {
        let bad = || {
            InvalidInput::value(
                MEMORY.flag,
                mem,
                "invalid memory size: expected a positive number with an optional K, M, G or T suffix, e.g. 4G or 512M",
            )
        };
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
            (Some(n), Some(shift)) if n > 0 && num.chars().all(|c| c.is_ascii_digit()) => {
                n.checked_mul(1u64 << shift).map(MemSize).ok_or_else(bad)
            }
            _ => Err(bad()),
        }
    }
}

/// A duration: a number of seconds (`30`, `1.5`) or number-unit pairs with
/// units `ms`, `s`, `m`, `h` (`90s`, `5m`, `1h30m`). `None` when it is not one
/// or not positive.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return (v.is_finite() && v > 0.0).then(|| Duration::from_secs_f64(v));
    }
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * mult;
    }
    (total.is_finite() && total > 0.0).then(|| Duration::from_secs_f64(total))
}

/// Why a value is not a duration, for every field that takes one.
pub const DURATION_SYNTAX: &str =
    "not a duration: expected seconds (30) or a number with a unit (30s, 5m, 1h30m)";

/// `parse_duration` for `field`, with an error that names it.
pub fn duration(field: &str, s: &str) -> Result<Duration, InvalidInput> {
    parse_duration(s).ok_or_else(|| InvalidInput::value(field, s, DURATION_SYNTAX))
}

/// Where the root disk is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RootDev {
    /// virtio-blk, `/dev/vda` (the default).
    #[default]
    Vda,
    /// The first IDE disk on the PIIX controller of QEMU's `pc` machine, as
    /// little-vm-helper's `-hda` gives it: `/dev/sda` through `ata_piix` (amd64 only).
    Hda,
}

impl RootDev {
    /// `vda`, or `hda` and its alias `sda` (the name the guest sees).
    pub fn parse(s: &str) -> Option<RootDev> {
        match s {
            "vda" => Some(RootDev::Vda),
            "hda" | "sda" => Some(RootDev::Hda),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            RootDev::Vda => "vda",
            RootDev::Hda => "hda",
        }
    }

    /// The guest device the kernel mounts as root.
    pub const fn kernel_root(self) -> &'static str {
        match self {
            RootDev::Vda => "/dev/vda",
            RootDev::Hda => "/dev/sda",
        }
    }
}

/// `--root-dev`: `vda`, or `hda` and its alias `sda`.
pub fn parse_root_dev(s: &str) -> Result<RootDev, InvalidInput> {
    RootDev::parse(s).ok_or_else(|| {
        InvalidInput::value(
            "--root-dev",
            s,
            "invalid root device: expected vda, hda or sda",
        )
    })
}

/// `-p` values, each checked.
pub fn parse_ports(values: &[String]) -> Result<Vec<PortForward>, InvalidInput> {
    values.iter().map(|v| PortForward::parse(v)).collect()
}

/// Everything a run is asked to do, typed: what `lvh run`'s flags say, or
/// what a test of `lvh test` says with the rest at `lvh run`'s defaults
/// ([`Default`]). `None` means "not asked for" (no serial port, no timeout).
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// A local path: references are pulled before the runner sees them.
    /// `None` only when a saved state provides it (`--from-state`).
    pub image: Option<PathBuf>,
    pub kernel: Option<PathBuf>,
    pub arch: Arch,
    /// From `--no-hw-accel`, `--accel` and `LVH_ACCEL` (see [`super::accel::choose`]).
    pub accel: AccelChoice,
    pub cpus: u32,
    pub mem: MemSize,
    pub cpu_kind: Option<String>,
    pub root_dev: RootDev,
    /// `--append` values as given (each may hold several words).
    pub append: Vec<String>,
    pub ports: Vec<PortForward>,
    pub host_mount: Option<PathBuf>,
    /// `--host-mount-fs`: virtiofs or 9p (see `sharefs`).
    pub host_mount_fs: super::sharefs::FsRequest,
    pub serial_port: Option<u16>,
    pub monitor_port: Option<u16>,
    pub console_log: Option<PathBuf>,
    pub daemonize: bool,
    /// The guest command (`-- CMD`); empty for none.
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
    /// `--shell`: lvh's root shell with `--kernel` and no command; otherwise
    /// (the default) the console, as little-vm-helper shows it.
    pub shell: bool,
    /// `--gdb [PORT]` and `--gdb-wait`: `Some(None)` is a bare `--gdb`
    /// (a unix socket only its user reaches), `Some(Some(port))` TCP.
    pub gdb: Option<Option<u16>>,
    pub gdb_wait: bool,
    /// `--ssh-key`: a public key file for root's authorized_keys (see `sshkey`).
    pub ssh_key: Option<PathBuf>,
    /// `--cloud-init`: a NoCloud user-data for the image's own cloud-init.
    pub cloud_init: Option<PathBuf>,
    /// `--cloud-init-meta`: the seed's meta-data (lvh makes one without it).
    pub cloud_init_meta: Option<PathBuf>,
    /// `--kmemleak`: scan for kernel memory leaks after the command; a leak
    /// is a splat (see `guest::kmemleak_argv`).
    pub kmemleak: bool,
}

impl Default for RunOptions {
    /// `lvh run`'s defaults: the host's architecture, `auto` acceleration,
    /// 2 vCPUs, 4G, `vda`, the fast boot on, no command.
    fn default() -> RunOptions {
        RunOptions {
            image: None,
            kernel: None,
            arch: Arch::host(),
            accel: AccelChoice::Auto,
            cpus: DEFAULT_CPUS,
            mem: DEFAULT_MEM.parse().expect("the default memory size parses"),
            cpu_kind: None,
            root_dev: RootDev::Vda,
            append: vec![],
            ports: vec![],
            host_mount: None,
            host_mount_fs: Default::default(),
            serial_port: None,
            monitor_port: None,
            console_log: None,
            daemonize: false,
            cmd: vec![],
            cwd: None,
            persist: false,
            boot_timeout: None,
            timeout: None,
            wait_ssh: false,
            ssh_timeout: parse_duration(DEFAULT_SSH_TIMEOUT).expect("the default parses"),
            qemu_args: vec![],
            fast_boot: true,
            shell: false,
            gdb: None,
            gdb_wait: false,
            ssh_key: None,
            cloud_init: None,
            cloud_init_meta: None,
            kmemleak: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                e.starts_with(&format!("--mem {bad:?}: invalid memory size")),
                "{e}"
            );
        }
    }

    #[test]
    fn durations() {
        let s = Duration::from_secs;
        for (text, want) in [
            ("30", Some(s(30))),
            ("1.5", Some(Duration::from_millis(1500))),
            ("90s", Some(s(90))),
            ("20m", Some(s(1200))),
            ("1h30m", Some(s(5400))),
            ("250ms", Some(Duration::from_millis(250))),
            (" 5m ", Some(s(300))),
            ("0", None),
            ("-1", None),
            ("", None),
            ("5x", None),
            ("m", None),
            ("inf", None),
            ("NaN", None),
            ("1.2.3s", None),
            ("5 m", None),
        ] {
            assert_eq!(parse_duration(text), want, "{text:?}");
        }
        let e = duration("--timeout", "soon").unwrap_err().to_string();
        assert_eq!(e, format!("--timeout \"soon\": {DURATION_SYNTAX}"));
    }

    #[test]
    fn root_devices() {
        assert_eq!(parse_root_dev("vda").unwrap(), RootDev::Vda);
        assert_eq!(parse_root_dev("hda").unwrap(), RootDev::Hda);
        assert_eq!(parse_root_dev("sda").unwrap(), RootDev::Hda);
        let e = parse_root_dev("sdb").unwrap_err().to_string();
        assert!(
            e.contains("--root-dev \"sdb\": invalid root device: expected vda, hda or sda"),
            "{e}"
        );
        for bad in ["", "vdb", "xvda", "HDA"] {
            assert_eq!(RootDev::parse(bad), None, "{bad}");
        }
    }

    /// Each shared key: its flag and its file key name each other as
    /// aliases, and a default is one the parsers take.
    #[test]
    fn the_vocabulary_is_one() {
        for k in KEYS {
            assert!(k.flag.starts_with("--"), "{k:?}");
            assert_eq!(file_key(k.flag), Some(k.file));
            for a in k.flag_aliases {
                assert_eq!(file_key(a), Some(k.file), "{a}");
                let bare = a.trim_start_matches("--").replace('-', "_");
                assert!(
                    k.file == bare || k.file_aliases.contains(&bare.as_str()),
                    "{k:?}: the flag alias {a} is no spelling of the file's"
                );
            }
        }
        let d = RunOptions::default();
        assert_eq!(CPUS.default, Some(d.cpus.to_string().as_str()));
        assert_eq!(
            MEMORY.default.map(|m| m.parse::<MemSize>().unwrap()),
            Some(d.mem)
        );
        assert_eq!(d.ssh_timeout, Duration::from_secs(300));
        assert_eq!(file_key("--serial-port"), None);
    }
}
