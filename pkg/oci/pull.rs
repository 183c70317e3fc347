//! Pulling: resolve a reference to one platform's manifest, stream every layer
//! through digest verification, decompression and safe extraction into a
//! staging directory, and move results into place only when all is verified.
//! Also the content-addressed cache `lvh run --image <ref>` boots from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_client::Reference;

use super::error::{OciError, Result};
use super::extract::{self, Extraction, Want};
use super::limits::{Budget, CONFIG_MAX, MANIFEST_MAX};
use super::manifest::{self, Manifest, Platform};
use super::reference::{display, parse_reference, slug};
use super::retry;
use super::tags::require_kernel_version;
use super::transport::{sha256_digest, Remote, Transport};
use crate::arch::Arch;
use crate::fsutil::{write_atomic, Lock, Partial};
use crate::progress::{self, Outcome, Reporter, Stage};

/// How long a pull waits for another lvh pulling the same thing.
const LOCK_WAIT: Duration = Duration::from_secs(60 * 60);

/// Where and how to pull from.
#[derive(Clone, Debug)]
pub struct PullOptions {
    pub platform: Platform,
    pub transport: Transport,
}

impl PullOptions {
    pub fn for_arch(arch: Arch) -> Self {
        PullOptions {
            platform: Platform::of(arch),
            transport: Transport::default(),
        }
    }
}

/// One platform's image manifest, with its digest.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub manifest: Manifest,
    pub raw: Vec<u8>,
    pub digest: String,
}

/// Fetches the manifest for `remote.reference`, picking `platform` from an index.
pub fn resolve(remote: &Remote, platform: &Platform) -> Result<Resolved> {
    let shown = display(&remote.reference);
    let (raw, digest) = remote.manifest(&remote.reference, manifest::ACCEPTED)?;
    let m = Manifest::parse(&raw, &shown)?;
    if !m.is_index() {
        return Ok(Resolved {
            manifest: m,
            raw,
            digest,
        });
    }
    let entries = m.manifests.clone().unwrap_or_default();
    let entry = manifest::select_platform(&entries, platform, &shown)?;
    let r = remote.reference.clone_with_digest(entry.digest.clone());
    let (raw, digest) = remote.manifest(&r, manifest::ACCEPTED)?;
    if digest != entry.digest {
        return Err(OciError::DigestMismatch {
            what: format!("{platform} manifest of {shown}"),
            expected: entry.digest.clone(),
            actual: digest,
        });
    }
    let m = Manifest::parse(&raw, &shown)?;
    if m.is_index() {
        return Err(OciError::Layout {
            reference: shown,
            message: "an index inside an index is not supported".into(),
        });
    }
    Ok(Resolved {
        manifest: m,
        raw,
        digest,
    })
}

/// Warns when a single-platform image says it is for another architecture
/// than the one asked for (an index would have refused; a plain manifest
/// cannot, and an arm64 image booted as amd64 fails in confusing ways).
pub fn warn_on_foreign_config(
    remote: &Remote,
    r: &Resolved,
    platform: &Platform,
    reporter: &dyn Reporter,
) {
    let Some(cfg) = &r.manifest.config else {
        return;
    };
    if !cfg.media_type.contains("config") {
        return;
    }
    let size = u64::try_from(cfg.size).unwrap_or(u64::MAX);
    let Ok(bytes) = remote.blob_bytes(&cfg.digest, size, CONFIG_MAX) else {
        return;
    };
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        os: String,
    }
    if let Ok(c) = serde_json::from_slice::<Config>(&bytes) {
        let seen = manifest::PlatformJson {
            architecture: c.architecture.clone(),
            os: c.os.clone(),
            variant: None,
        };
        if !c.architecture.is_empty() && !c.os.is_empty() && !platform.matches(&seen) {
            progress::warn(
                reporter,
                format!(
                    "{} is a {seen} image, not {platform}",
                    display(&remote.reference)
                ),
            );
        }
    }
}

/// A pull under way: its reference connected and resolved to one platform's
/// manifest, its progress stage started. Every pull begins this way.
pub struct Begun<'a> {
    /// `pull <reference>`: the stage's and the retries' name.
    pub what: String,
    pub stage: Stage<'a>,
    pub remote: Remote,
    pub resolved: Resolved,
}

