//! `--host-mount` over virtiofs: the guest's files on the host with the
//! owner lvh gives them (the directory's owner under a root lvh, the caller
//! otherwise), no device nodes and nothing outside the shared directory for
//! the guest, virtiofsd gone when lvh is SIGKILLed, a run that ends at once
//! when virtiofsd dies under it, 9p with the reason when virtiofsd is
//! missing, and `/host` in command and shell mode alike.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::runner::{boot_files, lvh_run};
use crate::support::{assert_code, children, keep, text};

/// `nobody`: the owner of the shared directories (a user that is not root).
const NOBODY: u32 = 65534;

/// A directory under /tmp (reachable by every user) owned by `nobody`.
fn nobody_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("lvh-vfs-test")
        .tempdir_in("/tmp")
        .unwrap();
    chown_tree(d.path(), NOBODY);
    d
}

fn chown_tree(p: &Path, id: u32) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{id}:{id}"))
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success(), "chown {}", p.display());
}

fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What guest root tries: write, make devices, set setuid bits, and take
/// over a file root owns in the shared directory.
const GUEST: &str = "mount | grep ' /host '; pwd
echo from-guest >new.txt
mkdir made; echo x >made/f
mknod blk b 254 0 || echo no-blk
cp /bin/true suid; chmod 4755 suid; chown 0:0 suid || echo no-chown
chmod 4755 rootfile || echo no-chmod-rootfile
echo appended >>rootfile || echo no-write-rootfile
cat in.txt";

#[test]
fn a_root_lvh_writes_as_the_directory_owner_and_makes_no_device() {
    let d = nobody_dir();
    std::fs::write(d.path().join("in.txt"), "from-host\n").unwrap();
    chown_tree(d.path(), NOBODY);
    // A file of root's in the directory: the guest cannot touch it.
    std::fs::write(d.path().join("rootfile"), "root's\n").unwrap();
    std::fs::set_permissions(d.path().join("rootfile"), PermissionsExt::from_mode(0o755)).unwrap();
    let o = run(lvh_run(
        Arch::Amd64,
        &[
            "--host-mount",
            d.path().to_str().unwrap(),
            "--host-mount-fs",
            "virtiofs",
            "--",
            "sh",
            "-c",
            GUEST,
        ],
    ));
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.starts_with("host_mount on /host type virtiofs"),
        "{}",
        text(&o)
    );
    for want in [
        "/host\n",
        "no-blk",
        "no-chown",
        "no-chmod-rootfile",
        "no-write-rootfile",
        "from-host\n",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{}", text(&o));
    }
    for name in ["new.txt", "made", "made/f", "suid"] {
        let m = std::fs::symlink_metadata(d.path().join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY), "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(d.path().join("new.txt")).unwrap(),
        "from-guest\n"
    );
    assert!(!d.path().join("blk").exists());
    for entry in walk(d.path()) {
        let m = std::fs::symlink_metadata(&entry).unwrap();
        let t = m.file_type();
        assert!(
            !t.is_block_device() && !t.is_char_device(),
            "{}",
            entry.display()
        );
        // A setuid bit only ever for the owner's own files, never root's.
        if m.mode() & 0o6000 != 0 {
            assert_eq!(m.uid(), NOBODY, "{}", entry.display());
        }
    }
    let root = std::fs::metadata(d.path().join("rootfile")).unwrap();
    assert_eq!((root.uid(), root.mode() & 0o7777), (0, 0o755));
    assert_eq!(
        std::fs::read_to_string(d.path().join("rootfile")).unwrap(),
        "root's\n"
    );
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            v.extend(walk(&p));
        }
        v.push(p);
    }
    v
}

