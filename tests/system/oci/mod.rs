//! OCI against a real registry (Debian's `docker-registry` on 127.0.0.1) with
//! skopeo as the independent client: lvh pushes and skopeo reads, skopeo pushes
//! hand-built artifacts and lvh pulls; round trips, tampered blobs, multi-arch
//! indexes, interrupted pulls and the run cache.

mod hostile;
mod layout;
pub use crate::support::registry;
mod run;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use lvh::exec::Cmd;
use lvh::oci::{OciError, PullOptions, ResolveOptions};
use lvh::progress::{Event, NullReporter, Outcome, RecordingReporter};
use registry::{test_bytes, write_file, Proxy, Registry};
use serde_json::Value;

const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

fn lvh(args: &[&str], cache: &Path) -> Output {
    crate::support::lvh()
        .args(args)
        .env("LVH_CACHE_DIR", cache)
        .output()
        .expect("run lvh")
}

/// Writes `len` test bytes (from `seed`) to `<dir>/base.qcow2` and pushes
/// them to `reference` with `lvh images push`; returns the bytes.
fn push_test_image(dir: &Path, reference: &str, len: usize, seed: u64) -> Vec<u8> {
    let data = test_bytes(len, seed);
    let img = dir.join("base.qcow2");
    write_file(&img, &data);
    ok(&lvh(
        &["images", "push", img.to_str().unwrap(), reference],
        dir,
    ));
    data
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "lvh failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn fails(o: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    err
}

fn tool(program: &str, args: &[&str]) -> Vec<u8> {
    Cmd::new(program)
        .args(args)
        .capture_stdout()
        .timeout(TOOL_TIMEOUT)
        .run(&NullReporter)
        .unwrap_or_else(|e| panic!("{program} failed: {e}"))
        .stdout
}

fn skopeo_manifest(reference: &str) -> Value {
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{reference}"),
        ],
    );
    serde_json::from_slice(&raw).unwrap()
}

/// `skopeo copy` to a `dir:` and the path of the manifest's only data layer.
fn skopeo_copy_to_dir(reference: &str, dir: &Path) -> (Value, PathBuf) {
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("dir:{}", dir.display()),
        ],
    );
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{m}");
    let hex = layers[0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    (m, dir.join(hex))
}

fn zstd_cli(args: &[&str]) {
    tool("zstd", args);
}

/// The names of the visible files in a directory (missing dir: none).
fn visible(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".partial-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn lvh_push_is_read_by_skopeo_and_round_trips() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let data = test_bytes(3 << 20, 1);
    let img = t.path().join("base.qcow2");
    write_file(&img, &data);
    let r = reg.reference("root-images", "test");
    let out = ok(&lvh(
        &[
            "images",
            "push",
            img.to_str().unwrap(),
            &r,
            "--arch",
            "amd64",
            "--source",
            "https://example.com/lvh",
        ],
        t.path(),
    ));
    assert!(out.trim().starts_with(&format!("{r}@sha256:")), "{out}");

    let m = skopeo_manifest(&r);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(m["annotations"]["dev.lvh.artifact"], "root-image");
    assert_eq!(m["annotations"]["dev.lvh.arch"], "amd64");
    assert_eq!(
        m["annotations"]["org.opencontainers.image.source"],
        "https://example.com/lvh"
    );

    // The layer is a tar holding data/images/base.qcow2.zst, readable by zstd(1).
    let (_, layer) = skopeo_copy_to_dir(&r, &t.path().join("copy"));
    let mut archive = tar::Archive::new(std::fs::File::open(&layer).unwrap());
    let unpack = t.path().join("unpacked");
    archive.unpack(&unpack).unwrap();
    let zst = unpack.join("data/images/base.qcow2.zst");
    assert!(zst.is_file(), "layer lacks data/images/base.qcow2.zst");
    let plain = t.path().join("plain");
    zstd_cli(&[
        "-q",
        "-d",
        zst.to_str().unwrap(),
        "-o",
        plain.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&plain).unwrap() == data,
        "zstd -d of the pushed layer differs"
    );

    // Round trip through lvh is bit-identical, and pulling again replaces it.
    let d = t.path().join("pulled");
    for _ in 0..2 {
        let out = ok(&lvh(
            &["images", "pull", &r, "--dir", d.to_str().unwrap()],
            t.path(),
        ));
        assert!(out.contains("base.qcow2"), "{out}");
        assert!(std::fs::read(d.join("images/base.qcow2")).unwrap() == data);
        assert_eq!(visible(&d.join("images")), ["base.qcow2"]);
    }
    // A single-platform image pulled for another platform: done, with a warning.
    let o = lvh(
        &[
            "images",
            "pull",
            &r,
            "--dir",
            d.to_str().unwrap(),
            "--platform",
            "linux/arm64",
        ],
        t.path(),
    );
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is a linux/amd64 image, not linux/arm64"),
        "{err}"
    );
}

