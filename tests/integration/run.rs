//! `lvh run` without QEMU: `--dry-run` prints the command and touches nothing;
//! bad input (missing kernel or image, bad port, memory size or arch) is a
//! clear error with exit code 3 that names the flag and the value.

use std::path::Path;
use std::process::Output;

use crate::common::{assert_code, lvh_in, stderr, stdout};

/// A temp dir with an empty "kernel" and a raw "image" (dry runs never read them).
fn files() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bzImage"), b"kernel").unwrap();
    std::fs::write(d.path().join("root.img"), vec![0u8; 4096]).unwrap();
    std::fs::write(d.path().join("root.qcow2"), b"QFI\xfb\0\0\0\x03").unwrap();
    d
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--kernel", "bzImage", "--image", "root.img"];
    args.extend_from_slice(extra);
    lvh_in(dir, &args)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn dry_run_prints_the_qemu_command_and_touches_nothing() {
    let d = files();
    let before = listing(d.path());
    let image_before = std::fs::read(d.path().join("root.img")).unwrap();
    let out = run(
        d.path(),
        &[
            "--dry-run",
            "--accel",
            "tcg",
            "-p",
            "2222:22",
            "--",
            "uname",
            "-a",
        ],
    );
    assert_code(&out, 0);
    let s = stdout(&out);
    assert!(s.starts_with("qemu-system-x86_64 -nodefaults"), "{s}");
    for want in [
        // --fast-boot drops q35's unused AHCI and SMBus
        "-machine q35,sata=off,smbus=off -accel tcg -cpu max",
        "format=raw,if=virtio,index=0,media=disk,snapshot=on",
        "root=/dev/vda rw console=ttyS0 panic=-1 i8042.noaux i8042.nokbd no_timer_check ",
        // (with --fast-boot, the host's TSC parameters may come in between)
        " ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off init=/bin/sh -c \":;mount",
        "hostfwd=tcp:127.0.0.1:2222-:22",
        "name=lvh.stdout",
    ] {
        assert!(s.contains(want), "missing {want:?} in {s}");
    }
    assert_eq!(listing(d.path()), before, "dry run created files");
    assert_eq!(
        std::fs::read(d.path().join("root.img")).unwrap(),
        image_before
    );
}

#[test]
fn dry_run_per_arch_accel_and_flags() {
    let d = files();
    let out = lvh_in(
        d.path(),
        &[
            "run",
            "--kernel",
            "bzImage",
            "--image",
            "root.qcow2",
            "--dry-run",
            "--qemu-arch",
            "arm64",
            "--no-hw-accel",
            "--persist",
            "--mem",
            "1G",
            "--cpu",
            "3",
            "--append",
            "quiet loglevel=1",
            "--host-mount",
            ".",
            "--qemu-monitor-port",
            "5555",
            "--",
            "true",
        ],
    );
    assert_code(&out, 0);
    let s = stdout(&out);
    assert!(s.starts_with("qemu-system-aarch64 "), "{s}");
    for want in [
        "-machine virt,gic-version=max -accel tcg -cpu max,pauth-impdef=on -smp 3 -m 1G",
        "format=qcow2,if=virtio,index=0,media=disk -kernel",
        "console=ttyAMA0 panic=-1 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off init=/bin/sh -c \":;mount",
        "exit 1;}\" quiet loglevel=1'",
        "mount_tag=host_mount",
        "-monitor tcp:127.0.0.1:5555,server=on,wait=off",
    ] {
        assert!(s.contains(want), "missing {want:?} in {s}");
    }
    assert!(
        !s.contains("snapshot=on"),
        "--persist must write to the image: {s}"
    );

    // LVH_ACCEL is the default accelerator; --accel wins over it.
    let mut c = std::process::Command::new(crate::common::lvh_bin());
    c.current_dir(d.path()).env("LVH_ACCEL", "tcg").args([
        "run",
        "--kernel",
        "bzImage",
        "--image",
        "root.img",
        "--dry-run",
    ]);
    let s = String::from_utf8(c.output().unwrap().stdout).unwrap();
    assert!(s.contains("-accel tcg -cpu max"), "{s}");
    assert!(s.contains("-chardev stdio,id=con,mux=on"), "{s}");
    c.args(["--accel", "kvm"]);
    let s = String::from_utf8(c.output().unwrap().stdout).unwrap();
    assert!(s.contains("-accel kvm -cpu host"), "{s}");
}

