//! Frame parsing on the forms kernels print: x86 and arm64 call traces, `?`
//! frames, module frames with and without build ids, old `[<addr>]`
//! prefixes, powerpc's double addresses, instruction-pointer lines.

use super::*;

#[test]
fn trace_lines() {
    type Case<'a> = (&'a str, Option<(&'a str, u64, u64, Option<&'a str>, bool)>);
    let cases: &[Case] = &[
        (
            " lkdtm_do_action+0x16/0x30",
            Some(("lkdtm_do_action", 0x16, 0x30, None, true)),
        ),
        (
            " ? __warn+0x7d/0x130",
            Some(("__warn", 0x7d, 0x130, None, false)),
        ),
        (
            " kmalloc_oob_right+0xa8/0xbc [kasan_test]",
            Some(("kmalloc_oob_right", 0xa8, 0xbc, Some("kasan_test"), true)),
        ),
        (
            " xdp_do+0x1/0x2 [bpf_testmod 0123456789abcdef0123456789abcdef01234567]",
            Some(("xdp_do", 1, 2, Some("bpf_testmod"), true)),
        ),
        (
            "  [<ffffffff81234567>] kmalloc_trace+0x25/0x90",
            Some(("kmalloc_trace", 0x25, 0x90, None, true)),
        ),
        (
            "  [<ffffffff81463cb5>] ? debug_check_no_locks_freed+0x3c0/0x3c0",
            Some(("debug_check_no_locks_freed", 0x3c0, 0x3c0, None, false)),
        ),
        (
            "[c000000049a87710] [c0000000000286fc] __switch_to+0x43c/0x6d0",
            Some(("__switch_to", 0x43c, 0x6d0, None, true)),
        ),
        (
            "[c000000049a87530] [c000000049a875a0] foo+0x1/0x2 (unreliable)",
            Some(("foo", 1, 2, None, false)),
        ),
        (
            " lkdtm_WARNING+0x8/0x18 (P)",
            Some(("lkdtm_WARNING", 8, 0x18, None, true)),
        ),
        (
            " count_memcg_events_mm.constprop.0+0x35/0x3f",
            Some(("count_memcg_events_mm.constprop.0", 0x35, 0x3f, None, true)),
        ),
        (
            "    [<ffffffff848a2f5f>] sock_kmalloc+0x7f/0xc0 net/core/sock.c:1774",
            Some(("sock_kmalloc", 0x7f, 0xc0, None, true)),
        ),
        (
            " ip6_xmit+0x1/0x2 include/linux/skbuff.h:12 [inline]",
            Some(("ip6_xmit", 1, 2, None, true)),
        ),
        ("RIP: 0010:lkdtm_WARNING+0x12/0x20", None),
        ("WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2", None),
        (
            " ffffffff82a5d0b8 (lock_B){+.+.}-{3:3}, at: thread_b+0x25/0x50",
            None,
        ),
        (" <TASK>", None),
        ("Call Trace:", None),
        ("echo f+0x1/0x2 is a frame", None),
    ];
    for (line, want) in cases {
        let got = trace_frame(line, 3).map(|f| {
            assert_eq!(f.role, Role::Trace);
            assert_eq!(f.line, 3);
            (f.function, f.offset, f.size, f.module, f.reliable)
        });
        let want = want.map(|(n, o, s, m, r)| (n.to_string(), o, s, m.map(String::from), r));
        assert_eq!(got, want, "{line:?}");
    }
}

