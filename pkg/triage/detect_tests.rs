//! The detector on the forms real logs take: a live console fed line by line
//! (when a report begins and ends), interleaved CPUs told apart by printk
//! callers, a program's output in the middle of a trace, reports cut off by
//! the end of the log, several reports in one log, weak headers, and a panic
//! caused by the report before it.

use super::*;
use crate::triage::parse_log;

const WARN: &str = "\
[    1.0] ------------[ cut here ]------------
[    1.1] WARNING: CPU: 0 PID: 41 at drivers/misc/lkdtm/bugs.c:112 lkdtm_WARNING+0x8/0xb
[    1.2] CPU: 0 UID: 0 PID: 41 Comm: sh Not tainted 6.12.117+ #1
[    1.3] RIP: 0010:lkdtm_WARNING+0x8/0xb
[    1.4] Call Trace:
[    1.5]  <TASK>
[    1.6]  ? lkdtm_do_action+0x18/0x1b
[    1.7]  ? direct_entry+0xa5/0xc4
[    1.8]  </TASK>
[    1.9] ---[ end trace 0000000000000000 ]---
";

#[test]
fn a_live_console_learns_when_a_report_begins_and_gets_it_at_its_end() {
    let mut d = Detector::new();
    let mut events = Vec::new();
    for l in WARN.lines() {
        let was = d.is_open();
        let done = d.push(l);
        if !was && d.is_open() {
            events.push("began".to_string());
        }
        events.extend(done.into_iter().map(|r| format!("report {}", r.title)));
    }
    assert!(d.finish().is_empty());
    assert_eq!(events, ["began", "report WARNING in lkdtm_WARNING"]);
}

#[test]
fn a_stuck_report_ends_at_its_task_trace_without_waiting_for_more() {
    let mut d = Detector::new();
    let lines = [
        "watchdog: BUG: soft lockup - CPU#0 stuck for 3s! [sh:41]",
        "RIP: 0010:lkdtm_SOFTLOCKUP+0x2/0x4",
        "Call Trace:",
        " <TASK>",
        " ? lkdtm_do_action+0x18/0x1b",
    ];
    for l in lines {
        assert!(d.push(l).is_empty());
    }
    let done = d.push(" </TASK>");
    assert_eq!(done.len(), 1);
    assert!(done[0].kind.is_stuck());
    assert!(!done[0].truncated);
}

#[test]
fn a_report_cut_off_by_the_end_of_the_log_is_kept_and_marked() {
    // cut after its top frames, before `</TASK>` and the end marker
    let cut: String = WARN.lines().take(8).map(|l| format!("{l}\n")).collect();
    let r = parse_log(&cut);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].title, "WARNING in lkdtm_WARNING");
    assert!(r[0].truncated);
    assert_eq!(r[0].fingerprint, parse_log(WARN)[0].fingerprint);
    assert!(!parse_log(WARN)[0].truncated);
}

#[test]
fn a_programs_lines_inside_a_trace_are_left_out() {
    let mixed = WARN.replace(
        "[    1.7]  ? direct_entry+0xa5/0xc4\n",
        "test 3 of 9: ok\n[    1.7]  ? direct_entry+0xa5/0xc4\nWARNING: apt does not have a stable CLI interface.\n",
    );
    let r = parse_log(&mixed);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0].lines.len(), 9);
    assert!(
        !r[0].text().contains("test 3") && !r[0].text().contains("apt"),
        "{}",
        r[0].text()
    );
    assert_eq!(r[0].fingerprint, parse_log(WARN)[0].fingerprint);
}

