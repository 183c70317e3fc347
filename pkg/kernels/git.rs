//! Fetching kernel trees: one shared bare repository `kernels/git` with a remote
//! per kernel and a worktree `kernels/<name>` on branch `lvh-<name>` (git2), or
//! a standalone shallow clone for `?depth=N` URLs (the `git` program, see
//! `fetch_shallow` for why). Fetching again fast-forwards the worktree.
//!
//! Sources on this machine are read with git2 (or their objects hard-linked);
//! sources across the network (`https://`, `git://`, `ssh://`) are fetched
//! by the `git` program into the same shared repository: it brings the
//! user's credentials, proxies, `insteadOf` rules and ssh keys, and lvh
//! itself then carries no TLS or ssh library of its own.

use std::path::Path;

use git2::{Direction, FetchOptions, RemoteCallbacks, Repository};

use super::error::{KernelsError, Result};
use super::fetched::git;
pub use super::fetched::{FetchOutcome, Fetched};
use super::layout::{self, Layout};
use super::shallow::fetch_shallow;
use super::url::KernelUrl;
use crate::progress::{Stage, Unit};

/// Opens the shared bare repository, creating it on first use.
pub(crate) fn open_shared(layout: &Layout) -> Result<Repository> {
    let git_dir = layout.git_dir();
    let repo = if git_dir.join("HEAD").is_file() {
        Repository::open_bare(&git_dir).map_err(KernelsError::git(format!(
            "failed to open the shared repository {}",
            git_dir.display()
        )))?
    } else {
        std::fs::create_dir_all(&git_dir)
            .map_err(|e| KernelsError::io("failed to create", &git_dir, e))?;
        Repository::init_bare(&git_dir).map_err(KernelsError::git(format!(
            "failed to create the shared repository {}",
            git_dir.display()
        )))?
    };
    layout::add_excludes(&git_dir)?;
    Ok(repo)
}

/// Fetches (or updates) kernel `name` from `url`.
pub(crate) fn fetch(
    layout: &Layout,
    name: &str,
    url: &KernelUrl,
    stage: &Stage,
) -> Result<Fetched> {
    if url.depth.is_some() {
        return fetch_shallow(layout, name, url, stage);
    }
    let repo = open_shared(layout)?;
    let gerr = |what: &str| KernelsError::git(format!("{what} for kernel {name:?} ({})", url.repo));
    let mut remote = kernel_remote(&repo, name, url)?;
    let (src_ref, branch) = match &url.local {
        Some(_) => remote_ref(&mut remote, name, url, stage)?,
        None => network_ref(name, url, stage)?,
    };
    let tracking = format!("refs/remotes/{name}/{branch}");
    let refspec = format!("+{src_ref}:{tracking}");

    let linked = match &url.local {
        Some(path) => link_local(&repo, path, &src_ref, &tracking, stage)?,
        None => false,
    };
    if !linked {
        match &url.local {
            None => fetch_network(layout, name, url, &refspec, &src_ref, stage)?,
            Some(_) => fetch_remote(&mut remote, &refspec, &src_ref, stage)
                .map_err(gerr(&format!("failed to fetch {src_ref}")))?,
        }
    }

    let target = repo
        .find_reference(&tracking)
        .and_then(|r| r.peel_to_commit())
        .map_err(gerr(&format!("failed to resolve {tracking}")))?;
    let commit = target.id().to_string();
    let tree = layout.tree(name);
    let marker = layout
        .kernels_dir()
        .join(format!(".{name}.checkout-incomplete"));

    if tree.exists() && !marker.exists() {
        let outcome = update_worktree(&tree, name, target.id())?;
        return Ok(Fetched {
            tree,
            commit,
            branch,
            outcome,
        });
    }

    checkout_worktree(&repo, layout, name, url, &target, &branch, stage)?;
    Ok(Fetched {
        tree,
        commit,
        branch,
        outcome: FetchOutcome::Created,
    })
}

