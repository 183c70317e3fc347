//! Unpacking layers safely: decompression by media type, tar entry checks (no
//! absolute paths, no `..`, nothing written through a symlink, symlinks that
//! stay inside the target), and streaming zstd decompression of root images
//! into sparse files.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::error::{OciError, Result};
use super::sparse::write_sparse;

/// What to take out of a layer.
#[derive(Clone, Debug)]
pub enum Want {
    /// `data/images/<name>`: `.zst` files decompressed (and kept too when
    /// `keep_zst`), others copied, all flat into the target.
    Images { keep_zst: bool },
    /// The tree under `data/kernels/<version>/`, into the target.
    Kernel { version: String },
    /// The tree under `prefix` (e.g. `data/ccache`), into the target.
    Tree { prefix: PathBuf },
}

/// What an extraction produced and what it left out.
#[derive(Debug, Default)]
pub struct Extraction {
    /// Paths written, relative to the target.
    pub written: Vec<PathBuf>,
    /// Entries left out, with the reason (shown as warnings).
    pub skipped: Vec<String>,
    /// Directory modes, applied once every file is in place.
    dir_modes: Vec<(PathBuf, u32)>,
}

/// The entry's path as a clean relative path, or why it is refused.
pub fn entry_path(raw: &Path) -> std::result::Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path".into()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("is empty".into());
    }
    Ok(out)
}

/// Whether a symlink at `entry` (relative to the target) pointing to `target`
/// resolves inside the target, judged on the names alone.
pub fn symlink_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() || target.as_os_str().is_empty() {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = Vec::new();
    if let Some(parent) = entry.parent() {
        for c in parent.components() {
            match c {
                Component::Normal(p) => depth.push(p),
                Component::CurDir => {}
                _ => return false,
            }
        }
    }
    for c in target.components() {
        match c {
            Component::Normal(p) => depth.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// Refuses to write below a symlink: every existing ancestor of `rel` under
/// `root` must be a real directory.
fn check_no_symlink_parents(root: &Path, rel: &Path) -> std::result::Result<(), String> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "goes through the symlink {}",
                        c.as_os_str().to_string_lossy()
                    ))
                }
                Ok(m) if !m.is_dir() => return Err("goes through a file".into()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    Ok(())
}

/// The decompressed view of a layer blob, by its media type.
pub fn layer_reader<'r>(media_type: &str, r: &'r mut dyn Read) -> Result<Box<dyn Read + 'r>> {
    let mt = media_type.to_ascii_lowercase();
    if mt.ends_with("zstd") {
        let d = zstd::stream::read::Decoder::new(r)
            .map_err(OciError::io("cannot start zstd for", media_type))?;
        Ok(Box::new(d))
    } else if mt.ends_with("gzip") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 20, r),
        )))
    } else if mt.ends_with(".tar") || mt.ends_with("layer.v1.tar") || mt.ends_with(".tar+") {
        Ok(Box::new(r))
    } else {
        Err(OciError::Layout {
            reference: media_type.to_string(),
            message: format!("unsupported layer media type {media_type}"),
        })
    }
}

