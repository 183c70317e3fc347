//! Pushing root images and kernels in little-vm-helper's layout: one layer
//! holding `data/images/<name>.zst` (an uncompressed tar around the zstd file)
//! or `data/kernels/<version>/...` (a tar+zstd layer), no base layer, an image
//! config with a `Cmd` so `docker create` works, and annotations.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::error::{OciError, Result};
use super::manifest::{Descriptor, OCI_CONFIG, OCI_LAYER_TAR, OCI_LAYER_TAR_ZSTD, OCI_MANIFEST};
use super::reference::{display, parse_reference};
use super::tags::require_kernel_version;
use super::transport::{sha256_digest, Remote, Transport};
use crate::arch::Arch;
use crate::progress::{Outcome, Reporter, Stage, Unit};

use super::kernel_layer::{self, HashWriter, ZSTD_LEVEL};

pub const ANN_TITLE: &str = "org.opencontainers.image.title";
pub const ANN_SOURCE: &str = "org.opencontainers.image.source";
pub const ANN_VERSION: &str = "org.opencontainers.image.version";
pub const ANN_ARTIFACT: &str = "dev.lvh.artifact";
pub const ANN_ARCH: &str = "dev.lvh.arch";
pub const ANN_KERNEL_VERSION: &str = "dev.lvh.kernel.version";

/// How to push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    pub arch: Arch,
    pub transport: Transport,
    /// Where the artifact comes from (a URL), recorded as an annotation.
    pub source: Option<String>,
}

/// What was pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub reference: String,
    pub manifest_digest: String,
    pub layer_digest: String,
    pub layer_size: u64,
}

pub(super) fn scratch_dir() -> Result<tempfile::TempDir> {
    let base = crate::fsutil::cache_dir().join("tmp");
    fs::create_dir_all(&base).map_err(OciError::io("cannot create", &base))?;
    // Scratch directories of pushes that were killed outright go first.
    crate::stale::sweep_owned(&base, "push-");
    tempfile::Builder::new()
        .prefix(&crate::stale::owned_prefix("push-"))
        .tempdir_in(&base)
        .map_err(OciError::io(
            "cannot create a temporary directory in",
            &base,
        ))
}

fn dir_header(mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_size(0);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Compresses `src` into `dst` with zstd, reporting input bytes.
fn compress(src: &Path, dst: &Path, stage: &Stage<'_>) -> Result<()> {
    let total = fs::metadata(src)
        .map_err(OciError::io("cannot stat", src))?
        .len();
    let mut input = io::BufReader::with_capacity(
        1 << 20,
        File::open(src).map_err(OciError::io("cannot open", src))?,
    );
    let out = File::create(dst).map_err(OciError::io("cannot create", dst))?;
    let mut enc =
        zstd::stream::write::Encoder::new(io::BufWriter::with_capacity(1 << 20, out), ZSTD_LEVEL)
            .map_err(OciError::io("cannot start zstd for", dst))?;
    let _ = enc.include_contentsize(true);
    let _ = enc.set_pledged_src_size(Some(total));
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let cancel = crate::cancel::CancelToken::global();
    loop {
        if cancel.is_cancelled() {
            return Err(OciError::Interrupted);
        }
        let n = input
            .read(&mut buf)
            .map_err(OciError::io("cannot read", src))?;
        if n == 0 {
            break;
        }
        enc.write_all(&buf[..n])
            .map_err(OciError::io("cannot write", dst))?;
        done += n as u64;
        if done % (64 << 20) < n as u64 {
            stage.progress(done, Some(total), Unit::Bytes);
        }
    }
    let w = enc.finish().map_err(OciError::io("cannot write", dst))?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .map_err(OciError::io("cannot write", dst))?;
    stage.progress(done, Some(total), Unit::Bytes);
    Ok(())
}

fn config_json(
    arch: Arch,
    diff_id: &str,
    labels: &BTreeMap<String, String>,
    created_by: &str,
) -> Vec<u8> {
    let v = json!({
        "architecture": arch.oci_arch(),
        "os": "linux",
        "config": {
            // Never run: it lets `docker create` (little-vm-helper's pull) work
            // on an image without a base layer.
            "Cmd": ["/bin/true"],
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": created_by}],
    });
    serde_json::to_vec(&v).expect("serializable")
}

fn manifest_json(
    config: &Descriptor,
    layer: &Descriptor,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [layer],
        "annotations": annotations,
    });
    serde_json::to_vec(&v).expect("serializable")
}

