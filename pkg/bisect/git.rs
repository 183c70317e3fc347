//! The git side of a bisection, through the `git` program in the kernel's
//! worktree: revisions resolved and checked, the candidates between them
//! (first-parent history, oldest first), and checkouts that touch only the
//! files a step changes (so make rebuilds only what depends on them).

use std::path::Path;

use super::error::BisectError;
use crate::error::InvalidInput;
use crate::exec::Cmd;

/// A commit and its subject line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Commit {
    pub commit: String,
    pub subject: String,
}

fn git(tree: &Path) -> Cmd {
    Cmd::new("git")
        .arg("-C")
        .arg(tree)
        .args(["-c", "gc.auto=0"])
        .env("GIT_TERMINAL_PROMPT", "0")
}

fn read(tree: &Path, args: &[&str], what: &str) -> Result<String, BisectError> {
    git(tree)
        .args(args)
        .read()
        .map_err(|source| BisectError::Git {
            what: format!("{what} in {}", tree.display()),
            source,
        })
}

/// The full commit id of `rev` (the value of `flag`).
pub fn resolve(tree: &Path, rev: &str, flag: &str) -> Result<String, BisectError> {
    if rev.is_empty() || rev.starts_with('-') {
        return Err(InvalidInput::value(flag, rev, "not a git revision").into());
    }
    let out = git(tree)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{rev}^{{commit}}"))
        .allow_failure()
        .capture_stdout()
        .run(&crate::progress::NullReporter)
        .map_err(|source| BisectError::Git {
            what: format!("failed to resolve {rev} in {}", tree.display()),
            source,
        })?;
    let id = out.stdout_str();
    if !out.status.success() || id.is_empty() {
        return Err(InvalidInput::value(
            flag,
            rev,
            format!("no such commit in the kernel's tree {}", tree.display()),
        )
        .into());
    }
    Ok(id)
}

/// Whether `a` is an ancestor of `b` (or the same commit).
pub fn is_ancestor(tree: &Path, a: &str, b: &str) -> Result<bool, BisectError> {
    let out = git(tree)
        .args(["merge-base", "--is-ancestor", a, b])
        .allow_failure()
        .run(&crate::progress::NullReporter)
        .map_err(|source| BisectError::Git {
            what: format!("failed to compare {a} and {b} in {}", tree.display()),
            source,
        })?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(BisectError::Other(format!(
            "git merge-base --is-ancestor {a} {b} failed in {}: {}",
            tree.display(),
            out.tail.join("\n")
        ))),
    }
}

/// The commits after `good` up to `bad` on `bad`'s first-parent line, oldest first.
pub fn candidates(tree: &Path, good: &str, bad: &str) -> Result<Vec<Commit>, BisectError> {
    let text = read(
        tree,
        &[
            "log",
            "--first-parent",
            "--reverse",
            "--format=%H%x09%s",
            &format!("{good}..{bad}"),
        ],
        "failed to list the commits",
    )?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(c, s)| Commit {
            commit: c.to_string(),
            subject: s.to_string(),
        })
        .collect())
}

/// The subject line of `commit`.
pub fn subject(tree: &Path, commit: &str) -> Result<String, BisectError> {
    read(
        tree,
        &["log", "-1", "--format=%s", commit],
        "failed to read a commit",
    )
}

/// What HEAD is: its branch name, or its commit when detached.
pub fn head(tree: &Path) -> Result<String, BisectError> {
    let branch = read(tree, &["branch", "--show-current"], "failed to read HEAD")?;
    if !branch.is_empty() {
        return Ok(branch);
    }
    read(tree, &["rev-parse", "HEAD"], "failed to read HEAD")
}

/// The tracked files with local changes (a checkout would carry or refuse them).
pub fn changed_files(tree: &Path) -> Result<Vec<String>, BisectError> {
    let text = read(
        tree,
        &["status", "--porcelain", "--untracked-files=no"],
        "failed to read the status",
    )?;
    Ok(text.lines().map(|l| l.trim().to_string()).collect())
}

/// Checks out `rev` (a commit, detached, or a branch name).
pub fn checkout(tree: &Path, rev: &str, detach: bool) -> Result<(), BisectError> {
    let mut c = git(tree).args(["checkout", "-q"]);
    if detach {
        c = c.arg("--detach");
    }
    c.arg(rev)
        .run(&crate::progress::NullReporter)
        .map(|_| ())
        .map_err(|source| BisectError::Git {
            what: format!("failed to check out {rev} in {}", tree.display()),
            source,
        })
}
