//! The parser against a corpus of real report texts (`testdata/`): LKDTM
//! crashes on the test fixture kernels, examples quoted in the kernel's
//! Documentation, syzbot console logs from syzkaller's report tests, the
//! splat gate's own fixtures, and logs with no crash in them. Every fixture
//! says where it comes from (`# source:`) and which reports it holds, in
//! order (`# expect: kind | title`); a fixture without expectations must
//! yield nothing.

use std::path::{Path, PathBuf};

use super::*;

pub(super) struct Fixture {
    pub path: PathBuf,
    pub text: String,
    pub expect: Vec<(String, String)>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "txt") {
            out.push(p);
        }
    }
}

/// Every fixture of `testdata/`.
pub(super) fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pkg/triage/testdata");
    let mut paths = Vec::new();
    walk(&dir, &mut paths);
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("fixture");
            let text = String::from_utf8_lossy(&bytes).into_owned();
            assert!(
                text.starts_with("# source: "),
                "{}: a fixture starts with `# source:`",
                path.display()
            );
            let expect = text
                .lines()
                .take_while(|l| l.starts_with('#'))
                .filter_map(|l| l.strip_prefix("# expect: "))
                .map(|e| {
                    let (k, t) = e.split_once(" | ").expect("`# expect: kind | title`");
                    (k.to_string(), t.to_string())
                })
                .collect();
            Fixture { path, text, expect }
        })
        .collect()
}

#[test]
fn every_fixture_yields_exactly_its_reports() {
    let mut failures = Vec::new();
    let all = fixtures();
    assert!(all.len() >= 90, "{} fixtures", all.len());
    for f in &all {
        let got: Vec<(String, String)> = parse_log(&f.text)
            .into_iter()
            .map(|r| (r.kind.to_string(), r.title))
            .collect();
        if got != f.expect {
            failures.push(format!(
                "{}:\n  want {:?}\n  got  {:?}",
                f.path.display(),
                f.expect,
                got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_kind_has_real_texts() {
    let all = fixtures();
    let kinds = [
        Kind::Warning,
        Kind::Bug,
        Kind::Oops,
        Kind::Gpf,
        Kind::NullDeref,
        Kind::PagingRequest,
        Kind::Kasan,
        Kind::Kmsan,
        Kind::Kcsan,
        Kind::Kfence,
        Kind::Ubsan,
        Kind::Lockdep,
        Kind::SoftLockup,
        Kind::RcuStall,
        Kind::HungTask,
        Kind::Oom,
        Kind::MemoryLeak,
        Kind::Panic,
    ];
    for k in kinds {
        let n = all
            .iter()
            .filter(|f| !f.path.to_string_lossy().contains("/gate/"))
            .filter(|f| f.expect.iter().any(|(kind, _)| kind == k.as_str()))
            .count();
        assert!(n > 0, "no real fixture of kind {k}");
    }
}

/// The splat gate (`runner::splat`) is what `lvh run` fails on today: every
/// splat it finds in any fixture must be in one of the parser's reports.
#[test]
fn nothing_the_splat_gate_finds_is_lost() {
    use crate::runner::verdict::splat::{SplatKind, SplatParser};
    let mut checked = 0;
    for f in fixtures() {
        if f.expect.is_empty() {
            continue; // see the_gates_false_alarms_are_no_reports
        }
        let mut gate = SplatParser::new();
        let mut splats = Vec::new();
        for l in f.text.lines().filter(|l| !l.starts_with("# ")) {
            splats.extend(gate.push(l));
        }
        splats.extend(gate.finish());
        let reports = parse_log(&f.text);
        // A panic that only says the report before it was fatal belongs to that report.
        let absorbed = |s: &crate::runner::verdict::splat::Splat| {
            s.kind == SplatKind::Panic
                && !reports.is_empty()
                && super::detect::states_consequence(&s.first_line)
        };
        for s in splats
            .iter()
            .filter(|s| s.kind != SplatKind::Taint && !absorbed(s))
        {
            checked += 1;
            let first = s.first_line.trim();
            let found = reports.iter().any(|r| {
                r.lines
                    .iter()
                    .any(|l| l.trim() == first || l.trim().ends_with(first))
            });
            assert!(
                found,
                "{}: the gate's {} splat {first:?} is in no report ({:?})",
                f.path.display(),
                s.kind,
                reports.iter().map(|r| &r.title).collect::<Vec<_>>()
            );
        }
    }
    assert!(checked >= 70, "{checked} splats checked");
}

/// Logs without a crash in which the splat gate sees one (a program's
/// `WARNING:` line): the parser finds nothing there.
#[test]
fn the_gates_false_alarms_are_no_reports() {
    use crate::runner::verdict::splat::SplatParser;
    let negatives: Vec<Fixture> = fixtures()
        .into_iter()
        .filter(|f| f.expect.is_empty())
        .collect();
    assert!(negatives.len() >= 2);
    let mut alarms = 0;
    for f in &negatives {
        let mut gate = SplatParser::new();
        for l in f.text.lines().filter(|l| !l.starts_with("# ")) {
            alarms += gate.push(l).len();
        }
        alarms += usize::from(gate.finish().is_some());
        assert!(parse_log(&f.text).is_empty(), "{}", f.path.display());
    }
    assert!(
        alarms > 0,
        "the gate raised no false alarm: the negatives test nothing it misses"
    );
}

#[test]
fn reports_are_serialized_with_the_documented_keys() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.path.ends_with("lkdtm/warning-6.12-x86.txt"))
        .expect("the LKDTM warning fixture");
    let r = &parse_log(&f.text)[0];
    let v = serde_json::to_value(r).expect("json");
    for key in [
        "title",
        "kind",
        "fingerprint",
        "culprit",
        "frames",
        "report",
        "line",
        "truncated",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    assert_eq!(v["kind"], "warning");
    assert_eq!(v["culprit"], "lkdtm_WARNING");
    assert_eq!(v["frames"][0]["function"], "lkdtm_WARNING");
    assert_eq!(v["frames"][0]["role"], "ip");
    assert!(v["report"]
        .as_str()
        .expect("report text")
        .starts_with("WARNING: CPU: 0 PID: 41 at drivers/misc/lkdtm/bugs.c:112"));
    assert_eq!(v["fingerprint"].as_str().expect("fingerprint").len(), 16);
}
