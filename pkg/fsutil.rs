//! Filesystem helpers for atomic outputs, exclusive locks and inputs that
//! cannot be trusted.
//!
//! Every artifact lvh writes is built under a temporary name next to its final
//! path and renamed into place only when complete ([`Partial`]), so a failed or
//! interrupted step never leaves something a later run takes for finished work.
//! A file lvh creates in a place others can write is made with
//! [`create_private`] (never through a planted symlink, never over an existing
//! file, mode 0600); an output that may exist is opened with [`open_output`]
//! or [`open_append`], and a directory lvh keeps its state in with
//! [`real_dir`], never through a symlink. An input lvh reads whole is first held to be a regular
//! file on a real filesystem ([`check_input`]) and read with a cap
//! ([`read_input`]): a FIFO, `/dev/zero` or `/proc/kmsg` is refused at once
//! instead of blocking or filling memory.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
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

/// Creates `path` for writing: a new file (never an existing one, never
/// through a symlink planted at `path`), mode `mode` (0600 for logs, states,
/// pid files), close-on-exec. For files lvh makes in directories other users
/// can write to.
pub fn create_private(path: &Path, mode: u32) -> io::Result<File> {
    File::options()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens `path` for an output the user named that may already exist (a
/// console log written again by every run): created with mode 0600 when
/// absent, truncated when it is a regular file of this user; refused when it
/// is a symlink (never followed), not a regular file (a FIFO would block),
/// or another user's file (in a shared directory someone else may have put
/// it there to read what lvh writes).
pub fn open_output(path: &Path) -> io::Result<File> {
    let f = open_own(path, false)?;
    f.set_len(0)?;
    Ok(f)
}

/// Opens `path` to append to it (a log kept across runs), with the checks
/// and refusals of [`open_output`]; a new file is empty.
pub fn open_append(path: &Path) -> io::Result<File> {
    open_own(path, true)
}

/// Why lvh refuses a symlink: read, written or made a directory, it is never followed.
const SYMLINK: &str = "it is a symbolic link, which lvh does not follow";

fn refuse(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why.to_string())
}

fn open_own(path: &Path, append: bool) -> io::Result<File> {
    use std::os::unix::fs::MetadataExt;
    let f = File::options()
        .write(true)
        .append(append)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refuse(SYMLINK),
            Some(libc::ENXIO) => refuse("it is a FIFO or socket, not a regular file"),
            _ => e,
        })?;
    let m = f.metadata()?;
    if !m.file_type().is_file() {
        return Err(refuse("it is not a regular file"));
    }
    if m.uid() != rustix::process::geteuid().as_raw() {
        return Err(refuse(&format!(
            "it belongs to another user (uid {})",
            m.uid()
        )));
    }
    Ok(f)
}

/// Refuses `path` if it is a symlink (absent is fine): for a file lvh
/// reads, replaces or removes in a directory it checked with [`real_dir`].
pub fn not_a_symlink(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(refuse(SYMLINK)),
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes sure `dir` is a directory of its own, creating it (its parent
/// must exist) when absent: a symlink there is refused, never followed, and
/// so is anything else that is not a directory.
pub fn real_dir(dir: &Path) -> io::Result<()> {
    let check = |m: std::fs::Metadata| {
        if m.file_type().is_symlink() {
            Err(refuse(SYMLINK))
        } else if !m.is_dir() {
            Err(refuse("it is not a directory"))
        } else {
            Ok(())
        }
    };
    match std::fs::symlink_metadata(dir) {
        Ok(m) => check(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(dir) {
            // Something else made it meanwhile: it must pass too.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                check(std::fs::symlink_metadata(dir)?)
            }
            r => r,
        },
        Err(e) => Err(e),
    }
}

/// Why an input file is refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {reason}")]
    NotAFile { path: PathBuf, reason: String },
    #[error("{path} is larger than {limit} bytes, the most lvh reads of it")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What kind of thing an input may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A regular file (read whole).
    File,
    /// A directory (walked).
    Dir,
    /// Either.
    FileOrDir,
}

/// Filesystems whose files are not data at rest: reading them blocks
/// (`/proc/kmsg`), never ends, or changes with every read.
fn virtual_fs(path: &Path) -> Option<&'static str> {
    use nix::sys::statfs::{self as sf, statfs};
    let t = statfs(path).ok()?.filesystem_type();
    [
        (sf::PROC_SUPER_MAGIC, "/proc"),
        (sf::SYSFS_MAGIC, "sysfs"),
        (sf::DEBUGFS_MAGIC, "debugfs"),
        (sf::TRACEFS_MAGIC, "tracefs"),
        (sf::SECURITYFS_MAGIC, "securityfs"),
        (sf::CGROUP_SUPER_MAGIC, "cgroupfs"),
        (sf::DEVPTS_SUPER_MAGIC, "devpts"),
    ]
    .into_iter()
    .find(|(m, _)| *m == t)
    .map(|(_, name)| name)
}