/// The shared repository's remote for the kernel, added or pointed at `url`.
fn kernel_remote<'r>(
    repo: &'r Repository,
    name: &str,
    url: &KernelUrl,
) -> Result<git2::Remote<'r>> {
    let gerr = |what: &str| KernelsError::git(format!("{what} for kernel {name:?} ({})", url.repo));
    Ok(match repo.find_remote(name) {
        Ok(r) if r.url().ok() == Some(url.repo.as_str()) => r,
        Ok(_) => {
            repo.remote_set_url(name, &url.repo)
                .map_err(gerr("failed to set the remote URL"))?;
            repo.find_remote(name)
                .map_err(gerr("failed to find the remote"))?
        }
        Err(_) => repo
            .remote(name, &url.repo)
            .map_err(gerr("failed to add the remote"))?,
    })
}

/// Which ref to follow, as (remote ref, branch name): the given branch (or
/// tag), else the remote's HEAD.
fn remote_ref(
    remote: &mut git2::Remote<'_>,
    name: &str,
    url: &KernelUrl,
    stage: &Stage,
) -> Result<(String, String)> {
    let gerr = |what: &str| KernelsError::git(format!("{what} for kernel {name:?} ({})", url.repo));
    stage.message(format!("connecting to {}", url.repo));
    let conn = remote
        .connect_auth(Direction::Fetch, None, None)
        .map_err(gerr("failed to connect"))?;
    let heads = conn
        .list()
        .map_err(gerr("failed to list the remote's refs"))?;
    pick_ref(
        heads.iter().map(|h| (h.name(), h.symref_target())),
        url.branch.as_deref(),
    )
    .map_err(|m| KernelsError::invalid(format!("kernel {name:?} ({}): {m}", url.repo)))
}

/// [`remote_ref`] for a source across the network, asked with `git ls-remote`.
fn network_ref(name: &str, url: &KernelUrl, stage: &Stage) -> Result<(String, String)> {
    stage.message(format!("connecting to {}", url.repo));
    let mut args = vec!["ls-remote", "--symref", url.repo.as_str(), "HEAD"];
    let wanted = url
        .branch
        .as_ref()
        .map(|b| [format!("refs/heads/{b}"), format!("refs/tags/{b}")]);
    if let Some(w) = &wanted {
        args.extend(w.iter().map(String::as_str));
    }
    let out = git(&args)
        .capture_stdout()
        .run(stage.reporter())
        .map_err(KernelsError::exec(format!(
            "failed to list the refs of {} for kernel {name:?}",
            url.repo
        )))?;
    let listed = out.stdout_str();
    pick_ref(ls_remote_heads(&listed), url.branch.as_deref())
        .map_err(|m| KernelsError::invalid(format!("kernel {name:?} ({}): {m}", url.repo)))
}

/// `git ls-remote --symref` output as `(ref, symref target)` pairs:
/// `ref: refs/heads/main<TAB>HEAD` names HEAD's branch, `<oid><TAB><ref>` a ref.
fn ls_remote_heads(out: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    out.lines().filter_map(|l| {
        let (left, name) = l.split_once('\t')?;
        Some(match left.strip_prefix("ref: ") {
            Some(target) => (name, Some(target)),
            None => (name, None),
        })
    })
}

/// Fetches `refspec` from a source across the network into the shared
/// repository with the `git` program.
fn fetch_network(
    layout: &Layout,
    name: &str,
    url: &KernelUrl,
    refspec: &str,
    src_ref: &str,
    stage: &Stage,
) -> Result<()> {
    stage.message(format!("fetching {src_ref}"));
    let git_dir = layout.git_dir().to_string_lossy().to_string();
    git(&[
        "--git-dir",
        &git_dir,
        "fetch",
        "--progress",
        "--no-tags",
        &url.repo,
        refspec,
    ])
    .stage(stage.id())
    .run(stage.reporter())
    .map(drop)
    .map_err(KernelsError::exec(format!(
        "failed to fetch {src_ref} for kernel {name:?} ({})",
        url.repo
    )))
}

