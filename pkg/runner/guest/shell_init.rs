//! The shell init: the plan ([`super::steps`]) as a script for the image's
//! `/bin/sh`, run as PID 1 from lvh's read-only control share. The guest
//! needs nothing but `/bin/sh` and the usual Debian base tools (`mount`,
//! `mkfifo`, `dd`): no ssh, agent or systemd.
//!
//! The kernel starts it through a tiny bootstrap on its command line
//! ([`command_cmdline`]) that mounts the control share and execs its `init`
//! ([`render`]): `lib.sh` and `init.sh` (each step a function), then the
//! plan as calls of those functions. The pseudo file systems come from the
//! share's `fstab` in one `mount -a` call. A saved VM's serve script
//! (`lib.sh` and `serve.sh`) travels inside the init as the serve step's
//! argument, and a restored VM's command arrives as a [`HostMsg::Run`]
//! ([`command_message`]).

use super::steps::{Mount, Step};
use super::{
    sh_quote, workdir, GuestCommand, HostMsg, CONTROL_PATH, CONTROL_TAG, GUEST_ERROR_PREFIX,
    HOST_MOUNT_PATH, IP_CONFIG,
};

/// The functions every init script shares.
pub const LIB_SH: &str = include_str!("lib.sh");
/// The steps as functions.
pub const INIT_SH: &str = include_str!("init.sh");
/// A saved VM's PID 1.
pub const SERVE_SH: &str = include_str!("serve.sh");

/// The control share's files, by name.
pub const INIT_FILE: &str = "init";
pub const FSTAB_FILE: &str = "fstab";

/// The bootstrap: mount the control share, exec its init script as PID 1.
///
/// It travels on the kernel command line as one quoted word right after
/// `init=/bin/sh -c`, so the kernel hands it to init as `argv[2]`. The kernel
/// passes every word it does not know (`init_debug`, `single`, ...) to init as
/// a further argument, and since those follow `-c SCRIPT` they only become the
/// script's `$0`, `$1`, ... and cannot break it. For the kernel to pass the
/// word on whole and untouched it must contain no `"`, no `=` (a word with `=`
/// becomes an environment variable) and no `.` (a word with a dot is taken for
/// a module parameter and dropped), hence the octal escapes for the mount
/// options and `exec /bin/sh` rather than `. FILE`.
pub fn bootstrap_script() -> String {
    let script = format!(
        ":;mount -t 9p -o $(printf 'trans\\075virtio,version\\0759p2000\\056L,ro') {tag} {p}&&exec /bin/sh {p}/{INIT_FILE}||\
         {{ echo {err}cannot mount the lvh control share: the kernel needs CONFIG_9P_FS, CONFIG_NET_9P_VIRTIO and CONFIG_VIRTIO_PCI>/dev/console;exit 1;}}",
        p = CONTROL_PATH,
        tag = CONTROL_TAG,
        // Escaped so that the kernel's echo of its command line is no match.
        err = GUEST_ERROR_PREFIX.replace(':', "\\:"),
    );
    debug_assert!(!script.contains(['"', '=', '.']));
    script
}

/// The complete kernel command line for the shell init: lvh's base,
/// `init=/bin/sh`, the user's `--append` (so an `init=` there wins), with
/// `-c "BOOTSTRAP"` right after the last `init=` or `rdinit=` word: the
/// kernel drops every init argument given before one of those (its
/// `init_setup`), and words it passes on to init that come later land after
/// the script, harmless.
pub fn command_cmdline(base: &[String], append: &[String]) -> String {
    let mut parts: Vec<String> = base.to_vec();
    parts.push(IP_CONFIG.into());
    parts.push("init=/bin/sh".into());
    parts.extend(append.iter().cloned());
    let last_init = parts
        .iter()
        .rposition(|p| p.starts_with("init=") || p.starts_with("rdinit="))
        .expect("lvh's own init= is there");
    parts.insert(last_init + 1, format!("-c \"{}\"", bootstrap_script()));
    parts.join(" ")
}

/// The files of the control share for a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareFiles {
    /// The init script.
    pub init: String,
    /// The pseudo file systems, for `mount -a -T`.
    pub fstab: String,
}

/// One call of a step's function, its arguments quoted.
fn call(name: &str, args: &[&str]) -> String {
    let mut s = format!("lvh_{name}");
    for a in args {
        s.push(' ');
        s.push_str(&sh_quote(a));
    }
    s.push('\n');
    s
}

fn fstab(mounts: &[Mount]) -> String {
    mounts
        .iter()
        .map(|m| format!("{} {} {} {} 0 0\n", m.source, m.dir, m.fstype, m.options()))
        .collect()
}

