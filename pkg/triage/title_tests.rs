//! Titles, culprits and fingerprints from report texts: syzkaller's title
//! conventions by format, the culprit past generic frames, and fingerprints
//! that ignore what changes between runs but not what tells bugs apart.

use super::*;
use crate::triage::parse_log;

fn title(text: &str) -> String {
    let r = parse_log(text);
    assert_eq!(r.len(), 1, "{text}\n{r:#?}");
    r[0].title.clone()
}

#[test]
fn titles_by_format() {
    let cases: &[(&str, &str)] = &[
        (
            "WARNING: CPU: 1 PID: 9 at lib/refcount.c:25 refcount_warn_saturate+0x13a/0x1d0\nRIP: 0010:refcount_warn_saturate+0x13a/0x1d0\nCall Trace:\n <TASK>\n __refcount_add+0x1/0x2\n my_get+0x1/0x2\n </TASK>\n---[ end trace 0 ]---\n",
            "WARNING: refcount bug in my_get",
        ),
        (
            "WARNING: net/mac80211/tx.c:5024 at __ieee80211_beacon_get+0x125d/0x1630, CPU#1: syz.9.803/11907\nModules linked in:\n",
            "WARNING in __ieee80211_beacon_get",
        ),
        (
            "BUG: scheduling while atomic: sh/41/0x00000002\nCPU: 0 PID: 41 Comm: sh Not tainted 6.12.0 #1\nCall Trace:\n <TASK>\n dump_stack_lvl+0x1/0x2\n __schedule_bug+0x1/0x2\n __schedule+0x1/0x2\n schedule+0x1/0x2\n my_sleeper+0x1/0x2\n </TASK>\n",
            "BUG: scheduling while atomic in my_sleeper",
        ),
        (
            "BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580\nin_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 1, name: sh\nCall Trace:\n <TASK>\n dump_stack_lvl+0x1/0x2\n __might_resched+0x1/0x2\n mutex_lock_nested+0x1/0x2\n bpf_thing+0x1/0x2\n </TASK>\n",
            "BUG: sleeping function called from invalid context in bpf_thing",
        ),
        (
            "kernel BUG at lib/list_debug.c:29!\nOops: invalid opcode: 0000 [#1] SMP\nRIP: 0010:__list_add_valid_or_report+0x1/0x2\nCall Trace:\n <TASK>\n my_add+0x1/0x2\n </TASK>\n---[ end trace 0 ]---\n",
            "BUG: corrupted list in my_add",
        ),
        (
            "BUG: KASAN: double-free in my_free+0x1/0x2\nFree of addr ffff888000000000 by task sh/1\nCall Trace:\n <TASK>\n kfree+0x1/0x2\n my_free+0x1/0x2\n </TASK>\n==================================================================\n",
            "KASAN: invalid-free in my_free",
        ),
        (
            "INFO: task kworker/0:1:12 blocked for more than 143 seconds.\n      Not tainted 6.12.0 #1\nCall Trace:\n <TASK>\n __schedule+0x1/0x2\n schedule+0x1/0x2\n rtnl_lock+0x1/0x2\n my_work+0x1/0x2\n </TASK>\n",
            "INFO: task hung in rtnl_lock",
        ),
        (
            "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\nCPU: 0 PID: 1 Comm: init Not tainted 6.12.0 #1\n",
            "kernel panic: Attempted to kill init!",
        ),
        (
            "unreferenced object 0xffff888100f1d400 (size 64):\n  comm \"insmod\", pid 123, jiffies 4294894368\n  backtrace (crc 5f1d1e4b):\n    kmemleak_alloc+0x4e/0x90\n    __kmalloc_cache_noprof+0x1/0x2\n    leaky_init+0x1a/0x30 [leak]\n    do_one_initcall+0x1/0x2\n",
            "memory leak in leaky_init",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(title(text), *want, "{text}");
    }
}

#[test]
fn free_text_is_cut_before_its_run_specific_details() {
    let cases = [
        (
            "scheduling while atomic: sh/41/0x00000002",
            "scheduling while atomic",
        ),
        ("Bad page state in process sh  pfn:12345", "Bad page state"),
        ("spinlock bad magic on CPU#0, sh/41", "spinlock bad magic"),
        (
            "workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 31s!",
            "workqueue lockup",
        ),
        (
            "using smp_processor_id() in preemptible [00000000] code: sh/41",
            "using smp_processor_id() in preemptible code",
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(sanitize(raw), want, "{raw}");
    }
}

#[test]
fn fingerprints_follow_the_frames_below_the_culprit() {
    let report = |caller: &str| {
        format!("WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\nRIP: 0010:f+0x1/0x2\nCall Trace:\n <TASK>\n {caller}+0x1/0x2\n g+0x1/0x2\n </TASK>\n---[ end trace 0 ]---\n")
    };
    let a = &parse_log(&report("from_a"))[0];
    let b = &parse_log(&report("from_b"))[0];
    let a2 = &parse_log(&report("from_a.isra.0"))[0];
    assert_eq!(a.title, b.title, "the same WARN site");
    assert_ne!(
        a.fingerprint, b.fingerprint,
        "reached from different callers"
    );
    assert_eq!(
        a.fingerprint, a2.fingerprint,
        "a compiler clone is the same caller"
    );
}