#[test]
fn skopeo_built_artifact_in_lvh_layout_is_pulled() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let data = test_bytes(2 << 20, 2);
    let raw = t.path().join("kind.qcow2");
    write_file(&raw, &data);
    let zst_path = t.path().join("kind.qcow2.zst");
    zstd_cli(&[
        "-q",
        "-19",
        raw.to_str().unwrap(),
        "-o",
        zst_path.to_str().unwrap(),
    ]);
    let zst = std::fs::read(&zst_path).unwrap();
    let oci = t.path().join("layout");
    let base = layout::tar_of(&[("bin/busybox", 0o755, b"not really busybox")]);
    let images = layout::tar_of(&[("data/images/kind.qcow2.zst", 0o644, &zst)]);
    let m = layout::image(&oci, "amd64", &[base, images]);
    layout::finish(&oci, &m, "main");
    let r = reg.reference("lvh-images/root-images", "main");
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:main", oci.display()),
            &format!("docker://{r}"),
        ],
    );
    let d = t.path().join("out");
    ok(&lvh(
        &[
            "images",
            "pull",
            &r,
            "--dir",
            d.to_str().unwrap(),
            "--cache",
            "--platform",
            "linux/amd64",
        ],
        t.path(),
    ));
    assert_eq!(visible(&d.join("images")), ["kind.qcow2", "kind.qcow2.zst"]);
    assert!(std::fs::read(d.join("images/kind.qcow2")).unwrap() == data);
    assert!(std::fs::read(d.join("images/kind.qcow2.zst")).unwrap() == zst);
}