/// Connects to `reference`'s registry and resolves its manifest (with
/// retries), warning about a config for another platform.
pub fn begin<'a>(
    reference: &str,
    opts: &PullOptions,
    reporter: &'a dyn Reporter,
) -> Result<Begun<'a>> {
    let r = parse_reference(reference)?;
    let what = format!("pull {}", display(&r));
    let stage = Stage::start(reporter, what.clone());
    let remote = Remote::connect(r, &opts.transport)?;
    let resolved = retry::with_retries(&what, reporter, || resolve(&remote, &opts.platform))?;
    warn_on_foreign_config(&remote, &resolved, &opts.platform, reporter);
    Ok(Begun {
        what,
        stage,
        remote,
        resolved,
    })
}

impl Begun<'_> {
    /// Pulls the layers' `want` into a fresh staging directory beside
    /// `final_path` ([`Partial`]), retrying from an empty one after a
    /// failure; the caller moves what it wants into place.
    pub fn stage_layers(&self, final_path: &Path, want: &Want) -> Result<(Partial, Extraction)> {
        retry::with_retries(&self.what, self.stage.reporter(), || {
            let staging =
                Partial::new(final_path).map_err(OciError::io("cannot prepare", final_path))?;
            std::fs::create_dir(staging.path())
                .map_err(OciError::io("cannot create", staging.path()))?;
            let out = pull_layers(
                &self.remote,
                &self.resolved,
                staging.path(),
                want,
                &self.stage,
            )?;
            Ok((staging, out))
        })
    }
}

fn short(digest: &str) -> &str {
    let h = digest.strip_prefix("sha256:").unwrap_or(digest);
    &h[..h.len().min(12)]
}

/// Streams every layer of `r` into `target`, verifying each blob's digest.
/// Nothing outside `target` is touched; the caller moves results into place.
pub fn pull_layers(
    remote: &Remote,
    r: &Resolved,
    target: &Path,
    want: &Want,
    parent: &Stage<'_>,
) -> Result<Extraction> {
    let layers = r.manifest.layers.clone().unwrap_or_default();
    let mut out = Extraction::default();
    let budget = Budget::new(remote.limits, crate::cancel::CancelToken::global());
    let n = layers.len();
    for (i, layer) in layers.iter().enumerate() {
        let stage = parent.child(format!("layer {}/{n} {}", i + 1, short(&layer.digest)));
        let size = u64::try_from(layer.size).map_err(|_| OciError::Layout {
            reference: display(&remote.reference),
            message: format!("layer {} declares the size {}", layer.digest, layer.size),
        })?;
        let mut reader = remote.blob_reader(&layer.digest, size, Some(&stage))?;
        let res = extract::layer_reader(&layer.media_type, &mut reader).and_then(|dec| {
            extract::extract_layer(dec, target, want, &layer.digest, &mut out, &budget)
        });
        // A cap or Ctrl-C stops here; otherwise the rest of the blob is read
        // (at most its declared size) to verify its digest.
        if let Err(e @ (OciError::UnpackLimit { .. } | OciError::Interrupted)) = res {
            return Err(e);
        }
        match (res, reader.finish()) {
            // The download's own failure (digest, network, cap, stall)
            // explains the extractor's; it is reported (and retried) instead.
            (_, Err(e)) | (Err(e), Ok(_)) => return Err(e),
            (Ok(()), Ok(_)) => {}
        }
        stage.finish(Outcome::Done);
    }
    extract::finish(&mut out, target)?;
    for s in &out.skipped {
        progress::warn(
            parent.reporter(),
            format!("{}: skipped {s}", display(&remote.reference)),
        );
    }
    Ok(out)
}

/// The result of `lvh images pull`.
#[derive(Debug, Clone)]
pub struct PulledImages {
    /// Files written into `<dir>/images`.
    pub files: Vec<PathBuf>,
    pub manifest_digest: String,
}

