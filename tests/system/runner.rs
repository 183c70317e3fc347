//! `lvh run` against real QEMU (TCG) with the cached kernel and image
//! fixtures: exit codes, separate and byte-exact output streams, the image
//! left unchanged, panics, silence, QEMU dying, Ctrl-C, port forwards, the
//! host mount, an arm64 guest, and a bootable systemd image reached over ssh.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use crate::support::{assert_code, daemon_pid, free_port, qemu_children, ssh_root, terminate};
use sha2::{Digest, Sha256};

/// The kernel and root image to boot for `arch`: the shared fixtures built by
/// lvh's own `kernels` and `images` commands (the one place tests get them).
pub(crate) fn boot_files(arch: Arch) -> (PathBuf, PathBuf) {
    let kernel = crate::support::fixtures::kernel::kernel(arch).expect("kernel fixture");
    let image = crate::support::fixtures::image::root_image(arch).expect("root image fixture");
    (kernel.image, image)
}

/// `lvh run --kernel K --image I <extra>` under TCG, environment kept clean.
pub(crate) fn lvh_run(arch: Arch, extra: &[&str]) -> Command {
    let (kernel, image) = boot_files(arch);
    let mut c = crate::support::lvh();
    c.arg("run")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--image")
        .arg(&image)
        .args(["--qemu-arch", arch.as_str(), "--mem", "512M"])
        .args(extra)
        .env("LVH_ACCEL", "tcg");
    c
}

fn output(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().expect("run lvh")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A checksum of a (sparse) file's whole content, equal for any two files
/// with the same bytes: its length and every 4 KiB block that is not all
/// zeros, with its offset (holes read as zeros). It reads only the data
/// extents, and it does not depend on the extent map, which the host file
/// system may change (delayed allocation, unwritten extents) while the
/// content stays the same.
pub(crate) fn content_digest(p: &Path) -> String {
    use std::io::{Seek, SeekFrom};
    use std::os::fd::AsRawFd;
    const BLOCK: usize = 4096;
    let mut f = std::fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    let fd = f.as_raw_fd();
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    let mut pos: i64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    while pos < len {
        // SAFETY: plain lseek on an open descriptor we own.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            break; // only a hole remains
        }
        // Whole blocks, so the same block is hashed whatever the extents.
        let data = data / BLOCK as i64 * BLOCK as i64;
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        f.seek(SeekFrom::Start(data as u64)).unwrap();
        let mut at = data;
        while at < hole {
            let n = ((hole - at) as usize).min(buf.len());
            f.read_exact(&mut buf[..n]).unwrap();
            for (i, block) in buf[..n].chunks(BLOCK).enumerate() {
                if block.iter().any(|&b| b != 0) {
                    h.update((at + (i * BLOCK) as i64).to_le_bytes());
                    h.update(block);
                }
            }
            at += n as i64;
        }
        pos = hole.max(pos + 1);
    }
    format!("{:x}", h.finalize())
}

#[test]
fn exit_codes_come_back_exactly() {
    for code in [0, 1, 42] {
        let o = output(lvh_run(
            Arch::Amd64,
            &["--", "sh", "-c", &format!("exit {code}")],
        ));
        assert_code(&o, code);
        assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    }
    // A missing program is the shell's 127, not an lvh failure.
    let o = output(lvh_run(Arch::Amd64, &["--", "/no/such/program"]));
    assert_code(&o, 127);
}

