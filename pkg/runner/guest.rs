//! The guest side of command mode, generated on the host (the shell init; with
//! `--fast-boot` a command run usually boots lvh's static init instead, see
//! [`super::initramfs`], which takes its mounts, network and environment from
//! here): a tiny bootstrap on
//! the kernel command line (`init=/bin/sh -c "..."`) that mounts lvh's
//! read-only 9p control share and sources the init script written here.
//!
//! The guest needs nothing but `/bin/sh` and the usual Debian base tools
//! (`mount`, `mkfifo`, `dd`): no ssh, agent or systemd. The script mounts the
//! pseudo filesystems, optionally the host share, runs the command with stdout
//! and stderr each through a counting `dd` into its own virtio-serial port, and reports `exit STATUS OUTBYTES ERRBYTES
//! TAINT_BEFORE TAINT_AFTER` on the control port (the kernel's taint flags
//! before and after the command, `-` without `/proc/sys/kernel/tainted`). The counts let the host wait until every byte has arrived
//! before it stops the VM (virtio-serial buffers can still be in flight when
//! the command ends).

use super::qemu::{CONTROL_TAG, HOST_MOUNT_TAG, PORT_CONTROL, PORT_STDERR, PORT_STDOUT};

/// Where `--host-mount DIR` appears in the guest.
pub const HOST_MOUNT_PATH: &str = "/host";
/// Where the bootstrap mounts the control share. The init script then covers
/// it with a tmpfs; the shell keeps reading the script through its open file.
pub const CONTROL_PATH: &str = "/run";
/// Static guest networking for QEMU's user network, set by the kernel
/// (`CONFIG_IP_PNP`) or, without it, by the script with `ip` when installed.
pub const IP_CONFIG: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";
/// [`IP_CONFIG`]'s parts, for lvh's static init: device, address, netmask, gateway.
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
/// Console lines from the guest script that mean "lvh could not set up".
pub const GUEST_ERROR_PREFIX: &str = "lvh-guest: error: ";

/// What the guest should run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestCommand {
    pub argv: Vec<String>,
    /// Directory to run in; relative paths are relative to the host mount.
    pub cwd: Option<String>,
    pub host_mount: bool,
    /// `--persist`: flush the guest's writes to the image before reporting.
    pub persist: bool,
    /// `--ssh-key`: public keys for root, on a tmpfs over `/root/.ssh`.
    pub authorized_keys: Option<String>,
    /// The kernel boots with `maxcpus=1` ([`super::fastboot::late_cpus`]):
    /// the script brings the other CPUs online while it sets up and waits for
    /// them before the command.
    pub late_cpus: bool,
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

/// Escapes text for use inside a double-quoted shell string.
fn dq_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '$' | '`' | '\\') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// The bootstrap script: mount the control share, run its init script (as
/// PID 1, through `exec`).
///
/// It travels on the kernel command line as one quoted word right after
/// `init=/bin/sh -c`, so the kernel hands it to init as `argv[2]`. The kernel
/// passes every word it does not know (`init_debug`, `single`, ...) to init as
/// a further argument, and since those follow `-c SCRIPT` they only become the
/// script's `$0`, `$1`, ... and cannot break it (with the script after `--`
/// they came first and `sh` took the first for a script file to open). For the
/// kernel to pass the word on whole and untouched it must contain no `"`, no
/// `=` (a word with `=` becomes an environment variable) and no `.` (a word
/// with a dot is taken for a module parameter and dropped), hence the octal
/// escapes for the mount options and `exec /bin/sh` rather than `. FILE`.
pub fn bootstrap_script() -> String {
    let script = format!(
        ":;mount -t 9p -o $(printf 'trans\\075virtio,version\\0759p2000\\056L,ro') {tag} {p}&&exec /bin/sh {p}/init||\
         {{ echo {err}cannot mount the lvh control share: the kernel needs CONFIG_9P_FS, CONFIG_NET_9P_VIRTIO and CONFIG_VIRTIO_PCI>/dev/console;exit 1;}}",
        p = CONTROL_PATH,
        tag = CONTROL_TAG,
        // Escaped so that the kernel's echo of its command line is no match.
        err = GUEST_ERROR_PREFIX.replace(':', "\\:"),
    );
    debug_assert!(!script.contains(['"', '=', '.']));
    script
}

