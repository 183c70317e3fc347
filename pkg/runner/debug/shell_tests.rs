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
