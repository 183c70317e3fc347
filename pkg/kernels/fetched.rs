//! What fetching a kernel tree gives back, and what both ways of fetching
//! (the shared repository in `git.rs`, shallow clones in `shallow.rs`) share:
//! the `git` program's command.

use std::path::PathBuf;

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

/// The `git` program, never prompting for credentials.
pub(super) fn git(args: &[&str]) -> Cmd {
    Cmd::new("git").args(args).env("GIT_TERMINAL_PROMPT", "0")
}