fn bit(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// The init script and fstab that run `steps`.
pub fn render(steps: &[Step]) -> ShareFiles {
    let mut init = format!(
        "# lvh guest init: PID 1, read from {CONTROL_PATH}/{INIT_FILE}; the plan is at the end.\n{LIB_SH}{INIT_SH}# The plan.\n"
    );
    let mut tab = String::new();
    for step in steps {
        init.push_str(&match step {
            Step::Env(vars) => call("env", &vars.iter().map(String::as_str).collect::<Vec<_>>()),
            Step::Cpus => call("cpus", &[]),
            Step::Mounts(mounts) => {
                tab = fstab(mounts);
                let mut s = call("mounts", &[&format!("{CONTROL_PATH}/{FSTAB_FILE}")]);
                for m in mounts.iter().filter(|m| m.needed) {
                    let flags = m.flags.join(",");
                    let opts = [m.data.as_str(), &flags]
                        .into_iter()
                        .filter(|o| !o.is_empty())
                        .collect::<Vec<_>>()
                        .join(",");
                    s.push_str(&call("need", &[&m.fstype, &m.dir, &opts, &m.error]));
                }
                s
            }
            Step::Hostname(fallback) => call("hostname", &[fallback]),
            Step::Ports([out, err, ctl]) => call("ports", &[out, err, ctl]),
            Step::Net([dev, addr, mask, gw]) => call("net", &[dev, addr, mask, gw]),
            Step::Mount(m) => {
                let opts = [m.data.as_str(), &m.flags.join(",")]
                    .into_iter()
                    .filter(|o| !o.is_empty())
                    .collect::<Vec<_>>()
                    .join(",");
                call(
                    "mount",
                    &[&m.fstype, &m.source, &m.dir, &opts, bit(m.mkdir), &m.error],
                )
            }
            Step::SshKeys(keys) => call("ssh_keys", &[keys]),
            Step::Cd {
                dir,
                required,
                error,
            } => call("cd", &[dir, bit(*required), error]),
            // Only the static init reads the program ahead.
            Step::Prefetch(_) => String::new(),
            Step::WaitCpus(msg) => call("waitcpus", &[msg]),
            Step::Run { persist, argv } => {
                let mut args = vec![bit(*persist)];
                args.extend(argv.iter().map(String::as_str));
                call("run", &args)
            }
            Step::Shell {
                tty,
                terminal,
                persist,
                loglevel,
            } => {
                let (rows, cols) = match terminal.size {
                    Some((r, c)) => (r.to_string(), c.to_string()),
                    None => (String::new(), String::new()),
                };
                let level = loglevel.map(|l| l.to_string()).unwrap_or_default();
                call(
                    "shell",
                    &[tty, &terminal.term, &rows, &cols, bit(*persist), &level],
                )
            }
            Step::Serve => call("serve", &[&format!("{LIB_SH}{SERVE_SH}")]),
            Step::Root(_) => unreachable!("the shell init runs on the kernel's root"),
        });
    }
    if !matches!(steps.last(), Some(Step::Serve)) {
        init.push_str(&call("done", &[]));
    }
    ShareFiles { init, fstab: tab }
}

/// What a restored VM runs: mount the host share if asked, change
/// directory, exec the argv; as shell text for the serve script's `sh -c`.
pub fn command_message(cmd: &GuestCommand) -> HostMsg {
    let mut text = String::new();
    if cmd.host_mount {
        text.push_str(&format!(
            "[ -d {p} ] || mkdir -p {p}\nmount -t 9p -o trans=virtio,version=9p2000.L {tag} {p} || {{ echo '{err}cannot mount the host directory at {p}' >/dev/console; exit 1; }}\n",
            p = HOST_MOUNT_PATH,
            tag = super::HOST_MOUNT_TAG,
            err = GUEST_ERROR_PREFIX,
        ));
    }
    let (dir, required) = workdir(cmd);
    if required {
        text.push_str(&format!(
            "cd {} || {{ echo '{GUEST_ERROR_PREFIX}{}' >/dev/console; exit 1; }}\n",
            sh_quote(&dir),
            super::workdir_error(&dir).replace('\'', "")
        ));
    } else {
        text.push_str(&format!("cd {} 2>/dev/null || cd /\n", sh_quote(&dir)));
    }
    let argv: Vec<String> = cmd.argv.iter().map(|a| sh_quote(a)).collect();
    text.push_str("exec ");
    text.push_str(&argv.join(" "));
    text.push('\n');
    HostMsg::Run(text)
}

#[cfg(test)]
mod tests {
    use super::super::steps::{self, ShellGuest, Terminal};
    use super::*;
    use crate::runner::guest::GuestFs;

    /// The kernel's command line limit on x86 and arm64, including the NUL.
    const CMDLINE_MAX: usize = 2048;

    fn cmd(argv: &[&str]) -> GuestCommand {
        GuestCommand {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: None,
            host_mount: false,
            host_fs: GuestFs::NineP,
            persist: false,
            authorized_keys: None,
            late_cpus: false,
        }
    }

    /// The plan's part of an init script: the calls after the functions.
    fn plan_of(init: &str) -> &str {
        init.split_once("# The plan.\n").unwrap().1
    }

    #[test]
    fn bootstrap_fits_and_the_kernel_passes_it_on_whole() {
        let b = bootstrap_script();
        // `"` would end the kernel's quoting, `=` make it an environment
        // variable, `.` a module parameter that the kernel drops.
        for c in ['"', '=', '.', '\n'] {
            assert!(!b.contains(c), "{c:?} in {b}");
        }
        assert!(b.len() < 400, "{} bytes", b.len());
        assert!(
            !b.contains(GUEST_ERROR_PREFIX),
            "the console echo of the cmdline would match"
        );
        assert!(b.contains("$(printf 'trans\\075virtio,version\\0759p2000\\056L,ro') lvhctl /run&&exec /bin/sh /run/init||"), "{b}");
    }

    #[test]
    fn command_cmdline_puts_the_bootstrap_after_the_last_init() {
        let base = ["root=/dev/vda".to_string(), "console=ttyS0".to_string()];
        let c = command_cmdline(&base, &["quiet".into(), "init_debug".into()]);
        assert!(
            c.starts_with(
                "root=/dev/vda console=ttyS0 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off init=/bin/sh -c \":;mount "
            ),
            "{c}"
        );
        assert!(c.ends_with("exit 1;}\" quiet init_debug"), "{c}");
        assert!(c.len() < CMDLINE_MAX);
        // The user's init wins and still gets `-c BOOTSTRAP` (the kernel
        // forgets init arguments given before an init= or rdinit=).
        let c = command_cmdline(
            &base,
            &["quiet".into(), "init=/bin/bash".into(), "x".into()],
        );
        assert!(
            c.contains("init=/bin/sh quiet init=/bin/bash -c \":;mount "),
            "{c}"
        );
        assert!(c.ends_with("exit 1;}\" x"), "{c}");
        let c = command_cmdline(&base, &["rdinit=/x".into()]);
        assert!(c.contains("init=/bin/sh rdinit=/x -c \":;mount "), "{c}");
    }

    #[test]
    fn a_command_runs_its_argv_after_the_setup() {
        let f = render(&steps::command(
            &cmd(&["sh", "-c", "echo 'hi' >&2; exit 42"]),
            None,
        ));
        assert!(f.init.starts_with("# lvh guest init"));
        assert_eq!(
            plan_of(&f.init),
            "lvh_env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root LOGNAME=root\n\
             lvh_mounts /run/fstab\n\
             lvh_need proc /proc nosuid,nodev,noexec 'cannot mount /proc (proc)'\n\
             lvh_need sysfs /sys nosuid,nodev,noexec 'cannot mount /sys (sysfs)'\n\
             lvh_need tmpfs /run mode=0755,nosuid,nodev 'cannot mount /run (tmpfs)'\n\
             lvh_hostname localhost\n\
             lvh_ports lvh.stdout lvh.stderr lvh.ctl\n\
             lvh_net eth0 10.0.2.15 255.255.255.0 10.0.2.2\n\
             lvh_cd /root 0 'cannot change to directory /root'\n\
             lvh_run 0 sh -c 'echo '\\''hi'\\'' >&2; exit 42'\n\
             lvh_done\n"
        );
        assert_eq!(
            f.fstab,
            "proc /proc proc nosuid,nodev,noexec 0 0\n\
             sysfs /sys sysfs nosuid,nodev,noexec 0 0\n\
             tmpfs /run tmpfs mode=0755,nosuid,nodev 0 0\n\
             devpts /dev/pts devpts X-mount.mkdir,gid=5,mode=620,ptmxmode=666 0 0\n\
             tmpfs /dev/shm tmpfs X-mount.mkdir,nosuid,nodev 0 0\n\
             tmpfs /tmp tmpfs nosuid,nodev 0 0\n\
             bpf /sys/fs/bpf bpf nosuid,nodev,noexec 0 0\n\
             debugfs /sys/kernel/debug debugfs nosuid,nodev,noexec 0 0\n\
             tracefs /sys/kernel/tracing tracefs nosuid,nodev,noexec 0 0\n"
        );
    }

    #[test]
    fn host_mount_keys_late_cpus_and_persist() {
        let mut c = cmd(&["make"]);
        c.cwd = Some("tools/testing".into());
        c.host_mount = true;
        c.persist = true;
        c.late_cpus = true;
        c.authorized_keys = Some("ssh-ed25519 AAAA me\n".into());
        let p = render(&steps::command(&c, None)).init;
        let p = plan_of(&p);
        let at = |needle: &str| p.find(needle).unwrap_or_else(|| panic!("{needle} in {p}"));
        assert!(at("lvh_env ") < at("lvh_cpus\n"));
        assert!(at("lvh_cpus\n") < at("lvh_mounts"));
        assert!(
            at("lvh_net") < at("lvh_mount 9p host_mount /host trans=virtio,version=9p2000.L 1 'cannot mount the host directory at /host'\n")
        );
        assert!(at("lvh_mount 9p") < at("lvh_ssh_keys 'ssh-ed25519 AAAA me\n'\n"));
        assert!(at("lvh_ssh_keys") < at("lvh_cd /host/tools/testing 1 "));
        assert!(at("lvh_cd") < at("lvh_waitcpus 'did not come online"));
        assert!(at("lvh_waitcpus") < at("lvh_run 1 make\n"));
        assert!(!p.contains("prefetch"));
    }

    #[test]
    fn a_command_mounts_virtiofs_without_options() {
        let mut c = cmd(&["ls"]);
        c.host_mount = true;
        c.host_fs = GuestFs::Virtiofs;
        let p = render(&steps::command(&c, None)).init;
        assert!(
            plan_of(&p).contains("lvh_mount virtiofs host_mount /host '' 1 'cannot mount the host directory at /host'\n"),
            "{p}"
        );
        assert!(p.contains(r#"mount -t "$1" ${4:+-o "$4"} "$2" "$3""#));
    }

    #[test]
    fn a_save_ends_with_the_serve_script_instead_of_waiting() {
        let p = render(&steps::save(&cmd(&["touch", "/tmp/x"]), None)).init;
        let p = plan_of(&p);
        let run = p.find("lvh_run 0 touch /tmp/x\n").unwrap();
        let serve = p.find("lvh_serve '").unwrap();
        assert!(run < serve);
        assert!(!p.ends_with("lvh_done\n"), "{p}");
        // The serve script carries the shared functions: it is a new shell.
        assert!(
            p.contains("lvh_fail() {") && p.contains("echo saving >&9"),
            "{p}"
        );
    }

    #[test]
    fn a_shell_gets_its_terminal() {
        let g = ShellGuest {
            host_mount: Some(GuestFs::Virtiofs),
            cwd: None,
            persist: true,
        };
        let t = Terminal::new(Some("xterm-256color"), true, Some((37, 101)));
        let p = render(&steps::shell(&g, "ttyS0", &t, false)).init;
        let p = plan_of(&p);
        assert!(p.contains("lvh_mount virtiofs host_mount /host '' 1 'cannot mount the host directory at /host'\n"), "{p}");
        assert!(p.contains("lvh_cd /host 1 'cannot change to directory /host'\n"));
        assert!(
            p.ends_with("lvh_shell ttyS0 xterm-256color 37 101 1 ''\nlvh_done\n"),
            "{p}"
        );
        // Without -v the shell is quiet: the console's log level drops once it runs.
        let t = Terminal::new(None, false, None);
        let p = render(&steps::shell(&g, "ttyAMA0", &t, true)).init;
        assert!(
            p.ends_with("lvh_shell ttyAMA0 dumb '' '' 1 4\nlvh_done\n"),
            "{p}"
        );
    }

    #[test]
    fn command_messages_carry_their_length() {
        let HostMsg::Run(text) = command_message(&cmd(&["sh", "-c", "cat /tmp/x; exit 3"])) else {
            panic!()
        };
        assert_eq!(
            text,
            "cd /root 2>/dev/null || cd /\nexec sh -c 'cat /tmp/x; exit 3'\n"
        );
        let mut c = cmd(&["ls"]);
        c.host_mount = true;
        let HostMsg::Run(h) = command_message(&c) else {
            panic!()
        };
        assert!(
            h.contains("mount -t 9p -o trans=virtio,version=9p2000.L host_mount /host ||"),
            "{h}"
        );
        assert!(h.contains("cd /host 2>/dev/null || cd /\nexec ls\n"), "{h}");
    }

    /// The scripts name the protocol's paths as the host does.
    #[test]
    fn the_scripts_agree_with_the_protocol() {
        assert!(SERVE_SH.contains(&format!("' {HOST_MOUNT_PATH} 9p '")));
        assert!(SERVE_SH.contains(&format!("umount -n {CONTROL_PATH}")));
        assert!(LIB_SH.contains(&format!("\"{GUEST_ERROR_PREFIX}$*\"")));
        for f in [LIB_SH, INIT_SH, SERVE_SH] {
            assert!(f.starts_with("# shellcheck shell=sh"));
        }
    }
}
