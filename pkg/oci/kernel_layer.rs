//! The kernel layer of `lvh kernels push`, as a pure function of the install
//! tree: `data/kernels/<version>/{boot,lib/modules,...}` in one tar+zstd
//! stream, entries sorted by name, parents first, mtime 0, owner 0:0, no user
//! names, so the same tree always gives the same bytes (and the same digest,
//! whatever the files' times, owners or creation order).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::transport::hex;

/// A writer that hashes and counts what passes through.
pub(super) struct HashWriter<W> {
    pub(super) inner: W,
    hash: Sha256,
    pub(super) n: u64,
}

impl<W: Write> HashWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hash: Sha256::new(),
            n: 0,
        }
    }

    pub(super) fn digest(&self) -> String {
        format!("sha256:{}", hex(&self.hash.clone().finalize()))
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// zstd level for pushed artifacts (what `zstd` uses by default).
pub const ZSTD_LEVEL: i32 = 3;

/// One tar entry of the layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir {
        name: String,
        mode: u32,
    },
    File {
        name: String,
        mode: u32,
        src: PathBuf,
    },
    Symlink {
        name: String,
        target: PathBuf,
    },
}

/// The layer's digests: `diff_id` of the uncompressed tar (for the image
/// config), `digest` and `size` of the compressed blob (for the manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    pub diff_id: String,
    pub digest: String,
    pub size: u64,
}

/// Every path under `root` (relative), parents before children, sorted.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        out.push(r.clone());
        if e.file_type()?.is_dir() {
            walk(root, &r, out)?;
        }
    }
    Ok(())
}

/// The layer's entries for `install` under `data/kernels/<version>/`: the
/// leading directories, then the tree sorted by name, parents before
/// children. Sockets, fifos and device files are left out.
pub fn kernel_entries(install: &Path, version: &str) -> io::Result<Vec<Entry>> {
    tree_entries(
        install,
        &PathBuf::from("data/kernels").join(version),
        &|_| true,
    )
}

/// The entries for `root` under `prefix`: the leading directories, then
/// the tree's directories and the files and symlinks `keep` accepts (by
/// path relative to `root`), sorted by name, parents before children.
pub fn tree_entries(
    root: &Path,
    prefix: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut lead = PathBuf::new();
    for c in prefix.components() {
        lead.push(c);
        out.push(Entry::Dir {
            name: format!("{}/", lead.display()),
            mode: 0o755,
        });
    }
    let mut paths = Vec::new();
    walk(root, Path::new(""), &mut paths)?;
    for rel in paths {
        let src = root.join(&rel);
        let m = fs::symlink_metadata(&src)?;
        let name = prefix.join(&rel).display().to_string();
        let mode = m.permissions().mode() & 0o7777;
        let ft = m.file_type();
        if ft.is_dir() {
            out.push(Entry::Dir {
                name: format!("{name}/"),
                mode,
            });
        } else if !keep(&rel) {
            continue;
        } else if ft.is_file() {
            out.push(Entry::File { name, mode, src });
        } else if ft.is_symlink() {
            let target = fs::read_link(&src)?;
            out.push(Entry::Symlink { name, target });
        }
    }
    Ok(out)
}

/// A header with everything that varies between machines fixed.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Writes `entries` as a tar+zstd stream into `out`; returns the digests and
/// `out` (flushed).
pub fn write_layer<W: Write>(entries: &[Entry], out: W) -> io::Result<(Packed, W)> {
    let enc = zstd::stream::write::Encoder::new(HashWriter::new(out), ZSTD_LEVEL)?;
    let mut b = tar::Builder::new(HashWriter::new(enc));
    for e in entries {
        match e {
            Entry::Dir { name, mode } => {
                b.append_data(
                    &mut header(tar::EntryType::Directory, *mode, 0),
                    name,
                    io::empty(),
                )?;
            }
            Entry::File { name, mode, src } => {
                let f = File::open(src)?;
                let size = f.metadata()?.size();
                let mut h = header(tar::EntryType::Regular, *mode, size);
                b.append_data(&mut h, name, f)?;
            }
            Entry::Symlink { name, target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, name, target)?;
            }
        }
    }
    let tar = b.into_inner()?;
    let diff_id = tar.digest();
    let mut compressed = tar.inner.finish()?;
    compressed.flush()?;
    let packed = Packed {
        diff_id,
        digest: compressed.digest(),
        size: compressed.n,
    };
    Ok((packed, compressed.inner))
}

