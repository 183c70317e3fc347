//! lvh's static guest init for command mode, shipped in an initramfs.
//!
//! Under TCG the shell init's first `sh`, `mount`, `mkfifo` and `dd` cost
//! about a third of a second of guest time before and around the command: each
//! cold program start reads and links its libraries. `guest_init.c`, built by
//! `build.rs` into a static program per guest architecture, does the same
//! work without starting any program but the command. The kernel runs it from
//! a tiny initramfs (`rdinit=/lvh-init`): it mounts the root device itself,
//! switches to it, and follows the plan written here ([`records`]): the same
//! steps, the same messages and the same protocol on the ports as the shell
//! init ([`super::guest`]), which stays in use where this one does not apply
//! ([`usable`]).

use super::guest::{self, GuestCommand, MOUNTS};
use super::qemu::{HOST_MOUNT_TAG, PORT_CONTROL, PORT_STDERR, PORT_STDOUT};
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

/// The kernel parameters that hand the boot to the initramfs init. The
/// `init=` is a guard: a kernel that ignored the initramfs would mount the
/// root and panic, naming `/lvh-init`, instead of booting the image's init.
pub fn cmdline_params() -> [String; 2] {
    [format!("rdinit={INIT_PATH}"), format!("init={INIT_PATH}")]
}

/// The root file system as the kernel command line asks for it (the last
/// `root=`, `rootfstype=`, `rootflags=`, `ro`/`rw` win, as in the kernel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootSpec {
    pub dev: String,
    /// Comma-separated; empty: every block file system the kernel knows.
    pub fstypes: String,
    pub readonly: bool,
    pub data: String,
}

/// The root of `words` (a kernel command line), when it names a device node
/// (`/dev/vda`): the only kind the init mounts. `PARTUUID=` and the like stay
/// with the kernel (and the shell init).
pub fn root_spec(words: &[String]) -> Option<RootSpec> {
    let mut root = None;
    let mut spec = RootSpec {
        dev: String::new(),
        fstypes: String::new(),
        readonly: true,
        data: String::new(),
    };
    for w in words {
        if let Some(v) = w.strip_prefix("root=") {
            root = Some(v.to_string());
        } else if let Some(v) = w.strip_prefix("rootfstype=") {
            spec.fstypes = v.to_string();
        } else if let Some(v) = w.strip_prefix("rootflags=") {
            spec.data = v.to_string();
        } else if w == "ro" {
            spec.readonly = true;
        } else if w == "rw" {
            spec.readonly = false;
        }
    }
    spec.dev = root.filter(|r| r.starts_with("/dev/") && !r.contains(char::is_whitespace))?;
    Some(spec)
}

/// Whether a command run can boot through the initramfs init: lvh has one
/// for `arch`, the kernel's configuration is known to unpack an initramfs
/// (`BLK_DEV_INITRD`) and to have `DEVTMPFS` (the init's `/dev`), and the
/// user's `--append` leaves init and root to lvh (no `init=` or `rdinit=`,
/// a root that [`root_spec`] takes). Returns that root, which the init mounts.
pub fn usable(
    arch: Arch,
    kernel_can: bool,
    cmdline: &[String],
    append: &[String],
) -> Option<RootSpec> {
    let users_init = append
        .iter()
        .any(|a| a.starts_with("init=") || a.starts_with("rdinit="));
    if init_binary(arch).is_none() || !kernel_can || users_init {
        return None;
    }
    root_spec(cmdline)
}

/// One step of the init's plan: a name and its fields.
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

fn mount_rec(m: &guest::GuestMount) -> Record {
    let bits = flag_bits(m.flags, false).to_string();
    let msg = format!("cannot mount {} ({})", m.dir, m.fstype);
    rec(
        "mount",
        &[
            m.fstype,
            m.source(),
            m.dir,
            &bits,
            m.data,
            if m.mkdir { "1" } else { "0" },
            if m.needed { "1" } else { "0" },
            &msg,
        ],
    )
}

/// The init's plan for `cmd` with the root `root`: the shell init's steps in
/// its order, but for the late CPUs, which start first, and the command's
/// program, which loads while they come up.
pub fn records(cmd: &GuestCommand, root: &RootSpec) -> Vec<Record> {
    // The late CPUs start coming online first: their bring-up is the longest
    // step, and everything else overlaps it.
    let mut v = Vec::new();
    if cmd.late_cpus {
        v.push(rec("cpus", &[]));
    }
    v.push(rec(
        "root",
        &[
            &root.dev,
            &root.fstypes,
            &flag_bits(&[], root.readonly).to_string(),
            &root.data,
        ],
    ));
    v.extend(MOUNTS.iter().map(mount_rec));
    v.push(rec("hostname", &[guest::FALLBACK_HOSTNAME]));
    v.push(rec("ports", &[PORT_STDOUT, PORT_STDERR, PORT_CONTROL]));
    v.push(rec("net", &guest::NET));
    if cmd.host_mount {
        let msg = format!(
            "cannot mount the host directory at {}",
            guest::HOST_MOUNT_PATH
        );
        v.push(rec(
            "mount",
            &[
                "9p",
                HOST_MOUNT_TAG,
                guest::HOST_MOUNT_PATH,
                "0",
                "trans=virtio,version=9p2000.L",
                "1",
                "1",
                &msg,
            ],
        ));
    }
    v.push(rec("env", &guest::ENV));
    let (dir, required) = guest::workdir(cmd);
    v.push(rec(
        "cd",
        &[
            &dir,
            if required { "1" } else { "0" },
            &guest::workdir_error(&dir),
        ],
    ));
    if cmd.late_cpus {
        // While the CPUs are still coming up, the command's program loads.
        if let Some(program) = cmd.argv.first() {
            v.push(rec("prefetch", &[program]));
        }
        v.push(rec("waitcpus", &[guest::LATE_CPUS_ERROR]));
    }
    let mut run = vec![if cmd.persist { "1" } else { "0" }.to_string()];
    run.extend(cmd.argv.iter().cloned());
    v.push(Record {
        name: "run",
        fields: run,
    });
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
pub fn archive(arch: Arch, cmd: &GuestCommand, root: &RootSpec) -> Option<Vec<u8>> {
    let init = init_binary(arch)?;
    let plan = encode(&records(cmd, root));
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
