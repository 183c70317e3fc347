//! Registry references: parsing, telling a reference from a mistyped local path,
//! and which registries are spoken to over plain http.

use std::path::Path;
use std::str::FromStr;

use oci_client::Reference;

use super::error::{OciError, Result};

/// Parses `s` as an OCI reference (`registry/repo[:tag][@digest]`).
///
/// Unlike Docker, a registry host is required: `cilium/foo` could as well be a
/// relative path, and lvh never guesses Docker Hub.
pub fn parse_reference(s: &str) -> Result<Reference> {
    if let Err(reason) = check_shape(s) {
        return Err(OciError::InvalidReference {
            reference: s.to_string(),
            reason,
        });
    }
    Reference::from_str(s).map_err(|e| OciError::InvalidReference {
        reference: s.to_string(),
        reason: e.to_string(),
    })
}

/// Why `s` cannot be a registry reference, if it cannot.
fn check_shape(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.chars().any(|c| c.is_whitespace()) {
        return Err("it contains whitespace".into());
    }
    if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') {
        return Err("it looks like a path".into());
    }
    let Some((host, rest)) = s.split_once('/') else {
        return Err("it has no registry host (write e.g. quay.io/org/repo:tag)".into());
    };
    let host_like = host == "localhost" || host.contains('.') || host.contains(':');
    if !host_like {
        return Err(format!(
            "{host:?} is not a registry host (needs a dot or a port, or be localhost)"
        ));
    }
    if rest.is_empty() {
        return Err("it has no repository after the registry host".into());
    }
    let last = rest.rsplit('/').next().unwrap_or(rest);
    let name = last.split(['@', ':']).next().unwrap_or(last);
    for ext in [".qcow2", ".img", ".raw", ".zst", ".tar"] {
        if name.ends_with(ext) {
            return Err(format!("its last component ends with {ext}, like a file"));
        }
    }
    Ok(())
}

/// True when `s` reads as a registry reference rather than a local path. Pure:
/// looks at the string only. Callers check the file system first.
pub fn looks_like_reference(s: &str) -> bool {
    parse_reference(s).is_ok()
}

/// What an image argument (`lvh run --image X`) means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageArg {
    Local(std::path::PathBuf),
    Remote(String),
}

/// Decides whether `s` is a local file or a reference. An existing path always
/// wins; a missing one is taken as a reference only when it reads as one, so a
/// mistyped path is never silently looked up in a registry.
pub fn classify_image_arg(s: &str) -> Result<ImageArg> {
    let p = Path::new(s);
    if p.exists() {
        return Ok(ImageArg::Local(p.to_path_buf()));
    }
    match check_shape(s).and_then(|()| {
        Reference::from_str(s)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }) {
        Ok(()) => Ok(ImageArg::Remote(s.to_string())),
        Err(reason) => Err(OciError::NotLocalNorReference {
            given: s.to_string(),
            tried: format!("no such file {}", p.display()),
            reason,
        }),
    }
}

/// True for registries spoken to over plain http without `--insecure`.
pub fn is_local_registry(registry: &str) -> bool {
    let host = host_of(registry);
    host == "localhost" || host == "127.0.0.1" || host == "::1" || host.starts_with("127.")
}

/// The host part of `host[:port]` or `[v6]:port`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

/// The reference as `registry/repo:tag` (or `@digest`), for messages.
pub fn display(r: &Reference) -> String {
    r.whole()
}

/// A file-system-safe name for a reference (for the ref index in the cache).
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let cases = [
            (
                "quay.io/lvh-images/kernel-images:6.6-main",
                "quay.io",
                "lvh-images/kernel-images",
                Some("6.6-main"),
            ),
            ("localhost:5000/x/y:z", "localhost:5000", "x/y", Some("z")),
            (
                "127.0.0.1:39999/root-images:main",
                "127.0.0.1:39999",
                "root-images",
                Some("main"),
            ),
            ("ghcr.io/org/repo", "ghcr.io", "org/repo", Some("latest")),
        ];
        for (s, reg, repo, tag) in cases {
            let r = parse_reference(s).unwrap();
            assert_eq!(r.registry(), reg, "{s}");
            assert_eq!(r.repository(), repo, "{s}");
            assert_eq!(r.tag(), tag, "{s}");
        }
        let d =
            "quay.io/a/b@sha256:0123456789012345678901234567890123456789012345678901234567890123";
        assert!(parse_reference(d).unwrap().digest().is_some());
    }

    #[test]
    fn paths_and_bad_refs_are_not_references() {
        for s in [
            "",
            "base.qcow2",
            "_data/images/base.qcow2",
            "./x/y:z",
            "/abs/path",
            "~/img",
            "images/base",
            "cilium/foo:tag",
            "quay.io/x/base.qcow2",
            "quay.io/",
            "quay.io/UPPER:tag",
            "has space/x",
        ] {
            assert!(!looks_like_reference(s), "{s:?} taken for a reference");
        }
        for s in [
            "quay.io/lvh-images/kind:6.6-main",
            "localhost/x",
            "127.0.0.1:5000/a:b",
        ] {
            assert!(looks_like_reference(s), "{s:?}");
        }
    }

    #[test]
    fn image_args_say_what_was_tried() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("img.qcow2");
        std::fs::write(&f, b"").unwrap();
        let fs = f.to_str().unwrap();
        assert_eq!(classify_image_arg(fs).unwrap(), ImageArg::Local(f.clone()));
        let missing = d.path().join("imgg.qcow2");
        let err = classify_image_arg(missing.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no such file") && err.contains("imgg.qcow2"),
            "{err}"
        );
        assert_eq!(
            classify_image_arg("quay.io/a/b:c").unwrap(),
            ImageArg::Remote("quay.io/a/b:c".into())
        );
    }

    #[test]
    fn local_registries_use_http() {
        for (r, want) in [
            ("localhost:5000", true),
            ("127.0.0.1:1234", true),
            ("localhost", true),
            ("[::1]:5000", true),
            ("quay.io", false),
            ("localhost.example.com", false),
        ] {
            assert_eq!(is_local_registry(r), want, "{r}");
        }
    }
}