/// `lvh images pull`: writes `<dir>/images/<name>` (decompressed), and the
/// `.zst` too with `keep_zst`.
pub fn pull_images(
    reference: &str,
    dir: &Path,
    keep_zst: bool,
    opts: &PullOptions,
    reporter: &dyn Reporter,
) -> Result<PulledImages> {
    let pull = begin(reference, opts, reporter)?;
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(OciError::io("cannot create", &images))?;
    let _lock = Lock::acquire(
        &images.join(".oci-pull.lock"),
        &format!("pulling into {}", images.display()),
        LOCK_WAIT,
    )?;
    let (staging, out) =
        pull.stage_layers(&images.join(".oci-pull"), &Want::Images { keep_zst })?;
    if out.written.is_empty() {
        return Err(OciError::Layout {
            reference: reference.to_string(),
            message: "no files under /data/images/ in any layer".into(),
        });
    }
    let mut written = out.written.clone();
    written.sort();
    written.dedup();
    let mut files = Vec::new();
    for name in &written {
        let dst = images.join(name);
        crate::fsutil::remove_any(&dst).map_err(OciError::io("cannot replace", &dst))?;
        std::fs::rename(staging.path().join(name), &dst)
            .map_err(OciError::io("cannot move into place", &dst))?;
        files.push(dst);
    }
    pull.stage.finish(Outcome::Done);
    Ok(PulledImages {
        files,
        manifest_digest: pull.resolved.digest,
    })
}

/// `lvh kernels pull`: writes `<dir>/<tag>/{boot,lib/modules}` from
/// `<repo>:<tag>`'s `/data/kernels/<version>/`.
pub fn pull_kernel(
    repo: &str,
    tag: &str,
    dir: &Path,
    opts: &PullOptions,
    reporter: &dyn Reporter,
) -> Result<PathBuf> {
    let version = require_kernel_version(tag)?.to_string();
    let reference = format!("{repo}:{tag}");
    let pull = begin(&reference, opts, reporter)?;
    std::fs::create_dir_all(dir).map_err(OciError::io("cannot create", dir))?;
    let dst = dir.join(tag);
    let _lock = Lock::acquire(
        &dir.join(format!(".{tag}.lock")),
        &format!("kernel {}", dst.display()),
        LOCK_WAIT,
    )?;
    let (staging, _) = pull.stage_layers(
        &dst,
        &Want::Kernel {
            version: version.clone(),
        },
    )?;
    if !staging.path().join("boot").is_dir() {
        return Err(OciError::Layout {
            reference,
            message: format!("no /data/kernels/{version}/boot/ in any layer"),
        });
    }
    let path = staging
        .commit()
        .map_err(OciError::io("cannot move into place", &dst))?;
    pull.stage.finish(Outcome::Done);
    Ok(path)
}

/// What [`resolve_image`] found.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The decompressed image in the cache (treat as read-only).
    pub path: PathBuf,
    pub manifest_digest: String,
    /// True when nothing was downloaded or decompressed.
    pub cached: bool,
}

/// Options of [`resolve_image`] beyond the reference.
#[derive(Clone, Debug)]
pub struct ResolveOptions {
    pub pull: PullOptions,
    /// Which image to use when the artifact holds several.
    pub image_name: Option<String>,
}

/// Pulls `reference` into the content-addressed cache under `cache_dir`
/// (`<cache>/oci/images/<hash of the layer digests>/`) unless it is there, and
/// returns the decompressed image. Only the manifest is fetched when cached; if
/// the registry is unreachable, the last manifest seen for the reference is used.
pub fn resolve_image(
    reference: &str,
    arch: Arch,
    cache_dir: &Path,
    reporter: &dyn Reporter,
) -> Result<ResolvedImage> {
    let opts = ResolveOptions {
        pull: PullOptions::for_arch(arch),
        image_name: None,
    };
    resolve_image_with(reference, &opts, cache_dir, reporter)
}