/// Extracts what `want` asks for from one layer's tar stream into `target`.
pub fn extract_layer(
    tar: impl Read,
    target: &Path,
    want: &Want,
    layer: &str,
    out: &mut Extraction,
) -> Result<()> {
    let mut archive = tar::Archive::new(tar);
    let unsafe_entry = |entry: &str, reason: String| OciError::UnsafePath {
        entry: entry.to_string(),
        layer: layer.to_string(),
        reason,
    };
    let read_err = |e: io::Error| OciError::Io {
        context: "cannot read the tar stream of layer",
        path: PathBuf::from(layer),
        source: e,
    };
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path().map_err(read_err)?.into_owned();
        let shown = raw.to_string_lossy().into_owned();
        let rel = entry_path(&raw).map_err(|r| unsafe_entry(&shown, r))?;
        if rel
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".wh."))
        {
            continue;
        }
        match want {
            Want::Images { keep_zst } => {
                let comps: Vec<_> = rel.components().collect();
                if comps.len() != 3
                    || comps[0].as_os_str() != "data"
                    || comps[1].as_os_str() != "images"
                {
                    continue;
                }
                if !entry.header().entry_type().is_file() {
                    if !entry.header().entry_type().is_dir() {
                        out.skipped.push(format!("{shown}: not a regular file"));
                    }
                    continue;
                }
                let name = comps[2].as_os_str().to_string_lossy().into_owned();
                extract_image_file(&mut entry, target, &name, *keep_zst, out)?;
            }
            Want::Kernel { .. } | Want::Tree { .. } => {
                let prefix = match want {
                    Want::Kernel { version } => Path::new("data/kernels").join(version),
                    Want::Tree { prefix } => prefix.clone(),
                    Want::Images { .. } => unreachable!(),
                };
                let Ok(rest) = rel.strip_prefix(&prefix) else {
                    continue;
                };
                if rest.as_os_str().is_empty() {
                    continue;
                }
                let rest = rest.to_path_buf();
                check_no_symlink_parents(target, &rest).map_err(|r| unsafe_entry(&shown, r))?;
                extract_tree_entry(&mut entry, target, &rest, &prefix, &shown, out).map_err(
                    |e| match e {
                        TreeError::Unsafe(r) => unsafe_entry(&shown, r),
                        TreeError::Io(source) => OciError::Io {
                            context: "cannot extract",
                            path: target.join(&rest),
                            source,
                        },
                    },
                )?;
            }
        }
    }
    Ok(())
}

enum TreeError {
    Unsafe(String),
    Io(io::Error),
}

impl From<io::Error> for TreeError {
    fn from(e: io::Error) -> Self {
        TreeError::Io(e)
    }
}

fn remove_existing(dst: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(dst),
        Ok(_) => fs::remove_file(dst),
        Err(_) => Ok(()),
    }
}

fn extract_tree_entry(
    entry: &mut tar::Entry<'_, impl Read>,
    target: &Path,
    rest: &Path,
    prefix: &Path,
    shown: &str,
    out: &mut Extraction,
) -> std::result::Result<(), TreeError> {
    let dst = target.join(rest);
    let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
    let kind = entry.header().entry_type();
    if kind.is_dir() {
        if !fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
            remove_existing(&dst)?;
            fs::create_dir_all(&dst)?;
        }
        out.dir_modes.push((dst, mode | 0o700));
        return Ok(());
    }
    if let Some(p) = dst.parent() {
        fs::create_dir_all(p)?;
    }
    if kind.is_file() || kind == tar::EntryType::Continuous {
        remove_existing(&dst)?;
        let mut f = io::BufWriter::with_capacity(1 << 20, File::create(&dst)?);
        io::copy(entry, &mut f)?;
        f.into_inner()
            .map_err(|e| e.into_error())?
            .set_permissions(fs::Permissions::from_mode(mode))?;
        out.written.push(rest.to_path_buf());
    } else if kind.is_symlink() {
        let link = entry
            .link_name()?
            .map(|l| l.into_owned())
            .unwrap_or_default();
        if !symlink_inside(rest, &link) {
            out.skipped.push(format!(
                "{shown}: symlink to {} leaves the tree",
                link.display()
            ));
            return Ok(());
        }
        remove_existing(&dst)?;
        std::os::unix::fs::symlink(&link, &dst)?;
        out.written.push(rest.to_path_buf());
    } else if kind.is_hard_link() {
        let link = entry
            .link_name()?
            .map(|l| l.into_owned())
            .unwrap_or_default();
        let lrel =
            entry_path(&link).map_err(|r| TreeError::Unsafe(format!("hard link target {r}")))?;
        let Ok(lrest) = lrel.strip_prefix(prefix) else {
            return Err(TreeError::Unsafe(format!(
                "hard link to {} outside the tree",
                link.display()
            )));
        };
        check_no_symlink_parents(target, lrest).map_err(TreeError::Unsafe)?;
        let src = target.join(lrest);
        if fs::symlink_metadata(&src)
            .map(|m| !m.is_file())
            .unwrap_or(true)
        {
            return Err(TreeError::Unsafe(format!(
                "hard link to {} which is not a file extracted before",
                link.display()
            )));
        }
        remove_existing(&dst)?;
        fs::hard_link(&src, &dst)?;
        out.written.push(rest.to_path_buf());
    } else {
        out.skipped
            .push(format!("{shown}: {kind:?} entries are not extracted"));
    }
    Ok(())
}

