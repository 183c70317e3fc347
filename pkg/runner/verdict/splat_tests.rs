//! Splat parser tests on real console texts: x86-64 6.12 guests of the system
//! test fixture (LKDTM), and reports quoted in the kernel's own documentation
//! (Documentation/dev-tools/kasan.rst, kfence.rst, locking/lockdep-design.rst,
//! RCU/stallwarn.rst) and mailing-list reports.

use super::*;

fn parse(text: &str) -> Vec<Splat> {
    let mut p = SplatParser::new();
    let mut out = Vec::new();
    for l in text.lines() {
        out.extend(p.push(l));
    }
    out.extend(p.finish());
    out
}

/// LKDTM WARNING on the 6.12 fixture kernel (lines as the console shows them).
const LKDTM_WARNING: &str = r"[    3.012345] lkdtm: Performing direct entry WARNING
[    3.013001] ------------[ cut here ]------------
[    3.013412] WARNING: CPU: 1 PID: 87 at drivers/misc/lkdtm/bugs.c:125 lkdtm_WARNING+0x12/0x20
[    3.014000] Modules linked in:
[    3.014200] CPU: 1 UID: 0 PID: 87 Comm: sh Not tainted 6.12.57 #1
[    3.014500] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[    3.015000] RIP: 0010:lkdtm_WARNING+0x12/0x20
[    3.015100] Code: 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90 <0f> 0b c3 cc
[    3.015200] RSP: 0018:ffffc900001d7e40 EFLAGS: 00010246
[    3.015300] RAX: 0000000000000000 RBX: 0000000000000008 RCX: 0000000000000000
[    3.015900] CR2: 00007f8c3d2a1000 CR3: 0000000001c2e000 CR4: 00000000000006f0
[    3.016000] Call Trace:
[    3.016100]  <TASK>
[    3.016200]  ? __warn+0x7d/0x130
[    3.016300]  ? lkdtm_WARNING+0x12/0x20
[    3.016400]  ? report_bug+0x16d/0x1a0
[    3.016500]  lkdtm_do_action+0x16/0x30
[    3.016600]  direct_entry+0xcf/0x120
[    3.016700]  full_proxy_write+0x55/0x80
[    3.016800]  vfs_write+0xf0/0x420
[    3.016900]  ksys_write+0x63/0xe0
[    3.017000]  do_syscall_64+0x4b/0x110
[    3.017100]  entry_SYSCALL_64_after_hwframe+0x76/0x7e
[    3.017200] RIP: 0033:0x7f8c3d3b9574
[    3.017300]  </TASK>
[    3.017400] ---[ end trace 0000000000000000 ]---
[    3.020000] lvh-guest: something else
";

#[test]
fn a_warning_names_its_function_and_ends_with_its_trace() {
    let s = parse(LKDTM_WARNING);
    assert_eq!(s.len(), 1, "{s:#?}");
    let w = &s[0];
    assert_eq!(w.kind, SplatKind::Warning);
    assert_eq!(w.function.as_deref(), Some("lkdtm_WARNING"));
    assert_eq!(
        w.first_line,
        "WARNING: CPU: 1 PID: 87 at drivers/misc/lkdtm/bugs.c:125 lkdtm_WARNING+0x12/0x20"
    );
    assert_eq!(
        w.lines.last().unwrap(),
        "---[ end trace 0000000000000000 ]---"
    );
    assert_eq!(w.lines.len(), 24);
    assert_eq!(w.summary(), "warning in lkdtm_WARNING");
}

