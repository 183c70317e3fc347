//! The GitHub action (`action.yaml`) run here as GitHub's runner would run it
//! (see `workflow`): its steps in order with their `if:`s, every input and
//! earlier output handed over through `env:`, actions/cache emulated per key.
//! Releases come from a local HTTP server (`release`), artifacts from a real
//! registry on 127.0.0.1 in little-vm-helper's published layout, pushed with
//! `lvh images push` / `lvh kernels push`; guests boot under TCG.
//!
//! - `install`: the release install, its timing, the cache, an lvh on PATH;
//! - `forms`: every image-version form little-vm-helper users write, amd64 and
//!   arm64 folder layouts, each found and booted;
//! - here: ssh mode (sshd image, cmd over ssh, a failing cmd) and command mode.

mod forms;
mod install;
pub mod release;
pub mod workflow;

use std::path::{Path, PathBuf};

use crate::oci::registry::Registry;
use crate::support::{assert_code, daemon_pid, free_port, terminate, text};
use lvh::arch::Arch;
use workflow::{last, Job};

pub fn push(args: &[&str]) -> String {
    let o = crate::support::lvh().args(args).output().expect("lvh push");
    assert_code(&o, 0);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `<dir>/<name>` as a symbolic link to `target`: the pushed artifact is named
/// after the link, as little-vm-helper-images names its images.
pub fn named(dir: &Path, name: &str, target: &Path) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink(target, &p).unwrap();
    p
}

/// Pushes `file` to `reference` as an artifact whose image is named `name`
/// (through a link in `links`), for `arch`; returns `reference@digest`.
pub fn push_image(links: &Path, name: &str, file: &Path, reference: &str, arch: Arch) -> String {
    let img = named(links, name, file);
    push(&[
        "images",
        "push",
        img.to_str().unwrap(),
        reference,
        "--arch",
        arch.as_str(),
    ])
}

/// Pushes the kernel install folder `install` to `reference`, for `arch`.
pub fn push_kernel(install: &Path, reference: &str, arch: Arch) {
    push(&[
        "kernels",
        "push",
        install.to_str().unwrap(),
        reference,
        "--arch",
        arch.as_str(),
    ]);
}

