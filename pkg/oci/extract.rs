//! Unpacking layers safely: decompression by media type, tar entry checks (no
//! absolute paths, no `..`, nothing written through a symlink, symlinks that
//! stay inside the target as resolved against the tree really extracted),
//! modes without setuid, setgid or write for others, lvh's own metadata never
//! taken from an artifact, every decompressed byte counted against the
//! pull's caps, and streaming zstd decompression of root images into sparse
//! files.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::error::{OciError, Result};
use super::limits::{Budget, Counted};
use super::sparse::{copy_sparse, write_sparse};

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

/// How many symlinks one resolution may follow (the kernel's limit).
const MAX_LINK_HOPS: u32 = 40;

/// Where a symlink at `link` (relative to `root`) pointing to `target` leads,
/// relative to `root`: resolved component by component against the tree
/// really under `root`, following the symlinks found there (relative ones
/// only, at most [`MAX_LINK_HOPS`]), so a chain of links that each look
/// harmless cannot lead out. None when it leaves `root` (or loops).
/// Components that do not exist yet count by name.
pub fn resolve_in_tree(root: &Path, link: &Path, target: &Path) -> Option<PathBuf> {
    enum Part {
        Name(OsString),
        Up,
    }
    fn parts(p: &Path) -> Option<Vec<Part>> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(Some(Part::Name(n.to_owned()))),
                Component::ParentDir => Some(Some(Part::Up)),
                Component::CurDir => None,
                Component::RootDir | Component::Prefix(_) => Some(None),
            })
            .collect()
    }
    if target.as_os_str().is_empty() {
        return None;
    }
    let mut pos = PathBuf::new();
    for p in parts(link.parent().unwrap_or(Path::new("")))? {
        match p {
            Part::Name(n) => pos.push(n),
            Part::Up => return None,
        }
    }
    let mut todo: VecDeque<Part> = parts(target)?.into();
    let mut hops = 0;
    while let Some(p) = todo.pop_front() {
        match p {
            Part::Up => {
                if !pos.pop() {
                    return None;
                }
            }
            Part::Name(n) => {
                let here = root.join(&pos).join(&n);
                match fs::symlink_metadata(&here) {
                    Ok(m) if m.file_type().is_symlink() => {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return None;
                        }
                        let t = fs::read_link(&here).ok()?;
                        for q in parts(&t)?.into_iter().rev() {
                            todo.push_front(q);
                        }
                    }
                    _ => pos.push(n),
                }
            }
        }
    }
    Some(pos)
}

