//! Guests that hang, fill their disk or lose their host share, and a
//! daemonized QEMU killed from outside: each run ends within a bounded time
//! with its documented exit code (a kernel panic, a silent guest and QEMU
//! killed mid-command are in `runner`). The run never changes the image.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lvh::arch::Arch;

use super::run;
use crate::runner::lvh_run;
use crate::support::{assert_code, daemon_pid, text};

#[test]
fn a_stuck_command_ends_at_its_deadline_with_244_and_the_console_tail() {
    // The console is silent while the command sleeps: only the deadline ends it.
    let start = Instant::now();
    let o = run(lvh_run(
        Arch::Amd64,
        &["--timeout", "5", "--", "sh", "-c", "echo begun; sleep 600"],
    ));
    assert_code(&o, 244);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("did not finish within 5s"), "{}", text(&o));
    assert!(e.contains("last console lines"), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "begun\n");
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_full_guest_disk_fails_the_command_not_the_run() {
    // Fill the root file system, then write: ENOSPC for the command, while
    // lvh's channel still brings its output and exit code back.
    let start = Instant::now();
    let o = run(lvh_run(
        Arch::Amd64,
        &[
            "--",
            "sh",
            "-c",
            "fallocate -l $(df --output=avail -B1 / | tail -1) /fill; \
             dd if=/dev/zero of=/fill2 bs=1M 2>/dev/null; \
             head -c 4M /dev/zero > /more || echo write-failed; exit 7",
        ],
    ));
    assert_code(&o, 7);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "write-failed\n",
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No space left on device"),
        "{}",
        text(&o)
    );
    assert!(
        start.elapsed() < Duration::from_secs(180),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_host_share_removed_mid_run_fails_the_access_not_the_run() {
    let d = tempfile::tempdir().unwrap();
    let share = d.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("f"), "x").unwrap();
    let mut c = lvh_run(
        Arch::Amd64,
        &[
            "--host-mount",
            share.to_str().unwrap(),
            "--timeout",
            "120",
            "--",
            "sh",
            "-c",
            "cat /host/f; echo; echo ready; while [ ! -e /tmp/go ]; do sleep 0.2; \
             ls /host/f >/dev/null 2>&1 || break; done; ls /host/f; echo rc=$?",
        ],
    );
    let start = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut l = String::new();
        assert!(out.read_line(&mut l).unwrap() > 0, "no ready line: {seen}");
        seen.push_str(&l);
        if l == "ready\n" {
            break;
        }
    }
    std::fs::remove_dir_all(&share).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{seen}{rest}\n{}", text(&o));
    assert!(seen.starts_with("x\n"), "{seen}");
    assert!(
        rest.contains("rc=") && !rest.contains("rc=0"),
        "the guest still saw the removed share: {rest}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(150),
        "{:?}",
        start.elapsed()
    );
}

fn pid_files(dir: &Path) -> Vec<String> {
    super::names(dir)
        .into_iter()
        .filter(|n| n.starts_with("lvh-qemu-") && n.ends_with(".pid"))
        .collect()
}

#[test]
fn a_killed_daemonized_qemu_does_not_leave_its_pid_file_for_ever() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = || {
        let mut c = lvh_run(Arch::Amd64, &["--daemonize", "--qemu-arg=-S"]);
        c.env("TMPDIR", tmp.path());
        let o = run(c);
        assert_code(&o, 0);
        daemon_pid(&String::from_utf8_lossy(&o.stderr))
    };
    let first = daemon();
    let files = pid_files(tmp.path());
    assert_eq!(files.len(), 1, "{files:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let gone = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{first}")).exists() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    // QEMU could not remove it: killed from outside.
    assert_eq!(pid_files(tmp.path()), files);

    let second = daemon();
    let now = pid_files(tmp.path());
    assert_eq!(now.len(), 1, "the stale pid file stayed: {now:?}");
    assert_ne!(now, files);
    let content = std::fs::read_to_string(tmp.path().join(&now[0])).unwrap();
    assert_eq!(content.trim(), second.to_string());
    let _ = crate::support::terminate(second);
    let gone = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{second}")).exists() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
}
