//! What triage finds: a crash report ([`Report`]) and its kind ([`Kind`]).

use serde::Serialize;

use super::frames::Frame;
use super::line::Caller;

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
    /// The log ended (or the report grew past [`MAX_REPORT_LINES`](super::MAX_REPORT_LINES)) before
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
