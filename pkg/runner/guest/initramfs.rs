//! lvh's static guest init for command mode, shipped in an initramfs.
//!
//! Under TCG the shell init's first `sh`, `mount`, `mkfifo` and `dd` cost
//! about a third of a second of guest time before and around the command: each
//! cold program start reads and links its libraries. `guest_init.c`, built by
//! `build.rs` into a static program per guest architecture, does the same
//! work without starting any program but the command. The kernel runs it from
//! a tiny initramfs (`rdinit=/lvh-init`): it mounts the root device itself,
//! switches to it, and follows the plan ([`super::steps`]) written here as
//! records ([`records`]), the same plan the shell init runs. The shell init
//! stays in use where this one does not apply ([`applies`]), and for an
//! architecture this lvh was built without an init for ([`embedded`]).

use super::steps::{self, Mount, RootSpec, Step};
use super::{GuestCommand, HostMsg};
use crate::arch::Arch;

mod bins {
    include!(concat!(env!("OUT_DIR"), "/guest_init.rs"));
}

/// The init's path in the initramfs, for `rdinit=`.
pub const INIT_PATH: &str = "/lvh-init";
/// Where the init reads its plan.
pub const PLAN_PATH: &str = "/lvh-plan";

/// The static init for `arch`, when this lvh was built with one.
pub fn init_binary(arch: Arch) -> Option<&'static [u8]> {
    match arch {
        Arch::Amd64 => bins::AMD64,
        Arch::Arm64 => bins::ARM64,
    }
}

/// Which static inits this lvh has, per architecture (`lvh version -v`).
pub fn embedded() -> Vec<(Arch, bool)> {
    Arch::ALL
        .iter()
        .map(|a| (*a, init_binary(*a).is_some()))
        .collect()
}

/// The Debian package whose cross compiler builds the static init for
/// `arch` on a host of `host`'s architecture (`gcc` builds the host's own).
pub fn compiler_package(arch: Arch, host: Arch) -> &'static str {
    match (arch, host) {
        (a, h) if a == h => "gcc",
        (Arch::Arm64, _) => "gcc-aarch64-linux-gnu",
        (Arch::Amd64, _) => "gcc-x86-64-linux-gnu",
    }
}

/// What `-v` says when a command run could use the static init but this lvh
/// has none for `arch`: the shell init is slower, and how to get the init.
pub fn missing_note(arch: Arch) -> String {
    format!(
        "this lvh was built without the static guest init for {arch}, so the guest boots with the slower shell init; \
         install {} and rebuild lvh (or use a release build, which has both)",
        compiler_package(arch, Arch::host())
    )
}

/// The kernel parameters that hand the boot to the initramfs init. The
/// `init=` is a guard: a kernel that ignored the initramfs would mount the
/// root and panic, naming `/lvh-init`, instead of booting the image's init.
pub fn cmdline_params() -> [String; 2] {
    [format!("rdinit={INIT_PATH}"), format!("init={INIT_PATH}")]
}

/// Whether a command run could boot through the initramfs init, this lvh's
/// inits aside: the kernel's configuration is known to unpack an initramfs
/// (`BLK_DEV_INITRD`) and to have `DEVTMPFS` (the init's `/dev`), and the
/// user's `--append` leaves init and root to lvh (no `init=` or `rdinit=`,
/// a root that [`super::steps::root_spec`] takes). Returns that root.
pub fn applies(kernel_can: bool, cmdline: &[String], append: &[String]) -> Option<RootSpec> {
    let users_init = append
        .iter()
        .any(|a| a.starts_with("init=") || a.starts_with("rdinit="));
    if !kernel_can || users_init {
        return None;
    }
    super::steps::root_spec(cmdline)
}

/// One record of the init's plan file: a name and its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: &'static str,
    pub fields: Vec<String>,
}

