//! Kernel crashes across a matrix: each test's result keeps the crash reports
//! its run saw (title, kind and fingerprint, as `lvh triage` gives them), and
//! [`group`] folds them by fingerprint into one entry per distinct crash,
//! naming every kernel, test and combination that hit it, so a WARN that
//! fires on twelve kernels is one line, not twelve. Pure functions; the
//! renderers in `report` and `junit` show the groups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::runner::RunResult;

/// One crash a test's run saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    /// `WARNING in lkdtm_WARNING`.
    pub title: String,
    /// `warning`, `kasan`, `soft-lockup`, ..., or `taint`.
    pub kind: String,
    /// 16 hex digits: the same crash on any run, kernel build or machine.
    pub fingerprint: String,
}

/// The crashes of a run that no allowlist entry covers, once per fingerprint.
pub fn of_run(r: &RunResult) -> Vec<Crash> {
    let mut out: Vec<Crash> = Vec::new();
    for s in r.splats.iter().filter(|s| s.allowed_by.is_none()) {
        if out.iter().any(|c| c.fingerprint == s.fingerprint) {
            continue;
        }
        out.push(Crash {
            title: s.title.clone(),
            kind: s.kind.to_string(),
            fingerprint: s.fingerprint.clone(),
        });
    }
    out
}

/// One distinct crash and everything that hit it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashGroup {
    pub title: String,
    pub kind: String,
    pub fingerprint: String,
    /// The kernels it happened on, sorted.
    pub kernels: Vec<String>,
    /// The tests that hit it, sorted.
    pub tests: Vec<String>,
    /// The combinations (`kernel/image/test`) that hit it, sorted.
    pub ids: Vec<String>,
}

/// What [`group`] needs of a test's result.
pub struct Hit<'a> {
    pub id: &'a str,
    pub kernel: &'a str,
    pub test: &'a str,
    pub crashes: &'a [Crash],
}

/// The distinct crashes of `hits`, by fingerprint: the most widespread
/// first, then by title, so the order does not depend on the order of the
/// results (or of the shards they came from).
pub fn group<'a>(hits: impl IntoIterator<Item = Hit<'a>>) -> Vec<CrashGroup> {
    let mut by: BTreeMap<&str, CrashGroup> = BTreeMap::new();
    for h in hits {
        for c in h.crashes {
            let g = by.entry(&c.fingerprint).or_insert_with(|| CrashGroup {
                title: c.title.clone(),
                kind: c.kind.clone(),
                fingerprint: c.fingerprint.clone(),
                kernels: vec![],
                tests: vec![],
                ids: vec![],
            });
            for (list, v) in [
                (&mut g.kernels, h.kernel),
                (&mut g.tests, h.test),
                (&mut g.ids, h.id),
            ] {
                if let Err(i) = list.binary_search_by(|x| x.as_str().cmp(v)) {
                    list.insert(i, v.to_string());
                }
            }
        }
    }
    let mut out: Vec<CrashGroup> = by.into_values().collect();
    out.sort_by(|a, b| {
        b.ids
            .len()
            .cmp(&a.ids.len())
            .then_with(|| a.title.cmp(&b.title))
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    out
}

/// `WARNING in lkdtm_WARNING (warning, 4cda48a19d14d057): 2 runs, kernels k1, k2; tests warn`.
pub fn line(g: &CrashGroup) -> String {
    let runs = g.ids.len();
    format!(
        "{} ({}, {}): {runs} run{}, kernel{} {}; test{} {}",
        g.title,
        g.kind,
        g.fingerprint,
        if runs == 1 { "" } else { "s" },
        if g.kernels.len() == 1 { "" } else { "s" },
        g.kernels.join(", "),
        if g.tests.len() == 1 { "" } else { "s" },
        g.tests.join(", "),
    )
}

/// The end-of-run lines about crashes: nothing when there was none.
pub fn summary(groups: &[CrashGroup]) -> String {
    if groups.is_empty() {
        return String::new();
    }
    let n = groups.len();
    let mut s = format!(
        "{n} distinct kernel crash{}:\n",
        if n == 1 { "" } else { "es" }
    );
    for g in groups {
        s.push_str("  ");
        s.push_str(&line(g));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash(title: &str, fp: &str) -> Crash {
        Crash {
            title: title.into(),
            kind: "warning".into(),
            fingerprint: fp.into(),
        }
    }

    #[test]
    fn the_same_crash_on_two_kernels_is_one_group_naming_both() {
        let w = [crash("WARNING in f", "aaaa")];
        let both = [crash("WARNING in f", "aaaa"), crash("BUG: x in g", "bbbb")];
        let hits = vec![
            Hit {
                id: "k2/i/t1",
                kernel: "k2",
                test: "t1",
                crashes: &w,
            },
            Hit {
                id: "k1/i/t1",
                kernel: "k1",
                test: "t1",
                crashes: &both,
            },
            Hit {
                id: "k1/i/ok",
                kernel: "k1",
                test: "ok",
                crashes: &[],
            },
            Hit {
                id: "k1/j/t2",
                kernel: "k1",
                test: "t2",
                crashes: &w,
            },
        ];
        let g = group(hits);
        assert_eq!(g.len(), 2, "{g:#?}");
        assert_eq!(g[0].fingerprint, "aaaa");
        assert_eq!(g[0].kernels, ["k1", "k2"]);
        assert_eq!(g[0].tests, ["t1", "t2"]);
        assert_eq!(g[0].ids, ["k1/i/t1", "k1/j/t2", "k2/i/t1"]);
        assert_eq!(g[1].ids, ["k1/i/t1"]);
        assert_eq!(
            line(&g[0]),
            "WARNING in f (warning, aaaa): 3 runs, kernels k1, k2; tests t1, t2"
        );
        assert_eq!(
            line(&g[1]),
            "BUG: x in g (warning, bbbb): 1 run, kernel k1; test t1"
        );
        let s = summary(&g);
        assert!(
            s.starts_with("2 distinct kernel crashes:\n  WARNING in f"),
            "{s}"
        );
        assert_eq!(summary(&[]), "");
    }

    #[test]
    fn the_order_does_not_depend_on_the_order_of_results() {
        let a = [crash("A", "1")];
        let b = [crash("B", "2")];
        let hits = |rev: bool| {
            let mut v = vec![
                Hit {
                    id: "k/i/a",
                    kernel: "k",
                    test: "a",
                    crashes: &a[..],
                },
                Hit {
                    id: "k/i/b",
                    kernel: "k",
                    test: "b",
                    crashes: &b[..],
                },
                Hit {
                    id: "l/i/b",
                    kernel: "l",
                    test: "b",
                    crashes: &b[..],
                },
            ];
            if rev {
                v.reverse();
            }
            v
        };
        let g = group(hits(false));
        assert_eq!(g, group(hits(true)));
        assert_eq!(g[0].title, "B", "the most widespread first");
    }
}