#[test]
fn a_user_lvh_writes_as_that_user() {
    // The fixtures live under root's home: a copy that `nobody` can read,
    // with the kernel's build tree shape so that its configuration is found.
    let t = tempfile::Builder::new()
        .prefix("lvh-vfs-user")
        .tempdir_in("/tmp")
        .unwrap();
    let (kernel, image) = boot_files(Arch::Amd64);
    let tree = kernel.ancestors().nth(4).unwrap();
    let k = t.path().join("k");
    std::fs::create_dir_all(k.join("arch/x86/boot")).unwrap();
    std::fs::write(k.join("Kconfig"), "").unwrap();
    std::fs::copy(tree.join(".config"), k.join(".config")).unwrap();
    std::fs::copy(&kernel, k.join("arch/x86/boot/bzImage")).unwrap();
    let img = t.path().join("root.img");
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(&image)
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success());
    let share = t.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("in.txt"), "from-host\n").unwrap();
    chown_tree(t.path(), NOBODY);
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_lvh"))
        .args(["run", "--kernel"])
        .arg(k.join("arch/x86/boot/bzImage"))
        .arg("--image")
        .arg(&img)
        .args(["--mem", "512M", "--host-mount"])
        .arg(&share)
        .args(["--", "sh", "-c", GUEST])
        .env_clear()
        .env("HOME", t.path())
        .env("TMPDIR", t.path())
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LVH_ACCEL", "tcg")
        .env("CI", "true");
    let o = run(c);
    assert_code(&o, 0);
    assert!(
        stdout(&o).starts_with("host_mount on /host type virtiofs"),
        "{}",
        text(&o)
    );
    assert!(stdout(&o).contains("no-blk"), "{}", text(&o));
    for name in ["new.txt", "made/f", "suid"] {
        let m = std::fs::metadata(share.join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY), "{name}");
    }
}

#[test]
fn a_symlink_does_not_lead_the_guest_out_of_the_shared_directory() {
    let outer = nobody_dir();
    let secret = outer.path().join("secret.txt");
    std::fs::write(&secret, "HOST-SECRET-8d1f\n").unwrap();
    let share = outer.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::os::unix::fs::symlink("../secret.txt", share.join("rel")).unwrap();
    std::os::unix::fs::symlink(&secret, share.join("abs")).unwrap();
    std::os::unix::fs::symlink(outer.path(), share.join("dir")).unwrap();
    chown_tree(outer.path(), NOBODY);
    let o = run(lvh_run(
        Arch::Amd64,
        &[
            "--host-mount",
            share.to_str().unwrap(),
            "--host-mount-fs",
            "virtiofs",
            "--",
            "sh",
            "-c",
            "mount | grep -c ' /host type virtiofs'
             cat /host/rel /host/abs /host/dir/secret.txt /host/../secret.txt 2>&1
             ls -a /host/.. /host/dir/ 2>&1
             cd /host && cd .. && pwd; echo done",
        ],
    ));
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.starts_with("1\n") && out.ends_with("/\ndone\n"),
        "{}",
        text(&o)
    );
    assert!(!out.contains("HOST-SECRET"), "{}", text(&o));
}

#[test]
fn virtiofsd_dies_with_a_killed_lvh() {
    let d = nobody_dir();
    let mut c = lvh_run(
        Arch::Amd64,
        &[
            "--host-mount",
            d.path().to_str().unwrap(),
            "--host-mount-fs",
            "virtiofs",
            "--timeout",
            "120s",
            "--",
            "sh",
            "-c",
            "echo up; sleep 100",
        ],
    );
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "up\n");
    let vfs = children(child.id(), "virtiofsd");
    let qemu = children(child.id(), "qemu-system");
    assert_eq!((vfs.len(), qemu.len()), (1, 1), "{vfs:?} {qemu:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let alive = |p: &u32| Path::new(&format!("/proc/{p}")).exists();
    while vfs.iter().chain(&qemu).any(alive) {
        assert!(
            Instant::now() < end,
            "outlived lvh: virtiofsd {vfs:?}, QEMU {qemu:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn without_virtiofsd_the_mount_is_9p_and_lvh_says_why() {
    let d = nobody_dir();
    let args = |fs: &'static str| {
        let mut c = lvh_run(
            Arch::Amd64,
            &[
                "--host-mount",
                d.path().to_str().unwrap(),
                "--host-mount-fs",
                fs,
                "--",
                "sh",
                "-c",
                "mount | grep ' /host ' | cut -d' ' -f5; pwd",
            ],
        );
        c.env("PATH", "/usr/bin:/bin").env_remove("LVH_VIRTIOFSD");
        c
    };
    let o = run(args("auto"));
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "9p\n/host\n");
    let lines: Vec<_> = stderr(&o)
        .lines()
        .filter(|l| l.contains("host mount over 9p"))
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 1, "{}", text(&o));
    assert!(
        lines[0].contains("virtiofsd was not found (install it with scripts/install-deps.sh"),
        "{}",
        lines[0]
    );
    // Asked for by name, it is an error before anything boots.
    let o = run(args("virtiofs"));
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stderr(&o).contains("--host-mount-fs") && stderr(&o).contains("virtiofsd was not found"),
        "{}",
        text(&o)
    );
    // A name that is not there is not replaced by the one on PATH.
    let mut c = args("auto");
    c.env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LVH_VIRTIOFSD", "/nonexistent/virtiofsd");
    let o = run(c);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "9p\n/host\n");
}

