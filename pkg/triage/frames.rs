//! Stack frames in a kernel report: `func+0xoff/0xlen [module]` as the call
//! trace, the faulting instruction (`RIP: 0010:`, arm64 `pc :`) and the
//! return address (`lr :`) print them, with `?` marking a frame the unwinder
//! is unsure of; which stack of a report is the one that explains it; and
//! which functions are reporting machinery or generic helpers that name no
//! culprit.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// Where a frame was printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The faulting or reporting instruction (`RIP:`, `pc :`, `PC is at`).
    Ip,
    /// arm64's link register (`lr :`, `LR is at`): a return address.
    Lr,
    /// A call-trace entry: a return address.
    Trace,
}

/// One frame: a function, the offset into it and its length, the module it is
/// in (when not vmlinux), and whether the unwinder trusted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Frame {
    pub function: String,
    pub offset: u64,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    pub reliable: bool,
    pub role: Role,
    /// The report line (0-based) the frame was printed on.
    pub line: usize,
    /// Source lines, innermost inlined function first (after symbolization).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<SourceLine>,
}

/// `name+0xoff/0xlen` (a `0010:` segment in front allowed) as (name, off, len).
pub fn symbol_token(tok: &str) -> Option<(&str, u64, u64)> {
    let tok = tok
        .trim()
        .trim_start_matches('(')
        .trim_end_matches([')', ',']);
    let tok = match tok.split_once(':') {
        Some((seg, rest)) if seg.chars().all(|c| c.is_ascii_hexdigit()) => rest,
        _ => tok,
    };
    let (name, rest) = tok.rsplit_once("+0x")?;
    let (off, len) = rest.split_once('/')?;
    let len = len.strip_prefix("0x").unwrap_or(len);
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.$".contains(c));
    if !name_ok {
        return None;
    }
    Some((
        name,
        u64::from_str_radix(off, 16).ok()?,
        u64::from_str_radix(len, 16).ok()?,
    ))
}

/// `[module]` or `[module buildid]` after a symbol.
fn module_token(rest: &str) -> Option<String> {
    let rest = rest.trim();
    let inner = rest.strip_prefix('[')?;
    let inner = &inner[..inner.find(']')?];
    let name = inner.split_whitespace().next()?;
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        .then(|| name.to_string())
}

fn is_address(tok: &str) -> bool {
    let t = tok.trim_start_matches("[<").trim_end_matches(">]");
    let t = t.trim_start_matches('[').trim_end_matches(']');
    let t = t.strip_prefix("0x").unwrap_or(t);
    t.len() >= 8 && t.chars().all(|c| c.is_ascii_hexdigit())
}

/// A call-trace line: `[ [<addr>] ][? ]func+0xoff/0xlen[ [mod]][ (C)]`, alone on its line.
pub fn trace_frame(text: &str, line: usize) -> Option<Frame> {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    while words.first().is_some_and(|w| is_address(w)) {
        words.remove(0);
    }
    let mut reliable = true;
    if words.first() == Some(&"?") {
        reliable = false;
        words.remove(0);
    }
    // arm64's frame-type marks and powerpc's "(unreliable)".
    match words.last() {
        Some(&"(unreliable)") => {
            reliable = false;
            words.pop();
        }
        Some(w) if w.len() == 3 && w.starts_with('(') && w.ends_with(')') => {
            words.pop();
        }
        _ => {}
    }
    let (&sym, rest) = words.split_first()?;
    let mut module = None;
    for (i, w) in rest.iter().enumerate() {
        if i == 0 && w.starts_with('[') && *w != "[inline]" {
            module = Some(module_token(&rest.join(" "))?);
            break;
        }
        // Already symbolized logs: `net/core/sock.c:1774`, `[inline]`, `(file:line ...)`.
        let source = w.contains(':') || *w == "[inline]" || w.starts_with('(');
        if !source {
            return None;
        }
    }
    let (name, offset, size) = symbol_token(sym)?;
    if sym.contains(':') {
        return None; // `RIP: 0010:f+0x1/0x2` is not a trace line
    }
    Some(Frame {
        function: name.to_string(),
        offset,
        size,
        module,
        reliable,
        role: Role::Trace,
        line,
        source: vec![],
    })
}