#[track_caller]
fn assert_invalid(out: &Output, wants: &[&str]) {
    assert_code(out, 3);
    let e = stderr(out);
    for w in wants {
        assert!(e.contains(w), "missing {w:?} in stderr: {e}");
    }
    assert!(stdout(out).is_empty(), "{}", stdout(out));
}

#[test]
fn missing_kernel_or_image_names_the_path() {
    let d = files();
    let out = lvh_in(
        d.path(),
        &[
            "run",
            "--kernel",
            "nope/bzImage",
            "--image",
            "root.img",
            "--",
            "true",
        ],
    );
    assert_invalid(
        &out,
        &["--kernel \"", "nope/bzImage\": no such kernel file"],
    );
    let out = lvh_in(
        d.path(),
        &[
            "run",
            "--kernel",
            "bzImage",
            "--image",
            "_data/images/x.qcow2",
            "--",
            "true",
        ],
    );
    assert_invalid(&out, &["no such image file _data/images/x.qcow2 (--image)"]);
}

#[test]
fn dry_run_never_pulls_an_oci_reference() {
    let d = files();
    let out = lvh_in(
        d.path(),
        &[
            "run",
            "--image",
            "quay.io/lvh-images/kind:6.6-main",
            "--dry-run",
        ],
    );
    assert_code(&out, 240);
    let e = stderr(&out);
    assert!(e.contains("quay.io/lvh-images/kind:6.6-main"), "{e}");
    assert!(e.contains("looks like an OCI reference"), "{e}");
    assert!(e.contains("not with --dry-run"), "{e}");
}

#[test]
fn bad_values_are_invalid_input() {
    let d = files();
    for (extra, wants) in [
        (
            &["-p", "22x:22", "--", "true"][..],
            &["--port \"22x:22\": invalid port forward", "is not a number"][..],
        ),
        (
            &["-p", "70000:22", "--", "true"],
            &["\"70000:22\"", "out of range 1-65535"],
        ),
        (
            &["-p", "1:2:sctp", "--", "true"],
            &["protocol \"sctp\" is not tcp or udp"],
        ),
        (
            &["--mem", "4X", "--", "true"],
            &["--mem \"4X\": invalid memory size"],
        ),
        (
            &["--accel", "hvf", "--", "true"],
            &["--accel \"hvf\": unknown accelerator"],
        ),
        (
            &["--root-dev", "sdb", "--", "true"],
            &["--root-dev \"sdb\""],
        ),
        (
            &["--timeout=-1", "--", "true"],
            &["--timeout \"-1\"", "not a duration"],
        ),
        (
            &["--daemonize", "--", "true"],
            &["--daemonize: cannot be combined"],
        ),
        (&["--wait-ssh"], &["--wait-ssh: needs --daemonize"]),
    ] {
        let out = run(d.path(), extra);
        assert_invalid(&out, wants);
    }
}

#[test]
fn an_unknown_arch_is_a_usage_error_naming_it() {
    let d = files();
    let out = run(d.path(), &["--qemu-arch", "riscv64", "--", "true"]);
    assert_code(&out, 2);
    let e = stderr(&out);
    assert!(e.contains("riscv64") && e.contains("amd64, arm64"), "{e}");
}

#[test]
fn a_command_needs_a_kernel() {
    let d = files();
    let out = lvh_in(d.path(), &["run", "--image", "root.img", "--", "true"]);
    assert_invalid(&out, &["needs --kernel"]);
}

