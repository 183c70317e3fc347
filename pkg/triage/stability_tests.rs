//! Titles and fingerprints do not change with what differs between two runs
//! of the same bug: a property test that rewrites every fixture many times
//! with other timestamps, addresses, function offsets, CPU numbers and PIDs
//! (printk callers included, consistently, so interleaved reports stay
//! apart) and checks that the reports keep their kinds, titles and
//! fingerprints. A small seeded generator keeps failures reproducible.

use std::collections::HashMap;

use regex::{Captures, Regex};

use super::corpus_tests::fixtures;
use super::*;

/// xorshift64*: deterministic, good enough to pick digits.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.below(16) as u32, 16).expect("digit"))
            .collect()
    }
}

/// One consistent renaming of the numbers of a category (PIDs, CPUs).
#[derive(Default)]
struct Renames(HashMap<String, String>);

impl Renames {
    fn get(&mut self, old: &str, rng: &mut Rng, limit: u64) -> String {
        self.0
            .entry(old.to_string())
            .or_insert_with(|| (1 + rng.below(limit)).to_string())
            .clone()
    }
}

/// `text` as another run of the same bug could print it.
fn perturb(text: &str, seed: u64) -> String {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut pids = Renames::default();
    let mut cpus = Renames::default();
    let stamp = Regex::new(r"\[ *\d+\.\d+\]").expect("regex");
    let caller = Regex::new(r"\[ *([TC])(\d+)\]").expect("regex");
    let offset = Regex::new(r"\+0x[0-9a-f]+/0x[0-9a-f]+").expect("regex");
    let addr = Regex::new(r"\b[0-9a-f]{8,16}\b").expect("regex");
    let pid = Regex::new(r"(PID: |pid |pid:|pid=|task \S+?/|task \S+?:|\[\S+?:|Comm: \S+ /)(\d+)")
        .expect("regex");
    let cpu = Regex::new(r"(CPU: |CPU#|cpu |on cpu |CPU )(\d+)").expect("regex");
    let out = stamp.replace_all(text, |_: &Captures| {
        format!("[{:5}.{:06}]", rng.below(100_000), rng.below(1_000_000))
    });
    let out = caller.replace_all(&out, |c: &Captures| {
        let n = if &c[1] == "T" {
            pids.get(&c[2], &mut rng, 99_999)
        } else {
            cpus.get(&c[2], &mut rng, 63)
        };
        format!("[{:>6}]", format!("{}{n}", &c[1]))
    });
    let out = offset.replace_all(&out, |_: &Captures| {
        let len = 0x10 + rng.below(0x2000);
        format!("+{:#x}/{len:#x}", rng.below(len))
    });
    let out = addr.replace_all(&out, |c: &Captures| rng.hex(c[0].len()));
    let out = pid.replace_all(&out, |c: &Captures| {
        format!("{}{}", &c[1], pids.get(&c[2], &mut rng, 99_999))
    });
    let out = cpu.replace_all(&out, |c: &Captures| {
        format!("{}{}", &c[1], cpus.get(&c[2], &mut rng, 63))
    });
    out.into_owned()
}

fn summary(text: &str) -> Vec<(Kind, String, String)> {
    parse_log(text)
        .into_iter()
        .map(|r| (r.kind, r.title, r.fingerprint))
        .collect()
}

#[test]
fn titles_and_fingerprints_survive_other_addresses_timestamps_cpus_and_pids() {
    let rounds: u64 = std::env::var("LVH_TRIAGE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    let mut checked = 0;
    for f in fixtures() {
        let want = summary(&f.text);
        for seed in 0..rounds {
            let changed = perturb(&f.text, seed ^ checked);
            if changed == f.text {
                continue; // nothing in it changes between runs
            }
            let got = summary(&changed);
            assert_eq!(
                got,
                want,
                "{} with seed {}:\n{changed}",
                f.path.display(),
                seed ^ checked
            );
            checked += 1;
        }
    }
    assert!(checked > 500, "{checked}");
}

#[test]
fn the_generator_changes_what_it_should_and_keeps_the_rest() {
    let line =
        "[   12.345678][  T123] WARNING: CPU: 1 PID: 123 at x.c:1 foo_2+0x12/0x20 ffff888000b7be10";
    let out = perturb(line, 7);
    assert!(
        out.contains("WARNING: CPU: ") && out.contains(" at x.c:1 foo_2+0x"),
        "{out}"
    );
    assert!(
        !out.contains("12.345678") && !out.contains("ffff888000b7be10"),
        "{out}"
    );
    // the task caller and the PID were the same number, and still are
    let t = Regex::new(r"\[ *T(\d+)\].*PID: (\d+)").expect("regex");
    let c = t.captures(&out).expect("caller and pid");
    assert_eq!(&c[1], &c[2], "{out}");
}

#[test]
fn the_same_bug_on_two_kernel_builds_has_one_fingerprint() {
    let all = fixtures();
    let text = |name: &str| {
        all.iter()
            .find(|f| f.path.ends_with(name))
            .unwrap_or_else(|| panic!("{name}"))
            .text
            .clone()
    };
    let a = parse_log(&text("lkdtm/warning-6.12-x86.txt"));
    let b: Vec<Report> = parse_log(&text("lkdtm/multi-6.12-x86.txt"));
    let b = b
        .iter()
        .find(|r| r.title == "WARNING in lkdtm_WARNING")
        .expect("warning");
    assert_eq!(a[0].fingerprint, b.fingerprint);
    assert_ne!(a[0].lines, b.lines, "two different runs");
}
