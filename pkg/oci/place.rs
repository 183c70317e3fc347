//! Putting an image `lvh run` pulled where little-vm-helper leaves it,
//! `<dir>/images/<name>`, backed by the content-addressed cache: a hard link
//! (or, across filesystems, a symbolic link), never a second copy of the
//! bytes. A run that writes to the image (`--persist`) gets a copy of its own
//! instead (a reflink where the filesystem has them), so the cache stays intact.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::{OciError, Result};
use crate::exec::Cmd;
use crate::progress::{self, Reporter};

/// How the image came to be at its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// It already was (the same file as the cache's).
    Already,
    HardLink,
    SymLink,
    /// A writable copy (`--persist`).
    Copy,
    /// A file of the same name that lvh did not put there is kept; the
    /// cache's file is used instead.
    Kept,
}

/// What to do about an existing `dst` (a pure decision, for tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    None,
    /// The cache's own file (same inode), or a symlink to it.
    Same,
    /// A link into lvh's cache from an earlier pull: replace it.
    OurLink,
    /// Anything else: the user's file.
    Foreign,
}

/// Places `cached` (a file in the cache under `cache_images`) as
/// `images_dir/<its name>`, and returns the path to run and how it got there.
pub fn place_pulled(
    cached: &Path,
    cache_images: &Path,
    images_dir: &Path,
    writable: bool,
    reporter: &dyn Reporter,
) -> Result<(PathBuf, Placed)> {
    let name = cached.file_name().expect("a cached image has a name");
    let dst = images_dir.join(name);
    std::fs::create_dir_all(images_dir).map_err(OciError::io("cannot create", images_dir))?;
    match existing(cached, cache_images, &dst) {
        Existing::Foreign => {
            progress::warn(
                reporter,
                format!(
                    "{} exists and is not lvh's pull of it; leaving it alone and running {}",
                    dst.display(),
                    cached.display()
                ),
            );
            return Ok((cached.to_owned(), Placed::Kept));
        }
        Existing::Same if !writable => return Ok((dst, Placed::Already)),
        _ => {}
    }
    let tmp = images_dir.join(format!(
        ".{}.lvh-pull-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let how = if writable {
        Cmd::new("cp")
            .args(["--reflink=auto", "--sparse=always"])
            .arg(cached)
            .arg(&tmp)
            .timeout(std::time::Duration::from_secs(60 * 60))
            .run(reporter)
            .map_err(|e| OciError::invalid(format!("cannot copy {}: {e}", cached.display())))?;
        Placed::Copy
    } else {
        match std::fs::hard_link(cached, &tmp) {
            Ok(()) => Placed::HardLink,
            Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
                std::os::unix::fs::symlink(cached, &tmp)
                    .map_err(OciError::io("cannot create", &tmp))?;
                Placed::SymLink
            }
            Err(e) => return Err(OciError::io("cannot create", &tmp)(e)),
        }
    };
    if let Err(e) = std::fs::rename(&tmp, &dst) {
        let _ = std::fs::remove_file(&tmp);
        return Err(OciError::io("cannot move into place", &dst)(e));
    }
    Ok((dst, how))
}

/// Classifies what is at `dst` now.
pub fn existing(cached: &Path, cache_images: &Path, dst: &Path) -> Existing {
    let Ok(lmd) = std::fs::symlink_metadata(dst) else {
        return Existing::None;
    };
    let same_file = |a: &std::fs::Metadata, b: &Path| {
        std::fs::metadata(b).is_ok_and(|m| m.dev() == a.dev() && m.ino() == a.ino())
    };
    if lmd.file_type().is_symlink() {
        return match std::fs::read_link(dst) {
            Ok(t) if t == cached => Existing::Same,
            Ok(t) if t.starts_with(cache_images) => Existing::OurLink,
            _ => Existing::Foreign,
        };
    }
    if same_file(&lmd, cached) {
        return Existing::Same;
    }
    // An earlier pull of another version: the same inode as a file in the cache.
    if lmd.nlink() > 1 {
        let name = dst.file_name().unwrap_or_default();
        if let Ok(rd) = std::fs::read_dir(cache_images) {
            for e in rd.flatten() {
                if same_file(&lmd, &e.path().join(name)) {
                    return Existing::OurLink;
                }
            }
        }
    }
    Existing::Foreign
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NullReporter;

    #[test]
    fn links_into_the_images_dir_and_never_overwrites_a_users_file() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache/images");
        let (v1, v2) = (cache.join("aaa"), cache.join("bbb"));
        for v in [&v1, &v2] {
            std::fs::create_dir_all(v).unwrap();
            std::fs::write(v.join("kind.qcow2"), v.to_string_lossy().as_bytes()).unwrap();
        }
        let images = d.path().join("_data/images");
        let dst = images.join("kind.qcow2");
        let (f1, f2) = (v1.join("kind.qcow2"), v2.join("kind.qcow2"));
        let place = |src: &Path, persist: bool| {
            place_pulled(src, &cache, &images, persist, &NullReporter).unwrap()
        };
        let (p, how) = place(&f1, false);
        assert_eq!((p.as_path(), how), (dst.as_path(), Placed::HardLink));
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&dst), ino(&v1.join("kind.qcow2")));
        let (_, how) = place(&f1, false);
        assert_eq!(how, Placed::Already);
        // a newer pull replaces lvh's own earlier link
        assert_eq!(
            existing(&v2.join("kind.qcow2"), &cache, &dst),
            Existing::OurLink
        );
        let (_, how) = place(&f2, false);
        assert_eq!(how, Placed::HardLink);
        assert_eq!(ino(&dst), ino(&v2.join("kind.qcow2")));
        // --persist: a copy of its own
        let (p, how) = place(&f2, true);
        assert_eq!((p.as_path(), how), (dst.as_path(), Placed::Copy));
        assert_ne!(ino(&dst), ino(&v2.join("kind.qcow2")));
        assert_eq!(
            std::fs::read(&dst).unwrap(),
            std::fs::read(v2.join("kind.qcow2")).unwrap()
        );
        // that copy is now the user's file: kept, the cache's used
        let (p, how) = place(&f1, false);
        assert_eq!((p, how), (v1.join("kind.qcow2"), Placed::Kept));
        assert_eq!(
            std::fs::read(&dst).unwrap(),
            std::fs::read(v2.join("kind.qcow2")).unwrap()
        );
        // symlinks into the cache are ours, others are not
        std::fs::remove_file(&dst).unwrap();
        std::os::unix::fs::symlink(v1.join("kind.qcow2"), &dst).unwrap();
        assert_eq!(
            existing(&v1.join("kind.qcow2"), &cache, &dst),
            Existing::Same
        );
        assert_eq!(
            existing(&v2.join("kind.qcow2"), &cache, &dst),
            Existing::OurLink
        );
        std::fs::remove_file(&dst).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &dst).unwrap();
        assert_eq!(
            existing(&v2.join("kind.qcow2"), &cache, &dst),
            Existing::Foreign
        );
    }
}
