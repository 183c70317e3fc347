//! Cache keys and build records. Beside each image `D/images/<name>` lvh keeps
//! `D/images/.<name>.lvh-build.json` with the key it was built from: the
//! image's config entry, its parent's key, the base (suite, mirror, arch, ...)
//! and the digests of its host input files. The record is written after the
//! image is in place and removed before a rebuild starts, so an image without a
//! matching record is never taken for finished work.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The parts a key is made of, kept so a rebuild can say why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyParts {
    /// The image's own config entry (canonical JSON) and effective settings.
    pub config: String,
    /// Suite, mirror, arch, variant (root images) or nothing.
    pub base: String,
    /// The parent's key ("" for a root image).
    pub parent: String,
    /// The digests of the host files the actions read.
    pub inputs: String,
}

impl KeyParts {
    /// The key: a hash over all parts.
    pub fn key(&self) -> String {
        hash_strs(&[&self.config, &self.base, &self.parent, &self.inputs])
    }
}

/// What is stored beside a built image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub parts: KeyParts,
    pub lvh_version: String,
}

/// Hex SHA-256 over length-prefixed strings.
pub fn hash_strs(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex(&h.finalize())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn record_path(images_dir: &Path, name: &str) -> PathBuf {
    images_dir.join(format!(".{name}.lvh-build.json"))
}

/// The record of a built image, if there is a readable one.
pub fn read_record(images_dir: &Path, name: &str) -> Option<Record> {
    let text = std::fs::read(record_path(images_dir, name)).ok()?;
    serde_json::from_slice(&text).ok()
}

pub fn write_record(images_dir: &Path, name: &str, parts: &KeyParts) -> io::Result<()> {
    let rec = Record {
        key: parts.key(),
        parts: parts.clone(),
        lvh_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let text = serde_json::to_vec_pretty(&rec).map_err(io::Error::other)?;
    crate::fsutil::write_atomic(&record_path(images_dir, name), &text)
}

pub fn remove_record(images_dir: &Path, name: &str) -> io::Result<()> {
    crate::fsutil::remove_any(&record_path(images_dir, name))
}

/// Why an image must be rebuilt, or None when the existing one is current.
pub fn stale_reason(image_exists: bool, old: Option<&Record>, new: &KeyParts) -> Option<String> {
    if !image_exists {
        return Some("not built yet".into());
    }
    let Some(old) = old else {
        return Some("no build record (built by another tool, or interrupted)".into());
    };
    if old.key == new.key() && old.parts == *new {
        return None;
    }
    let mut why = Vec::new();
    if old.parts.config != new.config {
        why.push("config entry changed");
    }
    if old.parts.base != new.base {
        why.push("suite/mirror/arch changed");
    }
    if old.parts.parent != new.parent {
        why.push("parent changed");
    }
    if old.parts.inputs != new.inputs {
        why.push("input files changed");
    }
    if why.is_empty() {
        why.push("build record does not match");
    }
    Some(why.join(", "))
}

/// A digest of a file or directory tree: paths, types, modes, symlink targets
/// and file contents, in sorted order.
pub fn digest_path(path: &Path) -> io::Result<String> {
    let mut h = Sha256::new();
    digest_into(&mut h, path, Path::new(""))?;
    Ok(hex(&h.finalize()))
}

fn digest_into(h: &mut Sha256, path: &Path, rel: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::symlink_metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let relb = rel.to_string_lossy();
    h.update((relb.len() as u64).to_le_bytes());
    h.update(relb.as_bytes());
    h.update(md.permissions().mode().to_le_bytes());
    if md.file_type().is_symlink() {
        let t = std::fs::read_link(path)?;
        h.update(b"L");
        h.update(t.to_string_lossy().as_bytes());
    } else if md.is_dir() {
        h.update(b"D");
        let mut names: Vec<_> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for n in names {
            digest_into(h, &path.join(&n), &rel.join(&n))?;
        }
    } else {
        h.update(b"F");
        h.update(md.len().to_le_bytes());
        let mut f = std::fs::File::open(path)?;
        io::copy(&mut f, h)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> KeyParts {
        KeyParts {
            config: "c".into(),
            base: "b".into(),
            parent: "p".into(),
            inputs: "i".into(),
        }
    }

    #[test]
    fn every_part_changes_the_key() {
        let k = parts().key();
        for f in [
            |p: &mut KeyParts| p.config.push('x'),
            |p: &mut KeyParts| p.base.push('x'),
            |p: &mut KeyParts| p.parent.push('x'),
            |p: &mut KeyParts| p.inputs.push('x'),
        ] {
            let mut p = parts();
            f(&mut p);
            assert_ne!(p.key(), k);
        }
        // parts are length-prefixed: moving a character between parts changes the key
        let mut p = parts();
        p.config = "cb".into();
        p.base = String::new();
        assert_ne!(p.key(), k);
    }

    #[test]
    fn stale_reasons() {
        let rec = Record {
            key: parts().key(),
            parts: parts(),
            lvh_version: "x".into(),
        };
        assert_eq!(stale_reason(true, Some(&rec), &parts()), None);
        assert_eq!(
            stale_reason(false, Some(&rec), &parts()).unwrap(),
            "not built yet"
        );
        assert!(stale_reason(true, None, &parts())
            .unwrap()
            .contains("no build record"));
        let mut p = parts();
        p.inputs = "j".into();
        p.parent = "q".into();
        assert_eq!(
            stale_reason(true, Some(&rec), &p).unwrap(),
            "parent changed, input files changed"
        );
    }

    #[test]
    fn records_round_trip() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_record(d.path(), "a.img").is_none());
        write_record(d.path(), "a.img", &parts()).unwrap();
        let r = read_record(d.path(), "a.img").unwrap();
        assert_eq!(r.key, parts().key());
        remove_record(d.path(), "a.img").unwrap();
        assert!(read_record(d.path(), "a.img").is_none());
    }

    #[test]
    fn tree_digest_sees_content_names_modes_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("sub")).unwrap();
        std::fs::write(t.join("sub/f"), b"1").unwrap();
        let a = digest_path(&t).unwrap();
        assert_eq!(a, digest_path(&t).unwrap());
        std::fs::write(t.join("sub/f"), b"2").unwrap();
        let b = digest_path(&t).unwrap();
        assert_ne!(a, b);
        std::fs::set_permissions(t.join("sub/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = digest_path(&t).unwrap();
        assert_ne!(b, c);
        std::os::unix::fs::symlink("x", t.join("l")).unwrap();
        assert_ne!(c, digest_path(&t).unwrap());
        assert!(digest_path(&d.path().join("missing")).is_err());
    }
}
