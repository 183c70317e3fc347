//! The root image's on-disk format (sniffed from the header, so a mis-named
//! file still boots). The runner takes a local path: `--image` references are
//! told apart and pulled before it (see `oci::ImageSource`).

use std::io::Read;
use std::path::Path;

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
}
