//! What a report is called and how it is recognized again: its culprit (the
//! function to blame, found where its format puts it: the WARN site, the
//! faulting instruction, the sanitizer's line, lockdep's `at:`, else the call
//! trace past reporting machinery and generic helpers), its title in
//! syzkaller's and the mailing lists' conventions, and a fingerprint of its
//! kind, title and top frames that ignores addresses, offsets, timestamps,
//! CPUs and PIDs.

use std::sync::LazyLock;

use regex::Regex;
use sha2::{Digest, Sha256};

use super::culprit::{
    candidates, from_ip_and_trace, from_trace, hung_task, lockdep_at, pick, stall_culprit,
    symbol_after_in, OOM_SKIP,
};
use super::frames::{self, base_name, is_generic, Frame, Role};
use super::header::{Form, Header};
use super::line::Caller;
use super::report::{Kind, Report};

/// Frames past the culprit that go into the fingerprint.
const FINGERPRINT_FRAMES: usize = 2;

/// Builds the report from its lines.
pub fn analyze(
    h: Header,
    lines: Vec<String>,
    start: usize,
    caller: Option<Caller>,
    truncated: bool,
) -> Report {
    let frames = frames::primary_frames(&lines);
    let (prefix, culprit) = title_parts(h.form, &lines, &frames);
    let title = match &culprit {
        Some(c) => format!("{prefix} in {c}"),
        None => prefix,
    };
    let fingerprint = fingerprint(h.kind, &title, culprit.as_deref(), &frames);
    Report {
        title,
        kind: h.kind,
        fingerprint,
        culprit,
        frames,
        lines,
        line: start,
        caller,
        truncated,
    }
}

static WARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^WARNING: (?:CPU: \d+ PID: \d+ at (\S+) (\S+)|(\S+:\d+) at ([^\s,]+)|at (\S+) (\S+))",
    )
    .expect("regex")
});

/// Warnings from well-known helpers get syzkaller's titles, blaming the caller.
const WARN_HELPERS: &[(&str, &str, &[&str])] = &[
    (
        "lib/refcount.c",
        "WARNING: refcount bug",
        &["refcount_", "__refcount_"],
    ),
    (
        "lib/debugobjects.c",
        "WARNING: ODEBUG bug",
        &["debug_", "__debug_"],
    ),
    (
        "mm/usercopy.c",
        "WARNING: bad usercopy",
        &["usercopy_", "__check_", "check_"],
    ),
    ("lib/kobject.c", "WARNING: kobject bug", &["kobject_"]),
    (
        "kernel/locking/lockdep.c",
        "WARNING: locking bug",
        &["lock_", "__lock"],
    ),
    (
        "fs/proc/generic.c",
        "WARNING: proc registration bug",
        &["proc_"],
    ),
];