/// The complete kernel command line for command mode: lvh's base,
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

/// One of the file systems lvh's init mounts before the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMount {
    pub fstype: &'static str,
    pub dir: &'static str,
    /// Mount flags: `nosuid`, `nodev`, `noexec`.
    pub flags: &'static [&'static str],
    /// File-system options (`mode=0755`).
    pub data: &'static str,
    /// Create the directory first (`X-mount.mkdir`).
    pub mkdir: bool,
    /// Setup fails without it (the others, such as bpffs on a kernel
    /// without BPF, are skipped).
    pub needed: bool,
}

const NOSUID_NODEV: &[&str] = &["nosuid", "nodev"];
const NOSUID_NODEV_NOEXEC: &[&str] = &["nosuid", "nodev", "noexec"];

/// What lvh's init mounts, in order: `/proc` first, `/run` covers the control share.
pub const MOUNTS: [GuestMount; 9] = {
    const fn m(
        fstype: &'static str,
        dir: &'static str,
        flags: &'static [&'static str],
        data: &'static str,
        mkdir: bool,
        needed: bool,
    ) -> GuestMount {
        GuestMount {
            fstype,
            dir,
            flags,
            data,
            mkdir,
            needed,
        }
    }
    [
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
};

impl GuestMount {
    /// The source: the file system's own name (`bpf`, `tmpfs`, ...).
    pub fn source(&self) -> &'static str {
        self.fstype
    }

    /// The options as `mount` and fstab spell them.
    pub fn options(&self) -> String {
        let mut o: Vec<&str> = Vec::new();
        if self.mkdir {
            o.push("X-mount.mkdir");
        }
        if !self.data.is_empty() {
            o.push(self.data);
        }
        o.extend(self.flags);
        if o.is_empty() {
            "defaults".into()
        } else {
            o.join(",")
        }
    }
}

/// The fstab the init script mounts with one `mount -a -T` call (failures,
/// such as a kernel without bpffs, are ignored): [`MOUNTS`].
pub fn fstab() -> String {
    let mut s = String::new();
    for m in MOUNTS {
        s.push_str(&format!(
            "{} {} {} {} 0 0\n",
            m.source(),
            m.dir,
            m.fstype,
            m.options()
        ));
    }
    s
}

/// Brings every offline CPU online, in the background: under TCG a CPU's
/// bring-up is a quarter of a second of guest time, which this overlaps with
/// the rest of the script's setup instead of the kernel's boot.
const LATE_CPUS_START: &str = "for lvh_c in /sys/devices/system/cpu/cpu[0-9]*; do [ -w $lvh_c/online ] && { read -r lvh_o <$lvh_c/online; [ \"$lvh_o\" = 0 ] && echo 1 >$lvh_c/online; }; done 2>/dev/null &\nlvh_cpus=$!\n";

/// What follows "CPUs N-M" when a late CPU stayed offline.
pub(crate) const LATE_CPUS_ERROR: &str = "did not come online (lvh booted the kernel with maxcpus=1 and onlines the rest; --fast-boot=false boots them all with the kernel)";

/// Waits for [`LATE_CPUS_START`] and checks that no CPU stayed offline.
fn late_cpus_wait() -> String {
    format!("wait $lvh_cpus; lvh_o=; read -r lvh_o </sys/devices/system/cpu/offline; [ -z \"$lvh_o\" ] || lvh_fail \"CPUs $lvh_o {LATE_CPUS_ERROR}\"\n")
}