/// A new worktree `kernels/<name>` on branch `lvh-<name>` at `target` (or one
/// whose checkout was interrupted: started over). A marker file says the
/// checkout is incomplete until it is done.
fn checkout_worktree(
    repo: &Repository,
    layout: &Layout,
    name: &str,
    url: &KernelUrl,
    target: &git2::Commit<'_>,
    branch: &str,
    stage: &Stage,
) -> Result<()> {
    let gerr = |what: &str| KernelsError::git(format!("{what} for kernel {name:?} ({})", url.repo));
    let tree = layout.tree(name);
    let marker = layout
        .kernels_dir()
        .join(format!(".{name}.checkout-incomplete"));
    std::fs::write(&marker, b"").map_err(|e| KernelsError::io("failed to write", &marker, e))?;
    crate::fsutil::remove_any(&tree).map_err(|e| KernelsError::io("failed to remove", &tree, e))?;
    crate::fsutil::remove_any(&layout.git_dir().join("worktrees").join(name))
        .map_err(|e| KernelsError::io("failed to remove stale worktree data for", &tree, e))?;
    let local = layout::local_branch(name);
    let br = repo
        .branch(&local, target, true)
        .map_err(gerr(&format!("failed to create branch {local}")))?;
    stage.message(format!("checking out {branch} into {}", tree.display()));
    let mut opts = git2::WorktreeAddOptions::new();
    opts.reference(Some(br.get()));
    repo.worktree(name, &tree, Some(&opts))
        .map_err(gerr(&format!(
            "failed to create the worktree {}",
            tree.display()
        )))?;
    std::fs::remove_file(&marker).map_err(|e| KernelsError::io("failed to remove", &marker, e))
}

fn fetch_remote(
    remote: &mut git2::Remote<'_>,
    refspec: &str,
    src_ref: &str,
    stage: &Stage,
) -> std::result::Result<(), git2::Error> {
    stage.message(format!("fetching {src_ref}"));
    let mut cb = RemoteCallbacks::new();
    let mut last = std::time::Instant::now();
    cb.transfer_progress(|p| {
        if last.elapsed().as_millis() >= 200 || p.received_objects() == p.total_objects() {
            last = std::time::Instant::now();
            stage.progress(
                p.received_objects() as u64,
                Some(p.total_objects() as u64),
                Unit::Items,
            );
            stage.message(format!(
                "{}/{} objects, {} MiB",
                p.received_objects(),
                p.total_objects(),
                p.received_bytes() / (1 << 20)
            ));
        }
        !crate::cancel::CancelToken::global().is_cancelled()
    });
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(cb);
    remote.fetch(&[refspec], Some(&mut fo), None)
}

/// For a source on this machine, git's own trick for local clones: hard-link the
/// source's object files into the shared repository and point the tracking ref at
/// the source's commit. libgit2's local transport would instead build a pack of
/// the whole history (many minutes for a kernel tree). Hard links stay valid when
/// the source later repacks or prunes. Returns false when this cannot be done
/// (another filesystem, a source with alternates): the caller then fetches.
fn link_local(
    repo: &Repository,
    source: &Path,
    src_ref: &str,
    tracking: &str,
    stage: &Stage,
) -> Result<bool> {
    let Ok(src) = Repository::open(source) else {
        return Ok(false);
    };
    let src_objects = src.commondir().join("objects");
    if src_objects.join("info").join("alternates").exists() {
        return Ok(false);
    }
    let Ok(oid) = src.refname_to_id(src_ref) else {
        return Ok(false);
    };
    if repo.refname_to_id(tracking).ok() == Some(oid) {
        return Ok(true);
    }
    stage.message(format!("linking objects from {}", source.display()));
    let dst_objects = repo.path().join("objects");
    match link_tree(&src_objects, &dst_objects) {
        Ok(n) => stage.message(format!("linked {n} object files")),
        // Another filesystem, or the source being repacked right now: fetch instead.
        Err(e)
            if e.raw_os_error() == Some(libc::EXDEV)
                || e.kind() == std::io::ErrorKind::PermissionDenied
                || e.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(false)
        }
        Err(e) => {
            return Err(KernelsError::io(
                "failed to link objects into",
                &dst_objects,
                e,
            ))
        }
    }
    // The object database caches pack lists; look again after adding packs.
    repo.odb()
        .and_then(|odb| odb.refresh())
        .map_err(KernelsError::git("failed to refresh the object database"))?;
    if repo.find_commit(oid).and_then(|c| c.tree()).is_err() {
        return Ok(false);
    }
    repo.reference(tracking, oid, true, "lvh: linked from a local repository")
        .map_err(KernelsError::git(format!("failed to set {tracking}")))?;
    Ok(true)
}

