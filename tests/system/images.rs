//! `lvh images build` with the real tools (mmdebstrap, libguestfs under TCG,
//! qemu-img). The root image is the shared fixture (built by lvh itself); the
//! tests derive children from it and check every effect through libguestfs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;
use lvh::images::guestfs::Handle;

use crate::support::fixtures::image::{lvh_build, root_image, ROOT_IMAGE};
use crate::support::text;

/// A build directory whose `images/root.img` is the shared root fixture (an
/// image not defined in images.json, which little-vm-helper allows as a parent).
fn dir_on_fixture(config: &str) -> tempfile::TempDir {
    let root = root_image(Arch::host()).expect("root image fixture");
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("images")).unwrap();
    std::os::unix::fs::symlink(&root, d.path().join("images").join(ROOT_IMAGE)).unwrap();
    std::fs::write(d.path().join("images.json"), config).unwrap();
    d
}

/// The RESULT column of the summary table for `image`.
fn result_of(stdout: &str, image: &str) -> String {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(image))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{image} not in summary:\n{stdout}"))
        .to_string()
}

fn open_ro(image: &Path, format: &str) -> Handle {
    crate::support::require_guestfs_tcg_env();
    let mut h = Handle::new().unwrap();
    h.add_drive(image, format, true).unwrap();
    h.launch().unwrap();
    h.mount("/dev/sda", "/").unwrap();
    h
}

#[test]
fn root_fixture_is_a_whole_disk_ext4_image_with_its_packages() {
    let img = root_image(Arch::host()).unwrap();
    // ext4 superblock magic at byte 1080, i.e. on the disk itself: no partition table
    let bytes = std::fs::read(&img).map(|b| b[1080..1082].to_vec()).unwrap();
    assert_eq!(
        bytes,
        [0x53, 0xEF],
        "no ext4 superblock at the start of {}",
        img.display()
    );
    let mut h = open_ro(&img, "raw");
    assert!(
        h.exists("/usr/bin/nc.openbsd").unwrap(),
        "netcat-openbsd missing"
    );
    assert!(h.exists("/usr/bin/ps").unwrap(), "procps missing");
    let os = String::from_utf8(h.read_file("/etc/os-release").unwrap()).unwrap();
    assert!(os.contains(lvh::images::config::DEFAULT_SUITE), "{os}");
}

#[test]
fn arm64_root_fixture_builds_on_this_host() {
    let img = root_image(Arch::Arm64).unwrap();
    let mut h = open_ro(&img, "raw");
    let nc = h.read_file("/usr/bin/nc.openbsd").unwrap();
    // ELF e_machine at offset 18: 0xB7 is AArch64
    assert_eq!(&nc[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([nc[18], nc[19]]),
        0xB7,
        "not an arm64 binary"
    );
}

const KERNEL: &str = "6.1.0-lvhtest";

/// Host inputs for every action type.
fn write_inputs(d: &Path) {
    std::fs::create_dir_all(d.join("files/sub")).unwrap();
    std::fs::write(d.join("files/sub/hello.txt"), "hello\n").unwrap();
    std::fs::write(d.join("upload.txt"), "uploaded v1\n").unwrap();
    std::fs::write(d.join("second.txt"), "second v1\n").unwrap();
    let st = Command::new("tar")
        .args(["czf", "t.tar.gz", "-C", "files", "sub"])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(st.success());
    let k = d.join("kernel/tar-install");
    std::fs::create_dir_all(k.join("boot")).unwrap();
    std::fs::create_dir_all(k.join(format!("lib/modules/{KERNEL}"))).unwrap();
    std::fs::write(
        k.join(format!("boot/vmlinuz-{KERNEL}")),
        "not really a kernel",
    )
    .unwrap();
    std::fs::write(k.join(format!("boot/config-{KERNEL}")), "CONFIG_X=y\n").unwrap();
    std::fs::write(k.join(format!("lib/modules/{KERNEL}/modules.dep")), "").unwrap();
}

const FOREST: &str = r#"[
  {"name": "child.qcow2", "parent": "root.img", "image_size": "3G",
   "packages": ["less"],
   "actions": [
     {"comment": "a command in the guest", "op": {"Cmd": "echo ran-in-guest > /ran.txt"}, "type": "run-command"},
     {"op": {"LocalPath": "files", "RemoteDir": "/opt/copied"}, "type": "copy-in"},
     {"op": {"hostname": "lvh-child"}, "type": "set-hostname"},
     {"op": {"DIR": "/a/b/c"}, "type": "mkdir"},
     {"op": {"File": "upload.txt", "Dest": "/uploaded.txt"}, "type": "upload"},
     {"op": {"Permissions": "0600", "File": "/uploaded.txt"}, "type": "chmod"},
     {"op": {"file": "/etc/motd", "line": "appended by lvh"}, "type": "append-line"},
     {"op": {"Target": "/uploaded.txt", "Link": "/uploaded-link"}, "type": "link"},
     {"op": {"KernelInstallDir": "kernel/tar-install"}, "type": "install-kernel"},
     {"op": {"TarFile": "t.tar.gz", "RemoteDir": "/untarred"}, "type": "tar-in"}
   ]},
  {"name": "grandchild.qcow2", "parent": "child.qcow2",
   "actions": [{"op": {"File": "second.txt", "Dest": "/second.txt"}, "type": "upload"}]},
  {"name": "sibling.img", "parent": "root.img"}
]"#;

