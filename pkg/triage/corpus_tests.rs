//! The parser against a corpus of real report texts (`testdata/`): LKDTM
//! crashes on the test fixture kernels, examples quoted in the kernel's
//! Documentation, syzbot console logs from syzkaller's report tests, the
//! texts the runner's splat gate was first tested on, and logs with no crash
//! in them (a program's own `WARNING:` and `BUG:` lines among them). Every fixture
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
