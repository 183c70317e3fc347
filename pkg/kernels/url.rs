//! Kernel source URLs as `kernels.json` stores them: `git://`, `http(s)://`,
//! `ssh://`, `file://` or a plain local path, with `#branch` picking a branch
//! and `?depth=N` asking for a standalone shallow clone.

use std::path::{Path, PathBuf};

/// A parsed kernel URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelUrl {
    /// What git is given to fetch from (URL without query and fragment, or a path).
    pub repo: String,
    /// The branch to follow; `None` means the remote's HEAD.
    pub branch: Option<String>,
    /// `Some(n)`: a standalone shallow clone of depth n instead of a worktree.
    pub depth: Option<u32>,
    /// Set when the source is on this machine (`file://` or a path).
    pub local: Option<PathBuf>,
}

const SCHEMES: &[&str] = &["git", "http", "https", "ssh", "file"];

/// Parses a kernel URL. Paths are kept as given (see [`KernelUrl::local`]).
pub fn parse(url: &str) -> Result<KernelUrl, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("empty URL".into());
    }
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let branch = match fragment {
        None => None,
        Some("") => return Err(format!("{url:?}: empty branch after '#'")),
        Some(b) => {
            check_branch(b).map_err(|e| format!("{url:?}: {e}"))?;
            Some(b.to_string())
        }
    };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let mut depth = None;
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("depth", v)) => {
                    let d: u32 = v.parse().map_err(|_| {
                        format!("{url:?}: invalid depth {v:?} (expected a positive integer)")
                    })?;
                    if d == 0 {
                        return Err(format!(
                            "{url:?}: invalid depth \"0\" (expected a positive integer)"
                        ));
                    }
                    depth = Some(d);
                }
                _ => {
                    return Err(format!(
                        "{url:?}: unknown query parameter {pair:?} (only depth=N is supported)"
                    ))
                }
            }
        }
    }
    let (repo, local) = match base.split_once("://") {
        Some((scheme, tail)) => {
            let scheme_lc = scheme.to_ascii_lowercase();
            if !SCHEMES.contains(&scheme_lc.as_str()) {
                return Err(format!(
                    "{url:?}: unsupported scheme {scheme:?} (supported: git, http, https, ssh, file, or a local path)"
                ));
            }
            if scheme_lc == "file" {
                if !tail.starts_with('/') {
                    return Err(format!("{url:?}: a file:// URL needs an absolute path"));
                }
                (base.to_string(), Some(PathBuf::from(tail)))
            } else {
                if tail.is_empty() || tail.starts_with('/') {
                    return Err(format!("{url:?}: missing host"));
                }
                (base.to_string(), None)
            }
        }
        None => {
            if base.contains(':') && !base.starts_with('/') && !base.starts_with('.') {
                return Err(format!(
                    "{url:?}: scp-style URLs are not supported; use ssh://host/path"
                ));
            }
            (base.to_string(), Some(PathBuf::from(base)))
        }
    };
    Ok(KernelUrl {
        repo,
        branch,
        depth,
        local,
    })
}

fn check_branch(b: &str) -> Result<(), String> {
    let bad = b.starts_with('-')
        || b.starts_with('/')
        || b.ends_with('/')
        || b.ends_with(".lock")
        || b.contains("..")
        || b.contains("//")
        || b.chars()
            .any(|c| c.is_whitespace() || "~^:?*[\\".contains(c) || c.is_control());
    if bad {
        return Err(format!("{b:?} is not a valid branch name"));
    }
    Ok(())
}

impl KernelUrl {
    /// For a local source given as a relative path: the URL rewritten with the
    /// absolute path, so fetching later works from any directory.
    pub fn absolutize(url: &str, cwd: &Path) -> Result<String, String> {
        let parsed = parse(url)?;
        match &parsed.local {
            Some(p) if !url.contains("://") && p.is_relative() => {
                let abs = cwd.join(p);
                let abs = abs.canonicalize().unwrap_or(abs);
                let tail = &url.trim()[p.as_os_str().len()..];
                Ok(format!("{}{tail}", abs.display()))
            }
            _ => Ok(url.trim().to_string()),
        }
    }

    /// The URL git is given for a shallow clone: local paths as `file://`, since
    /// git ignores `--depth` for plain-path clones.
    pub fn shallow_source(&self) -> String {
        match &self.local {
            Some(p) if !self.repo.contains("://") => format!("file://{}", p.display()),
            _ => self.repo.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> KernelUrl {
        parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// url, repo, branch, depth, local
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<u32>, bool);

    #[test]
    fn parses_schemes_branches_and_depth() {
        let cases: &[Case] = &[
            (
                "git://git.kernel.org/pub/scm/linux/kernel/git/bpf/bpf-next.git",
                "git://git.kernel.org/pub/scm/linux/kernel/git/bpf/bpf-next.git",
                None,
                None,
                false,
            ),
            (
                "https://github.com/torvalds/linux.git#v6.6",
                "https://github.com/torvalds/linux.git",
                Some("v6.6"),
                None,
                false,
            ),
            (
                "https://host/linux.git?depth=1#linux-6.1.y",
                "https://host/linux.git",
                Some("linux-6.1.y"),
                Some(1),
                false,
            ),
            (
                "file:///src/linux#main",
                "file:///src/linux",
                Some("main"),
                None,
                true,
            ),
            ("/src/linux", "/src/linux", None, None, true),
            ("./linux?depth=3", "./linux", None, Some(3), true),
            (
                "ssh://git@host/linux",
                "ssh://git@host/linux",
                None,
                None,
                false,
            ),
        ];
        for (url, repo, branch, depth, local) in cases {
            let u = ok(url);
            assert_eq!(u.repo, *repo, "{url}");
            assert_eq!(u.branch.as_deref(), *branch, "{url}");
            assert_eq!(u.depth, *depth, "{url}");
            assert_eq!(u.local.is_some(), *local, "{url}");
        }
        assert_eq!(
            ok("file:///src/linux").local.unwrap(),
            PathBuf::from("/src/linux")
        );
    }

    #[test]
    fn rejects_bad_urls() {
        let cases: &[(&str, &str)] = &[
            ("", "empty URL"),
            ("ftp://host/linux", "unsupported scheme \"ftp\""),
            ("https://host/l?depth=x", "invalid depth \"x\""),
            ("https://host/l?depth=0", "invalid depth \"0\""),
            ("https://host/l?depth=-1", "invalid depth \"-1\""),
            ("https://host/l?foo=1", "unknown query parameter \"foo=1\""),
            ("https://host/l#", "empty branch"),
            ("https://host/l#a..b", "not a valid branch name"),
            ("https:///l", "missing host"),
            ("file://rel/path", "absolute path"),
            ("git@github.com:torvalds/linux", "scp-style"),
        ];
        for (url, want) in cases {
            let err = parse(url).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn relative_paths_become_absolute() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("linux")).unwrap();
        let abs = KernelUrl::absolutize("linux?depth=2#b", d.path()).unwrap();
        let want = d.path().canonicalize().unwrap().join("linux");
        assert_eq!(abs, format!("{}?depth=2#b", want.display()));
        assert_eq!(
            KernelUrl::absolutize("https://h/x#b", d.path()).unwrap(),
            "https://h/x#b"
        );
    }

    #[test]
    fn shallow_source_uses_file_urls_for_paths() {
        assert_eq!(
            ok("/src/linux?depth=1").shallow_source(),
            "file:///src/linux"
        );
        assert_eq!(ok("https://h/x?depth=1").shallow_source(), "https://h/x");
    }
}