/// The title without ` in culprit`, and the culprit.
fn title_parts(form: Form, lines: &[String], frames: &[Frame]) -> (String, Option<String>) {
    let first = super::header::unframed(lines.first().map(String::as_str).unwrap_or(""));
    match form {
        Form::Warning => {
            let c = WARN.captures(first);
            let group = |a: usize, b: usize| {
                c.as_ref()
                    .and_then(|c| c.get(a).or_else(|| c.get(b)))
                    .map(|m| m.as_str())
            };
            let src = group(1, 3).or_else(|| c.as_ref().and_then(|c| c.get(5)).map(|m| m.as_str()));
            let func = group(2, 4)
                .or_else(|| c.as_ref().and_then(|c| c.get(6)).map(|m| m.as_str()))
                .map(|f| {
                    frames::symbol_token(f)
                        .map(|(n, _, _)| n)
                        .unwrap_or(f.trim_end_matches("()"))
                });
            if let Some((_, title, skip)) =
                src.and_then(|s| WARN_HELPERS.iter().find(|(file, _, _)| s.starts_with(file)))
            {
                return (title.to_string(), from_trace(frames, skip));
            }
            if src.is_some_and(|s| s.starts_with("mm/"))
                && func.is_some_and(|f| f.contains("malloc"))
            {
                return (
                    "WARNING: kmalloc bug".into(),
                    from_trace(
                        frames,
                        &["kmalloc", "kvmalloc", "kzalloc", "kcalloc", "krealloc"],
                    ),
                );
            }
            let header = func.filter(|f| frames::symbol_token(&format!("{f}+0x0/0x0")).is_some());
            let culprit = pick(header, &[]).or_else(|| from_ip_and_trace(frames, &[]));
            ("WARNING".into(), culprit)
        }
        Form::WarningText => {
            if let Some((_, bad)) = first.split_once(" has bad ") {
                let what = if first.contains("frame pointer") {
                    "frame pointer"
                } else {
                    "regs"
                };
                let value = bad.split(" value").next().unwrap_or(bad);
                return (
                    format!("WARNING: kernel stack {what} has bad {value} value"),
                    None,
                );
            }
            (
                format!(
                    "WARNING: {}",
                    sanitize(first.trim_start_matches("WARNING:"))
                ),
                from_ip_and_trace(frames, &[]),
            )
        }
        Form::Lockdep(title, marker) => {
            // Locks taken by the workqueue code on behalf of any work item.
            let skip: &[&str] = &[
                "rcu_",
                "process_one_work",
                "flush_workqueue",
                "drain_workqueue",
                "destroy_workqueue",
                "__flush_work",
            ];
            let at = if marker.is_empty() {
                vec![]
            } else {
                lockdep_at(lines, marker)
            };
            let culprit = pick(at, skip).or_else(|| from_trace(frames, skip));
            (title.to_string(), culprit)
        }
        Form::KernelBug => {
            let src = first
                .trim_start_matches("kernel BUG at ")
                .trim_end_matches('!');
            let (prefix, skip): (&str, &[&str]) = if src.starts_with("lib/list_debug.c") {
                ("BUG: corrupted list", &["__list_", "list_"])
            } else if src.starts_with("mm/usercopy.c") {
                ("BUG: bad usercopy", &["usercopy_", "__check_", "check_"])
            } else {
                // Many skb helpers BUG_ON() what their caller got wrong.
                ("kernel BUG", &["skb_", "__skb_"])
            };
            match from_ip_and_trace(frames, skip) {
                Some(c) => (prefix.into(), Some(c)),
                None => (format!("kernel BUG at {src}"), None),
            }
        }
        Form::BugText => {
            let what = sanitize(first.trim_start_matches("BUG:"));
            let fixed = ["workqueue lockup", "Bad rss-counter state", "non-zero nr_"];
            let culprit = if fixed.iter().any(|f| what.starts_with(f)) {
                None
            } else {
                from_ip_and_trace(frames, &[])
            };
            (format!("BUG: {what}"), culprit)
        }
        Form::Fault(prefix) => (prefix.into(), from_ip_and_trace(frames, &[])),
        Form::Kasan => kasan(first, lines, frames),
        Form::Kmsan => {
            let what = first.trim_start_matches("BUG: KMSAN: ");
            let what = what.split(" in ").next().unwrap_or(what);
            let culprit = pick(symbol_after_in(first), &["instrument_"])
                .or_else(|| from_trace(frames, &["instrument_"]));
            (format!("KMSAN: {what}"), culprit)
        }
        Form::Kcsan => {
            let rest = first.trim_start_matches("BUG: KCSAN: ");
            let clean: Vec<&str> = rest
                .split_whitespace()
                .map(|w| frames::symbol_token(w).map_or(w, |(n, _, _)| base_name(n)))
                .collect();
            (format!("KCSAN: {}", clean.join(" ")), None)
        }
        Form::Kfence => {
            let rest = first.trim_start_matches("BUG: KFENCE: ");
            let what = rest.split(" in ").next().unwrap_or(rest);
            let culprit = pick(symbol_after_in(first), &[]).or_else(|| from_trace(frames, &[]));
            (format!("KFENCE: {what}"), culprit)
        }
        Form::Ubsan => {
            let rest = first.trim_start_matches("UBSAN: ");
            let (what, src) = rest.split_once(" in ").unwrap_or((rest, ""));
            let what = if what == "Undefined behaviour" {
                "undefined-behaviour"
            } else {
                what
            };
            match from_trace(frames, &[]) {
                Some(c) => (format!("UBSAN: {what}"), Some(c)),
                None => {
                    let file = src.split(':').next().unwrap_or(src);
                    (format!("UBSAN: {what} in {file}"), None)
                }
            }
        }
        Form::SoftLockup => ("BUG: soft lockup".into(), from_ip_and_trace(frames, &[])),
        Form::HardLockup => ("hard lockup".into(), from_ip_and_trace(frames, &[])),
        Form::RcuStall => (
            "INFO: rcu detected stall".into(),
            stall_culprit(lines).or_else(|| from_ip_and_trace(frames, &["rcu_"])),
        ),
        Form::HungTask => ("INFO: task hung".into(), hung_task(frames)),
        Form::Panic => {
            let title = panic_title(first);
            let culprit = if title.contains("stack") {
                let named = first
                    .split_once("corrupted in:")
                    .and_then(|(_, f)| frames::symbol_token(f.trim()).map(|(n, _, _)| n));
                pick(named, &[])
                    .or_else(|| from_trace(frames, &["__stack_chk", "schedule", "retint_kernel"]))
            } else {
                None
            };
            (title, culprit)
        }
        Form::LeakSummary => ("kmemleak: suspected memory leaks".into(), None),
        Form::LeakObject => (
            "memory leak".into(),
            from_trace(
                frames,
                &[
                    "kstrdup",
                    "kstrndup",
                    "kmemdup",
                    "kasprintf",
                    "kvasprintf",
                    "pcpu_",
                    "__alloc_percpu",
                    "mempool_alloc",
                    "kmem_",
                    "alloc_",
                ],
            ),
        ),
        Form::Oom => ("out of memory".into(), from_trace(frames, OOM_SKIP)),
        Form::NetdevWait => (
            "unregister_netdevice: waiting for DEV to become free".into(),
            None,
        ),
    }
}

