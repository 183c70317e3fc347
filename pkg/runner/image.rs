//! The root image: its on-disk format (sniffed from the header, so a
//! mis-named file still boots) and how `--image` turns into a local path.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Disk image formats QEMU is told about explicitly (no format probing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    pub const fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }

    /// The format of an image from its first bytes (`QFI\xfb` is qcow2).
    pub fn from_header(header: &[u8]) -> ImageFormat {
        if header.starts_with(b"QFI\xfb") {
            ImageFormat::Qcow2
        } else {
            ImageFormat::Raw
        }
    }

    /// Reads the header of `path`.
    pub fn detect(path: &Path) -> std::io::Result<ImageFormat> {
        let mut f = std::fs::File::open(path)?;
        let mut buf = [0u8; 4];
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(ImageFormat::from_header(&buf[..n]))
    }
}

/// Where `--image` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// An existing local file.
    Local(PathBuf),
    /// Not a local file; looks like something to pull.
    Remote(String),
    /// Not a local file and not a plausible reference: a path that does not exist.
    Missing(PathBuf),
}

/// Classifies `--image`. Something with a `/` before a `:` tag or a
/// registry-looking first component that does not exist locally is a reference.
pub fn classify(image: &str) -> ImageRef {
    let p = Path::new(image);
    if p.exists() {
        return ImageRef::Local(p.to_path_buf());
    }
    if looks_like_reference(image) {
        ImageRef::Remote(image.to_string())
    } else {
        ImageRef::Missing(p.to_path_buf())
    }
}

/// `quay.io/lvh-images/kind:6.6-main`, `localhost:5000/x/y:tag`, `x/y@sha256:...`.
fn looks_like_reference(s: &str) -> bool {
    if s.starts_with('/') || s.starts_with('.') || s.contains("//") {
        return false;
    }
    let Some((first, _)) = s.split_once('/') else {
        return false;
    };
    let registry_like = first.contains('.') || first.contains(':') || first == "localhost";
    let last = s.rsplit('/').next().unwrap_or("");
    registry_like && (last.contains(':') || last.contains('@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_qcow2_and_defaults_to_raw() {
        assert_eq!(
            ImageFormat::from_header(b"QFI\xfb\0\0\0\x03"),
            ImageFormat::Qcow2
        );
        assert_eq!(ImageFormat::from_header(b"\0\0\0\0"), ImageFormat::Raw);
        assert_eq!(ImageFormat::from_header(b""), ImageFormat::Raw);
    }

    #[test]
    fn detect_reads_the_file() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("a.img");
        std::fs::write(&q, b"QFI\xfbrest").unwrap();
        assert_eq!(ImageFormat::detect(&q).unwrap(), ImageFormat::Qcow2);
        let r = d.path().join("b.qcow2");
        std::fs::write(&r, b"xx").unwrap();
        assert_eq!(ImageFormat::detect(&r).unwrap(), ImageFormat::Raw);
    }

    #[test]
    fn classifies_image_arguments() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("img.qcow2");
        std::fs::write(&f, b"").unwrap();
        assert_eq!(classify(f.to_str().unwrap()), ImageRef::Local(f.clone()));
        for r in [
            "quay.io/lvh-images/kind:6.6-main",
            "localhost:5000/lvh/base:latest",
            "ghcr.io/x/y@sha256:abcd",
        ] {
            assert_eq!(classify(r), ImageRef::Remote(r.into()), "{r}");
        }
        for m in [
            "_data/images/base.qcow2",
            "/nonexistent/base.qcow2",
            "base.qcow2",
            "./x:y",
        ] {
            assert_eq!(classify(m), ImageRef::Missing(m.into()), "{m}");
        }
    }
}