/// LKDTM BUG: `kernel BUG at`, then the Oops line of the same report.
const LKDTM_BUG: &str = r"[    3.101000] lkdtm: Performing direct entry BUG
[    3.101500] ------------[ cut here ]------------
[    3.102000] kernel BUG at drivers/misc/lkdtm/bugs.c:132!
[    3.102500] Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI
[    3.103000] CPU: 0 UID: 0 PID: 88 Comm: sh Not tainted 6.12.57 #1
[    3.103200] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[    3.103400] RIP: 0010:lkdtm_BUG+0x5/0x10
[    3.103600] Code: cc cc cc cc 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90 <0f> 0b
[    3.103800] RSP: 0018:ffffc900001dfe40 EFLAGS: 00010246
[    3.104000] Call Trace:
[    3.104100]  <TASK>
[    3.104200]  ? die+0x36/0x90
[    3.104300]  ? do_trap+0xdd/0x100
[    3.104400]  lkdtm_do_action+0x16/0x30
[    3.104500]  direct_entry+0xcf/0x120
[    3.104600]  full_proxy_write+0x55/0x80
[    3.104700]  vfs_write+0xf0/0x420
[    3.104800]  ksys_write+0x63/0xe0
[    3.104900]  do_syscall_64+0x4b/0x110
[    3.105000]  entry_SYSCALL_64_after_hwframe+0x76/0x7e
[    3.105100]  </TASK>
[    3.105200] Modules linked in:
[    3.105300] ---[ end trace 0000000000000000 ]---
[    3.105400] RIP: 0010:lkdtm_BUG+0x5/0x10
";

#[test]
fn a_bug_and_its_oops_are_one_splat() {
    let s = parse(LKDTM_BUG);
    assert_eq!(s.len(), 1, "{s:#?}");
    assert_eq!(s[0].kind, SplatKind::Bug);
    assert_eq!(s[0].function.as_deref(), Some("lkdtm_BUG"));
    assert_eq!(
        s[0].first_line,
        "kernel BUG at drivers/misc/lkdtm/bugs.c:132!"
    );
    assert_eq!(
        s[0].lines.last().unwrap(),
        "---[ end trace 0000000000000000 ]---"
    );
}

/// A soft lockup (LKDTM SOFTLOCKUP): no end marker, the trace ends at `</TASK>`.
const SOFT_LOCKUP: &str = r"[   10.500000] watchdog: BUG: soft lockup - CPU#1 stuck for 3s! [sh:89]
[   10.500100] Modules linked in:
[   10.500200] CPU: 1 UID: 0 PID: 89 Comm: sh Not tainted 6.12.57 #1
[   10.500300] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[   10.500400] RIP: 0010:lkdtm_SOFTLOCKUP+0x14/0x20
[   10.500500] Code: 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90 65 ff 05 <f3> 90 eb fc
[   10.500600] RSP: 0018:ffffc900001e7e40 EFLAGS: 00000282
[   10.500700] Call Trace:
[   10.500800]  <IRQ>
[   10.500900]  ? watchdog_timer_fn+0x1e3/0x260
[   10.501000]  ? __hrtimer_run_queues+0x112/0x2a0
[   10.501100]  </IRQ>
[   10.501200]  <TASK>
[   10.501300]  ? lkdtm_SOFTLOCKUP+0x14/0x20
[   10.501400]  lkdtm_do_action+0x16/0x30
[   10.501500]  direct_entry+0xcf/0x120
[   10.501600]  </TASK>
[   14.500000] watchdog: BUG: soft lockup - CPU#1 stuck for 7s! [sh:89]
";

#[test]
fn a_soft_lockup_ends_at_its_task_trace_and_repeats() {
    let s = parse(SOFT_LOCKUP);
    assert_eq!(s.len(), 2, "{s:#?}");
    assert_eq!(s[0].kind, SplatKind::SoftLockup);
    assert!(s[0].kind.is_stuck());
    assert_eq!(s[0].function.as_deref(), Some("lkdtm_SOFTLOCKUP"));
    assert_eq!(s[0].lines.last().unwrap().trim(), "</TASK>");
    assert_eq!(s[0].lines.len(), 17);
    // The repeat is cut at the end of the console.
    assert_eq!(s[1].lines.len(), 1);
}

/// Documentation/dev-tools/kasan.rst (shortened register dump).
const KASAN: &str = r"==================================================================
BUG: KASAN: slab-out-of-bounds in kmalloc_oob_right+0xa8/0xbc [kasan_test]
Write of size 1 at addr ffff8801f44ec37b by task insmod/2760

