//! Filesystem helpers for atomic outputs and exclusive locks.
//!
//! Every artifact lvh writes is built under a temporary name next to its final
//! path and renamed into place only when complete ([`Partial`]), so a failed or
//! interrupted step never leaves something a later run takes for finished work.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// Writes `contents` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", file_name(path)))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into())
}

/// A file or directory being built at a temporary path beside `final_path`.
/// Dropping it without [`Partial::commit`] removes whatever was written.
#[derive(Debug)]
pub struct Partial {
    tmp: PathBuf,
    final_path: PathBuf,
    committed: bool,
}

impl Partial {
    /// Reserves `<dir>/.<name>.partial-<pid>` for `final_path`, removing any
    /// leftover at that temporary path and those of killed lvh processes in
    /// `<dir>` ([`crate::stale`]). Nothing is created yet.
    pub fn new(final_path: &Path) -> io::Result<Self> {
        crate::stale::sweep_partials(parent_dir(final_path));
        let tmp = parent_dir(final_path).join(format!(
            ".{}.partial-{}",
            file_name(final_path),
            std::process::id()
        ));
        remove_any(&tmp)?;
        Ok(Partial {
            tmp,
            final_path: final_path.to_owned(),
            committed: false,
        })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Moves the finished artifact into place (replacing an old one).
    pub fn commit(mut self) -> io::Result<PathBuf> {
        if self.final_path.is_dir() && self.tmp.is_dir() {
            remove_any(&self.final_path)?;
        }
        std::fs::rename(&self.tmp, &self.final_path)?;
        self.committed = true;
        Ok(self.final_path.clone())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_any(&self.tmp);
        }
    }
}

/// Removes a file, symlink or directory tree; absent is fine.
pub use crate::stale::remove_any;

/// An exclusive advisory lock on a file, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _flock: Flock<File>,
    path: PathBuf,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} is in use by another lvh process (lock {path}); waited {waited:?}")]
    Busy {
        what: String,
        path: PathBuf,
        waited: Duration,
    },
    #[error("failed to open lock file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Lock {
    /// Takes the lock at `path`, waiting up to `wait` for another holder.
    /// `what` names the locked thing in the error ("kernel bpf-next").
    pub fn acquire(path: &Path, what: &str, wait: Duration) -> Result<Lock, LockError> {
        let start = Instant::now();
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| LockError::Io {
                path: path.to_owned(),
                source,
            })?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => {
                    return Ok(Lock {
                        _flock: flock,
                        path: path.to_owned(),
                    })
                }
                Err((f, _)) => {
                    file = f;
                    if start.elapsed() >= wait
                        || crate::cancel::CancelToken::global().is_cancelled()
                    {
                        return Err(LockError::Busy {
                            what: what.to_string(),
                            path: path.to_owned(),
                            waited: start.elapsed(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The directory lvh caches downloads and derived artifacts in
/// (`$LVH_CACHE_DIR`, else `$XDG_CACHE_HOME/lvh`, else `~/.cache/lvh`).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LVH_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("lvh");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("lvh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_is_removed_unless_committed() {
        let d = tempfile::tempdir().unwrap();
        let fin = d.path().join("img");
        {
            let p = Partial::new(&fin).unwrap();
            std::fs::write(p.path(), b"half").unwrap();
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        let p = Partial::new(&fin).unwrap();
        std::fs::write(p.path(), b"whole").unwrap();
        p.commit().unwrap();
        assert_eq!(std::fs::read(&fin).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn partial_directories_replace_old_ones() {
        let d = tempfile::tempdir().unwrap();
        let fin = d.path().join("tree");
        std::fs::create_dir(&fin).unwrap();
        std::fs::write(fin.join("old"), b"").unwrap();
        let p = Partial::new(&fin).unwrap();
        std::fs::create_dir(p.path()).unwrap();
        std::fs::write(p.path().join("new"), b"").unwrap();
        p.commit().unwrap();
        assert!(fin.join("new").exists() && !fin.join("old").exists());
    }

    #[test]
    fn write_atomic_replaces() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.json");
        write_atomic(&f, b"1").unwrap();
        write_atomic(&f, b"2").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"2");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn second_lock_is_busy() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let _a = Lock::acquire(&p, "thing", Duration::ZERO).unwrap();
        let err = Lock::acquire(&p, "thing", Duration::from_millis(150)).unwrap_err();
        assert!(err.to_string().contains("thing is in use"), "{err}");
    }
}