/// The start of every init script: mounts, hostname, the channel's ports
/// (control on fd 9, `started` sent), networking. With `late_cpus`, the CPUs
/// the kernel left offline start coming online right after the mounts.
pub(crate) fn prelude(late_cpus: bool) -> String {
    let cpus = if late_cpus { LATE_CPUS_START } else { "" };
    format!(
        r#"# lvh guest init (generated): runs as PID 1, sourced from {ctl}/init.
export {env}
lvh_fail() {{ echo "{err}$*" >/dev/console; [ -n "${{lvh_ctl:-}}" ] && echo "error $*" >&9; exit 1; }}
[ -c /dev/null ] || mount -t devtmpfs devtmpfs /dev || lvh_fail "cannot mount /dev (devtmpfs)"
# One mount call for all (util-linux reads lvh's fstab, /proc first); then
# make sure of those that matter, for mounts without -T such as busybox's.
mount -a -T {ctl}/fstab 2>/dev/null
[ -d /proc/self ] || mount -t proc proc /proc
[ -d /sys/class ] || mount -t sysfs sysfs /sys
{{ : >/run/.lvh; }} 2>/dev/null || mount -t tmpfs -o mode=0755 tmpfs /run || lvh_fail "cannot mount a tmpfs on /run"
{cpus}# The image's hostname, not the address the kernel's ip= autoconfig names the host after.
lvh_host=; [ -r /etc/hostname ] && read -r lvh_host </etc/hostname
case $lvh_host in ''|'#'*) lvh_host={fallback} ;; esac
{{ echo "$lvh_host" >/proc/sys/kernel/hostname; }} 2>/dev/null || hostname "$lvh_host" 2>/dev/null
lvh_out= lvh_err= lvh_ctl= lvh_try=0
while :; do
	for d in /sys/class/virtio-ports/*; do
		[ -r "$d/name" ] || continue
		read -r n <"$d/name" || continue
		case $n in
		{out}) lvh_out=/dev/${{d##*/}} ;;
		{errp}) lvh_err=/dev/${{d##*/}} ;;
		{ctlp}) lvh_ctl=/dev/${{d##*/}} ;;
		esac
	done
	[ -n "$lvh_out" ] && [ -n "$lvh_err" ] && [ -n "$lvh_ctl" ] && break
	lvh_try=$((lvh_try + 1))
	[ $lvh_try -gt 1000 ] && lvh_fail "virtio-serial ports not found (the kernel needs CONFIG_VIRTIO_CONSOLE)"
	sleep 0.01
done
exec 9<>"$lvh_ctl"
echo started >&9
if [ ! -e /proc/net/pnp ] && [ -e /sys/class/net/eth0 ] && command -v ip >/dev/null 2>&1; then
	printf 'link set lo up\nlink set eth0 up\naddr add 10.0.2.15/24 dev eth0\nroute add default via 10.0.2.2\n' | ip -batch - >/dev/null 2>&1
fi
"#,
        ctl = CONTROL_PATH,
        env = ENV.join(" "),
        err = GUEST_ERROR_PREFIX,
        fallback = FALLBACK_HOSTNAME,
        out = PORT_STDOUT,
        errp = PORT_STDERR,
        ctlp = PORT_CONTROL,
    )
}

/// The init script the bootstrap sources (as PID 1).
pub fn init_script(cmd: &GuestCommand) -> String {
    let mut s = prelude(cmd.late_cpus);
    if cmd.host_mount {
        s.push_str(&format!(
            "[ -d {p} ] || mkdir -p {p}\nmount -t 9p -o trans=virtio,version=9p2000.L {tag} {p} || lvh_fail \"cannot mount the host directory at {p}\"\n",
            p = HOST_MOUNT_PATH,
            tag = HOST_MOUNT_TAG,
        ));
    }
    if let Some(keys) = &cmd.authorized_keys {
        s.push_str(&super::sshkey::guest_script(keys));
    }
    s.push_str(&cd_part(cmd));
    if cmd.late_cpus {
        s.push('\n');
        s.push_str(&late_cpus_wait());
    }
    let argv: Vec<String> = cmd.argv.iter().map(|a| sh_quote(a)).collect();
    s.push_str(&run_part(&argv.join(" "), cmd.persist));
    s
}

/// Where the command runs (`--cwd`, the host mount, or root's home) and
/// whether that is required: a `--cwd` that does not exist fails the run,
/// the defaults fall back to `/`.
pub(crate) fn workdir(cmd: &GuestCommand) -> (String, bool) {
    let cwd = match &cmd.cwd {
        Some(c) if c.starts_with('/') => c.clone(),
        Some(c) => format!("{HOST_MOUNT_PATH}/{c}"),
        None if cmd.host_mount => HOST_MOUNT_PATH.to_string(),
        None => "/root".to_string(),
    };
    (cwd, cmd.cwd.is_some())
}

/// Why a required working directory fails the run.
pub(crate) fn workdir_error(dir: &str) -> String {
    format!("cannot change to directory {dir}")
}

/// The line that changes to the command's directory ([`workdir`]).
pub(crate) fn cd_part(cmd: &GuestCommand) -> String {
    let (cwd, required) = workdir(cmd);
    if required {
        format!(
            "cd {} || lvh_fail \"{}\"",
            sh_quote(&cwd),
            dq_escape(&workdir_error(&cwd))
        )
    } else {
        format!("cd {} 2>/dev/null || cd /", sh_quote(&cwd))
    }
}

/// The end of the init script: run the command with its output counted,
/// read the taint flags around it, report the exit on the control port.
/// (The taint file is read with the shell's own `read` first, saving a
/// `fork`+`exec` of 20 ms under TCG: a sysctl file answers only a read at
/// offset 0 and dash's `read` takes one byte at a time, so `read` sees only
/// the first digit, which is exact when it is `0`; otherwise `cat` reads it.)
pub(crate) fn run_part(argv: &str, persist: bool) -> String {
    format!(
        r#"
mkfifo /run/lvh.o /run/lvh.e || lvh_fail "cannot create fifos in /run"
lvh_taint() {{ t=; read -r t </proc/sys/kernel/tainted; [ "$t" = 0 ] || t=$(cat /proc/sys/kernel/tainted); case $t in '' | *[!0-9]*) t=- ;; esac; }} 2>/dev/null
lvh_taint; lvh_t0=$t
dd if=/run/lvh.o of="$lvh_out" bs=65536 2>/run/lvh.on &
dd if=/run/lvh.e of="$lvh_err" bs=65536 2>/run/lvh.en &
(exec 9>&- {argv}) >/run/lvh.o 2>/run/lvh.e </dev/null
lvh_status=$?
wait
{sync}lvh_on=; while read -r w _; do lvh_on=$w; done </run/lvh.on
lvh_en=; while read -r w _; do lvh_en=$w; done </run/lvh.en
case "$lvh_on:$lvh_en" in *[!0-9:]* | :* | *:) lvh_fail "could not count the command's output bytes (dd said: $lvh_on $lvh_en)" ;; esac
lvh_taint; lvh_t1=$t
echo "exit $lvh_status $lvh_on $lvh_en $lvh_t0 $lvh_t1" >&9
{ACK_AND_EXIT}"#,
        sync = if persist { "sync\n" } else { "" },
    )
}

