//! Unit tests of the initramfs: the root from a command line, when the static
//! init applies, its plan, and the cpio bytes.

use super::*;

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn cmd() -> GuestCommand {
    GuestCommand {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "echo hi; exit 3".into(),
            "".into(),
        ],
        cwd: None,
        host_mount: false,
        persist: false,
        authorized_keys: None,
        late_cpus: false,
    }
}

#[test]
fn the_root_is_the_last_one_named_and_only_a_device_path() {
    let r = root_spec(&words("root=/dev/vda rw console=ttyS0")).unwrap();
    assert_eq!(
        r,
        RootSpec {
            dev: "/dev/vda".into(),
            fstypes: "".into(),
            readonly: false,
            data: "".into(),
        }
    );
    let r = root_spec(&words(
        "root=/dev/vda rw root=/dev/sda rootfstype=ext4,xfs rootflags=noatime ro",
    ))
    .unwrap();
    assert_eq!(
        r,
        RootSpec {
            dev: "/dev/sda".into(),
            fstypes: "ext4,xfs".into(),
            readonly: true,
            data: "noatime".into(),
        }
    );
    // The kernel mounts read-only unless told `rw`.
    assert!(root_spec(&words("root=/dev/vda")).unwrap().readonly);
    for other in [
        "root=PARTUUID=1234-01",
        "root=UUID=abc",
        "root=fe01",
        "console=ttyS0",
    ] {
        assert_eq!(root_spec(&words(other)), None, "{other}");
    }
}

#[test]
fn usable_only_when_lvh_keeps_init_and_root() {
    let line = words("root=/dev/vda rw");
    let has = init_binary(Arch::Amd64).is_some();
    assert_eq!(usable(Arch::Amd64, true, &line, &[]).is_some(), has);
    assert!(
        usable(Arch::Amd64, false, &line, &[]).is_none(),
        "kernel without initramfs"
    );
    for own in ["init=/bin/bash", "rdinit=/init"] {
        assert!(
            usable(Arch::Amd64, true, &line, &words(own)).is_none(),
            "{own}"
        );
    }
    let uuid = words("root=/dev/vda rw root=UUID=x");
    assert!(usable(Arch::Amd64, true, &uuid, &words("root=UUID=x")).is_none());
    assert_eq!(
        usable(Arch::Arm64, true, &line, &words("quiet")).is_some(),
        init_binary(Arch::Arm64).is_some()
    );
}

#[test]
fn the_plan_follows_the_shell_inits_steps() {
    let root = root_spec(&words("root=/dev/vda rw")).unwrap();
    let names = |c: &GuestCommand| -> Vec<String> {
        records(c, &root)
            .iter()
            .map(|r| match r.name {
                "mount" => format!("mount {}", r.fields[2]),
                n => n.to_string(),
            })
            .collect()
    };
    assert_eq!(
        names(&cmd()),
        [
            "root",
            "mount /proc",
            "mount /sys",
            "mount /run",
            "mount /dev/pts",
            "mount /dev/shm",
            "mount /tmp",
            "mount /sys/fs/bpf",
            "mount /sys/kernel/debug",
            "mount /sys/kernel/tracing",
            "hostname",
            "ports",
            "net",
            "env",
            "cd",
            "run"
        ]
    );
    let mut c = cmd();
    c.late_cpus = true;
    c.host_mount = true;
    c.cwd = Some("tools/testing".into());
    c.persist = true;
    let n = names(&c);
    let at = |x: &str| n.iter().position(|y| y == x).unwrap();
    // The late CPUs first, the program loading while they come up.
    assert_eq!((at("cpus"), at("root")), (0, 1), "{n:?}");
    assert!(at("ports") < at("mount /host") && at("mount /host") < at("cd"));
    assert_eq!(
        (at("cd") + 1, at("prefetch") + 1, at("waitcpus") + 1),
        (at("prefetch"), at("waitcpus"), at("run"))
    );
    let r = records(&c, &root);
    let get = |name: &str| r.iter().find(|x| x.name == name).unwrap().fields.clone();
    assert_eq!(get("root"), ["/dev/vda", "", "0", ""]);
    assert_eq!(
        get("cd"),
        [
            "/host/tools/testing",
            "1",
            "cannot change to directory /host/tools/testing"
        ]
    );
    assert_eq!(get("run"), ["1", "sh", "-c", "echo hi; exit 3", ""]);
    assert_eq!(get("ports"), ["lvh.stdout", "lvh.stderr", "lvh.ctl"]);
    assert_eq!(get("prefetch"), ["sh"]);
    assert_eq!(
        get("net"),
        ["eth0", "10.0.2.15", "255.255.255.0", "10.0.2.2"]
    );
    let host = r
        .iter()
        .find(|x| x.name == "mount" && x.fields[2] == "/host")
        .unwrap();
    assert_eq!(
        host.fields,
        [
            "9p",
            "host_mount",
            "/host",
            "0",
            "trans=virtio,version=9p2000.L",
            "1",
            "1",
            "cannot mount the host directory at /host"
        ]
    );
    let proc = r.iter().find(|x| x.name == "mount").unwrap();
    assert_eq!(
        proc.fields[..7],
        ["proc", "proc", "/proc", "14", "", "0", "1"]
    );
    let ro = root_spec(&words("root=/dev/vda ro")).unwrap();
    assert_eq!(records(&cmd(), &ro)[0].fields[2], "1");
}

