//! The GitHub action (`action.yaml`) run here as GitHub would run it: its
//! scripts (`scripts/action/*.sh`) in the order of its steps, each with every
//! input as an `INPUT_*` variable (the action's own defaults, read from
//! action.yaml, then the test's values), `GITHUB_OUTPUT`, `RUNNER_TEMP` and
//! friends pointed at a temp dir, and `LVH_BIN` naming the built lvh instead of
//! a `cargo install`. The actions/cache steps are YAML only and are skipped (a
//! cache miss). Artifacts come from a real registry on 127.0.0.1 in
//! little-vm-helper's layout, pushed with `lvh images push` / `lvh kernels push`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::oci::registry::Registry;
use crate::support::{assert_code, daemon_pid, free_port, terminate, text};
use lvh::arch::Arch;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Every input of action.yaml with its default ("" when it has none).
fn action_defaults() -> BTreeMap<String, String> {
    let yaml = std::fs::read_to_string(Path::new(REPO).join("action.yaml")).expect("action.yaml");
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in yaml.lines() {
        if line == "runs:" {
            break;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                out.insert(name.to_string(), String::new());
                current = Some(name.to_string());
            }
        } else if let (Some(n), Some(v)) = (&current, line.strip_prefix("    default: ")) {
            let v = v.trim_matches('\'').replace("''", "'");
            out.insert(n.clone(), v);
        }
    }
    assert!(out.len() >= 23, "inputs of action.yaml: {out:?}");
    out
}

/// One job's worth of state: the runner's temp dirs and the inputs.
struct Job {
    tmp: tempfile::TempDir,
    inputs: BTreeMap<String, String>,
    outputs: BTreeMap<String, String>,
}

