//! The attacks, one test each, against `lvh images pull` and `lvh kernels
//! pull`. With `--nocapture` each prints its peak memory and time.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use tar::EntryType as T;

use super::*;
use crate::support::text;

const IMAGES: &str = "hostile/images";
const KERNELS: &str = "hostile/kernels";
const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn pull_images(h: &Hostile, tag: &str, dir: &Path) -> Vec<String> {
    vec![
        "images".into(),
        "pull".into(),
        format!("{}/{IMAGES}:{tag}", h.addr),
        "--dir".into(),
        dir.to_string_lossy().into_owned(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Nothing of a refused pull is left in `<dir>/images` (no image, no partial).
fn nothing_left(dir: &Path) {
    let left: Vec<String> = files_under(&dir.join("images"))
        .into_iter()
        .filter(|f| !f.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A kernel tree whose links each look harmless alone but lead out through
/// each other, whose files are setuid, setgid and world-writable, and whose
/// directory is world-writable: pulled, nothing in the tree leads out of it
/// and no mode survives that would let another user or a setuid run abuse it.
#[test]
fn a_hostile_kernel_tree_is_neutralised() {
    let h = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    let layer = tar_layer(
        &h,
        KERNELS,
        &[
            ("data/kernels/6.6/boot/", T::Directory, 0o1777, b"", None),
            (
                "data/kernels/6.6/boot/vmlinuz-6.6.0",
                T::Regular,
                0o4755,
                b"kernel",
                None,
            ),
            (
                "data/kernels/6.6/boot/config-6.6.0",
                T::Regular,
                0o666,
                b"CONFIG_X=y",
                None,
            ),
            ("data/kernels/6.6/boot/tool", T::Regular, 0o2775, b"x", None),
            (
                "data/kernels/6.6/lib/c",
                T::Symlink,
                0o777,
                b"",
                Some("x/../.."),
            ),
            ("data/kernels/6.6/lib/x", T::Symlink, 0o777, b"", Some("..")),
            (
                "data/kernels/6.6/lib/up",
                T::Symlink,
                0o777,
                b"",
                Some("../.."),
            ),
            (
                "data/kernels/6.6/lib/modules/6.6.0/build",
                T::Symlink,
                0o777,
                b"",
                Some("/etc"),
            ),
            (
                "data/kernels/6.6/lib/cfg",
                T::Symlink,
                0o777,
                b"",
                Some("../boot/config-6.6.0"),
            ),
        ],
    );
    h.image(KERNELS, "6.6-main", vec![layer]);
    let dir = t.path().join("kernels");
    let o = lvh_cmd(
        &[
            "kernels",
            "pull",
            "6.6-main",
            "--repo",
            &format!("{}/{KERNELS}", h.addr),
            "-d",
            dir.to_str().unwrap(),
        ],
        t.path(),
        &[],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let tree = dir.join("6.6-main").canonicalize().unwrap();
    let mut stack = vec![tree.clone()];
    let mut links = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            if md.file_type().is_symlink() {
                links += 1;
                if let Ok(real) = e.path().canonicalize() {
                    assert!(
                        real.starts_with(&tree),
                        "{} -> {}",
                        e.path().display(),
                        real.display()
                    );
                }
                continue;
            }
            let mode = md.permissions().mode();
            assert_eq!(mode & 0o7002, 0, "{} has mode {mode:o}", e.path().display());
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    // the harmless links stay and work; the others are gone, with a warning
    assert_eq!(std::fs::read(tree.join("lib/cfg")).unwrap(), b"CONFIG_X=y");
    assert!(tree.join("lib/x").exists());
    assert_eq!(links, 2, "{}", text(&o));
    let err = stderr(&o);
    for gone in ["lib/c", "lib/up", "lib/modules/6.6.0/build"] {
        assert!(err.contains(gone), "no warning for {gone}:\n{err}");
    }
}

/// An image artifact that carries lvh's build record for the image it
/// brings, forged to match the user's images.json: were it taken, `images
/// build` would call the attacker's image its own, built and current.
#[test]
fn a_forged_build_record_is_never_taken_from_an_artifact() {
    let h = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(
        dir.join("images.json"),
        r#"[{"name": "kind.qcow2", "packages": ["vim"]}]"#,
    )
    .unwrap();
    // The record lvh would write after building it, computed as lvh does.
    let opts = lvh::images::BuildOptions {
        dir: dir.clone(),
        images: vec![],
        force_rebuild: false,
        pkg_repo: None,
        arch: lvh::arch::Arch::Amd64,
        jobs: 1,
        flatten: false,
    };
    let plan = lvh::images::plan(&opts, lvh::images::load(&opts).unwrap()).unwrap();
    let parts = &plan.items[0].parts;
    let forged = serde_json::to_vec(&json!({
        "key": parts.key(),
        "parts": parts,
        "lvh_version": lvh::VERSION,
    }))
    .unwrap();
    let image = zstd::encode_all(&b"the attacker's image"[..], 3).unwrap();
    let layer = tar_layer(
        &h,
        IMAGES,
        &[
            (
                "data/images/kind.qcow2.zst",
                T::Regular,
                0o644,
                &image,
                None,
            ),
            (
                "data/images/.kind.qcow2.lvh-build.json",
                T::Regular,
                0o644,
                &forged,
                None,
            ),
        ],
    );
    h.image(IMAGES, "forged", vec![layer]);
    let o = lvh_cmd(&strs(&pull_images(&h, "forged", &dir)), t.path(), &[])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join("images/kind.qcow2").is_file());
    assert!(!dir.join("images/.kind.qcow2.lvh-build.json").exists());
    assert!(
        stderr(&o).contains(".kind.qcow2.lvh-build.json"),
        "{}",
        text(&o)
    );
    let o = lvh_cmd(
        &[
            "images",
            "build",
            "--dry-run",
            "--dir",
            dir.to_str().unwrap(),
        ],
        t.path(),
        &[],
    )
    .output()
    .unwrap();
    let plan = String::from_utf8_lossy(&o.stdout);
    let line = plan
        .lines()
        .find(|l| l.contains("kind.qcow2"))
        .unwrap_or_default();
    assert!(line.contains("reused: no build record"), "{}", text(&o));
}

/// A 300 MB manifest: refused after at most lvh's cap was read, with little
/// memory; and one that announces its size is refused before its body.
#[test]
fn a_huge_manifest_is_refused_within_its_cap() {
    let h = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    let m = super::super::layout::MANIFEST;
    h.route(
        &format!("/v2/{IMAGES}/manifests/huge"),
        m,
        Body::HugeJson { len: 300 << 20 },
    );
    let (o, rss, time) = lvh_measured(
        &strs(&pull_images(&h, "huge", &t.path().join("d"))),
        t.path(),
        &[],
    );
    let err = stderr(&o);
    assert!(
        !o.status.success() && err.contains("larger than 4.0M"),
        "{}",
        text(&o)
    );
    assert!(h.sent() < 32 << 20, "the registry sent {} bytes", h.sent());
    assert!(rss < 150 << 10, "peak RSS {rss} KiB");
    figure("300 MB manifest (chunked)", rss, time);
    let before = h.sent();
    h.route(
        &format!("/v2/{IMAGES}/manifests/declared"),
        m,
        Body::Generated {
            len: 300 << 20,
            fill: b' ',
            declare_length: true,
        },
    );
    let (o, rss, time) = lvh_measured(
        &strs(&pull_images(&h, "declared", &t.path().join("d"))),
        t.path(),
        &[],
    );
    assert!(stderr(&o).contains("larger than 4.0M"), "{}", text(&o));
    assert!(h.sent() - before < 32 << 20, "{}", h.sent() - before);
    figure("300 MB manifest (Content-Length)", rss, time);
}

/// A layer declared as 10 KB whose blob goes on for 8 GiB: cut at the
/// declared size, whether the registry announces the length or not.
#[test]
fn a_blob_larger_than_declared_is_cut_at_its_declared_size() {
    let h = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    for (tag, declare_length) in [("lying", false), ("lying-announced", true)] {
        let fake = format!(
            "sha256:{}",
            "1".repeat(63) + if declare_length { "2" } else { "3" }
        );
        h.route(
            &format!("/v2/{IMAGES}/blobs/{fake}"),
            "application/octet-stream",
            Body::Generated {
                len: 8 << 30,
                fill: 0,
                declare_length,
            },
        );
        let layer =
            json!({"mediaType": super::super::layout::TAR_GZIP, "digest": fake, "size": 10240});
        h.image(IMAGES, tag, vec![layer]);
        let before = h.sent();
        let dir = t.path().join(tag);
        let (o, rss, time) = lvh_measured(&strs(&pull_images(&h, tag, &dir)), t.path(), &[]);
        let sent = h.sent() - before;
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            stderr(&o).contains("longer than the 10240 bytes its descriptor declares"),
            "{}",
            text(&o)
        );
        assert!(sent < 64 << 20, "{tag}: the registry sent {sent} bytes");
        assert!(time < Duration::from_secs(20), "{tag}: {time:?}");
        nothing_left(&dir);
        figure(&format!("8 GiB blob declared as 10 KB ({tag})"), rss, time);
    }
}

/// A gzip tar of 1 GiB of zeros, and a 1 GiB zstd image inside a small layer:
/// each stops at the cap set for it, with little memory and nothing left;
/// under the (generous) default caps, the image inside is written sparse.
#[test]
fn decompression_bombs_stop_at_their_caps() {
    let h = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    let gib = 1u64 << 30;
    // outer: the layer's tar stream itself is the bomb
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut hd = tar::Header::new_gnu();
    hd.set_size(gib);
    hd.set_mode(0o644);
    hd.set_path("data/images/bomb.img").unwrap();
    hd.set_cksum();
    b.append(&hd, std::io::repeat(0).take(gib)).unwrap();
    let outer = b.into_inner().unwrap().finish().unwrap();
    let outer = h.blob(IMAGES, super::super::layout::TAR_GZIP, outer);
    h.image(IMAGES, "outer", vec![outer.clone()]);
    // inner: a small layer whose .zst image is the bomb
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    std::io::copy(&mut std::io::repeat(0).take(gib), &mut enc).unwrap();
    let inner_zst = enc.finish().unwrap();
    let inner = tar_layer(
        &h,
        IMAGES,
        &[(
            "data/images/bomb.qcow2.zst",
            T::Regular,
            0o644,
            &inner_zst,
            None,
        )],
    );
    eprintln!(
        "hostile-registry figure: bomb layers: outer {} bytes, inner {} bytes, each 1 GiB unpacked",
        outer["size"], inner["size"]
    );
    h.image(IMAGES, "inner", vec![inner]);
    for tag in ["outer", "inner"] {
        let dir = t.path().join(tag);
        let (o, rss, time) = lvh_measured(
            &strs(&pull_images(&h, tag, &dir)),
            t.path(),
            &[("LVH_OCI_MAX_LAYER_UNPACKED", "64M")],
        );
        let err = stderr(&o);
        assert!(
            !o.status.success() && err.contains("unpacks to more than 64.0M"),
            "{}",
            text(&o)
        );
        assert!(rss < 150 << 10, "{tag}: peak RSS {rss} KiB");
        nothing_left(&dir);
        figure(&format!("1 GiB bomb ({tag}), cap 64M"), rss, time);
    }
    // The default caps let a 1 GiB image through, as holes on disk.
    let dir = t.path().join("default");
    let (o, rss, time) = lvh_measured(&strs(&pull_images(&h, "inner", &dir)), t.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::metadata(dir.join("images/bomb.qcow2")).unwrap();
    assert_eq!(md.len(), gib);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "{} bytes on disk",
        md.blocks() * 512
    );
    figure("1 GiB bomb (inner), default caps", rss, time);
}

/// A manifest that trickles a byte every 5 s: it ends at the request
/// deadline, and at once on SIGTERM.
#[test]
fn a_trickling_manifest_ends_at_its_deadline_and_on_sigterm() {
    let h = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    let body = br#"{"schemaVersion":2,"layers":[]}"#.to_vec();
    h.route(
        &format!("/v2/{IMAGES}/manifests/slow"),
        super::super::layout::MANIFEST,
        Body::Trickle {
            bytes: body,
            every: Duration::from_secs(5),
        },
    );
    let dir = t.path().join("d");
    let (o, rss, time) = lvh_measured(
        &strs(&pull_images(&h, "slow", &dir)),
        t.path(),
        &[("LVH_OCI_TIMEOUT", "3")],
    );
    assert!(stderr(&o).contains("within 3s"), "{}", text(&o));
    assert!(time < Duration::from_secs(10), "{time:?}");
    figure("trickling manifest, LVH_OCI_TIMEOUT=3", rss, time);
    let before = h.sent();
    let (stop, o, rss) =
        terminate_during(&strs(&pull_images(&h, "slow", &dir)), t.path(), &[], || {
            h.sent() > before
        });
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        stop < Duration::from_secs(1),
        "stopped {stop:?} after SIGTERM"
    );
    figure("trickling manifest, SIGTERM", rss, stop);
}

/// A layer that trickles: stalled at the deadline; and SIGTERM in the middle
/// of a bomb's decompression (which reads almost nothing from the network)
/// stops it within a second.
#[test]
fn a_stalled_blob_ends_and_sigterm_stops_a_bomb_at_once() {
    let h = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    let fake = format!("sha256:{}", "4".repeat(64));
    h.route(
        &format!("/v2/{IMAGES}/blobs/{fake}"),
        "application/octet-stream",
        Body::Trickle {
            bytes: vec![0; 1 << 20],
            every: Duration::from_secs(1),
        },
    );
    let layer =
        json!({"mediaType": super::super::layout::TAR_GZIP, "digest": fake, "size": 1 << 20});
    h.image(IMAGES, "stall", vec![layer]);
    let dir = t.path().join("d");
    let (o, rss, time) = lvh_measured(
        &strs(&pull_images(&h, "stall", &dir)),
        t.path(),
        &[("LVH_OCI_TIMEOUT", "3")],
    );
    assert!(stderr(&o).contains("stalled"), "{}", text(&o));
    assert!(time < Duration::from_secs(10), "{time:?}");
    nothing_left(&dir);
    figure("trickling blob, LVH_OCI_TIMEOUT=3", rss, time);
    // 16 GiB of zeros in a zstd layer of a few MB: seconds of decompression
    let mut b = tar::Builder::new(zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap());
    let mut hd = tar::Header::new_gnu();
    let big = 16u64 << 30;
    hd.set_size(big);
    hd.set_mode(0o644);
    hd.set_path("data/images/bomb.img").unwrap();
    hd.set_cksum();
    b.append(&hd, std::io::repeat(0).take(big)).unwrap();
    let layer = b.into_inner().unwrap().finish().unwrap();
    let size = layer.len() as u64;
    let layer = h.blob(IMAGES, TAR_ZSTD, layer);
    h.image(IMAGES, "bomb16", vec![layer]);
    let before = h.sent();
    let dir = t.path().join("bomb");
    let (stop, o, rss) = terminate_during(
        &strs(&pull_images(&h, "bomb16", &dir)),
        t.path(),
        &[],
        || h.sent() - before >= size,
    );
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        stop < Duration::from_secs(1),
        "stopped {stop:?} after SIGTERM"
    );
    nothing_left(&dir);
    figure("16 GiB zstd bomb, SIGTERM during decompression", rss, stop);
}
