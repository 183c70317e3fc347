//! The virtiofsd of a virtiofs host mount: its command line ([`argv`], pure)
//! and its start ([`start`]) before QEMU, through the one exec helper, so it
//! is stopped with the run and killed with QEMU's group when lvh dies (the
//! exec helper's death signal and sentinel). Its socket lives in a private
//! directory of its own (`lvh-vfs-<pid>.XXXXXX`, mode 0700), owned by the
//! user virtiofsd runs as (see `plan::sharefs`), and goes with the run.
//! The session watches it with QEMU ([`Daemon::try_wait`]): a guest whose
//! virtiofsd died would wait on the mount forever.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::qemu::{QemuConfig, ShareFs};
use super::rundir::RunDir;
use super::StderrTail;
use crate::exec::{Child, Cmd, Io};
use crate::runner::error::RunError;
use crate::runner::plan::sharefs::{RunAs, Virtiofs};

/// How long virtiofsd gets to make its socket.
pub const SOCKET_DEADLINE: Duration = Duration::from_secs(10);
/// How long virtiofsd gets to exit after SIGTERM (it exits by itself when
/// QEMU, stopped first, hangs up).
const GRACE: Duration = Duration::from_secs(2);
/// The socket's name in its directory.
const SOCKET: &str = "virtiofsd.sock";
/// The private directories' name.
const BASE: &str = "lvh-vfs-";
/// The daemon's name in errors.
pub const NAME: &str = "virtiofsd";

/// virtiofsd's arguments for sharing `dir` on `socket`: no sandbox of its
/// own (it never runs as root, see `sharefs`), its seccomp filter killing
/// on any other system call, no extended attributes (so no file
/// capabilities or security labels from the guest), inodes by O_PATH
/// descriptors (file handles need a capability it does not have).
///
/// Speed, where the edit-test loop spends it (many small files read once
/// per run, under TCG, where every request is a round trip through three
/// host threads: virtiofsd, QEMU's main loop, a vCPU):
/// - `--no-readdirplus`: a directory listing then does not make the guest
///   look up, and virtiofsd hold a descriptor for, every entry: `find` over
///   a kernel tree stays far below the open-files limits (with READDIRPLUS
///   it fails with "Too many open files in system" in the guest) and is
///   faster. The price is one LOOKUP per file a program opens after
///   listing it.
/// - `--cache=auto` (attributes and names trusted for a second, a file's
///   cached pages dropped when it is opened again): the host edits the
///   tree while a shell or dev box runs, and the guest must see the edit on
///   its next open. `always` (a day, pages kept) would serve stale
///   binaries there, and buys nothing on a first read: a file read once
///   costs LOOKUP, OPEN, READ and FLUSH under every policy (RELEASE is not
///   waited for); `metadata` and `never` bypass the page cache and need a
///   READ more per file.
/// - `--thread-pool-size=0`: requests are served on the queue's own thread.
///   One guest's reads come one at a time, and a pool only adds a hand-off
///   (and a thread wakeup) to each.
/// - No `--writeback`: the guest's writes would reach the host only when
///   flushed, later than a host reader expects.
pub fn argv(dir: &Path, socket: &Path, readonly: bool) -> Vec<String> {
    let mut v = vec![
        format!("--socket-path={}", socket.display()),
        format!("--shared-dir={}", dir.display()),
        "--sandbox=none".into(),
        "--seccomp=kill".into(),
        "--cache=auto".into(),
        "--no-readdirplus".into(),
        "--thread-pool-size=0".into(),
        "--inode-file-handles=never".into(),
        "--log-level=error".into(),
    ];
    if readonly {
        v.push("--readonly".into());
    }
    v
}

/// A running virtiofsd and its socket's directory (removed after it).
pub struct Daemon {
    child: Child,
    stderr: StderrTail,
    /// The shared directory, for errors.
    dir: PathBuf,
    _dir: RunDir,
}

impl Daemon {
    /// Its exit status, once it exited (reaps it).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// What it is, for errors: "virtiofsd (pid 12, serving --host-mount /src)".
    pub fn what(&self) -> String {
        format!(
            "{NAME} (pid {}, serving --host-mount {})",
            self.child.id(),
            self.dir.display()
        )
    }

    /// Its last stderr lines, waiting up to `wait` for the last of a dead one's.
    pub fn stderr_lines(&self, wait: Duration) -> Vec<String> {
        self.stderr.last_lines(wait)
    }
}