/// Every `--root-dev` little-vm-helper takes (and `sda`): the bus, the machine
/// that bus works on (`pc` for IDE, as Go's `-hda`), `root=`, and the netdev
/// id `user.0` that monitor scripts name in `hostfwd_add user.0 ...`.
#[test]
fn root_devices_and_the_netdev_id_match_little_vm_helper() {
    let d = files();
    for (dev, machine, drive, root) in [
        (
            "vda",
            "-machine q35,sata=off,smbus=off ",
            "if=virtio,index=0",
            "root=/dev/vda ",
        ),
        ("hda", "-machine pc ", "if=ide,index=0", "root=/dev/sda "),
        ("sda", "-machine pc ", "if=ide,index=0", "root=/dev/sda "),
    ] {
        let out = run(
            d.path(),
            &[
                "--dry-run",
                "--accel",
                "tcg",
                "--root-dev",
                dev,
                "--",
                "true",
            ],
        );
        assert_code(&out, 0);
        let s = stdout(&out);
        for want in [
            machine,
            drive,
            root,
            "-netdev user,id=user.0",
            "netdev=user.0",
        ] {
            assert!(
                s.contains(want),
                "--root-dev {dev}: missing {want:?} in {s}"
            );
        }
    }
    let out = run(d.path(), &["--dry-run", "--root-dev", "sdb", "--", "true"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("expected vda, hda or sda"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_splat_allowlist_is_checked_before_anything_runs() {
    let d = files();
    let allow = |name: &str, text: &str| {
        std::fs::write(d.path().join(name), text).unwrap();
        name.to_string()
    };
    let expired = allow(
        "expired.json",
        r#"[{"pattern": "lkdtm", "reason": "r", "expires": "2027-01-31"},
            {"pattern": "warning in foo", "reason": "bug 123", "expires": "2020-01-31"}]"#,
    );
    let out = run(d.path(), &["--dry-run", "--splat-allow", &expired]);
    assert_invalid(
        &out,
        &["expired.json: entry 2", "bug 123", "expired on 2020-01-31"],
    );
    let bad = allow(
        "bad.json",
        r#"[{"pattern": "a(", "reason": "r", "expires": "2099-01-31"}]"#,
    );
    let out = run(d.path(), &["--dry-run", "--splat-allow", &bad]);
    assert_invalid(&out, &["bad.json: entry 1: invalid pattern \"a(\""]);
    let bad_date = allow(
        "date.json",
        r#"[{"pattern": "a", "reason": "r", "expires": "2099-02-30"}]"#,
    );
    let out = run(d.path(), &["--dry-run", "--splat-allow", &bad_date]);
    assert_invalid(
        &out,
        &["date.json: entry 1: invalid expires date \"2099-02-30\""],
    );
    let odd = allow(
        "odd.json",
        r#"[{"pattern": "a", "reason": "r", "expires": "2099-01-31", "ticket": 1}]"#,
    );
    let out = run(d.path(), &["--dry-run", "--splat-allow", &odd]);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("odd.json: entry 1: unknown key \"ticket\""),
        "{}",
        stderr(&out)
    );
    let out = run(d.path(), &["--dry-run", "--splat", "maybe"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("fail, warn or off"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gdb_and_shell_flags_in_dry_runs() {
    let d = files();
    let has = |extra: &[&str], want: &[&str], not: &[&str]| {
        let out = run(d.path(), extra);
        assert_code(&out, 0);
        let s = stdout(&out);
        for w in want {
            assert!(s.contains(w), "{extra:?}: missing {w:?} in {s}");
        }
        for n in not {
            assert!(!s.contains(n), "{extra:?}: {n:?} in {s}");
        }
    };
    has(
        &["--dry-run", "--gdb", "--", "true"],
        &[
            "/lvh-gdb-XXXXXX/gdb.sock,server=on,wait=off -gdb chardev:gdb",
            " nokaslr",
        ],
        &[" -S", "tcp:"],
    );
    has(
        &["--dry-run", "--gdb", "4321", "--gdb-wait", "--", "true"],
        &[" -gdb tcp:127.0.0.1:4321 -S"],
        &[],
    );
    has(
        &["--dry-run", "--", "true"],
        &[],
        &["-gdb", "nokaslr", "earlyprintk"],
    );
    // Without --shell: the console from the kernel's first line and the
    // image's own init, as little-vm-helper.
    has(
        &["--dry-run"],
        &["-chardev stdio,id=con", " earlyprintk=ttyS0"],
        &["init="],
    );
    has(
        &["--dry-run", "--shell=false"],
        &["-chardev stdio,id=con", " earlyprintk=ttyS0"],
        &["init="],
    );
    // --shell: lvh's init with the console on a socket lvh reads.
    has(
        &["--dry-run", "--shell"],
        &[
            "-chardev socket,id=con,path=",
            "init=/bin/sh",
            "name=lvh.ctl",
        ],
        &["stdio", "earlyprintk"],
    );
    has(
        &["--dry-run", "--shell=true"],
        &["-chardev socket,id=con,path=", "init=/bin/sh"],
        &["stdio"],
    );
    for (extra, want) in [
        (&["--gdb-wait", "--", "true"][..], "--gdb-wait: needs --gdb"),
        (&["--gdb=0", "--", "true"][..], "--gdb \"0\": invalid port"),
        (
            &["--shell", "--", "true"][..],
            "--shell: cannot be combined with a command",
        ),
        (
            &["--shell", "--daemonize"][..],
            "--shell: cannot be combined with --daemonize",
        ),
    ] {
        let out = run(d.path(), extra);
        assert_code(&out, 3);
        assert!(stderr(&out).contains(want), "{extra:?}: {}", stderr(&out));
    }
}

#[test]
fn ssh_key_and_saved_state_inputs_are_checked_before_anything_runs() {
    let d = files();
    // A bare --ssh-key with no key in ~/.ssh: a clear error naming where lvh looked.
    let out = std::process::Command::new(crate::common::lvh_bin())
        .current_dir(d.path())
        .env("HOME", d.path())
        .args([
            "run",
            "--kernel",
            "bzImage",
            "--image",
            "root.img",
            "--dry-run",
            "--ssh-key",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("no public key in") && stderr(&out).contains("id_ed25519.pub"),
        "{}",
        stderr(&out)
    );
    // A private key is refused without its content being shown.
    std::fs::write(
        d.path().join("id"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = run(d.path(), &["--dry-run", "--ssh-key", "id", "--", "true"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("this is a private key"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("c2VjcmV0") && !stdout(&out).contains("c2VjcmV0"));
    // A device is refused at once, not read for ever.
    let start = std::time::Instant::now();
    let out = run(
        d.path(),
        &["--dry-run", "--ssh-key", "/dev/zero", "--", "true"],
    );
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("--ssh-key \"/dev/zero\""),
        "{}",
        stderr(&out)
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    // With a public key, a bootable image gets the systemd credential.
    std::fs::write(
        d.path().join("id.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 me\n",
    )
    .unwrap();
    let out = lvh_in(
        d.path(),
        &[
            "run",
            "--image",
            "root.img",
            "--dry-run",
            "--daemonize",
            "--ssh-key",
            "id.pub",
        ],
    );
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains(
            "-smbios type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root="
        ),
        "{}",
        stdout(&out)
    );
    // Saved states: a missing one, a bad name, and --from-state with --kernel.
    let out = lvh_in(d.path(), &["run", "--from-state", "nope", "--", "true"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("no saved state \"nope\""),
        "{}",
        stderr(&out)
    );
    let out = run(d.path(), &["--save-state", "../x", "--", "true"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("--save-state \"../x\": invalid state name"),
        "{}",
        stderr(&out)
    );
    let out = lvh_in(
        d.path(),
        &[
            "run",
            "--from-state",
            "x",
            "--kernel",
            "bzImage",
            "--",
            "true",
        ],
    );
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("leave out --kernel and --image"),
        "{}",
        stderr(&out)
    );
    let out = lvh_in(d.path(), &["run", "--list-states"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "");
    assert!(!d.path().join("_data").exists(), "listing created files");
}
