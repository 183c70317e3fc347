//! The first line of a kernel report: which lines start one, of what kind,
//! in which of the kernel's formats (the form decides how the title is made),
//! and whether the line alone proves it is the kernel's (a "strong" header)
//! or a program could have printed it too (a "weak" one, such as a bare
//! `WARNING: ...` or `BUG: ...`, which counts only when kernel report lines
//! follow).

use std::sync::LazyLock;

use regex::Regex;

use super::report::Kind;

/// A report's format, which decides how its title is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `WARNING: CPU: 0 PID: 1 at file.c:12 func+0x1/0x2` and its variants.
    Warning,
    /// Another `WARNING: text` line.
    WarningText,
    /// A lockdep report: the title's start and the line after which the
    /// culprit's `at: func` is printed (empty: the call trace names it).
    Lockdep(&'static str, &'static str),
    /// `kernel BUG at file.c:12!`
    KernelBug,
    /// Another `BUG: text` line.
    BugText,
    /// A fault with the faulting instruction as culprit: the title's start.
    Fault(&'static str),
    Kasan,
    Kmsan,
    Kcsan,
    Kfence,
    Ubsan,
    SoftLockup,
    HardLockup,
    RcuStall,
    HungTask,
    Panic,
    /// `kmemleak: N new suspected memory leaks (see ...)`.
    LeakSummary,
    /// `unreferenced object 0x... (size N):` and its backtrace.
    LeakObject,
    Oom,
    /// `unregister_netdevice: waiting for DEV to become free`.
    NetdevWait,
}

/// A recognized first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub form: Form,
    /// The line alone shows it is the kernel's (else kernel report lines must follow).
    pub strong: bool,
}

const fn h(kind: Kind, form: Form, strong: bool) -> Option<Header> {
    Some(Header { kind, form, strong })
}

/// Messages the kernel prints before a report: text before them on the line
/// is allowed (`watchdog: BUG: soft lockup`).
const PREFIXES: &[&str] = &["watchdog: ", "NMI watchdog: ", "rcu: ", "kmemleak: "];

static WARN_CPU: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^WARNING: (?:CPU: \d+ PID: \d+ at \S+|at \S+:\d+ |\S+:\d+ at \S)").expect("regex")
});
static LOCKUP_SOFT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^BUG: soft lockup - CPU#\d+ stuck for").expect("regex"));
static RCU_STALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stalls?").expect("regex")
});
static HUNG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^INFO: task \S+:\d+ blocked for more than \d+ seconds").expect("regex")
});
static OOPS_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:Oops: )?(?:segment-related )?(general protection fault|invalid opcode|divide error|divide_error|int3|stack segment)\b.*: [0-9a-f]{4} \[#\d+\]|^(?:Oops: )?general protection fault, ").expect("regex")
});

/// Lockdep report headers and how their culprit is found.
const LOCKDEP: &[(&str, &str, &str)] = &[
    (
        "possible circular locking dependency detected",
        "possible deadlock",
        "is trying to acquire lock",
    ),
    (
        "possible recursive locking detected",
        "possible deadlock",
        "is trying to acquire lock",
    ),
    (
        "possible irq lock inversion dependency detected",
        "possible deadlock",
        "just changed the state of lock",
    ),
    (
        "HARDIRQ-safe -> HARDIRQ-unsafe lock order detected",
        "possible deadlock",
        "is trying to acquire",
    ),
    (
        "SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected",
        "possible deadlock",
        "is trying to acquire",
    ),
    (
        "inconsistent lock state",
        "inconsistent lock state",
        "takes:",
    ),
    ("suspicious RCU usage", "WARNING: suspicious RCU usage", ""),
    (
        "bad unlock balance detected!",
        "WARNING: bad unlock balance",
        "is trying to release lock",
    ),
    (
        "held lock freed!",
        "WARNING: held lock freed",
        "with a lock still held there",
    ),
    (
        "lock held when returning to user space!",
        "WARNING: lock held when returning to user space",
        "leaving the kernel with locks still held",
    ),
    (
        "Nested lock was not taken",
        "WARNING: nested lock was not taken",
        "",
    ),
    ("Invalid wait context", "BUG: invalid wait context", ""),
];