#[test]
fn instruction_pointer_lines() {
    type Case<'a> = (&'a str, Option<(&'a str, Role, Option<&'a str>)>);
    let cases: &[Case] = &[
        (
            "RIP: 0010:lkdtm_WARNING+0x8/0xb",
            Some(("lkdtm_WARNING", Role::Ip, None)),
        ),
        (
            "RIP: 0010:[<ffffffff81234567>]  [<ffffffff81234567>] foo+0x1/0x2",
            Some(("foo", Role::Ip, None)),
        ),
        (
            "pc : lkdtm_WARNING+0x8/0x18",
            Some(("lkdtm_WARNING", Role::Ip, None)),
        ),
        (
            "pc : bar+0x8/0x18 [mymod]",
            Some(("bar", Role::Ip, Some("mymod"))),
        ),
        (
            "lr : lkdtm_do_action+0x24/0x40",
            Some(("lkdtm_do_action", Role::Lr, None)),
        ),
        ("PC is at foo+0x4/0x8", Some(("foo", Role::Ip, None))),
        (
            "NIP [c000000000123456] foo+0x1/0x2",
            Some(("foo", Role::Ip, None)),
        ),
        ("RIP: 0033:0x7f8c3d3b9574", None),
        (
            "IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
            None,
        ),
        ("pcspkr: loaded", None),
    ];
    for (line, want) in cases {
        let got = ip_frame(line, 0).map(|f| (f.function, f.role, f.module));
        let want = want.map(|(n, r, m)| (n.to_string(), r, m.map(String::from)));
        assert_eq!(got, want, "{line:?}");
    }
}

#[test]
fn generic_frames_and_names() {
    for g in [
        "__warn",
        "report_bug",
        "dump_stack_lvl",
        "kasan_report",
        "__asan_load8",
        "lock_acquire",
        "__might_sleep",
        "_raw_spin_lock_irqsave",
        "memcpy_orig",
        "refcount_warn_saturate",
        "__ubsan_handle_out_of_bounds",
        "asm_exc_invalid_op",
        "panic",
        "vpanic",
        "__pfx_foo",
        "__sanitizer_cov_trace_pc",
        "kmalloc_trace_noprof",
    ] {
        assert!(is_generic(g), "{g}");
    }
    for f in [
        "lkdtm_WARNING",
        "lkdtm_do_action",
        "sctp_wfree",
        "strp_check_rcv",
        "ip6_xmit",
        "bpf_prog_run",
    ] {
        assert!(!is_generic(f), "{f}");
    }
    assert_eq!(base_name("foo.isra.0"), "foo");
    assert_eq!(base_name("foo.cold"), "foo");
    assert_eq!(base_name("foo"), "foo");
    assert_eq!(symbol_token("0010:f+0x1/0x2"), Some(("f", 1, 2)));
    assert_eq!(symbol_token("(f+0x10/0x20)"), Some(("f", 0x10, 0x20)));
    assert_eq!(symbol_token("f+0x1"), None);
    assert_eq!(symbol_token("+0x1/0x2"), None);
}

#[test]
fn the_primary_stack_is_the_ip_and_the_first_call_trace() {
    let lines: Vec<String> = [
        "BUG: KASAN: slab-use-after-free in foo+0x1/0x2",
        "Read of size 8 at addr ffff888000000000 by task sh/1",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x1/0x2",
        " foo+0x1/0x2",
        " </TASK>",
        "Allocated by task 1:",
        " kmalloc_trace+0x1/0x2",
        " alloc_thing+0x1/0x2",
    ]
    .map(String::from)
    .to_vec();
    let f: Vec<String> = primary_frames(&lines)
        .into_iter()
        .map(|f| f.function)
        .collect();
    assert_eq!(f, ["dump_stack_lvl", "foo"]);

    let kfence: Vec<String> = [
        "BUG: KFENCE: out-of-bounds read in test_out_of_bounds_read+0xa6/0x234",
        "",
        "Out-of-bounds read at 0xffff8c3f2e291fff (1B left of kfence-#72):",
        " test_out_of_bounds_read+0xa6/0x234",
        " kunit_try_run_case+0x61/0xa0",
    ]
    .map(String::from)
    .to_vec();
    let f: Vec<String> = primary_frames(&kfence)
        .into_iter()
        .map(|f| f.function)
        .collect();
    assert_eq!(f, ["test_out_of_bounds_read", "kunit_try_run_case"]);
}
