//! The line-by-line report detector: follows a console, opens a report at its
//! first line, decides for every following line whether it belongs to the
//! report (its trace, its register dump, its end marker), to another CPU
//! (told apart by the printk caller when the log has one) or to a program's
//! own output interleaved with it, and hands each report over when it ends.
//! A weak header (`WARNING: text`) counts only once kernel report lines follow
//! it; a panic that a report caused (`Fatal exception`, `panic_on_warn set`)
//! belongs to that report instead of being one of its own.

use super::frames::{self, StackLabel};
use super::header::{self, Form, Header};
use super::line::{self, Caller};
use super::report::{Kind, Report};
use super::title;

/// The most lines one report keeps; a longer one is cut there (and marked
/// truncated).
pub const MAX_REPORT_LINES: usize = 400;

/// How many lines a report may have before its call trace; past that, its
/// header was a lone line and the report ends.
const MAX_HEADER_LINES: usize = 80;

/// How many lines after a weak header must bring a kernel report line.
const CONFIRM_WITHIN: usize = 12;

/// How many lines that do not look like the report's may follow its trace
/// before it counts as ended (they may be another program's output
/// interleaved with a trace that goes on).
const MAX_FOREIGN: usize = 4;

/// How many lines after a trace may be held at all (a register dump in the
/// middle of an old kernel's trace).
const MAX_HELD: usize = 40;

/// How many lines after a report a panic still counts as that report's
/// consequence.
const PANIC_AFTER: usize = 10;

/// Panics that only say that a report before them was fatal.
const CONSEQUENCES: &[&str] = &[
    "Fatal exception",
    "panic_on_warn set",
    "panic_on_oops",
    "hung_task: blocked tasks",
    "softlockup: hung tasks",
    "Hard LOCKUP",
    "RCU Stall",
    "Oops - BUG",
    "System is deadlocked on memory",
    "Out of memory and no killable processes",
    "Aiee, killing interrupt handler!",
    "Attempted to kill init!",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the call trace: register dumps, module lists, lockdep text.
    Header,
    /// In the call trace.
    Trace,
}

#[derive(Debug)]
struct Open {
    header: Header,
    caller: Option<Caller>,
    lines: Vec<String>,
    /// 1-based log line of the header.
    start: usize,
    phase: Phase,
    /// Nesting of x86's `<TASK>`/`<IRQ>`/`<NMI>` sections: inside one,
    /// unindented lines (the user registers of a syscall) still belong.
    depth: usize,
    confirmed: bool,
    /// Lines after the trace that may or may not belong.
    pending: Vec<String>,
    /// An NMI backtrace of other CPUs is part of this report (stalls).
    nmi: bool,
}

impl Open {
    /// Sanitizer reports end at a rule of `=` and take everything before it.
    fn ruled(&self) -> bool {
        matches!(
            self.header.kind,
            Kind::Kasan | Kind::Kmsan | Kind::Kcsan | Kind::Kfence | Kind::Ubsan
        )
    }

    /// Reports with no `---[ end trace` line: they end with their call
    /// trace's `</TASK>`.
    fn ends_at_task_end(&self) -> bool {
        self.header.kind.is_stuck() || self.header.kind == Kind::Lockdep
    }
}

enum Step {
    Take,
    TakeAndEnd,
    /// Not (yet) the report's: held until the report goes on or ends.
    Hold,
    EndBefore,
}

/// Follows a console line by line and yields each report when it ends.
#[derive(Debug, Default)]
pub struct Detector {
    open: Vec<Open>,
    line_no: usize,
    /// The log line where the last report ended (for consequence panics).
    last_end: Option<usize>,
    /// The previous line was `------------[ cut here ]------------` (by this caller).
    cut_here: Option<Option<Caller>>,
}

