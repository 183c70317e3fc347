//! `lvh run` without a command, driven by `expect` as little-vm-helper-images'
//! `buildx.yaml` drives little-vm-helper: the console shows the kernel from its
//! first line (with `--kernel` and with a bootable image's own kernel), the
//! image's own init boots, lvh's shell is there with `--shell`, and when
//! expect hangs up no lvh or QEMU is left running.
//!
//! Each run gets its own folder laid out as buildx.yaml's `$images_folder` (the
//! kernel copied in as `vmlinuz`, the image linked in): its path is in the
//! argv of the QEMU that uses it, which is how leftovers are found.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::support::fixtures::image::{root_image, ssh_image};
use crate::support::fixtures::kernel::{kernel, KernelFixture};
use crate::support::text;

/// buildx.yaml's `set timeout`. The kernel shows its first line within about
/// a second under TCG with `--kernel` and within about 6 s through a bootable
/// image's firmware and bootloader, so the snippet's own timeout holds here.
const SNIPPET_TIMEOUT: u64 = 60;
/// How long a boot to a shell or `login:` may take under TCG on a loaded machine.
const BOOT_TIMEOUT: u64 = 240;

/// buildx.yaml's arm64 arm, word for word (`lvh` from PATH); `extra` is
/// appended to lvh's command line (`--qemu-arch arm64` on an amd64 host).
fn snippet(image: &Path, kernel: Option<&Path>, extra: &str) -> String {
    let kernel = kernel
        .map(|k| format!(" --kernel {}", k.display()))
        .unwrap_or_default();
    format!(
        "
                        set timeout {SNIPPET_TIMEOUT}
                        spawn lvh run --image {}{kernel}{extra}
                        expect -re \"Linux version .*\\n\" {{ exit }}
              ",
        image.display()
    )
}

/// A folder like buildx.yaml's `$images_folder`: `image` linked in under its
/// own name, and the kernel's installed `vmlinuz-<release>` copied in as
/// `vmlinuz`. Returns the image and kernel paths in it.
fn folder(dir: &Path, image: &Path, kernel: Option<&KernelFixture>) -> (PathBuf, Option<PathBuf>) {
    let linked = dir.join(image.file_name().unwrap());
    std::os::unix::fs::symlink(image, &linked).unwrap();
    let vmlinuz = kernel.map(|k| {
        let v = dir.join("vmlinuz");
        std::fs::copy(installed_vmlinuz(k), &v).unwrap();
        v
    });
    (linked, vmlinuz)
}