#[test]
fn interleaved_reports_of_two_callers_are_told_apart() {
    let log = "\
[   10.000001][  T100] WARNING: CPU: 0 PID: 100 at kernel/a.c:1 alpha+0x1/0x10
[   10.000002][    C1] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   10.000003][  T100] CPU: 0 UID: 0 PID: 100 Comm: a Not tainted 6.12.0 #1
[   10.000004][    C1] #PF: supervisor read access in kernel mode
[   10.000005][  T100] RIP: 0010:alpha+0x1/0x10
[   10.000006][    C1] Oops: Oops: 0000 [#1] SMP
[   10.000007][  T100] Call Trace:
[   10.000008][    C1] RIP: 0010:beta+0x2/0x20
[   10.000009][  T100]  <TASK>
[   10.000010][    C1] Call Trace:
[   10.000011][  T100]  caller_a+0x3/0x30
[   10.000012][    C1]  <IRQ>
[   10.000013][  T100]  </TASK>
[   10.000014][    C1]  caller_b+0x4/0x40
[   10.000015][  T100] ---[ end trace 0000000000000000 ]---
[   10.000016][    C1]  </IRQ>
[   10.000017][    C1] ---[ end trace 0000000000000000 ]---
";
    let r = parse_log(log);
    let titles: Vec<&str> = r.iter().map(|r| r.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "WARNING in alpha",
            "BUG: unable to handle kernel NULL pointer dereference in beta"
        ]
    );
    assert_eq!(r[0].caller, Some(Caller::Task(100)));
    assert_eq!(r[1].caller, Some(Caller::Cpu(1)));
    assert!(!r[0].text().contains("beta") && !r[1].text().contains("alpha"));
    assert_eq!(r[0].lines.len(), 8);
    assert_eq!(r[1].lines.len(), 9);
}

#[test]
fn weak_headers_need_kernel_lines_after_them() {
    let program = "WARNING: apt does not have a stable CLI interface.\nReading package lists...\nBUG: not really\nok\n";
    assert!(parse_log(program).is_empty());
    let mut d = Detector::new();
    d.push("BUG: something odd");
    assert!(!d.is_open(), "not before kernel lines follow");
    d.push("CPU: 0 UID: 0 PID: 1 Comm: sh Not tainted 6.12.0 #1");
    assert!(d.is_open());
    let cut_here = "------------[ cut here ]------------\nWARNING: something odd\n";
    assert_eq!(
        parse_log(cut_here).len(),
        1,
        "the cut-here line vouches for it"
    );
}

#[test]
fn a_panic_caused_by_a_report_belongs_to_it() {
    let with_panic = WARN.replace(
        "[    1.9] ---[ end trace 0000000000000000 ]---\n",
        "[    1.9] ---[ end trace 0000000000000000 ]---\n[    2.0] Kernel panic - not syncing: Fatal exception\n[    2.1] ---[ end Kernel panic - not syncing: Fatal exception ]---\n",
    );
    let r = parse_log(&with_panic);
    assert_eq!(r.len(), 1, "{r:#?}");
    let alone = "[    5.0] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n";
    let r = parse_log(alone);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind, Kind::Panic);
    assert_eq!(
        r[0].title,
        "kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)"
    );
}

#[test]
fn a_runaway_report_is_cut_and_marked() {
    let mut d = Detector::new();
    d.push("WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2");
    d.push("Call Trace:");
    let mut done = vec![];
    for _ in 0..MAX_REPORT_LINES {
        done.extend(d.push(" g+0x1/0x2"));
    }
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].lines.len(), MAX_REPORT_LINES);
    assert!(done[0].truncated);
    assert!(!d.is_open());
}

#[test]
fn a_verbose_kmemleak_report_on_the_console_is_titled_by_its_allocator() {
    let log = "\
[   20.1] kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)
[   20.2] kmemleak: unreferenced object 0xffff888003a5b400 (size 128):
[   20.2] kmemleak:   comm \"cat\", pid 85, jiffies 4294680000
[   20.2] kmemleak:   hex dump (first 32 bytes):
[   20.2] kmemleak:     00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
[   20.2] kmemleak:   backtrace (crc 2b1a9f3c):
[   20.2] kmemleak:     [<ffffffff8123a0b1>] __kmalloc_cache_noprof+0x1a1/0x2b0
[   20.2] kmemleak:     [<ffffffff812e44c2>] loadavg_proc_show+0x22/0x120
[   20.2] kmemleak:     [<ffffffff81290a3d>] seq_read_iter+0x11d/0x460
[   20.3] lvh-guest: done
";
    let reports = parse_log(log);
    let leak: Vec<_> = reports
        .iter()
        .filter(|r| r.title.starts_with("memory leak in"))
        .collect();
    assert_eq!(leak.len(), 1, "{reports:#?}");
    assert_eq!(leak[0].title, "memory leak in loadavg_proc_show");
}