CPU: 1 PID: 2760 Comm: insmod Not tainted 4.19.0-rc3+ #698
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.10.2-1 04/01/2014
Call Trace:
 dump_stack+0x94/0xd8
 print_address_description+0x73/0x280
 kasan_report+0x144/0x187
 __asan_report_store1_noabort+0x17/0x20
 kmalloc_oob_right+0xa8/0xbc [kasan_test]
 kmalloc_tests_init+0x16/0x700 [kasan_test]
 do_one_initcall+0xa5/0x3ae
 do_init_module+0x1b6/0x547
 load_module+0x75df/0x8070
 __do_sys_init_module+0x1c6/0x200
 __x64_sys_init_module+0x6e/0xb0
 do_syscall_64+0x9f/0x2c0
 entry_SYSCALL_64_after_hwframe+0x44/0xa9

The buggy address belongs to the object at ffff8801f44ec300
 which belongs to the cache kmalloc-128 of size 128
==================================================================
insmod: ERROR: could not insert module
";

#[test]
fn a_kasan_report_ends_at_its_rule() {
    let s = parse(KASAN);
    assert_eq!(s.len(), 1, "{s:#?}");
    assert_eq!(s[0].kind, SplatKind::Kasan);
    assert_eq!(s[0].function.as_deref(), Some("kmalloc_oob_right"));
    assert!(s[0].lines.last().unwrap().starts_with("====="));
    assert!(s[0].lines.iter().any(|l| l.contains("kmalloc-128")));
}

/// Documentation/dev-tools/kfence.rst.
const KFENCE: &str = r"==================================================================
BUG: KFENCE: out-of-bounds read in test_out_of_bounds_read+0xa6/0x234

Out-of-bounds read at 0xffff8c3f2e291fff (1B left of kfence-#72):
 test_out_of_bounds_read+0xa6/0x234
 kunit_try_run_case+0x61/0xa0
 kthread+0x176/0x1b0
 ret_from_fork+0x22/0x30

CPU: 0 PID: 107 Comm: kunit_try_catch Not tainted 5.8.0-rc6+ #7
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.13.0-1 04/01/2014
==================================================================
";

#[test]
fn a_kfence_report() {
    let s = parse(KFENCE);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].kind, SplatKind::Kfence);
    assert_eq!(s[0].function.as_deref(), Some("test_out_of_bounds_read"));
    assert_eq!(s[0].lines.len(), 11);
}

/// UBSAN on 6.x (lib/test_ubsan.c), which ends with an end-trace line.
const UBSAN: &str = r"[    2.000000] ------------[ cut here ]------------
[    2.000100] UBSAN: array-index-out-of-bounds in lib/test_ubsan.c:99:16
[    2.000200] index 5 is out of range for type 'char [5]'
[    2.000300] CPU: 0 UID: 0 PID: 1 Comm: swapper/0 Not tainted 6.12.0 #1
[    2.000400] Call Trace:
[    2.000500]  <TASK>
[    2.000600]  dump_stack_lvl+0x5d/0x80
[    2.000700]  __ubsan_handle_out_of_bounds+0x95/0xd0
[    2.000800]  test_ubsan_out_of_bounds+0x5e/0x70
[    2.000900]  </TASK>
[    2.001000] ---[ end trace ]---
";

#[test]
fn a_ubsan_report_names_the_first_frame_past_the_helpers() {
    let s = parse(UBSAN);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].kind, SplatKind::Ubsan);
    // __ubsan_handle_* is the handler; callers may want it in an allowlist.
    assert_eq!(
        s[0].function.as_deref(),
        Some("__ubsan_handle_out_of_bounds")
    );
    assert_eq!(s[0].lines.last().unwrap(), "---[ end trace ]---");
}