static IP_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(RIP|EIP|IP|NIP|pc|PC is at|lr|LR is at)\s*:?\s+(?:[0-9a-f]{4}:)?(?:\[<?[0-9a-f]+>?\]\s+)*(\S+)(?:\s+(\[[^\]]+\]))?")
        .expect("regex")
});

/// An instruction-pointer line: `RIP: 0010:f+0x1/0x2`, `pc : f+0x8/0x18 [mod]`,
/// `lr : g+0x24/0x40`, `PC is at f+0x..`.
pub fn ip_frame(text: &str, line: usize) -> Option<Frame> {
    let c = IP_LINE.captures(text)?;
    let role = match &c[1] {
        "lr" | "LR is at" => Role::Lr,
        _ => Role::Ip,
    };
    let (name, offset, size) = symbol_token(&c[2])?;
    Some(Frame {
        function: name.to_string(),
        offset,
        size,
        module: c.get(3).and_then(|m| module_token(m.as_str())),
        reliable: true,
        role,
        line,
        source: vec![],
    })
}

/// A line that starts a stack in a report (`Call Trace:`, KASAN's
/// `Allocated by task 1:`, kmemleak's `backtrace (crc 1234):`, lockdep's
/// `-> #1 (&lock){+.+.}-{3:3}:`).
pub fn stack_start(text: &str) -> Option<StackLabel> {
    let t = text.trim();
    let low = t.to_ascii_lowercase();
    if low == "call trace:" || low == "backtrace:" || low == "call trace: " {
        return Some(StackLabel::CallTrace);
    }
    if low.starts_with("backtrace (crc") || low == "stack:" {
        return Some(StackLabel::CallTrace);
    }
    let other = (t.starts_with("Allocated by task ")
        || t.starts_with("Freed by task ")
        || t.ends_with("potentially related work creation:")
        || t.starts_with("Uninit was created at:")
        || t.starts_with("Uninit was stored to memory at:")
        || (t.starts_with("Local variable ") && t.ends_with("created at:"))
        || (t.starts_with("-> #") && t.ends_with(':'))
        || t.starts_with("allocated by task ")
        || t.starts_with("freed by task "))
        && t.ends_with(':');
    other.then_some(StackLabel::Other)
}

/// What started a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackLabel {
    /// Frames printed right after the header, before any keyword (KFENCE, KMSAN).
    Implicit,
    /// `Call Trace:`, `backtrace:`: the stack of the report itself.
    CallTrace,
    /// Allocation, free or lock-dependency stacks.
    Other,
}

/// The frames of a report's lines that explain it: the first
/// instruction-pointer frames (`RIP:`, `pc :`, `lr :`) and the first call
/// trace (else the first stack with frames).
pub fn primary_frames(lines: &[String]) -> Vec<Frame> {
    let mut ips: Vec<Frame> = Vec::new();
    let mut stacks: Vec<(StackLabel, Vec<Frame>)> = vec![(StackLabel::Implicit, vec![])];
    for (i, l) in lines.iter().enumerate().skip(1) {
        if let Some(label) = stack_start(l) {
            stacks.push((label, vec![]));
            continue;
        }
        if let Some(f) = trace_frame(l, i) {
            stacks.last_mut().expect("one stack").1.push(f);
        } else if let Some(f) = ip_frame(l, i) {
            if !ips.iter().any(|p| p.role == f.role) {
                ips.push(f);
            }
        }
    }
    let main = stacks
        .iter()
        .position(|(label, f)| *label == StackLabel::CallTrace && !f.is_empty())
        .or_else(|| stacks.iter().position(|(_, f)| !f.is_empty()));
    let mut out = ips;
    if let Some(i) = main {
        out.extend(stacks.swap_remove(i).1);
    }
    out
}

/// A function name without the suffixes the compiler adds to clones
/// (`.isra.0`, `.constprop.3`, `.part.1`, `.cold`, `.llvm.1234`), which differ
/// between builds of the same code.
pub fn base_name(f: &str) -> &str {
    f.split_once('.').map_or(f, |(b, _)| b)
}

