//! `lvh run --cloud-init`: a bootable image with cloud-init (built by `lvh
//! images build`) is provisioned at boot from lvh's NoCloud seed: a user with
//! the caller's key and a written file; `--ssh-key` and `--host-mount` work
//! beside it; the image itself is unchanged.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::sshkey::sha256;
use crate::support::{
    assert_code, daemon_pid, free_port, gone_within_20s, ssh_as, ssh_root, terminate, text,
};

fn keygen(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("key");
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "lvh-cloud-init-test",
            "-f",
        ])
        .arg(&key)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed: {st}");
    key
}

#[test]
fn cloud_init_provisions_a_user_with_a_key_and_a_file_and_leaves_the_image_alone() {
    let image = crate::support::fixtures::image::cloud_image().expect("cloud image fixture");
    let before = sha256(&image);
    let d = tempfile::tempdir().unwrap();
    let key = keygen(d.path());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let user_data = d.path().join("user-data.yaml");
    std::fs::write(
        &user_data,
        format!(
            "#cloud-config\nusers:\n  - name: dev\n    shell: /bin/bash\n    ssh_authorized_keys:\n      - {}\nwrite_files:\n  - path: /etc/lvh-provisioned\n    content: |\n      provisioned by cloud-init\n",
            public.trim()
        ),
    )
    .unwrap();
    let share = d.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("from-host"), "hello from the host\n").unwrap();
    let port = free_port();
    let log = d.path().join("console.log");
    let o = crate::support::daemon_ssh(&image, port)
        .arg("--cloud-init")
        .arg(&user_data)
        .arg("--host-mount")
        .arg(&share)
        .arg("--ssh-key")
        .arg(key.with_extension("pub"))
        .args(["--ssh-timeout", "900"])
        .arg("--console-log-file")
        .arg(&log)
        .output()
        .expect("run lvh");
    assert_code(&o, 0);
    let pid = daemon_pid(&String::from_utf8_lossy(&o.stderr));
    // sshd answers before cloud-init has made the user: retry until it has.
    let deadline = Instant::now() + Duration::from_secs(600);
    let ssh = loop {
        let s = ssh_as(
            "dev",
            &key,
            port,
            "id -un; cat /etc/lvh-provisioned; cat /host/from-host",
        );
        if s.status.success() || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    let root = ssh_root(&key, port, "id -u");
    terminate(pid).expect("QEMU was running");
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        ssh.status.success(),
        "ssh as dev failed: {}\nconsole tail:\n{}",
        text(&ssh),
        console
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        String::from_utf8_lossy(&ssh.stdout),
        "dev\nprovisioned by cloud-init\nhello from the host\n"
    );
    assert!(root.status.success(), "--ssh-key: {}", text(&root));
    assert_eq!(String::from_utf8_lossy(&root.stdout), "0\n");
    assert!(gone_within_20s(pid), "QEMU {pid} was left running");
    assert_eq!(sha256(&image), before, "the image was modified");
}
