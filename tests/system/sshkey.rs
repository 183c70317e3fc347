//! `lvh run --ssh-key`: root logs in with a key that lvh gave the guest at
//! boot, on an image whose root has no empty password (and no key), and the
//! image is unchanged afterwards; in command mode the key reaches lvh's init.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lvh::arch::Arch;

use crate::runner::lvh_run;
use crate::support::{
    assert_code, daemon_pid, free_port, gone_within_20s, ssh_root, terminate, text,
};

/// The sha256 of every byte of `p` (not the extent map: an image's layout on
/// the host file system may change under it while its content does not).
pub(crate) fn sha256(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    std::io::copy(&mut std::fs::File::open(p).unwrap(), &mut h).unwrap();
    format!("{:x}", h.finalize())
}

/// A fresh ed25519 key pair in `dir` with a comment no image can hold.
fn keygen(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("key");
    let comment = format!("lvh-sshkey-test-{}", std::process::id());
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", &comment, "-f"])
        .arg(&key)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed: {st}");
    (key, comment)
}

#[test]
fn a_bootable_image_takes_the_key_at_boot_and_stays_unchanged() {
    // The ssh fixture's parent image: systemd, sshd, no authorized_keys, and
    // root's password untouched by any `passwd -d` (Debian's `*`: no login).
    let f = crate::support::fixtures::image::ssh_image().expect("ssh image fixture");
    let image = f.image.with_file_name("boot.qcow2");
    let before = sha256(&image);
    let d = tempfile::tempdir().unwrap();
    let (key, comment) = keygen(d.path());
    let port = free_port();
    let o = crate::support::daemon_ssh(&image, port)
        .args(["--ssh-timeout", "900", "--ssh-key"])
        .arg(key.with_extension("pub"))
        .output()
        .expect("run lvh");
    assert_code(&o, 0);
    let pid = daemon_pid(&String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("ssh -p {port} -i {} root@127.0.0.1\n", key.display()),
        "{}",
        text(&o)
    );
    let ssh = ssh_root(
        &key,
        port,
        "id -u; passwd -S root; cat /root/.ssh/authorized_keys",
    );
    terminate(pid).expect("QEMU was running");
    assert!(ssh.status.success(), "ssh failed: {}", text(&ssh));
    let out = String::from_utf8_lossy(&ssh.stdout);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "{out}");
    // L: locked (no password login at all), never NP (empty password).
    let status = lines.next().unwrap_or_default();
    assert!(status.starts_with("root L "), "{out}");
    assert!(lines.any(|l| l.ends_with(&comment)), "{out}");
    assert!(gone_within_20s(pid), "QEMU {pid} was left running");
    assert_eq!(sha256(&image), before, "the image was modified");
}

#[test]
fn command_mode_gives_the_key_to_lvhs_init_without_writing_the_image() {
    let d = tempfile::tempdir().unwrap();
    let (key, comment) = keygen(d.path());
    let image =
        crate::support::fixtures::image::root_image(Arch::Amd64).expect("root image fixture");
    let before = sha256(&image);
    let pubkey = key.with_extension("pub");
    let o = lvh_run(
        Arch::Amd64,
        &[
            "--ssh-key",
            pubkey.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "stat -c '%a %U' /root/.ssh /root/.ssh/authorized_keys; cat /root/.ssh/authorized_keys; grep ' /root/.ssh ' /proc/mounts | cut -d' ' -f3",
        ],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert_code(&o, 0);
    let want = format!(
        "700 root\n600 root\n{}tmpfs\n",
        std::fs::read_to_string(&pubkey).unwrap()
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), want);
    assert!(want.contains(&comment));
    assert_eq!(sha256(&image), before, "the image was modified");
}