/// Reporting machinery and generic helpers: frames that every report of a
/// kind shares, or library code that is rarely where a bug is. Three lists:
/// whole names, name starts and name parts.
static GENERIC: LazyLock<Regex> = LazyLock::new(|| {
    let exact = [
        // reporting and trap handling
        "show_stack",
        "show_regs",
        "__show_regs",
        "show_trace_log_lvl",
        "dump_backtrace",
        "__warn",
        "handle_bug",
        "do_error_trap",
        "do_trap",
        "die",
        "__die",
        "__die_body",
        "oops_end",
        "fixup_exception",
        "page_fault_oops",
        "kernelmode_fixup_or_oops",
        "do_user_addr_fault",
        "do_kern_addr_fault",
        "handle_page_fault",
        "bad_area_nosemaphore",
        "__bad_area_nosemaphore",
        "spurious_kernel_fault",
        "no_context",
        "bug_handler",
        "brk_handler",
        "call_break_hook",
        "do_debug_exception",
        "do_mem_abort",
        "do_page_fault",
        "do_translation_fault",
        "__do_kernel_fault",
        "die_kernel_fault",
        "print_report",
        "print_address_description",
        "check_memory_region",
        "read_word_at_a_time",
        "__schedule_bug",
        "check_preemption_disabled",
        "debug_smp_processor_id",
        "bad_page",
        "dump_page",
        "__dump_page",
        "skb_panic",
        "skb_over_panic",
        "skb_under_panic",
        "nmi_cpu_backtrace",
        "nmi_trigger_cpumask_backtrace",
        "arch_trigger_cpumask_backtrace",
        "sched_show_task",
        "dump_cpu_task",
        "print_cpu_stall",
        "print_other_cpu_stall",
        "check_cpu_stall",
        "update_process_times",
        "watchdog_timer_fn",
        "hrtimer_interrupt",
        "__hrtimer_run_queues",
        "handle_softirqs",
        "__do_softirq",
        "irq_exit_rcu",
        "__irq_exit_rcu",
        "smp_apic_timer_interrupt",
        "apic_timer_interrupt",
        // lock debugging
        "print_circular_bug",
        "check_noncircular",
        "check_prev_add",
        "check_prevs_add",
        "validate_chain",
        "mark_held_locks",
        "register_lock_class",
        "lock_is_held_type",
        // locking primitives
        "osq_lock",
        "osq_unlock",
        "down",
        "up",
        "up_read",
        "up_write",
        // string and user-copy helpers
        "memcpy",
        "memset",
        "memmove",
        "memcmp",
        "memchr",
        "memdup_user",
        "strcpy",
        "strncpy",
        "strscpy",
        "strlcpy",
        "strlen",
        "strnlen",
        "strcmp",
        "strncmp",
        "strchr",
        "strrchr",
        "strstr",
        "strnstr",
        "kstrdup",
        "kstrndup",
        "kmemdup",
        "_copy_to_user",
        "_copy_from_user",
        "rep_movs_alternative",
        "copy_to_iter",
        "copy_from_iter",
        "copy_page_to_iter",
        "copy_page_from_iter",
        // allocation
        "kfree",
        "kvfree",
        "kzalloc",
        "kcalloc",
        "___slab_alloc",
        "__slab_alloc",
        "slab_alloc_node",
        "__slab_free",
        "alloc_slab_page",
        "allocate_slab",
        "new_slab",
        "__get_free_pages",
        "__do_kmalloc_node",
        "create_object",
        "kmalloc",
        "vmalloc",
        // scheduling
        "schedule",
        "__schedule",
        "schedule_timeout",
        "schedule_preempt_disabled",
        "io_schedule",
        "context_switch",
        "__switch_to",
        "__switch_to_asm",
        "finish_task_switch",
        // list debugging
        "__list_add",
        "__list_del",
        "list_add",
        "list_del",
        "__list_del_entry",
        "work_is_static_object",
        "timer_is_static_object",
        // wrappers that hand the real work to a caller-provided object
        "finish_wait",
        "flush_work",
        "__flush_work",
        "kthread_stop",
        "consume_skb",
        "print_unlock_imbalance_bug",
        "print_usage_bug",
        "debug_check_no_locks_held",
        "__this_cpu_preempt_check",
        "walk_stackframe",
        "reacquire_held_locks",
        "complete",
    ];
    let prefixes = [
        "asm_exc_",
        "exc_",
        "el1_",
        "el1h_",
        "el0_",
        "asm_sysvec_",
        "sysvec_",
        "__sysvec_",
        "__asan_",
        "__hwasan_",
        "__msan_",
        "msan_",
        "kcsan_",
        "__tsan_",
        "kfence_",
        "__kfence_",
        "mark_lock",
        "_raw_spin_",
        "_raw_read_",
        "check_memory_region",
        "_raw_write_",
        "raw_spin_",
        "do_raw_",
        "queued_spin_",
        "native_queued_spin_",
        "__pv_queued_spin_",
        "queued_read_",
        "queued_write_",
        "spin_bug",
        "spin_dump",
        "mutex_lock",
        "mutex_unlock",
        "mutex_trylock",
        "__mutex_",
        "down_read",
        "down_write",
        "down_trylock",
        "rwsem_",
        "__rwsem_",
        "rt_mutex_",
        "copy_user_",
        "__copy_user",
        "__put_user_",
        "__get_user_",
        "kmalloc_trace",
        "kmalloc_node",
        "kmalloc_large",
        "kmalloc_order",
        "kmalloc_slab",
        "kmalloc_noprof",
        "kmalloc_array",
        "kmalloc_reserve",
        "__kmalloc",
        "kmem_cache_",
        "__kmem_cache_",
        "kvmalloc",
        "krealloc",
        "slab_free",
        "slab_post_alloc",
        "__alloc_pages",
        "alloc_pages",
        "folio_alloc",
        "vmalloc_node",
        "vmalloc_noprof",
        "vmalloc_user",
        "__vmalloc",
        "kmemleak_",
        "refcount_",
        "kasan_",
        "__kasan",
        "kmsan_",
        "__kmsan",
        "ubsan_",
        "__ubsan",
        "save_stack",
        "__refcount_",
        "kref_",
        "__list_add_valid",
        "__list_del_entry_valid",
        "preempt_schedule",
        "__x86_indirect_thunk",
        "__x86_return_thunk",
        "srso_",
        "debug_object",
        "__debug_object",
        "stack_trace_",
        "arch_stack_walk",
        "__pfx_",
        "perf_trace_",
        "memcpy_",
        "memset_",
        "__memcpy",
        "__memset",
        "__memmove",
        "instrument_copy_",
        "rcu_lockdep_",
        "__might_",
        "___might_",
        "__cant_",
        "rb_",
        "__rb_",
        "kobject_",
        "sysfs_remove",
        "__wake_up",
        "wait_for_completion",
        "del_timer",
        "kfree_skb",
        "skb_release_",
    ];
    let parts = [
        "dump_stack",
        "warn_slowpath",
        "report_bug",
        "fixup_bug",
        "invalid_op",
        "warn_alloc",
        "sanitizer_cov",
        "lockdep",
        "lock_acquire",
        "lock_release",
        "__lock_acquire",
        "might_sleep",
        "might_fault",
        "might_resched",
        "panic",
        "printk",
        "dev_printk",
        "string",
    ];
    let mut alts: Vec<String> = exact.iter().map(|e| format!("^{e}$")).collect();
    alts.extend(prefixes.iter().map(|p| format!("^{}", regex::escape(p))));
    alts.extend(parts.iter().map(|p| regex::escape(p)));
    Regex::new(&format!("(?:{})", alts.join("|"))).expect("regex")
});

/// Whether `f` (a function name) names no culprit by itself.
pub fn is_generic(f: &str) -> bool {
    GENERIC.is_match(base_name(f))
}

/// A source position of a frame: the function, file and line; `inlined` when
/// the code was inlined into the next entry's function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceLine {
    pub function: Option<String>,
    pub file: String,
    pub line: u32,
    pub inlined: bool,
}

#[cfg(test)]
#[path = "frames_tests.rs"]
mod tests;
