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

/// Removes the stale QEMU pid files in `dir`; returns the ones removed.
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
        let Ok(content) = std::fs::read_to_string(&p) else {
            continue;
        };
        let age = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
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
    }
}
