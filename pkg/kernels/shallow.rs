//! `?depth=N` kernels: a standalone shallow clone in `kernels/<name>`, made and
//! updated by the `git` program (libgit2's local transport has no shallow
//! fetch, and git itself moves a shallow boundary robustly).

use std::path::PathBuf;

use super::error::{KernelsError, Result};
use super::fetched::{git, FetchOutcome, Fetched};
use super::layout::{self, Layout};
use super::url::KernelUrl;
use crate::progress::Stage;

/// `?depth=N`: a standalone shallow clone in `kernels/<name>`. This goes through
/// the `git` program because libgit2's local transport (file:// URLs and paths,
/// the kernel developer's own tree) has no shallow fetch, and because git itself
/// handles re-fetching a shallow history (new shallow boundary) robustly.
pub(super) fn fetch_shallow(
    layout: &Layout,
    name: &str,
    url: &KernelUrl,
    stage: &Stage,
) -> Result<Fetched> {
    let tree = layout.tree(name);
    if !tree.join(".git").exists() {
        return clone_shallow(layout, name, url, stage);
    }
    refetch_shallow(tree, name, url, stage)
}

/// The first shallow fetch: `git clone --depth` into a partial directory that
/// becomes `kernels/<name>` when complete.
fn clone_shallow(layout: &Layout, name: &str, url: &KernelUrl, stage: &Stage) -> Result<Fetched> {
    let depth = url.depth.unwrap_or(1).to_string();
    let src = url.shallow_source();
    let tree = layout.tree(name);
    let local = layout::local_branch(name);
    let r = stage.reporter();
    std::fs::create_dir_all(layout.kernels_dir())
        .map_err(|e| KernelsError::io("failed to create", layout.kernels_dir(), e))?;
    let partial = crate::fsutil::Partial::new(&tree)
        .map_err(|e| KernelsError::io("failed to prepare", &tree, e))?;
    let p = partial.path().to_string_lossy().to_string();
    let mut args = vec![
        "clone",
        "--progress",
        "--no-tags",
        "--single-branch",
        "--depth",
        &depth,
    ];
    if let Some(b) = &url.branch {
        args.extend(["--branch", b]);
    }
    args.extend([src.as_str(), p.as_str()]);
    git(&args)
        .stage(stage.id())
        .run(r)
        .map_err(KernelsError::exec(format!(
            "failed to clone {src} for kernel {name:?}"
        )))?;
    git(&["-C", &p, "checkout", "-q", "-B", &local])
        .run(r)
        .map_err(KernelsError::exec(format!(
            "failed to create branch {local}"
        )))?;
    layout::add_excludes(&partial.path().join(".git"))?;
    partial
        .commit()
        .map_err(|e| KernelsError::io("failed to move the clone to", &tree, e))?;
    let commit = rev_parse(&tree.to_string_lossy())?;
    let branch = url.branch.clone().unwrap_or_else(|| "HEAD".into());
    Ok(Fetched {
        tree,
        commit,
        branch,
        outcome: FetchOutcome::Created,
    })
}

/// A later shallow fetch: fetch the branch (or HEAD) at the same depth and
/// move the tree to it.
fn refetch_shallow(tree: PathBuf, name: &str, url: &KernelUrl, stage: &Stage) -> Result<Fetched> {
    let depth = url.depth.unwrap_or(1).to_string();
    let src = url.shallow_source();
    let r = stage.reporter();
    let tree_s = tree.to_string_lossy().to_string();
    let before = rev_parse(&tree_s)?;
    git(&["-C", &tree_s, "remote", "set-url", "origin", &src])
        .run(r)
        .map_err(KernelsError::exec("failed to set the origin URL"))?;
    let what = url.branch.clone().unwrap_or_else(|| "HEAD".into());
    git(&[
        "-C",
        &tree_s,
        "fetch",
        "--progress",
        "--no-tags",
        "--depth",
        &depth,
        "origin",
        &what,
    ])
    .stage(stage.id())
    .run(r)
    .map_err(KernelsError::exec(format!(
        "failed to fetch {what} for kernel {name:?}"
    )))?;
    // `reset --keep` moves the branch and the files but refuses if a local change
    // would be lost, unlike little-vm-helper which left shallow trees stale.
    git(&["-C", &tree_s, "reset", "-q", "--keep", "FETCH_HEAD"])
        .run(r)
        .map_err(KernelsError::exec(format!(
            "failed to update {}",
            tree.display()
        )))?;
    let commit = rev_parse(&tree_s)?;
    let outcome = if commit == before {
        FetchOutcome::UpToDate
    } else {
        FetchOutcome::Updated
    };
    Ok(Fetched {
        tree,
        commit,
        branch: what,
        outcome,
    })
}

fn rev_parse(tree: &str) -> Result<String> {
    let out = git(&["-C", tree, "rev-parse", "HEAD"])
        .capture_stdout()
        .run(&crate::progress::NullReporter)
        .map_err(KernelsError::exec(format!("failed to read HEAD of {tree}")))?;
    Ok(out.stdout_str())
}
