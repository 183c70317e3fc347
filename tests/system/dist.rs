//! The release files as users get them (`make test-dist`, after `make deb`;
//! `make test-system` skips this module): the tarball's binary is small,
//! portable (glibc 2.31, no library beyond glibc's) and complete; install.sh
//! installs it from a local HTTP server in seconds; the `.deb` installs with
//! apt, its `lvh run` boots a guest, and `dpkg -r` removes it; the crate
//! package builds and `cargo install --path .` gives a working binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lvh::arch::Arch;

use crate::support::{http_server, install_sh, release_target, text};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAX_BYTES: u64 = 25 * 1000 * 1000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file `make deb` wrote into dist/.
fn dist_file(name: &str) -> PathBuf {
    let p = root().join("dist").join(name);
    assert!(
        p.is_file(),
        "no {}: run `make deb` first (make test-dist does)",
        p.display()
    );
    p
}

fn tarball_name() -> String {
    format!("lvh-{VERSION}-{}", release_target())
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The tarball unpacked into `dir`; its top directory.
fn unpack(dir: &Path) -> PathBuf {
    let tgz = dist_file(&format!("{}.tar.gz", tarball_name()));
    run(Command::new("tar").arg("-xzf").arg(&tgz).arg("-C").arg(dir));
    dir.join(tarball_name())
}

/// The newest `GLIBC_x.y` symbol version `objdump -T` shows, as numbers.
fn newest_glibc(bin: &Path) -> Vec<u32> {
    let o = run(Command::new("objdump").arg("-T").arg(bin));
    let mut newest: Vec<u32> = vec![];
    for word in stdout(&o).split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        if let Some(v) = word.strip_prefix("GLIBC_") {
            let v: Vec<u32> = v.split('.').filter_map(|n| n.parse().ok()).collect();
            newest = newest.max(v);
        }
    }
    newest
}

#[test]
fn tarball_is_portable_and_complete() {
    let t = tempfile::tempdir().unwrap();
    let top = unpack(t.path());
    let bin = top.join("lvh");
    let size = std::fs::metadata(&bin).unwrap().len();
    assert!(size <= MAX_BYTES, "{} is {size} bytes", bin.display());
    let glibc = newest_glibc(&bin);
    assert!(
        !glibc.is_empty() && glibc <= vec![2, 31],
        "needs glibc {glibc:?}"
    );
    let ldd = stdout(&run(Command::new("ldd").arg(&bin)));
    for line in ldd.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let lib = line.split_whitespace().next().unwrap();
        let base = lib.rsplit('/').next().unwrap();
        let ok = [
            "linux-vdso.so",
            "libc.so",
            "libm.so",
            "libgcc_s.so",
            "ld-linux",
        ]
        .iter()
        .chain(&["libdl.so", "libpthread.so", "librt.so"])
        .any(|p| base.starts_with(p));
        assert!(ok, "{} needs {line}\n{ldd}", bin.display());
    }
    let v = stdout(&run(Command::new(&bin).arg("version")));
    assert!(v.starts_with(&format!("v{VERSION}")), "{v}");
    let vv = stdout(&run(Command::new(&bin).args(["version", "-v"])));
    assert!(
        vv.contains(&format!("target:      {}", release_target())),
        "{vv}"
    );

    for f in [
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "doc/lvh.1",
        "doc/lvh-run.1",
    ] {
        assert!(top.join(f).is_file(), "{f} missing");
    }
    let license = std::fs::read_to_string(top.join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
    for (f, want) in [
        ("complete/lvh.bash", "complete -F"),
        ("complete/_lvh", "#compdef lvh"),
        ("complete/lvh.fish", "complete -c lvh"),
    ] {
        let s = std::fs::read_to_string(top.join(f)).unwrap();
        assert!(s.contains(want), "{f} lacks {want:?}");
    }
    let man = std::fs::read_to_string(top.join("doc/lvh-run.1")).unwrap();
    assert!(
        man.contains(".TH lvh-run 1") && man.contains("\\-\\-kernel"),
        "{man:.300}"
    );

    // SHA256SUMS vouches for every file beside it.
    let sums = std::fs::read_to_string(dist_file("SHA256SUMS")).unwrap();
    assert!(
        sums.contains(&format!("{}.tar.gz", tarball_name())),
        "{sums}"
    );
    run(Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(root().join("dist")));
}

