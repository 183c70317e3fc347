//! little-vm-helper-images' kernel command forms against a real tree
//! (Debian's linux-source-6.12): `lvh kernels --dir D configure --arch amd64 NAME`
//! as dockerfiles/kernel-images writes it, and `lvh kernels --dir D
//! raw_configure <tree> rhel8` as dockerfiles/kernel-images-rhel8 does, with
//! the url-less rhel8 entry and the extra keys of tests/fixtures/lvh-images.

use std::path::Path;
use std::process::Command;

use crate::support::fixtures::kernel::source_repo;

fn lvh(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lvh"))
        .args(args)
        .current_dir(dir)
        .env("CI", "true")
        .output()
        .expect("run lvh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_has(config: &str, line: &str) -> bool {
    config.lines().any(|l| l == line)
}

#[test]
fn dockerfile_forms_configure_and_raw_configure_a_real_tree() {
    let repo = source_repo().unwrap();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // The fixture's kernels.json, with one kernel pointed at the local 6.12 repository.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lvh-images");
    let mut conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("kernels.json")).unwrap())
            .unwrap();
    conf["kernels"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "deb-6.12",
            "url": repo.display().to_string(),
            "note": "an unknown key, ignored with a warning",
        }));
    std::fs::write(
        dir.join("kernels.json"),
        serde_json::to_string_pretty(&conf).unwrap(),
    )
    .unwrap();
    let ds = dir.to_str().unwrap();

    let (ok, _, e) = lvh(dir, &["kernels", "--dir", ds, "fetch", "deb-6.12"]);
    assert!(ok, "{e}");
    assert!(e.contains("unknown key \"note\""), "{e}");

    // dockerfiles/kernel-images: `lvh kernels --dir . configure NAME` (with --arch as the
    // arm64 builds pass it).
    let t = std::time::Instant::now();
    let (ok, out, e) = lvh(
        dir,
        &[
            "kernels",
            "--dir",
            ".",
            "configure",
            "--arch",
            "amd64",
            "deb-6.12",
        ],
    );
    assert!(ok, "{e}");
    eprintln!("configure took {:.0?}", t.elapsed());
    let tree = dir.join("kernels/deb-6.12");
    assert!(out.trim().ends_with("kernels/deb-6.12/.config"), "{out}");
    let config = std::fs::read_to_string(tree.join(".config")).unwrap();
    // common_opts from the fixture took effect
    assert!(config_has(&config, "CONFIG_BPF_SYSCALL=y"), "BPF_SYSCALL");
    assert!(config_has(&config, "CONFIG_9P_FS=y"), "9P_FS");
    assert!(config_has(&config, "# CONFIG_WERROR is not set"), "WERROR");

    // dockerfiles/kernel-images-rhel8: in the tree, `lvh kernels --dir /data raw_configure . rhel8`.
    let t = std::time::Instant::now();
    let (ok, out, e) = lvh(
        &tree,
        &["kernels", "--dir", ds, "raw_configure", ".", "rhel8"],
    );
    assert!(ok, "{e}");
    eprintln!("raw_configure took {:.0?}", t.elapsed());
    assert!(out.trim().ends_with(".config"), "{out}");
    let config = std::fs::read_to_string(tree.join(".config")).unwrap();
    // rhel8's own opts on top of common_opts
    assert!(config_has(&config, "CONFIG_EXT4_FS=y"), "EXT4_FS");
    assert!(
        config_has(&config, "# CONFIG_MODULE_SIG is not set"),
        "MODULE_SIG"
    );
    assert!(config_has(&config, "CONFIG_RELOCATABLE=y"), "RELOCATABLE");
    assert!(
        config_has(&config, "CONFIG_BPF_SYSCALL=y"),
        "BPF_SYSCALL kept"
    );

    // rhel8 has no url: fetch refuses, naming it; --strict refuses the unknown keys.
    let (ok, _, e) = lvh(dir, &["kernels", "--dir", ".", "fetch", "rhel8"]);
    assert!(!ok && e.contains("kernel \"rhel8\" has no url"), "{e}");
    let (ok, _, e) = lvh(dir, &["kernels", "--dir", ".", "--strict", "list"]);
    assert!(!ok && e.contains("unknown key \"comment\""), "{e}");
}