impl Detector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a report has begun (and is certainly a report) and has not ended.
    pub fn is_open(&self) -> bool {
        self.open.iter().any(|o| o.confirmed)
    }

    /// Feeds one console line; returns the reports it completed.
    pub fn push(&mut self, raw: &str) -> Vec<Report> {
        self.line_no += 1;
        let l = line::split(raw);
        let text = l.text;
        let mut done = Vec::new();
        let at = self.route(l.caller);
        let cut_here = self.cut_here.take();
        // A weak header in the middle of a trace is more likely a program's
        // line interleaved with it than a new report.
        let header = header::classify(text)
            .filter(|h| h.strong || at.is_none_or(|i| self.open[i].phase == Phase::Header));
        if let Some(h) = header {
            if let Some(i) = at {
                if continues(&self.open[i], h) {
                    self.open[i].lines.push(text.to_string());
                    self.open[i].pending.clear();
                    return done;
                }
                done.extend(self.close(i, false));
            }
            if h.kind == Kind::Panic && self.is_consequence(text) {
                return done;
            }
            let confirmed = h.strong || cut_here == Some(l.caller);
            self.open.push(Open {
                header: h,
                caller: l.caller,
                lines: vec![text.to_string()],
                start: self.line_no,
                phase: Phase::Header,
                depth: 0,
                confirmed,
                pending: Vec::new(),
                nmi: false,
            });
            if matches!(h.form, Form::LeakSummary | Form::NetdevWait) {
                let i = self.open.len() - 1;
                done.extend(self.close(i, false));
            }
            return done;
        }
        let Some(i) = at else {
            if text.trim().starts_with("------------[ cut here ]") {
                self.cut_here = Some(l.caller);
            }
            return done;
        };
        let o = &mut self.open[i];
        if !o.confirmed && is_evidence(text) {
            o.confirmed = true;
        }
        if !o.confirmed && o.lines.len() >= CONFIRM_WITHIN {
            self.open.remove(i);
            return done;
        }
        if text.contains("NMI backtrace for cpu") || text.contains("Sending NMI from CPU") {
            o.nmi = true;
        }
        match step(o, text) {
            Step::Take => {
                let pending = std::mem::take(&mut o.pending);
                o.lines
                    .extend(pending.into_iter().filter(|p| looks_like_report(p)));
                o.lines.push(text.to_string());
                if o.lines.len() >= MAX_REPORT_LINES {
                    done.extend(self.close(i, true));
                }
            }
            Step::TakeAndEnd => {
                let pending = std::mem::take(&mut o.pending);
                o.lines
                    .extend(pending.into_iter().filter(|p| looks_like_report(p)));
                o.lines.push(text.to_string());
                done.extend(self.close(i, false));
            }
            Step::Hold => {
                o.pending.push(text.to_string());
                let foreign = o.pending.iter().filter(|p| !looks_like_report(p)).count();
                if foreign > MAX_FOREIGN || o.pending.len() > MAX_HELD {
                    done.extend(self.close(i, false));
                }
            }
            Step::EndBefore => done.extend(self.close(i, false)),
        }
        done
    }

    /// Ends every open report (the console closed or the log ended).
    pub fn finish(&mut self) -> Vec<Report> {
        let mut done = Vec::new();
        while !self.open.is_empty() {
            let o = &self.open[0];
            let cut =
                o.phase == Phase::Header || o.depth > 0 || o.ruled() || o.header.kind == Kind::Oom;
            let one_liner = matches!(o.header.form, Form::Panic) && o.lines.len() == 1;
            done.extend(self.close(0, cut && !one_liner));
        }
        done
    }

    /// The open report a line of `caller` belongs to.
    fn route(&self, caller: Option<Caller>) -> Option<usize> {
        if let Some(i) = self.open.iter().position(|o| o.caller == caller) {
            return Some(i);
        }
        // Stall reports include other CPUs' backtraces, printed from NMIs.
        match caller {
            Some(Caller::Cpu(_)) => self.open.iter().position(|o| o.nmi),
            _ => None,
        }
    }

    /// A panic that only states that the report before it was fatal.
    fn is_consequence(&self, text: &str) -> bool {
        let recent = self
            .last_end
            .is_some_and(|e| self.line_no.saturating_sub(e) <= PANIC_AFTER);
        recent || (self.last_end.is_some() && states_consequence(text))
    }

    fn close(&mut self, i: usize, truncated: bool) -> Option<Report> {
        let o = self.open.remove(i);
        if !o.confirmed {
            return None;
        }
        self.last_end = Some(self.line_no);
        Some(title::analyze(
            o.header, o.lines, o.start, o.caller, truncated,
        ))
    }
}

/// Whether a panic message only says that an earlier report was fatal.
pub(super) fn states_consequence(text: &str) -> bool {
    CONSEQUENCES.iter().any(|c| text.contains(c))
}