/// Applies the directory modes recorded during extraction.
pub fn finish_modes(out: &mut Extraction) -> Result<()> {
    for (d, mode) in out.dir_modes.drain(..).rev() {
        fs::set_permissions(&d, fs::Permissions::from_mode(mode))
            .map_err(OciError::io("cannot chmod", &d))?;
    }
    Ok(())
}

/// One `data/images/<name>` entry: `.zst` decompressed to `<name without .zst>`
/// (and kept as is when asked), anything else copied.
fn extract_image_file(
    entry: &mut impl Read,
    target: &Path,
    name: &str,
    keep_zst: bool,
    out: &mut Extraction,
) -> Result<()> {
    match name.strip_suffix(".zst") {
        Some(stem) if !stem.is_empty() => {
            let dst = target.join(stem);
            let zst_path = target.join(name);
            let mut tee = Tee {
                inner: entry,
                copy: if keep_zst {
                    Some(io::BufWriter::with_capacity(
                        1 << 20,
                        File::create(&zst_path)
                            .map_err(OciError::io("cannot create", &zst_path))?,
                    ))
                } else {
                    None
                },
            };
            let dec = zstd::stream::read::Decoder::new(&mut tee)
                .map_err(OciError::io("cannot start zstd for", &dst))?;
            write_sparse(dec, &dst).map_err(OciError::io("cannot decompress into", &dst))?;
            // The zstd frame may end before the entry does (padding, skippable frames).
            io::copy(&mut tee, &mut io::sink()).map_err(OciError::io("cannot read", &zst_path))?;
            if let Some(c) = tee.copy.take() {
                c.into_inner()
                    .map(drop)
                    .map_err(|e| e.into_error())
                    .map_err(OciError::io("cannot write", &zst_path))?;
                out.written.push(PathBuf::from(name));
            }
            out.written.push(PathBuf::from(stem));
        }
        _ => {
            let dst = target.join(name);
            write_sparse(entry, &dst).map_err(OciError::io("cannot write", &dst))?;
            out.written.push(PathBuf::from(name));
        }
    }
    Ok(())
}

struct Tee<'a, R: Read + ?Sized> {
    inner: &'a mut R,
    copy: Option<io::BufWriter<File>>,
}

impl<R: Read + ?Sized> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(c) = &mut self.copy {
            c.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::sparse::SPARSE_BLOCK;

