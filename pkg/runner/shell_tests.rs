//! Table tests of the shell's pure parts: the guest script, the terminal
//! facts passed to it, control lines and the supervisor's decisions.

use super::*;
use crate::runner::term::WinSize;

fn guest(mount: Option<&str>, cwd: Option<&str>, persist: bool) -> ShellGuest {
    ShellGuest {
        mount_name: mount.map(String::from),
        cwd: cwd.map(String::from),
        persist,
    }
}

fn tty(rows: u16, cols: u16) -> TermInfo {
    TermInfo {
        term: "xterm-256color".into(),
        size: Some(WinSize { rows, cols }),
    }
}

#[test]
fn the_script_mounts_the_host_dir_by_name_and_starts_there() {
    let s = shell_script(&guest(Some("linux"), None, false), "ttyS0", &tty(37, 101));
    assert!(s.starts_with(&guest::prelude(false)), "{s}");
    for want in [
        "mkdir -p /host/linux\nmount -t 9p -o trans=virtio,version=9p2000.L host_mount /host/linux || lvh_fail",
        "cd /host/linux || lvh_fail",
        "export TERM=xterm-256color\nlvh_tty=/dev/ttyS0\n",
        "stty rows 37 cols 101 <\"$lvh_tty\"",
        "echo shell >&9\nsetsid -w -c \"$lvh_sh\" -l <>\"$lvh_tty\" >&0 2>&0 8>&- 9>&-\nlvh_status=$?",
        "echo \"exit $lvh_status 0 0 - -\" >&9",
        "[ \"$lvh_k\" = winsz ] && stty rows \"$lvh_r\" cols \"$lvh_c\"",
    ] {
        assert!(s.contains(want), "{want:?} not in:\n{s}");
    }
    assert!(!s.contains("\nsync\n"));
    // The size reader starts before the host is told the shell runs.
    assert!(s.find("winsz").unwrap() < s.find("echo shell").unwrap());
}

#[test]
fn working_directories() {
    for (mount, cwd, want) in [
        (Some("src"), None, "cd /host/src ||"),
        (Some("src"), Some("tools/bpf"), "cd /host/src/tools/bpf ||"),
        (Some("src"), Some("/tmp"), "cd /tmp ||"),
        (None, Some("/var/tmp"), "cd /var/tmp ||"),
        (None, Some("x"), "cd /root/x ||"),
        (None, None, "cd /root 2>/dev/null || cd /"),
        (Some("my dir"), None, "cd '/host/my dir' ||"),
    ] {
        let s = shell_script(&guest(mount, cwd, false), "ttyS0", &tty(24, 80));
        assert!(s.contains(want), "{mount:?} {cwd:?}: {want:?} not in:\n{s}");
        assert_eq!(s.contains("host_mount"), mount.is_some());
    }
}

#[test]
fn persist_syncs_before_reporting_and_no_size_without_a_tty() {
    let t = TermInfo::new(None, false, None);
    let s = shell_script(&guest(None, None, true), "ttyAMA0", &t);
    assert!(s.contains("lvh_tty=/dev/ttyAMA0"));
    assert!(s.contains("export TERM=dumb"));
    assert!(!s.contains("stty rows 0"));
    assert!(!s.contains("<\"$lvh_tty\" 2>/dev/null\ncommand"), "{s}");
    assert!(s.contains("sync\necho \"exit $lvh_status"), "{s}");
}

#[test]
fn term_names() {
    for (env, is_tty, want) in [
        (Some("xterm-256color"), true, "xterm-256color"),
        (Some("screen.xterm"), true, "screen.xterm"),
        (Some("bad;rm -rf"), true, "vt220"),
        (Some(""), true, "vt220"),
        (None, true, "vt220"),
        (Some("xterm"), false, "dumb"),
    ] {
        assert_eq!(TermInfo::new(env, is_tty, None).term, want, "{env:?}");
    }
}