/// A header as the kernel prints it, without old lockdep's `[ ... ]` frame.
pub fn unframed(text: &str) -> &str {
    let t = text.trim_start();
    t.strip_prefix("[ ")
        .and_then(|t| t.strip_suffix(" ]"))
        .unwrap_or(t)
}

/// Recognizes the first line of a report (`text` without timestamps).
pub fn classify(text: &str) -> Option<Header> {
    // Kernels before 4.14 framed lockdep headers: `[ INFO: ... ]`.
    let text = text
        .strip_prefix("  ")
        .or_else(|| text.strip_prefix(' '))
        .unwrap_or(text);
    let text = text
        .strip_prefix("[ ")
        .and_then(|t| t.strip_suffix(" ]"))
        .unwrap_or(text);
    let t = PREFIXES
        .iter()
        .find_map(|p| text.strip_prefix(p))
        .unwrap_or(text);
    let lockdep_rest = t
        .strip_prefix("WARNING: ")
        .or_else(|| t.strip_prefix("BUG: "))
        .or_else(|| t.strip_prefix("INFO: "));
    if let Some(rest) = lockdep_rest {
        for (what, title, marker) in LOCKDEP {
            if rest.starts_with(what) {
                return h(Kind::Lockdep, Form::Lockdep(title, marker), true);
            }
        }
        if rest.contains("still has locks held!") {
            return h(
                Kind::Lockdep,
                Form::Lockdep("WARNING: still has locks held", ""),
                true,
            );
        }
    }
    if t.starts_with("WARNING:") {
        if WARN_CPU.is_match(t) {
            return h(Kind::Warning, Form::Warning, true);
        }
        if t.starts_with("WARNING: kernel stack regs at ")
            || t.starts_with("WARNING: kernel stack frame pointer at ")
        {
            return h(Kind::Warning, Form::WarningText, true);
        }
        return h(Kind::Warning, Form::WarningText, false);
    }
    if let Some(rest) = t.strip_prefix("BUG: ") {
        return bug(rest, t);
    }
    if t.starts_with("kernel BUG at ") {
        return h(Kind::Bug, Form::KernelBug, t.ends_with('!'));
    }
    if t.starts_with("UBSAN: ") {
        return h(Kind::Ubsan, Form::Ubsan, t.contains(" in "));
    }
    if let Some(rest) = t.strip_prefix("Unable to handle kernel ") {
        if rest.starts_with("NULL pointer dereference") {
            let f = Form::Fault("BUG: unable to handle kernel NULL pointer dereference");
            return h(Kind::NullDeref, f, true);
        }
        let f = Form::Fault("BUG: unable to handle kernel paging request");
        return h(Kind::PagingRequest, f, true);
    }
    if OOPS_LINE.is_match(t) {
        let body = t.strip_prefix("Oops: ").unwrap_or(t);
        let body = body.strip_prefix("segment-related ").unwrap_or(body);
        let (kind, title) = if body.starts_with("general protection fault") {
            (Kind::Gpf, "general protection fault")
        } else if body.starts_with("invalid opcode") {
            (Kind::Oops, "invalid opcode")
        } else if body.starts_with("divide error") || body.starts_with("divide_error") {
            (Kind::Oops, "divide error")
        } else if body.starts_with("int3") {
            (Kind::Oops, "int3")
        } else {
            (Kind::Oops, "stack segment fault")
        };
        return h(kind, Form::Fault(title), true);
    }
    // `[#1]` counts the kernel's oopses: a program's "Oops: ..." has none.
    let counted = t.contains(" [#") || t.starts_with("Oops[#") || t.starts_with("Oops#");
    if t.starts_with("Oops: ") || t.starts_with("Oops[#") || t.starts_with("Oops#") {
        return h(Kind::Oops, Form::Fault("Oops"), counted);
    }
    if t.starts_with("Internal error: ") {
        return h(Kind::Oops, Form::Fault("Internal error"), counted);
    }
    if t.starts_with("PANIC: double fault") {
        return h(Kind::Oops, Form::Fault("PANIC: double fault"), true);
    }
    if t.starts_with("Kernel panic - not syncing") {
        return h(Kind::Panic, Form::Panic, true);
    }
    if t.contains("Watchdog detected hard LOCKUP on cpu") {
        return h(Kind::HardLockup, Form::HardLockup, true);
    }
    if RCU_STALL.is_match(t) {
        return h(Kind::RcuStall, Form::RcuStall, true);
    }
    if HUNG.is_match(t) {
        return h(Kind::HungTask, Form::HungTask, true);
    }
    if t.starts_with("INFO: trying to register non-static key") {
        let f = Form::Lockdep("INFO: trying to register non-static key", "");
        return h(Kind::Lockdep, f, true);
    }
    if text.starts_with("kmemleak: ") && t.contains("new suspected memory leak") {
        return h(Kind::MemoryLeak, Form::LeakSummary, true);
    }
    if t.starts_with("unreferenced object 0x") && t.ends_with("):") {
        return h(Kind::MemoryLeak, Form::LeakObject, true);
    }
    if t.contains(" invoked oom-killer: ") {
        return h(Kind::Oom, Form::Oom, true);
    }
    if t.starts_with("unregister_netdevice: waiting for ") && t.contains(" to become free") {
        return h(Kind::Bug, Form::NetdevWait, true);
    }
    None
}

