//! Registry references: parsing, telling a reference from a mistyped local path,
//! and which registries are spoken to over plain http.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_client::Reference;

use super::error::{OciError, Result};

/// `REF#NAME`: the reference and the image to use when it holds several.
pub fn split_image_name(arg: &str) -> (&str, Option<&str>) {
    match arg.rsplit_once('#') {
        Some((r, n)) if !n.is_empty() && !n.contains('/') => (r, Some(n)),
        _ => (arg, None),
    }
}

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

/// Where `lvh run --image` points: a local file, or an OCI reference to pull.
/// The one place that tells the two apart; the runner only ever sees a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A local file (it exists, or it does not and is reported as missing).
    Path(PathBuf),
    /// A registry reference; `name` is the `#NAME` suffix that picks one image
    /// of an artifact holding several (`REF#kind.qcow2`).
    Reference {
        reference: String,
        name: Option<String>,
    },
}

impl ImageSource {
    /// Parses an image argument. `exists` probes the file system (passed in so
    /// this stays pure). An existing path always wins; a missing one is taken as
    /// a reference only when it parses as one (registry host required), so a
    /// mistyped path is never looked up in a registry but reported, with the
    /// reason it is not a reference either.
    pub fn parse(s: &str, exists: impl Fn(&Path) -> bool) -> Result<ImageSource> {
        let p = Path::new(s);
        if exists(p) {
            return Ok(ImageSource::Path(p.to_path_buf()));
        }
        let (reference, name) = split_image_name(s);
        match parse_reference(reference) {
            Ok(_) => Ok(ImageSource::Reference {
                reference: reference.to_string(),
                name: name.map(str::to_string),
            }),
            Err(OciError::InvalidReference { reason, .. }) => Err(OciError::NotLocalNorReference {
                given: s.to_string(),
                reason,
            }),
            Err(e) => Err(e),
        }
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
            assert!(parse_reference(s).is_err(), "{s:?} taken for a reference");
        }
        for s in [
            "quay.io/lvh-images/kind:6.6-main",
            "localhost/x",
            "127.0.0.1:5000/a:b",
        ] {
            assert!(parse_reference(s).is_ok(), "{s:?}");
        }
    }

    fn reference(r: &str, name: Option<&str>) -> ImageSource {
        ImageSource::Reference {
            reference: r.into(),
            name: name.map(String::from),
        }
    }

    #[test]
    fn image_sources_parse() {
        let digest =
            "x.io/y@sha256:0123456789012345678901234567890123456789012345678901234567890123";
        // (argument, exists on disk, what it is; None = refused, naming the path)
        let cases: Vec<(&str, bool, Option<ImageSource>)> = vec![
            ("root.img", true, Some(ImageSource::Path("root.img".into()))),
            ("root.img", false, None),
            ("./x", true, Some(ImageSource::Path("./x".into()))),
            ("./x", false, None),
            ("./x:y", false, None),
            (
                "/abs/root.img",
                true,
                Some(ImageSource::Path("/abs/root.img".into())),
            ),
            ("/abs/root.img", false, None),
            ("_data/images/base.qcow2", false, None),
            (
                "quay.io/a/b:t",
                false,
                Some(reference("quay.io/a/b:t", None)),
            ),
            (
                "localhost:5000/x:y",
                false,
                Some(reference("localhost:5000/x:y", None)),
            ),
            (digest, false, Some(reference(digest, None))),
            (
                "quay.io/lvh-images/root-images:main#kind.qcow2",
                false,
                Some(reference(
                    "quay.io/lvh-images/root-images:main",
                    Some("kind.qcow2"),
                )),
            ),
            ("cilium/x", false, None),
            ("cilium/x:tag", false, None),
            ("quay.io/a/base.qcow2", false, None),
            ("quay.io/a/base.qcow2:t", false, None),
            // An existing path always wins, even one that reads as a reference.
            (
                "quay.io/a/b:t",
                true,
                Some(ImageSource::Path("quay.io/a/b:t".into())),
            ),
        ];
        for (arg, exists, want) in cases {
            let got = ImageSource::parse(arg, |_| exists);
            match want {
                Some(w) => assert_eq!(got.unwrap(), w, "{arg}"),
                None => {
                    let e = got.unwrap_err();
                    let m = e.to_string();
                    assert!(
                        matches!(e, OciError::NotLocalNorReference { .. }),
                        "{arg}: {m}"
                    );
                    assert!(
                        m.contains(&format!("no such image file {arg} (--image)")),
                        "{m}"
                    );
                }
            }
        }
    }

    #[test]
    fn image_sources_probe_the_file_system() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("img.qcow2");
        std::fs::write(&f, b"").unwrap();
        let fs = f.to_str().unwrap();
        let exists = |p: &Path| p.exists();
        assert_eq!(
            ImageSource::parse(fs, exists).unwrap(),
            ImageSource::Path(f.clone())
        );
        let missing = d.path().join("imgg.qcow2");
        let err = ImageSource::parse(missing.to_str().unwrap(), exists)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no such image file") && err.contains("imgg.qcow2"),
            "{err}"
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