/// Documentation/locking/lockdep-design.rst style circular report (shortened).
const LOCKDEP: &str = r"[   20.000000] ======================================================
[   20.000001] WARNING: possible circular locking dependency detected
[   20.000002] 6.12.0 #1 Not tainted
[   20.000003] ------------------------------------------------------
[   20.000004] sh/120 is trying to acquire lock:
[   20.000005] ffffffff82a5d0b8 (lock_B){+.+.}-{3:3}, at: thread_b+0x25/0x50
[   20.000006]
[   20.000007] stack backtrace:
[   20.000008] CPU: 0 UID: 0 PID: 120 Comm: sh Not tainted 6.12.0 #1
[   20.000009] Call Trace:
[   20.000010]  <TASK>
[   20.000011]  dump_stack_lvl+0x5d/0x80
[   20.000012]  check_noncircular+0x10c/0x120
[   20.000013]  __lock_acquire+0x1192/0x1d70
[   20.000014]  lock_acquire+0xc2/0x2b0
[   20.000015]  thread_b+0x25/0x50
[   20.000016]  </TASK>
[   20.100000] next line
";

#[test]
fn lockdep_reports_are_not_plain_warnings() {
    let s = parse(LOCKDEP);
    assert_eq!(s.len(), 1, "{s:#?}");
    assert_eq!(s[0].kind, SplatKind::Lockdep);
    assert_eq!(s[0].function.as_deref(), Some("__lock_acquire"));
    assert_eq!(s[0].lines.last().unwrap().trim(), "</TASK>");
    let rcu = parse("[ 1.0] WARNING: suspicious RCU usage\n[ 1.1] 6.12.0 #1 Not tainted\n");
    assert_eq!(rcu[0].kind, SplatKind::Lockdep);
}

#[test]
fn one_line_and_header_kinds() {
    let cases = [
        ("rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", Some(SplatKind::RcuStall)),
        ("rcu: INFO: rcu_sched self-detected stall on CPU", Some(SplatKind::RcuStall)),
        ("INFO: task sh:92 blocked for more than 2 seconds.", Some(SplatKind::HungTask)),
        ("watchdog: Watchdog detected hard LOCKUP on cpu 1", Some(SplatKind::HardLockup)),
        ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 0", Some(SplatKind::HardLockup)),
        ("kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)", Some(SplatKind::Kmemleak)),
        ("BUG: kernel NULL pointer dereference, address: 0000000000000000", Some(SplatKind::Bug)),
        ("Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP", Some(SplatKind::Oops)),
        ("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100", Some(SplatKind::Panic)),
        ("WARNING: CPU: 0 PID: 1 at kernel/x.c:1 f+0x1/0x2", Some(SplatKind::Warning)),
        ("lkdtm: Performing direct entry WARNING", None),
        ("Run /bin/sh as init process", None),
        ("  with arguments: WARNING:", None),
    ];
    for (line, kind) in cases {
        assert_eq!(start_kind(line), kind, "{line}");
    }
    let k =
        parse("kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)\nnext\n");
    assert_eq!(k.len(), 1);
    assert_eq!(k[0].lines.len(), 1);
}

#[test]
fn a_null_dereference_bug_takes_its_oops_and_names_rip() {
    let s = parse(
        "BUG: kernel NULL pointer dereference, address: 0000000000000000\n\
         #PF: supervisor read access in kernel mode\n\
         PGD 0 P4D 0\n\
         Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI\n\
         RIP: 0010:lkdtm_ACCESS_NULL+0x1c/0x40\n\
         Call Trace:\n <TASK>\n lkdtm_do_action+0x16/0x30\n </TASK>\n\
         ---[ end trace 0000000000000000 ]---\n",
    );
    assert_eq!(s.len(), 1, "{s:#?}");
    assert_eq!(s[0].kind, SplatKind::Bug);
    assert_eq!(s[0].function.as_deref(), Some("lkdtm_ACCESS_NULL"));
    assert_eq!(s[0].lines.len(), 10);
}

