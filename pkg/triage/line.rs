//! One console line as the crash parser sees it: without the decorations
//! that logs add in front of the kernel's text (a CI runner's ISO timestamp,
//! syslog's `host kernel:`, a `<4>` log level, printk's `[    1.234567]`
//! timestamp or `dmesg -T`'s date) and with the printk caller
//! (`[  T123]` task or `[    C1]` CPU, from CONFIG_PRINTK_CALLER) taken out
//! as the line's context, which tells interleaved reports apart.

use std::fmt;

/// Who printed a line (CONFIG_PRINTK_CALLER): a task or a CPU in interrupt
/// context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    Task(u32),
    Cpu(u32),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Task(t) => write!(f, "T{t}"),
            Caller::Cpu(c) => write!(f, "C{c}"),
        }
    }
}

/// A console line split into its printk caller (if the log has one) and the
/// kernel's text, leading indentation kept (frames are indented).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub caller: Option<Caller>,
    /// Whether the line carried a printk timestamp (or a caller): it came
    /// through the kernel's log, not from a program's own output.
    pub stamped: bool,
    pub text: &'a str,
}

/// Splits `raw` into caller and text.
pub fn split(raw: &str) -> Line<'_> {
    let mut s = raw.trim_end();
    s = strip_syslog(s);
    s = strip_ci_stamp(s);
    s = strip_level(s);
    let mut stamped = false;
    if let Some(rest) = strip_printk_time(s).or_else(|| stamp_inside(s)) {
        s = rest;
        stamped = true;
    }
    let mut caller = None;
    if let Some((c, rest)) = strip_caller(s) {
        caller = Some(c);
        s = rest;
        stamped = true;
    }
    if stamped {
        s = s.strip_prefix(' ').unwrap_or(s);
    }
    // `kmemleak.verbose=1` prints every line of an object's report behind
    // kmemleak's own prefix; the report is the same as the debugfs file's.
    if let Some(rest) = s.strip_prefix("kmemleak: ") {
        if rest.starts_with("unreferenced object 0x") || rest.starts_with("  ") {
            s = rest;
        }
    }
    Line {
        caller,
        stamped,
        text: s,
    }
}

/// `2024-05-01T12:34:56.1234567Z ` (GitHub Actions and other CI logs).
fn strip_ci_stamp(s: &str) -> &str {
    let b = s.as_bytes();
    let date_like = b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':';
    if !date_like {
        return s;
    }
    match s.find(' ') {
        Some(i) if s[..i].ends_with('Z') || s[..i].contains('+') => &s[i + 1..],
        _ => s,
    }
}

/// `Dec  6 17:51:34 host kernel: ` and `2024-12-06T17:51:34+00:00 host kernel: `
/// (syslog and `journalctl -k`).
fn strip_syslog(s: &str) -> &str {
    let Some(i) = s.find(" kernel: ") else {
        return s;
    };
    let head = &s[..i];
    let words: Vec<&str> = head.split_whitespace().collect();
    let clock = |w: &str| w.len() >= 8 && w.as_bytes()[2] == b':' && w.as_bytes()[5] == b':';
    let classic = words.len() == 4
        && words[0].len() == 3
        && words[0].chars().all(|c| c.is_ascii_alphabetic())
        && words[1].chars().all(|c| c.is_ascii_digit())
        && clock(words[2]);
    let iso = words.len() == 2 && words[0].len() >= 19 && words[0].as_bytes()[10] == b'T';
    if classic || iso {
        &s[i + " kernel: ".len()..]
    } else {
        s
    }
}

/// `<4>` (a raw /dev/kmsg or `dmesg -r` log level).
fn strip_level(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix('<') {
        if let Some(end) = rest.find('>') {
            if end > 0 && end <= 3 && rest[..end].chars().all(|c| c.is_ascii_digit()) {
                return &rest[end + 1..];
            }
        }
    }
    s
}

/// `[    1.234567]` or `[Fri Dec  6 17:51:34 2024]` (`dmesg -T`).
fn strip_printk_time(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(']')?;
    let stamp = rest[..end].trim();
    let seconds = !stamp.is_empty()
        && stamp.contains('.')
        && stamp.chars().all(|c| c.is_ascii_digit() || c == '.');
    let human = stamp.len() >= 20
        && stamp.split_whitespace().count() == 5
        && stamp
            .split_whitespace()
            .nth(3)
            .is_some_and(|t| t.contains(':'));
    (seconds || human).then(|| &rest[end + 1..])
}

