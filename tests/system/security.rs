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

/// Whether `nobody` (no groups) can connect to the unix socket `sock`.
fn nobody_connects(sock: &Path) -> bool {
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(["/usr/bin/python3", "-c"])
        .arg("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(13)\n")
        .arg(sock)
        .output()
        .unwrap();
    match o.status.code() {
        Some(0) => true,
        Some(13) => false,
        _ => panic!("connect as nobody: {}", text(&o)),
    }
}

/// The entries of `dir` whose name starts with `prefix`.
fn entries(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

#[test]
fn another_local_user_cannot_reach_the_console_the_channels_or_gdb() {
    // A $TMPDIR like /tmp (world-writable, sticky), so only the run's own
    // directories keep other users out.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), PermissionsExt::from_mode(0o1777)).unwrap();
    let share = tempfile::tempdir().unwrap();
    let mut c = lvh_run(
        Arch::Amd64,
        &[
            "--gdb",
            "--host-mount",
            share.path().to_str().unwrap(),
            // Whatever happens to the test, the VM ends.
            "--timeout",
            "90s",
            "--",
            "sh",
            "-c",
            "echo up; while [ ! -e /host/done ]; do sleep 0.2; done",
        ],
    );
    let mut child = c
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "up\n");
    let run = entries(tmp.path(), "lvh-run-");
    let gdb = entries(tmp.path(), "lvh-gdb-");
    assert_eq!((run.len(), gdb.len()), (1, 1), "{run:?} {gdb:?}");
    let mut sockets = vec![];
    for d in run.iter().chain(&gdb) {
        let m = std::fs::symlink_metadata(d).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700, "{}", d.display());
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.file_type().unwrap().is_socket() {
                sockets.push(e.path());
            }
        }
    }
    let names: Vec<String> = sockets
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["console.sock", "stdout.sock", "control.sock", "gdb.sock"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    for s in &sockets {
        assert!(!nobody_connects(s), "nobody connected to {}", s.display());
    }
    // The gdbstub is there for its owner: it stops the guest when a
    // debugger connects, and lets it run on when told to detach.
    let gdb_sock = gdb[0].join("gdb.sock");
    let mut g =
        std::os::unix::net::UnixStream::connect(&gdb_sock).expect("root reaches the gdbstub");
    std::io::Write::write_all(&mut g, b"$D#44").unwrap();
    g.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut reply = [0u8; 7];
    std::io::Read::read_exact(&mut g, &mut reply).unwrap();
    assert_eq!(&reply, b"+$OK#9a", "the gdbstub's answer to detach");
    std::fs::write(share.path().join("done"), "").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 0);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "gdbstub on {}; attach with: gdb",
            gdb_sock.display()
        )) && err.contains(&format!("-ex 'target remote {}'", gdb_sock.display())),
        "{err}"
    );
    assert!(!err.contains("any local user"), "{err}");
    // Both directories go with the run.
    assert_eq!(
        entries(tmp.path(), "lvh-"),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn planted_symlinks_at_the_paths_lvh_writes_are_refused_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o1777)).unwrap();
    let precious = d.path().join("precious");
    std::fs::write(&precious, "keep me\n").unwrap();
    let plant = |at: &Path| std::os::unix::fs::symlink(&precious, at).unwrap();
    let refused = |o: &std::process::Output, path: &Path, why: &str| {
        assert_ne!(o.status.code(), Some(0), "{}", text(o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&path.display().to_string()) && err.contains(why),
            "{path:?} {why:?}: {}",
            text(o)
        );
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
        let m = std::fs::symlink_metadata(path).unwrap();
        assert!(m.file_type().is_symlink(), "{path:?} was removed");
    };

    // The console log beside --result-json.
    let result = d.path().join("r.json");
    let beside = d.path().join("r.json.console.log");
    plant(&beside);
    let mut c = lvh_run(
        Arch::Amd64,
        &["--result-json", result.to_str().unwrap(), "--", "true"],
    );
    let o = c.stdin(Stdio::null()).output().unwrap();
    refused(&o, &beside, "symbolic link");

    // --console-log-file, in command mode and with --daemonize.
    let log = d.path().join("console.log");
    plant(&log);
    for extra in [&["--", "true"][..], &["--daemonize", "--qemu-arg=-S"][..]] {
        let mut args = vec!["--console-log-file", log.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = lvh_run(Arch::Amd64, &args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        refused(&o, &log, "symbolic link");
    }

    // The daemon's pid file, $TMPDIR/lvh-qemu-<lvh pid>.pid: lvh's pid is
    // the shell's, which plants the link and then becomes lvh.
    let c = lvh_run(Arch::Amd64, &["--daemonize", "--qemu-arg=-S"]);
    let argv: Vec<String> = std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("ln -s \"$1\" \"$TMPDIR/lvh-qemu-$$.pid\" && shift && exec \"$@\"")
        .arg("sh")
        .arg(&precious)
        .args(&argv)
        .env("TMPDIR", d.path())
        .env("LVH_ACCEL", "tcg")
        .env("CI", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let planted = entries(d.path(), "lvh-qemu-");
    assert_eq!(planted.len(), 1, "{planted:?}");
    refused(&o, &planted[0], "something is already there");
}
