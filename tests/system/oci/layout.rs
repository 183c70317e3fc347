//! Builds OCI image layout directories by hand (tar layers, configs, manifests,
//! indexes) for skopeo to copy into the test registry: artifacts made without lvh.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn digest(b: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

/// Writes a blob into `<layout>/blobs/sha256/` and returns its descriptor.
pub fn blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let d = digest(bytes);
    let p = layout
        .join("blobs/sha256")
        .join(d.trim_start_matches("sha256:"));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
    json!({"mediaType": media_type, "digest": d, "size": bytes.len()})
}

/// A tar of `(path, mode, contents)` regular files, with their parent dirs.
pub fn tar_of(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _, _) in files {
        let mut acc = String::new();
        for c in Path::new(path).parent().unwrap().components() {
            acc.push_str(&c.as_os_str().to_string_lossy());
            acc.push('/');
            dirs.insert(acc.clone());
        }
    }
    for d in dirs {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &d, std::io::empty()).unwrap();
    }
    for (path, mode, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Writes an image (config + gzip layers made from `tars`) and returns the
/// manifest's descriptor with `platform` set.
pub fn image(layout: &Path, arch: &str, tars: &[Vec<u8>]) -> Value {
    let diff_ids: Vec<String> = tars.iter().map(|t| digest(t)).collect();
    let layers: Vec<Value> = tars
        .iter()
        .map(|t| blob(layout, TAR_GZIP, &gzip(t)))
        .collect();
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = blob(
        layout,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let m = json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers});
    let mut d = blob(layout, MANIFEST, &serde_json::to_vec(&m).unwrap());
    d["platform"] = json!({"architecture": arch, "os": "linux"});
    d
}

/// Writes `index.json` naming `top` as `tag`.
pub fn finish(layout: &Path, top: &Value, tag: &str) {
    let mut top = top.clone();
    top.as_object_mut().unwrap().remove("platform");
    top["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    let index = json!({"schemaVersion": 2, "manifests": [top]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}

/// An index blob over several image descriptors.
pub fn index(layout: &Path, images: &[Value]) -> Value {
    let i = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": images});
    blob(layout, INDEX, &serde_json::to_vec(&i).unwrap())
}