#[test]
fn a_tampered_blob_is_refused_and_leaves_nothing() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let r = reg.reference("root-images", "tampered");
    push_test_image(t.path(), &r, 2 << 20, 3);
    let m = skopeo_manifest(&r);
    let blob = reg.blob_path(m["layers"][0]["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&blob, &bytes).unwrap();

    let d = t.path().join("out");
    let err = fails(
        &lvh(
            &["images", "pull", &r, "--dir", d.to_str().unwrap()],
            t.path(),
        ),
        1,
    );
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(
        visible(&d.join("images")).is_empty(),
        "{:?}",
        visible(&d.join("images"))
    );
    assert!(partials(&d.join("images")).is_empty());

    let cache = t.path().join("cache");
    let opts = ResolveOptions {
        pull: PullOptions::for_arch(lvh::arch::Arch::Amd64),
        image_name: None,
    };
    let e = lvh::oci::resolve_image_with(&r, &opts, &cache, &NullReporter).unwrap_err();
    assert!(matches!(e, OciError::DigestMismatch { .. }), "{e}");
    assert!(visible(&cache.join("oci/images"))
        .iter()
        .all(|n| n.ends_with(".lock")));
}

#[test]
fn a_multi_arch_index_gives_the_right_platform() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let oci = t.path().join("layout");
    let mut entries = Vec::new();
    let mut want = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let data = test_bytes(1 << 20, 10 + i as u64);
        let raw = t.path().join(format!("{arch}.img"));
        write_file(&raw, &data);
        let zp = t.path().join(format!("{arch}.zst"));
        zstd_cli(&["-q", raw.to_str().unwrap(), "-o", zp.to_str().unwrap()]);
        let layer = layout::tar_of(&[(
            "data/images/base.qcow2.zst",
            0o644,
            &std::fs::read(&zp).unwrap(),
        )]);
        entries.push(layout::image(&oci, arch, &[layer]));
        want.push((arch.to_string(), data));
    }
    let idx = layout::index(&oci, &entries);
    layout::finish(&oci, &idx, "multi");
    let r = reg.reference("root-images", "multi");
    tool(
        "skopeo",
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:multi", oci.display()),
            &format!("docker://{r}"),
        ],
    );
    assert!(
        skopeo_manifest(&r)["manifests"].as_array().is_some(),
        "not an index"
    );
    for (arch, data) in &want {
        let d = t.path().join(format!("out-{arch}"));
        ok(&lvh(
            &[
                "images",
                "pull",
                &r,
                "--dir",
                d.to_str().unwrap(),
                "--platform",
                &format!("linux/{arch}"),
            ],
            t.path(),
        ));
        assert!(
            std::fs::read(d.join("images/base.qcow2")).unwrap() == *data,
            "wrong content for {arch}"
        );
    }
    let d = t.path().join("out-s390x");
    let err = fails(
        &lvh(
            &[
                "images",
                "pull",
                &r,
                "--dir",
                d.to_str().unwrap(),
                "--platform",
                "linux/s390x",
            ],
            t.path(),
        ),
        1,
    );
    assert!(
        err.contains("no image for platform linux/s390x")
            && err.contains("linux/amd64, linux/arm64"),
        "{err}"
    );
    let err = fails(
        &lvh(
            &[
                "images",
                "pull",
                &r,
                "--dir",
                d.to_str().unwrap(),
                "--platform",
                "s390x",
            ],
            t.path(),
        ),
        3,
    );
    assert!(err.contains("invalid platform \"s390x\""), "{err}");
}

