//! Every `image-version` form that little-vm-helper's users write, against a
//! registry in little-vm-helper-images' published layout (`kind:<tag>` holding
//! `/data/images/kind_<kernel>.qcow2.zst`, `kernel-images:<tag>` holding
//! `/data/kernels/<kernel>/`): the action finds the image in what it pulled,
//! puts it in `<parent>/images/<arch>/images/`, and boots it (command mode,
//! with the fixtures' small kernel pulled by kernel-version, under TCG). One
//! form again from actions/cache; one that does not exist fails naming the
//! input; arm64's folders hold an arm64 guest.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use super::workflow::{last, stderr_of, Job};
use super::{preinstall, push_image, push_kernel, stdout};
use crate::oci::registry::Registry;
use crate::support::assert_code;
use lvh::arch::Arch;

/// The fixture root image for `arch` as qcow2 (the action boots `<name>.qcow2`),
/// converted once per test process.
pub fn qcow2_root(arch: Arch) -> PathBuf {
    static DONE: OnceLock<Mutex<Vec<(Arch, PathBuf)>>> = OnceLock::new();
    let done = DONE.get_or_init(|| Mutex::new(Vec::new()));
    let mut done = done.lock().unwrap();
    if let Some((_, p)) = done.iter().find(|(a, _)| *a == arch) {
        return p.clone();
    }
    let raw = crate::support::fixtures::image::root_image(arch).expect("root image fixture");
    let dir = tempfile::tempdir().unwrap().keep();
    let q = dir.join("root.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(&q)
        .status()
        .unwrap();
    assert!(st.success(), "qemu-img convert {}", raw.display());
    done.push((arch, q.clone()));
    q
}

fn virtual_size(image: &Path) -> u64 {
    let o = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(image)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

/// One use of the action in command mode: `image`:`version` from `repo`, the
/// kernel `kernel` from `<repo>/kernel-images`, for `arch`.
fn job(store: &Path, repo: &str, image: &str, version: &str, kernel: &str, arch: &str) -> Job {
    let mut j = Job::new(&[("test-name", "forms")], store);
    preinstall(&mut j);
    let parent = j.path("parent").display().to_string();
    let kernel_repo = format!("{repo}/kernel-images");
    for (k, v) in [
        ("image-repo", repo),
        ("image", image),
        ("image-version", version),
        ("kernel-version", kernel),
        ("kernel-repo", &kernel_repo),
        ("images-folder-parent", &parent),
        ("arch", arch),
        ("command-mode", "true"),
        ("cpu", "1"),
        ("mem", "512M"),
        ("cmd", "echo \"booted \\$(uname -m)\""),
    ] {
        j.set(k, v);
    }
    j
}

/// Runs the whole action and checks it booted `want` (a name in
/// `<parent>/images/<arch>/images/`) on `machine`.
fn boots(j: &mut Job, want: &str, arch: &str, machine: &str) -> String {
    let ran = j.run_until("");
    let o = last(&ran);
    let what = format!("{}:{}", j.inputs["image"], j.inputs["image-version"]);
    assert_code(o, 0);
    let parent = j.inputs["images-folder-parent"].clone();
    let file = format!("{parent}/images/{arch}/images/{want}");
    assert_eq!(j.outputs["lvh-pull"]["image-file"], file, "{what}");
    assert!(
        stdout(o).contains(&format!("booted {machine}")),
        "{what}: {}",
        stdout(o)
    );
    assert!(
        Path::new(&format!(
            "{parent}/kernels/{arch}/{}/boot",
            j.inputs["kernel-version"]
        ))
        .is_dir(),
        "{what}: kernel not in <parent>/kernels/<arch>/<tag>"
    );
    let e = stderr_of(&ran);
    // cpu-kind's default `host` under TCG: one notice, max.
    assert_eq!(
        e.matches("cpu-kind 'host' needs KVM").count(),
        1,
        "{what}: {e}"
    );
    e
}

#[test]
fn action_finds_and_boots_every_image_version_form_amd64() {
    let root = qcow2_root(Arch::Amd64);
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64).expect("kernel fixture");
    let reg = Registry::start();
    let repo = format!("{}/lvh-images", reg.addr);
    let reference = format!("{repo}/kernel-images:6.12-main");
    push_kernel(&kernel.install, &reference, Arch::Amd64);
    // (file in the artifact, tags)
    let mut digest = String::new();
    for (file, tags) in [
        ("kind_5.10.qcow2", &["5.10-main"][..]),
        ("kind_6.6.qcow2", &["6.6-20250105.013256"]),
        (
            "kind_bpf-next.qcow2",
            &["bpf-next-20250105.013256", "bpf-next-main"],
        ),
        ("kind_rhel8.6.qcow2", &["rhel8.6-20250105.013256"]),
    ] {
        for tag in tags {
            let links = tempfile::tempdir().unwrap();
            let reference = format!("{repo}/kind:{tag}");
            let out = push_image(links.path(), file, &root, &reference, Arch::Amd64);
            if *tag == "6.6-20250105.013256" {
                digest = out.rsplit_once('@').expect("ref@digest").1.to_string();
            }
        }
    }
    assert!(digest.starts_with("sha256:"), "{digest}");
    let pinned = format!("6.6-20250105.013256@{digest}");

    let store = tempfile::tempdir().unwrap();
    // (image-version, the file booted, additional-disk-size, its virtual size)
    let forms: &[(&str, &str, &str, Option<u64>)] = &[
        ("5.10-main", "kind_5.10.qcow2", "", None),
        ("6.6-20250105.013256", "kind_6.6.qcow2", "3G", Some(3 << 30)),
        (
            "bpf-next-20250105.013256",
            "kind_bpf-next.qcow2",
            "+512M",
            Some((2 << 30) + (512 << 20)),
        ),
        ("bpf-next-main", "kind_bpf-next.qcow2", "", None),
        ("rhel8.6-20250105.013256", "kind_rhel8.6.qcow2", "", None),
        (&pinned, "kind_6.6.qcow2", "", None),
    ];
    let mut report = Vec::new();
    for (version, want, size, want_size) in forms {
        let mut j = job(store.path(), &repo, "kind", version, "6.12-main", "amd64");
        j.set("additional-disk-size", size);
        boots(&mut j, want, "amd64", "x86_64");
        if let Some(s) = want_size {
            let f = j.outputs["lvh-pull"]["image-file"].clone();
            assert_eq!(virtual_size(Path::new(&f)), *s, "{version} {size}");
        }
        report.push(format!("{version} -> {want}"));
        if *version == "5.10-main" {
            // The same form again, from actions/cache: no pull, same file.
            let saved = j.post();
            assert!(
                saved.contains(&"lvh-image-kind_5.10-main_amd64".to_string())
                    && saved.contains(&"lvh-kernel-6.12-main_amd64".to_string()),
                "{saved:?}"
            );
            // A fresh runner: the same (empty) images-folder-parent.
            let parent = j.path("parent");
            std::fs::remove_dir_all(&parent).unwrap();
            std::fs::create_dir_all(&parent).unwrap();
            let mut again = job(store.path(), &repo, "kind", version, "6.12-main", "amd64");
            again.set("images-folder-parent", &parent.display().to_string());
            let e = boots(&mut again, want, "amd64", "x86_64");
            assert!(
                e.contains("image from the cache") && e.contains("kernel from the cache"),
                "{e}"
            );
            assert!(!e.contains("pulling"), "{e}");
        }
    }
    eprintln!("image-version forms:\n  {}", report.join("\n  "));

    // A version that is not in the registry: fails, naming the input.
    let mut j = job(
        store.path(),
        &repo,
        "kind",
        "6.6-20990101.000000",
        "6.12-main",
        "amd64",
    );
    let ran = j.run_until("");
    assert_code(last(&ran), 1);
    let e = stderr_of(&ran);
    assert!(e.contains("image-version '6.6-20990101.000000'"), "{e}");
}

/// little-vm-helper-images' arm64 CI artifact (`kind-ci:<kernel>-<date>-arm64`)
/// with `arch: arm64`: `<parent>/images/arm64/images/kind_6.12.qcow2` and
/// `<parent>/kernels/arm64/<tag>`, booted as an aarch64 guest (pwru's arm64 job
/// passes its image-version as kernel-version, less the arch).
#[test]
fn action_finds_and_boots_an_arm64_image_in_the_arm64_folders() {
    let root = qcow2_root(Arch::Arm64);
    let kernel =
        crate::support::fixtures::kernel::kernel(Arch::Arm64).expect("arm64 kernel fixture");
    let reg = Registry::start();
    let repo = format!("{}/lvh-images", reg.addr);
    let reference = format!("{repo}/kernel-images:6.12-20250616.013250");
    push_kernel(&kernel.install, &reference, Arch::Arm64);
    let links = tempfile::tempdir().unwrap();
    let reference = format!("{repo}/kind-ci:6.12-20250616.013250-arm64");
    push_image(
        links.path(),
        "kind_6.12.qcow2",
        &root,
        &reference,
        Arch::Arm64,
    );
    let store = tempfile::tempdir().unwrap();
    let mut j = job(
        store.path(),
        &repo,
        "kind-ci",
        "6.12-20250616.013250-arm64",
        "6.12-20250616.013250",
        "arm64",
    );
    boots(&mut j, "kind_6.12.qcow2", "arm64", "aarch64");
    assert_eq!(
        j.outputs["lvh-setup"]["image-cache-key"],
        "lvh-image-kind-ci_6.12-20250616.013250-arm64_arm64"
    );
    assert_eq!(
        j.outputs["lvh-setup"]["kernel-cache-key"],
        "lvh-kernel-6.12-20250616.013250_arm64"
    );
}
