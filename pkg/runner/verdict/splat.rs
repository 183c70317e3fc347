//! What the splat gate fails a run on: the crash reports that
//! [`crate::triage`]'s detector finds on the guest console (the same reports,
//! titles and fingerprints `lvh triage` prints), as the runner keeps them, and
//! the one splat triage cannot see: taint flags (`/proc/sys/kernel/tainted`)
//! that appeared during the command with no report on the console.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::triage::{Kind, Report};

/// The kind of a splat: a crash report's kind, or a taint with no report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SplatKind {
    Report(Kind),
    /// A taint flag appeared during the run with no splat on the console.
    Taint,
}

impl SplatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SplatKind::Report(k) => k.as_str(),
            SplatKind::Taint => "taint",
        }
    }

    /// Kinds that mean a CPU or task is stuck: the command may never end, so
    /// the run stops shortly after one is complete instead of waiting.
    pub fn is_stuck(self) -> bool {
        matches!(self, SplatKind::Report(k) if k.is_stuck())
    }

    /// Kinds that never fail a run by themselves: a panic has its own verdict
    /// (and exit code), and the OOM killer is the kernel working as designed.
    pub fn fails_run(self) -> bool {
        !matches!(self, SplatKind::Report(Kind::Panic | Kind::Oom))
    }
}

impl std::fmt::Display for SplatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SplatKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One splat: its kind, title and fingerprint (as `lvh triage` gives them),
/// the function it blames, its first line and all its lines (timestamps
/// and printk caller prefixes removed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Splat {
    pub kind: SplatKind,
    /// `WARNING in lkdtm_WARNING`, `KASAN: slab-use-after-free Read in foo`.
    pub title: String,
    /// 16 hex digits, the same for the same crash on any run or kernel build.
    pub fingerprint: String,
    pub function: Option<String>,
    pub first_line: String,
    pub lines: Vec<String>,
}

impl Splat {
    /// `warning in lkdtm_WARNING`: the kind and the function it blames, what
    /// the first line of the run's error names.
    pub fn summary(&self) -> String {
        match &self.function {
            Some(f) => format!("{} in {f}", self.kind),
            None => self.kind.to_string(),
        }
    }

    /// `WARNING in lkdtm_WARNING [fingerprint 4cda48a19d14d057]`.
    pub fn headline(&self) -> String {
        format!("{} [fingerprint {}]", self.title, self.fingerprint)
    }
}

impl From<Report> for Splat {
    fn from(r: Report) -> Splat {
        Splat {
            kind: SplatKind::Report(r.kind),
            first_line: r.lines.first().cloned().unwrap_or_default(),
            title: r.title,
            fingerprint: r.fingerprint,
            function: r.culprit,
            lines: r.lines,
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

/// The taint letters of a mask: `WL`.
fn taint_letters(mask: u64) -> String {
    let mut s: String = TAINT_FLAGS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, (c, _))| *c)
        .collect();
    let known = (1u64 << TAINT_FLAGS.len()) - 1;
    if mask & !known != 0 {
        s.push_str(&format!("+{:#x}", mask & !known));
    }
    s
}

/// The splat for taint flags that appeared during the run (`after` has bits
/// `before` had not), or `None` when nothing new appeared. Its title names
/// the new flags; its fingerprint depends on them alone.
pub fn taint_splat(before: u64, after: u64) -> Option<Splat> {
    let new = after & !before;
    if new == 0 {
        return None;
    }
    let first = format!(
        "the kernel became tainted during the run: {} (tainted {before:#x} -> {after:#x})",
        describe_taint(new)
    );
    let letters = taint_letters(new);
    let digest = Sha256::digest(format!("taint\n{letters}").as_bytes());
    Some(Splat {
        kind: SplatKind::Taint,
        title: format!("kernel tainted: {letters}"),
        fingerprint: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
        function: None,
        first_line: first.clone(),
        lines: vec![first],
    })
}

#[cfg(test)]
#[path = "splat_tests.rs"]
mod tests;