/// lvh's static init (from its initramfs, the default with the fixture
/// kernels) and its shell init (`--fast-boot=false`) give the command the same
/// world: environment, directory, hostname, mounts, network, stdin, and the
/// same answers to a missing program (a shell builtin is one: the command is a
/// program and its arguments, not shell code) and a missing `--cwd`.
#[test]
fn the_static_init_and_the_shell_init_agree() {
    let script = r#"echo "env $HOME $USER $LOGNAME $PATH"
echo "pwd $(pwd) $PWD"
echo "host $(hostname)"
awk '$3 != "9p" {print "mount", $2, $3}' /proc/mounts | sort -u
awk 'NR > 1 && $2 == "00000000" {print "route", $1, $3}' /proc/net/route
echo "eth0 $(cat /sys/class/net/eth0/operstate) lo $(cat /sys/class/net/lo/flags)"
echo "stdin $(cat | wc -c)"
grep -c rdinit=/lvh-init /proc/cmdline || true"#;
    for arch in [Arch::Amd64, Arch::Arm64] {
        let mut seen = Vec::new();
        for fast in [true, false] {
            let flag = format!("--fast-boot={fast}");
            let o = output(lvh_run(arch, &[&flag, "--", "sh", "-c", script]));
            assert_code(&o, 0);
            let out = text(&o.stdout);
            let (world, init) = out.trim_end().rsplit_once('\n').unwrap();
            assert_eq!(init, if fast { "1" } else { "0" }, "{arch:?} {flag}: {out}");
            for want in [
                "env /root root root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
                "\nmount / ext4\n",
                "\nmount /sys/fs/bpf bpf\n",
                "\nmount /dev/pts devpts\n",
                "\nroute eth0 0202000A\n",
                "\nstdin 0",
            ] {
                assert!(world.contains(want), "{arch:?} {flag}: {want:?} in\n{out}");
            }
            seen.push(world.to_string());
            for missing in ["no-such-program", "exit"] {
                let o = output(lvh_run(arch, &[&flag, "--", missing, "3"]));
                assert_code(&o, 127);
                let err = text(&o.stderr);
                assert!(err.contains(&format!("{missing}: not found")), "{err}");
            }
            let o = output(lvh_run(
                arch,
                &[&flag, "--cwd", "/no/such/dir", "--", "true"],
            ));
            assert!(
                text(&o.stderr).contains("cannot change to directory /no/such/dir"),
                "{arch:?} {flag}: {}",
                text(&o.stderr)
            );
            assert_ne!(o.status.code(), Some(0));
        }
        assert_eq!(seen[0], seen[1], "{arch:?}: static init vs shell init");
    }
}

/// `--cpu N` reaches a kernel without ACPI too (the fixture's tinyconfig
/// base): it counts CPUs from the MP table, one core per socket.
#[test]
fn the_guest_gets_the_cpus_it_was_given() {
    // With --fast-boot (the default) and more than one CPU, the kernel boots
    // with maxcpus=1 and lvh's init brings the others online before the
    // command; --fast-boot=false boots them with the kernel. The command sees
    // every CPU either way, on both arches.
    let script =
        "nproc; cat /sys/devices/system/cpu/online; grep -o 'maxcpus=[0-9]*' /proc/cmdline || true";
    for (arch, cpus, fast, late) in [
        (Arch::Amd64, "1", true, false),
        (Arch::Amd64, "2", true, true),
        (Arch::Amd64, "2", false, false),
        (Arch::Arm64, "2", true, true),
    ] {
        let fast_flag = format!("--fast-boot={fast}");
        let o = output(lvh_run(
            arch,
            &["--cpu", cpus, &fast_flag, "--", "sh", "-c", script],
        ));
        assert_code(&o, 0);
        let n: u32 = cpus.parse().unwrap();
        let online = if n == 1 {
            "0".to_string()
        } else {
            format!("0-{}", n - 1)
        };
        let maxcpus = if late { "maxcpus=1\n" } else { "" };
        assert_eq!(
            text(&o.stdout),
            format!("{cpus}\n{online}\n{maxcpus}"),
            "{arch:?} --cpu {cpus} {fast_flag}"
        );
    }
}

#[test]
fn stdout_and_stderr_arrive_apart_whole_and_byte_exact() {
    // Several MB of random bytes on stdout, their checksum and a marker on
    // stderr; the kernel log must appear in neither.
    let script = "head -c 6000000 /dev/urandom >/tmp/data && echo to-stderr >&2 && \
                  sha256sum </tmp/data >&2 && printf 'a\\r\\n\\0b' && cat /tmp/data";
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("console.log");
    let o = output(lvh_run(
        Arch::Amd64,
        &[
            "--console-log-file",
            log.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            script,
        ],
    ));
    assert_code(&o, 0);
    assert_eq!(&o.stdout[..5], b"a\r\n\0b");
    let data = &o.stdout[5..];
    assert_eq!(data.len(), 6_000_000, "stdout length");
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "stderr: {err}");
    assert_eq!(lines[0], "to-stderr");
    let want = format!("{:x}", Sha256::digest(data));
    assert!(
        lines[1].starts_with(&want),
        "guest sum {} vs {want}",
        lines[1]
    );
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(console.contains("Linux version"), "{console}");
    assert!(!err.contains("Linux version"));
}