/// How the init script ends: wait for the host (which stops the VM).
pub(crate) const ACK_AND_EXIT: &str = "read -r lvh_ack <&9\nexit 0\n";

/// A message the guest sent on the control port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    /// The init script is running (the guest is alive and booted).
    Started,
    /// The command ended with `status`, having written this many bytes;
    /// the kernel's taint flags before and after it, when readable.
    Exit {
        status: i32,
        stdout_bytes: u64,
        stderr_bytes: u64,
        taint: Option<(u64, u64)>,
    },
    /// The init script could not set up.
    Error(String),
    /// `--save-state`: the guest detached its 9p shares and waits to be saved.
    Saving,
}

/// Parses one control line; `None` for something lvh does not know.
pub fn parse_control(line: &str) -> Option<ControlMsg> {
    let line = line.trim_end_matches(['\n', '\r']);
    if line == "started" {
        return Some(ControlMsg::Started);
    }
    if line == "saving" {
        return Some(ControlMsg::Saving);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's command line limit on x86 and arm64, including the NUL.
    const CMDLINE_MAX: usize = 2048;

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
    fn script_runs_the_argv_in_the_right_place() {
        let s = init_script(&GuestCommand {
            argv: vec!["sh".into(), "-c".into(), "echo 'hi' >&2; exit 42".into()],
            cwd: None,
            host_mount: false,
            persist: false,
            authorized_keys: None,
            late_cpus: false,
        });
        assert!(
            s.contains(r#"(exec 9>&- sh -c 'echo '\''hi'\'' >&2; exit 42')"#),
            "{s}"
        );
        assert!(s.contains("cd /root"));
        assert!(
            s.contains("lvh_taint; lvh_t0=$t\ndd if=")
                && s.contains("lvh_taint; lvh_t1=$t\necho \"exit $lvh_status $lvh_on $lvh_en $lvh_t0 $lvh_t1\" >&9"),
            "{s}"
        );
        assert!(!s.contains("host_mount"));
        // the image's hostname, before the command runs
        let host = s.find("read -r lvh_host </etc/hostname").unwrap();
        assert!(host < s.find("(exec 9>&-").unwrap());
        assert!(s.contains("lvh_host=localhost ;;"), "{s}");
        assert!(s.contains(r#"echo "$lvh_host" >/proc/sys/kernel/hostname"#));

        let m = init_script(&GuestCommand {
            argv: vec!["make".into()],
            cwd: Some("tools/testing".into()),
            host_mount: true,
            persist: true,
            authorized_keys: None,
            late_cpus: false,
        });
        assert!(m.contains("mount -t 9p -o trans=virtio,version=9p2000.L host_mount /host"));
        assert!(m.contains("cd /host/tools/testing"));
        assert!(m.contains("wait\nsync\n"));
        let a = init_script(&GuestCommand {
            argv: vec!["ls".into()],
            cwd: Some("/tmp/x y".into()),
            host_mount: false,
            persist: false,
            authorized_keys: None,
            late_cpus: false,
        });
        assert!(a.contains("cd '/tmp/x y'"), "{a}");
        assert!(!a.contains("lvh_cpus"), "{a}");
    }

    #[test]
    fn late_cpus_come_online_after_the_mounts_and_before_the_command() {
        let s = init_script(&GuestCommand {
            argv: vec!["nproc".into()],
            cwd: None,
            host_mount: true,
            persist: false,
            authorized_keys: None,
            late_cpus: true,
        });
        let at = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle} in {s}"));
        let start = at("echo 1 >$lvh_c/online; }; done 2>/dev/null &\nlvh_cpus=$!\n");
        assert!(at("mount -a -T /run/fstab") < start);
        assert!(start < at("for d in /sys/class/virtio-ports/*"));
        let wait = at("wait $lvh_cpus; ");
        assert!(at("mount -t 9p -o trans=virtio,version=9p2000.L host_mount /host") < wait);
        assert!(wait < at("(exec 9>&- nproc)"));
        assert!(s.contains("/sys/devices/system/cpu/offline; [ -z \"$lvh_o\" ] || lvh_fail \"CPUs $lvh_o did not come online"));
    }

    #[test]
    fn the_fstab_and_the_network_say_what_they_always_said() {
        assert_eq!(
            fstab(),
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
        let [dev, addr, mask, gw] = NET;
        assert_eq!(IP_CONFIG, format!("ip={addr}::{gw}:{mask}::{dev}:off"));
    }

    #[test]
    fn control_messages() {
        assert_eq!(parse_control("started\n"), Some(ControlMsg::Started));
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
        assert_eq!(parse_control("exit x 1 2"), None);
        assert_eq!(parse_control("exit 1 2"), None);
        assert_eq!(parse_control("hello"), None);
    }
}