impl Job {
    fn new(inputs: &[(&str, &str)]) -> Job {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut all = action_defaults();
        for (k, v) in inputs {
            assert!(all.contains_key(*k), "{k} is not an input of action.yaml");
            all.insert(k.to_string(), v.to_string());
        }
        for d in ["temp", "tool-cache", "workspace", "parent"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        Job {
            tmp,
            inputs: all,
            outputs: BTreeMap::new(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// Runs `scripts/action/<step>.sh` with the job's environment.
    fn step(&mut self, step: &str) -> Output {
        let output_file = self.path("github_output");
        std::fs::write(&output_file, "").unwrap();
        let mut c = Command::new("bash");
        c.arg(
            Path::new(REPO)
                .join("scripts/action")
                .join(format!("{step}.sh")),
        );
        for (k, v) in &self.inputs {
            c.env(format!("INPUT_{}", k.to_uppercase().replace('-', "_")), v);
        }
        c.env("GITHUB_OUTPUT", &output_file)
            .env("GITHUB_PATH", self.path("github_path"))
            .env("GITHUB_ACTION_PATH", REPO)
            .env("GITHUB_WORKSPACE", self.path("workspace"))
            .env("RUNNER_TEMP", self.path("temp"))
            .env("RUNNER_TOOL_CACHE", self.path("tool-cache"))
            .env("GITHUB_ACTIONS", "true")
            .env("CI", "true")
            .env("LVH_BIN", env!("CARGO_BIN_EXE_lvh"))
            .env("LVH_CONSOLE_LOG", self.path("console.log"))
            .env("LVH_CACHE_DIR", self.path("lvh-cache"))
            .env("LVH_ACCEL", "tcg")
            .env("TMPDIR", self.path("temp"))
            .env("LVH_TEST_HOSTVAR", "from-the-host")
            .current_dir(self.path("workspace"))
            .stdin(std::process::Stdio::null());
        if let Some(root) = self.outputs.get("lvh-root") {
            c.env("LVH_ROOT", root);
        }
        let o = c.output().expect("run bash");
        eprintln!("== step {step}: {}", text(&o));
        for line in std::fs::read_to_string(&output_file).unwrap().lines() {
            if let Some((k, v)) = line.split_once('=') {
                self.outputs.insert(k.to_string(), v.to_string());
            }
        }
        o
    }

    /// The provisioning steps of action.yaml in order, each expected to pass.
    fn provision(&mut self, steps: &[&str]) -> Output {
        let mut last = None;
        for s in steps {
            let o = self.step(s);
            assert_code(&o, 0);
            last = Some(o);
        }
        last.unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn push(args: &[&str]) {
    let o = crate::support::lvh().args(args).output().expect("lvh push");
    assert_code(&o, 0);
}

/// `<dir>/<name>` as a symbolic link to `target`: the pushed artifact is named
/// after the link, as little-vm-helper names its images.
fn named(dir: &Path, name: &str, target: &Path) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink(target, &p).unwrap();
    p
}

/// ssh mode: pull the bootable sshd image from the registry into
/// `<parent>/images/kind_5.10.qcow2`, grow it, boot it daemonized, run `cmd`
/// over ssh (with little-vm-helper's host-side `$` expansion), then a failing
/// `cmd` fails the step with its own exit code and the console log shown.
#[test]
fn action_pulls_boots_and_runs_cmd_over_ssh() {
    let f = crate::support::fixtures::image::ssh_image().expect("ssh image fixture");
    let reg = Registry::start();
    let links = tempfile::tempdir().unwrap();
    let img = named(links.path(), "kind_5.10.qcow2", &f.image);
    // ssh.qcow2 is an overlay on boot.qcow2 (relative backing file): push flattens it.
    named(
        links.path(),
        "boot.qcow2",
        &f.image.with_file_name("boot.qcow2"),
    );
    let repo = format!("{}/lvh-images", reg.addr);
    push(&[
        "images",
        "push",
        img.to_str().unwrap(),
        &format!("{repo}/kind:5.10-main"),
    ]);

    let port = free_port().to_string();
    let mut job = Job::new(&[("test-name", "ssh")]);
    let parent = job.path("parent").display().to_string();
    let key = f.key.display().to_string();
    for (k, v) in [
        ("image-repo", repo.as_str()),
        ("images-folder-parent", parent.as_str()),
        ("ssh-port", port.as_str()),
        ("ssh-connect-wait-retries", "900"),
        ("ssh-key", key.as_str()),
        ("cpu", "2"),
        ("mem", "1G"),
        ("additional-disk-size", "1G"),
        (
            "cmd",
            "echo \"host says $LVH_TEST_HOSTVAR\"\nX=in-guest\necho \"guest says \\$X\"\ndf -B1M --output=size / | tail -1",
        ),
    ] {
        job.inputs.insert(k.into(), v.into());
    }
    assert_eq!(
        job.inputs["image"], "kind",
        "little-vm-helper's default image"
    );
    let started = job.provision(&["setup", "install", "pull", "start"]);
    assert_eq!(job.outputs["image-cache-key"], "lvh-image-kind_5.10-main");
    assert_eq!(
        job.outputs["image-cache-path"],
        format!("{parent}/images/kind_5.10.qcow2.zst")
    );
    assert!(
        Path::new(&format!("{parent}/images/kind_5.10.qcow2.zst")).is_file(),
        "pull --cache leaves the .zst for actions/cache"
    );
    let pid = daemon_pid(&String::from_utf8_lossy(&started.stderr));

    let ok = job.step("run");
    let failing = {
        job.inputs.insert(
            "cmd".into(),
            "echo before-the-failure\nfalse\necho not-reached".into(),
        );
        job.step("run")
    };
    let _ = terminate(pid);

    assert_code(&ok, 0);
    let out = stdout(&ok);
    assert!(out.contains("host says from-the-host"), "{out}");
    assert!(out.contains("guest says in-guest"), "{out}");
    // 3G image grown by 1G, the filesystem grown with it (online resize2fs).
    let size: u64 = out.lines().last().unwrap().trim().parse().expect("df size");
    assert!(size > 3500, "root filesystem not grown: {size} MiB\n{out}");

    assert_code(&failing, 1);
    let out = stdout(&failing);
    assert!(out.contains("before-the-failure"), "{out}");
    assert!(!out.contains("not-reached"), "set -eu not in effect: {out}");
    let console = out
        .split_once("::group::VM console log")
        .map(|(_, c)| c.to_string())
        .unwrap_or_else(|| panic!("console log not shown: {}", text(&failing)));
    assert!(
        console.lines().count() > 5,
        "console log is empty: {console}"
    );
}

/// Command mode, no ssh: a kernel-version pulled from `<image-repo>/kernel-images`
/// boots the (non-bootable) root image and runs `cmd` with the host mount at
/// /host; with kernel-path, a failing `cmd` gives its exit code, the console
/// log and a result file saying `failed`.
#[test]
fn action_command_mode_with_kernel_version_and_kernel_path() {
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64).expect("kernel fixture");
    let root = crate::support::fixtures::image::root_image(Arch::Amd64).expect("image fixture");
    let reg = Registry::start();
    let links = tempfile::tempdir().unwrap();
    let img = named(links.path(), "base_6.12.qcow2", &root);
    let repo = format!("{}/lvh-images", reg.addr);
    push(&[
        "images",
        "push",
        img.to_str().unwrap(),
        &format!("{repo}/base:6.12-main"),
    ]);
    push(&[
        "kernels",
        "push",
        kernel.install.to_str().unwrap(),
        &format!("{repo}/kernel-images:6.12-main"),
    ]);

    let mut job = Job::new(&[("test-name", "command-mode")]);
    let parent = job.path("parent").display().to_string();
    let share = job.path("workspace");
    std::fs::write(share.join("marker"), "shared-from-host\n").unwrap();
    let result = job.path("result.json");
    for (k, v) in [
        ("image-repo", repo.as_str()),
        ("image", "base"),
        ("image-version", "6.12-main"),
        ("kernel-version", "6.12-main"),
        ("images-folder-parent", parent.as_str()),
        ("host-mount", share.to_str().unwrap()),
        ("command-mode", "true"),
        ("cpu", "1"),
        ("mem", "512M"),
        ("cmd", "cat /host/marker\necho \"guest \\$(uname -r)\""),
    ] {
        job.inputs.insert(k.into(), v.into());
    }
    job.provision(&["setup", "install", "pull", "start"]);
    assert_eq!(
        job.outputs["kernel-cache-key"],
        "lvh-kernel-6.12-main_amd64"
    );
    let ok = job.step("run");
    assert_code(&ok, 0);
    let out = stdout(&ok);
    assert!(out.contains("shared-from-host"), "{out}");
    assert!(out.contains("guest 6.12"), "{out}");

    job.inputs.insert("kernel-version".into(), String::new());
    job.inputs
        .insert("kernel-path".into(), kernel.image.display().to_string());
    job.inputs
        .insert("result-json".into(), result.display().to_string());
    job.inputs
        .insert("cmd".into(), "echo about-to-fail\nexit 3".into());
    let failing = job.step("run");
    assert_code(&failing, 3);
    let out = stdout(&failing);
    assert!(out.contains("about-to-fail"), "{out}");
    assert!(
        out.contains("::group::VM console log"),
        "{}",
        text(&failing)
    );
    assert!(
        out.contains("Linux version"),
        "console log lacks the boot: {out}"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&result).expect("result-json written")).unwrap();
    assert_eq!(r["verdict"], "failed", "{r}");
    assert_eq!(r["command_status"], 3, "{r}");
}