/// Uploads the layer file, the config and the manifest.
#[allow(clippy::too_many_arguments)]
pub(super) fn upload(
    reference: &str,
    opts: &PushOptions,
    layer_path: &Path,
    layer: Descriptor,
    diff_id: &str,
    annotations: BTreeMap<String, String>,
    created_by: &str,
    stage: &Stage<'_>,
) -> Result<Pushed> {
    let r = parse_reference(reference)?;
    let remote = Remote::connect(r.clone(), &opts.transport)?;
    let config_bytes = config_json(opts.arch, diff_id, &annotations, created_by);
    let config = Descriptor {
        media_type: OCI_CONFIG.into(),
        digest: sha256_digest(&config_bytes),
        size: config_bytes.len() as i64,
        ..Default::default()
    };
    let up = stage.child(format!(
        "upload layer {} ({} bytes)",
        &layer.digest[7..19],
        layer.size
    ));
    // Each step is retried as a whole (see `retry`): a blob upload starts
    // again in a new session after asking whether the registry has the blob
    // by now (it may have stored it and lost the answer); storing a blob
    // under its digest or a manifest under its tag twice changes nothing.
    let what = format!("push {}", display(&r));
    let reporter = stage.reporter();
    let uploaded = super::retry::with_retries(&what, reporter, || {
        if remote.blob_exists(&layer.digest)? {
            return Ok(false);
        }
        remote.push_blob_file(layer_path, &layer.digest, &up)?;
        Ok(true)
    })?;
    up.finish(if uploaded {
        Outcome::Done
    } else {
        Outcome::Cached
    });
    super::retry::with_retries(&what, reporter, || {
        if !remote.blob_exists(&config.digest)? {
            remote.push_blob_bytes(config_bytes.clone(), &config.digest)?;
        }
        Ok(())
    })?;
    let body = manifest_json(&config, &layer, &annotations);
    let manifest_digest = sha256_digest(&body);
    super::retry::with_retries(&what, reporter, || {
        remote.push_manifest(body.clone(), OCI_MANIFEST)
    })?;
    Ok(Pushed {
        reference: display(&r),
        manifest_digest,
        layer_digest: layer.digest,
        layer_size: layer.size as u64,
    })
}

/// The manifest annotations every push writes: title, artifact kind, arch
/// and, when given, the source URL.
pub(super) fn manifest_annotations(
    title: &str,
    artifact: &str,
    opts: &PushOptions,
) -> BTreeMap<String, String> {
    let mut ann = BTreeMap::new();
    ann.insert(ANN_TITLE.to_string(), title.to_string());
    ann.insert(ANN_ARTIFACT.to_string(), artifact.to_string());
    ann.insert(ANN_ARCH.to_string(), opts.arch.as_str().to_string());
    if let Some(s) = &opts.source {
        ann.insert(ANN_SOURCE.to_string(), s.clone());
    }
    ann
}

/// Whether `file` is a qcow2 image with a backing file (an overlay), from the
/// header: magic `QFI\xfb`, then the backing file name's offset at byte 8.
fn qcow2_has_backing(file: &Path) -> Result<bool> {
    let mut head = [0u8; 16];
    let mut f = File::open(file).map_err(OciError::io("cannot open", file))?;
    let mut n = 0;
    while n < head.len() {
        match f
            .read(&mut head[n..])
            .map_err(OciError::io("cannot read", file))?
        {
            0 => break,
            k => n += k,
        }
    }
    Ok(backing_in_header(&head[..n]))
}

fn backing_in_header(head: &[u8]) -> bool {
    head.len() >= 16 && head.starts_with(b"QFI\xfb") && head[8..16].iter().any(|&b| b != 0)
}