/// [`kernel_entries`] then [`write_layer`].
pub fn pack_kernel<W: Write>(install: &Path, version: &str, out: W) -> io::Result<(Packed, W)> {
    write_layer(&kernel_entries(install, version)?, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, SystemTime};

    /// A small install tree; `reverse` creates the files in the other order
    /// and gives them other times.
    fn tree(reverse: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let mut files = vec![
            ("boot/vmlinuz-6.6.0", &b"kernel"[..], 0o644),
            ("boot/config-6.6.0", b"CONFIG_X=y\n", 0o644),
            ("lib/modules/6.6.0/modules.dep", b"", 0o644),
            ("lib/modules/6.6.0/kernel/a.ko", b"module", 0o600),
            ("lib/modules/6.6.0/tool", b"#!/bin/sh\n", 0o755),
        ];
        if reverse {
            files.reverse();
        }
        for (p, data, mode) in &files {
            let p = r.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, data).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(if reverse { 7 } else { 1 << 30 });
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
            if reverse {
                // Another owner where we may (as root); ignored otherwise.
                let _ = std::os::unix::fs::chown(&p, Some(1000), Some(1000));
            }
        }
        std::os::unix::fs::symlink("kernel/a.ko", r.join("lib/modules/6.6.0/link")).unwrap();
        d
    }

    #[test]
    fn entries_are_sorted_under_the_version_prefix() {
        let t = tree(false);
        let names: Vec<String> = kernel_entries(t.path(), "6.6")
            .unwrap()
            .into_iter()
            .map(|e| match e {
                Entry::Dir { name, .. }
                | Entry::File { name, .. }
                | Entry::Symlink { name, .. } => name,
            })
            .collect();
        assert_eq!(
            names,
            [
                "data/",
                "data/kernels/",
                "data/kernels/6.6/",
                "data/kernels/6.6/boot/",
                "data/kernels/6.6/boot/config-6.6.0",
                "data/kernels/6.6/boot/vmlinuz-6.6.0",
                "data/kernels/6.6/lib/",
                "data/kernels/6.6/lib/modules/",
                "data/kernels/6.6/lib/modules/6.6.0/",
                "data/kernels/6.6/lib/modules/6.6.0/kernel/",
                "data/kernels/6.6/lib/modules/6.6.0/kernel/a.ko",
                "data/kernels/6.6/lib/modules/6.6.0/link",
                "data/kernels/6.6/lib/modules/6.6.0/modules.dep",
                "data/kernels/6.6/lib/modules/6.6.0/tool",
            ]
        );
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes() {
        let (a, b) = (tree(false), tree(true));
        let (pa, ba) = pack_kernel(a.path(), "6.6", Vec::new()).unwrap();
        let (pa2, ba2) = pack_kernel(a.path(), "6.6", Vec::new()).unwrap();
        let (pb, bb) = pack_kernel(b.path(), "6.6", Vec::new()).unwrap();
        assert_eq!((&pa, &ba), (&pa2, &ba2));
        assert_eq!(
            (&pa, &ba),
            (&pb, &bb),
            "times, owners or creation order leaked"
        );
        assert_eq!(pa.size, ba.len() as u64);
        assert_eq!(
            pa.digest,
            format!("sha256:{}", super::super::transport::hex(&sha2_of(&ba)))
        );
        // A different tree gives a different layer.
        fs::write(a.path().join("boot/config-6.6.0"), "CONFIG_X=n\n").unwrap();
        let (pc, _) = pack_kernel(a.path(), "6.6", Vec::new()).unwrap();
        assert_ne!(pc.digest, pa.digest);
        assert_ne!(pc.diff_id, pa.diff_id);
    }

    fn sha2_of(b: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        sha2::Sha256::digest(b).to_vec()
    }

    #[test]
    fn the_layer_unpacks_to_the_tree_with_fixed_metadata() {
        let t = tree(true);
        let (p, bytes) = pack_kernel(t.path(), "6.12", Vec::new()).unwrap();
        let tar_bytes = zstd::decode_all(&bytes[..]).unwrap();
        assert_eq!(
            p.diff_id,
            format!(
                "sha256:{}",
                super::super::transport::hex(&sha2_of(&tar_bytes))
            )
        );
        let mut a = tar::Archive::new(&tar_bytes[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let path = e.path().unwrap().display().to_string();
            assert_eq!(
                (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
                (0, 0, 0)
            );
            assert_eq!(h.username().unwrap(), Some(""), "{path}");
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            seen.push((
                path,
                h.mode().unwrap(),
                body,
                e.link_name().unwrap().map(|l| l.into_owned()),
            ));
        }
        let find = |p: &str| {
            seen.iter()
                .find(|s| s.0 == p)
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert_eq!(find("data/kernels/6.12/boot/vmlinuz-6.6.0").2, b"kernel");
        assert_eq!(
            find("data/kernels/6.12/lib/modules/6.6.0/kernel/a.ko").1,
            0o600
        );
        assert_eq!(find("data/kernels/6.12/lib/modules/6.6.0/tool").1, 0o755);
        assert_eq!(
            find("data/kernels/6.12/lib/modules/6.6.0/link").3,
            Some(PathBuf::from("kernel/a.ko"))
        );
    }
}