#[test]
fn install_sh_installs_the_release_from_a_local_server_in_seconds() {
    let t = tempfile::tempdir().unwrap();
    let srv = t.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    let tag = format!("v{VERSION}");
    std::os::unix::fs::symlink(root().join("dist"), srv.join(&tag)).unwrap();
    std::os::unix::fs::symlink(root().join("dist"), srv.join("latest")).unwrap();
    // A copy of the release whose tarball was corrupted in transit.
    let bad = srv.join("v0.0.1-bad");
    std::fs::create_dir(&bad).unwrap();
    let tgz = format!("{}.tar.gz", tarball_name());
    std::fs::copy(dist_file("SHA256SUMS"), bad.join("SHA256SUMS")).unwrap();
    let mut bytes = std::fs::read(dist_file(&tgz)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(bad.join(&tgz), bytes).unwrap();
    let server = http_server(&srv);

    let dir = t.path().join("bin");
    let dir_s = dir.to_string_lossy().to_string();
    for version in [None, Some(tag.as_str())] {
        let _ = std::fs::remove_dir_all(&dir);
        let mut env = vec![
            ("LVH_INSTALL_URL", server.url.as_str()),
            ("LVH_INSTALL_DIR", &dir_s),
        ];
        env.extend(version.map(|v| ("LVH_VERSION", v)));
        let (o, took) = install_sh(&env);
        assert!(o.status.success(), "{}", text(&o));
        eprintln!("install.sh ({}) took {took:?}", version.unwrap_or("latest"));
        assert!(took.as_secs_f64() < 10.0, "install.sh took {took:?}");
        let v = stdout(&run(Command::new(dir.join("lvh")).arg("version")));
        assert!(v.starts_with(&tag), "{v}");
    }

    let fresh = t.path().join("fresh");
    let (o, _) = install_sh(&[
        ("LVH_INSTALL_URL", &server.url),
        ("LVH_INSTALL_DIR", &fresh.to_string_lossy()),
        ("LVH_VERSION", "v0.0.1-bad"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&format!("{tgz} does not match SHA256SUMS")) && e.contains("nothing installed"),
        "{e}"
    );
    assert!(
        !fresh.join("lvh").exists(),
        "a refused download installed lvh"
    );
}

/// The `.deb` as apt installs it on this machine: its Depends pull what
/// `lvh run` needs, the installed `/usr/bin/lvh` boots the fixture kernel and
/// image, and `dpkg -r` takes it away again.
#[test]
fn deb_installs_with_apt_boots_a_guest_and_is_removed() {
    let arch = Arch::host().debian_arch();
    let deb = dist_file(&format!("lvh_{VERSION}-1_{arch}.deb"));
    let (kernel, image) = crate::runner::boot_files(Arch::host());
    let info = stdout(&run(Command::new("dpkg-deb").arg("--field").arg(&deb)));
    let depends = info
        .lines()
        .find(|l| l.starts_with("Depends:"))
        .unwrap_or_default();
    for want in ["libc6 (>= 2.31)", "qemu-utils"] {
        assert!(depends.contains(want), "{depends}");
    }
    let qemu = if arch == "amd64" {
        "qemu-system-x86"
    } else {
        "qemu-system-arm"
    };
    assert!(depends.contains(qemu), "{depends}");
    assert!(
        info.contains("Recommends:") && info.contains("mmdebstrap"),
        "{info}"
    );
    let files = stdout(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for want in [
        "./usr/bin/lvh",
        "./usr/share/man/man1/lvh-run.1",
        "./usr/share/bash-completion/completions/lvh",
        "./usr/share/doc/lvh/copyright",
    ] {
        assert!(files.contains(want), "{want} not in the package:\n{files}");
    }

    let _ = Command::new("dpkg").args(["-r", "lvh"]).output();
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .arg(&deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    let o = Command::new("/usr/bin/lvh")
        .arg("run")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--image")
        .arg(&image)
        .args(["--mem", "512M", "--", "cat", "/proc/version"])
        .env("LVH_ACCEL", "tcg")
        .env("CI", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let removed = Command::new("dpkg").args(["-r", "lvh"]).output().unwrap();
    assert!(o.status.success(), "lvh run from the package: {}", text(&o));
    assert!(stdout(&o).starts_with("Linux version "), "{}", text(&o));
    assert!(removed.status.success(), "dpkg -r: {}", text(&removed));
    assert!(
        !Path::new("/usr/bin/lvh").exists(),
        "dpkg -r left /usr/bin/lvh"
    );
}

/// `cargo package` builds the crate from its package alone (what
/// `cargo install lvh` from crates.io builds) and `cargo install --path .`
/// installs a binary that runs. A target directory of their own: the one this
/// test runs from is cargo's, locked while it runs.
#[test]
fn cargo_package_and_cargo_install_build_working_binaries() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = root().join("target/dist-test");
    let t = tempfile::tempdir().unwrap();
    run(Command::new(&cargo)
        .args(["package", "--locked", "--allow-dirty", "--target-dir"])
        .arg(&target)
        .current_dir(root()));
    run(Command::new(&cargo)
        .args(["install", "--locked", "--path", ".", "--target-dir"])
        .arg(&target)
        .arg("--root")
        .arg(t.path())
        .current_dir(root()));
    let v = stdout(&run(Command::new(t.path().join("bin/lvh")).arg("version")));
    assert!(v.starts_with(&format!("v{VERSION}")), "{v}");
}
