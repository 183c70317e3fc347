//! The GitHub action's wiring and decisions, without a VM: action.yaml keeps
//! little-vm-helper's inputs and defaults, every step hands every input to its
//! script under the right name, the scripts read no input that does not exist,
//! and the pure shell functions of scripts/action/lib.sh (image file names,
//! which lvh to install, folders and cache keys) give little-vm-helper's answers
//! or better ones, table by table.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn read(p: &str) -> String {
    std::fs::read_to_string(Path::new(REPO).join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Inputs of action.yaml and their defaults (None without one).
fn inputs() -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let mut current = None;
    for line in read("action.yaml").lines().take_while(|l| *l != "runs:") {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                out.insert(name.to_string(), None);
                current = Some(name.to_string());
            }
        } else if let (Some(n), Some(v)) = (&current, line.strip_prefix("    default: ")) {
            out.insert(n.clone(), Some(v.trim_matches('\'').to_string()));
        }
    }
    out
}

pub fn env_name(input: &str) -> String {
    format!("INPUT_{}", input.to_uppercase().replace('-', "_"))
}

#[test]
fn inputs_and_defaults_are_little_vm_helpers() {
    let got = inputs();
    // little-vm-helper's action.yaml: name and default ("" for none).
    let theirs = [
        ("test-name", None),
        ("image-repo", Some("quay.io/lvh-images")),
        ("image", Some("kind")),
        ("image-version", Some("5.10-main")),
        ("images-folder-parent", Some("")),
        // theirs: v0.0.30, a Docker tag; ours: the release the action is pinned to
        // (and theirs gets a warning and that release).
        ("lvh-version", Some("")),
        ("cmd", None),
        ("ssh-port", Some("2222")),
        ("ssh-connect-wait-retries", Some("300")),
        ("ssh-connect-wait-timeout", Some("1")),
        ("host-mount", None),
        ("provision", Some("true")),
        ("install-dependencies", Some("false")),
        ("serial-port", Some("0")),
        ("cpu", None),
        ("mem", None),
        ("cpu-kind", Some("host")),
        ("kernel-path", None),
        ("kernel", None),
        ("verbose", Some("false")),
        ("port-forward", None),
        // theirs: amd64; ours: the runner's arch (amd64 on amd64 runners).
        ("arch", Some("")),
        ("kernel-version", Some("")),
        ("additional-disk-size", Some("")),
    ];
    for (name, default) in theirs {
        let d = got
            .get(name)
            .unwrap_or_else(|| panic!("input {name} missing from action.yaml"));
        assert_eq!(d.as_deref(), default, "default of input {name}");
    }
}

#[test]
fn every_step_gets_every_input_and_scripts_read_only_inputs() {
    let yaml = read("action.yaml");
    assert!(!yaml.contains("OWNER"), "a placeholder in action.yaml");
    let names = inputs();
    let steps: Vec<&str> = yaml.split("\n    - ").skip(1).collect();
    let mut scripts = Vec::new();
    for step in &steps {
        let Some(at) = step.find("/scripts/action/") else {
            assert!(
                step.contains("uses: actions/cache@"),
                "a step that is neither a script nor a cache: {step}"
            );
            continue;
        };
        let script = step[at + 1..].split('"').next().unwrap();
        assert!(
            Path::new(REPO).join(script).is_file(),
            "{script} is missing"
        );
        scripts.push(script.to_string());
        for n in names.keys().filter(|n| *n != "test-name") {
            let wire = format!("{}: ${{{{ inputs.{n} }}}}", env_name(n));
            assert!(step.contains(&wire), "{script}'s step lacks `{wire}`");
        }
    }
    let want =
        ["setup", "install", "pull", "start", "run"].map(|s| format!("scripts/action/{s}.sh"));
    assert_eq!(scripts, want, "the action's steps, in order");

    let known: Vec<String> = names.keys().map(|n| env_name(n)).collect();
    for entry in std::fs::read_dir(Path::new(REPO).join("scripts/action")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "sh") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("OWNER"), "a placeholder in {}", p.display());
        for (i, _) in text.match_indices("INPUT_") {
            let var: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if var == "INPUT_" {
                continue; // `INPUT_*` in a comment
            }
            assert!(
                known.contains(&var),
                "{} reads {var}, not an input of action.yaml",
                p.display()
            );
        }
    }
}

/// Runs `snippet` in bash after sourcing scripts/action/lib.sh, with these
/// environment variables (inputs by their action.yaml names, others as is).
pub fn lib(snippet: &str, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(format!(
            "set -euo pipefail; source '{REPO}/scripts/action/lib.sh'; {snippet}"
        ))
        .env_remove("GITHUB_ACTION_PATH")
        .env_remove("GITHUB_REPOSITORY")
        .env_remove("LVH_BIN");
    for (k, v) in env {
        let k = if k.contains('-') || k.chars().all(|c| c.is_ascii_lowercase()) {
            env_name(k)
        } else {
            k.to_string()
        };
        c.env(k, v);
    }
    c.output().expect("bash")
}