#[test]
fn the_image_is_never_modified_and_persist_writes() {
    let (_, image) = boot_files(Arch::Amd64);
    let mtime = || std::fs::metadata(&image).unwrap().modified().unwrap();
    let (before, before_mtime) = (content_digest(&image), mtime());
    let o = output(lvh_run(
        Arch::Amd64,
        &[
            "--",
            "sh",
            "-c",
            "echo scribble >/root/lvh-test && sync && cat /root/lvh-test",
        ],
    ));
    assert_code(&o, 0);
    assert_eq!(text(&o.stdout), "scribble\n");
    assert_eq!(mtime(), before_mtime, "the run touched the image");
    assert_eq!(content_digest(&image), before, "the run changed the image");

    // --persist writes reach the image: on a copy, never the fixture.
    let d = tempfile::tempdir().unwrap();
    let copy = d.path().join("copy.img");
    assert!(Command::new("cp")
        .args(["--sparse=always"])
        .arg(&image)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let (kernel, _) = boot_files(Arch::Amd64);
    let run = |cmd: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lvh"));
        c.arg("run")
            .arg("--kernel")
            .arg(&kernel)
            .arg("--image")
            .arg(&copy)
            .args(["--persist", "--mem", "512M", "--", "sh", "-c", cmd])
            .env("LVH_ACCEL", "tcg");
        output(c)
    };
    assert_code(&run("echo kept >/root/persisted"), 0);
    assert_ne!(
        content_digest(&copy),
        before,
        "--persist did not reach the image"
    );
    let o = run("cat /root/persisted");
    assert_code(&o, 0);
    assert_eq!(text(&o.stdout), "kept\n");
}

