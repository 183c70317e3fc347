//! little-vm-helper's real file shapes, end to end: the kind Dockerfile of
//! little-vm-helper-images (a child built on a pulled parent that is deleted
//! afterwards), image actions as virt-customize applies them, and the guest's
//! hostname in command mode.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use lvh::arch::Arch;

use crate::support::fixtures::image::{lvh_build, root_image};

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_ok(c: &mut Command) -> Output {
    let o = c.stdin(Stdio::null()).output().expect("spawn");
    assert!(o.status.success(), "{c:?}:\n{}", text(&o));
    o
}

/// `lvh run --kernel K --image I -- argv` under TCG; stdout on success.
fn lvh_run_cmd(kernel: &Path, image: &Path, argv: &[&str]) -> String {
    let o = run_ok(
        Command::new(env!("CARGO_BIN_EXE_lvh"))
            .arg("run")
            .arg("--kernel")
            .arg(kernel)
            .arg("--image")
            .arg(image)
            .args(["--mem", "512M", "--"])
            .args(argv)
            .env("LVH_ACCEL", "tcg")
            .env("CI", "true")
            .env_remove("LVH_LOG"),
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// little-vm-helper-images' `dockerfiles/kind-images`: `kind.qcow2` is pulled
/// into `images/` (here: built by lvh in another directory and converted in),
/// the only images.json entry is `kind_<ver>.qcow2` on it with
/// `install-kernel` and `set-hostname`, built with `-i`, then the parents are
/// removed. The child must stand alone and boot.
#[test]
fn kind_dockerfile_child_of_a_pulled_parent_stands_alone_and_boots() {
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64).expect("kernel fixture");
    let parent = root_image(Arch::Amd64).expect("root image fixture");
    let d = tempfile::tempdir().unwrap();
    let images = d.path().join("images");
    std::fs::create_dir(&images).unwrap();
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&parent)
            .arg(images.join("kind.qcow2")),
    );
    let config = serde_json::json!([{
        "name": "kind_x.qcow2",
        "parent": "kind.qcow2",
        "actions": [
            {
                "comment": "install x",
                "op": {"KernelInstallDir": kernel.install.to_str().unwrap()},
                "type": "install-kernel"
            },
            {"op": {"Hostname": "kind-x"}, "type": "set-hostname"}
        ]
    }]);
    std::fs::write(d.path().join("images.json"), config.to_string()).unwrap();
    let o = lvh_build(d.path(), Arch::Amd64, &["--image", "kind_x.qcow2"]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let child = images.join("kind_x.qcow2");

    // the Dockerfile's `rm /data/images/*.qcow2` of the parents
    std::fs::remove_file(images.join("kind.qcow2")).unwrap();
    run_ok(Command::new("qemu-img").arg("check").arg(&child));
    let info = run_ok(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&child),
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(
        info.get("backing-filename").is_none(),
        "the child is an overlay: {info}"
    );

    // boots with a kernel from outside; the guest's hostname is the image's
    let out = lvh_run_cmd(
        &kernel.image,
        &child,
        &["sh", "-c", "cat /etc/hostname; uname -n; ls /boot"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["kind-x", "kind-x"], "{out}");
    assert!(
        lines[2..].iter().any(|l| l.starts_with("vmlinuz-")),
        "install-kernel put no vmlinuz in /boot: {out}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Boots the bootable ssh image by its own boot loader with `--root-dev dev`,
/// logs in and returns what the guest says its root device is.
fn boot_with_root_dev(dev: &str) -> String {
    let f = crate::support::fixtures::image::ssh_image().expect("ssh image fixture");
    let port = free_port();
    let o = run_ok(
        Command::new(env!("CARGO_BIN_EXE_lvh"))
            .arg("run")
            .arg("--image")
            .arg(&f.image)
            .args([
                "--root-dev",
                dev,
                "--daemonize",
                "-p",
                &format!("{port}:22"),
            ])
            .args(["--wait-ssh", "--ssh-timeout", "600", "--mem", "1G"])
            .env("LVH_ACCEL", "tcg")
            .env("CI", "true"),
    );
    let pid = crate::support::daemon_pid(&String::from_utf8_lossy(&o.stderr));
    let ssh = crate::support::ssh_root(&f.key, port, "grep ' / ' /proc/self/mounts");
    let _ = crate::support::terminate(pid);
    assert!(ssh.status.success(), "ssh failed: {}", text(&ssh));
    String::from_utf8_lossy(&ssh.stdout).into_owned()
}

/// little-vm-helper's `--root-dev hda` (and `sda`, the guest's name for it)
/// boot a bootable image: the disk on IDE of the `pc` machine, as Go's `-hda`,
/// and the image finds its root by label.
#[test]
fn a_bootable_image_boots_with_root_dev_hda_and_sda() {
    for dev in ["hda", "sda"] {
        let root = boot_with_root_dev(dev);
        assert!(root.starts_with("/dev/sda "), "--root-dev {dev}: {root}");
    }
}

/// The actions as virt-customize (little-vm-helper's tool) applies them, on a
/// child of the root fixture: package lists kept for a later `apt-get install`
/// without `update`, the host's proxy variables passed to commands, `upload`
/// into a directory keeping the file's mode, `set-hostname` renaming the old
/// name in /etc/hosts.
#[test]
fn actions_behave_as_virt_customize() {
    use std::os::unix::fs::PermissionsExt;
    let root = root_image(Arch::host()).expect("root image fixture");
    let d = tempfile::tempdir().unwrap();
    let images = d.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::os::unix::fs::symlink(&root, images.join("root.img")).unwrap();
    let tool = d.path().join("tool.sh");
    std::fs::write(&tool, "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o750)).unwrap();
    let run = |cmd: &str| serde_json::json!({"op": {"Cmd": cmd}, "type": "run-command"});
    let config = serde_json::json!([{
        "name": "act.qcow2",
        "parent": "root.img",
        "packages": ["tree"],
        "actions": [
            run("apt-get install -y -q sl"),
            run("printf '%s|%s\\n' \"$no_proxy\" \"$NO_PROXY\" >/proxy.txt"),
            {"op": {"File": "tool.sh", "Dest": "/usr/local/bin"}, "type": "upload"},
            run("echo oldname >/etc/hostname && echo '127.0.1.1\toldname oldname.local' >>/etc/hosts"),
            {"op": {"Hostname": "act-host"}, "type": "set-hostname"}
        ]
    }]);
    std::fs::write(d.path().join("images.json"), config.to_string()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lvh"))
        .args(["images", "build", "--dir"])
        .arg(d.path())
        .env("CI", "true")
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .env("no_proxy", "example.invalid")
        .env("NO_PROXY", "EXAMPLE.INVALID")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    crate::support::require_guestfs_tcg_env();
    let mut h = lvh::images::guestfs::Handle::new().unwrap();
    h.add_drive(&images.join("act.qcow2"), "qcow2", true)
        .unwrap();
    h.launch().unwrap();
    h.mount("/dev/sda", "/").unwrap();
    let read = |h: &mut lvh::images::guestfs::Handle, p: &str| {
        String::from_utf8(h.read_file(p).unwrap()).unwrap()
    };
    assert!(h.exists("/usr/bin/tree").unwrap());
    assert!(
        h.exists("/usr/games/sl").unwrap(),
        "apt-get install without update failed"
    );
    assert_eq!(
        read(&mut h, "/proxy.txt"),
        "example.invalid|EXAMPLE.INVALID\n"
    );
    let st = h.lstat("/usr/local/bin/tool.sh").unwrap();
    assert_eq!(st.mode & 0o7777, 0o750);
    assert_eq!(
        read(&mut h, "/usr/local/bin/tool.sh"),
        "#!/bin/sh\necho tool\n"
    );
    assert_eq!(read(&mut h, "/etc/hostname"), "act-host\n");
    let hosts = read(&mut h, "/etc/hosts");
    assert!(
        hosts.contains("127.0.1.1\tact-host oldname.local\n"),
        "{hosts}"
    );
    assert!(!hosts.contains("oldname "), "{hosts}");
}

/// A published image must boot on its own: `lvh images push` of a qcow2
/// overlay publishes it flattened, so the pulled image needs no backing file
/// and holds the parent's data.
#[test]
fn push_of_an_overlay_publishes_a_standalone_image() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base.qcow2");
    let child = t.path().join("child.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&base)
            .arg("64M"),
    );
    run_ok(
        Command::new("qemu-io")
            .args(["-c", "write -P 0xab 0 1M"])
            .arg(&base),
    );
    run_ok(
        Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                "base.qcow2",
            ])
            .arg(&child),
    );
    run_ok(
        Command::new("qemu-io")
            .args(["-c", "write -P 0xcd 1M 1M"])
            .arg(&child),
    );
    let reg = crate::oci::registry::Registry::start();
    let r = reg.reference("lvh-images/root-images", "kind");
    let lvh = |args: &[&str]| {
        run_ok(
            Command::new(env!("CARGO_BIN_EXE_lvh"))
                .args(args)
                .env("CI", "true")
                .env("LVH_CACHE_DIR", t.path().join("cache")),
        )
    };
    lvh(&["images", "push", child.to_str().unwrap(), &r]);
    std::fs::remove_file(&base).unwrap();
    let out = t.path().join("out");
    lvh(&["images", "pull", &r, "--dir", out.to_str().unwrap()]);
    let pulled = out.join("images/child.qcow2");
    run_ok(Command::new("qemu-img").arg("check").arg(&pulled));
    let info = run_ok(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&pulled),
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(info.get("backing-filename").is_none(), "{info}");
    for (pattern, at) in [("0xab", "0"), ("0xcd", "1M")] {
        let o = run_ok(
            Command::new("qemu-io")
                .args(["-r", "-c", &format!("read -P {pattern} {at} 1M")])
                .arg(&pulled),
        );
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(
            !s.contains("failed") && s.contains("read 1048576/1048576"),
            "{s}"
        );
    }
}
