//! Saved VMs: `--save-state NAME -- SETUP` then `--from-state NAME -- CMD`
//! against real QEMU (TCG) with the fixture kernel and image. CMD sees what
//! SETUP left in RAM (/tmp, a sysctl) and on disk, exit codes come back, the
//! image stays unchanged, and a state is refused once its kernel changed.
//! Restores map the saved RAM: two at once both work and leave the state's
//! files byte for byte as they were; a truncated RAM file, a corrupted
//! device state or a changed image is refused, naming what differs.
//! The same round trip with a bootable systemd image (no `--kernel`), whose
//! commands go over ssh.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use lvh::arch::Arch;

use crate::runner::lvh_run;
use crate::support::{assert_code, lvh, text};

fn out(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().expect("run lvh")
}

/// `lvh run --dir DIR --from-state NAME -- sh -c SCRIPT`.
fn restore(dir: &Path, name: &str, script: &str) -> Output {
    restore_with(dir, name, &[], script)
}

/// `lvh run --dir DIR --from-state NAME EXTRA... -- sh -c SCRIPT`.
fn restore_with(dir: &Path, name: &str, extra: &[&str], script: &str) -> Output {
    let mut c = lvh();
    c.arg("run")
        .arg("--dir")
        .arg(dir)
        .args(["--from-state", name])
        .args(extra)
        .args(["--", "sh", "-c", script])
        .env("LVH_ACCEL", "tcg");
    out(c)
}

/// `lvh run` of the fixture kernel and image with `--dir DIR EXTRA...
/// --save-state NAME -- sh -c SCRIPT`.
fn save(dir: &str, name: &str, extra: &[&str], script: &str) -> Output {
    let mut args = vec!["--dir", dir];
    args.extend(extra);
    args.extend(["--save-state", name, "--", "sh", "-c", script]);
    out(lvh_run(Arch::Amd64, &args))
}

/// `lvh run --kernel KERNEL --image IMAGE --dir DIR --save-state NAME -- true`, which must pass.
fn save_true(kernel: &Path, image: &Path, dir: &Path, name: &str) {
    let mut c = lvh();
    c.arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--image")
        .arg(image)
        .args(["--mem", "512M", "--dir"])
        .arg(dir)
        .args(["--save-state", name, "--", "true"])
        .env("LVH_ACCEL", "tcg");
    assert_code(&out(c), 0);
}

/// Restores of state `name` see what its setup left: `mark` in RAM holds
/// `from-setup`, `/root/saved` on disk `on-disk`, `pid_max` is 4242; CMD's exit
/// code and stderr come back; and each restore starts from the saved VM again,
/// not from the last restore. `pid1`: what `/proc/1/comm` must say (empty: not
/// checked).
fn restores_see_the_setup(dir: &Path, name: &str, mark: &str, pid1: &str) {
    let comm = if pid1.is_empty() { "" } else { "/proc/1/comm " };
    let check =
        format!("cat {comm}{mark} /root/saved /proc/sys/kernel/pid_max; echo err >&2; exit 7");
    let o = restore(dir, name, &check);
    assert_code(&o, 7);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{pid1}from-setup\non-disk\n4242\n"),
        "{}",
        text(&o)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).lines().last(),
        Some("err")
    );
    let o = restore(dir, name, &format!("echo changed >{mark}; rm /root/saved"));
    assert_code(&o, 0);
    let o = restore(dir, name, &format!("cat {mark} /root/saved"));
    assert_code(&o, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from-setup\non-disk\n");
}

#[test]
fn a_restored_vm_sees_what_the_setup_left_and_returns_exit_codes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let image =
        crate::support::fixtures::image::root_image(Arch::Amd64).expect("root image fixture");
    let before = crate::sshkey::sha256(&image);
    let setup = "echo from-setup >/tmp/mark && echo 4242 >/proc/sys/kernel/pid_max && \
                 echo on-disk >/root/saved && echo setup-ran";
    let o = save(dir, "s1", &[], setup);
    assert_code(&o, 0);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "setup-ran\n",
        "{}",
        text(&o)
    );
    let state = d.path().join("states/s1");
    for f in ["disk.qcow2", "ram", "devices", "state.json"] {
        assert!(
            state.join(f).is_file(),
            "{f} missing in {}",
            state.display()
        );
    }

    restores_see_the_setup(d.path(), "s1", "/tmp/mark", "");

    let mut c = lvh();
    c.args(["run", "--dir", dir, "--list-states"]);
    let o = out(c);
    assert_code(&o, 0);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("s1\t"),
        "{}",
        text(&o)
    );
    assert_eq!(
        crate::sshkey::sha256(&image),
        before,
        "the image was modified"
    );
}

