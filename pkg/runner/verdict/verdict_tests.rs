//! Table tests of the supervisor's verdict: each input alone, every ordering
//! of the inputs that compete, and the deadlines on both sides of their edge.

use super::allow::{parse_allowlist, Date};
use super::splat::SplatKind;
use super::*;
use crate::triage::Kind;

const S: Duration = Duration::from_secs(1);

fn limits(t0: Instant) -> Limits {
    Limits {
        start: t0,
        boot_timeout: 90 * S,
        timeout: Some(60 * S),
    }
}

fn exit(status: i32, out: u64, err: u64) -> Event {
    Event::Control(ControlMsg::Exit {
        status,
        stdout_bytes: out,
        stderr_bytes: err,
        taint: None,
    })
}

fn warning(function: &str) -> Splat {
    let first = format!("WARNING: CPU: 0 PID: 1 at x.c:1 {function}+0x1/0x2");
    Splat {
        kind: SplatKind::Report(Kind::Warning),
        title: format!("WARNING in {function}"),
        fingerprint: "0123456789abcdef".into(),
        function: Some(function.into()),
        first_line: first.clone(),
        lines: vec![first],
    }
}

fn lockup() -> Splat {
    Splat {
        kind: SplatKind::Report(Kind::SoftLockup),
        title: "BUG: soft lockup in spin".into(),
        fingerprint: "fedcba9876543210".into(),
        function: Some("spin".into()),
        first_line: "watchdog: BUG: soft lockup - CPU#0 stuck for 3s! [sh:1]".into(),
        lines: vec![],
    }
}

/// A tick at `secs` after start with everything else quiet.
fn tick(t0: Instant, secs: f64) -> Tick {
    Tick {
        now: t0 + Duration::from_secs_f64(secs),
        qemu_exit: None,
        daemon_exit: None,
        out_bytes: 0,
        err_bytes: 0,
        cancelled: false,
    }
}

fn policy(mode: SplatMode) -> SplatPolicy {
    SplatPolicy {
        mode,
        ..Default::default()
    }
}

/// Feeds `events` at 1 s (all before judging, as the loop drains its queue),
/// then judges at `at` with `adjust` applied to the tick.
fn judge(mode: SplatMode, events: &[Event], at: f64, adjust: impl Fn(&mut Tick)) -> Action {
    let t0 = Instant::now();
    let mut w = Watch::new(limits(t0), policy(mode));
    w.take(Event::ConsoleAlive, t0);
    w.take(Event::Control(ControlMsg::Started), t0 + S);
    for e in events {
        w.take(e.clone(), t0 + S);
    }
    let mut t = tick(t0, at);
    adjust(&mut t);
    w.next(&t)
}

fn stop(v: Verdict) -> Action {
    Action::Stop(v)
}

/// Name, mode, events, when to judge, how the tick differs, expected action.
type Case = (
    &'static str,
    SplatMode,
    Vec<Event>,
    f64,
    Box<dyn Fn(&mut Tick)>,
    Action,
);

fn bytes(t: &mut Tick) {
    t.out_bytes = 3;
    t.err_bytes = 1;
}

fn none(_: &mut Tick) {}

fn qemu_gone(t: &mut Tick) {
    t.qemu_exit = Some((false, t.now));
}

fn daemon_killed(t: &mut Tick) {
    t.daemon_exit = Some((false, t.now));
}

fn check(cases: Vec<Case>) {
    for (name, mode, events, at, adjust, want) in cases {
        assert_eq!(judge(mode, &events, at, adjust), want, "{name}");
    }
}