/// [`resolve_image`] with every option.
pub fn resolve_image_with(
    reference: &str,
    opts: &ResolveOptions,
    cache_dir: &Path,
    reporter: &dyn Reporter,
) -> Result<ResolvedImage> {
    let r = parse_reference(reference)?;
    let root = image_cache_root(cache_dir)?;
    let stage = Stage::start(reporter, format!("image {}", display(&r)));
    let remote = Remote::connect(r.clone(), &opts.pull.transport)?;
    let ref_file = root.join("refs").join(format!(
        "{}@{}",
        slug(&display(&r)),
        slug(&opts.pull.platform.to_string())
    ));
    let resolved = resolve_or_cached(&remote, &r, &opts.pull.platform, &root, &ref_file, reporter)?;
    let key = layers_key(&resolved);
    let dir = root.join("images").join(&key);
    let _lock = Lock::acquire(
        &root.join("images").join(format!("{key}.lock")),
        &format!("cache entry {}", dir.display()),
        LOCK_WAIT,
    )?;
    let cached = dir.is_dir();
    if !cached {
        warn_on_foreign_config(&remote, &resolved, &opts.pull.platform, reporter);
        fill_cache_entry(&remote, &resolved, &dir, &stage)?;
    }
    record_resolution(&root, &ref_file, &resolved)?;
    let (path, names) = pick_image(&dir, opts.image_name.as_deref(), reference)?;
    if opts.image_name.is_none() && names.len() > 1 {
        warn_first_of_several(reference, &path, &names, reporter);
    }
    stage.finish(if cached {
        Outcome::Cached
    } else {
        Outcome::Done
    });
    Ok(ResolvedImage {
        path,
        manifest_digest: resolved.digest,
        cached,
    })
}

/// `<cache_dir>/oci`, with its `images`, `manifests` and `refs` directories.
fn image_cache_root(cache_dir: &Path) -> Result<PathBuf> {
    let root = cache_dir.join("oci");
    for sub in ["images", "manifests", "refs"] {
        let d = root.join(sub);
        std::fs::create_dir_all(&d).map_err(OciError::io("cannot create", &d))?;
    }
    Ok(root)
}

