//! A run's private directory under `$TMPDIR` (`lvh-run-<pid>.XXXXXX`, mode
//! 0700): the one place where a run's files are made. It holds the control
//! endpoints QEMU connects to ([`Endpoint`]: the console and the guest's
//! ports as unix sockets lvh listens on, QMP), the control share of the
//! shell init, the static init's initramfs, and QEMU's `snapshot=on`
//! overlay (QEMU's `TMPDIR` points here). It is removed when the run ends,
//! whatever the reason; those of lvh processes killed outright are swept
//! by the next run.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::channel::{self, Listeners};
use crate::runner::error::RunError;

/// The run directories' name: `lvh-run-<pid>.XXXXXX`.
const BASE: &str = "lvh-run-";
/// The private directories of bare `--gdb` sockets: `lvh-gdb-<pid>.XXXXXX`.
pub const GDB_BASE: &str = "lvh-gdb-";
/// The control share of the shell init, in the run directory.
const SHARE: &str = "share";
/// The initramfs of lvh's static init, in the run directory.
pub const INITRAMFS_FILE: &str = "initramfs.cpio";

/// A socket in the run directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The guest's first serial port.
    Console,
    /// The guest command's stdout port.
    Stdout,
    /// The guest command's stderr port.
    Stderr,
    /// The guest's control port.
    Control,
    /// QEMU's machine protocol (saved VMs).
    Qmp,
}

impl Endpoint {
    /// The socket's file name.
    pub const fn file(self) -> &'static str {
        match self {
            Endpoint::Console => "console.sock",
            Endpoint::Stdout => "stdout.sock",
            Endpoint::Stderr => "stderr.sock",
            Endpoint::Control => "control.sock",
            Endpoint::Qmp => "qmp.sock",
        }
    }

    /// Its path in the run directory `dir`.
    pub fn path_in(self, dir: &Path) -> PathBuf {
        dir.join(self.file())
    }
}

/// The control share's directory in the run directory `dir`.
pub fn share_in(dir: &Path) -> PathBuf {
    dir.join(SHARE)
}

/// The initramfs's path in the run directory `dir`.
pub fn initramfs_in(dir: &Path) -> PathBuf {
    dir.join(INITRAMFS_FILE)
}

/// A run directory, removed on drop.
pub struct RunDir(tempfile::TempDir);

impl RunDir {
    /// Makes a new run directory (after removing the run and `--gdb`
    /// directories of dead lvh processes: a `--gdb` directory can outlive
    /// its run, and not every next run has `--gdb`).
    pub fn new() -> Result<RunDir, RunError> {
        crate::stale::sweep_owned(&std::env::temp_dir(), GDB_BASE);
        RunDir::private(BASE)
    }

    /// Makes a new private directory `$TMPDIR/<base><pid>.XXXXXX` (mode
    /// 0700), after removing those of dead processes.
    pub fn private(base: &str) -> Result<RunDir, RunError> {
        crate::stale::sweep_owned(&std::env::temp_dir(), base);
        use std::os::unix::fs::PermissionsExt;
        tempfile::Builder::new()
            .prefix(&crate::stale::owned_prefix(base))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map(RunDir)
            .map_err(|e| RunError::io("create a run directory under $TMPDIR", e))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Listens on an endpoint, for QEMU to connect to.
    pub fn listen(&self, e: Endpoint) -> Result<UnixListener, RunError> {
        let p = e.path_in(self.path());
        channel::listen(&p).map_err(|err| RunError::io(format!("listen on {}", p.display()), err))
    }

    /// The guest channel's sockets, listening, and the console log file
    /// (created, when the run keeps one).
    pub fn channels(
        &self,
        console_log: Option<&Path>,
    ) -> Result<(Listeners, Option<std::fs::File>), RunError> {
        let listeners = Listeners {
            console: self.listen(Endpoint::Console)?,
            stdout: self.listen(Endpoint::Stdout)?,
            stderr: self.listen(Endpoint::Stderr)?,
            control: self.listen(Endpoint::Control)?,
        };
        let log = console_log.map(open_console_log).transpose()?;
        Ok((listeners, log))
    }

    /// Writes the control share with these files.
    pub fn write_share(&self, files: &[(&str, &[u8])]) -> Result<PathBuf, RunError> {
        let share = share_in(self.path());
        std::fs::create_dir(&share)
            .map_err(|e| RunError::io(format!("create {}", share.display()), e))?;
        for (name, bytes) in files {
            write(&share.join(name), bytes)?;
        }
        Ok(share)
    }

    /// Writes a file of the run directory.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, RunError> {
        let p = self.path().join(name);
        write(&p, bytes)?;
        Ok(p)
    }
}

/// Opens (creates or truncates) a console log the user named, never
/// through a symlink and never another user's file ([`crate::fsutil::open_output`]).
pub fn open_console_log(p: &Path) -> Result<std::fs::File, RunError> {
    crate::fsutil::open_output(p)
        .map_err(|e| RunError::io(format!("create console log {}", p.display()), e))
}

fn write(p: &Path, bytes: &[u8]) -> Result<(), RunError> {
    std::fs::write(p, bytes).map_err(|e| RunError::io(format!("write {}", p.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_directory_that_goes_away() {
        let d = RunDir::new().unwrap();
        let path = d.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("lvh-run-{}.", std::process::id())));
        let share = d.write_share(&[("init", b"x")]).unwrap();
        assert_eq!(std::fs::read(share.join("init")).unwrap(), b"x");
        let _l = d.listen(Endpoint::Control).unwrap();
        assert!(path.join("control.sock").exists());
        drop(d);
        assert!(!path.exists());
    }
}