#[test]
fn an_oops_followed_by_a_panic_are_two_splats() {
    let s = parse(
        "Oops: general protection fault: 0000 [#1] SMP\n\
         RIP: 0010:foo+0x1/0x2\n\
         Call Trace:\n <TASK>\n bar+0x1/0x2\n </TASK>\n\
         Kernel panic - not syncing: Fatal exception\n\
         ---[ end Kernel panic - not syncing: Fatal exception ]---\n",
    );
    assert_eq!(s.len(), 2, "{s:#?}");
    assert_eq!(s[0].kind, SplatKind::Oops);
    assert_eq!(s[0].function.as_deref(), Some("foo"));
    assert_eq!(s[1].kind, SplatKind::Panic);
    assert_eq!(s[1].lines.len(), 2);
}

#[test]
fn an_arm64_trace_ends_at_its_first_unindented_line() {
    let s = parse(
        "WARNING: CPU: 0 PID: 90 at drivers/misc/lkdtm/bugs.c:125 lkdtm_WARNING+0x8/0x18\n\
         pc : lkdtm_WARNING+0x8/0x18\n\
         Call trace:\n lkdtm_WARNING+0x8/0x18\n lkdtm_do_action+0x24/0x40\n\
         sh: next\n",
    );
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].lines.len(), 5);
}

#[test]
fn a_runaway_report_is_cut() {
    let mut p = SplatParser::new();
    p.push("WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2");
    let mut done = vec![];
    for _ in 0..MAX_SPLAT_LINES {
        done.extend(p.push("  more"));
    }
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].lines.len(), MAX_SPLAT_LINES);
    assert!(!p.is_open());
}

#[test]
fn timestamps_are_stripped_and_other_brackets_kept() {
    assert_eq!(strip_timestamp("[    3.013412] WARNING: x\r"), "WARNING: x");
    assert_eq!(strip_timestamp("[    3.016100]  <TASK>"), " <TASK>");
    assert_eq!(strip_timestamp("[sh:89] x"), "[sh:89] x");
    assert_eq!(strip_timestamp("no stamp"), "no stamp");
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
    assert!(
        t.first_line.contains("W (kernel issued a warning)"),
        "{}",
        t.first_line
    );
    assert!(t.first_line.contains("0x0 -> 0x200"), "{}", t.first_line);
}

/// Console logs captured from the system-test fixture kernel (tinyconfig
/// 6.12 with the `runner,testing` groups, TCG) running LKDTM, as lvh's
/// `--console-log-file` wrote them (CRLF line ends included).
#[test]
fn real_lkdtm_splats_from_the_fixture_kernel() {
    let cases = [
        (
            include_str!("testdata/lkdtm-warning-6.12.txt"),
            SplatKind::Warning,
            "lkdtm_WARNING",
            "WARNING: CPU: 0 PID: 41 at drivers/misc/lkdtm/bugs.c:112 lkdtm_WARNING+0x8/0xb",
            "---[ end trace 0000000000000000 ]---",
        ),
        (
            include_str!("testdata/lkdtm-bug-6.12.txt"),
            SplatKind::Bug,
            "lkdtm_BUG",
            "kernel BUG at drivers/misc/lkdtm/bugs.c:105!",
            "---[ end trace 0000000000000000 ]---",
        ),
        (
            include_str!("testdata/lkdtm-softlockup-6.12.txt"),
            SplatKind::SoftLockup,
            "lkdtm_SOFTLOCKUP",
            "watchdog: BUG: soft lockup - CPU#0 stuck for 3s! [sh:41]",
            " </TASK>",
        ),
    ];
    for (text, kind, function, first, last) in cases {
        let s = parse(text);
        assert_eq!(s.len(), 1, "{s:#?}");
        assert_eq!(s[0].kind, kind);
        assert_eq!(s[0].function.as_deref(), Some(function));
        assert_eq!(s[0].first_line, first);
        assert_eq!(s[0].lines.last().unwrap(), last);
        assert!(s[0].lines.iter().any(|l| l == "Call Trace:"));
    }
}