/// Hard-links loose objects (`xx/yyyy...`) and `pack/*` files not present yet.
fn link_tree(src: &Path, dst: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let name = e.file_name();
        let name_s = name.to_string_lossy();
        let is_fanout = name_s.len() == 2 && name_s.chars().all(|c| c.is_ascii_hexdigit());
        if !(is_fanout || name_s == "pack") || !e.file_type()?.is_dir() {
            continue;
        }
        let to_dir = dst.join(&name);
        std::fs::create_dir_all(&to_dir)?;
        // Index files last, so a pack is never visible before its data.
        let mut files: Vec<_> =
            std::fs::read_dir(e.path())?.collect::<std::result::Result<_, _>>()?;
        files.sort_by_key(|f| f.file_name().to_string_lossy().ends_with(".idx"));
        for f in files {
            let to = to_dir.join(f.file_name());
            if f.file_name().to_string_lossy().starts_with("tmp") || to.exists() {
                continue;
            }
            match std::fs::hard_link(f.path(), &to) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(n)
}

/// Picks the remote ref to fetch from the advertised `(name, symref target)` list.
pub(crate) fn pick_ref<'a>(
    heads: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    branch: Option<&str>,
) -> std::result::Result<(String, String), String> {
    let heads: Vec<(&str, Option<&str>)> = heads.collect();
    let has = |r: &str| heads.iter().any(|(n, _)| *n == r);
    match branch {
        Some(b) => {
            for full in [format!("refs/heads/{b}"), format!("refs/tags/{b}")] {
                if has(&full) {
                    return Ok((full, b.to_string()));
                }
            }
            Err(format!("the remote has no branch or tag {b:?}"))
        }
        None => {
            let target = heads
                .iter()
                .find(|(n, _)| *n == "HEAD")
                .and_then(|(_, t)| *t)
                .ok_or("the remote does not say which branch HEAD is; add #branch to the URL")?;
            let b = target.strip_prefix("refs/heads/").unwrap_or(target);
            Ok((target.to_string(), b.to_string()))
        }
    }
}

/// Fast-forwards an existing worktree to `target`, keeping local changes that do
/// not conflict; refuses to touch a tree that diverged or is on another branch.
fn update_worktree(tree: &Path, name: &str, target: git2::Oid) -> Result<FetchOutcome> {
    let gerr = |what: &str| KernelsError::git(format!("{what} in {}", tree.display()));
    let wt = Repository::open(tree).map_err(gerr("failed to open the worktree"))?;
    let local = format!("refs/heads/{}", layout::local_branch(name));
    let head = wt.head().map_err(gerr("failed to read HEAD"))?;
    if head.name().ok() != Some(local.as_str()) {
        return Err(KernelsError::invalid(format!(
            "{} is on {} instead of {local}; not updating it (switch back or remove the kernel)",
            tree.display(),
            head.name().unwrap_or("a detached HEAD")
        )));
    }
    let current = head
        .peel_to_commit()
        .map_err(gerr("failed to read HEAD"))?
        .id();
    if current == target {
        return Ok(FetchOutcome::UpToDate);
    }
    if !wt
        .graph_descendant_of(target, current)
        .map_err(gerr("failed to compare commits"))?
    {
        if wt.graph_descendant_of(current, target).unwrap_or(false) {
            return Ok(FetchOutcome::UpToDate);
        }
        return Err(KernelsError::invalid(format!(
            "{local} in {} has diverged from the remote ({current} vs {target}); rebase or reset it yourself",
            tree.display()
        )));
    }
    let obj = wt
        .find_object(target, None)
        .map_err(gerr("failed to find the new commit"))?;
    let mut co = git2::build::CheckoutBuilder::new();
    co.safe();
    wt.checkout_tree(&obj, Some(&mut co)).map_err(gerr(
        "failed to check out the new commit (local changes in the way?)",
    ))?;
    wt.reference(
        &local,
        target,
        true,
        "lvh: fast-forward to the fetched commit",
    )
    .map_err(gerr(&format!("failed to move {local}")))?;
    Ok(FetchOutcome::Updated)
}

