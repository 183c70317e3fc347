//! A directory as an OCI artifact (the kernel builds' compiler cache): the
//! files a filter keeps, under `data/<name>/` in one tar+zstd layer pushed
//! with the same upload, retries and annotations as kernels; pulled through
//! the same verified, safe extraction into a staging directory inside the
//! destination, then moved in file by file, so a pull that fails or is
//! killed leaves no half-written file where the destination's users look.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::error::{OciError, Result};
use super::extract::Want;
use super::kernel_layer::{tree_entries, write_layer};
use super::manifest::{Descriptor, OCI_LAYER_TAR_ZSTD};
use super::pull::{self, PullOptions};
use super::push::{manifest_annotations, scratch_dir, upload, PushOptions, Pushed, ANN_TITLE};
use super::reference::parse_reference;
use crate::progress::{Outcome, Reporter, Stage};

/// What a pull put into the destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PulledDir {
    /// Files moved into the destination.
    pub added: u64,
    /// Files the destination had already (kept as they were).
    pub kept: u64,
    pub manifest_digest: String,
}

/// Pushes the files of `root` that `keep` accepts (paths relative to
/// `root`) as `data/<name>/...`; `artifact` names the kind in the annotations.
pub fn push_dir(
    root: &Path,
    name: &str,
    artifact: &str,
    keep: &dyn Fn(&Path) -> bool,
    reference: &str,
    opts: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<Pushed> {
    parse_reference(reference)?;
    if !root.is_dir() {
        return Err(OciError::invalid(format!(
            "cannot push {}: no such directory",
            root.display()
        )));
    }
    let prefix = PathBuf::from("data").join(name);
    let entries = tree_entries(root, &prefix, keep).map_err(OciError::io("cannot read", root))?;
    let files = entries
        .iter()
        .filter(|e| matches!(e, super::kernel_layer::Entry::File { .. }))
        .count();
    if files == 0 {
        return Err(OciError::invalid(format!(
            "cannot push {}: it holds nothing to push",
            root.display()
        )));
    }
    let stage = Stage::start(reporter, format!("push {} -> {reference}", root.display()));
    let tmp = scratch_dir()?;
    let layer_path = tmp.path().join("layer.tar.zst");
    let c = stage.child(format!("pack {files} files"));
    let file = File::create(&layer_path).map_err(OciError::io("cannot create", &layer_path))?;
    let (packed, _) = write_layer(&entries, io::BufWriter::with_capacity(1 << 20, file))
        .map_err(OciError::io("cannot pack", root))?;
    c.finish(Outcome::Done);
    let mut layer_ann = BTreeMap::new();
    layer_ann.insert(ANN_TITLE.to_string(), format!("{}/", prefix.display()));
    let layer = Descriptor {
        media_type: OCI_LAYER_TAR_ZSTD.into(),
        digest: packed.digest,
        size: packed.size as i64,
        platform: None,
        annotations: layer_ann,
    };
    let ann = manifest_annotations(name, artifact, opts);
    let pushed = upload(
        reference,
        opts,
        &layer_path,
        layer,
        &packed.diff_id,
        ann,
        &format!("lvh push of {name}"),
        &stage,
    )?;
    stage.finish(Outcome::Done);
    Ok(pushed)
}

/// Pulls `data/<name>/...` of `reference` into `dest` (created if needed).
/// Files `dest` already has are kept.
pub fn pull_dir(
    reference: &str,
    name: &str,
    dest: &Path,
    opts: &PullOptions,
    reporter: &dyn Reporter,
) -> Result<PulledDir> {
    let pull = pull::begin(reference, opts, reporter)?;
    std::fs::create_dir_all(dest).map_err(OciError::io("cannot create", dest))?;
    let want = Want::Tree {
        prefix: PathBuf::from("data").join(name),
    };
    let (staging, out) = pull.stage_layers(&dest.join("lvh-pull"), &want)?;
    if out.written.is_empty() {
        return Err(OciError::Layout {
            reference: reference.to_string(),
            message: format!("no files under /data/{name}/ in any layer"),
        });
    }
    let mut result = PulledDir {
        manifest_digest: pull.resolved.digest.clone(),
        ..Default::default()
    };
    let mut written = out.written.clone();
    written.sort();
    written.dedup();
    for rel in &written {
        let src = staging.path().join(rel);
        let dst = dest.join(rel);
        if std::fs::symlink_metadata(&dst).is_ok() {
            result.kept += 1;
            continue;
        }
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(OciError::io("cannot create", p))?;
        }
        std::fs::rename(&src, &dst).map_err(OciError::io("cannot move into place", &dst))?;
        result.added += 1;
    }
    drop(staging);
    pull.stage.finish(Outcome::Done);
    Ok(result)
}
