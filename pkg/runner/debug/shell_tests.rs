//! Table tests of the shell's pure parts: what the channels' events mean to
//! it and the supervisor's decisions.

use super::*;

#[test]
fn channel_events() {
    for (ev, want) in [
        (Event::ConsoleAlive, Some(ShellEvent::Alive)),
        (
            Event::Control(ControlMsg::Started),
            Some(ShellEvent::Started),
        ),
        (Event::Control(ControlMsg::Shell), Some(ShellEvent::Shell)),
        (
            Event::Control(ControlMsg::Exit {
                status: 3,
                stdout_bytes: 0,
                stderr_bytes: 0,
                taint: None,
            }),
            Some(ShellEvent::Exit(3)),
        ),
        (
            Event::Control(ControlMsg::Error("cannot mount".into())),
            Some(ShellEvent::GuestError("cannot mount".into())),
        ),
        (
            Event::GuestError("x".into()),
            Some(ShellEvent::GuestError("x".into())),
        ),
        (
            Event::Panic("p".into()),
            Some(ShellEvent::Panic("p".into())),
        ),
        (Event::KernelRelease("6.12".into()), None),
        (Event::Control(ControlMsg::Saving), None),
        (Event::ConsoleClosed, None),
    ] {
        assert_eq!(shell_event(ev.clone()), want, "{ev:?}");
    }
}

/// Events, now, QEMU exited, cancelled, the decision.
type Case = (Vec<ShellEvent>, Instant, bool, bool, Option<ShellEnd>);

/// Judges each case of a shell started at `t0` (boot timeout 90 s), with
/// virtiofsd dead first or not.
fn check(t0: Instant, cases: Vec<Case>, daemon_died: bool) {
    for (evs, now, qemu_exited, cancelled, want) in cases {
        let mut w = ShellWatch::new(t0, Duration::from_secs(90));
        for e in &evs {
            w.take(e.clone());
        }
        assert_eq!(
            w.next(now, qemu_exited, daemon_died, cancelled),
            want,
            "{evs:?} qemu_exited={qemu_exited} daemon_died={daemon_died} cancelled={cancelled}"
        );
    }
}

#[test]
fn decisions() {
    let t0 = Instant::now();
    let late = t0 + Duration::from_secs(91);
    use ShellEvent as E;
    let panic = E::Panic("Kernel panic - not syncing: x".into());
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
    check(t0, cases, false);
}

#[test]
fn a_dead_virtiofsd_ends_the_shell_unless_it_already_ended() {
    let t0 = Instant::now();
    let late = t0 + Duration::from_secs(91);
    use ShellEvent as E;
    let died = Some(ShellEnd::DaemonDied);
    let cases: Vec<Case> = vec![
        (vec![], t0, false, false, died.clone()),
        (vec![E::Alive, E::Started], t0, false, false, died.clone()),
        (vec![E::Shell], t0, false, false, died.clone()),
        // QEMU went down after it (and because of it)
        (vec![E::Shell], t0, true, false, died.clone()),
        // past the boot deadline, the cause still wins
        (vec![E::Alive], late, false, false, died.clone()),
        (
            vec![E::Shell, E::Exit(2)],
            t0,
            false,
            false,
            Some(ShellEnd::Exit(2)),
        ),
        (
            vec![E::Shell, E::Left],
            t0,
            false,
            false,
            Some(ShellEnd::Left),
        ),
        (
            vec![E::GuestError("e".into())],
            t0,
            false,
            false,
            Some(ShellEnd::GuestError("e".into())),
        ),
        (vec![E::Shell], t0, false, true, Some(ShellEnd::Interrupted)),
    ];
    check(t0, cases, true);
}