#[test]
fn a_kernel_panic_is_reported_quickly() {
    let start = Instant::now();
    let o = output(lvh_run(
        Arch::Amd64,
        &["--append", "init=/nonexistent", "--", "true"],
    ));
    assert_code(&o, 241);
    let e = text(&o.stderr);
    assert!(e.contains("the guest kernel panicked"), "{e}");
    assert!(e.contains("Requested init /nonexistent failed"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_silent_guest_hits_the_boot_deadline() {
    // -S: QEMU starts with the CPU stopped, so the guest never prints.
    let start = Instant::now();
    let o = output(lvh_run(
        Arch::Amd64,
        &["--boot-timeout", "3", "--qemu-arg=-S", "--", "true"],
    ));
    assert_code(&o, 242);
    assert!(
        text(&o.stderr).contains("no sign of life within 3s"),
        "{}",
        text(&o.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn qemu_failing_to_start_and_dying_early_are_told_apart() {
    let o = output(lvh_run(
        Arch::Amd64,
        &[
            "--qemu-arg=-device",
            "--qemu-arg=no-such-device",
            "--",
            "true",
        ],
    ));
    assert_code(&o, 240);
    let e = text(&o.stderr);
    assert!(
        e.contains("QEMU could not start") && e.contains("no-such-device"),
        "{e}"
    );

    // Kill QEMU while the command runs.
    let mut c = lvh_run(Arch::Amd64, &["--", "sh", "-c", "echo ready; sleep 600"]);
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(child.stdout.take().unwrap(), "ready");
    let qemu = qemu_children(child.id());
    assert_eq!(qemu.len(), 1, "{qemu:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 243);
    assert!(
        text(&o.stderr).contains("QEMU exited (was killed by signal 9"),
        "{}",
        text(&o.stderr)
    );
}

/// Reads lines until one equals `want` (the guest is up and running the command).
fn wait_for_line(r: impl Read + Send + 'static, want: &str) {
    let want = want.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if line == want {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the guest command did not start");
}

#[test]
fn ctrl_c_leaves_no_qemu_and_no_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = lvh_run(Arch::Amd64, &["--", "sh", "-c", "echo ready; sleep 600"]);
    c.env("TMPDIR", tmp.path());
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(child.stdout.take().unwrap(), "ready");
    let qemu = qemu_children(child.id());
    assert_eq!(qemu.len(), 1, "{qemu:?}");
    let run_dirs: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(
        run_dirs.len(),
        1,
        "lvh keeps its run directory under TMPDIR"
    );
    let start = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 130);
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(
        !Path::new(&format!("/proc/{}", qemu[0])).exists(),
        "QEMU {} outlived lvh",
        qemu[0]
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_port_forward_answers_on_loopback() {
    let port = free_port();
    let mut c = lvh_run(
        Arch::Amd64,
        &[
            "-p",
            &format!("{port}:7777"),
            "--",
            "sh",
            "-c",
            "echo ready; echo hello-from-guest | nc -l -N 7777",
        ],
    );
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(child.stdout.take().unwrap(), "ready");
    // slirp accepts before the guest listens: retry until the guest answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = String::new();
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            got.clear();
            let _ = s.read_to_string(&mut got);
            if got.contains("hello-from-guest") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(got, "hello-from-guest\n");
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 0);
}

#[test]
fn host_mount_round_trip_and_cwd() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/in.txt"), "from-host\n").unwrap();
    let o = output(lvh_run(
        Arch::Amd64,
        &[
            "--host-mount",
            d.path().to_str().unwrap(),
            "--cwd",
            "sub",
            "--",
            "sh",
            "-c",
            "pwd; cat in.txt; echo from-guest >out.txt",
        ],
    ));
    assert_code(&o, 0);
    assert_eq!(text(&o.stdout), "/host/sub\nfrom-host\n");
    assert_eq!(
        std::fs::read_to_string(d.path().join("sub/out.txt")).unwrap(),
        "from-guest\n"
    );
}

#[test]
fn an_arm64_guest_runs_a_command() {
    // Command mode on arm64 under TCG: the exit code, and stdout and stderr
    // each carrying only their own stream (no kernel log in either).
    let o = output(lvh_run(
        Arch::Arm64,
        &[
            "--",
            "sh",
            "-c",
            "uname -m; echo to-stderr >&2; printf 'no newline'; exit 7",
        ],
    ));
    assert_code(&o, 7);
    assert_eq!(text(&o.stdout), "aarch64\nno newline");
    assert_eq!(text(&o.stderr), "to-stderr\n");
}

#[test]
fn verbose_shows_the_console_on_stderr_only() {
    let o = output(lvh_run(Arch::Amd64, &["-v", "--", "echo", "hi"]));
    assert_code(&o, 0);
    assert_eq!(text(&o.stdout), "hi\n");
    assert!(text(&o.stderr).contains("Linux version"));
    // little-vm-helper's run --verbose: the QEMU command is printed before it runs
    assert!(text(&o.stderr).contains("qemu command: qemu-system-x86_64 "));
}

/// Waits up to `within` for process `pid` to end; fails if it still runs.
#[track_caller]
fn assert_exits(pid: u32, within: Duration) {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + within;
    while proc.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!proc.exists(), "QEMU {pid} was left running");
}

#[test]
fn daemonize_leaves_qemu_running_and_wait_ssh_fails_clearly() {
    // -S keeps the guest CPU stopped: QEMU stays up, nothing ever answers.
    let o = output(lvh_run(Arch::Amd64, &["--daemonize", "--qemu-arg=-S"]));
    assert_code(&o, 0);
    let pid = daemon_pid(&text(&o.stderr));
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} is not running"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let port = free_port();
    let start = Instant::now();
    let o = output(lvh_run(
        Arch::Amd64,
        &[
            "--daemonize",
            "--qemu-arg=-S",
            "-p",
            &format!("{port}:22"),
            "--wait-ssh",
            "--ssh-timeout",
            "3",
        ],
    ));
    assert_code(&o, 242);
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!("ssh did not answer on 127.0.0.1:{port} within 3s")),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
    let pid = daemon_pid(&e);
    assert_exits(pid, Duration::from_secs(10));
}

#[test]
fn a_bootable_image_boots_by_itself_and_wait_ssh_returns_when_ssh_answers() {
    // The little-vm-helper way: no --kernel (extlinux and Debian's kernel in
    // the image), systemd, sshd, a port forward, then ssh in.
    let f = crate::support::fixtures::image::ssh_image().expect("ssh image fixture");
    let before = content_digest(&f.image);
    let port = free_port();
    let o = crate::support::daemon_ssh(&f.image, port)
        .args(["--ssh-timeout", "600"])
        .output()
        .expect("run lvh");
    assert_code(&o, 0);
    let pid = daemon_pid(&text(&o.stderr));
    let ssh = ssh_root(&f.key, port, "cat /proc/cmdline; id -u");
    terminate(pid).expect("QEMU was running");
    let out = text(&ssh.stdout);
    assert!(ssh.status.success(), "ssh failed: {}", text(&ssh.stderr));
    // Booted by the image's own bootloader (lvh's command line would say init=).
    assert!(out.contains("root=LABEL=root"), "{out}");
    assert!(!out.contains("init="), "{out}");
    assert!(out.ends_with("0\n"), "{out}");
    assert_exits(pid, Duration::from_secs(20));
    assert_eq!(content_digest(&f.image), before, "the image was modified");
}
