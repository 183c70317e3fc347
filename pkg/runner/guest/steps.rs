//! The plan of lvh's guest init: what the init does, in order, as a list of
//! [`Step`]s. One plan drives both inits: the shell init runs each step as
//! a function of `init.sh` ([`super::shell_init`]), the static init as a
//! record of its plan file ([`super::initramfs`]). Built here for a command
//! ([`command`]), a command whose VM is then saved ([`save`]) and the
//! interactive shell ([`shell`]).

use super::{
    workdir, workdir_error, GuestCommand, GuestFs, ENV, FALLBACK_HOSTNAME, HOST_MOUNT_PATH,
    HOST_MOUNT_TAG, LATE_CPUS_ERROR, NET, PORT_CONTROL, PORT_STDERR, PORT_STDOUT,
};

/// A file system the init mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub fstype: String,
    /// The device or tag (`host_mount`), or the file system's own name.
    pub source: String,
    pub dir: String,
    /// Mount flags: `nosuid`, `nodev`, `noexec`.
    pub flags: Vec<&'static str>,
    /// File-system options (`mode=0755`).
    pub data: String,
    /// Create the directory first.
    pub mkdir: bool,
    /// Setup fails without it (the others, such as bpffs on a kernel
    /// without BPF, are skipped).
    pub needed: bool,
    /// What the init says when a needed mount fails.
    pub error: String,
}

impl Mount {
    /// The options as `mount -o` and fstab spell them (`X-mount.mkdir` for
    /// util-linux's `mount -a`).
    pub fn options(&self) -> String {
        let mut o: Vec<&str> = Vec::new();
        if self.mkdir {
            o.push("X-mount.mkdir");
        }
        if !self.data.is_empty() {
            o.push(&self.data);
        }
        o.extend(&self.flags);
        if o.is_empty() {
            "defaults".into()
        } else {
            o.join(",")
        }
    }
}

const NOSUID_NODEV: &[&str] = &["nosuid", "nodev"];
const NOSUID_NODEV_NOEXEC: &[&str] = &["nosuid", "nodev", "noexec"];

/// The pseudo file systems the init mounts before the command, in order:
/// `/proc` first, `/run` covers the control share.
pub fn pseudo_mounts() -> Vec<Mount> {
    let m = |fstype: &str, dir: &str, flags: &[&'static str], data: &str, mkdir, needed| Mount {
        fstype: fstype.into(),
        source: fstype.into(),
        dir: dir.into(),
        flags: flags.to_vec(),
        data: data.into(),
        mkdir,
        needed,
        error: format!("cannot mount {dir} ({fstype})"),
    };
    vec![
        m("proc", "/proc", NOSUID_NODEV_NOEXEC, "", false, true),
        m("sysfs", "/sys", NOSUID_NODEV_NOEXEC, "", false, true),
        m("tmpfs", "/run", NOSUID_NODEV, "mode=0755", false, true),
        m(
            "devpts",
            "/dev/pts",
            &[],
            "gid=5,mode=620,ptmxmode=666",
            true,
            false,
        ),
        m("tmpfs", "/dev/shm", NOSUID_NODEV, "", true, false),
        m("tmpfs", "/tmp", NOSUID_NODEV, "", false, false),
        m("bpf", "/sys/fs/bpf", NOSUID_NODEV_NOEXEC, "", false, false),
        m(
            "debugfs",
            "/sys/kernel/debug",
            NOSUID_NODEV_NOEXEC,
            "",
            false,
            false,
        ),
        m(
            "tracefs",
            "/sys/kernel/tracing",
            NOSUID_NODEV_NOEXEC,
            "",
            false,
            false,
        ),
    ]
}

/// `--host-mount`'s share at `dir` in the guest, over `fs`.
pub fn host_mount(dir: &str, fs: GuestFs) -> Mount {
    Mount {
        fstype: fs.fstype().into(),
        source: HOST_MOUNT_TAG.into(),
        dir: dir.into(),
        flags: vec![],
        data: fs.data().into(),
        mkdir: true,
        needed: true,
        error: format!("cannot mount the host directory at {dir}"),
    }
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
/// (`/dev/vda`): the only kind the static init mounts. `PARTUUID=` and the
/// like stay with the kernel (and the shell init).
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

/// The guest side of an interactive shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellGuest {
    /// The host mount, at `/host`, and how it is served.
    pub host_mount: Option<GuestFs>,
    /// `--cwd`: relative paths are relative to the host mount.
    pub cwd: Option<String>,
    /// `--persist`: flush the guest's writes before reporting the exit.
    pub persist: bool,
}

