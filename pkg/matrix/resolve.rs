//! Turning the matrix's kernels and images into local paths before any VM
//! starts: a path as is, a `kernels.json` name as the built image in its tree
//! under `--dir`, a kernel reference pulled as `lvh kernels pull` pulls it (to
//! `<dir>/<tag>`), an image reference pulled into lvh's cache and placed in
//! `<dir>/images` as `lvh run --image REF` does. Each is resolved once however
//! many combinations use it, and only if some selected combination does.

use std::path::{Path, PathBuf};

use super::config::{ImageSource, KernelSource, Matrix};
use crate::arch::Arch;
use crate::error::InvalidInput;
use crate::oci::{self, OciError};
use crate::progress::Reporter;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("failed to pull {what} {reference}")]
    Pull {
        what: &'static str,
        reference: String,
        #[source]
        source: Box<OciError>,
    },
}

/// The built kernel image of a `kernels.json` kernel: `<dir>/kernels/<name>/`
/// and the arch's boot image path, as `lvh kernels build` leaves it.
pub fn built_kernel(dir: &Path, name: &str, arch: Arch) -> PathBuf {
    dir.join("kernels")
        .join(name)
        .join(arch.kernel_image_path())
}

/// `repo:tag` split at the tag's colon (a registry port's colon comes before a '/').
pub fn split_kernel_ref(r: &str) -> Option<(&str, &str)> {
    let slash = r.rfind('/').map_or(0, |i| i + 1);
    let colon = r[slash..].rfind(':')? + slash;
    let (repo, tag) = (&r[..colon], &r[colon + 1..]);
    (!repo.is_empty() && !tag.is_empty()).then_some((repo, tag))
}

/// The one `boot/vmlinuz-*` of a pulled kernel tree.
pub fn vmlinuz_in(tree: &Path) -> Result<PathBuf, String> {
    let boot = tree.join("boot");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
        .map_err(|e| format!("cannot read {}: {e}", boot.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        .map(|e| e.path())
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!("no vmlinuz-* in {}", boot.display())),
        _ => Err(format!("more than one vmlinuz-* in {}", boot.display())),
    }
}

/// Local paths for the kernels and images (by index); `None` for those no
/// selected combination uses.
pub struct Resolved {
    pub kernels: Vec<Option<PathBuf>>,
    pub images: Vec<Option<PathBuf>>,
}

fn invalid(m: &Matrix, field: String, value: &str, reason: String) -> ResolveError {
    InvalidInput {
        file: Some(m.file.clone()),
        field,
        value: Some(value.to_string()),
        reason,
    }
    .into()
}

/// Resolves what `used_kernels` / `used_images` (flags by index) need.
pub fn resolve(
    m: &Matrix,
    used_kernels: &[bool],
    used_images: &[bool],
    dir: &Path,
    arch: Arch,
    reporter: &dyn Reporter,
) -> Result<Resolved, ResolveError> {
    let mut kernels = Vec::new();
    for (i, k) in m.kernels.iter().enumerate() {
        if !used_kernels[i] {
            kernels.push(None);
            continue;
        }
        let p = match &k.source {
            KernelSource::Path(p) => p.clone(),
            KernelSource::Built(name) => {
                let p = built_kernel(dir, name, arch);
                if !p.is_file() {
                    return Err(invalid(
                        m,
                        format!("kernels[{i}].kernel"),
                        name,
                        format!(
                            "no built kernel at {} (build it with `lvh kernels --dir {} build {name}`, or pass the --dir that holds it)",
                            p.display(),
                            dir.display()
                        ),
                    ));
                }
                p
            }
            KernelSource::Pull(r) => {
                let (repo, tag) = split_kernel_ref(r).ok_or_else(|| {
                    invalid(
                        m,
                        format!("kernels[{i}].pull"),
                        r,
                        "expected REPO:TAG".into(),
                    )
                })?;
                let opts = oci::PullOptions::for_arch(arch);
                let tree = oci::pull_kernel(repo, tag, dir, &opts, reporter).map_err(|source| {
                    ResolveError::Pull {
                        what: "kernel",
                        reference: r.clone(),
                        source: Box::new(source),
                    }
                })?;
                vmlinuz_in(&tree).map_err(|e| invalid(m, format!("kernels[{i}].pull"), r, e))?
            }
        };
        kernels.push(Some(p));
    }
    let mut images = Vec::new();
    for (i, im) in m.images.iter().enumerate() {
        if !used_images[i] {
            images.push(None);
            continue;
        }
        let p = match &im.source {
            ImageSource::Path(p) => p.clone(),
            ImageSource::Pull(r) => {
                pull_image(r, dir, arch, reporter).map_err(|source| ResolveError::Pull {
                    what: "image",
                    reference: r.clone(),
                    source: Box::new(source),
                })?
            }
        };
        images.push(Some(p));
    }
    Ok(Resolved { kernels, images })
}

/// As `lvh run --image REF` does: into the cache, placed in `<dir>/images`.
fn pull_image(
    r: &str,
    dir: &Path,
    arch: Arch,
    reporter: &dyn Reporter,
) -> Result<PathBuf, OciError> {
    let (reference, name) = oci::split_image_name(r);
    let cache = crate::fsutil::cache_dir();
    let ropts = oci::ResolveOptions {
        pull: oci::PullOptions::for_arch(arch),
        image_name: name.map(str::to_string),
    };
    let resolved = oci::resolve_image_with(reference, &ropts, &cache, reporter)?;
    let (path, _) = oci::place::place_pulled(
        &resolved.path,
        &cache.join("oci").join("images"),
        &dir.join("images"),
        false,
        reporter,
    )?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_references_split_at_the_tag() {
        let cases = [
            (
                "quay.io/lvh-images/kernel-images:6.6-main",
                Some(("quay.io/lvh-images/kernel-images", "6.6-main")),
            ),
            (
                "127.0.0.1:5000/k:bpf-next-20240404.012646",
                Some(("127.0.0.1:5000/k", "bpf-next-20240404.012646")),
            ),
            ("127.0.0.1:5000/k", None),
            ("k:", None),
        ];
        for (r, want) in cases {
            assert_eq!(split_kernel_ref(r), want, "{r}");
        }
    }

    #[test]
    fn built_kernels_live_in_their_tree() {
        assert_eq!(
            built_kernel(Path::new("/d"), "bpf-next", Arch::Amd64),
            Path::new("/d/kernels/bpf-next/arch/x86/boot/bzImage")
        );
    }

    #[test]
    fn a_pulled_tree_has_one_vmlinuz() {
        let d = tempfile::tempdir().unwrap();
        assert!(vmlinuz_in(d.path()).unwrap_err().contains("cannot read"));
        std::fs::create_dir(d.path().join("boot")).unwrap();
        assert!(vmlinuz_in(d.path()).unwrap_err().contains("no vmlinuz"));
        std::fs::write(d.path().join("boot/vmlinuz-6.6.1"), b"").unwrap();
        std::fs::write(d.path().join("boot/config-6.6.1"), b"").unwrap();
        assert_eq!(
            vmlinuz_in(d.path()).unwrap(),
            d.path().join("boot/vmlinuz-6.6.1")
        );
        std::fs::write(d.path().join("boot/vmlinuz-6.6.2"), b"").unwrap();
        assert!(vmlinuz_in(d.path()).unwrap_err().contains("more than one"));
    }
}