#[test]
fn the_shell_finds_the_host_mount_at_host_as_a_command_does() {
    let d = nobody_dir();
    std::fs::write(d.path().join("hello.txt"), "from-the-host\n").unwrap();
    for fs in ["virtiofs", "9p"] {
        let o = crate::shell::piped_shell(
            &[
                "--host-mount",
                d.path().to_str().unwrap(),
                "--host-mount-fs",
                fs,
            ],
            "echo at-$(pwd)-$(mount | grep ' /host ' | cut -d' ' -f5); cat hello.txt\nexit 4\n",
        );
        assert_code(&o, 4);
        let out = stdout(&o);
        assert!(out.contains(&format!("at-/host-{fs}")), "{}", text(&o));
        assert!(out.contains("from-the-host"), "{}", text(&o));
    }
}

/// How long lvh may take to end a run whose virtiofsd died (TCG, a loaded
/// machine); it takes well under a second.
const DEAD_DAEMON_DEADLINE: Duration = Duration::from_secs(30);

fn kept(b: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&b.lock().unwrap()).into_owned()
}

/// Runs lvh over virtiofs with `args` (a command or `--shell`, whose guest
/// prints `marker`, then keeps reading `f.txt` of the mount), writes `input`
/// to it, SIGKILLs its virtiofsd once the marker is out, and checks that lvh
/// ends soon after with the code of a host-side failure, naming virtiofsd
/// and the signal, and leaves neither virtiofsd nor QEMU behind.
fn kill_virtiofsd_under(args: &[&str], input: &str, marker: &str) {
    let d = nobody_dir();
    std::fs::write(d.path().join("f.txt"), "from-host\n").unwrap();
    chown_tree(d.path(), NOBODY);
    let dir = d.path().to_str().unwrap();
    let mut vfs_args = vec!["--host-mount", dir, "--host-mount-fs", "virtiofs"];
    vfs_args.extend(args);
    let mut child = lvh_run(Arch::Amd64, &vfs_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stdin stays open: the guest gets no end of input.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    let out = keep(child.stdout.take().unwrap());
    let err = keep(child.stderr.take().unwrap());
    let booted = Instant::now() + Duration::from_secs(180);
    while !kept(&out).contains(marker) {
        if Instant::now() > booted || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("no {marker:?}:\n{}\n{}", kept(&out), kept(&err));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let vfs = children(child.id(), "virtiofsd");
    let qemu = children(child.id(), "qemu-system");
    assert_eq!((vfs.len(), qemu.len()), (1, 1), "{vfs:?} {qemu:?}");
    // The guest is reading the mount now.
    std::thread::sleep(Duration::from_secs(1));
    let pid = nix::unistd::Pid::from_raw(vfs[0] as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if killed.elapsed() > DEAD_DAEMON_DEADLINE {
            let _ = child.kill();
            panic!(
                "lvh still ran {DEAD_DAEMON_DEADLINE:?} after virtiofsd was killed:\n{}",
                kept(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = killed.elapsed();
    eprintln!("lvh ended {took:?} after virtiofsd was killed");
    // lvh reaped both before it exited.
    let alive = |p: &u32| Path::new(&format!("/proc/{p}")).exists();
    assert!(
        !vfs.iter().chain(&qemu).any(alive),
        "left behind: virtiofsd {vfs:?}, QEMU {qemu:?}"
    );
    drop(stdin);
    std::thread::sleep(Duration::from_millis(200));
    let e = kept(&err);
    assert_eq!(status.code(), Some(240), "{e}");
    let want = format!("virtiofsd (pid {}, serving --host-mount ", vfs[0]);
    assert!(e.contains(&want), "{want:?} not in:\n{e}");
    assert!(
        e.contains("was killed by signal 9 (SIGKILL) while the VM ran"),
        "{e}"
    );
}

#[test]
fn a_dead_virtiofsd_ends_a_command_at_once() {
    kill_virtiofsd_under(
        &[
            "--",
            "sh",
            "-c",
            "cat /host/f.txt; while :; do cat /host/f.txt >/dev/null; done",
        ],
        "",
        "from-host\n",
    );
}

#[test]
fn a_dead_virtiofsd_ends_a_shell_at_once() {
    // The marker is put together in the guest: the echoed input does not hold it.
    kill_virtiofsd_under(
        &["--shell"],
        "echo up-$((1+1)); while :; do cat f.txt >/dev/null; done\n",
        "up-2",
    );
}
