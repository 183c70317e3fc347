//! Unit tests of the initramfs: when the static init applies, its records
//! for the plan, the plan file, the cpio bytes, and the init's own parser
//! reading what the host writes.

use super::super::steps;
use super::super::{GuestCommand, GuestFs};
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
        host_fs: GuestFs::NineP,
        persist: false,
        authorized_keys: None,
        late_cpus: false,
    }
}

fn root() -> RootSpec {
    steps::root_spec(&words("root=/dev/vda rw")).unwrap()
}

#[test]
fn the_static_init_applies_only_when_lvh_keeps_init_and_root() {
    let line = words("root=/dev/vda rw");
    assert!(applies(true, &line, &[]).is_some());
    assert!(
        applies(false, &line, &[]).is_none(),
        "kernel without initramfs"
    );
    for own in ["init=/bin/bash", "rdinit=/init"] {
        assert!(applies(true, &line, &words(own)).is_none(), "{own}");
    }
    let uuid = words("root=/dev/vda rw root=UUID=x");
    assert!(applies(true, &uuid, &words("root=UUID=x")).is_none());
    assert!(applies(true, &line, &words("quiet")).is_some());
}

#[test]
fn the_embedded_inits_and_how_to_get_a_missing_one() {
    let e = embedded();
    assert_eq!(e.len(), Arch::ALL.len());
    for (arch, has) in e {
        assert_eq!(has, init_binary(arch).is_some());
    }
    assert_eq!(
        compiler_package(Arch::Arm64, Arch::Amd64),
        "gcc-aarch64-linux-gnu"
    );
    assert_eq!(
        compiler_package(Arch::Amd64, Arch::Arm64),
        "gcc-x86-64-linux-gnu"
    );
    assert_eq!(compiler_package(Arch::Amd64, Arch::Amd64), "gcc");
    let n = missing_note(Arch::Arm64);
    assert!(n.contains("without the static guest init for arm64"), "{n}");
}

#[test]
fn the_records_follow_the_plan() {
    let names = |c: &GuestCommand| -> Vec<String> {
        records(&steps::command(c, Some(&root())))
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
            "env",
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
    assert_eq!((at("env"), at("cpus"), at("root")), (0, 1, 2), "{n:?}");
    assert!(at("ports") < at("mount /host") && at("mount /host") < at("cd"));
    assert_eq!(
        (at("cd") + 1, at("prefetch") + 1, at("waitcpus") + 1),
        (at("prefetch"), at("waitcpus"), at("run"))
    );
    let r = records(&steps::command(&c, Some(&root())));
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
    let ro = steps::root_spec(&words("root=/dev/vda ro")).unwrap();
    assert_eq!(
        records(&steps::command(&cmd(), Some(&ro)))[1].fields[2],
        "1"
    );
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
    let Some(a) = archive(Arch::Amd64, &steps::command(&cmd(), Some(&root()))) else {
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

/// How the static init's own parser, built for the host
/// (`-DLVH_INIT_PLAN_DUMP`, by build.rs), reads a plan file: its records,
/// one per line, fields tab-separated and escaped.
#[cfg(not(lvh_no_plan_dump))]
fn dump(plan: &[u8]) -> Result<String, String> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("plan");
    std::fs::write(&p, plan).unwrap();
    let out = std::process::Command::new(env!("LVH_PLAN_DUMP"))
        .arg(&p)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What [`dump`] prints for `records`, computed on this side.
fn expected(records: &[Record]) -> String {
    let esc = |f: &str| {
        f.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    records
        .iter()
        .map(|r| {
            let mut l = r.name.to_string();
            for f in &r.fields {
                l.push('\t');
                l.push_str(&esc(f));
            }
            l + "\n"
        })
        .collect()
}

/// The init reads back exactly the records the host wrote, for every kind
/// of plan a command run gives it, with awkward argv words.
#[test]
#[cfg_attr(
    lvh_no_plan_dump,
    ignore = "needs a C compiler for the host (Debian package gcc)"
)]
fn the_init_reads_the_plans_the_host_writes() {
    #[cfg(not(lvh_no_plan_dump))]
    {
        let mut late = cmd();
        late.late_cpus = true;
        late.host_mount = true;
        late.persist = true;
        late.cwd = Some("dir with\ttab".into());
        late.argv = vec![
            "printf".into(),
            "%s\\n".into(),
            "two\nlines".into(),
            "".into(),
            "it's \"quoted\"".into(),
        ];
        for c in [cmd(), late] {
            for r in [None, Some(root())] {
                let recs = records(&steps::command(&c, r.as_ref()));
                assert_eq!(dump(&encode(&recs)).unwrap(), expected(&recs), "{c:?}");
                let recs = records(&steps::save(&c, r.as_ref()));
                assert_eq!(dump(&encode(&recs)).unwrap(), expected(&recs), "{c:?}");
            }
            // What a restore sends the serve record: the same format.
            let crate::runner::guest::HostMsg::Run(text) = restore_message(&c) else {
                panic!("a restore sends run")
            };
            let recs = records(&steps::restore(&c));
            assert_eq!(dump(text.as_bytes()).unwrap(), expected(&recs), "{c:?}");
            let names: Vec<_> = recs.iter().map(|r| r.name).collect();
            let want: &[&str] = if c.host_mount {
                &["mount", "cd", "run"]
            } else {
                &["cd", "run"]
            };
            assert_eq!(names, want);
        }
        // A plan cut short or with an unknown record stops the init, saying why.
        let good = encode(&records(&steps::command(&cmd(), None)));
        let e = dump(&good[..good.len() - 3]).unwrap_err();
        assert!(
            e.contains("lvh-guest: error: ") && e.contains("is cut short"),
            "{e}"
        );
        let e = dump(&encode(&[rec("bogus", &["x"])])).unwrap_err();
        assert!(e.contains("unknown record bogus with 1 fields"), "{e}");
        let e = dump(&encode(&[rec("cd", &["/"])])).unwrap_err();
        assert!(e.contains("unknown record cd with 1 fields"), "{e}");
    }
}