#[test]
fn a_failed_setup_saves_nothing_and_a_changed_kernel_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let o = save(dir, "bad", &[], "exit 3");
    assert_code(&o, 3);
    assert!(
        text(&o).contains("state \"bad\" was not saved"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_dir(d.path().join("states")).unwrap().count(),
        0,
        "a failed save left files"
    );

    // A state saved from a copy of the kernel, then the copy changes.
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64)
        .expect("kernel")
        .image;
    let copy = d.path().join("bzImage");
    std::fs::copy(&kernel, &copy).unwrap();
    let image = crate::support::fixtures::image::root_image(Arch::Amd64).unwrap();
    save_true(&copy, &image, d.path(), "k");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .unwrap();
    std::io::Write::write_all(&mut f, b"x").unwrap();
    let o = restore(d.path(), "k", "true");
    assert_code(&o, 3);
    assert!(
        text(&o).contains("cannot restore state \"k\": the kernel") && text(&o).contains("changed"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_bootable_images_saved_vm_runs_commands_over_ssh() {
    // The ssh fixture's parent: extlinux, Debian's kernel, systemd, sshd, DHCP,
    // no authorized_keys (lvh's key comes as a systemd credential).
    let f = crate::support::fixtures::image::ssh_image().expect("ssh image fixture");
    let image = f.image.with_file_name("boot.qcow2");
    let before = crate::sshkey::sha256(&image);
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let setup = "echo from-setup >/dev/shm/mark && echo 4242 >/proc/sys/kernel/pid_max && \
                 echo on-disk >/root/saved && echo setup-ran";
    let mut c = lvh();
    c.arg("run")
        .arg("--image")
        .arg(&image)
        .args(["--dir", dir, "--mem", "1G", "--ssh-timeout", "900"])
        .args(["--save-state", "b1", "--", "sh", "-c", setup])
        .env("LVH_ACCEL", "tcg");
    let o = out(c);
    assert_code(&o, 0);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "setup-ran\n",
        "{}",
        text(&o)
    );
    let state = d.path().join("states/b1");
    for f in [
        "disk.qcow2",
        "ram",
        "devices",
        "state.json",
        "ssh_key",
        "ssh_key.pub",
    ] {
        assert!(
            state.join(f).is_file(),
            "{f} missing in {}",
            state.display()
        );
    }

    // PID 1 is the image's systemd, and the restored VM is the saved one.
    restores_see_the_setup(d.path(), "b1", "/dev/shm/mark", "systemd\n");

    // A failing setup: its code comes back and nothing is saved.
    let mut c = lvh();
    c.arg("run")
        .arg("--image")
        .arg(&image)
        .args(["--dir", dir, "--mem", "1G", "--ssh-timeout", "900"])
        .args(["--save-state", "b2", "--", "sh", "-c", "exit 3"])
        .env("LVH_ACCEL", "tcg");
    let o = out(c);
    assert_code(&o, 3);
    assert!(
        text(&o).contains("state \"b2\" was not saved"),
        "{}",
        text(&o)
    );
    let left: Vec<_> = std::fs::read_dir(d.path().join("states"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["b1"], "a failed save left files");
    assert_eq!(
        crate::sshkey::sha256(&image),
        before,
        "the image was modified"
    );
}

/// Every file of a state directory and a digest of its content.
fn digests(state: &Path) -> Vec<(String, String)> {
    let mut v: Vec<_> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, crate::runner::content_digest(&p))
        })
        .collect();
    v.sort();
    v
}

/// A copy of state `from` as `to` (sparse, as the RAM file is).
fn copy_state(states: &Path, from: &str, to: &str) -> std::path::PathBuf {
    let dst = states.join(to);
    let st = Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(states.join(from))
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    dst
}

