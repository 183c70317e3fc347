//! `--kmemleak` without QEMU: `lvh run --dry-run` boots the kernel with
//! kmemleak's console reports on; it needs `--kernel` and a command; a test
//! file's `"kmemleak"` key and `lvh test --kmemleak` show in `--dry-run`'s
//! lines, and a key that is not a boolean is refused.

use crate::common::{assert_code, lvh_in, stderr, stdout};

fn files() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bzImage"), b"kernel").unwrap();
    std::fs::write(d.path().join("root.img"), vec![0u8; 4096]).unwrap();
    d
}

#[test]
fn run_boots_with_kmemleak_reports_and_needs_a_kernel_and_a_command() {
    let d = files();
    let base = ["run", "--dry-run", "--accel", "tcg", "--image", "root.img"];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        lvh_in(d.path(), &a)
    };
    let o = with(&["--kernel", "bzImage", "--kmemleak", "--", "true"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("kmemleak.verbose=1 init_on_alloc=1"),
        "{}",
        stdout(&o)
    );
    let o = with(&["--kernel", "bzImage", "--", "true"]);
    assert_code(&o, 0);
    assert!(!stdout(&o).contains("kmemleak"), "{}", stdout(&o));
    let o = with(&["--kmemleak", "--", "true"]);
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("--kmemleak: needs --kernel"),
        "{}",
        stderr(&o)
    );
    let o = with(&["--kernel", "bzImage", "--kmemleak"]);
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("--kmemleak: needs a command"),
        "{}",
        stderr(&o)
    );
}

fn write_tests(dir: &std::path::Path, key: &str) {
    std::fs::write(
        dir.join("lvh-tests.json"),
        format!(
            r#"{{"kernels": [{{"name": "k", "path": "bzImage"}}], "images": [{{"name": "i", "path": "root.img"}}],
  "tests": [{{"name": "a", "command": "true"{key}}}, {{"name": "b", "command": "true"}}]}}"#
        ),
    )
    .unwrap();
}

#[test]
fn test_files_and_lvh_test_take_kmemleak() {
    let d = files();
    write_tests(d.path(), r#", "kmemleak": true"#);
    let o = lvh_in(d.path(), &["test", "--dry-run", "--accel", "tcg"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    let l: Vec<&str> = out.lines().collect();
    assert!(
        l[0].starts_with("k/i/a: ") && l[0].contains(" --kmemleak --"),
        "{out}"
    );
    assert!(!l[1].contains("--kmemleak"), "{out}");
    let o = lvh_in(
        d.path(),
        &["test", "--dry-run", "--accel", "tcg", "--kmemleak"],
    );
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o).matches(" --kmemleak --").count(),
        2,
        "{}",
        stdout(&o)
    );
    write_tests(d.path(), r#", "kmemleak": "yes""#);
    let o = lvh_in(d.path(), &["test", "--dry-run", "--accel", "tcg"]);
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(
        e.contains("tests[0].kmemleak") && e.contains("expected true or false"),
        "{e}"
    );
}