fn out(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

const DIGEST: &str = "sha256:4a8b5f6d2c1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a";

#[test]
fn image_file_is_taken_from_what_was_pulled() {
    let pinned = format!("6.6-20250105.013256@{DIGEST}");
    // (image, image-version, files the artifact holds) -> the image booted, and
    // little-vm-helper's own rule's name (its sed on the version).
    let cases: &[(&str, &str, &[&str], &str, &str)] = &[
        (
            "kind",
            "5.10-main",
            &["kind_5.10.qcow2"],
            "kind_5.10.qcow2",
            "kind_5.10-main",
        ),
        (
            "kind",
            "6.6-20250105.013256",
            &["kind_6.6.qcow2"],
            "kind_6.6.qcow2",
            "kind_6.6",
        ),
        (
            "kind",
            "bpf-next-20250105.013256",
            &["kind_bpf-next.qcow2"],
            "kind_bpf-next.qcow2",
            "kind_bpf-next",
        ),
        (
            "kind",
            "bpf-next-main",
            &["kind_bpf-next.qcow2"],
            "kind_bpf-next.qcow2",
            "kind_bpf-next-main",
        ),
        (
            "kind",
            "rhel8.6-20250105.013256",
            &["kind_rhel8.6.qcow2"],
            "kind_rhel8.6.qcow2",
            "kind_rhel8.6",
        ),
        (
            "kind",
            &pinned,
            &["kind_6.6.qcow2"],
            "kind_6.6.qcow2",
            "kind_6.6",
        ),
        // little-vm-helper-images' CI tags: <kernel>-<date>-<arch>, image less -ci.
        (
            "kind-ci",
            "6.12-20250616.013250-arm64",
            &["kind_6.12.qcow2"],
            "kind_6.12.qcow2",
            "kind_6.12",
        ),
        (
            "complexity-test",
            "6.6-main",
            &["complexity-test_6.6.qcow2"],
            "complexity-test_6.6.qcow2",
            "complexity-test_6.6-main",
        ),
        // No name starts with <image>_: the only image.
        (
            "base",
            "6.6-main",
            &["root.img"],
            "root.img",
            "base_6.6-main",
        ),
        // Several start with <image>_: the rule's.
        (
            "kind",
            "6.6-20250105.013256",
            &["kind_6.6-debug.qcow2", "kind_6.6.qcow2"],
            "kind_6.6.qcow2",
            "kind_6.6",
        ),
    ];
    for (image, version, files, want, rule) in cases {
        let paths: Vec<String> = files
            .iter()
            .map(|f| format!("'/p/images/amd64/images/{f}'"))
            .collect();
        let env = [("image", *image), ("image-version", *version)];
        let got = out(&lib(&format!("pick_image {}", paths.join(" ")), &env));
        assert_eq!(
            got,
            format!("/p/images/amd64/images/{want}"),
            "{image}:{version}"
        );
        assert_eq!(
            out(&lib("image_rule_name", &env)),
            *rule,
            "{image}:{version}"
        );
    }
    // Nothing decides: an error naming the inputs and what the artifact holds.
    let o = lib(
        "pick_image /d/base.qcow2 /d/kind.qcow2 /d/complexity-test.qcow2",
        &[
            ("image", "root-images"),
            ("image-version", "20250105.013256-sid-amd64"),
        ],
    );
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    for want in [
        "input image 'root-images'",
        "image-version '20250105.013256-sid-amd64'",
        "base.qcow2 kind.qcow2 complexity-test.qcow2",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
}

/// Runs setup.sh with these inputs and environment; returns its outputs.
fn setup(inputs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut c = Command::new("bash");
    c.arg(Path::new(REPO).join("scripts/action/setup.sh"))
        .env("GITHUB_OUTPUT", &out)
        .env("RUNNER_TOOL_CACHE", tmp.path())
        // No lvh on PATH: the setup decides what to install.
        .env("PATH", "/usr/bin:/bin")
        .env_remove("LVH_BIN")
        .env_remove("GITHUB_ACTION_PATH");
    for (k, v) in inputs {
        let k = if k.starts_with("LVH_") {
            k.to_string()
        } else {
            env_name(k)
        };
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn setup_derives_little_vm_helpers_folders_and_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().display().to_string();
    let cases = [
        // (image, version, arch) -> (cache folder under <parent>/images/<arch>/cache, cache key)
        (
            ("kind", "5.10-main", "amd64"),
            ("kind_5.10-main", "lvh-image-kind_5.10-main_amd64"),
        ),
        (
            ("kind-ci", "6.6-20250616.013250-amd64", "amd64"),
            (
                "kind-ci_6.6-20250616.013250-amd64",
                "lvh-image-kind-ci_6.6-20250616.013250-amd64_amd64",
            ),
        ),
        (
            ("base", "bpf-next-main", "arm64"),
            ("base_bpf-next-main", "lvh-image-base_bpf-next-main_arm64"),
        ),
    ];
    for ((image, version, arch), (cache, key)) in cases {
        let o = setup(&[
            ("image", image),
            ("image-version", version),
            ("images-folder-parent", &parent),
            ("arch", arch),
            ("kernel-version", "6.6-main"),
        ]);
        assert_eq!(o["arch"], arch);
        assert_eq!(o["images-dir"], format!("{parent}/images/{arch}/images"));
        assert_eq!(
            o["image-cache-path"],
            format!("{parent}/images/{arch}/cache/{cache}")
        );
        assert_eq!(o["image-cache-key"], key);
        assert_eq!(o["kernel-dir"], format!("{parent}/kernels/{arch}/6.6-main"));
        assert_eq!(o["kernel-cache-key"], format!("lvh-kernel-6.6-main_{arch}"));
        // The folders exist before actions/cache restores into them.
        for d in [
            format!("images/{arch}/images"),
            format!("images/{arch}/cache"),
            format!("kernels/{arch}"),
        ] {
            assert!(tmp.path().join(&d).is_dir(), "{d}");
        }
    }
    // A digest-pinned version makes a folder name without ':' or '@'.
    let o = setup(&[
        ("image", "kind"),
        ("image-version", &format!("6.6-20250105.013256@{DIGEST}")),
        ("images-folder-parent", &parent),
        ("arch", "amd64"),
    ]);
    assert_eq!(
        o["image-cache-path"],
        format!(
            "{parent}/images/amd64/cache/kind_6.6-20250105.013256_{}",
            DIGEST.replace(':', "_")
        )
    );

    // What to install, and its cache key.
    let o = setup(&[
        ("image", "kind"),
        ("image-version", "5.10-main"),
        ("images-folder-parent", &parent),
        ("lvh-version", "v0.3.1"),
    ]);
    assert_eq!(
        (o["lvh-install"].as_str(), o["lvh-version"].as_str()),
        ("release", "v0.3.1")
    );
    assert!(o["lvh-cache-key"].ends_with("-v0.3.1"), "{o:?}");
    assert!(o["lvh-root"].contains("/lvh/v0.3.1/"), "{o:?}");
    let o = setup(&[
        ("image", "kind"),
        ("image-version", "5.10-main"),
        ("images-folder-parent", &parent),
        ("LVH_BIN", "/opt/lvh"),
    ]);
    assert_eq!(o["lvh-install"], "skip");
}

#[test]
fn lvh_version_picks_a_release_a_commit_or_the_actions_own_release() {
    let cargo = format!("v{}", env!("CARGO_PKG_VERSION"));
    let pinned = "/home/runner/work/_actions/acme/lvh/v0.4.0";
    // (lvh-version, env) -> (plan, warns)
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(&str, Env, String, bool)] = &[
        (
            "",
            &[("LVH_ACTION_REF", "v0.2.0")],
            "release v0.2.0".into(),
            false,
        ),
        (
            "",
            &[("GITHUB_ACTION_PATH", pinned)],
            "release v0.4.0".into(),
            false,
        ),
        // A branch, a commit pin, `uses: ./`: the release in the action's Cargo.toml.
        (
            "",
            &[("LVH_ACTION_REF", "main")],
            format!("release {cargo}"),
            false,
        ),
        (
            "",
            &[("LVH_ACTION_REF", "0123456789abcdef0123456789abcdef01234567")],
            format!("release {cargo}"),
            false,
        ),
        ("", &[], format!("release {cargo}"), false),
        (
            "v0.3.1",
            &[("LVH_ACTION_REF", "v0.2.0")],
            "release v0.3.1".into(),
            false,
        ),
        ("0.3.1", &[], "release v0.3.1".into(), false),
        ("abc1234", &[], "commit abc1234".into(), false),
        // little-vm-helper's values (pwru, cilium's lvh-kind) and others: a warning.
        (
            "v0.0.30",
            &[("LVH_ACTION_REF", "v0.2.0")],
            "release v0.2.0".into(),
            true,
        ),
        (
            "v0.0.25",
            &[("LVH_ACTION_REF", "v0.2.0")],
            "release v0.2.0".into(),
            true,
        ),
        (
            "latest",
            &[("LVH_ACTION_REF", "v0.2.0")],
            "release v0.2.0".into(),
            true,
        ),
    ];
    for (v, env, want, warns) in cases {
        let mut all = env.to_vec();
        all.push(("lvh-version", v));
        let o = lib("install_plan", &all);
        assert_eq!(out(&o), *want, "lvh-version {v:?} with {env:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(e.contains("::warning::"), *warns, "lvh-version {v:?}: {e}");
        if *warns {
            assert!(e.contains(&format!("lvh-version '{v}'")), "{e}");
        }
    }
    // Where the action comes from: github.action_repository, else its path.
    assert_eq!(
        out(&lib(
            "action_repository",
            &[("LVH_ACTION_REPOSITORY", "x/y")]
        )),
        "x/y"
    );
    assert_eq!(
        out(&lib("action_repository", &[("GITHUB_ACTION_PATH", pinned)])),
        "acme/lvh"
    );
    assert_eq!(
        out(&lib(
            "action_repository",
            &[("GITHUB_REPOSITORY", "me/mine")]
        )),
        "me/mine"
    );
}
