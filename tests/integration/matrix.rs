//! `lvh test` without QEMU: `--list` and `--partition` select the right
//! combinations, `--dry-run` shows the equivalent `lvh run` lines, and bad
//! input (a missing kernel or image file, an empty matrix, a duplicate test,
//! a timeout that is not a duration, unknown keys under --strict) is refused
//! with exit code 3 naming file, line and value, before any VM starts.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{assert_code, lvh_in, stderr, stdout};

/// A directory with two "kernels" and an "image" (never booted here) and a
/// matrix file of 2 kernels x 1 image x 3 tests.
fn setup(tests: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("k1"), b"kernel").unwrap();
    std::fs::write(d.path().join("k2"), b"kernel").unwrap();
    std::fs::write(d.path().join("root.img"), vec![0u8; 4096]).unwrap();
    let text = format!(
        r#"{{
  "kernels": [{{"name": "a", "path": "k1"}}, {{"name": "b", "path": "k2"}}],
  "images": [{{"path": "root.img"}}],
  "tests": [{tests}]
}}
"#
    );
    std::fs::write(d.path().join("lvh-tests.json"), text).unwrap();
    d
}

const THREE: &str = r#"{"name": "ok", "command": "true"},
    {"name": "fails", "command": "exit 3", "timeout": "30s"},
    {"name": "slow", "command": ["sleep", "600"], "timeout": 5, "env": {"X": "1"}}"#;

fn lines(s: &str) -> Vec<String> {
    s.lines().map(String::from).collect()
}

#[test]
fn list_shows_every_combination_in_file_order() {
    let d = setup(THREE);
    let out = lvh_in(d.path(), &["test", "--list"]);
    assert_code(&out, 0);
    assert_eq!(
        lines(&stdout(&out)),
        [
            "a/root.img/ok",
            "a/root.img/fails",
            "a/root.img/slow",
            "b/root.img/ok",
            "b/root.img/fails",
            "b/root.img/slow"
        ]
    );
    let out = lvh_in(
        d.path(),
        &["test", "--list", "--filter", "^b/.*/(ok|slow)$"],
    );
    assert_code(&out, 0);
    assert_eq!(lines(&stdout(&out)), ["b/root.img/ok", "b/root.img/slow"]);
}

#[test]
fn partitions_are_disjoint_and_cover_the_matrix() {
    let d = setup(THREE);
    for kind in ["count", "hash"] {
        for n in [1, 2, 4] {
            let mut seen = BTreeSet::new();
            let mut total = 0;
            for k in 1..=n {
                let spec = format!("{kind}:{k}/{n}");
                let out = lvh_in(d.path(), &["test", "--list", "--partition", &spec]);
                assert_code(&out, 0);
                for l in lines(&stdout(&out)) {
                    total += 1;
                    assert!(seen.insert(l.clone()), "{l} twice in {kind}/{n}");
                }
            }
            assert_eq!((total, seen.len()), (6, 6), "{kind}:*/{n}");
        }
    }
    let out = lvh_in(d.path(), &["test", "--list", "--partition", "count:1/2"]);
    assert_eq!(
        lines(&stdout(&out)),
        ["a/root.img/ok", "a/root.img/slow", "b/root.img/fails"]
    );
}

#[test]
fn dry_run_prints_the_equivalent_runs_and_boots_nothing() {
    let d = setup(THREE);
    let out = lvh_in(d.path(), &["test", "--dry-run", "--filter", "slow"]);
    assert_code(&out, 0);
    let s = stdout(&out);
    let l = lines(&s);
    assert_eq!(l.len(), 2, "{s}");
    assert!(
        l[0].starts_with("a/root.img/slow: lvh run --kernel "),
        "{s}"
    );
    assert!(
        l[0].ends_with("--cpu 2 --mem 4G --timeout 5 -- env X=1 sleep 600"),
        "{s}"
    );
}

/// Writes `text` as the matrix file and runs `lvh test` with `extra`.
fn refused(d: &Path, text: &str, extra: &[&str]) -> String {
    std::fs::write(d.join("bad.json"), text).unwrap();
    let mut args = vec!["test", "-f", "bad.json"];
    args.extend_from_slice(extra);
    let out = lvh_in(d, &args);
    assert_code(&out, 3);
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    stderr(&out)
}

#[test]
fn bad_input_is_refused_naming_file_line_and_value() {
    let d = setup(THREE);
    let k = r#""kernels": [{"path": "k1"}]"#;
    let i = r#""images": [{"path": "root.img"}]"#;
    let t = r#""tests": [{"name": "x", "command": "true"}]"#;
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{{\n\"kernels\": [{{\"path\": \"nope/bzImage\"}}],\n{i},\n{t}\n}}"),
            "bad.json:2:22: kernels[0].path \"nope/bzImage\": no such kernel file",
        ),
        (
            format!("{{\n{k},\n\"images\": [{{\"path\": \"gone.qcow2\"}}],\n{t}\n}}"),
            "bad.json:3:21: images[0].path \"gone.qcow2\": no such image file",
        ),
        (
            format!("{{\n{k},\n{i},\n\"tests\": []\n}}"),
            "bad.json:4:10: tests: the matrix is empty",
        ),
        (
            format!(
                "{{\n{k},\n{i},\n\"tests\": [\n{{\"name\": \"x\", \"command\": \"a\"}},\n{{\"name\": \"x\", \"command\": \"b\"}}]\n}}"
            ),
            "bad.json:6:10: tests[1].name \"x\": duplicate name (first used at line 5)",
        ),
        (
            format!(
                "{{\n{k},\n{i},\n\"tests\": [{{\"name\": \"x\", \"command\": \"a\", \"timeout\": \"ten\"}}]\n}}"
            ),
            "bad.json:4:52: tests[0].timeout \"ten\": not a duration",
        ),
    ];
    for (text, want) in cases {
        let e = refused(d.path(), &text, &[]);
        assert!(e.contains(want), "want {want:?} in\n{e}");
    }
    // Unknown keys: a warning with the position, an error with --strict.
    let text = format!(
        "{{\n{k},\n{i},\n\"tests\": [{{\"name\": \"x\", \"command\": \"a\", \"retry\": 2}}]\n}}"
    );
    let e = refused(d.path(), &text, &["--strict", "--list"]);
    assert!(e.contains("bad.json:4:50: unknown key \"retry\""), "{e}");
    let out = lvh_in(d.path(), &["test", "-f", "bad.json", "--list"]);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("warning: bad.json:4:50: unknown key \"retry\""),
        "{}",
        stderr(&out)
    );
    // Flags.
    for (flags, want) in [
        (vec!["--partition", "hash:3/2"], "--partition \"hash:3/2\""),
        (vec!["--filter", "("], "--filter \"(\""),
        (
            vec!["--filter", "nothing-matches"],
            "matches no combination",
        ),
        (vec!["--jobs", "0"], "--jobs \"0\": must be at least 1"),
    ] {
        let mut args = vec!["test"];
        args.extend(flags);
        let out = lvh_in(d.path(), &args);
        assert_code(&out, 3);
        assert!(stderr(&out).contains(want), "{want}: {}", stderr(&out));
    }
    // No file at all.
    let empty = tempfile::tempdir().unwrap();
    let out = lvh_in(empty.path(), &["test"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("lvh-tests.json: no such test file"),
        "{}",
        stderr(&out)
    );
}