#[test]
#[rustfmt::skip]
fn each_input_alone() {
    use SplatMode::*;
    let panic = Event::Panic("Kernel panic - not syncing: x".into());
    let panicked = || stop(Verdict::Panic("Kernel panic - not syncing: x".into()));
    check(vec![
        ("nothing yet", Fail, vec![], 2.0, Box::new(none), Action::Wait),
        ("exit, all bytes", Fail, vec![exit(3, 3, 1)], 2.0, Box::new(bytes), stop(Verdict::Done(3))),
        ("exit, bytes in flight", Fail, vec![exit(0, 3, 1)], 2.0, Box::new(none), Action::Wait),
        ("exit, output stalled", Fail, vec![exit(0, 3, 1)], 2.0 + OUTPUT_STALL.as_secs_f64(), Box::new(none), Action::Wait),
        ("guest error", Fail, vec![Event::GuestError("no 9p".into())], 2.0, Box::new(none), stop(Verdict::GuestError("no 9p".into()))),
        ("control error", Fail, vec![Event::Control(ControlMsg::Error("e".into()))], 2.0, Box::new(none), stop(Verdict::GuestError("e".into()))),
        ("panic, settling", Fail, vec![panic.clone()], 2.0, Box::new(none), Action::Wait),
        ("panic, settled by time", Fail, vec![panic.clone()], 4.5, Box::new(none), panicked()),
        ("panic, QEMU gone", Fail, vec![panic.clone(), Event::ConsoleClosed], 2.0, Box::new(qemu_gone), panicked()),
        ("QEMU exited, draining", Fail, vec![], 2.0, Box::new(qemu_gone), Action::Wait),
        ("QEMU exited, drained", Fail, vec![Event::ConsoleClosed], 2.0, Box::new(qemu_gone), stop(Verdict::QemuExited)),
        ("timeout edge", Fail, vec![], 60.9, Box::new(none), Action::Wait),
        ("timeout", Fail, vec![], 61.0, Box::new(none), stop(Verdict::Timeout(60 * S))),
        ("Ctrl-C", Fail, vec![exit(0, 3, 1)], 2.0, Box::new(|t: &mut Tick| t.cancelled = true), stop(Verdict::Interrupted)),
        ("virtiofsd killed", Fail, vec![], 2.0, Box::new(daemon_killed), stop(Verdict::DaemonDied)),
    ]);
}

#[test]
#[rustfmt::skip]
fn splats_alone() {
    use SplatMode::*;
    let w = || Event::Splat(warning("f"));
    check(vec![
        ("warning, command running", Fail, vec![w()], 2.0, Box::new(none), Action::Wait),
        ("warning then exit", Fail, vec![w(), exit(0, 3, 1)], 2.0, Box::new(bytes), stop(Verdict::Splat(Some(0)))),
        ("warning then exit, warn mode", Warn, vec![w(), exit(0, 3, 1)], 2.0, Box::new(bytes), stop(Verdict::Done(0))),
        ("warning then exit, off", Off, vec![w(), exit(0, 3, 1)], 2.0, Box::new(bytes), stop(Verdict::Done(0))),
        ("a lockup stops the run", Fail, vec![Event::Splat(lockup())], 2.0, Box::new(none), stop(Verdict::Splat(None))),
        ("a lockup in warn mode waits", Warn, vec![Event::Splat(lockup())], 2.0, Box::new(none), Action::Wait),
        ("splat printing at exit", Fail, vec![Event::SplatBegan, exit(0, 3, 1)], 2.0, Box::new(bytes), Action::Wait),
        ("splat printing past settle", Fail, vec![Event::SplatBegan, exit(0, 3, 1)], 1.0 + SPLAT_SETTLE.as_secs_f64(), Box::new(bytes), stop(Verdict::Done(0))),
        ("splat printed after exit", Fail, vec![Event::SplatBegan, exit(0, 3, 1), w()], 2.0, Box::new(bytes), stop(Verdict::Splat(Some(0)))),
        ("splat printing, console closed", Fail, vec![Event::SplatBegan, exit(0, 3, 1), Event::ConsoleClosed], 2.0, Box::new(bytes), stop(Verdict::Done(0))),
    ]);
}

/// Every ordering of the competing inputs within one tick gives the same
/// verdict: the exit report first, then a guest error, then a panic, then a
/// splat, then QEMU's exit.
#[test]
fn every_ordering_of_competing_events() {
    let evs = [
        exit(7, 3, 1),
        Event::GuestError("g".into()),
        Event::Panic("Kernel panic - not syncing: p".into()),
        Event::Splat(lockup()),
        Event::ConsoleClosed,
    ];
    // Which subset is present (bitmask), in every order: the verdict depends
    // only on the subset.
    for mask in 1u32..(1 << evs.len()) {
        let present: Vec<&Event> = (0..evs.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| &evs[i])
            .collect();
        let want = expected(mask);
        for order in permutations(present.len()) {
            let events: Vec<Event> = order.iter().map(|&i| present[i].clone()).collect();
            let got = judge(SplatMode::Fail, &events, 10.0, |t| {
                t.out_bytes = 3;
                t.err_bytes = 1;
                t.qemu_exit = Some((true, t.now - 5 * S));
            });
            assert_eq!(got, want, "mask {mask:05b} order {events:?}");
        }
    }
}