/// `qemu-img convert` of an overlay and its backing chain into one qcow2.
fn flatten_cmd(src: &Path, dst: &Path) -> crate::exec::Cmd {
    crate::exec::Cmd::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "qcow2"])
        .arg(src)
        .arg(dst)
        .timeout(std::time::Duration::from_secs(60 * 60))
}

/// `lvh images push <file> <ref>`: `data/images/<name>.zst` in one tar layer.
/// A file already ending in `.zst` is pushed as is.
pub fn push_image(
    file: &Path,
    reference: &str,
    opts: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<Pushed> {
    let name = image_file_name(file)?;
    parse_reference(reference)?;
    let stage = Stage::start(reporter, format!("push {} -> {reference}", file.display()));
    let tmp = scratch_dir()?;
    let (zst_name, zst_path) = compressed_image(file, &name, tmp.path(), &stage, reporter)?;
    let layer_path = tmp.path().join("layer.tar");
    let c = stage.child("pack layer");
    let (digest, size) = pack_image_layer(&zst_name, &zst_path, &layer_path)?;
    c.finish(Outcome::Done);
    let mut layer_ann = BTreeMap::new();
    layer_ann.insert(ANN_TITLE.to_string(), format!("data/images/{zst_name}"));
    let layer = Descriptor {
        media_type: OCI_LAYER_TAR.into(),
        digest: digest.clone(),
        size: size as i64,
        platform: None,
        annotations: layer_ann,
    };
    let ann = manifest_annotations(name.trim_end_matches(".zst"), "root-image", opts);
    let pushed = upload(
        reference,
        opts,
        &layer_path,
        layer,
        &digest,
        ann,
        "lvh images push",
        &stage,
    )?;
    stage.finish(Outcome::Done);
    Ok(pushed)
}

/// The file name of an image to push, which must be a regular file.
fn image_file_name(file: &Path) -> Result<String> {
    let meta = fs::metadata(file)
        .map_err(|e| OciError::invalid(format!("cannot push image {}: {e}", file.display())))?;
    if !meta.is_file() {
        return Err(OciError::invalid(format!(
            "cannot push image {}: not a regular file",
            file.display()
        )));
    }
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| OciError::invalid(format!("image path {} has no file name", file.display())))
}

/// The zstd-compressed image to put in the layer, as (name, path): the file
/// itself when it already ends in `.zst`, else a compressed copy in `tmp`
/// (flattened first when it is a qcow2 overlay).
fn compressed_image(
    file: &Path,
    name: &str,
    tmp: &Path,
    stage: &Stage<'_>,
    reporter: &dyn Reporter,
) -> Result<(String, PathBuf)> {
    if name.ends_with(".zst") {
        return Ok((name.to_string(), file.to_path_buf()));
    }
    let standalone;
    let mut src = file;
    if qcow2_has_backing(file)? {
        // A published image must boot on its own: write the overlay and
        // its backing chain out as one standalone qcow2 first.
        let c = stage.child(format!("flatten {name} (a qcow2 overlay)"));
        standalone = tmp.join("standalone.qcow2");
        flatten_cmd(file, &standalone)
            .stage(c.id())
            .run(reporter)
            .map_err(|e| {
                OciError::invalid(format!(
                    "cannot push image {}: flattening the qcow2 overlay failed: {e}",
                    file.display()
                ))
            })?;
        c.finish(Outcome::Done);
        src = &standalone;
    }
    let p = tmp.join("image.zst");
    let c = stage.child(format!("compress {name}"));
    compress(src, &p, &c)?;
    c.finish(Outcome::Done);
    Ok((format!("{name}.zst"), p))
}

