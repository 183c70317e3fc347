//! The guest side of the interactive shell ([`super::shell`]): whether a run
//! is a shell ([`choose`]), where the host mount appears, and the init script
//! that starts a login shell on the console with the host terminal's name and
//! size and reports its exit status. Pure: table-tested in `shell_tests.rs`.

use std::path::Path;

use super::guest::{self, sh_quote, HOST_MOUNT_PATH};
use super::plan::RunOptions;
use super::qemu::HOST_MOUNT_TAG;
use super::term::WinSize;
use super::RunError;

/// The guest's control line that says the shell is starting.
pub const SHELL_STARTED: &str = "shell";

/// The guest side of a shell run (part of the plan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellGuest {
    /// The host mount's directory name; it is mounted at `/host/<name>`.
    pub mount_name: Option<String>,
    /// `--cwd`: relative paths are relative to the host mount.
    pub cwd: Option<String>,
    /// `--persist`: flush the guest's writes before reporting the exit.
    pub persist: bool,
}

/// The name a host directory gets under `/host`: its last component (`/`
/// becomes `root`).
pub fn mount_name(host_dir: &Path) -> String {
    let canon = std::fs::canonicalize(host_dir).unwrap_or_else(|_| host_dir.to_path_buf());
    canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
}

/// Whether a run without a command is a shell: with `--shell`, or by default
/// with `--kernel`, a terminal on stdin and none of `--daemonize`,
/// `--wait-ssh`, `--serial-port` (see [`RunOptions::shell`]). Without
/// `--kernel`, `--shell` is the image's own console login: `None`.
pub(super) fn choose(o: &RunOptions) -> Result<Option<ShellGuest>, RunError> {
    let auto =
        o.kernel.is_some() && o.stdin_tty && !o.daemonize && !o.wait_ssh && o.serial_port == 0;
    if !o.shell.unwrap_or(auto) || o.kernel.is_none() {
        return Ok(None);
    }
    if o.serial_port != 0 {
        return Err(RunError::Invalid(
            "--shell cannot be combined with --serial-port: the shell is on lvh's terminal".into(),
        ));
    }
    Ok(Some(ShellGuest {
        mount_name: o.host_mount.as_deref().map(mount_name),
        cwd: o.cwd.clone(),
        persist: o.persist,
    }))
}

/// What the host terminal passes to the guest shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermInfo {
    /// `$TERM` when it is a plain name, else `vt220` (a tty) or `dumb`.
    pub term: String,
    pub size: Option<WinSize>,
}

impl TermInfo {
    pub fn new(term: Option<&str>, tty: bool, size: Option<WinSize>) -> TermInfo {
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
        TermInfo { term, size }
    }
}

/// The init script of a shell run: lvh's prelude, the host mount, then a
/// login shell on `tty` as the session's controlling terminal, a reader of
/// window-size lines from the host, and the shell's status on the control port.
pub fn shell_script(g: &ShellGuest, tty: &str, t: &TermInfo) -> String {
    let mut s = guest::prelude(false);
    let mount = g
        .mount_name
        .as_ref()
        .map(|n| format!("{HOST_MOUNT_PATH}/{n}"));
    // Inside a double-quoted message, characters the shell would expand are replaced.
    let shown = |p: &str| p.replace(['"', '$', '`', '\\'], "_");
    if let Some(m) = &mount {
        s.push_str(&format!(
            "mkdir -p {q}\nmount -t 9p -o trans=virtio,version=9p2000.L {HOST_MOUNT_TAG} {q} || lvh_fail \"cannot mount the host directory at {}\"\n",
            shown(m),
            q = sh_quote(m),
        ));
    }
    let cwd = match (&g.cwd, &mount) {
        (Some(c), _) if c.starts_with('/') => Some(c.clone()),
        (Some(c), Some(m)) => Some(format!("{m}/{c}")),
        (Some(c), None) => Some(format!("/root/{c}")),
        (None, m) => m.clone(),
    };
    match &cwd {
        Some(c) => s.push_str(&format!(
            "cd {} || lvh_fail \"cannot change to directory {}\"\n",
            sh_quote(c),
            shown(c)
        )),
        None => s.push_str("cd /root 2>/dev/null || cd /\n"),
    }
    // The console stays open from here on, so input sent as soon as the host
    // hears `shell` is queued by the tty rather than dropped.
    s.push_str(&format!(
        "export TERM={}\nlvh_tty=/dev/{tty}\nexec 8<>\"$lvh_tty\" || lvh_fail \"cannot open $lvh_tty\"\n",
        t.term
    ));
    if let Some(w) = t.size {
        s.push_str(&format!(
            "stty rows {} cols {} <\"$lvh_tty\" 2>/dev/null\n",
            w.rows, w.cols
        ));
    }
    s.push_str(&format!(
        r#"command -v setsid >/dev/null 2>&1 || lvh_fail "the image has no setsid (util-linux): the shell needs it for its terminal"
(while read -r lvh_k lvh_r lvh_c; do [ "$lvh_k" = winsz ] && stty rows "$lvh_r" cols "$lvh_c" <"$lvh_tty" 2>/dev/null; done) <&9 8>&- &
lvh_rd=$!
lvh_sh=/bin/sh; [ -x /bin/bash ] && lvh_sh=/bin/bash
echo {started} >&9
setsid -w -c "$lvh_sh" -l <>"$lvh_tty" >&0 2>&0 8>&- 9>&-
lvh_status=$?
kill "$lvh_rd" 2>/dev/null
{sync}echo "exit $lvh_status 0 0 - -" >&9
read -r lvh_ack <&9
exit 0
"#,
        started = SHELL_STARTED,
        sync = if g.persist { "sync\n" } else { "" },
    ));
    s
}

/// The host's window-size line for the guest's reader.
pub fn winsz_line(w: WinSize) -> String {
    format!("winsz {} {}\n", w.rows, w.cols)
}