#[test]
fn mount_names() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("linux");
    std::fs::create_dir(&src).unwrap();
    assert_eq!(mount_name(&src), "linux");
    assert_eq!(mount_name(&src.join(".")), "linux");
    assert_eq!(mount_name(&src.join("../linux/")), "linux");
    assert_eq!(mount_name(Path::new("/")), "root");
}

#[test]
fn control_lines() {
    for (line, want) in [
        ("shell\n", Some(ShellEvent::Shell)),
        ("started\n", Some(ShellEvent::Started)),
        ("exit 3 0 0 - -\n", Some(ShellEvent::Exit(3))),
        (
            "error cannot mount\n",
            Some(ShellEvent::GuestError("cannot mount".into())),
        ),
        ("shellfish\n", None),
    ] {
        assert_eq!(parse_control(line), want, "{line:?}");
    }
    assert_eq!(
        winsz_line(WinSize {
            rows: 50,
            cols: 132
        }),
        "winsz 50 132\n"
    );
}

#[test]
fn decisions() {
    let t0 = Instant::now();
    let boot = Duration::from_secs(90);
    let late = t0 + Duration::from_secs(91);
    let w = |evs: &[ShellEvent]| {
        let mut w = ShellWatch::new(t0, boot);
        for e in evs {
            w.take(e.clone());
        }
        w
    };
    use ShellEvent as E;
    let panic = E::Panic("Kernel panic - not syncing: x".into());
    /// Events, now, QEMU exited, cancelled, the decision.
    type Case = (Vec<ShellEvent>, Instant, bool, bool, Option<ShellEnd>);
    let cases: Vec<Case> = vec![
        (vec![], t0, false, false, None),
        (
            vec![E::Alive, E::Started, E::Shell],
            late,
            false,
            false,
            None,
        ),
        (
            vec![E::Shell, E::Exit(3)],
            t0,
            false,
            false,
            Some(ShellEnd::Exit(3)),
        ),
        // the status wins over QEMU's exit that follows it
        (
            vec![E::Shell, E::Exit(0)],
            t0,
            true,
            false,
            Some(ShellEnd::Exit(0)),
        ),
        (
            vec![E::Shell, E::Left],
            t0,
            false,
            false,
            Some(ShellEnd::Left),
        ),
        (vec![E::Left], t0, false, false, Some(ShellEnd::Left)),
        (
            vec![E::Started, E::GuestError("no setsid".into())],
            t0,
            false,
            false,
            Some(ShellEnd::GuestError("no setsid".into())),
        ),
        (vec![E::Shell], t0, false, true, Some(ShellEnd::Interrupted)),
        // a panic line alone (the user may cat one) ends nothing ...
        (vec![E::Shell, panic.clone()], late, false, false, None),
        // ... until QEMU exits (panic=-1 and -no-reboot)
        (
            vec![E::Shell, panic.clone()],
            t0,
            true,
            false,
            Some(ShellEnd::Panic("Kernel panic - not syncing: x".into())),
        ),
        (vec![E::Shell], t0, true, false, Some(ShellEnd::QemuExited)),
        (vec![], t0, true, false, Some(ShellEnd::QemuFailed)),
        (vec![], late, false, false, Some(ShellEnd::NoSignOfLife)),
        (
            vec![E::Alive],
            late,
            false,
            false,
            Some(ShellEnd::NotStarted),
        ),
        (
            vec![E::Alive, E::Started],
            late,
            false,
            false,
            Some(ShellEnd::NotStarted),
        ),
    ];
    for (evs, now, qemu_exited, cancelled, want) in cases {
        assert_eq!(
            w(&evs).next(now, qemu_exited, cancelled),
            want,
            "{evs:?} qemu_exited={qemu_exited} cancelled={cancelled}"
        );
    }
}

#[test]
fn odd_names_stay_quoted_in_commands_and_messages() {
    let s = shell_script(&guest(Some("a\"$(x)"), None, false), "ttyS0", &tty(24, 80));
    assert!(s.contains("mkdir -p '/host/a\"$(x)'\n"), "{s}");
    assert!(
        s.contains("lvh_fail \"cannot mount the host directory at /host/a__(x)\""),
        "{s}"
    );
}
