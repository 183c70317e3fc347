//! Where a report's culprit is: the functions a title may blame, found in
//! the places each format puts them (the instruction pointer, the call
//! trace past generic frames, lockdep's `at:` lines, the stalled task's entry
//! into the kernel, the frame a hung task waits in).

use super::frames::{self, base_name, is_generic, Frame, Role};

/// Frames to pick a culprit from: the reliable ones, or all when the
/// unwinder trusted none (a kernel built without frame pointers or ORC marks
/// every frame with `?`).
pub(super) fn candidates(frames: &[Frame]) -> Vec<&Frame> {
    let reliable: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.reliable && f.role == Role::Trace)
        .collect();
    let trace: Vec<&Frame> = if reliable.is_empty() {
        frames.iter().filter(|f| f.role == Role::Trace).collect()
    } else {
        reliable
    };
    frames
        .iter()
        .filter(|f| f.role == Role::Ip)
        .chain(trace)
        .collect()
}

/// The first name in `names` that is not generic nor `skip`ped.
pub(super) fn pick<'a>(names: impl IntoIterator<Item = &'a str>, skip: &[&str]) -> Option<String> {
    names
        .into_iter()
        .map(base_name)
        .find(|n| !n.is_empty() && !is_generic(n) && !skip.iter().any(|s| n.starts_with(s)))
        .map(str::to_string)
}

/// The culprit from the instruction pointer, then the call trace.
pub(super) fn from_ip_and_trace(frames: &[Frame], skip: &[&str]) -> Option<String> {
    pick(candidates(frames).iter().map(|f| f.function.as_str()), skip)
}

/// The culprit from the call trace only.
pub(super) fn from_trace(frames: &[Frame], skip: &[&str]) -> Option<String> {
    pick(
        candidates(frames)
            .iter()
            .filter(|f| f.role == Role::Trace)
            .map(|f| f.function.as_str()),
        skip,
    )
}

/// `func` of the last `func+0x1/0x2` token of a line.
fn last_symbol(line: &str) -> Option<&str> {
    line.split_whitespace()
        .rev()
        .find_map(|w| frames::symbol_token(w).map(|(n, _, _)| n))
}

/// `func` of the `in func+0x1/0x2` of a sanitizer's header.
pub(super) fn symbol_after_in(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once(" in ")?;
    rest.split_whitespace()
        .next()
        .and_then(|w| frames::symbol_token(w).map(|(n, _, _)| n))
}

/// Allocation, OOM-killer and page-fault frames of an OOM report.
pub(super) const OOM_SKIP: &[&str] = &[
    "dump_header",
    "oom_kill_process",
    "out_of_memory",
    "pagefault_out_of_memory",
    "mem_cgroup_",
    "__mem_cgroup_",
    "try_charge",
    "charge_memcg",
    "obj_cgroup_charge",
    "__folio_alloc",
    "vma_alloc_folio",
    "folio_prealloc",
    "alloc_",
    "__alloc_",
    "handle_mm_fault",
    "__handle_mm_fault",
    "handle_pte_fault",
    "do_anonymous_page",
    "do_fault",
    "__do_fault",
    "do_pte_missing",
    "do_read_fault",
    "do_cow_fault",
    "do_shared_fault",
    "do_wp_page",
    "wp_page_copy",
    "filemap_fault",
    "__filemap_get_folio",
    "filemap_alloc_folio",
];

/// The functions of lockdep's `at:` lines after its `marker` line (the lock
/// being taken, then the one held), on the `at:` line or just below it.
pub(super) fn lockdep_at<'a>(lines: &'a [String], marker: &str) -> Vec<&'a str> {
    let Some(i) = lines.iter().position(|l| l.contains(marker)) else {
        return vec![];
    };
    let mut out = Vec::new();
    let mut want_next = false;
    for l in lines[i..].iter().take(30) {
        let t = l.trim();
        if t.starts_with("stack backtrace") || t.starts_with("Call Trace") {
            break;
        }
        if let Some((_, after)) = t.split_once("at:") {
            match last_symbol(after) {
                Some(f) => out.push(f),
                None => want_next = after.trim().is_empty(),
            }
        } else if want_next {
            out.extend(last_symbol(t));
            want_next = false;
        }
    }
    out
}

/// Where work enters the kernel (a syscall, a work item, a timer, a softirq,
/// a page fault, a read or write, a socket call): a stall blames the frame
/// just above the first of these in the stalled task's stack, since the
/// stalled instruction itself moves around in whatever loops.
const ENTRY_POINTS: &[&str] = &[
    "do_syscall_",
    "do_fast_syscall_",
    "__do_fast_syscall_",
    "entry_SYSCALL",
    "el0_svc",
    "invoke_syscall",
    "process_one_work",
    "worker_thread",
    "kthread",
    "ret_from_fork",
    "call_timer_fn",
    "expire_timers",
    "__run_timers",
    "run_timer_softirq",
    "run_ksoftirqd",
    "smpboot_thread_fn",
    "netif_receive_skb",
    "__netif_receive_skb",
    "vfs_read",
    "vfs_write",
    "vfs_ioctl",
    "vfs_iter_read",
    "vfs_iter_write",
    "do_iter_readv_writev",
    "sock_sendmsg",
    "sock_recvmsg",
    "__sys_sendmsg",
    "__sys_setsockopt",
    "handle_mm_fault",
    "__do_fault",
    "task_work_run",
    "__fput",
    "exit_to_user_mode",
    "cpu_startup_entry",
    "start_secondary",
];

/// The culprit of an RCU stall: in the stalled task's frames (those after
/// the timer interrupt that found it), the frame above the first entry point.
pub(super) fn stall_culprit(lines: &[String]) -> Option<String> {
    let from = lines
        .iter()
        .position(|l| l.trim() == "</IRQ>" || l.contains("apic_timer_interrupt"))?;
    let names: Vec<String> = lines[from + 1..]
        .iter()
        .enumerate()
        .filter_map(|(i, l)| frames::ip_frame(l, i).or_else(|| frames::trace_frame(l, i)))
        .filter(|f| f.reliable && f.role != Role::Lr)
        .map(|f| base_name(&f.function).to_string())
        .filter(|n| !is_generic(n) && !n.starts_with("rcu_"))
        .collect();
    let at = names
        .iter()
        .position(|n| ENTRY_POINTS.iter().any(|e| n.starts_with(e)))?;
    (at > 0).then(|| names[at - 1].clone())
}

/// A hung task blames the first frame that is not waiting or locking, unless
/// it waits for the RTNL or an RCU grace period, which many hangs share.
pub(super) fn hung_task(frames: &[Frame]) -> Option<String> {
    let names: Vec<&str> = candidates(frames)
        .iter()
        .filter(|f| f.role == Role::Trace)
        .map(|f| base_name(&f.function))
        .collect();
    for n in &names {
        if n.starts_with("rtnl_lock") {
            return Some("rtnl_lock".into());
        }
        if [
            "synchronize_rcu",
            "synchronize_srcu",
            "synchronize_net",
            "synchronize_sched",
        ]
        .iter()
        .any(|s| n.starts_with(s))
        {
            return Some("synchronize_rcu".into());
        }
    }
    let waiting = [
        "sched",
        "wait",
        "_lock",
        "lock_",
        "completion",
        "down",
        "mutex",
        "rwsem",
        "kthread",
        "__switch_to",
        "context_switch",
        "sleep",
        "timeout",
        "synchronize",
        "cancel_delayed_work",
    ];
    names
        .into_iter()
        .find(|n| !is_generic(n) && !waiting.iter().any(|w| n.contains(w)))
        .map(str::to_string)
}