/// Whether a header continues the open report instead of starting one: the
/// `Oops:` line after `kernel BUG at` or a NULL dereference, and any panic.
fn continues(o: &Open, h: Header) -> bool {
    if h.kind == Kind::Panic {
        return true;
    }
    // `BUG: memory leak` (syzkaller's) before kmemleak's `unreferenced object`.
    if h.form == Form::LeakObject && o.header.form == Form::LeakObject && o.lines.len() == 1 {
        return o.lines[0].trim_start().starts_with("BUG: memory leak");
    }
    let generic_oops = matches!(
        h.form,
        Form::Fault("Oops") | Form::Fault("Internal error") | Form::Fault("invalid opcode")
    );
    generic_oops
        && o.phase == Phase::Header
        && matches!(
            o.header.kind,
            Kind::Bug | Kind::Warning | Kind::NullDeref | Kind::PagingRequest | Kind::Ubsan
        )
}

/// What `t` means for the open report `o`.
fn step(o: &mut Open, t: &str) -> Step {
    let trimmed = t.trim();
    if trimmed.starts_with("---[ end ") {
        return Step::TakeAndEnd;
    }
    if o.ruled() && trimmed.len() >= 10 && trimmed.chars().all(|c| c == '=') {
        return Step::TakeAndEnd;
    }
    if o.header.kind == Kind::Oom {
        if trimmed.contains("ut of memory: Killed process") {
            return Step::TakeAndEnd;
        }
        return Step::Take;
    }
    match o.phase {
        Phase::Header => {
            if frames::stack_start(t) == Some(StackLabel::CallTrace) {
                o.phase = Phase::Trace;
            } else {
                // kmemleak's object reports are indented below their first line
                let leak_ended =
                    o.header.form == Form::LeakObject && !t.starts_with(' ') && !t.is_empty();
                if leak_ended || (o.lines.len() >= MAX_HEADER_LINES && !o.ruled()) {
                    return Step::EndBefore;
                }
            }
            Step::Take
        }
        Phase::Trace => {
            if trimmed.starts_with("</") && trimmed.ends_with('>') {
                o.depth = o.depth.saturating_sub(1);
                if o.depth == 0 && trimmed == "</TASK>" && o.ends_at_task_end() {
                    return Step::TakeAndEnd;
                }
                return Step::Take;
            }
            if trimmed.starts_with('<') && trimmed.ends_with('>') && !trimmed.contains(' ') {
                o.depth += 1;
                return Step::Take;
            }
            let indented = t.starts_with(' ') || t.starts_with('\t');
            if o.ruled()
                || (indented && !trimmed.is_empty())
                || frames::trace_frame(t, 0).is_some()
                || trimmed.starts_with("Modules linked in")
                || frames::stack_start(t).is_some()
                // inside `<TASK>`: the user registers of the syscall
                || (o.depth > 0 && looks_like_report(t))
            {
                return Step::Take;
            }
            Step::Hold
        }
    }
}

/// A line only the kernel prints in a report: the CPU/task line, a call
/// trace or a frame, the hardware name, the module list, a taint state.
fn is_evidence(t: &str) -> bool {
    let s = t.trim();
    frames::stack_start(t).is_some()
        || frames::trace_frame(t, 0).is_some()
        || frames::ip_frame(t, 0).is_some()
        || (s.starts_with("CPU: ") && s.contains(" PID: "))
        || s.starts_with("Hardware name: ")
        || s.starts_with("Modules linked in:")
        || s.starts_with("---[ end ")
        || s.contains("Not tainted")
        || s.contains(" Tainted: ")
}

/// A line held after a trace that is the report's own (kept when the report
/// goes on): register dumps, `Code:`, the module list, kernel notes.
fn looks_like_report(t: &str) -> bool {
    let s = t.trim();
    let reg = s.split_once(": ").is_some_and(|(k, _)| {
        (2..=4).contains(&k.len())
            && k.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    });
    s.is_empty()
        || reg
        || is_evidence(t)
        || [
            "Code: ",
            "Kernel Offset",
            "note: ",
            "Dumping ftrace",
            "Fixing recursive fault",
            "pstate: ",
            "sp : ",
        ]
        .iter()
        .any(|p| s.starts_with(p))
}

#[cfg(test)]
#[path = "detect_tests.rs"]
mod tests;