/// Resolves the reference at the registry; when the registry is unreachable,
/// falls back (with a warning) to the manifest last resolved for it.
fn resolve_or_cached(
    remote: &Remote,
    r: &Reference,
    platform: &Platform,
    root: &Path,
    ref_file: &Path,
    reporter: &dyn Reporter,
) -> Result<Resolved> {
    match resolve(remote, platform) {
        Ok(x) => Ok(x),
        Err(e @ OciError::Unreachable { .. }) => match cached_manifest(root, ref_file, r)? {
            Some(x) => {
                progress::warn(
                    reporter,
                    format!("{e}; using the cached {} of {}", x.digest, display(r)),
                );
                Ok(x)
            }
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// The cache key of an image: the hash of its layer digests, hex.
fn layers_key(resolved: &Resolved) -> String {
    let layers = resolved.manifest.layers.clone().unwrap_or_default();
    let key_input: String = layers.iter().map(|l| format!("{}\n", l.digest)).collect();
    let key = sha256_digest(key_input.as_bytes());
    key.trim_start_matches("sha256:").to_string()
}

/// Pulls the image's layers into the cache entry `dir`, which appears only
/// when complete.
fn fill_cache_entry(
    remote: &Remote,
    resolved: &Resolved,
    dir: &Path,
    stage: &Stage<'_>,
) -> Result<()> {
    let what = format!("pull {}", display(&remote.reference));
    let staging = retry::with_retries(&what, stage.reporter(), || {
        let staging = Partial::new(dir).map_err(OciError::io("cannot prepare", dir))?;
        std::fs::create_dir(staging.path())
            .map_err(OciError::io("cannot create", staging.path()))?;
        pull_layers(
            remote,
            resolved,
            staging.path(),
            &Want::Images { keep_zst: false },
            stage,
        )?;
        Ok(staging)
    })?;
    staging
        .commit()
        .map_err(OciError::io("cannot move into place", dir))?;
    Ok(())
}

/// Keeps the manifest and the reference's digest for offline runs.
fn record_resolution(root: &Path, ref_file: &Path, resolved: &Resolved) -> Result<()> {
    let mpath = root.join("manifests").join(format!(
        "{}.json",
        resolved.digest.trim_start_matches("sha256:")
    ));
    write_atomic(&mpath, &resolved.raw).map_err(OciError::io("cannot write", &mpath))?;
    write_atomic(ref_file, resolved.digest.as_bytes())
        .map_err(OciError::io("cannot write", ref_file))
}

fn warn_first_of_several(reference: &str, path: &Path, names: &[String], reporter: &dyn Reporter) {
    let chosen = path.file_name().unwrap_or_default().to_string_lossy();
    progress::warn(
        reporter,
        format!(
            "{reference} holds {} images ({}); using {chosen}, the first by name \
             (pick another with {reference}#NAME)",
            names.len(),
            names.join(", ")
        ),
    );
}

/// The manifest last resolved for `r`, if the cache has it (verified again).
fn cached_manifest(root: &Path, ref_file: &Path, r: &Reference) -> Result<Option<Resolved>> {
    let Ok(digest) = crate::fsutil::read_input(ref_file, 1 << 10) else {
        return Ok(None);
    };
    let digest = String::from_utf8_lossy(&digest).trim().to_string();
    let mpath = root
        .join("manifests")
        .join(format!("{}.json", digest.trim_start_matches("sha256:")));
    let Ok(raw) = crate::fsutil::read_input(&mpath, MANIFEST_MAX) else {
        return Ok(None);
    };
    if sha256_digest(&raw) != digest {
        return Ok(None);
    }
    let manifest = Manifest::parse(&raw, &display(r))?;
    Ok(Some(Resolved {
        manifest,
        raw,
        digest,
    }))
}

/// The image of the artifact in `dir` to use, and the names of all of them:
/// the one `name` says (with or without its `.qcow2`), else the first by name
/// (as little-vm-helper takes the first it extracts).
fn pick_image(dir: &Path, name: Option<&str>, reference: &str) -> Result<(PathBuf, Vec<String>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(OciError::io("cannot list", dir))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let chosen = match name {
        Some(n) => names
            .iter()
            .find(|x| *x == n || x.strip_suffix(".qcow2") == Some(n)),
        None => names.first(),
    };
    match chosen {
        Some(n) => Ok((dir.join(n), names.clone())),
        None => Err(OciError::Layout {
            reference: reference.to_string(),
            message: match name {
                Some(n) => format!("no image {n:?} in it (it has: {})", names.join(", ")),
                None => "no files under /data/images/".into(),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::reference::split_image_name;

    #[test]
    fn several_images_the_first_by_name_unless_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let r = "quay.io/lvh-images/root-images:main";
        assert!(pick_image(d.path(), None, r)
            .unwrap_err()
            .to_string()
            .contains("no files under /data/images/"));
        for n in [
            "kind.qcow2",
            "base.qcow2",
            "complexity-test.qcow2",
            ".hidden",
        ] {
            std::fs::write(d.path().join(n), b"").unwrap();
        }
        let (p, names) = pick_image(d.path(), None, r).unwrap();
        assert_eq!(p, d.path().join("base.qcow2"));
        assert_eq!(names, ["base.qcow2", "complexity-test.qcow2", "kind.qcow2"]);
        for n in ["kind", "kind.qcow2"] {
            let (p, _) = pick_image(d.path(), Some(n), r).unwrap();
            assert_eq!(p, d.path().join("kind.qcow2"), "{n}");
        }
        let e = pick_image(d.path(), Some("nope"), r)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no image \"nope\"") && e.contains("kind.qcow2"),
            "{e}"
        );
    }

    #[test]
    fn image_names_after_a_hash() {
        for (arg, want) in [
            (
                "quay.io/x/root-images:main",
                ("quay.io/x/root-images:main", None),
            ),
            (
                "quay.io/x/root-images:main#kind.qcow2",
                ("quay.io/x/root-images:main", Some("kind.qcow2")),
            ),
            (
                "localhost:5000/a/b@sha256:00#kind",
                ("localhost:5000/a/b@sha256:00", Some("kind")),
            ),
            ("quay.io/x/y:t#", ("quay.io/x/y:t#", None)),
        ] {
            assert_eq!(split_image_name(arg), want, "{arg}");
        }
    }
}