#[test]
fn the_plan_file_counts_fields_and_keeps_empty_ones() {
    let b = encode(&[
        rec("cd", &["/root", "0", "msg"]),
        rec("run", &["0", "printf", ""]),
    ]);
    assert_eq!(
        b,
        b"cd\x003\x00/root\x000\x00msg\x00run\x003\x000\x00printf\x00\x00".to_vec()
    );
}

#[test]
fn cpio_is_newc_padded_to_four_bytes() {
    let a = cpio(&[Entry {
        path: "/lvh-plan",
        mode: 0o100600,
        rdev: (0, 0),
        data: b"abcde",
    }]);
    let head = std::str::from_utf8(&a[..110]).unwrap();
    assert_eq!(
        head,
        "070701\
         00000001\
         00008180\
         00000000\
         00000000\
         00000001\
         00000000\
         00000005\
         00000000\
         00000000\
         00000000\
         00000000\
         00000009\
         00000000"
    );
    // 110 + "lvh-plan\0" = 119, padded to 120; 5 bytes of data padded to 8.
    assert_eq!(&a[110..120], b"lvh-plan\0\0");
    assert_eq!(&a[120..128], b"abcde\0\0\0");
    assert!(a[128..].starts_with(b"070701"));
    assert!(
        a.ends_with(b"TRAILER!!!\0\0\0\0"),
        "{:?}",
        &a[a.len() - 16..]
    );
    assert_eq!(a.len() % 4, 0);
}

/// The archive as GNU cpio reads it, when cpio is installed (the system
/// tests boot it for real).
#[test]
fn cpio_lists_what_the_kernel_will_unpack() {
    if !std::path::Path::new("/usr/bin/cpio").exists() {
        return;
    }
    let root = root_spec(&words("root=/dev/vda rw")).unwrap();
    let Some(a) = archive(Arch::Amd64, &cmd(), &root) else {
        return;
    };
    let mut child = std::process::Command::new("/usr/bin/cpio")
        .args(["-t", "-v", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&a).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 4, "{listing}");
    assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" dev"));
    assert!(
        lines[1].starts_with("crw-------")
            && lines[1].contains("5,   1")
            && lines[1].ends_with(" dev/console"),
        "{listing}"
    );
    assert!(lines[2].starts_with("-rwxr-xr-x") && lines[2].ends_with(" lvh-init"));
    assert!(lines[3].starts_with("-rw-------") && lines[3].ends_with(" lvh-plan"));
}