fn expected(mask: u32) -> Action {
    let has = |i: u32| mask & (1 << i) != 0;
    if has(0) {
        // The command ended: a lockup splat fails it, nothing else matters.
        return stop(if has(3) {
            Verdict::Splat(Some(7))
        } else {
            Verdict::Done(7)
        });
    }
    if has(1) {
        return stop(Verdict::GuestError("g".into()));
    }
    if has(2) {
        return stop(Verdict::Panic("Kernel panic - not syncing: p".into()));
    }
    if has(3) {
        return stop(Verdict::Splat(None));
    }
    // QEMU exited long ago; the command was running.
    stop(Verdict::QemuExited)
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

/// A helper daemon's exit against everything else the loop can see.
#[test]
#[rustfmt::skip]
fn a_dead_daemon_ends_the_run_unless_something_else_explains_it() {
    use SplatMode::*;
    let at = |secs: f64, ok: bool| move |t: &mut Tick| t.daemon_exit = Some((ok, t.now - Duration::from_secs_f64(secs)));
    let with_qemu = |qemu_ago: f64, daemon_ago: f64, ok: bool| move |t: &mut Tick| {
        t.qemu_exit = Some((false, t.now - Duration::from_secs_f64(qemu_ago)));
        t.daemon_exit = Some((ok, t.now - Duration::from_secs_f64(daemon_ago)));
    };
    let panic = Event::Panic("Kernel panic - not syncing: x".into());
    check(vec![
        ("before the command started", Fail, vec![], 0.5, Box::new(daemon_killed), stop(Verdict::DaemonDied)),
        ("exited cleanly, QEMU running", Fail, vec![], 2.0, Box::new(at(0.0, true)), stop(Verdict::DaemonDied)),
        ("long ago (a late tick)", Fail, vec![], 2.0, Box::new(at(0.9, false)), stop(Verdict::DaemonDied)),
        ("after the command's exit report", Fail, vec![exit(3, 3, 1)], 2.0, Box::new(|t: &mut Tick| { bytes(t); daemon_killed(t) }), stop(Verdict::Done(3))),
        ("after the report, bytes in flight", Fail, vec![exit(3, 3, 1)], 2.0, Box::new(daemon_killed), Action::Wait),
        ("with a guest error", Fail, vec![Event::GuestError("g".into())], 2.0, Box::new(daemon_killed), stop(Verdict::GuestError("g".into()))),
        ("with a panic settling", Fail, vec![panic], 2.0, Box::new(daemon_killed), Action::Wait),
        ("with a lockup", Fail, vec![Event::Splat(lockup())], 2.0, Box::new(daemon_killed), stop(Verdict::Splat(None))),
        ("Ctrl-C", Fail, vec![], 2.0, Box::new(|t: &mut Tick| { daemon_killed(t); t.cancelled = true }), stop(Verdict::Interrupted)),
        ("QEMU exited first: QEMU's story", Fail, vec![Event::ConsoleClosed], 2.0, Box::new(with_qemu(0.5, 0.0, true)), stop(Verdict::QemuExited)),
        ("QEMU exited first, daemon failed", Fail, vec![Event::ConsoleClosed], 2.0, Box::new(with_qemu(0.5, 0.0, false)), stop(Verdict::QemuExited)),
        ("the daemon first, then QEMU", Fail, vec![Event::ConsoleClosed], 2.0, Box::new(with_qemu(0.0, 0.5, true)), stop(Verdict::DaemonDied)),
        ("together, the daemon clean", Fail, vec![Event::ConsoleClosed], 2.0, Box::new(with_qemu(0.0, 0.0, true)), stop(Verdict::QemuExited)),
        ("together, the daemon killed", Fail, vec![Event::ConsoleClosed], 2.0, Box::new(with_qemu(0.0, 0.0, false)), stop(Verdict::DaemonDied)),
    ]);
}

#[test]
fn which_exit_came_first() {
    let t0 = Instant::now();
    let t1 = t0 + S;
    for (daemon, qemu, want) in [
        (None, None, false),
        (None, Some((false, t0)), false),
        (Some((true, t0)), None, true),
        (Some((false, t0)), None, true),
        (Some((true, t0)), Some((true, t1)), true),
        (Some((false, t1)), Some((false, t0)), false),
        (Some((true, t0)), Some((false, t0)), false),
        (Some((false, t0)), Some((true, t0)), true),
    ] {
        assert_eq!(
            daemon_failed_first(daemon, qemu),
            want,
            "{daemon:?} {qemu:?}"
        );
    }
}

#[test]
fn the_boot_deadline_tells_silence_from_a_guest_that_never_started() {
    let t0 = Instant::now();
    let mut w = Watch::new(limits(t0), policy(SplatMode::Fail));
    assert_eq!(w.next(&tick(t0, 89.9)), Action::Wait);
    assert_eq!(w.next(&tick(t0, 90.0)), stop(Verdict::NoSignOfLife));
    w.take(Event::ConsoleAlive, t0 + S);
    assert_eq!(w.next(&tick(t0, 90.0)), stop(Verdict::NotStarted));
    let mut q = Watch::new(limits(t0), policy(SplatMode::Fail));
    let mut t = tick(t0, 1.0);
    t.qemu_exit = Some((false, t.now));
    assert_eq!(q.next(&t), Action::Wait, "draining");
    q.take(Event::ConsoleClosed, t0 + S);
    assert_eq!(q.next(&t), stop(Verdict::QemuFailed));
}

#[test]
fn output_that_stops_short_is_incomplete_after_the_stall_or_qemu_exit() {
    let t0 = Instant::now();
    let mut w = Watch::new(limits(t0), policy(SplatMode::Fail));
    w.take(Event::Control(ControlMsg::Started), t0);
    w.take(exit(0, 10, 5), t0 + S);
    let mut t = tick(t0, 2.0);
    t.out_bytes = 10;
    t.err_bytes = 2;
    assert_eq!(w.next(&t), Action::Wait);
    t.now = t0 + 2 * S + OUTPUT_STALL;
    assert_eq!(w.next(&t), Action::Wait, "on the edge");
    t.now += Duration::from_millis(1);
    assert_eq!(
        w.next(&t),
        stop(Verdict::Incomplete {
            stream: "stderr",
            got: 2,
            want: 5
        })
    );
    let mut t = tick(t0, 3.0);
    t.out_bytes = 4;
    t.qemu_exit = Some((true, t0));
    assert_eq!(
        w.next(&t),
        stop(Verdict::Incomplete {
            stream: "stdout",
            got: 4,
            want: 10
        })
    );
}

fn taint_exit(before: u64, after: u64) -> Event {
    Event::Control(ControlMsg::Exit {
        status: 0,
        stdout_bytes: 0,
        stderr_bytes: 0,
        taint: Some((before, after)),
    })
}

#[test]
fn a_new_taint_counts_as_a_splat_unless_a_splat_explains_it() {
    let w = |evs: &[Event], mode| judge(mode, evs, 2.0, |_| {});
    assert_eq!(
        w(&[taint_exit(0x200, 0x200)], SplatMode::Fail),
        stop(Verdict::Done(0))
    );
    assert_eq!(
        w(&[taint_exit(0, 0x200)], SplatMode::Fail),
        stop(Verdict::Splat(Some(0)))
    );
    assert_eq!(
        w(&[taint_exit(0, 0x200)], SplatMode::Off),
        stop(Verdict::Done(0))
    );
    // An allowed warning explains its W taint.
    let (allow, _) = parse_allowlist(
        r#"[{"pattern": "warning in f$", "reason": "known", "expires": "2999-01-01"}]"#,
        Date::today(),
    )
    .unwrap();
    let t0 = Instant::now();
    let mut m = Watch::new(
        limits(t0),
        SplatPolicy {
            mode: SplatMode::Fail,
            allow,
            allow_file: None,
        },
    );
    m.take(Event::Control(ControlMsg::Started), t0);
    m.take(Event::Splat(warning("f")), t0);
    m.take(taint_exit(0, 0x200), t0);
    assert_eq!(m.next(&tick(t0, 1.0)), stop(Verdict::Done(0)));
    assert_eq!(m.splats.len(), 1);
    assert_eq!(m.splats[0].allowed, Some((1, "known".into())));
    m.take(Event::Splat(warning("g")), t0);
    assert_eq!(m.failing().len(), 1);
}

#[test]
fn times_and_release() {
    let t0 = Instant::now();
    let mut w = Watch::new(limits(t0), policy(SplatMode::Fail));
    assert_eq!(w.boot_time(), None);
    w.take(Event::KernelRelease("6.12.57".into()), t0);
    w.take(Event::KernelRelease("other".into()), t0);
    w.take(Event::Control(ControlMsg::Started), t0 + 2 * S);
    assert_eq!(w.command_time(t0 + 3 * S), Some(S));
    w.take(exit(0, 0, 0), t0 + 5 * S);
    assert_eq!(w.boot_time(), Some(2 * S));
    assert_eq!(w.command_time(t0 + 9 * S), Some(3 * S));
    assert_eq!(w.kernel_release.as_deref(), Some("6.12.57"));
}