/// What the host terminal passes to the guest shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminal {
    /// `$TERM` when it is a plain name, else `vt220` (a tty) or `dumb`.
    pub term: String,
    /// Rows and columns, when known.
    pub size: Option<(u16, u16)>,
}

impl Terminal {
    pub fn new(term: Option<&str>, tty: bool, size: Option<(u16, u16)>) -> Terminal {
        let plain = |t: &&str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        };
        let term = match term.filter(plain) {
            Some(t) if tty => t.to_string(),
            _ if tty => "vt220".into(),
            _ => "dumb".into(),
        };
        Terminal { term, size }
    }
}

/// One step of the init.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Export these `NAME=VALUE`s.
    Env(Vec<String>),
    /// Start bringing the offline CPUs online, in the background.
    Cpus,
    /// Mount the root device and switch to it (the static init only: the
    /// shell init's root is the kernel's).
    Root(RootSpec),
    /// The pseudo file systems, together (the shell init from one fstab).
    Mounts(Vec<Mount>),
    /// The image's hostname, or this fallback.
    Hostname(String),
    /// Find the ports by name (stdout, stderr, control) and say `started`.
    Ports([String; 3]),
    /// Static IPv4 (device, address, netmask, gateway) unless the kernel set it.
    Net([String; 4]),
    /// One more file system (the host share).
    Mount(Mount),
    /// Root's `~/.ssh` on a tmpfs with these keys added (the shell init only).
    SshKeys(String),
    /// Change to `dir`; a `required` one that is missing fails with `error`.
    Cd {
        dir: String,
        required: bool,
        error: String,
    },
    /// Read the command's program while the CPUs come up (the static init only).
    Prefetch(String),
    /// Wait for [`Step::Cpus`]; a CPU still offline fails with this message.
    WaitCpus(String),
    /// Run the command, its output counted into the ports, and report its exit.
    Run { persist: bool, argv: Vec<String> },
    /// A login shell on the console tty (the shell init only); once it
    /// runs, the console's log level is `loglevel`, if given.
    Shell {
        tty: String,
        terminal: Terminal,
        persist: bool,
        loglevel: Option<u8>,
    },
    /// After the command: wait for `save`, detach the shares and wait to be
    /// restored, then run what the restore sends ([`super::shell_init`]'s
    /// serve script; the static init's `serve` record).
    Serve,
}

/// The start of every plan: environment, CPUs, root, mounts, hostname, the
/// ports (then `started`) and the network.
fn prelude(late_cpus: bool, root: Option<&RootSpec>) -> Vec<Step> {
    let mut v = vec![Step::Env(ENV.iter().map(|e| e.to_string()).collect())];
    // The late CPUs start coming online first: their bring-up is the longest
    // step, and everything else overlaps it.
    if late_cpus {
        v.push(Step::Cpus);
    }
    if let Some(r) = root {
        v.push(Step::Root(r.clone()));
    }
    v.push(Step::Mounts(pseudo_mounts()));
    v.push(Step::Hostname(FALLBACK_HOSTNAME.into()));
    v.push(Step::Ports(
        [PORT_STDOUT, PORT_STDERR, PORT_CONTROL].map(String::from),
    ));
    v.push(Step::Net(NET.map(String::from)));
    v
}

/// The plan for a command; `root` for the static init, which mounts it.
pub fn command(cmd: &GuestCommand, root: Option<&RootSpec>) -> Vec<Step> {
    let mut v = prelude(cmd.late_cpus, root);
    if cmd.host_mount {
        v.push(Step::Mount(host_mount(HOST_MOUNT_PATH, cmd.host_fs)));
    }
    if let Some(keys) = &cmd.authorized_keys {
        v.push(Step::SshKeys(keys.clone()));
    }
    let (dir, required) = workdir(cmd);
    v.push(Step::Cd {
        error: workdir_error(&dir),
        dir,
        required,
    });
    if cmd.late_cpus {
        // While the CPUs are still coming up, the command's program loads.
        if let Some(program) = cmd.argv.first() {
            v.push(Step::Prefetch(program.clone()));
        }
        v.push(Step::WaitCpus(LATE_CPUS_ERROR.into()));
    }
    v.push(Step::Run {
        persist: cmd.persist,
        argv: cmd.argv.clone(),
    });
    v
}

