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

mod culprit;
mod detect;
mod frames;
mod header;
mod line;
mod report;
mod symbolize;
mod title;

pub use detect::{Detector, MAX_REPORT_LINES};
pub use frames::{Frame, Role, SourceLine};
pub use line::Caller;
pub use report::{Kind, Report};
pub use symbolize::{SymbolizeError, Symbolizer};

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
