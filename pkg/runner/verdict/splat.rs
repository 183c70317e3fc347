//! Kernel splats on the guest console: which lines start one (a WARN, a BUG,
//! an Oops, a sanitizer report, a lockdep report, a lockup, an RCU stall, a
//! hung task, a kmemleak report, a panic), what kind it is, which function it
//! names and where its trace ends. A pure line-by-line parser: the console
//! thread feeds it lines and forwards the splats it completes. Also the
//! kernel's taint flags (`/proc/sys/kernel/tainted`) as letters.

use serde::Serialize;

/// The kind of a splat, as it appears in messages and in `--result-json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplatKind {
    Warning,
    Bug,
    Oops,
    Panic,
    Kasan,
    Kfence,
    Ubsan,
    Lockdep,
    SoftLockup,
    HardLockup,
    RcuStall,
    HungTask,
    Kmemleak,
    /// A taint flag appeared during the run with no splat on the console.
    Taint,
}

impl SplatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SplatKind::Warning => "warning",
            SplatKind::Bug => "bug",
            SplatKind::Oops => "oops",
            SplatKind::Panic => "panic",
            SplatKind::Kasan => "kasan",
            SplatKind::Kfence => "kfence",
            SplatKind::Ubsan => "ubsan",
            SplatKind::Lockdep => "lockdep",
            SplatKind::SoftLockup => "soft-lockup",
            SplatKind::HardLockup => "hard-lockup",
            SplatKind::RcuStall => "rcu-stall",
            SplatKind::HungTask => "hung-task",
            SplatKind::Kmemleak => "kmemleak",
            SplatKind::Taint => "taint",
        }
    }

    /// Kinds that mean a CPU or task is stuck: the command may never end, so
    /// the run stops shortly after one is complete instead of waiting.
    pub fn is_stuck(self) -> bool {
        matches!(
            self,
            SplatKind::SoftLockup
                | SplatKind::HardLockup
                | SplatKind::RcuStall
                | SplatKind::HungTask
        )
    }

    /// Kinds whose report has no `---[ end trace` line: it ends with its
    /// call trace's `</TASK>`.
    fn ends_at_task_end(self) -> bool {
        self.is_stuck() || self == SplatKind::Lockdep
    }

    /// Kinds reported on one line.
    fn one_line(self) -> bool {
        self == SplatKind::Kmemleak
    }
}

impl std::fmt::Display for SplatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One splat: its kind, the function it names (when the kernel has
/// KALLSYMS), its first line and all its lines (timestamps removed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Splat {
    pub kind: SplatKind,
    pub function: Option<String>,
    pub first_line: String,
    pub lines: Vec<String>,
}

impl Splat {
    /// `warning in lkdtm_WARNING`: what messages and allowlists see.
    pub fn summary(&self) -> String {
        match &self.function {
            Some(f) => format!("{} in {f}", self.kind),
            None => self.kind.to_string(),
        }
    }
}

/// The console line without its `[    1.234567] ` printk timestamp.
pub fn strip_timestamp(line: &str) -> &str {
    let l = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = l.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let stamp = &rest[..end];
            if !stamp.is_empty() && stamp.trim().chars().all(|c| c.is_ascii_digit() || c == '.') {
                let after = &rest[end + 1..];
                return after.strip_prefix(' ').unwrap_or(after);
            }
        }
    }
    l
}

const LOCKDEP_HEADERS: &[&str] = &[
    "WARNING: possible circular locking dependency detected",
    "WARNING: possible recursive locking detected",
    "WARNING: suspicious RCU usage",
    "WARNING: inconsistent lock state",
    "WARNING: possible irq lock inversion dependency detected",
    "WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected",
    "WARNING: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected",
    "WARNING: bad unlock balance detected!",
    "WARNING: held lock freed!",
    "WARNING: lock held when returning to user space!",
    "WARNING: Nested lock was not taken",
];

/// The kind of splat a (timestamp-free) console line starts, if any.
pub fn start_kind(t: &str) -> Option<SplatKind> {
    if t.starts_with("Kernel panic - not syncing") {
        return Some(SplatKind::Panic);
    }
    if t.contains("BUG: soft lockup") {
        return Some(SplatKind::SoftLockup);
    }
    if t.contains("detected hard LOCKUP") {
        return Some(SplatKind::HardLockup);
    }
    if t.starts_with("rcu: INFO: ") && t.contains("stall") {
        return Some(SplatKind::RcuStall);
    }
    if t.starts_with("INFO: task ") && t.contains(" blocked for more than ") {
        return Some(SplatKind::HungTask);
    }
    if t.starts_with("kmemleak: ") && t.contains("suspected memory leak") {
        return Some(SplatKind::Kmemleak);
    }
    if t.starts_with("WARNING:") {
        if LOCKDEP_HEADERS.iter().any(|h| t.starts_with(h)) {
            return Some(SplatKind::Lockdep);
        }
        return Some(SplatKind::Warning);
    }
    if t.starts_with("BUG: KASAN:") {
        return Some(SplatKind::Kasan);
    }
    if t.starts_with("BUG: KFENCE:") {
        return Some(SplatKind::Kfence);
    }
    if t.starts_with("UBSAN:") {
        return Some(SplatKind::Ubsan);
    }
    if t.starts_with("BUG:") || t.starts_with("kernel BUG at ") {
        return Some(SplatKind::Bug);
    }
    if t.starts_with("Oops") {
        return Some(SplatKind::Oops);
    }
    None
}

