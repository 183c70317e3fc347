//! Cache keys and build records. Beside each image `D/images/<name>` lvh keeps
//! `D/images/.<name>.lvh-build.json` with the key it was built from: the
//! image's config entry, its parent's key, the base (suite, mirror, arch, ...)
//! and the digests of its host input files. The record is written after the
//! image is in place and removed before a rebuild starts, so an image without a
//! matching record is never taken for finished work. The record also names the
//! image file it was written for (device, inode, birth time): an image that
//! was replaced since (an `images pull`, a copy) is not the one built, and its
//! old record no longer counts.

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
    /// The image file the record was written for. Records from lvh versions
    /// before this field have none and are taken as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<FileId>,
}

/// Which file an image is: replaced by a rename or a new copy, it is another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// Birth time in nanoseconds, where the filesystem keeps one (an inode
    /// number alone may be reused by the next file made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub btime_ns: Option<u64>,
}

impl FileId {
    pub fn of(md: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: md.dev(),
            ino: md.ino(),
            btime_ns: md
                .created()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| u64::try_from(d.as_nanos()).ok()),
        }
    }
}

/// Whether a record belongs to the image file now in place (`current`, None
/// when there is none): a pure decision, for tests.
pub fn record_matches(rec: &Record, current: Option<FileId>) -> bool {
    match (rec.image, current) {
        (None, _) => true,
        (Some(r), Some(c)) => r == c,
        (Some(_), None) => false,
    }
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

/// The most a build record may weigh (they are a few KiB).
const RECORD_MAX: u64 = 1 << 20;

/// The record of a built image, if there is a readable one written for the
/// image file now in place.
pub fn read_record(images_dir: &Path, name: &str) -> Option<Record> {
    let text = crate::fsutil::read_input(&record_path(images_dir, name), RECORD_MAX).ok()?;
    let rec: Record = serde_json::from_slice(&text).ok()?;
    let current = std::fs::metadata(images_dir.join(name))
        .ok()
        .map(|m| FileId::of(&m));
    record_matches(&rec, current).then_some(rec)
}

/// Writes the record of the image `name`, which is in place now.
pub fn write_record(images_dir: &Path, name: &str, parts: &KeyParts) -> io::Result<()> {
    let md = std::fs::metadata(images_dir.join(name))?;
    let rec = Record {
        key: parts.key(),
        parts: parts.clone(),
        lvh_version: env!("CARGO_PKG_VERSION").to_string(),
        image: Some(FileId::of(&md)),
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
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let md = std::fs::symlink_metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let relb = rel.to_string_lossy();
    h.update((relb.len() as u64).to_le_bytes());
    h.update(relb.as_bytes());
    h.update(md.permissions().mode().to_le_bytes());
    let ft = md.file_type();
    if ft.is_symlink() {
        let t = std::fs::read_link(path)?;
        h.update(b"L");
        h.update(t.to_string_lossy().as_bytes());
    } else if ft.is_fifo() || ft.is_socket() || ft.is_char_device() || ft.is_block_device() {
        // Copied in as what it is (tar keeps special files), never opened:
        // opening a FIFO blocks, reading a device never ends.
        h.update(b"S");
        h.update(md.rdev().to_le_bytes());
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
        hash_file(h, path, md.len())?;
    }
    Ok(())
}

/// Hashes the first `len` bytes of the regular file at `path` (its size when
/// it was looked at: a file that grows meanwhile is not followed forever),
/// stopping with an `Interrupted` error as soon as lvh is cancelled.
fn hash_file(h: &mut Sha256, path: &Path, len: u64) -> io::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{}: changed while being read",
            path.display()
        )));
    }
    let cancel = crate::cancel::CancelToken::global();
    let mut r = f.take(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if cancel.is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
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
            image: None,
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
        std::fs::write(d.path().join("a.img"), b"built").unwrap();
        write_record(d.path(), "a.img", &parts()).unwrap();
        let r = read_record(d.path(), "a.img").unwrap();
        assert_eq!(r.key, parts().key());
        remove_record(d.path(), "a.img").unwrap();
        assert!(read_record(d.path(), "a.img").is_none());
    }

    /// A record belongs to the file it was written for: an image replaced
    /// since (an `images pull` renames a new file into place) has no record,
    /// even when the old record is still there; writing into the image (a
    /// `run --persist`) keeps it.
    #[test]
    fn a_replaced_image_loses_its_record() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("a.img");
        std::fs::write(&img, b"built").unwrap();
        write_record(d.path(), "a.img", &parts()).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&img)
            .unwrap()
            .write_all(b" and used")
            .unwrap();
        assert!(read_record(d.path(), "a.img").is_some());
        let pulled = d.path().join(".a.img.partial-1");
        std::fs::write(&pulled, b"someone else's").unwrap();
        std::fs::rename(&pulled, &img).unwrap();
        assert!(read_record(d.path(), "a.img").is_none());
        assert!(record_path(d.path(), "a.img").exists());
    }

    #[test]
    fn which_records_match_which_files() {
        let id = |ino, b| FileId {
            dev: 1,
            ino,
            btime_ns: b,
        };
        let rec = |image| Record {
            key: "k".into(),
            parts: parts(),
            lvh_version: "v".into(),
            image,
        };
        for (r, cur, want) in [
            (rec(None), None, true),
            (rec(None), Some(id(5, None)), true),
            (rec(Some(id(5, Some(9)))), Some(id(5, Some(9))), true),
            (rec(Some(id(5, Some(9)))), Some(id(5, Some(10))), false),
            (rec(Some(id(5, None))), Some(id(6, None)), false),
            (rec(Some(id(5, None))), None, false),
        ] {
            assert_eq!(record_matches(&r, cur), want, "{:?} {cur:?}", r.image);
        }
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