/// The mode a pulled file or directory gets: its permission bits without
/// setuid, setgid, sticky and write for others; directories stay usable by
/// their owner (lvh).
pub fn safe_mode(mode: u32, is_dir: bool) -> u32 {
    let m = mode & 0o775;
    if is_dir {
        m | 0o700
    } else {
        m
    }
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

/// Extracts what `want` asks for from one layer's tar stream into `target`,
/// counting what it unpacks against `budget` (which says why when it stops).
pub fn extract_layer(
    tar: impl Read,
    target: &Path,
    want: &Want,
    layer: &str,
    out: &mut Extraction,
    budget: &Budget,
) -> Result<()> {
    budget.start_layer();
    let r = extract_entries(
        Counted { inner: tar, budget },
        target,
        want,
        layer,
        out,
        budget,
    );
    match (r, budget.refusal(layer)) {
        (Err(_), Some(stop)) => Err(stop),
        (r, _) => r,
    }
}

fn extract_entries(
    tar: impl Read,
    target: &Path,
    want: &Want,
    layer: &str,
    out: &mut Extraction,
    budget: &Budget,
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
        if !budget.take_entry() {
            return Err(read_err(io::Error::other("too many entries")));
        }
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
                // Dot files are lvh's own (build records, locks, partial
                // files): never taken from an artifact, where a forged build
                // record would make `images build` call a pulled image its own.
                if name.starts_with('.') {
                    out.skipped.push(format!(
                        "{shown}: a hidden file (lvh keeps its own metadata there)"
                    ));
                    continue;
                }
                extract_image_file(&mut entry, target, &name, *keep_zst, out, budget)?;
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
                // lvh's build record is its own: taken from an artifact, it
                // would make a pulled tree look built here (and its gdb
                // scripts trusted).
                if matches!(want, Want::Kernel { .. }) && rest == Path::new("lvh-build.json") {
                    out.skipped.push(format!(
                        "{shown}: lvh's build record is never taken from an artifact"
                    ));
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
    let mode = entry.header().mode().unwrap_or(0o644);
    let kind = entry.header().entry_type();
    if kind.is_dir() {
        if !fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
            remove_existing(&dst)?;
            fs::create_dir_all(&dst)?;
        }
        out.dir_modes.push((dst, safe_mode(mode, true)));
        return Ok(());
    }
    if let Some(p) = dst.parent() {
        fs::create_dir_all(p)?;
    }
    if kind.is_file() || kind == tar::EntryType::Continuous {
        remove_existing(&dst)?;
        let mut f = File::create(&dst)?;
        copy_sparse(entry, &mut f)?;
        f.set_permissions(fs::Permissions::from_mode(safe_mode(mode, false)))?;
        out.written.push(rest.to_path_buf());
    } else if kind.is_symlink() {
        let link = entry
            .link_name()?
            .map(|l| l.into_owned())
            .unwrap_or_default();
        if !symlink_inside(rest, &link) || resolve_in_tree(target, rest, &link).is_none() {
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

/// Finishes an extraction into `target`: every symlink is resolved again
/// against the whole tree (a link checked when it was made can lead out
/// through links that came after it) and removed when it leaves, with a
/// warning; then the directory modes are applied.
pub fn finish(out: &mut Extraction, target: &Path) -> Result<()> {
    let mut links = Vec::new();
    collect_links(target, Path::new(""), &mut links)
        .map_err(OciError::io("cannot list", target))?;
    for (rel, to) in links {
        if resolve_in_tree(target, &rel, &to).is_none() {
            let p = target.join(&rel);
            fs::remove_file(&p).map_err(OciError::io("cannot remove", &p))?;
            out.written.retain(|w| *w != rel);
            out.skipped.push(format!(
                "{}: symlink to {} leads out of the tree through other links; removed",
                rel.display(),
                to.display()
            ));
        }
    }
    for (d, mode) in out.dir_modes.drain(..).rev() {
        fs::set_permissions(&d, fs::Permissions::from_mode(mode))
            .map_err(OciError::io("cannot chmod", &d))?;
    }
    Ok(())
}

/// Every symlink under `root/rel`, with its target, never following one.
fn collect_links(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> io::Result<()> {
    for e in fs::read_dir(root.join(rel))? {
        let e = e?;
        let r = rel.join(e.file_name());
        let ft = e.file_type()?;
        if ft.is_symlink() {
            out.push((r.clone(), fs::read_link(e.path())?));
        } else if ft.is_dir() {
            collect_links(root, &r, out)?;
        }
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
    budget: &Budget,
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
            // A zstd file inside the layer is a second decompression: its
            // bytes count against the same caps.
            write_sparse(Counted { inner: dec, budget }, &dst)
                .map_err(OciError::io("cannot decompress into", &dst))?;
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
            let e = extract_layer(
                &t[..],
                d.path(),
                &kernel(),
                "l",
                &mut out,
                &Budget::default(),
            )
            .unwrap_err();
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
            ("data/kernels/6.6/lvh-build.json", T::Regular, b"{}", None),
            ("data/kernels/5.4/boot/other", T::Regular, b"no", None),
            ("etc/passwd", T::Regular, b"no", None),
        ]);
        let mut out = Extraction::default();
        extract_layer(
            &t[..],
            d.path(),
            &kernel(),
            "l",
            &mut out,
            &Budget::default(),
        )
        .unwrap();
        finish(&mut out, d.path()).unwrap();
        assert_eq!(fs::read(d.path().join("boot/vmlinuz")).unwrap(), b"kernel");
        let mode = fs::metadata(d.path().join("boot/vmlinuz-6.6"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(fs::symlink_metadata(d.path().join("lib/modules/6.6/build")).is_err());
        assert!(fs::symlink_metadata(d.path().join("lib/modules/6.6/up")).is_err());
        assert!(!d.path().join("dev").exists() && !d.path().join("etc").exists());
        // A forged build record would make the tree's gdb scripts trusted.
        assert!(!d.path().join("lvh-build.json").exists());
        assert_eq!(out.skipped.len(), 4, "{:?}", out.skipped);
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
                &Budget::default(),
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

    /// Each link looks harmless on its own; through the others they lead out.
    #[test]
    fn chains_of_links_cannot_lead_out() {
        use tar::EntryType as T;
        let d = tempfile::tempdir().unwrap();
        let inside = d.path().join("tree");
        fs::create_dir(&inside).unwrap();
        // made in this order, each passes a check by name at the time
        let t = tar_with(&[
            ("data/kernels/6.6/a/c", T::Symlink, b"", Some("x/../..")),
            ("data/kernels/6.6/a/x", T::Symlink, b"", Some("..")),
            ("data/kernels/6.6/b/up", T::Symlink, b"", Some("..")),
            ("data/kernels/6.6/b/out", T::Symlink, b"", Some("up/..")),
            ("data/kernels/6.6/boot/vmlinuz-6.6", T::Regular, b"k", None),
            (
                "data/kernels/6.6/boot/vmlinuz",
                T::Symlink,
                b"",
                Some("vmlinuz-6.6"),
            ),
            (
                "data/kernels/6.6/lib/self",
                T::Symlink,
                b"",
                Some("../boot/./vmlinuz"),
            ),
        ]);
        let mut out = Extraction::default();
        extract_layer(
            &t[..],
            &inside,
            &kernel(),
            "l",
            &mut out,
            &Budget::default(),
        )
        .unwrap();
        finish(&mut out, &inside).unwrap();
        for gone in ["a/c", "b/out"] {
            assert!(
                fs::symlink_metadata(inside.join(gone)).is_err(),
                "{gone} kept"
            );
            assert!(
                out.skipped.iter().any(|s| s.contains(gone)),
                "{:?}",
                out.skipped
            );
        }
        // links that stay inside are kept and work
        assert_eq!(fs::read(inside.join("lib/self")).unwrap(), b"k");
        assert!(fs::symlink_metadata(inside.join("a/x")).is_ok());
        // and nothing in the tree leads out
        let mut links = Vec::new();
        collect_links(&inside, Path::new(""), &mut links).unwrap();
        for (rel, to) in links {
            assert!(
                resolve_in_tree(&inside, &rel, &to).is_some(),
                "{}",
                rel.display()
            );
        }
    }

    #[test]
    fn resolution_against_the_tree_table() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        std::os::unix::fs::symlink("..", r.join("a/up")).unwrap();
        std::os::unix::fs::symlink("b", r.join("a/down")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("abs")).unwrap();
        for (link, target, want) in [
            ("a/l", "b", Some("a/b")),
            ("a/l", "up/a/b", Some("a/b")),
            ("a/l", "up/..", None),
            ("a/l", "down/../..", Some("")),
            ("a/l", "down/../../..", None),
            ("l", "loop", None),
            ("l", "abs/x", None),
            ("l", "/etc", None),
            ("l", "", None),
            ("l", "missing/..", Some("")),
        ] {
            let got = resolve_in_tree(r, Path::new(link), Path::new(target));
            assert_eq!(got.as_deref(), want.map(Path::new), "{link} -> {target}");
        }
    }

    #[test]
    fn modes_lose_setuid_setgid_and_write_for_others() {
        for (mode, dir, want) in [
            (0o4755, false, 0o755),
            (0o2755, false, 0o755),
            (0o6777, false, 0o775),
            (0o1777, true, 0o775),
            (0o000, true, 0o700),
            (0o644, false, 0o644),
            (0o666, false, 0o664),
        ] {
            assert_eq!(safe_mode(mode, dir), want, "{mode:o} dir={dir}");
        }
        use tar::EntryType as T;
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, mode) in [
            ("data/kernels/6.6/boot/", T::Directory, 0o1777),
            ("data/kernels/6.6/boot/suid", T::Regular, 0o4755),
            ("data/kernels/6.6/boot/open", T::Regular, 0o666),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(if kind.is_file() { 1 } else { 0 });
            h.set_path(name).unwrap();
            h.set_cksum();
            b.append(&h, &b"x"[..if kind.is_file() { 1 } else { 0 }])
                .unwrap();
        }
        let t = b.into_inner().unwrap();
        let mut out = Extraction::default();
        extract_layer(
            &t[..],
            d.path(),
            &kernel(),
            "l",
            &mut out,
            &Budget::default(),
        )
        .unwrap();
        finish(&mut out, d.path()).unwrap();
        let mode = |p: &str| fs::metadata(d.path().join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            (mode("boot"), mode("boot/suid"), mode("boot/open")),
            (0o775, 0o755, 0o664)
        );
    }

    #[test]
    fn lvh_metadata_is_never_taken_from_an_artifact() {
        use tar::EntryType as T;
        let d = tempfile::tempdir().unwrap();
        let t = tar_with(&[
            (
                "data/images/.kind.qcow2.lvh-build.json",
                T::Regular,
                b"{}",
                None,
            ),
            ("data/images/.lvh-images.lock", T::Regular, b"", None),
            ("data/images/kind.qcow2", T::Regular, b"img", None),
        ]);
        let mut out = Extraction::default();
        let want = Want::Images { keep_zst: false };
        extract_layer(&t[..], d.path(), &want, "l", &mut out, &Budget::default()).unwrap();
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["kind.qcow2"]);
        assert_eq!(out.skipped.len(), 2, "{:?}", out.skipped);
    }

    /// Both decompressions count: the layer's tar stream, and a `.zst` image
    /// inside it; each cap stops the pull with an error that names it.
    #[test]
    fn bombs_stop_at_their_cap() {
        use crate::cancel::CancelToken;
        use crate::oci::limits::Limits;
        use tar::EntryType as T;
        let zeros = vec![0u8; 32 << 20];
        let inner = zstd::encode_all(&zeros[..], 19).unwrap();
        let images = Want::Images { keep_zst: false };
        let small = |layer, all| Limits {
            unpacked: all,
            layer_unpacked: layer,
            ..Limits::default()
        };
        for (name, data, want, limits, knob) in [
            (
                "data/images/big.img",
                &zeros,
                &images,
                small(1 << 20, 64 << 20),
                "LVH_OCI_MAX_LAYER_UNPACKED",
            ),
            (
                "data/images/big.img.zst",
                &inner,
                &images,
                small(64 << 20, 2 << 20),
                "LVH_OCI_MAX_UNPACKED",
            ),
            (
                "data/kernels/6.6/vmlinux",
                &zeros,
                &kernel(),
                small(1 << 20, 64 << 20),
                "LVH_OCI_MAX_LAYER_UNPACKED",
            ),
        ] {
            let d = tempfile::tempdir().unwrap();
            let t = tar_with(&[(name, T::Regular, data, None)]);
            let mut out = Extraction::default();
            let b = Budget::new(limits, CancelToken::new());
            let e = extract_layer(&t[..], d.path(), want, "sha256:ab", &mut out, &b).unwrap_err();
            assert!(
                matches!(e, OciError::UnpackLimit { .. }) && e.to_string().contains(knob),
                "{name}: {e}"
            );
            // stopped within a read buffer of the cap, not at the end
            assert!(b.unpacked() < (8 << 20), "{name}: {}", b.unpacked());
        }
        let many: Vec<(String, T, &[u8], Option<&str>)> = (0..5)
            .map(|i| {
                (
                    format!("data/kernels/6.6/f{i}"),
                    T::Regular,
                    &b"x"[..],
                    None,
                )
            })
            .collect();
        let many: Vec<(&str, T, &[u8], Option<&str>)> = many
            .iter()
            .map(|(n, k, d, l)| (n.as_str(), *k, *d, *l))
            .collect();
        let t = tar_with(&many);
        let b = Budget::new(
            Limits {
                entries: 3,
                ..Limits::default()
            },
            CancelToken::new(),
        );
        let d = tempfile::tempdir().unwrap();
        let e = extract_layer(
            &t[..],
            d.path(),
            &kernel(),
            "l",
            &mut Extraction::default(),
            &b,
        )
        .unwrap_err();
        assert!(e.to_string().contains("3 tar entries"), "{e}");
    }
}
