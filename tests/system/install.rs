//! `scripts/install.sh` against a small fake release served over HTTP (the
//! real release files are installed by the `dist` tests, `make test-dist`):
//! the tarball for this machine is picked from SHA256SUMS, checked and
//! installed; a corrupted one, a missing release and an unwritable directory
//! install nothing; a machine without QEMU is told what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{http_server, install_sh, release_target, text};

/// A release directory `<srv>/<tag>/` whose tarball's `lvh` is a script
/// printing `tag`. With `corrupt`, the tarball changes after SHA256SUMS was
/// written (as a broken mirror or a tampered download would).
fn fake_release(srv: &Path, tag: &str, corrupt: bool) -> PathBuf {
    let dir = srv.join(tag);
    let name = format!("lvh-{}-{}", tag.trim_start_matches('v'), release_target());
    let stage = dir.join("stage").join(&name);
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::write(stage.join("lvh"), format!("#!/bin/sh\necho {tag}\n")).unwrap();
    sh(&format!("chmod 755 '{}/lvh'", stage.display()));
    sh(&format!(
        "cd '{d}' && tar -C stage -czf {name}.tar.gz {name} && rm -r stage && \
         echo 'not for this machine' > lvh-0-mips-unknown-linux-gnu.tar.gz && \
         sha256sum *.tar.gz > SHA256SUMS",
        d = dir.display()
    ));
    if corrupt {
        sh(&format!(
            "cd '{}' && printf x >> {name}.tar.gz",
            dir.display()
        ));
    }
    dir
}

fn sh(script: &str) {
    let o = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(o.status.success(), "{script}: {}", text(&o));
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What the installed `lvh` prints.
fn installed(bin: &Path) -> String {
    let o = Command::new(bin).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn install_sh_installs_a_checked_release_and_refuses_a_corrupted_one() {
    let t = tempfile::tempdir().unwrap();
    let srv = t.path().join("srv");
    fake_release(&srv, "v9.9.9", false);
    std::os::unix::fs::symlink("v9.9.9", srv.join("latest")).unwrap();
    fake_release(&srv, "v9.9.8", true);
    let server = http_server(&srv);
    let bin_dir = t.path().join("bin");
    let bin_s = bin_dir.to_string_lossy().to_string();
    let lvh = bin_dir.join("lvh");

    // The latest release, into a directory that does not exist yet.
    let (o, took) = install_sh(&[
        ("LVH_INSTALL_URL", &server.url),
        ("LVH_INSTALL_DIR", &bin_s),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(installed(&lvh), "v9.9.9");
    let e = stderr(&o);
    assert!(
        e.contains(&format!("installed lvh v9.9.9 to {bin_s}/lvh")),
        "{e}"
    );
    assert!(e.contains("is not on PATH"), "{e}");
    assert!(took.as_secs() < 10, "install took {took:?}");

    // A corrupted tarball: refused, named, and the installed lvh untouched.
    let (o, _) = install_sh(&[
        ("LVH_INSTALL_URL", &server.url),
        ("LVH_INSTALL_DIR", &bin_s),
        ("LVH_VERSION", "v9.9.8"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = stderr(&o);
    let name = format!("lvh-9.9.8-{}.tar.gz", release_target());
    assert!(
        e.contains(&format!("{name} does not match SHA256SUMS")) && e.contains("nothing installed"),
        "{e}"
    );
    assert_eq!(installed(&lvh), "v9.9.9");
    let leftovers: Vec<_> = std::fs::read_dir(&bin_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["lvh"], "nothing beside lvh");

    // A release that does not exist.
    let (o, _) = install_sh(&[
        ("LVH_INSTALL_URL", &server.url),
        ("LVH_INSTALL_DIR", &bin_s),
        ("LVH_VERSION", "v0.0.0"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!("no lvh release v0.0.0 at {}/v0.0.0", server.url)),
        "{}",
        text(&o)
    );

    // A directory lvh cannot be written to (a file stands where it should be).
    let blocked = t.path().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    let (o, _) = install_sh(&[
        ("LVH_INSTALL_URL", &server.url),
        ("LVH_INSTALL_DIR", &blocked.join("bin").to_string_lossy()),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("cannot create"), "{}", text(&o));
}

/// On a machine without QEMU the script installs and says what to install
/// next, with the package manager it finds.
#[test]
fn install_sh_says_what_to_install_when_qemu_is_missing() {
    let t = tempfile::tempdir().unwrap();
    let srv = t.path().join("srv");
    fake_release(&srv, "v9.9.9", false);
    let server = http_server(&srv);
    // A PATH with the script's tools, apt-get, and no QEMU.
    let tools = t.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    for tool in [
        "sh",
        "curl",
        "awk",
        "sha256sum",
        "tar",
        "gzip",
        "mkdir",
        "cp",
        "chmod",
        "mv",
        "rm",
        "cut",
        "uname",
        "id",
        "mktemp",
        "apt-get",
    ] {
        let found = String::from_utf8(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(!found.trim().is_empty(), "{tool} is not installed");
        std::os::unix::fs::symlink(found.trim(), tools.join(tool)).unwrap();
    }
    let bin_dir = t.path().join("bin");
    let path = format!("{}:{}", bin_dir.display(), tools.display());
    let (o, _) = install_sh(&[
        ("LVH_INSTALL_URL", &server.url),
        ("LVH_INSTALL_DIR", &bin_dir.to_string_lossy()),
        ("LVH_VERSION", "v9.9.9"),
        ("PATH", &path),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let e = stderr(&o);
    let (qemu, pkg) = match std::env::consts::ARCH {
        "x86_64" => ("qemu-system-x86_64", "qemu-system-x86"),
        _ => ("qemu-system-aarch64", "qemu-system-arm"),
    };
    assert!(
        e.contains(&format!("lvh run needs QEMU ({qemu} and qemu-img)")),
        "{e}"
    );
    assert!(
        e.contains(&format!("sudo apt-get install {pkg} qemu-utils")),
        "{e}"
    );
    assert!(!e.contains("is not on PATH"), "{e}");

    // With QEMU on PATH (this machine's), nothing more is asked for.
    let (o, _) = install_sh(&[
        ("LVH_INSTALL_URL", &server.url),
        ("LVH_INSTALL_DIR", &bin_dir.to_string_lossy()),
        ("LVH_VERSION", "v9.9.9"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!stderr(&o).contains("needs QEMU"), "{}", text(&o));
}