/// The plan for `--save-state`'s setup command: the command's, then the
/// wait to be saved; `root` for the static init.
pub fn save(cmd: &GuestCommand, root: Option<&RootSpec>) -> Vec<Step> {
    let mut v = command(cmd, root);
    v.push(Step::Serve);
    v
}

/// What a restored VM runs, for the static init's serve step: the host
/// mount (detached before the save), the directory, the command.
pub fn restore(cmd: &GuestCommand) -> Vec<Step> {
    let mut v = Vec::new();
    if cmd.host_mount {
        v.push(Step::Mount(host_mount(HOST_MOUNT_PATH, cmd.host_fs)));
    }
    let (dir, required) = workdir(cmd);
    v.push(Step::Cd {
        error: workdir_error(&dir),
        dir,
        required,
    });
    v.push(Step::Run {
        persist: cmd.persist,
        argv: cmd.argv.clone(),
    });
    v
}

/// The console log level while a quiet shell runs: kernel messages of
/// KERN_ERR and worse still show, warnings and notices (a clocksource
/// switch) stay in the kernel's log (`dmesg`); a panic raises the level
/// itself, so a crash is still on the console for lvh to catch.
pub const QUIET_LOGLEVEL: u8 = 4;

/// The plan for the interactive shell on console `tty`: the host mount at
/// `/host`, as for a command, which is also where the shell starts; `quiet`
/// lowers the console's log level once the shell runs ([`QUIET_LOGLEVEL`]:
/// lvh's `-v` keeps it).
pub fn shell(g: &ShellGuest, tty: &str, terminal: &Terminal, quiet: bool) -> Vec<Step> {
    let mut v = prelude(false, None);
    let mount = g.host_mount.map(|fs| (HOST_MOUNT_PATH.to_string(), fs));
    if let Some((m, fs)) = &mount {
        v.push(Step::Mount(host_mount(m, *fs)));
    }
    let mount = mount.map(|(m, _)| m);
    let cwd = match (&g.cwd, &mount) {
        (Some(c), _) if c.starts_with('/') => Some(c.clone()),
        (Some(c), Some(m)) => Some(format!("{m}/{c}")),
        (Some(c), None) => Some(format!("/root/{c}")),
        (None, m) => m.clone(),
    };
    v.push(match cwd {
        Some(dir) => Step::Cd {
            error: workdir_error(&dir),
            dir,
            required: true,
        },
        None => Step::Cd {
            dir: "/root".into(),
            required: false,
            error: workdir_error("/root"),
        },
    });
    v.push(Step::Shell {
        tty: tty.into(),
        terminal: terminal.clone(),
        persist: g.persist,
        loglevel: quiet.then_some(QUIET_LOGLEVEL),
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> GuestCommand {
        GuestCommand {
            argv: vec!["sh".into(), "-c".into(), "echo hi; exit 3".into()],
            cwd: None,
            host_mount: false,
            host_fs: GuestFs::NineP,
            persist: false,
            authorized_keys: None,
            late_cpus: false,
        }
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Mount(m) => format!("mount {}", m.dir),
                other => format!("{other:?}")
                    .split(['(', ' ', '{'])
                    .next()
                    .unwrap()
                    .to_lowercase(),
            })
            .collect()
    }

    #[test]
    fn a_command_plan_in_order() {
        assert_eq!(
            names(&command(&cmd(), None)),
            ["env", "mounts", "hostname", "ports", "net", "cd", "run"]
        );
        let root = root_spec(&["root=/dev/vda".to_string()]).unwrap();
        let mut c = cmd();
        c.late_cpus = true;
        c.host_mount = true;
        c.authorized_keys = Some("ssh-ed25519 AAAA k\n".into());
        c.cwd = Some("t".into());
        assert_eq!(
            names(&command(&c, Some(&root))),
            [
                "env",
                "cpus",
                "root",
                "mounts",
                "hostname",
                "ports",
                "net",
                "mount /host",
                "sshkeys",
                "cd",
                "prefetch",
                "waitcpus",
                "run"
            ]
        );
        let s = command(&c, None);
        assert!(s.contains(&Step::Cd {
            dir: "/host/t".into(),
            required: true,
            error: "cannot change to directory /host/t".into()
        }));
        assert_eq!(names(&save(&cmd(), None)).last().unwrap(), "serve");
        assert_eq!(names(&save(&c, Some(&root)))[2], "root");
        assert_eq!(names(&restore(&cmd())), ["cd", "run"]);
        assert_eq!(names(&restore(&c)), ["mount /host", "cd", "run"]);
    }

    #[test]
    fn mount_options_as_fstab_spells_them() {
        let opts: Vec<String> = pseudo_mounts().iter().map(Mount::options).collect();
        assert_eq!(
            opts,
            [
                "nosuid,nodev,noexec",
                "nosuid,nodev,noexec",
                "mode=0755,nosuid,nodev",
                "X-mount.mkdir,gid=5,mode=620,ptmxmode=666",
                "X-mount.mkdir,nosuid,nodev",
                "nosuid,nodev",
                "nosuid,nodev,noexec",
                "nosuid,nodev,noexec",
                "nosuid,nodev,noexec",
            ]
        );
        assert_eq!(
            host_mount("/host", GuestFs::NineP).options(),
            "X-mount.mkdir,trans=virtio,version=9p2000.L"
        );
        let v = host_mount("/host", GuestFs::Virtiofs);
        assert_eq!(
            (v.fstype.as_str(), v.source.as_str(), v.options()),
            ("virtiofs", "host_mount", "X-mount.mkdir".into())
        );
    }

    #[test]
    fn the_root_is_the_last_one_named_and_only_a_device_path() {
        let words = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        let r = root_spec(&words("root=/dev/vda rw console=ttyS0")).unwrap();
        assert_eq!(
            r,
            RootSpec {
                dev: "/dev/vda".into(),
                fstypes: "".into(),
                readonly: false,
                data: "".into(),
            }
        );
        let r = root_spec(&words(
            "root=/dev/vda rw root=/dev/sda rootfstype=ext4,xfs rootflags=noatime ro",
        ))
        .unwrap();
        assert_eq!(
            r,
            RootSpec {
                dev: "/dev/sda".into(),
                fstypes: "ext4,xfs".into(),
                readonly: true,
                data: "noatime".into(),
            }
        );
        // The kernel mounts read-only unless told `rw`.
        assert!(root_spec(&words("root=/dev/vda")).unwrap().readonly);
        for other in [
            "root=PARTUUID=1234-01",
            "root=UUID=abc",
            "root=fe01",
            "console=ttyS0",
        ] {
            assert_eq!(root_spec(&words(other)), None, "{other}");
        }
    }

    #[test]
    fn a_shell_starts_in_the_host_mount_at_host() {
        let t = Terminal::new(Some("xterm"), true, Some((24, 80)));
        let g = |mount: Option<GuestFs>, cwd: Option<&str>| ShellGuest {
            host_mount: mount,
            cwd: cwd.map(String::from),
            persist: false,
        };
        let cd = |s: Vec<Step>| {
            s.into_iter()
                .find_map(|s| match s {
                    Step::Cd { dir, required, .. } => Some((dir, required)),
                    _ => None,
                })
                .unwrap()
        };
        let (nine, vfs) = (Some(GuestFs::NineP), Some(GuestFs::Virtiofs));
        for (mount, cwd, want) in [
            (nine, None, ("/host", true)),
            (vfs, None, ("/host", true)),
            (nine, Some("tools/bpf"), ("/host/tools/bpf", true)),
            (vfs, Some("/tmp"), ("/tmp", true)),
            (None, Some("/var/tmp"), ("/var/tmp", true)),
            (None, Some("x"), ("/root/x", true)),
            (None, None, ("/root", false)),
        ] {
            let steps = shell(&g(mount, cwd), "ttyS0", &t, true);
            assert_eq!(
                steps
                    .iter()
                    .any(|s| matches!(s, Step::Mount(m) if m.dir == "/host"
                        && Some(m.fstype.as_str()) == mount.map(GuestFs::fstype))),
                mount.is_some()
            );
            assert_eq!(cd(steps), (want.0.to_string(), want.1), "{mount:?} {cwd:?}");
        }
    }

    #[test]
    fn terminal_names() {
        for (term, tty, want) in [
            (Some("xterm-256color"), true, "xterm-256color"),
            (Some("screen.xterm"), true, "screen.xterm"),
            (None, true, "vt220"),
            (Some(""), true, "vt220"),
            (Some("x; rm -rf /"), true, "vt220"),
            (Some("xterm"), false, "dumb"),
            (None, false, "dumb"),
        ] {
            assert_eq!(Terminal::new(term, tty, None).term, want, "{term:?} {tty}");
        }
    }
}
