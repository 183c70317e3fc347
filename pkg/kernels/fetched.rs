//! What fetching a kernel tree gives back, and what both ways of fetching
//! (the shared repository in `git.rs`, shallow clones in `shallow.rs`) share:
//! the `git` program's command and the paths every tree ignores.

use std::path::{Path, PathBuf};

use super::error::{KernelsError, Result};
use crate::exec::Cmd;

/// What a fetch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub tree: PathBuf,
    /// The commit the tree is at now.
    pub commit: String,
    /// The branch (or tag) followed on the remote.
    pub branch: String,
    pub outcome: FetchOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    Created,
    Updated,
    UpToDate,
}

/// Paths git is told to ignore in every kernel tree: lvh's state and the install tree.
const EXCLUDES: &str = "/.lvh/\n/tar-install/\n";

pub(super) fn add_excludes(git_dir: &Path) -> Result<()> {
    let f = git_dir.join("info").join("exclude");
    let old = std::fs::read_to_string(&f).unwrap_or_default();
    if old.contains("/.lvh/") {
        return Ok(());
    }
    std::fs::create_dir_all(git_dir.join("info"))
        .map_err(|e| KernelsError::io("failed to create", git_dir.join("info"), e))?;
    crate::fsutil::write_atomic(&f, format!("{old}{EXCLUDES}").as_bytes())
        .map_err(|e| KernelsError::io("failed to write", &f, e))
}

/// The `git` program, never prompting for credentials.
pub(super) fn git(args: &[&str]) -> Cmd {
    Cmd::new("git").args(args).env("GIT_TERMINAL_PROMPT", "0")
}