    #[test]
    fn entry_paths_table() {
        let ok = [
            ("a/b", "a/b"),
            ("./data/x", "data/x"),
            ("data//x/", "data/x"),
        ];
        for (raw, want) in ok {
            assert_eq!(
                entry_path(Path::new(raw)).unwrap(),
                PathBuf::from(want),
                "{raw}"
            );
        }
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", ".", ""] {
            assert!(entry_path(Path::new(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn symlink_escapes_table() {
        let cases = [
            ("lib/modules/6.6/build", "/usr/src/linux", false),
            ("lib/modules/6.6/source", "../../../..", false),
            ("lib/modules/6.6/x", "../../..", true),
            ("boot/vmlinuz", "vmlinuz-6.6", true),
            ("a", "..", false),
            ("a", ".", true),
            ("a/b", "../c/../../d", false),
            ("a/b", "./../c", true),
            ("a", "", false),
        ];
        for (entry, target, inside) in cases {
            assert_eq!(
                symlink_inside(Path::new(entry), Path::new(target)),
                inside,
                "{entry} -> {target}"
            );
        }
    }

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // Bypass the builder's own path checks to write hostile names.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn kernel() -> Want {
        Want::Kernel {
            version: "6.6".into(),
        }
    }

    #[test]
    fn hostile_tars_are_refused_and_escaping_links_skipped() {
        use tar::EntryType as T;
        let refused = [
            tar_with(&[("/data/kernels/6.6/boot/x", T::Regular, b"x", None)]),
            tar_with(&[("data/kernels/6.6/../../../etc/x", T::Regular, b"x", None)]),
            tar_with(&[
                ("data/kernels/6.6/lib", T::Symlink, b"", Some("boot")),
                ("data/kernels/6.6/lib/x", T::Regular, b"x", None),
            ]),
            tar_with(&[("data/kernels/6.6/h", T::Link, b"", Some("/etc/passwd"))]),
        ];
        for (i, t) in refused.iter().enumerate() {
            let d = tempfile::tempdir().unwrap();
            let mut out = Extraction::default();
            let e = extract_layer(&t[..], d.path(), &kernel(), "l", &mut out).unwrap_err();
            assert!(matches!(e, OciError::UnsafePath { .. }), "case {i}: {e}");
        }
        let d = tempfile::tempdir().unwrap();
        let t = tar_with(&[
            (
                "data/kernels/6.6/boot/vmlinuz-6.6",
                T::Regular,
                b"kernel",
                None,
            ),
            (
                "data/kernels/6.6/boot/vmlinuz",
                T::Symlink,
                b"",
                Some("vmlinuz-6.6"),
            ),
            (
                "data/kernels/6.6/lib/modules/6.6/build",
                T::Symlink,
                b"",
                Some("/usr/src/linux"),
            ),
            (
                "data/kernels/6.6/lib/modules/6.6/up",
                T::Symlink,
                b"",
                Some("../../../../.."),
            ),
            ("data/kernels/6.6/dev", T::Char, b"", None),
            ("data/kernels/5.4/boot/other", T::Regular, b"no", None),
            ("etc/passwd", T::Regular, b"no", None),
        ]);
        let mut out = Extraction::default();
        extract_layer(&t[..], d.path(), &kernel(), "l", &mut out).unwrap();
        assert_eq!(fs::read(d.path().join("boot/vmlinuz")).unwrap(), b"kernel");
        let mode = fs::metadata(d.path().join("boot/vmlinuz-6.6"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(fs::symlink_metadata(d.path().join("lib/modules/6.6/build")).is_err());
        assert!(fs::symlink_metadata(d.path().join("lib/modules/6.6/up")).is_err());
        assert!(!d.path().join("dev").exists() && !d.path().join("etc").exists());
        assert_eq!(out.skipped.len(), 3, "{:?}", out.skipped);
    }

    #[test]
    fn images_are_decompressed_sparse() {
        use tar::EntryType as T;
        let mut data = vec![0u8; 3 * SPARSE_BLOCK];
        data[SPARSE_BLOCK + 7] = 1;
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        let t = tar_with(&[
            ("data/images/base.qcow2.zst", T::Regular, &zst, None),
            ("data/images/plain.img", T::Regular, b"plain", None),
            ("bin/busybox", T::Regular, b"x", None),
        ]);
        for keep in [false, true] {
            let d = tempfile::tempdir().unwrap();
            let mut out = Extraction::default();
            extract_layer(
                &t[..],
                d.path(),
                &Want::Images { keep_zst: keep },
                "l",
                &mut out,
            )
            .unwrap();
            assert_eq!(fs::read(d.path().join("base.qcow2")).unwrap(), data);
            assert_eq!(fs::read(d.path().join("plain.img")).unwrap(), b"plain");
            assert_eq!(d.path().join("base.qcow2.zst").exists(), keep);
            if keep {
                assert_eq!(fs::read(d.path().join("base.qcow2.zst")).unwrap(), zst);
            }
        }
    }
}