/// Removes kernel `name`'s tree, its worktree record, branch and remote; the
/// shared repository (and its objects) stays.
pub(crate) fn remove(layout: &Layout, name: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let tree = layout.tree(name);
    if tree.exists() {
        crate::fsutil::remove_any(&tree)
            .map_err(|e| KernelsError::io("failed to remove", &tree, e))?;
        removed.push(format!("tree {}", tree.display()));
    }
    if !layout.git_dir().join("HEAD").is_file() {
        return Ok(removed);
    }
    let repo = open_shared(layout)?;
    if let Ok(wt) = repo.find_worktree(name) {
        let mut po = git2::WorktreePruneOptions::new();
        po.valid(true).working_tree(true);
        wt.prune(Some(&mut po)).map_err(KernelsError::git(format!(
            "failed to prune worktree {name}"
        )))?;
        removed.push(format!("worktree {name}"));
    }
    let local = layout::local_branch(name);
    if let Ok(mut b) = repo.find_branch(&local, git2::BranchType::Local) {
        b.delete().map_err(KernelsError::git(format!(
            "failed to delete branch {local}"
        )))?;
        removed.push(format!("branch {local}"));
    }
    if repo.find_remote(name).is_ok() {
        repo.remote_delete(name)
            .map_err(KernelsError::git(format!("failed to delete remote {name}")))?;
        removed.push(format!("remote {name}"));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_remote_head_or_the_named_ref() {
        let heads = [
            ("HEAD", Some("refs/heads/main")),
            ("refs/heads/main", None),
            ("refs/heads/dev", None),
            ("refs/tags/v1", None),
        ];
        let pick = |b: Option<&str>| pick_ref(heads.iter().copied(), b);
        assert_eq!(
            pick(None).unwrap(),
            ("refs/heads/main".into(), "main".into())
        );
        assert_eq!(
            pick(Some("dev")).unwrap(),
            ("refs/heads/dev".into(), "dev".into())
        );
        assert_eq!(
            pick(Some("v1")).unwrap(),
            ("refs/tags/v1".into(), "v1".into())
        );
        assert!(pick(Some("nope"))
            .unwrap_err()
            .contains("no branch or tag \"nope\""));
        let no_head = [("refs/heads/x", None)];
        assert!(pick_ref(no_head.iter().copied(), None).is_err());
    }

    #[test]
    fn ls_remote_output_feeds_the_same_pick() {
        let out = "ref: refs/heads/master\tHEAD\n\
                   1111111111111111111111111111111111111111\tHEAD\n\
                   2222222222222222222222222222222222222222\trefs/heads/bpf-next\n\
                   3333333333333333333333333333333333333333\trefs/tags/v6.12\n\
                   garbage without a tab\n";
        let pick = |b: Option<&str>| pick_ref(ls_remote_heads(out), b);
        assert_eq!(
            pick(None).unwrap(),
            ("refs/heads/master".into(), "master".into())
        );
        assert_eq!(
            pick(Some("bpf-next")).unwrap(),
            ("refs/heads/bpf-next".into(), "bpf-next".into())
        );
        assert_eq!(
            pick(Some("v6.12")).unwrap(),
            ("refs/tags/v6.12".into(), "v6.12".into())
        );
        assert!(pick(Some("nope")).is_err());
        // A server that does not name HEAD's branch (dumb HTTP).
        let no_symref = "1111111111111111111111111111111111111111\tHEAD\n";
        assert!(pick_ref(ls_remote_heads(no_symref), None).is_err());
    }
}