#[test]
fn every_action_takes_effect_caching_is_right_and_rebuilds_are_minimal() {
    let d = dir_on_fixture(FOREST);
    write_inputs(d.path());
    let out = lvh_build(d.path(), Arch::host(), &["--jobs", "2"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    for img in ["child.qcow2", "grandchild.qcow2", "sibling.img"] {
        assert_eq!(result_of(&summary, img), "built", "{summary}");
    }
    let images = d.path().join("images");

    // the child of root.img (which this images.json does not build) stands
    // alone; the grandchild is an overlay on it: only its delta is on disk
    let backing = |name: &str| {
        let o = Command::new("qemu-img")
            .args(["info", "-U", "--output=json"])
            .arg(images.join(name))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.get("backing-filename")
            .map(|b| b.as_str().unwrap().to_string())
    };
    assert_eq!(backing("child.qcow2"), None);
    assert_eq!(backing("grandchild.qcow2").as_deref(), Some("child.qcow2"));
    let disk = |name: &str| lvh::images::rootfs::size_on_disk(&images.join(name)).unwrap();
    assert!(
        disk("grandchild.qcow2") < disk("child.qcow2") / 10,
        "overlay {} vs its parent {}",
        disk("grandchild.qcow2"),
        disk("child.qcow2")
    );

    {
        let mut h = open_ro(&images.join("child.qcow2"), "qcow2");
        let read = |h: &mut Handle, p: &str| String::from_utf8(h.read_file(p).unwrap()).unwrap();
        assert_eq!(read(&mut h, "/ran.txt"), "ran-in-guest\n");
        assert_eq!(read(&mut h, "/opt/copied/files/sub/hello.txt"), "hello\n");
        assert_eq!(read(&mut h, "/etc/hostname"), "lvh-child\n");
        assert!(h.is_dir("/a/b/c").unwrap());
        assert_eq!(read(&mut h, "/uploaded.txt"), "uploaded v1\n");
        assert_eq!(h.lstat("/uploaded.txt").unwrap().mode & 0o7777, 0o600);
        assert!(read(&mut h, "/etc/motd").ends_with("\nappended by lvh\n"));
        assert_eq!(h.readlink("/uploaded-link").unwrap(), "/uploaded.txt");
        assert_eq!(
            h.readlink("/vmlinuz").unwrap(),
            format!("/boot/vmlinuz-{KERNEL}")
        );
        assert_eq!(
            read(&mut h, &format!("/boot/vmlinuz-{KERNEL}")),
            "not really a kernel"
        );
        assert!(h
            .exists(&format!("/lib/modules/{KERNEL}/modules.dep"))
            .unwrap());
        assert_eq!(read(&mut h, "/untarred/sub/hello.txt"), "hello\n");
        assert!(
            h.exists("/usr/bin/less").unwrap(),
            "package less not installed"
        );
        // the guest's resolv.conf is restored after the networked steps
        assert!(!h.exists("/etc/resolv.conf.lvh-saved").unwrap());
        // image_size grew the filesystem, not only the disk
        let size = h.fs_size("/").unwrap();
        assert!(
            size > (2 << 30) + (512 << 20),
            "filesystem not grown: {size}"
        );
    }

    // unchanged: everything cached, quickly
    let t = Instant::now();
    let out = lvh_build(d.path(), Arch::host(), &[]).unwrap();
    let took = t.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    for img in ["child.qcow2", "grandchild.qcow2", "sibling.img"] {
        assert_eq!(result_of(&summary, img), "cached", "{summary}");
    }
    assert!(
        took < Duration::from_secs(2),
        "cached rebuild took {took:?}"
    );

    // one input of the grandchild changes: only the grandchild rebuilds (its
    // parent and the sibling stay; descendants of a changed image are covered
    // by the planner's unit tests)
    std::fs::write(d.path().join("second.txt"), "second v2\n").unwrap();
    let out = lvh_build(d.path(), Arch::host(), &["--dry-run"]).unwrap();
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(plan.contains("input files changed"), "{plan}");
    let out = lvh_build(d.path(), Arch::host(), &[]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(result_of(&summary, "child.qcow2"), "cached", "{summary}");
    assert_eq!(
        result_of(&summary, "grandchild.qcow2"),
        "built",
        "{summary}"
    );
    assert_eq!(result_of(&summary, "sibling.img"), "cached", "{summary}");
    let mut h = open_ro(&images.join("grandchild.qcow2"), "qcow2");
    assert_eq!(h.read_file("/second.txt").unwrap(), b"second v2\n");
    // the grandchild sees its parent's files through the overlay chain
    assert_eq!(h.read_file("/uploaded.txt").unwrap(), b"uploaded v1\n");
}

/// Leftovers of a build: temporary images, build records.
fn leftovers(images: &Path, name: &str) -> Vec<PathBuf> {
    std::fs::read_dir(images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.contains(name)
        })
        .collect()
}

#[test]
fn an_interrupted_build_leaves_no_image() {
    let d = dir_on_fixture(
        r#"[{"name": "slow.img", "parent": "root.img",
             "actions": [{"op": {"Cmd": "sleep 600"}, "type": "run-command"}]}]"#,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_lvh"))
        .args(["images", "build", "--dir"])
        .arg(d.path())
        .env("CI", "true")
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("action 0: run-command") {
            break;
        }
    }
    // keep draining so lvh can report its shutdown
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let images = d.path().join("images");
    assert!(
        !leftovers(&images, "slow.img").is_empty(),
        "no partial image while building: {seen:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t = Instant::now();
    let st = child.wait().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "stopping took {:?}",
        t.elapsed()
    );
    let rest = rest.join().unwrap();
    assert_eq!(st.code(), Some(130), "{st}: {}", rest.join("\n"));
    assert!(
        !images.join("slow.img").exists(),
        "an interrupted image is at its final path"
    );
    assert_eq!(leftovers(&images, "slow.img"), Vec::<PathBuf>::new());
    let out = lvh_build(d.path(), Arch::host(), &["--dry-run"]).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not built yet"),
        "{}",
        text(&out)
    );
}