/// Whether a file of this type is what an input of `kind` may be, or why not
/// (a pure decision on the file type, for tests).
pub fn input_kind_ok(ft: std::fs::FileType, kind: InputKind) -> Result<(), String> {
    let what = if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_dir() {
        match kind {
            InputKind::Dir | InputKind::FileOrDir => return Ok(()),
            InputKind::File => "a directory",
        }
    } else if ft.is_file() {
        match kind {
            InputKind::File | InputKind::FileOrDir => return Ok(()),
            InputKind::Dir => "a file",
        }
    } else {
        "not a file"
    };
    let want = match kind {
        InputKind::File => "a regular file",
        InputKind::Dir => "a directory",
        InputKind::FileOrDir => "a regular file or a directory",
    };
    Err(format!("is {what}, not {want}"))
}

/// Checks, without opening it, that `path` (symlinks followed) is an input of
/// `kind` on a real filesystem. The error names the path and what it is.
pub fn check_input(path: &Path, kind: InputKind) -> Result<std::fs::Metadata, InputError> {
    let md = std::fs::metadata(path).map_err(|source| InputError::Io {
        path: path.to_owned(),
        source,
    })?;
    let refuse = |reason: String| InputError::NotAFile {
        path: path.to_owned(),
        reason,
    };
    input_kind_ok(md.file_type(), kind).map_err(refuse)?;
    if let Some(fs) = virtual_fs(path) {
        return Err(refuse(format!(
            "is on {fs}, not a file with fixed contents"
        )));
    }
    Ok(md)
}

/// Reads a whole input file of at most `limit` bytes: it must pass
/// [`check_input`] (so a FIFO or device is refused before any read), it is
/// opened without blocking, and reading stops past `limit`.
pub fn read_input(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    let md = check_input(path, InputKind::File)?;
    let too_large = || InputError::TooLarge {
        path: path.to_owned(),
        limit,
    };
    if md.len() > limit {
        return Err(too_large());
    }
    let io_err = |source| InputError::Io {
        path: path.to_owned(),
        source,
    };
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err)?;
    // Swapped for something else between the check and the open: refuse.
    if !f.metadata().map_err(io_err)?.is_file() {
        return Err(InputError::NotAFile {
            path: path.to_owned(),
            reason: "changed while being opened".into(),
        });
    }
    let mut buf = Vec::with_capacity(md.len() as usize);
    f.take(limit + 1).read_to_end(&mut buf).map_err(io_err)?;
    if buf.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(buf)
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

    #[test]
    fn private_files_are_new_0600_and_never_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        create_private(&p, 0o600).unwrap().write_all(b"x").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // an existing file is not reused
        assert_eq!(
            create_private(&p, 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        // a planted symlink is not followed, and its target is untouched
        let target = d.path().join("victim");
        std::fs::write(&target, b"keep").unwrap();
        let planted = d.path().join("planted");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        assert!(create_private(&planted, 0o600).is_err());
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("new"), &dangling).unwrap();
        assert!(create_private(&dangling, 0o600).is_err());
        assert!(!d.path().join("new").exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn inputs_must_be_regular_files_on_real_filesystems() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_input(&f, 5).unwrap(), b"12345");
        assert!(matches!(
            read_input(&f, 4).unwrap_err(),
            InputError::TooLarge { limit: 4, .. }
        ));
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let t0 = std::time::Instant::now();
        for (p, what) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a character device"),
            (Path::new("/proc/kmsg"), "on /proc"),
            (Path::new("/proc/self/status"), "on /proc"),
            (d.path(), "a directory"),
        ] {
            let e = read_input(p, 1 << 20).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains(&*p.to_string_lossy()), "{e}");
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        assert!(check_input(d.path(), InputKind::Dir).is_ok());
        assert!(check_input(&f, InputKind::FileOrDir).is_ok());
        assert!(check_input(&f, InputKind::Dir)
            .unwrap_err()
            .to_string()
            .contains("is a file, not a directory"));
    }

    #[test]
    fn an_output_is_never_written_through_a_link_a_fifo_or_for_another_user() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("console.log");
        open_output(&log).unwrap().write_all(b"old run").unwrap();
        assert_eq!(
            std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Written again by the next run: truncated.
        open_output(&log).unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"");
        let target = d.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = d.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_output(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let fifo = d.path().join("fifo.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(open_output(&fifo).is_err());
        // Another user's file (as root, which these tests run as in CI).
        if rustix::process::geteuid().is_root() {
            let theirs = d.path().join("theirs.log");
            std::fs::write(&theirs, "theirs").unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            let e = open_output(&theirs).unwrap_err().to_string();
            assert!(e.contains("belongs to another user (uid 65534)"), "{e}");
            assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs");
            assert_eq!(std::fs::metadata(&theirs).unwrap().uid(), 65534);
        }
    }

    #[test]
    fn appends_and_state_directories_never_go_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("a.log");
        open_append(&log).unwrap().write_all(b"one\n").unwrap();
        open_append(&log).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
        let target = d.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = d.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_append(&link)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        assert!(not_a_symlink(&link).is_err());
        assert!(not_a_symlink(&log).is_ok() && not_a_symlink(&d.path().join("no")).is_ok());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        // Directories: made when absent, kept when real, refused otherwise.
        let state = d.path().join("state");
        real_dir(&state).and_then(|_| real_dir(&state)).unwrap();
        assert!(state.is_dir());
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let planted = d.path().join("planted");
        std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
        assert!(real_dir(&planted)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        assert!(real_dir(&log)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
