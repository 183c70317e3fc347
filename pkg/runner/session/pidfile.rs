//! The pid files of daemonized QEMUs (`$TMPDIR/lvh-qemu-<lvh pid>.pid`) and
//! the sweep that removes stale ones. QEMU deletes its pid file when it exits
//! normally, but not when it is killed from outside (SIGKILL, the OOM killer,
//! a reboot of a tmpfs-less /tmp); so every `--daemonize` run first removes the
//! files whose QEMU is gone. Whether a file is stale is a pure decision
//! ([`is_stale`]) on what the file and `/proc` say.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Names of the files this module owns: `lvh-qemu-<n>.pid`.
const PREFIX: &str = "lvh-qemu-";
const SUFFIX: &str = ".pid";
/// A pid file that is still empty or garbled this long after it was written
/// is not one that a starting QEMU is about to fill in.
pub const UNREADABLE_GRACE: Duration = Duration::from_secs(60);

/// The pid file of the daemonized QEMU started by lvh process `lvh_pid`.
pub fn path(dir: &Path, lvh_pid: u32) -> PathBuf {
    dir.join(format!("{PREFIX}{lvh_pid}{SUFFIX}"))
}

/// Whether `name` is one of lvh's QEMU pid files.
pub fn is_ours(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix(SUFFIX))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a pid file may go: `content` is what it holds, `comm` says what
/// process (by its `comm`, if any) has a given pid, `age` is the time since
/// it was last written.
pub fn is_stale(content: &str, comm: impl Fn(u32) -> Option<String>, age: Duration) -> bool {
    match content.trim().parse::<u32>() {
        // A live process with that pid that is not QEMU: the pid was reused.
        Ok(pid) if pid > 0 => !comm(pid).is_some_and(|c| c.starts_with("qemu-system")),
        _ => age >= UNREADABLE_GRACE,
    }
}

fn comm_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Creates the pid file `path` for QEMU to fill in: a new regular file of
/// mode 0600, never an existing path (a symlink or file planted there by
/// someone else is refused, and left alone).
pub fn create(path: &Path) -> std::io::Result<()> {
    crate::fsutil::create_private(path, 0o600).map(drop)
}

/// The content of a pid file this user made: a regular file of this user,
/// read without following a symlink or blocking on a FIFO.
fn read_own(p: &Path) -> Option<(String, std::fs::Metadata)> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(p)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.uid() != rustix::process::geteuid().as_raw() || m.len() > 64 {
        return None;
    }
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    Some((s, m))
}

/// Removes the stale QEMU pid files in `dir`; returns the ones removed.
/// Only this user's regular files are looked at.
pub fn sweep(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        if !is_ours(&e.file_name().to_string_lossy()) {
            continue;
        }
        let p = e.path();
        let Some((content, meta)) = read_own(&p) else {
            continue;
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        if is_stale(&content, comm_of, age) && std::fs::remove_file(&p).is_ok() {
            tracing::debug!(path = %p.display(), "removed a stale QEMU pid file");
            removed.push(p);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_ours("lvh-qemu-123.pid"));
        for n in [
            "lvh-qemu-.pid",
            "lvh-qemu-12a.pid",
            "lvh-run-1",
            "qemu-1.pid",
        ] {
            assert!(!is_ours(n), "{n}");
        }
        assert_eq!(path(Path::new("/t"), 7), PathBuf::from("/t/lvh-qemu-7.pid"));
    }

    #[test]
    fn staleness() {
        let qemu = |_| Some("qemu-system-x86".to_string());
        let other = |_| Some("bash".to_string());
        let none = |_| None;
        let young = Duration::from_secs(1);
        let old = UNREADABLE_GRACE;
        // A live QEMU keeps its file.
        assert!(!is_stale("42\n", qemu, old));
        // Gone, or the pid now belongs to something else: stale.
        assert!(is_stale("42\n", none, young));
        assert!(is_stale("42", other, young));
        // Empty or garbled: give a starting QEMU time to write it.
        assert!(!is_stale("", none, young));
        assert!(!is_stale("x", none, young));
        assert!(is_stale("", none, old));
        assert!(is_stale("0", none, old));
    }

    #[test]
    fn sweep_keeps_live_qemu_and_foreign_files() {
        let d = tempfile::tempdir().unwrap();
        // Our own pid is alive but not QEMU: stale. A pid past pid_max: gone.
        std::fs::write(path(d.path(), 1), format!("{}\n", std::process::id())).unwrap();
        std::fs::write(path(d.path(), 2), "99999999\n").unwrap();
        std::fs::write(path(d.path(), 3), "").unwrap();
        std::fs::write(d.path().join("other.pid"), "99999999\n").unwrap();
        let mut removed = sweep(d.path());
        removed.sort();
        assert_eq!(removed, vec![path(d.path(), 1), path(d.path(), 2)]);
        assert!(path(d.path(), 3).exists());
        assert!(d.path().join("other.pid").exists());
        // A symlink or a FIFO at one of the names: not read, not removed.
        let target = d.path().join("target");
        std::fs::write(&target, "99999999\n").unwrap();
        std::os::unix::fs::symlink(&target, path(d.path(), 4)).unwrap();
        nix::unistd::mkfifo(&path(d.path(), 5), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(sweep(d.path()), Vec::<PathBuf>::new());
        assert!(std::fs::symlink_metadata(path(d.path(), 4)).is_ok());
        assert!(path(d.path(), 5).exists());
    }

    #[test]
    fn a_pid_file_is_new_and_private() {
        let d = tempfile::tempdir().unwrap();
        let p = path(d.path(), 1);
        create(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            create(&p).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        let target = d.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, path(d.path(), 2)).unwrap();
        assert!(create(&path(d.path(), 2)).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
