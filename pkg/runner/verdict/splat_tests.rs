//! The gate's splats are triage's reports: console logs of the system-test
//! fixture kernel (tinyconfig 6.12 with the `runner,testing` groups, TCG)
//! running LKDTM, from triage's corpus, give the splats (summary, title,
//! fingerprint, text) that `lvh run` fails on and `lvh triage` prints. The
//! parser itself is tested on the whole corpus in `crate::triage`.

use super::*;
use crate::triage::Detector;

/// The splats of a log, fed line by line as the console thread feeds them.
fn gate(text: &str) -> Vec<Splat> {
    let mut d = Detector::new();
    let mut out: Vec<Splat> = Vec::new();
    for l in text.lines().filter(|l| !l.starts_with("# ")) {
        out.extend(d.push(l).into_iter().map(Splat::from));
    }
    out.extend(d.finish().into_iter().map(Splat::from));
    out
}

#[test]
fn real_lkdtm_splats_from_the_fixture_kernel() {
    let cases = [
        (
            include_str!("../../triage/testdata/lkdtm/warning-6.12-x86.txt"),
            "warning in lkdtm_WARNING",
            "WARNING in lkdtm_WARNING",
            "WARNING: CPU: 0 PID: 41 at drivers/misc/lkdtm/bugs.c:112 lkdtm_WARNING+0x8/0xb",
            "---[ end trace 0000000000000000 ]---",
        ),
        (
            include_str!("../../triage/testdata/lkdtm/bug-6.12-x86.txt"),
            "bug in lkdtm_BUG",
            "kernel BUG in lkdtm_BUG",
            "kernel BUG at drivers/misc/lkdtm/bugs.c:105!",
            "---[ end trace 0000000000000000 ]---",
        ),
        (
            include_str!("../../triage/testdata/lkdtm/softlockup-6.12-x86.txt"),
            "soft-lockup in lkdtm_SOFTLOCKUP",
            "BUG: soft lockup in lkdtm_SOFTLOCKUP",
            "watchdog: BUG: soft lockup - CPU#0 stuck for 3s! [sh:41]",
            " </TASK>",
        ),
    ];
    for (text, summary, title, first, last) in cases {
        let s = gate(text);
        assert_eq!(s.len(), 1, "{s:#?}");
        let s = &s[0];
        assert_eq!(s.summary(), summary);
        assert_eq!(s.title, title);
        assert_eq!(s.first_line, first);
        assert_eq!(s.lines.last().map(String::as_str), Some(last));
        assert!(s.lines.iter().any(|l| l == "Call Trace:"));
        // The same title and fingerprint as `lvh triage` gives the whole log.
        let r = &crate::triage::parse_log(text)[0];
        assert_eq!((&s.title, &s.fingerprint), (&r.title, &r.fingerprint));
        assert_eq!(
            s.headline(),
            format!("{title} [fingerprint {}]", r.fingerprint)
        );
    }
}

#[test]
fn stuck_kinds_stop_the_run_and_panics_and_oom_kills_fail_nothing() {
    use crate::triage::Kind;
    let cases = [
        (SplatKind::Report(Kind::Warning), false, true),
        (SplatKind::Report(Kind::SoftLockup), true, true),
        (SplatKind::Report(Kind::HardLockup), true, true),
        (SplatKind::Report(Kind::RcuStall), true, true),
        (SplatKind::Report(Kind::HungTask), true, true),
        (SplatKind::Report(Kind::Panic), false, false),
        (SplatKind::Report(Kind::Oom), false, false),
        (SplatKind::Taint, false, true),
    ];
    for (k, stuck, fails) in cases {
        assert_eq!((k.is_stuck(), k.fails_run()), (stuck, fails), "{k}");
    }
    assert_eq!(
        serde_json::to_value(SplatKind::Report(Kind::SoftLockup)).unwrap(),
        "soft-lockup"
    );
}

#[test]
fn a_program_printing_warning_is_no_splat() {
    assert!(gate("WARNING: this test is slow\nBUG: see #12\nok\n").is_empty());
}

#[test]
fn taint_flags_by_letter() {
    assert_eq!(describe_taint(0x200), "W (kernel issued a warning)");
    assert_eq!(
        describe_taint((1 << 7) | (1 << 14)),
        "D (kernel died recently (oops or BUG)), L (soft lockup occurred)"
    );
    assert!(taint_splat(0x200, 0x200).is_none());
    assert!(taint_splat(0x201, 0x200).is_none());
    let t = taint_splat(0, 0x200).unwrap();
    assert_eq!(t.kind, SplatKind::Taint);
    assert_eq!(t.summary(), "taint");
    assert_eq!(t.title, "kernel tainted: W");
    assert!(
        t.first_line.contains("W (kernel issued a warning)"),
        "{}",
        t.first_line
    );
    assert!(t.first_line.contains("0x0 -> 0x200"), "{}", t.first_line);
    // The fingerprint depends on the new flags only.
    let again = taint_splat(0x1, 0x201).unwrap();
    assert_eq!(again.fingerprint, t.fingerprint);
    assert_ne!(taint_splat(0, 0x40).unwrap().fingerprint, t.fingerprint);
    assert_eq!(t.fingerprint.len(), 16);
    assert_eq!(
        taint_splat(0, 1 << 40).unwrap().title,
        "kernel tainted: +0x10000000000"
    );
}