/// Writes the layer tar (`data/`, `data/images/`, `data/images/<zst_name>`)
/// to `layer_path` and returns its digest and size.
fn pack_image_layer(zst_name: &str, zst_path: &Path, layer_path: &Path) -> Result<(String, u64)> {
    let mut b = tar::Builder::new(HashWriter::new(io::BufWriter::with_capacity(
        1 << 20,
        File::create(layer_path).map_err(OciError::io("cannot create", layer_path))?,
    )));
    let werr = OciError::io;
    b.append_data(&mut dir_header(0o755), "data/", io::empty())
        .map_err(werr("cannot write", layer_path))?;
    b.append_data(&mut dir_header(0o755), "data/images/", io::empty())
        .map_err(werr("cannot write", layer_path))?;
    let zsize = fs::metadata(zst_path)
        .map_err(OciError::io("cannot stat", zst_path))?
        .len();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(zsize);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    let zf = File::open(zst_path).map_err(OciError::io("cannot open", zst_path))?;
    b.append_data(&mut h, format!("data/images/{zst_name}"), zf)
        .map_err(werr("cannot write", layer_path))?;
    let mut hw = b.into_inner().map_err(werr("cannot write", layer_path))?;
    hw.flush().map_err(werr("cannot write", layer_path))?;
    Ok((hw.digest(), hw.n))
}

/// The kernel release an install tree holds (`boot/vmlinuz-<release>`).
pub fn kernel_release(install: &Path) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir(install.join("boot"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
        .collect();
    names.sort();
    names.pop()
}

/// `lvh kernels push <install-dir> <ref>`: the tree as `data/kernels/<version>/`
/// in one tar+zstd layer; the version comes from the tag (`6.6-main` -> `6.6`).
pub fn push_kernel(
    install: &Path,
    reference: &str,
    opts: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<Pushed> {
    let r = parse_reference(reference)?;
    let tag = r.tag().unwrap_or("latest").to_string();
    let version = require_kernel_version(&tag)?.to_string();
    let boot = install.join("boot");
    let has_kernel = fs::read_dir(&boot)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz"))
        })
        .unwrap_or(false);
    if !has_kernel {
        return Err(OciError::invalid(format!(
            "kernel install directory {} has no boot/vmlinuz*",
            install.display()
        )));
    }
    let release = kernel_release(install);
    let stage = Stage::start(
        reporter,
        format!("push {} -> {reference}", install.display()),
    );
    let tmp = scratch_dir()?;
    let layer_path = tmp.path().join("layer.tar.zst");
    let c = stage.child("pack kernel layer");
    let file = File::create(&layer_path).map_err(OciError::io("cannot create", &layer_path))?;
    let (packed, _) = kernel_layer::pack_kernel(
        install,
        &version,
        io::BufWriter::with_capacity(1 << 20, file),
    )
    .map_err(OciError::io("cannot pack", install))?;
    c.finish(Outcome::Done);
    let layer = Descriptor {
        media_type: OCI_LAYER_TAR_ZSTD.into(),
        digest: packed.digest,
        size: packed.size as i64,
        ..Default::default()
    };
    let mut ann = manifest_annotations(&format!("kernel {tag}"), "kernel", opts);
    ann.insert(ANN_KERNEL_VERSION.to_string(), version.clone());
    if let Some(rel) = &release {
        ann.insert(ANN_VERSION.to_string(), rel.clone());
    }
    let pushed = upload(
        reference,
        opts,
        &layer_path,
        layer,
        &packed.diff_id,
        ann,
        "lvh kernels push",
        &stage,
    )?;
    stage.finish(Outcome::Done);
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_are_told_from_standalone_images_by_their_header() {
        let mut overlay = b"QFI\xfb\0\0\0\x03".to_vec();
        overlay.extend_from_slice(&0x200u64.to_be_bytes());
        let mut standalone = b"QFI\xfb\0\0\0\x03".to_vec();
        standalone.extend_from_slice(&[0; 8]);
        let mut raw = vec![0u8; 8];
        raw.extend_from_slice(&0x200u64.to_be_bytes());
        for (head, want) in [
            (&overlay[..], true),
            (&standalone[..], false),
            (&raw[..], false),
            (&overlay[..12], false),
            (&b""[..], false),
        ] {
            assert_eq!(backing_in_header(head), want, "{head:?}");
        }
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.qcow2");
        std::fs::write(&f, &overlay).unwrap();
        assert!(qcow2_has_backing(&f).unwrap());
        std::fs::write(&f, &standalone).unwrap();
        assert!(!qcow2_has_backing(&f).unwrap());
    }
}
