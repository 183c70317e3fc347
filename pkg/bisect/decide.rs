//! The decisions of a bisection, pure and table-tested: which commit to test
//! next from the marks so far ([`next`]), and what a run's verdict marks a
//! commit ([`mark_of`]). The commits are the candidates between `--good`
//! (exclusive) and `--bad` (inclusive), oldest first; the last is bad.

use serde::{Deserialize, Serialize};

use crate::runner::ResultVerdict;

/// What a step found about a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Good,
    Bad,
    /// It could not be judged (the build or the boot failed).
    Skip,
}

impl std::fmt::Display for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mark::Good => "good",
            Mark::Bad => "bad",
            Mark::Skip => "skip",
        })
    }
}

/// What makes a commit bad (`--bad-on`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadOn {
    /// A kernel splat in the run.
    Splat,
    /// The command's non-zero exit (or its timeout).
    Exit,
    /// Either.
    #[default]
    Any,
}

impl std::str::FromStr for BadOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "splat" => Ok(BadOn::Splat),
            "exit" => Ok(BadOn::Exit),
            "any" => Ok(BadOn::Any),
            _ => Err(format!(
                "invalid value {s:?} for --bad-on: expected splat, exit or any"
            )),
        }
    }
}

impl std::fmt::Display for BadOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadOn::Splat => "splat",
            BadOn::Exit => "exit",
            BadOn::Any => "any",
        })
    }
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Build and run the candidate at this index.
    Test(usize),
    /// The candidate at this index is the first bad commit.
    FirstBad(usize),
    /// Only skipped candidates are left: the first bad commit is one of
    /// these indices (the skipped ones and the first bad after them).
    OneOf(Vec<usize>),
}

/// The next step for `marks` (one per candidate, oldest first; the last is
/// the `--bad` commit and counts as bad whatever its mark). The first bad
/// commit lies after the last good one and at or before the first bad one
/// after it; the untested candidate nearest the middle of that range is
/// tested next (the older one on a tie).
pub fn next(marks: &[Option<Mark>]) -> Next {
    let n = marks.len();
    if n == 0 {
        return Next::OneOf(vec![]);
    }
    let is = |i: usize, m: Mark| i + 1 == n && m == Mark::Bad || marks[i] == Some(m);
    let lo = (0..n)
        .rev()
        .find(|&i| is(i, Mark::Good))
        .map_or(0, |i| i + 1);
    let hi = (lo..n).find(|&i| is(i, Mark::Bad)).unwrap_or(n - 1);
    let mid = lo + (hi - lo) / 2;
    let untested = (lo..hi).filter(|&i| marks[i].is_none());
    match untested.min_by_key(|&i| (i.abs_diff(mid), i)) {
        Some(i) => Next::Test(i),
        None if lo == hi => Next::FirstBad(hi),
        None => Next::OneOf((lo..=hi).collect()),
    }
}

/// What one run says about its commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// `None` when the run could not start (its plan was refused).
    pub verdict: Option<ResultVerdict>,
    pub command_status: Option<i32>,
    /// The title of the first splat that failed the run.
    pub splat: Option<String>,
    pub error: Option<String>,
}

