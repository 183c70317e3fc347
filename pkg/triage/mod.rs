//! Kernel crash triage: finds the crash reports in a console log (a WARN, a
//! BUG, an Oops, a sanitizer report, a lockdep report, a lockup or stall, a
//! hung task, a memory leak, an OOM kill, a panic), cuts each report's text
//! out of the surrounding log, and gives it a title in the conventions kernel
//! developers search for (syzkaller's and the mailing lists': `WARNING in
//! foo`, `KASAN: slab-use-after-free Read in bar`, `possible deadlock in
//! baz`), a kind, the culprit function and a fingerprint that stays the same
//! across kernels, addresses, timestamps, CPUs and PIDs. With a `vmlinux`
//! carrying DWARF, [`Symbolizer`] adds `file:line` and inlined callers to
//! every frame.
//!
//! Two ways in, one parser: [`Detector`] is fed the console line by line (a
//! live console: it says when a report has begun and hands each one over when
//! it ends), and [`parse_log`] runs it over a whole log.
//!
//! Pure: no I/O except [`Symbolizer::open`], which reads the vmlinux.

use serde::Serialize;

mod culprit;
mod detect;
mod frames;
mod header;
mod line;
mod symbolize;
mod title;

pub use detect::{Detector, MAX_REPORT_LINES};
pub use frames::{Frame, Role};
pub use line::Caller;
pub use symbolize::{SourceLine, SymbolizeError, Symbolizer};

/// What kind of crash a report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `WARNING: CPU: ... at file:line func`: a WARN_ON() fired.
    Warning,
    /// `kernel BUG at`, `BUG: sleeping function called ...` and other BUGs.
    Bug,
    /// An Oops with no more specific header (invalid opcode, divide error, ...).
    Oops,
    /// `general protection fault`.
    Gpf,
    /// A NULL pointer dereference.
    NullDeref,
    /// Any other bad kernel address (`unable to handle page fault`).
    PagingRequest,
    Kasan,
    Kmsan,
    Kcsan,
    Kfence,
    Ubsan,
    /// Lock debugging: possible deadlocks, inconsistent lock state, suspicious RCU usage.
    Lockdep,
    SoftLockup,
    HardLockup,
    RcuStall,
    HungTask,
    /// The OOM killer ran.
    Oom,
    /// kmemleak found unreferenced objects.
    MemoryLeak,
    /// `Kernel panic - not syncing` with no report before it.
    Panic,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Warning => "warning",
            Kind::Bug => "bug",
            Kind::Oops => "oops",
            Kind::Gpf => "gpf",
            Kind::NullDeref => "null-deref",
            Kind::PagingRequest => "paging-request",
            Kind::Kasan => "kasan",
            Kind::Kmsan => "kmsan",
            Kind::Kcsan => "kcsan",
            Kind::Kfence => "kfence",
            Kind::Ubsan => "ubsan",
            Kind::Lockdep => "lockdep",
            Kind::SoftLockup => "soft-lockup",
            Kind::HardLockup => "hard-lockup",
            Kind::RcuStall => "rcu-stall",
            Kind::HungTask => "hung-task",
            Kind::Oom => "oom",
            Kind::MemoryLeak => "memory-leak",
            Kind::Panic => "panic",
        }
    }

    /// Kinds that mean a CPU or task is stuck: the command that triggered one
    /// may never end, so a runner should stop soon after such a report.
    pub fn is_stuck(self) -> bool {
        matches!(
            self,
            Kind::SoftLockup | Kind::HardLockup | Kind::RcuStall | Kind::HungTask
        )
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One crash report found in a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `WARNING in lkdtm_WARNING`, `KASAN: slab-use-after-free Read in foo`.
    pub title: String,
    pub kind: Kind,
    /// 16 hex digits: the kind, the title and the top meaningful frames,
    /// without addresses, offsets, timestamps, CPUs or PIDs.
    pub fingerprint: String,
    /// The function the title blames, if any.
    pub culprit: Option<String>,
    /// The frames that explain the report: the faulting instruction first,
    /// then the report's call trace.
    pub frames: Vec<Frame>,
    /// The report's text alone (timestamps and caller prefixes removed, lines
    /// of other CPUs and programs left out), one entry per line.
    #[serde(rename = "report", serialize_with = "join_lines")]
    pub lines: Vec<String>,
    /// 1-based line of the log where the report starts.
    pub line: usize,
    /// The printk caller (`T123`, `C1`) that printed it, when the log has them.
    #[serde(serialize_with = "caller_str")]
    pub caller: Option<Caller>,
    /// The log ended (or the report grew past [`MAX_REPORT_LINES`]) before
    /// the report's end.
    pub truncated: bool,
}

impl Report {
    /// The report's text, one line per line.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

fn join_lines<S: serde::Serializer>(lines: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&lines.join("\n"))
}

fn caller_str<S: serde::Serializer>(c: &Option<Caller>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_str(&c.to_string()),
        None => s.serialize_none(),
    }
}

/// Every report in a whole log, in the order they start.
pub fn parse_log(text: &str) -> Vec<Report> {
    let mut d = Detector::new();
    let mut out = Vec::new();
    for l in text.lines() {
        out.extend(d.push(l));
    }
    out.extend(d.finish());
    out.sort_by_key(|r| r.line);
    out
}

#[cfg(test)]
#[path = "corpus_tests.rs"]
mod corpus_tests;

#[cfg(test)]
#[path = "stability_tests.rs"]
mod stability_tests;