/// The job's PATH starts with a folder holding the built lvh, so the action
/// installs nothing (`install` tests the install itself).
pub fn preinstall(j: &mut Job) {
    let pre = j.path("preinstalled");
    std::fs::create_dir_all(&pre).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lvh"), pre.join("lvh")).unwrap();
    let path = format!("{}:{}", pre.display(), j.env["PATH"]);
    j.env.insert("PATH".into(), path);
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// ssh mode, with lvh installed from a release: pull the bootable sshd image
/// into `<parent>/images/amd64/images/kind_5.10.qcow2`, grow it by `+1G`, boot
/// it daemonized, run `cmd` over ssh (with little-vm-helper's host-side `$`
/// expansion); then a failing `cmd` fails the step with its own exit code and
/// the console log shown.
#[test]
fn action_pulls_boots_and_runs_cmd_over_ssh() {
    let f = crate::support::fixtures::image::ssh_image().expect("ssh image fixture");
    let reg = Registry::start();
    let server = release::Server::start(release::release_dir());
    let links = tempfile::tempdir().unwrap();
    // ssh.qcow2 is an overlay on boot.qcow2 (relative backing file): push flattens it.
    named(
        links.path(),
        "boot.qcow2",
        &f.image.with_file_name("boot.qcow2"),
    );
    let repo = format!("{}/lvh-images", reg.addr);
    let reference = format!("{repo}/kind:5.10-main");
    push_image(
        links.path(),
        "kind_5.10.qcow2",
        &f.image,
        &reference,
        Arch::Amd64,
    );

    let store = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut job = Job::new(&[("test-name", "ssh")], store.path());
    job.env.insert("LVH_INSTALL_URL".into(), server.url.clone());
    job.env
        .insert("LVH_TEST_HOSTVAR".into(), "from-the-host".into());
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
        ("additional-disk-size", "+1G"),
        (
            "cmd",
            "echo \"host says $LVH_TEST_HOSTVAR\"\nX=in-guest\necho \"guest says \\$X\"\ndf -B1M --output=size / | tail -1",
        ),
    ] {
        job.set(k, v);
    }
    assert_eq!(
        job.inputs["image"], "kind",
        "little-vm-helper's default image"
    );
    let ran = job.run_until("start");
    let started = last(&ran);
    assert_code(started, 0);
    assert_eq!(
        job.outputs["lvh-setup"]["image-cache-key"],
        "lvh-image-kind_5.10-main_amd64"
    );
    assert_eq!(
        job.outputs["lvh-pull"]["image-file"],
        format!("{parent}/images/amd64/images/kind_5.10.qcow2")
    );
    assert!(
        Path::new(&format!(
            "{parent}/images/amd64/cache/kind_5.10-main/kind_5.10.qcow2.zst"
        ))
        .is_file(),
        "the .zst is left for actions/cache"
    );
    assert!(
        !server.requests().is_empty(),
        "lvh was not installed from the release"
    );
    let pid = daemon_pid(&String::from_utf8_lossy(&started.stderr));

    // Later calls with `provision: 'false'` (as cilium's lvh-kind action does)
    // only run cmd in the VM.
    job.set("provision", "false");
    let ok = last(&job.run_until("run")).clone();
    job.set("cmd", "echo before-the-failure\nfalse\necho not-reached");
    let failing = last(&job.run_until("run")).clone();
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

/// Command mode, no ssh: a kernel-version pulled from kernel-repo boots the
/// (non-bootable) root image and runs `cmd` with the host mount at /host; with
/// kernel-path alone, a failing `cmd` gives its exit code, the console log and
/// a result file saying `failed`.
#[test]
fn action_command_mode_with_kernel_version_and_kernel_path() {
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64).expect("kernel fixture");
    let root = forms::qcow2_root(Arch::Amd64);
    let reg = Registry::start();
    let links = tempfile::tempdir().unwrap();
    let repo = format!("{}/lvh-images", reg.addr);
    let reference = format!("{repo}/base:6.12-main");
    push_image(
        links.path(),
        "base_6.12.qcow2",
        &root,
        &reference,
        Arch::Amd64,
    );
    let reference = format!("{repo}/kernel-images:6.12-main");
    push_kernel(&kernel.install, &reference, Arch::Amd64);

    let store = tempfile::tempdir().unwrap();
    let mut job = Job::new(&[("test-name", "command-mode")], store.path());
    preinstall(&mut job);
    let parent = job.path("parent").display().to_string();
    let share = job.path("workspace");
    std::fs::write(share.join("marker"), "shared-from-host\n").unwrap();
    let result = job.path("result.json");
    let kernel_repo = format!("{repo}/kernel-images");
    for (k, v) in [
        ("image-repo", repo.as_str()),
        ("image", "base"),
        ("image-version", "6.12-main"),
        ("kernel-version", "6.12-main"),
        ("kernel-repo", kernel_repo.as_str()),
        ("images-folder-parent", parent.as_str()),
        ("host-mount", share.to_str().unwrap()),
        ("command-mode", "true"),
        ("cpu", "1"),
        ("mem", "512M"),
        ("cmd", "cat /host/marker\necho \"guest \\$(uname -r)\""),
    ] {
        job.set(k, v);
    }
    let ran = job.run_until("");
    let ok = last(&ran);
    assert_code(ok, 0);
    assert_eq!(
        job.outputs["lvh-setup"]["kernel-cache-key"],
        "lvh-kernel-6.12-main_amd64"
    );
    assert!(Path::new(&format!("{parent}/kernels/amd64/6.12-main/boot")).is_dir());
    let out = stdout(ok);
    assert!(out.contains("shared-from-host"), "{out}");
    assert!(out.contains("guest 6.12"), "{out}");

    job.set("kernel-version", "");
    job.set("kernel-path", &kernel.image.display().to_string());
    job.set("result-json", &result.display().to_string());
    job.set("cmd", "echo about-to-fail\nexit 3");
    job.set("provision", "false");
    let failing = last(&job.run_until("run")).clone();
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