fn bug(rest: &str, t: &str) -> Option<Header> {
    let sanitizer = |name: &str| rest.strip_prefix(name).is_some_and(|r| r.starts_with(": "));
    if sanitizer("KASAN") {
        return h(Kind::Kasan, Form::Kasan, true);
    }
    if sanitizer("KMSAN") {
        return h(Kind::Kmsan, Form::Kmsan, true);
    }
    if sanitizer("KCSAN") {
        return h(Kind::Kcsan, Form::Kcsan, true);
    }
    if sanitizer("KFENCE") {
        return h(Kind::Kfence, Form::Kfence, true);
    }
    if LOCKUP_SOFT.is_match(t) {
        return h(Kind::SoftLockup, Form::SoftLockup, true);
    }
    let null = [
        "kernel NULL pointer dereference",
        "unable to handle kernel NULL pointer dereference",
        "Kernel NULL pointer dereference",
    ];
    if null.iter().any(|n| rest.starts_with(n)) {
        let f = Form::Fault("BUG: unable to handle kernel NULL pointer dereference");
        return h(Kind::NullDeref, f, true);
    }
    let paging = [
        "unable to handle page fault for address",
        "unable to handle kernel paging request",
        "Unable to handle kernel data access",
    ];
    if paging.iter().any(|n| rest.starts_with(n)) {
        let f = Form::Fault("BUG: unable to handle kernel paging request");
        return h(Kind::PagingRequest, f, true);
    }
    if rest.starts_with("memory leak") {
        // syzkaller's own line before kmemleak's `unreferenced object`.
        return h(Kind::MemoryLeak, Form::LeakObject, true);
    }
    if rest.contains("stack guard page was hit") {
        return h(
            Kind::Bug,
            Form::Fault("BUG: stack guard page was hit"),
            true,
        );
    }
    let strong = [
        "sleeping function called from invalid context",
        "scheduling while atomic",
        "using smp_processor_id() in preemptible",
        "using __this_cpu_",
        "spinlock ",
        "rwlock ",
        "workqueue lockup",
        "workqueue leaked lock",
        "Bad page state",
        "Bad page map",
        "Bad rss-counter state",
        "non-zero nr_",
        "Dentry ",
    ]
    .iter()
    .any(|s| rest.starts_with(s));
    h(Kind::Bug, Form::BugText, strong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_by_kind_and_strength() {
        let cases: &[(&str, Option<(Kind, bool)>)] = &[
            ("WARNING: CPU: 0 PID: 41 at drivers/misc/lkdtm/bugs.c:112 lkdtm_WARNING+0x8/0xb", Some((Kind::Warning, true))),
            ("WARNING: net/mac80211/tx.c:5024 at __ieee80211_beacon_get+0x125d/0x1630, CPU#1: syz/1", Some((Kind::Warning, true))),
            ("WARNING: at kernel/sched.c:1234 foo()", Some((Kind::Warning, true))),
            ("WARNING: kernel stack regs at 00000000 in sh:1 has bad 'bp' value", Some((Kind::Warning, true))),
            ("WARNING: something of a program", Some((Kind::Warning, false))),
            ("WARNING: apt does not have a stable CLI interface.", Some((Kind::Warning, false))),
            ("WARNING: possible circular locking dependency detected", Some((Kind::Lockdep, true))),
            ("WARNING: suspicious RCU usage", Some((Kind::Lockdep, true))),
            ("BUG: KASAN: slab-use-after-free in foo+0x1/0x2", Some((Kind::Kasan, true))),
            ("BUG: KFENCE: out-of-bounds read in test+0xa6/0x234", Some((Kind::Kfence, true))),
            ("BUG: KMSAN: uninit-value in f+0x1/0x2", Some((Kind::Kmsan, true))),
            ("BUG: KCSAN: data-race in a / b", Some((Kind::Kcsan, true))),
            ("BUG: kernel NULL pointer dereference, address: 0000000000000000", Some((Kind::NullDeref, true))),
            ("BUG: unable to handle page fault for address: ffffffffffffffff", Some((Kind::PagingRequest, true))),
            ("Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000", Some((Kind::NullDeref, true))),
            ("Unable to handle kernel paging request at virtual address dead", Some((Kind::PagingRequest, true))),
            ("watchdog: BUG: soft lockup - CPU#0 stuck for 3s! [sh:41]", Some((Kind::SoftLockup, true))),
            ("BUG: sleeping function called from invalid context at kernel/x.c:1", Some((Kind::Bug, true))),
            ("BUG: something odd", Some((Kind::Bug, false))),
            ("BUG: memory leak", Some((Kind::MemoryLeak, true))),
            ("kernel BUG at drivers/misc/lkdtm/bugs.c:105!", Some((Kind::Bug, true))),
            ("Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP", Some((Kind::Gpf, true))),
            ("general protection fault: 0000 [#1] SMP KASAN", Some((Kind::Gpf, true))),
            ("Oops: invalid opcode: 0000 [#1] SMP", Some((Kind::Oops, true))),
            ("divide error: 0000 [#1] PREEMPT SMP KASAN", Some((Kind::Oops, true))),
            ("Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI", Some((Kind::Oops, true))),
            ("Internal error: Oops - BUG: 00000000f2000800 [#1] PREEMPT SMP", Some((Kind::Oops, true))),
            ("UBSAN: array-index-out-of-bounds in lib/test_ubsan.c:99:16", Some((Kind::Ubsan, true))),
            ("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100", Some((Kind::Panic, true))),
            ("watchdog: Watchdog detected hard LOCKUP on cpu 1", Some((Kind::HardLockup, true))),
            ("rcu: INFO: rcu_preempt self-detected stall on CPU", Some((Kind::RcuStall, true))),
            ("rcu: INFO: rcu_sched detected stalls on CPUs/tasks:", Some((Kind::RcuStall, true))),
            ("INFO: rcu_preempt detected expedited stalls on CPUs/tasks: {", Some((Kind::RcuStall, true))),
            ("INFO: task sh:92 blocked for more than 2 seconds.", Some((Kind::HungTask, true))),
            ("kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)", Some((Kind::MemoryLeak, true))),
            ("unreferenced object 0xffff888100f1d400 (size 64):", Some((Kind::MemoryLeak, true))),
            ("stress invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0, oom_score_adj=0", Some((Kind::Oom, true))),
            ("unregister_netdevice: waiting for lo to become free. Usage count = 2", Some((Kind::Bug, true))),
            // not reports
            ("lkdtm: Performing direct entry WARNING", None),
            ("Run /bin/sh as init process", None),
            ("  with arguments: WARNING:", None),
            ("sh: WARNING: foo", None),
            ("INFO: lockdep is turned off.", None),
            ("[ INFO: possible circular locking dependency detected ]", Some((Kind::Lockdep, true))),
            ("[ BUG: syz-executor/31761 still has locks held! ]", Some((Kind::Lockdep, true))),
            ("Oopsie", None),
            ("Oops: the build failed", Some((Kind::Oops, false))),
            ("Oops: 0002 [#1] PREEMPT SMP", Some((Kind::Oops, true))),
            ("UBSANITY", None),
        ];
        for (line, want) in cases {
            let got = classify(line).map(|h| (h.kind, h.strong));
            assert_eq!(got, *want, "{line}");
        }
    }
}