#[test]
fn restores_map_the_state_at_once_without_changing_it_and_damage_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let o = save(dir, "s", &[], "echo from-setup >/tmp/mark");
    assert_code(&o, 0);
    let states = d.path().join("states");
    let state = states.join("s");
    let names: Vec<String> = digests(&state).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["devices", "disk.qcow2", "ram", "state.json"]);
    let ram = std::fs::metadata(state.join("ram")).unwrap().len();
    assert_eq!(ram, 512 << 20, "the RAM file is the guest's memory");
    let before = digests(&state);

    // Two restores at once, each changing the memory it was given.
    let spawn = |n: u32| {
        let mut c = lvh();
        c.arg("run")
            .arg("--dir")
            .arg(d.path())
            .args(["--from-state", "s", "--", "sh", "-c"])
            .arg(format!("cat /tmp/mark; echo {n} >/tmp/mark; cat /tmp/mark"))
            .env("LVH_ACCEL", "tcg")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn(1), spawn(2));
    for (n, c) in [(1, a), (2, b)] {
        let o = c.wait_with_output().unwrap();
        assert_code(&o, 0);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("from-setup\n{n}\n"),
            "{}",
            text(&o)
        );
    }
    assert_eq!(
        digests(&state),
        before,
        "a restore changed the state's files"
    );

    // A truncated RAM file, a corrupted device state: refused, naming the file.
    let t = copy_state(&states, "s", "t");
    std::fs::OpenOptions::new()
        .write(true)
        .open(t.join("ram"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let o = restore(d.path(), "t", "true");
    assert_code(&o, 3);
    let want = format!(
        "cannot restore state \"t\": its RAM file {} is 1048576 bytes, not the 536870912 bytes (512M) the VM was saved with",
        t.join("ram").display()
    );
    assert!(text(&o).contains(&want), "{}", text(&o));
    let c = copy_state(&states, "s", "c");
    let mut dev = std::fs::read(c.join("devices")).unwrap();
    let mid = dev.len() / 2;
    dev[mid] ^= 0xff;
    std::fs::write(c.join("devices"), dev).unwrap();
    let o = restore(d.path(), "c", "true");
    assert_code(&o, 3);
    let want = format!(
        "cannot restore state \"c\": its device state {} does not match the checksum",
        c.join("devices").display()
    );
    assert!(text(&o).contains(&want), "{}", text(&o));
    assert_eq!(digests(&state), before);
}

#[test]
fn a_state_whose_image_changed_is_refused() {
    let d = tempfile::tempdir().unwrap();
    // The fixture image behind a small overlay, the overlay then written.
    let base =
        crate::support::fixtures::image::root_image(Arch::Amd64).expect("root image fixture");
    let image = d.path().join("root.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&base)
        .arg(&image)
        .status()
        .unwrap();
    assert!(st.success());
    let kernel = crate::support::fixtures::kernel::kernel(Arch::Amd64)
        .expect("kernel")
        .image;
    save_true(&kernel, &image, d.path(), "i");
    assert_code(&restore(d.path(), "i", "true"), 0);
    let st = Command::new("qemu-img")
        .args(["resize", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("+1M")
        .status()
        .unwrap();
    assert!(st.success());
    let o = restore(d.path(), "i", "true");
    assert_code(&o, 3);
    let want = format!(
        "cannot restore state \"i\": the image {} changed since it was saved",
        image.display()
    );
    assert!(text(&o).contains(&want), "{}", text(&o));
}

/// States saved by either of lvh's inits restore, each with the host
/// directory at `/host` again (detached for the save, mounted by the
/// restore), `--cwd` relative to it and the guest's writes on the host: the
/// static init (the default with a kernel that can run it) takes its
/// command as plan records, the shell init (`--fast-boot=false`) as shell
/// text.
#[test]
fn states_of_either_init_restore_with_the_host_mount() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let share = tempfile::tempdir().unwrap();
    std::fs::create_dir(share.path().join("sub")).unwrap();
    std::fs::write(share.path().join("sub/f"), "from-host\n").unwrap();
    let host = share.path().to_str().unwrap();
    for (name, init, extra) in [
        ("fast", "static", &[][..]),
        ("shell", "shell", &["--fast-boot=false"][..]),
    ] {
        let mut extra = extra.to_vec();
        extra.extend(["--host-mount", host]);
        let o = save(dir, name, &extra, "cat /host/sub/f");
        assert_code(&o, 0);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "from-host\n", "{name}");
        let meta =
            std::fs::read_to_string(d.path().join("states").join(name).join("state.json")).unwrap();
        assert!(
            meta.contains(&format!("\"init\": \"{init}\"")),
            "{name}: {meta}"
        );
        for round in ["one", "two"] {
            let o = restore_with(
                d.path(),
                name,
                &["--host-mount", host, "--cwd", "sub"],
                &format!("cat f; pwd; echo {round} >out-{name}"),
            );
            assert_code(&o, 0);
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                "from-host\n/host/sub\n",
                "{name}: {}",
                text(&o)
            );
            let wrote = std::fs::read_to_string(share.path().join(format!("sub/out-{name}")));
            assert_eq!(wrote.unwrap(), format!("{round}\n"), "{name}");
        }
    }
}