/// `func` from a symbolized address such as `func+0x12/0x20 [module]`.
fn symbol(tok: &str) -> Option<String> {
    let tok = tok.trim();
    let (name, off) = tok.split_once("+0x")?;
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.$".contains(c))
        && off.contains('/');
    ok.then(|| name.to_string())
}

/// Frames that every trace of a kind shares and that name no culprit.
const GENERIC_FRAMES: &[&str] = &[
    "dump_stack",
    "dump_stack_lvl",
    "show_stack",
    "__warn",
    "warn_slowpath_fmt",
    "report_bug",
    "handle_bug",
    "exc_invalid_op",
    "asm_exc_invalid_op",
    "__schedule",
    "schedule",
    "schedule_timeout",
    "schedule_preempt_disabled",
    "io_schedule",
    "panic",
    "__might_sleep",
    "lockdep_rcu_suspicious",
    "print_circular_bug",
    "check_noncircular",
];

/// The function a splat names: in its first line (`WARNING: ... at file:line
/// func+0x..`, `BUG: KASAN: ... in func+0x..`), else the faulting instruction
/// (`RIP: 0010:func+0x..`, arm64 `pc : func+0x..`), else the first reliable
/// call-trace frame that is not a reporting or scheduling helper.
pub fn function_of(lines: &[String]) -> Option<String> {
    let first = lines.first()?;
    if let Some(f) = first.split_whitespace().last().and_then(symbol) {
        return Some(f);
    }
    if let Some((_, rest)) = first.rsplit_once(" in ") {
        if let Some(f) = rest.split_whitespace().next().and_then(symbol) {
            return Some(f);
        }
    }
    for l in lines {
        let t = l.trim_start();
        let reg = t
            .strip_prefix("RIP: ")
            .map(|r| r.split_once(':').map_or(r, |(_, f)| f))
            .or_else(|| t.strip_prefix("pc : "));
        if let Some(f) = reg
            .and_then(|r| r.split_whitespace().next())
            .and_then(symbol)
        {
            return Some(f);
        }
    }
    let mut in_trace = false;
    for l in lines {
        let t = l.trim();
        if t.eq_ignore_ascii_case("call trace:") {
            in_trace = true;
            continue;
        }
        if !in_trace || t.starts_with('?') || t.starts_with('<') {
            continue;
        }
        let tok = t.split_whitespace().last().unwrap_or("");
        let tok = t
            .split_whitespace()
            .find(|w| w.contains("+0x"))
            .unwrap_or(tok);
        if let Some(f) = symbol(tok) {
            if !GENERIC_FRAMES.contains(&f.as_str()) {
                return Some(f);
            }
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the call trace: register dumps, module lists, lockdep text.
    Header,
    /// In the call trace.
    Trace,
}

#[derive(Debug)]
struct Open {
    kind: SplatKind,
    lines: Vec<String>,
    phase: Phase,
    /// Nesting of x86's `<TASK>`/`<IRQ>`/`<NMI>` trace sections: inside one,
    /// unindented lines (the user registers of a syscall) still belong.
    depth: usize,
}

/// The most lines one splat keeps; a longer report is cut there.
pub const MAX_SPLAT_LINES: usize = 400;

/// Follows the console line by line and yields each splat when its trace ends.
#[derive(Debug, Default)]
pub struct SplatParser {
    open: Option<Open>,
}

impl SplatParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a splat has started and its trace has not ended yet.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Feeds one console line; returns the splats it completed (at most two:
    /// the open one that this line ends, and a one-line splat it starts).
    pub fn push(&mut self, line: &str) -> Vec<Splat> {
        let t = strip_timestamp(line);
        let mut done = Vec::new();
        if let Some(open) = self.open.as_mut() {
            match continue_open(open, t) {
                Step::Take => {
                    open.lines.push(t.to_string());
                    if open.lines.len() >= MAX_SPLAT_LINES {
                        done.extend(self.finish());
                    }
                    return done;
                }
                Step::TakeAndEnd => {
                    open.lines.push(t.to_string());
                    done.extend(self.finish());
                    return done;
                }
                Step::EndBefore => done.extend(self.finish()),
            }
        }
        if let Some(kind) = start_kind(t) {
            self.open = Some(Open {
                kind,
                lines: vec![t.to_string()],
                phase: Phase::Header,
                depth: 0,
            });
            if kind.one_line() {
                done.extend(self.finish());
            }
        }
        done
    }

    /// Ends the open splat, if any (the console closed or the run ended).
    pub fn finish(&mut self) -> Option<Splat> {
        let o = self.open.take()?;
        let function = function_of(&o.lines);
        Some(Splat {
            kind: o.kind,
            function,
            first_line: o.lines[0].clone(),
            lines: o.lines,
        })
    }
}

enum Step {
    Take,
    TakeAndEnd,
    EndBefore,
}

fn continue_open(open: &mut Open, t: &str) -> Step {
    let trimmed = t.trim();
    if trimmed.starts_with("---[ end ") {
        return Step::TakeAndEnd;
    }
    // KASAN and KFENCE reports end with a line of `=`, and only there.
    let ruled = matches!(open.kind, SplatKind::Kasan | SplatKind::Kfence);
    if ruled && trimmed.len() >= 10 && trimmed.chars().all(|c| c == '=') {
        return Step::TakeAndEnd;
    }
    if let Some(kind) = start_kind(t) {
        // `kernel BUG at` and `BUG: kernel NULL pointer dereference` go on
        // with the `Oops:` line of the same report.
        let same_report = kind == SplatKind::Oops
            && open.phase == Phase::Header
            && matches!(open.kind, SplatKind::Bug | SplatKind::Warning);
        if !same_report {
            return Step::EndBefore;
        }
        return Step::Take;
    }
    match open.phase {
        Phase::Header => {
            if trimmed.eq_ignore_ascii_case("call trace:") {
                open.phase = Phase::Trace;
            }
            Step::Take
        }
        Phase::Trace => {
            if trimmed.starts_with("</") && trimmed.ends_with('>') {
                open.depth = open.depth.saturating_sub(1);
                if open.depth == 0 && trimmed == "</TASK>" && open.kind.ends_at_task_end() {
                    return Step::TakeAndEnd;
                }
                return Step::Take;
            }
            if trimmed.starts_with('<') && trimmed.ends_with('>') {
                open.depth += 1;
                return Step::Take;
            }
            // Frames are indented; oopses add their module list after the trace.
            if ruled
                || open.depth > 0
                || t.starts_with(' ')
                || t.starts_with('\t')
                || trimmed.starts_with("Modules linked in")
            {
                Step::Take
            } else {
                Step::EndBefore
            }
        }
    }
}

/// Taint flag letters by bit (Documentation/admin-guide/tainted-kernels.rst).
const TAINT_FLAGS: &[(char, &str)] = &[
    ('P', "proprietary module"),
    ('F', "module force loaded"),
    ('S', "kernel running on an out of specification system"),
    ('R', "module force unloaded"),
    ('M', "machine check"),
    ('B', "bad page"),
    ('U', "taint requested by userspace"),
    ('D', "kernel died recently (oops or BUG)"),
    ('A', "ACPI table overridden"),
    ('W', "kernel issued a warning"),
    ('C', "staging driver loaded"),
    ('I', "firmware bug workaround"),
    ('O', "externally-built module loaded"),
    ('E', "unsigned module loaded"),
    ('L', "soft lockup occurred"),
    ('K', "kernel live patched"),
    ('X', "auxiliary taint"),
    ('T', "built with struct randomization"),
    ('N', "in-kernel test run"),
    ('J', "fwctl userspace used a debug command"),
];

/// `W (kernel issued a warning), L (soft lockup occurred)` for a taint mask.
pub fn describe_taint(mask: u64) -> String {
    let mut parts = Vec::new();
    for (bit, (c, what)) in TAINT_FLAGS.iter().enumerate() {
        if mask & (1 << bit) != 0 {
            parts.push(format!("{c} ({what})"));
        }
    }
    let known = (1u64 << TAINT_FLAGS.len()) - 1;
    if mask & !known != 0 {
        parts.push(format!("unknown bits {:#x}", mask & !known));
    }
    parts.join(", ")
}

/// The splat for taint flags that appeared during the run (`after` has bits
/// `before` had not), or `None` when nothing new appeared.
pub fn taint_splat(before: u64, after: u64) -> Option<Splat> {
    let new = after & !before;
    if new == 0 {
        return None;
    }
    let first = format!(
        "the kernel became tainted during the run: {} (tainted {before:#x} -> {after:#x})",
        describe_taint(new)
    );
    Some(Splat {
        kind: SplatKind::Taint,
        function: None,
        first_line: first.clone(),
        lines: vec![first],
    })
}

#[cfg(test)]
#[path = "splat_tests.rs"]
mod tests;
