//! `lvh run` attacked as an untrusted guest or another local user would:
//! guest root making device nodes and setuid files through the host mount.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use lvh::arch::Arch;

use crate::runner::lvh_run;
use crate::support::{assert_code, text};

/// What guest root tries on the host mount: device nodes, setuid and setgid
/// bits on a file the host made and on one the guest made; and what a
/// normal build-and-test job needs: reading, running and writing host files.
const ATTACK: &str = "set -e
mknod /host/blk b 254 0
mknod /host/chr c 1 3
chmod 4755 /host/victim
cp /bin/true /host/suid
chmod 6755 /host/suid
mkdir /host/dir
chmod 3777 /host/dir
echo data >/host/dir/new.txt
chmod 0600 /host/own
stat -c '%n %A %t,%T' /host/blk /host/chr /host/victim /host/suid /host/own
/host/run.sh
cat /host/dir/new.txt
/host/suid && echo guest-runs-its-binary
echo more >>/host/victim
";

/// Runs [`ATTACK`] as guest root on `dir` and checks the host: no device,
/// no setuid/setgid bit, existing files' modes unchanged; the guest saw its
/// own view (devices and modes as it made them) and could read, write and
/// run files. Returns lvh's stderr.
fn attack_host_mount(dir: &Path) -> String {
    std::fs::write(dir.join("victim"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(dir.join("victim"), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("own"), "x").unwrap();
    std::fs::set_permissions(dir.join("own"), PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho host-script-runs\n").unwrap();
    std::fs::set_permissions(dir.join("run.sh"), PermissionsExt::from_mode(0o755)).unwrap();
    let mut c = lvh_run(
        Arch::Amd64,
        &[
            "--host-mount",
            dir.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            ATTACK,
        ],
    );
    let o = c.stdin(Stdio::null()).output().unwrap();
    assert_code(&o, 0);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    // The guest's view: what it made, as it made it.
    for want in [
        "/host/blk brw-r--r-- fe,0",
        "/host/chr crw-r--r-- 1,3",
        "/host/victim -rwsr-xr-x",
        "/host/suid -rwsr-sr-x",
        "/host/own -rw-------",
        "host-script-runs\ndata\nguest-runs-its-binary\n",
    ] {
        assert!(
            out.contains(want),
            "{want:?} not in the guest's output:\n{out}"
        );
    }
    // The host's: plain files and directories, nothing special.
    for name in ["blk", "chr", "victim", "suid", "dir", "dir/new.txt", "own"] {
        let m = std::fs::symlink_metadata(dir.join(name)).unwrap();
        let t = m.file_type();
        assert!(
            !t.is_block_device() && !t.is_char_device() && !t.is_fifo() && !t.is_socket(),
            "{name} is a special file on the host: {t:?}"
        );
        assert_eq!(m.mode() & 0o7000, 0, "{name}: mode {:o}", m.mode());
    }
    let mode = |n: &str| std::fs::metadata(dir.join(n)).unwrap().mode() & 0o7777;
    assert_eq!(mode("victim"), 0o755, "a host file's mode changed");
    assert_eq!(mode("own"), 0o644, "a host file's mode changed");
    assert_eq!(
        std::fs::read_to_string(dir.join("victim")).unwrap(),
        "#!/bin/sh\nmore\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("dir/new.txt")).unwrap(),
        "data\n"
    );
    text(&o)
}

#[test]
fn guest_root_makes_no_device_or_setuid_file_on_the_host() {
    let d = tempfile::tempdir().unwrap();
    let stderr = attack_host_mount(d.path());
    assert!(!stderr.contains("virtfs_metadata"), "{stderr}");
    // The guest's metadata is in extended attributes, not in the tree.
    assert!(!d.path().join(".virtfs_metadata").exists());
}

/// Unmounts a file system mounted for a test, whatever happens.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn without_extended_attributes_the_metadata_goes_to_files_and_the_host_stays_safe() {
    // ramfs takes no user.* attributes (as tmpfs before Linux 6.6, NFS, ...).
    let d = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(d.path())
        .status()
        .unwrap();
    assert!(st.success(), "mount ramfs");
    let _m = Mounted(d.path());
    let stderr = attack_host_mount(d.path());
    assert!(
        stderr.contains("the file system has no user extended attributes"),
        "{stderr}"
    );
    assert!(d.path().join(".virtfs_metadata").is_dir());
}