fn rec(name: &'static str, fields: &[&str]) -> Record {
    Record {
        name,
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

fn flag_bits(flags: &[&str], readonly: bool) -> u64 {
    let mut bits: u64 = if readonly { libc::MS_RDONLY } else { 0 };
    for f in flags {
        bits |= match *f {
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            other => unreachable!("mount flag {other} has no bit here"),
        };
    }
    bits
}

fn bit(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// `mount TYPE SRC DIR FLAGS DATA MKDIR NEED MSG`
fn mount_rec(m: &Mount) -> Record {
    rec(
        "mount",
        &[
            &m.fstype,
            &m.source,
            &m.dir,
            &flag_bits(&m.flags, false).to_string(),
            &m.data,
            bit(m.mkdir),
            bit(m.needed),
            &m.error,
        ],
    )
}

/// The plan as the static init's records, step by step. The shell-only
/// steps (ssh keys, the shell) never reach it: a run that needs them boots
/// the shell init.
pub fn records(steps: &[Step]) -> Vec<Record> {
    let mut v = Vec::new();
    for s in steps {
        match s {
            Step::Env(vars) => v.push(rec(
                "env",
                &vars.iter().map(String::as_str).collect::<Vec<_>>(),
            )),
            Step::Cpus => v.push(rec("cpus", &[])),
            Step::Root(r) => v.push(rec(
                "root",
                &[
                    &r.dev,
                    &r.fstypes,
                    &flag_bits(&[], r.readonly).to_string(),
                    &r.data,
                ],
            )),
            Step::Mounts(ms) => v.extend(ms.iter().map(mount_rec)),
            Step::Hostname(f) => v.push(rec("hostname", &[f])),
            Step::Ports([o, e, c]) => v.push(rec("ports", &[o, e, c])),
            Step::Net([d, a, m, g]) => v.push(rec("net", &[d, a, m, g])),
            Step::Mount(m) => v.push(mount_rec(m)),
            Step::Cd {
                dir,
                required,
                error,
            } => v.push(rec("cd", &[dir, bit(*required), error])),
            Step::Prefetch(p) => v.push(rec("prefetch", &[p])),
            Step::WaitCpus(msg) => v.push(rec("waitcpus", &[msg])),
            Step::Run { persist, argv } => {
                let mut fields = vec![bit(*persist).to_string()];
                fields.extend(argv.iter().cloned());
                v.push(Record {
                    name: "run",
                    fields,
                });
            }
            Step::Serve => v.push(rec("serve", &[])),
            Step::SshKeys(_) | Step::Shell { .. } => {
                unreachable!("the static init does not run {s:?}")
            }
        }
    }
    v
}

/// The plan file: per record its name, its field count in decimal and its
/// fields, each NUL-terminated (fields cannot hold a NUL: they are argv words,
/// paths and file-system options).
pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut b = Vec::new();
    let mut put = |s: &str| {
        b.extend_from_slice(s.as_bytes());
        b.push(0);
    };
    for r in records {
        put(r.name);
        put(&r.fields.len().to_string());
        for f in &r.fields {
            put(f);
        }
    }
    b
}

/// What a restored VM whose static init serves it runs: [`steps::restore`]
/// as records, in a `run LEN` message (the fields are UTF-8 and hold no NUL,
/// so the text is the records' bytes).
pub fn restore_message(cmd: &GuestCommand) -> HostMsg {
    let bytes = encode(&records(&steps::restore(cmd)));
    HostMsg::Run(String::from_utf8(bytes).expect("records are made of strings"))
}

/// A file in a `newc` cpio archive.
pub struct Entry<'a> {
    pub path: &'a str,
    /// Type and permission bits (`0o100755`, `0o40755`, `0o20600`).
    pub mode: u32,
    /// Device number of a device node (major, minor).
    pub rdev: (u32, u32),
    pub data: &'a [u8],
}

/// The `newc` cpio archive the kernel unpacks into its root file system:
/// per entry a 110-byte ASCII header, the NUL-terminated name and the data,
/// each padded to 4 bytes; then the `TRAILER!!!` entry.
pub fn cpio(entries: &[Entry]) -> Vec<u8> {
    fn pad(b: &mut Vec<u8>) {
        while b.len() % 4 != 0 {
            b.push(0);
        }
    }
    let mut b = Vec::new();
    let trailer = Entry {
        path: "TRAILER!!!",
        mode: 0,
        rdev: (0, 0),
        data: &[],
    };
    for (ino, e) in entries.iter().chain([&trailer]).enumerate() {
        let name = e.path.trim_start_matches('/');
        let nlink = if e.mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            ino as u32 + 1,
            e.mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            e.data.len() as u32,
            0, // dev major
            0, // dev minor
            e.rdev.0,
            e.rdev.1,
            name.len() as u32 + 1,
            0, // checksum
        ];
        b.extend_from_slice(b"070701");
        for f in fields {
            b.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        pad(&mut b);
        b.extend_from_slice(e.data);
        pad(&mut b);
    }
    b
}

/// The initramfs for a command run on `arch`: `/dev/console` (for the
/// kernel to open init's stdio on), the init and its plan. `None` when lvh
/// has no init for `arch`.
pub fn archive(arch: Arch, steps: &[Step]) -> Option<Vec<u8>> {
    let init = init_binary(arch)?;
    let plan = encode(&records(steps));
    Some(cpio(&[
        Entry {
            path: "dev",
            mode: 0o40755,
            rdev: (0, 0),
            data: &[],
        },
        Entry {
            path: "dev/console",
            mode: 0o20600,
            rdev: (5, 1),
            data: &[],
        },
        Entry {
            path: INIT_PATH,
            mode: 0o100755,
            rdev: (0, 0),
            data: init,
        },
        Entry {
            path: PLAN_PATH,
            mode: 0o100600,
            rdev: (0, 0),
            data: &plan,
        },
    ]))
}

#[cfg(test)]
#[path = "initramfs_tests.rs"]
mod tests;
