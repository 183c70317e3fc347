//! Where things live under `--dir`: `kernels.json`, the shared bare repository
//! `kernels/git`, one worktree per kernel `kernels/<name>`, and lvh's own state
//! inside a worktree (`.lvh/`: logs, stamps) that git is told to ignore, with
//! `tar-install` and its build record.

use std::path::{Path, PathBuf};

use std::time::Duration;

use super::error::{KernelsError, Result};
use crate::fsutil::{Lock, LockError};
use crate::progress::{self, Reporter};

/// Paths for one kernels directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    /// Paths are made absolute: make runs inside the tree, so relative ones would break.
    pub fn new(dir: &Path) -> Self {
        Layout {
            dir: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
        }
    }

    /// `<dir>/kernels`: the git repository and the worktrees.
    pub fn kernels_dir(&self) -> PathBuf {
        self.dir.join("kernels")
    }

    /// `<dir>/kernels/git`: the bare repository every worktree shares.
    pub fn git_dir(&self) -> PathBuf {
        self.kernels_dir().join(super::config::RESERVED_NAME)
    }

    /// `<dir>/kernels/<name>`: the kernel's tree.
    pub fn tree(&self, name: &str) -> PathBuf {
        self.kernels_dir().join(name)
    }

    /// The lock that serializes fetch/configure/build of one kernel.
    pub fn lock(&self, name: &str) -> PathBuf {
        self.kernels_dir().join(format!(".{name}.lock"))
    }
}

/// The local branch a kernel's worktree is on.
pub fn local_branch(name: &str) -> String {
    format!("lvh-{name}")
}

/// lvh's state inside a kernel tree.
pub fn state_dir(tree: &Path) -> PathBuf {
    tree.join(".lvh")
}

/// The full log of the last configure/build.
pub fn log_file(tree: &Path, what: &str) -> PathBuf {
    state_dir(tree).join(format!("{what}.log"))
}

/// Records what the current `.config` was made from.
pub fn config_stamp(tree: &Path) -> PathBuf {
    state_dir(tree).join("config.stamp")
}

/// Records what the current `tar-install` was made from.
pub fn install_stamp(tree: &Path) -> PathBuf {
    state_dir(tree).join("install.stamp")
}

/// `<tree>/tar-install`: `boot/vmlinuz-<ver>` and `lib/modules/<ver>`, as little-vm-helper.
pub fn install_dir(tree: &Path) -> PathBuf {
    tree.join("tar-install")
}

/// Paths git is told to ignore in every kernel tree: lvh's state, the install
/// tree and its build record.
const EXCLUDES: &[&str] = &["/.lvh/", "/tar-install/", "/lvh-build.json"];

pub(crate) fn add_excludes(git_dir: &Path) -> Result<()> {
    let f = git_dir.join("info").join("exclude");
    let old = std::fs::read_to_string(&f).unwrap_or_default();
    let missing: String = EXCLUDES
        .iter()
        .filter(|e| !old.lines().any(|l| l.trim() == **e))
        .map(|e| format!("{e}\n"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(git_dir.join("info"))
        .map_err(|e| KernelsError::io("failed to create", git_dir.join("info"), e))?;
    let sep = if old.is_empty() || old.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    crate::fsutil::write_atomic(&f, format!("{old}{sep}{missing}").as_bytes())
        .map_err(|e| KernelsError::io("failed to write", &f, e))
}

/// How long a command waits for another lvh working on the same kernel.
pub const LOCK_WAIT: Duration = Duration::from_secs(3 * 60 * 60);

pub(crate) fn lock(layout: &Layout, name: &str, reporter: &dyn Reporter) -> Result<Lock> {
    std::fs::create_dir_all(layout.kernels_dir())
        .map_err(|e| KernelsError::io("failed to create", layout.kernels_dir(), e))?;
    let what = format!("kernel {name:?}");
    match Lock::acquire(&layout.lock(name), &what, Duration::ZERO) {
        Ok(l) => Ok(l),
        Err(LockError::Busy { .. }) => {
            progress::warn(
                reporter,
                format!("{what} is in use by another lvh process; waiting for it"),
            );
            Ok(Lock::acquire(&layout.lock(name), &what, LOCK_WAIT)?)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_are_added_once_and_completed_in_old_repositories() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("info/exclude");
        std::fs::create_dir_all(d.path().join("info")).unwrap();
        std::fs::write(&f, "# git's own\n/.lvh/\n/tar-install/").unwrap();
        add_excludes(d.path()).unwrap();
        add_excludes(d.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "# git's own\n/.lvh/\n/tar-install/\n/lvh-build.json\n"
        );
    }
}