pub(crate) fn kernel_tree(root: &Path) {
    write_file(&root.join("boot/vmlinuz-6.6.0"), &test_bytes(300_000, 20));
    write_file(&root.join("boot/config-6.6.0"), b"CONFIG_BPF=y\n");
    write_file(
        &root.join("boot/System.map-6.6.0"),
        b"ffffffff81000000 T _text\n",
    );
    write_file(
        &root.join("lib/modules/6.6.0/kernel/net/x.ko"),
        &test_bytes(50_000, 21),
    );
    write_file(
        &root.join("lib/modules/6.6.0/modules.dep"),
        b"kernel/net/x.ko:\n",
    );
    let script = root.join("lib/modules/6.6.0/run.sh");
    write_file(&script, b"#!/bin/sh\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("vmlinuz-6.6.0", root.join("boot/vmlinuz")).unwrap();
    std::os::unix::fs::symlink("/usr/src/linux-6.6", root.join("lib/modules/6.6.0/build")).unwrap();
}

#[test]
fn kernels_push_pull_and_catalog() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tar-install");
    kernel_tree(&tree);
    let repo = format!("{}/lvh-images/kernel-images", reg.addr);
    for tag in ["6.6-main", "6.6-20240101.1", "bpf-next-main", "5.10-main"] {
        ok(&lvh(
            &[
                "kernels",
                "push",
                tree.to_str().unwrap(),
                &format!("{repo}:{tag}"),
                "--arch",
                "amd64",
            ],
            t.path(),
        ));
    }
    let m = skopeo_manifest(&format!("{repo}:6.6-main"));
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(m["annotations"]["dev.lvh.kernel.version"], "6.6");
    assert_eq!(
        m["annotations"]["org.opencontainers.image.version"],
        "6.6.0"
    );

    // skopeo + zstd(1) + tar see /data/kernels/6.6/...
    let (_, layer) = skopeo_copy_to_dir(&format!("{repo}:6.6-main"), &t.path().join("copy"));
    let tarp = t.path().join("layer.tar");
    zstd_cli(&[
        "-q",
        "-d",
        layer.to_str().unwrap(),
        "-o",
        tarp.to_str().unwrap(),
    ]);
    let names: Vec<String> = tar::Archive::new(std::fs::File::open(&tarp).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n == "data/kernels/6.6/boot/vmlinuz-6.6.0"),
        "{names:?}"
    );

    let cat = ok(&lvh(&["kernels", "catalog", "--repo", &repo], t.path()));
    assert_eq!(cat, "bpf-next\n5.10\n6.6\n");
    let cat = ok(&lvh(
        &["kernels", "catalog", "6.6", "--repo", &repo],
        t.path(),
    ));
    assert_eq!(cat, "6.6-20240101.1\n6.6-main\n");
    ok(&lvh(
        &[
            "kernels",
            "push",
            tree.to_str().unwrap(),
            &format!("{repo}-ci:6.1-main"),
        ],
        t.path(),
    ));
    let cat = ok(&lvh(
        &["kernels", "catalog", "--repo", &repo, "--ci"],
        t.path(),
    ));
    assert_eq!(cat, "6.1\n");
    let err = fails(
        &lvh(&["kernels", "catalog", "7.0", "--repo", &repo], t.path()),
        1,
    );
    assert!(
        err.contains("7.0") && err.contains("bpf-next, 5.10, 6.6"),
        "{err}"
    );

    let d = t.path().join("kernels");
    let out = ok(&lvh(
        &[
            "kernels",
            "pull",
            "6.6-main",
            "--repo",
            &repo,
            "-d",
            d.to_str().unwrap(),
            "-p",
            "linux/amd64",
        ],
        t.path(),
    ));
    let k = d.join("6.6-main");
    assert_eq!(out.trim(), k.to_str().unwrap());
    for f in [
        "boot/vmlinuz-6.6.0",
        "boot/config-6.6.0",
        "boot/System.map-6.6.0",
        "lib/modules/6.6.0/kernel/net/x.ko",
        "lib/modules/6.6.0/modules.dep",
    ] {
        assert!(
            std::fs::read(k.join(f)).unwrap() == std::fs::read(tree.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let mode = std::fs::metadata(k.join("lib/modules/6.6.0/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750);
    assert_eq!(
        std::fs::read_link(k.join("boot/vmlinuz")).unwrap(),
        Path::new("vmlinuz-6.6.0")
    );
    assert!(
        std::fs::symlink_metadata(k.join("lib/modules/6.6.0/build")).is_err(),
        "escaping symlink extracted"
    );
    assert!(visible(&d) == ["6.6-main"], "{:?}", visible(&d));

    // Without --dir, as little-vm-helper's README does it (`lvh kernels pull
    // 6.6-main` then `find 6.6-main/`): into ./6.6-main.
    let cwd = t.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let o = crate::support::lvh()
        .args(["kernels", "pull", "6.6-main", "--repo", &repo])
        .env("LVH_CACHE_DIR", t.path())
        .current_dir(&cwd)
        .output()
        .unwrap();
    ok(&o);
    assert!(
        cwd.join("6.6-main/boot/vmlinuz-6.6.0").is_file(),
        "{:?}",
        visible(&cwd)
    );
    assert_eq!(visible(&cwd), ["6.6-main"]);

    let err = fails(
        &lvh(
            &[
                "kernels",
                "pull",
                "nope",
                "--repo",
                &repo,
                "-d",
                d.to_str().unwrap(),
            ],
            t.path(),
        ),
        3,
    );
    assert!(err.contains("invalid kernel tag"), "{err}");
    let err = fails(
        &lvh(
            &[
                "kernels",
                "pull",
                "4.19-main",
                "--repo",
                &repo,
                "-d",
                d.to_str().unwrap(),
            ],
            t.path(),
        ),
        1,
    );
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn interrupted_pulls_leave_nothing_and_the_cache_skips_downloads() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let data = push_test_image(t.path(), &reg.reference("root-images", "cache"), 3 << 20, 4);
    let layer_size = skopeo_manifest(&reg.reference("root-images", "cache"))["layers"][0]["size"]
        .as_u64()
        .unwrap();
    assert!(layer_size > 500_000, "test layer too small: {layer_size}");

    // The connection drops in the middle of the layer.
    let cut = Proxy::start(&reg.addr, Some(layer_size / 2));
    let via_cut = format!("{}/root-images:cache", cut.addr);
    let d = t.path().join("out");
    let err = fails(
        &lvh(
            &["images", "pull", &via_cut, "--dir", d.to_str().unwrap()],
            t.path(),
        ),
        1,
    );
    assert!(err.contains("failed to pull"), "{err}");
    assert!(visible(&d.join("images")).is_empty() && partials(&d.join("images")).is_empty());

    let cache = t.path().join("cache");
    let opts = ResolveOptions {
        pull: PullOptions::for_arch(lvh::arch::Arch::Amd64),
        image_name: None,
    };
    let cut2 = Proxy::start(&reg.addr, Some(layer_size / 2));
    let e = lvh::oci::resolve_image_with(
        &format!("{}/root-images:cache", cut2.addr),
        &opts,
        &cache,
        &NullReporter,
    );
    assert!(e.is_err());
    assert!(visible(&cache.join("oci/images"))
        .iter()
        .all(|n| n.ends_with(".lock")));

    // Rerunning completes; a second resolve downloads nothing but the manifest.
    let proxy = Proxy::start(&reg.addr, None);
    let via = format!("{}/root-images:cache", proxy.addr);
    let first = lvh::oci::resolve_image_with(&via, &opts, &cache, &NullReporter).unwrap();
    assert!(!first.cached);
    assert!(std::fs::read(&first.path).unwrap() == data);
    assert!(
        proxy.bytes() >= layer_size,
        "{} < {layer_size}",
        proxy.bytes()
    );
    let before = proxy.bytes();
    let rec = RecordingReporter::default();
    let second = lvh::oci::resolve_image_with(&via, &opts, &cache, &rec).unwrap();
    assert!(second.cached);
    assert_eq!(second.path, first.path);
    assert_eq!(second.manifest_digest, first.manifest_digest);
    let moved = proxy.bytes() - before;
    assert!(moved < 64 << 10, "second resolve moved {moved} bytes");
    assert!(rec.events().iter().any(|e| matches!(
        e,
        Event::StageEnd {
            outcome: Outcome::Cached,
            ..
        }
    )));

    // With the registry gone, the cached manifest still resolves the tag.
    drop(proxy);
    drop(reg);
    std::thread::sleep(Duration::from_millis(200));
    let rec = RecordingReporter::default();
    let third = lvh::oci::resolve_image_with(&via, &opts, &cache, &rec).unwrap();
    assert!(third.cached && third.path == first.path);
    assert!(rec
        .events()
        .iter()
        .any(|e| matches!(e, Event::Warning(w) if w.contains("unreachable"))));
}

#[test]
fn clear_errors_for_missing_and_unreachable() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("out");
    let err = fails(
        &lvh(
            &[
                "images",
                "pull",
                &reg.reference("nothing", "here"),
                "--dir",
                d.to_str().unwrap(),
            ],
            t.path(),
        ),
        1,
    );
    assert!(err.contains("not found"), "{err}");
    let port = registry::free_port();
    let err = fails(
        &lvh(
            &[
                "images",
                "pull",
                &format!("127.0.0.1:{port}/x:y"),
                "--dir",
                d.to_str().unwrap(),
            ],
            t.path(),
        ),
        1,
    );
    assert!(
        err.contains("unreachable") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let err = fails(
        &lvh(
            &[
                "images",
                "pull",
                "_data/images/base.qcow2",
                "--dir",
                d.to_str().unwrap(),
            ],
            t.path(),
        ),
        3,
    );
    assert!(err.contains("invalid OCI reference"), "{err}");
}

/// bcrypt of "secret" (cost 4), for the registry's htpasswd file.
const HTPASSWD: &str = "lvh:$2b$04$vPvvw1F09JynnN1ArYr9Y.GFkn2VRguJ/qmtVNdauv0PPwsYSqDny\n";

fn lvh_env(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_lvh"));
    c.args(args)
        .env("CI", "true")
        .env("LVH_CACHE_DIR", cache)
        .env("HOME", cache)
        .env_remove("LVH_LOG")
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run lvh")
}

#[test]
fn credentials_come_from_docker_config_and_the_environment() {
    let reg =
        Registry::start_with("auth:\n  htpasswd:\n    realm: lvh-test\n    path: {dir}/htpasswd\n");
    std::fs::write(reg.dir.path().join("htpasswd"), HTPASSWD).unwrap();
    let t = tempfile::tempdir().unwrap();
    let data = test_bytes(1 << 20, 5);
    let img = t.path().join("base.qcow2");
    write_file(&img, &data);
    let r = reg.reference("private/root-images", "v1");
    let push = ["images", "push", img.to_str().unwrap(), r.as_str()];

    let err = fails(&lvh_env(&push, t.path(), &[]), 1);
    assert!(err.contains("unauthorized"), "{err}");
    let wrong = [
        ("LVH_REGISTRY_USERNAME", "lvh"),
        ("LVH_REGISTRY_PASSWORD", "nope"),
    ];
    let err = fails(&lvh_env(&push, t.path(), &wrong), 1);
    assert!(err.contains("unauthorized"), "{err}");

    let docker = t.path().join("docker");
    write_file(
        &docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"bHZoOnNlY3JldA=="}}}}}}"#,
            reg.addr
        )
        .as_bytes(),
    );
    let cfg = [("DOCKER_CONFIG", docker.to_str().unwrap())];
    ok(&lvh_env(&push, t.path(), &cfg));
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "lvh:secret",
            "--raw",
            &format!("docker://{r}"),
        ],
    );
    assert!(String::from_utf8_lossy(&raw).contains("dev.lvh.artifact"));
    let d = t.path().join("out");
    let right = [
        ("LVH_REGISTRY_USERNAME", "lvh"),
        ("LVH_REGISTRY_PASSWORD", "secret"),
    ];
    ok(&lvh_env(
        &["images", "pull", &r, "--dir", d.to_str().unwrap()],
        t.path(),
        &right,
    ));
    assert!(std::fs::read(d.join("images/base.qcow2")).unwrap() == data);
}

#[test]
fn ctrl_c_during_a_pull_leaves_nothing_and_a_rerun_completes() {
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let r = reg.reference("root-images", "sigint");
    let data = push_test_image(t.path(), &r, 3 << 20, 6);
    let slow = Proxy::start_slow(&reg.addr, 256 << 10);
    let d = t.path().join("out");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lvh"))
        .args([
            "images",
            "pull",
            &format!("{}/root-images:sigint", slow.addr),
            "--dir",
            d.to_str().unwrap(),
        ])
        .env("CI", "true")
        .env("LVH_CACHE_DIR", t.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the layer is streaming, then interrupt.
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while slow.bytes() < 200_000 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(slow.bytes() >= 200_000, "the pull never started streaming");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = fails(&out, 130);
    assert!(err.contains("interrupted"), "{err}");
    assert!(visible(&d.join("images")).is_empty() && partials(&d.join("images")).is_empty());
    ok(&lvh(
        &["images", "pull", &r, "--dir", d.to_str().unwrap()],
        t.path(),
    ));
    assert!(std::fs::read(d.join("images/base.qcow2")).unwrap() == data);
}
