//! The guest side of saved VMs, generated on the host (see `guest` for the
//! ordinary init script it extends).
//!
//! `--save-state`: the init script runs the setup command as usual, reports its
//! exit, then waits for the host. On `save` it writes the serve script
//! ([`serve_script`]) to `/dev` (a RAM file system, so it is part of the saved
//! memory) and execs it as PID 1. The serve script detaches every 9p share —
//! QEMU refuses to migrate while one is mounted — by moving `/run`'s tmpfs
//! aside, unmounting the control share under it and moving the tmpfs back (the
//! setup's files in `/run` survive), unmounts `/host`, says `saving`, and blocks
//! reading the control port. The host then stops QEMU and migrates the VM to a file.
//!
//! `--from-state`: QEMU loads that file and continues; the serve script's read
//! returns the host's `run LEN` line and LEN bytes of shell text
//! ([`command_message`]), which it runs like the init script runs a command:
//! output counted through the stdout/stderr ports, exit status and taint
//! reported on the control port. Without the control share, the command comes
//! through the control port only.

use super::guest::{self, GuestCommand, GUEST_ERROR_PREFIX};
use super::qemu::HOST_MOUNT_TAG;

/// Where the init script puts the serve script (devtmpfs: in RAM).
pub const SERVE_PATH: &str = "/dev/.lvh-serve";

/// The init script of a `--save-state` run: the ordinary one whose end waits
/// for `save` and execs the serve script.
pub fn save_init_script(cmd: &GuestCommand) -> String {
    let s = guest::init_script(cmd);
    let body = s
        .strip_suffix(guest::ACK_AND_EXIT)
        .expect("the init script ends by waiting for the host");
    format!(
        "{body}read -r lvh_op <&9\n[ \"$lvh_op\" = save ] || exit 0\n\
         cat >{SERVE_PATH} <<'LVH_SERVE_END'\n{serve}LVH_SERVE_END\n\
         exec /bin/sh {SERVE_PATH} \"$lvh_out\" \"$lvh_err\"\n",
        serve = serve_script(),
    )
}

/// The serve script (PID 1 after `save`): detach the shares, wait for a
/// command, run it. Its arguments are the stdout and stderr port devices;
/// fd 9 (the control port) is inherited open, as a virtio port opens only once.
pub fn serve_script() -> String {
    let s = format!(
        r#"# lvh serve (generated): PID 1 of a saved VM, waiting for its command.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root LOGNAME=root
lvh_out=$1 lvh_err=$2
lvh_fail() {{ echo "{err}$*" >/dev/console; echo "error $*" >&9; exit 1; }}
if grep -q ' /host 9p ' /proc/mounts; then
	cd / && umount -n /host || lvh_fail "cannot unmount /host before saving (is a process still using it?)"
fi
mkdir -p /dev/.lvh-run && mount -n --move /run /dev/.lvh-run && umount -n /run && mount -n --move /dev/.lvh-run /run ||
	lvh_fail "cannot detach the lvh control share before saving"
rmdir /dev/.lvh-run 2>/dev/null
grep -q ' 9p ' /proc/mounts && lvh_fail "a 9p share is still mounted: QEMU cannot save the VM"
rm -f /run/lvh.o /run/lvh.e /run/lvh.on /run/lvh.en
sync
cd /
echo saving >&9
# Saved here. A restored VM continues: wait for `run LEN` and LEN bytes.
lvh_op=
while [ "$lvh_op" != run ]; do
	read -r lvh_op lvh_len <&9 || sleep 0.05
done
case $lvh_len in '' | *[!0-9]*) lvh_fail "bad command length from the host: $lvh_len" ;; esac
lvh_cmd=$(dd bs=1 count="$lvh_len" <&9 2>/dev/null)
echo started >&9
"#,
        err = GUEST_ERROR_PREFIX,
    );
    // The command is shell text: `sh -c`, as `exec` cannot run `eval`.
    s + &guest::run_part("sh -c \"$lvh_cmd\"", false)
}

/// The control-port message that makes a restored VM run `cmd`: `run LEN`
/// and the shell text (mount the host share if asked, change directory, exec
/// the argv).
pub fn command_message(cmd: &GuestCommand) -> Vec<u8> {
    let mut text = String::new();
    if cmd.host_mount {
        text.push_str(&format!(
            "[ -d {p} ] || mkdir -p {p}\nmount -t 9p -o trans=virtio,version=9p2000.L {HOST_MOUNT_TAG} {p} || {{ echo '{err}cannot mount the host directory at {p}' >/dev/console; exit 1; }}\n",
            p = guest::HOST_MOUNT_PATH,
            err = GUEST_ERROR_PREFIX,
        ));
    }
    text.push_str(&guest::cd_part(cmd));
    text.push('\n');
    let argv: Vec<String> = cmd.argv.iter().map(|a| guest::sh_quote(a)).collect();
    text.push_str("exec ");
    text.push_str(&argv.join(" "));
    text.push('\n');
    let mut m = format!("run {}\n", text.len()).into_bytes();
    m.extend_from_slice(text.as_bytes());
    m
}

/// The control line that tells the guest to detach its shares and wait.
pub const SAVE: &[u8] = b"save\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(argv: &[&str], host_mount: bool) -> GuestCommand {
        GuestCommand {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: None,
            host_mount,
            persist: false,
            authorized_keys: None,
            late_cpus: false,
        }
    }

    #[test]
    fn the_save_init_ends_by_execing_the_serve_script() {
        let s = save_init_script(&cmd(&["touch", "/tmp/x"], false));
        assert!(s.contains("(exec 9>&- touch /tmp/x)"), "{s}");
        let exit = s.find("echo \"exit $lvh_status").unwrap();
        let wait = s
            .find("read -r lvh_op <&9\n[ \"$lvh_op\" = save ] || exit 0\n")
            .unwrap();
        assert!(exit < wait);
        assert!(
            s.ends_with("LVH_SERVE_END\nexec /bin/sh /dev/.lvh-serve \"$lvh_out\" \"$lvh_err\"\n"),
            "{s}"
        );
        assert!(!serve_script().contains("\nLVH_SERVE_END\n"));
    }

    #[test]
    fn the_serve_script_detaches_shares_before_saying_saving() {
        let s = serve_script();
        let umount = s
            .find("umount -n /run && mount -n --move /dev/.lvh-run /run")
            .unwrap();
        let saving = s.find("echo saving >&9").unwrap();
        let run = s.find("(exec 9>&- sh -c \"$lvh_cmd\")").unwrap();
        assert!(umount < saving && saving < run, "{s}");
        assert!(s.contains("mkfifo /run/lvh.o"));
        assert!(s.ends_with(guest::ACK_AND_EXIT));
    }

    #[test]
    fn command_messages_carry_their_length() {
        let m = command_message(&cmd(&["sh", "-c", "cat /tmp/x; exit 3"], false));
        let m = String::from_utf8(m).unwrap();
        let (head, text) = m.split_once('\n').unwrap();
        assert_eq!(head, format!("run {}", text.len()));
        assert_eq!(
            text,
            "cd /root 2>/dev/null || cd /\nexec sh -c 'cat /tmp/x; exit 3'\n"
        );
        let h = String::from_utf8(command_message(&cmd(&["ls"], true))).unwrap();
        assert!(
            h.contains("mount -t 9p -o trans=virtio,version=9p2000.L host_mount /host ||"),
            "{h}"
        );
        assert!(h.contains("cd /host 2>/dev/null || cd /\nexec ls\n"), "{h}");
    }
}
