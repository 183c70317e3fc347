//! Temporary names that carry their owner's pid, and the sweep that removes
//! those whose owner is gone.
//!
//! A SIGKILLed lvh runs no destructor: its run directory, push scratch
//! directory and `.partial-<pid>` outputs stay behind. Every such name holds
//! the pid of the lvh that made it, and the next run of the same command
//! sweeps the directory it writes to, removing the entries whose owner no
//! longer exists. A live owner's entries (a concurrent lvh) are never touched;
//! a reused pid only delays a removal. Which names are stale is decided by
//! pure functions ([`owner`], [`partial_owner`]); [`sweep`] only removes.

use std::path::{Path, PathBuf};

/// The prefix for a temporary name owned by this process: `<base><pid>.`
/// (tempfile adds a random suffix after it).
pub fn owned_prefix(base: &str) -> String {
    format!("{base}{}.", std::process::id())
}

/// The owner's pid in a name made from [`owned_prefix`]`(base)`.
pub fn owner(name: &str, base: &str) -> Option<u32> {
    let (pid, _) = name.strip_prefix(base)?.split_once('.')?;
    parse_pid(pid)
}

/// The owner's pid in a `.<name>.partial-<pid>` name ([`crate::fsutil::Partial`]).
pub fn partial_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, pid) = rest.rsplit_once(".partial-")?;
    parse_pid(pid)
}

fn parse_pid(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
        .filter(|&p| p > 0)
}

/// Whether a process with this pid exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the entries of `dir` that `owner_of` says belong to a process that
/// is gone (never this one); returns what it removed.
pub fn sweep(dir: &Path, owner_of: impl Fn(&str) -> Option<u32>) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return removed;
    };
    let me = std::process::id();
    let uid = rustix::process::geteuid().as_raw();
    for e in rd.flatten() {
        let Some(pid) = owner_of(&e.file_name().to_string_lossy()) else {
            continue;
        };
        // Only what this user made: a name planted by another user in a
        // shared directory is not lvh's to remove.
        use std::os::unix::fs::MetadataExt;
        if !std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.uid() == uid) {
            continue;
        }
        if pid != me && !alive(pid) && remove_any(&e.path()).is_ok() {
            tracing::debug!(path = %e.path().display(), pid, "removed what a killed lvh left");
            removed.push(e.path());
        }
    }
    removed
}

/// [`sweep`] of the names made from [`owned_prefix`]`(base)`.
pub fn sweep_owned(dir: &Path, base: &str) -> Vec<PathBuf> {
    sweep(dir, |n| owner(n, base))
}

/// [`sweep`] of `.partial-<pid>` outputs.
pub fn sweep_partials(dir: &Path) -> Vec<PathBuf> {
    sweep(dir, partial_owner)
}

/// Removes a file, symlink or directory tree; absent is fine.
pub fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_from_names() {
        assert_eq!(owner("lvh-run-123.AbC9", "lvh-run-"), Some(123));
        assert_eq!(owner("lvh-run-123.", "lvh-run-"), Some(123));
        for n in [
            "lvh-run-AbC9",
            "lvh-run-.x",
            "lvh-run-12x.y",
            "push-1.a",
            "lvh-run-0.a",
        ] {
            assert_eq!(owner(n, "lvh-run-"), None, "{n}");
        }
        assert!(owned_prefix("push-").starts_with("push-"));
        assert_eq!(
            owner(&format!("{}xyz", owned_prefix("push-")), "push-"),
            Some(std::process::id())
        );
        assert_eq!(partial_owner(".a.img.partial-12"), Some(12));
        assert_eq!(partial_owner(".oci-pull.partial-7"), Some(7));
        for n in [
            "a.img.partial-12",
            ".a.img.partial-",
            ".a.partial-1x",
            ".a.img",
        ] {
            assert_eq!(partial_owner(n), None, "{n}");
        }
    }

    #[test]
    fn sweep_removes_only_what_dead_owners_left() {
        let d = tempfile::tempdir().unwrap();
        let dead = 99_999_999; // above any pid_max
        let me = std::process::id();
        std::fs::create_dir(d.path().join(format!("lvh-run-{dead}.abc"))).unwrap();
        std::fs::write(d.path().join(format!("lvh-run-{dead}.abc/f")), "x").unwrap();
        std::fs::create_dir(d.path().join(format!("lvh-run-{me}.mine"))).unwrap();
        std::fs::write(d.path().join(format!(".x.partial-{dead}")), "x").unwrap();
        std::fs::write(d.path().join("lvh-run-other"), "x").unwrap();
        let removed = sweep_owned(d.path(), "lvh-run-");
        assert_eq!(removed, vec![d.path().join(format!("lvh-run-{dead}.abc"))]);
        assert_eq!(
            sweep_partials(d.path()),
            vec![d.path().join(format!(".x.partial-{dead}"))]
        );
        let mut left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec!["lvh-run-other".to_string(), format!("lvh-run-{me}.mine")];
        want.sort();
        assert_eq!(left, want);
    }
}