/// `KASAN: slab-use-after-free Read in foo` from the header and the access line.
fn kasan(first: &str, lines: &[String], frames: &[Frame]) -> (String, Option<String>) {
    let rest = first.trim_start_matches("BUG: KASAN: ");
    let what = rest
        .split(" in ")
        .next()
        .unwrap_or(rest)
        .split(" on address")
        .next()
        .unwrap_or(rest);
    let culprit = pick(symbol_after_in(first), &[]).or_else(|| from_trace(frames, &[]));
    if what.contains("double-free") || what.contains("invalid-free") {
        return ("KASAN: invalid-free".into(), culprit);
    }
    let access = lines.iter().skip(1).take(10).find_map(|l| {
        let t = l.trim();
        ["Read", "Write"].into_iter().find(|a| {
            t.strip_prefix(a)
                .is_some_and(|r| r.starts_with(" of size") || r.starts_with(" at addr"))
        })
    });
    match access {
        Some(a) => (format!("KASAN: {what} {a}"), culprit),
        None => (format!("KASAN: {what}"), culprit),
    }
}

/// `kernel panic: MESSAGE`, without what changes between runs.
fn panic_title(first: &str) -> String {
    let msg = first
        .split_once("not syncing")
        .map_or("", |(_, m)| m)
        .trim_start_matches([':', ' ']);
    if msg.starts_with("stack-protector:") {
        return "kernel panic: stack is corrupted".into();
    }
    if msg.starts_with("corrupted stack end") {
        return "kernel panic: corrupted stack end".into();
    }
    let msg = msg.split(" exitcode=").next().unwrap_or(msg);
    format!("kernel panic: {}", drop_addresses(msg))
}

static HEX: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9a-fA-F]{8,}").expect("regex"));

/// Words of `s` that carry no address or run-specific number.
fn drop_addresses(s: &str) -> String {
    // `comm/pid` and `comm/pid/0x...` (but not `path/file.c`)
    let pid_path =
        |w: &str| w.contains('/') && w.chars().any(|c| c.is_ascii_digit()) && !w.contains('.');
    s.split_whitespace()
        .filter(|w| !HEX.is_match(w) && !pid_path(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The stable start of a free-text header (`scheduling while atomic`,
/// `Bad page state`): up to the first detail (`: `, `, `, ` at `, ...),
/// addresses left out.
fn sanitize(s: &str) -> String {
    let s = s.trim();
    let cut = [
        ": ",
        ", ",
        " at ",
        " on CPU",
        " in process",
        " (",
        "!",
        " - ",
        ". ",
    ]
    .iter()
    .filter_map(|p| s.find(p))
    .chain(s.ends_with(':').then(|| s.len() - 1))
    .min()
    .unwrap_or(s.len());
    drop_addresses(&s[..cut])
}

/// The fingerprint: kind, title and the meaningful frames after the culprit.
fn fingerprint(kind: Kind, title: &str, culprit: Option<&str>, frames: &[Frame]) -> String {
    let trace: Vec<&str> = candidates(frames)
        .iter()
        .filter(|f| f.role == Role::Trace)
        .map(|f| base_name(&f.function))
        .collect();
    // Below the culprit when the trace has it, else from the top.
    let from = culprit
        .and_then(|c| trace.iter().position(|n| *n == c))
        .map_or(0, |i| i + 1);
    let mut key: Vec<&str> = vec![kind.as_str(), title];
    let mut last = culprit.unwrap_or("");
    for &n in &trace[from..] {
        if key.len() >= 2 + FINGERPRINT_FRAMES {
            break;
        }
        if n == last || Some(n) == culprit || is_generic(n) {
            continue;
        }
        key.push(n);
        last = n;
    }
    let digest = Sha256::digest(key.join("\n").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "title_tests.rs"]
mod tests;
