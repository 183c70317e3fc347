//! The GitHub action's wiring, without a VM: action.yaml keeps little-vm-helper's
//! inputs and defaults, every step hands every input to its script under the
//! right name, the scripts read no input that does not exist, and the setup
//! step derives little-vm-helper's file names and cache keys.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

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

fn env_name(input: &str) -> String {
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
        ("lvh-version", Some("")), // theirs is a Docker tag; ours a git tag/commit
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

/// Runs setup.sh with these inputs and returns its outputs.
fn setup(inputs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut c = Command::new("bash");
    c.arg(Path::new(REPO).join("scripts/action/setup.sh"))
        .env("GITHUB_OUTPUT", &out)
        .env("RUNNER_TOOL_CACHE", tmp.path());
    for (k, v) in inputs {
        c.env(env_name(k), v);
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
fn setup_derives_little_vm_helpers_names_and_keys() {
    let cases = [
        // (image, version, parent, arch) -> (file, cache key)
        (
            ("kind", "5.10-main", "/tmp", "amd64"),
            ("/tmp/images/kind_5.10.qcow2", "lvh-image-kind_5.10-main"),
        ),
        (
            ("kind-ci", "6.6-20250616.013250-amd64", "", "amd64"),
            (
                "/images/kind_6.6.qcow2",
                "lvh-image-kind-ci_6.6-20250616.013250-amd64",
            ),
        ),
        (
            ("base", "bpf-next-main", "/x", "arm64"),
            (
                "/x/images/base_bpf.qcow2",
                "lvh-image-base_bpf-next-main_arm64",
            ),
        ),
    ];
    for ((image, version, parent, arch), (file, key)) in cases {
        let o = setup(&[
            ("image", image),
            ("image-version", version),
            ("images-folder-parent", parent),
            ("arch", arch),
            ("kernel-version", "6.6-main"),
        ]);
        assert_eq!(o["image-file"], file, "{image}:{version}");
        assert_eq!(o["image-cache-path"], format!("{file}.zst"));
        assert_eq!(o["image-cache-key"], key);
        assert_eq!(o["arch"], arch);
        assert_eq!(o["kernel-dir"], format!("{parent}/kernels/6.6-main"));
        assert_eq!(o["kernel-cache-key"], format!("lvh-kernel-6.6-main_{arch}"));
        assert!(o["lvh-cache-key"].contains("-src-"), "{o:?}");
    }
    let o = setup(&[
        ("image", "kind"),
        ("image-version", "5.10-main"),
        ("lvh-version", "v0.1.0"),
    ]);
    assert!(o["lvh-cache-key"].ends_with("-v0.1.0"), "{o:?}");
    assert!(o["lvh-root"].contains("/lvh/v0.1.0/"), "{o:?}");
}