/// `<install>/boot/vmlinuz-<release>`, what `lvh kernels build` installs and
/// little-vm-helper's kernel images carry.
fn installed_vmlinuz(k: &KernelFixture) -> PathBuf {
    std::fs::read_dir(k.install.join("boot"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .expect("vmlinuz-<release> in the kernel's install tree")
}

fn release(k: &KernelFixture) -> String {
    let name = installed_vmlinuz(k);
    let name = name.file_name().unwrap().to_string_lossy();
    name.strip_prefix("vmlinuz-").unwrap().to_string()
}

/// Runs `expect -c script` as a CI step does: lvh found on PATH, stdout a pipe
/// (buildx.yaml tees it). Returns the output and how long expect ran.
fn expect(script: &str) -> (Output, Duration) {
    let bin = Path::new(env!("CARGO_BIN_EXE_lvh")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let start = Instant::now();
    let out = Command::new("expect")
        .args(["-c", script])
        .env("PATH", path)
        .env("LVH_ACCEL", "tcg")
        .env_remove("LVH_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run expect (Debian package expect)");
    (out, start.elapsed())
}

/// buildx.yaml's `linux_ver`: its sed over expect's output.
fn linux_ver(out: &Output) -> String {
    let mut sed = Command::new("sed")
        .args(["-ne", r"s/^.*Linux version \([^ ]\+\).*$/\1/p"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sed.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let o = sed.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The processes (other than this test) whose command line names `dir`.
fn running_in(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut v = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if pid != me && cmdline.contains(&needle) {
            v.push(format!("{pid}: {cmdline}"));
        }
    }
    v
}

/// Every process that used `dir` (lvh, then the QEMU it became) is gone
/// within 20 s of expect's exit.
#[track_caller]
fn assert_gone(dir: &Path, out: &Output) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let left = running_in(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "still running after expect exited: {left:?}\n{}",
            text(out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The snippet's `--kernel` arm for `arch`: the fixture kernel's version line
/// within the timeout, and nothing left running.
fn snippet_with_kernel(arch: Arch, extra: &str) {
    let k = kernel(arch).expect("kernel fixture");
    let image = root_image(arch).expect("root image fixture");
    let d = tempfile::tempdir().unwrap();
    let (image, vmlinuz) = folder(d.path(), &image, Some(&k));
    let (out, took) = expect(&snippet(&image, vmlinuz.as_deref(), extra));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(linux_ver(&out), release(&k), "{}", text(&out));
    assert!(
        took < Duration::from_secs(SNIPPET_TIMEOUT),
        "{took:?}: {}",
        text(&out)
    );
    assert_gone(d.path(), &out);
}

#[test]
fn buildx_expect_snippet_sees_the_kernel_version_with_kernel() {
    snippet_with_kernel(Arch::Amd64, "");
}

#[test]
fn buildx_expect_snippet_sees_the_kernel_version_with_kernel_arm64() {
    snippet_with_kernel(Arch::Arm64, " --qemu-arch arm64");
}

/// The bootable systemd image of the ssh fixture, without its child's backing
/// chain (a link to a qcow2 child would look for its parent beside the link).
fn bootable_image() -> PathBuf {
    let ssh = ssh_image().expect("bootable image fixture");
    let boot = ssh.image.with_file_name("boot.qcow2");
    assert!(boot.is_file(), "{}", boot.display());
    boot
}

#[test]
fn buildx_expect_snippet_sees_the_kernel_version_of_a_bootable_image() {
    let image = bootable_image();
    let d = tempfile::tempdir().unwrap();
    let (image, _) = folder(d.path(), &image, None);
    let (out, took) = expect(&snippet(&image, None, ""));
    assert!(out.status.success(), "{}", text(&out));
    // Debian's kernel in the image: 6.1.0-N-amd64 on bookworm.
    let ver = linux_ver(&out);
    assert!(
        ver.ends_with("-amd64") && ver.starts_with(|c: char| c.is_ascii_digit()),
        "{ver:?}: {}",
        text(&out)
    );
    assert!(
        took < Duration::from_secs(SNIPPET_TIMEOUT),
        "{took:?}: {}",
        text(&out)
    );
    assert_gone(d.path(), &out);
}

/// Boots `image` with the amd64 fixture kernel (`lvh run --kernel vmlinuz
/// --image I` and `extra`) under expect, which runs `steps` with a deadline on
/// each (a step that times out or sees lvh end early prints why and exits 1),
/// then waits for lvh's end and prints `STATUS <code>`. Returns everything
/// expect printed, the kernel's release, and checks nothing is left running.
fn on_the_console(image: &Path, extra: &str, steps: &str) -> (String, String) {
    let k = kernel(Arch::Amd64).expect("kernel fixture");
    let d = tempfile::tempdir().unwrap();
    let (image, vmlinuz) = folder(d.path(), image, Some(&k));
    let script = format!(
        "
        set timeout {BOOT_TIMEOUT}
        spawn lvh run --kernel {} --image {}{extra}
        expect_after {{
            timeout {{ puts \"\\nEXPECT-TIMEOUT\"; exit 1 }}
            eof {{ puts \"\\nEXPECT-EOF\"; exit 1 }}
        }}
        {steps}
        expect eof
        puts \"\\nSTATUS [lindex [wait] 3]\"
        ",
        vmlinuz.unwrap().display(),
        image.display(),
    );
    let (out, took) = expect(&script);
    let all = format!("after {took:?}: {}", text(&out));
    assert!(out.status.success(), "{all}");
    assert_gone(d.path(), &out);
    (all, release(&k))
}

#[test]
fn the_image_init_boots_on_the_console_with_kernel() {
    // The fixture's root has no /sbin/init (a minbase root): the kernel falls
    // back to the image's /bin/sh, as PID 1, on the console. The host mount
    // is attached for the user to mount.
    let image = root_image(Arch::Amd64).expect("root image fixture");
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("f.txt"), "from-the-host\n").unwrap();
    let (all, _) = on_the_console(
        &image,
        &format!(" --mem 512M --host-mount {}", share.path().display()),
        r##"
        expect -re "Linux version .*\n"
        expect "Run /bin/sh as init process"
        expect -re "# $"
        send {echo own-init-$((6*7)) pid-$$}
        send "\r"
        expect "own-init-42 pid-1"
        send "mount -t 9p -o trans=virtio,version=9p2000.L host_mount /mnt && cat /mnt/f.txt\r"
        expect "\nfrom-the-host"
        send "\x01x"
        "##,
    );
    // Ctrl-A x ends QEMU, which lvh became, with 0.
    assert!(all.contains("STATUS 0"), "{all}");
    assert!(!all.contains("lvh-guest"), "lvh's init ran: {all}");
}

#[test]
fn a_systemd_image_boots_to_its_login_prompt_with_kernel() {
    let (all, release) = on_the_console(
        &bootable_image(),
        "",
        r##"
        expect -re "Linux version .*\n"
        expect "Run /sbin/init as init process"
        expect -ex "systemd\[1\]: systemd "
        expect -re "login: $"
        send "\x01x"
        "##,
    );
    assert!(all.contains("STATUS 0"), "{all}");
    // The fixture kernel, not the image's own.
    assert!(all.contains(&format!("Linux version {release} ")), "{all}");
}

#[test]
fn shell_flag_opens_lvhs_shell() {
    let image = root_image(Arch::Amd64).expect("root image fixture");
    let (all, _) = on_the_console(
        &image,
        " --mem 512M --shell",
        r##"
        expect -re "# $"
        send {echo shell-$((6*7)) pid-$$}
        send "\r"
        expect -re "shell-42 pid-\[0-9]+"
        send "exit 7\r"
        "##,
    );
    // lvh's login shell, not init, and lvh exits with the shell's status.
    assert!(!all.contains("shell-42 pid-1\r"), "{all}");
    assert!(all.contains("STATUS 7"), "{all}");
    // The shell is shown from its first prompt, not the boot.
    assert!(!all.contains("Linux version"), "{all}");
}