/// The kernel's line after other console text on the same line (a login
/// prompt or a program's unfinished line): from a `[    1.234567]` stamp on
/// (printk always prints six decimals).
fn stamp_inside(s: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(i) = s[from..].find('[') {
        let at = from + i;
        if let Some(rest) = strip_printk_time(&s[at..]) {
            let stamp = &s[at + 1..s.len() - rest.len() - 1];
            if stamp
                .rsplit_once('.')
                .is_some_and(|(_, frac)| frac.len() == 6)
            {
                return Some(rest);
            }
        }
        from = at + 1;
    }
    None
}

/// `[  T123]` / `[    C1]` right after the timestamp (or alone).
fn strip_caller(s: &str) -> Option<(Caller, &str)> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(']')?;
    let inner = rest[..end].trim_start();
    let (kind, num) = inner.split_at_checked(1)?;
    let n: u32 = num.parse().ok()?;
    let c = match kind {
        "T" => Caller::Task(n),
        "C" => Caller::Cpu(n),
        _ => return None,
    };
    Some((c, &rest[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decorations_are_stripped_and_callers_kept() {
        let cases: &[(&str, Option<Caller>, bool, &str)] = &[
            ("[    3.013412] WARNING: x\r", None, true, "WARNING: x"),
            ("[    3.016100]  <TASK>", None, true, " <TASK>"),
            (
                "[   12.5][  T123] BUG: y",
                Some(Caller::Task(123)),
                true,
                "BUG: y",
            ),
            (
                "[  100.000001][    C1]  foo+0x1/0x2",
                Some(Caller::Cpu(1)),
                true,
                " foo+0x1/0x2",
            ),
            (
                "[  T87] kernel BUG at x.c:1!",
                Some(Caller::Task(87)),
                true,
                "kernel BUG at x.c:1!",
            ),
            ("<4>[    1.0] Oops", None, true, "Oops"),
            (
                "2024-05-01T12:34:56.1234567Z [    1.000000] WARNING: z",
                None,
                true,
                "WARNING: z",
            ),
            (
                "Dec  6 17:51:34 host kernel: WARNING: CPU: 0",
                None,
                false,
                "WARNING: CPU: 0",
            ),
            (
                "2024-12-06T17:51:34.123+00:00 host kernel:  f+0x1/0x2",
                None,
                false,
                " f+0x1/0x2",
            ),
            ("[Fri Dec  6 17:51:34 2024] BUG: w", None, true, "BUG: w"),
            ("[sh:89] x", None, false, "[sh:89] x"),
            (
                "syzkaller login: [   50.946624] WARNING: CPU: 0",
                None,
                true,
                "WARNING: CPU: 0",
            ),
            (
                "unreferenced object 0xffff (size 64): ",
                None,
                false,
                "unreferenced object 0xffff (size 64):",
            ),
            (
                "[   12.5] kmemleak: unreferenced object 0xffff (size 128):",
                None,
                true,
                "unreferenced object 0xffff (size 128):",
            ),
            (
                "[   12.5] kmemleak:     [<ffffffff81000000>] f+0x1/0x2",
                None,
                true,
                "    [<ffffffff81000000>] f+0x1/0x2",
            ),
            (
                "[   12.5] kmemleak: 1 new suspected memory leaks",
                None,
                true,
                "kmemleak: 1 new suspected memory leaks",
            ),
            ("a [1.5] b", None, false, "a [1.5] b"),
            ("no stamp", None, false, "no stamp"),
            (
                "WARNING: apt does not have a stable CLI",
                None,
                false,
                "WARNING: apt does not have a stable CLI",
            ),
            ("<html>", None, false, "<html>"),
            ("[T] x", None, false, "[T] x"),
        ];
        for (raw, caller, stamped, text) in cases {
            let l = split(raw);
            assert_eq!(
                (l.caller, l.stamped, l.text),
                (*caller, *stamped, *text),
                "{raw:?}"
            );
        }
        assert_eq!(Caller::Task(5).to_string(), "T5");
        assert_eq!(Caller::Cpu(0).to_string(), "C0");
    }
}