/// A step's mark and why; `None` when the run was interrupted (the step is
/// not recorded and runs again on resume).
pub fn mark_of(r: &RunSummary, bad_on: BadOn) -> Option<(Mark, String)> {
    use ResultVerdict as V;
    let exit_bad = bad_on != BadOn::Splat;
    let splat_bad = bad_on != BadOn::Exit;
    let status = |s: Option<i32>| match s {
        Some(c) => format!("the command exited with {c}"),
        None => "the command did not finish".to_string(),
    };
    let err = || r.error.clone().unwrap_or_else(|| "no message".into());
    Some(match r.verdict {
        None => (Mark::Skip, format!("the run was refused: {}", err())),
        Some(V::Interrupted) => return None,
        Some(V::Passed) => (Mark::Good, "the command exited with 0".into()),
        Some(V::Failed) if exit_bad => (Mark::Bad, status(r.command_status)),
        Some(V::Failed) => (
            Mark::Good,
            format!("{} (no splat; --bad-on splat)", status(r.command_status)),
        ),
        Some(V::Splat) => {
            let title = r.splat.clone().unwrap_or_else(|| "kernel panic".into());
            match r.command_status {
                _ if splat_bad => (Mark::Bad, format!("kernel splat: {title}")),
                Some(0) => (
                    Mark::Good,
                    format!("the command exited with 0 (splat {title} ignored: --bad-on exit)"),
                ),
                Some(c) => (Mark::Bad, format!("the command exited with {c}")),
                None => (
                    Mark::Skip,
                    format!("the command did not finish ({title}; --bad-on exit)"),
                ),
            }
        }
        Some(V::Timeout) if exit_bad => (Mark::Bad, "the command timed out".into()),
        Some(V::Timeout) => (
            Mark::Skip,
            "the command timed out without a splat (--bad-on splat)".into(),
        ),
        Some(V::BootFailure) => (Mark::Skip, format!("the guest did not boot: {}", err())),
        Some(V::InfrastructureFailure) => (Mark::Skip, format!("the run failed: {}", err())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Mark::*;

    fn marks(s: &str) -> Vec<Option<Mark>> {
        s.chars()
            .map(|c| match c {
                'g' => Some(Good),
                'b' => Some(Bad),
                's' => Some(Skip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn next_steps_halve_the_range_and_step_around_skips() {
        let cases: &[(&str, Next)] = &[
            ("", Next::OneOf(vec![])),
            ("b", Next::FirstBad(0)),
            (".b", Next::Test(0)),
            ("gb", Next::FirstBad(1)),
            ("bb", Next::FirstBad(0)),
            ("......b", Next::Test(3)),
            ("...s..b", Next::Test(2)),
            ("..gs..b", Next::Test(4)),
            ("..gsg.b", Next::Test(5)),
            ("..gsgbb", Next::FirstBad(5)),
            ("..gsb.b", Next::OneOf(vec![3, 4])),
            ("....b.b", Next::Test(2)),
            ("ggggggb", Next::FirstBad(6)),
            ("ssssss.", Next::OneOf(vec![0, 1, 2, 3, 4, 5, 6])),
            ("bgb", Next::FirstBad(2)),
            ("......", Next::Test(2)),
        ];
        for (m, want) in cases {
            assert_eq!(next(&marks(m)), *want, "{m}");
        }
    }

    #[test]
    fn a_bisect_of_seven_with_a_broken_middle_takes_four_steps() {
        // The system test's history: candidate 3 does not build, 5 is first bad.
        let truth = |i: usize| match i {
            3 => Skip,
            i if i >= 5 => Bad,
            _ => Good,
        };
        let mut m = vec![None; 7];
        let mut tested = vec![];
        loop {
            match next(&m) {
                Next::Test(i) => {
                    tested.push(i);
                    m[i] = Some(truth(i));
                }
                Next::FirstBad(i) => {
                    assert_eq!(i, 5);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(tested, [3, 2, 4, 5]);
    }

    #[test]
    fn verdicts_become_marks_by_bad_on() {
        use ResultVerdict as V;
        let r = |v: Option<V>, status: Option<i32>| RunSummary {
            verdict: v,
            command_status: status,
            splat: Some("WARNING in f".into()),
            error: Some("e".into()),
        };
        let cases = [
            (r(Some(V::Passed), Some(0)), BadOn::Any, Some(Good)),
            (r(Some(V::Failed), Some(1)), BadOn::Any, Some(Bad)),
            (r(Some(V::Failed), Some(1)), BadOn::Exit, Some(Bad)),
            (r(Some(V::Failed), Some(1)), BadOn::Splat, Some(Good)),
            (r(Some(V::Splat), Some(0)), BadOn::Any, Some(Bad)),
            (r(Some(V::Splat), Some(0)), BadOn::Splat, Some(Bad)),
            (r(Some(V::Splat), Some(0)), BadOn::Exit, Some(Good)),
            (r(Some(V::Splat), Some(2)), BadOn::Exit, Some(Bad)),
            (r(Some(V::Splat), None), BadOn::Exit, Some(Skip)),
            (r(Some(V::Timeout), None), BadOn::Any, Some(Bad)),
            (r(Some(V::Timeout), None), BadOn::Splat, Some(Skip)),
            (r(Some(V::BootFailure), None), BadOn::Any, Some(Skip)),
            (
                r(Some(V::InfrastructureFailure), None),
                BadOn::Any,
                Some(Skip),
            ),
            (r(None, None), BadOn::Any, Some(Skip)),
            (r(Some(V::Interrupted), None), BadOn::Any, None),
        ];
        for (run, on, want) in cases {
            assert_eq!(mark_of(&run, on).map(|m| m.0), want, "{run:?} {on}");
        }
        let (_, why) = mark_of(&r(Some(V::Splat), Some(0)), BadOn::Any).unwrap();
        assert_eq!(why, "kernel splat: WARNING in f");
    }

    #[test]
    fn bad_on_parses() {
        assert_eq!("splat".parse::<BadOn>(), Ok(BadOn::Splat));
        assert!("all".parse::<BadOn>().unwrap_err().contains("--bad-on"));
    }
}