/// Starts virtiofsd for the virtiofs shares of `cfg` (there is at most
/// one: `--host-mount`) and points the share at its socket, once the socket
/// is there. `None` when no share needs it.
pub fn start(cfg: &mut QemuConfig, vfs: Option<&Virtiofs>) -> Result<Option<Daemon>, RunError> {
    let Some(vfs) = vfs else { return Ok(None) };
    let Some(share) = cfg
        .shares
        .iter_mut()
        .find(|s| matches!(s.fs, ShareFs::Virtiofs { .. }))
    else {
        return Ok(None);
    };
    let dir = RunDir::private(BASE)?;
    let mut cmd = Cmd::new(&vfs.daemon).grace(GRACE);
    if let RunAs::Owner { uid, gid } = vfs.run_as {
        raise_nofile_limit();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .map_err(|e| RunError::io(format!("hand {} to uid {uid}", dir.path().display()), e))?;
        cmd = cmd.user(uid, gid);
    }
    let socket = dir.path().join(SOCKET);
    let cmd = cmd.args(argv(&share.dir, &socket, share.readonly));
    tracing::debug!("virtiofsd command: {}", cmd.display());
    let mut child = cmd.spawn(Io::Null, Io::Null, Io::Piped)?;
    let tail = StderrTail::collect(child.take_stderr().expect("piped stderr"), NAME);
    let deadline = Instant::now() + SOCKET_DEADLINE;
    loop {
        let exited = child
            .try_wait()
            .map_err(|e| RunError::io("wait for virtiofsd", e))?;
        if exited.is_none() && socket.exists() {
            break;
        }
        if exited.is_some() || Instant::now() >= deadline {
            // A dead one's last lines; a live one's so far.
            let wait = if exited.is_some() {
                super::STDERR_DRAIN
            } else {
                Duration::ZERO
            };
            let lines = tail.last_lines(wait);
            return Err(RunError::Setup(format!(
                "{NAME} did not start serving --host-mount {} ({}): {}",
                share.dir.display(),
                match exited {
                    Some(st) => crate::exec::describe_status(&st),
                    None => format!("no socket after {SOCKET_DEADLINE:?}"),
                },
                lines.join(" / ")
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    share.fs = ShareFs::Virtiofs {
        socket: socket.clone(),
    };
    Ok(Some(Daemon {
        child,
        stderr: tail,
        dir: share.dir.clone(),
        _dir: dir,
    }))
}

/// virtiofsd holds a descriptor for every inode the guest knows (86,000
/// for a kernel tree) and raises its own soft limit up to the hard one,
/// which only root can raise: a root lvh raises its hard limit to the
/// kernel's most (`fs.nr_open`) before starting it as the directory's owner.
fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let most = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let now = getrlimit(Resource::Nofile);
    if now.maximum.is_some_and(|m| m < most) {
        let raised = Rlimit {
            current: now.current,
            maximum: Some(most),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!("could not raise the open files limit for virtiofsd: {e}");
        }
    }
}

/// The socket a share's configuration names before [`start`] sets it.
pub fn placeholder() -> PathBuf {
    PathBuf::from(SOCKET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_is_confined_and_told_where() {
        let a = argv(Path::new("/src"), Path::new("/t/v.sock"), false).join(" ");
        assert_eq!(
            a,
            "--socket-path=/t/v.sock --shared-dir=/src --sandbox=none --seccomp=kill --cache=auto --no-readdirplus --thread-pool-size=0 --inode-file-handles=never --log-level=error"
        );
        assert!(!a.contains("xattr") && !a.contains("posix-acl"));
        assert!(argv(Path::new("/s"), Path::new("/v"), true)
            .last()
            .is_some_and(|x| x == "--readonly"));
    }

    #[test]
    fn the_daemon_is_tuned_for_small_files_the_host_may_edit() {
        let a = argv(Path::new("/src"), Path::new("/t/v.sock"), false);
        let has = |x: &str| a.iter().any(|y| y == x);
        // Coherent with host edits on the next open; never a day-long cache.
        assert!(has("--cache=auto"));
        assert!(!a
            .iter()
            .any(|x| x.starts_with("--cache=") && x != "--cache=auto"));
        // No listing that pins a descriptor per entry; no pool hand-off.
        assert!(has("--no-readdirplus"));
        assert!(has("--thread-pool-size=0"));
        // Guest writes reach the host when written; mmap follows the cache.
        assert!(!has("--writeback") && !has("--allow-mmap"));
        // Each option once: virtiofsd refuses a repeated one.
        let mut names: Vec<&str> = a.iter().map(|x| x.split('=').next().unwrap()).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "{a:?}");
    }
}
