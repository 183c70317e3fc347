//! Table tests of `lvh-tests.json` parsing: what is accepted, and that every
//! refusal names file, line, column, field and value.

use super::*;

fn probe_files(p: &Path) -> bool {
    !p.to_string_lossy().contains("missing")
}

fn probe_dirs(p: &Path) -> bool {
    !p.to_string_lossy().contains("missing")
}

fn parse_text(text: &str) -> Result<(Matrix, Vec<String>), String> {
    parse(
        text,
        Path::new("t.json"),
        Path::new("/base"),
        &probe_files,
        &probe_dirs,
    )
    .map_err(|e| e.to_string())
}

const GOOD: &str = r#"{
  "kernels": [
    {"name": "local", "path": "k/bzImage"},
    {"kernel": "bpf-next"},
    {"pull": "quay.io/lvh-images/kernel-images:6.6-main"}
  ],
  "images": [
    {"path": "/abs/base.qcow2"},
    {"name": "kind", "pull": "quay.io/lvh-images/kind:main#kind.qcow2"}
  ],
  "tests": [
    {"name": "uname", "command": "uname -a"},
    {"name": "argv", "command": ["./run", "-v"], "timeout": "5m", "cpus": 2,
     "memory": "2G", "host_mount": "src", "cwd": "sub", "env": {"A": "1", "B_2": 3}},
    {"name": "quick", "command": "true", "timeout": 30}
  ],
  "skip": [{"kernel": "6.6-main", "test": "argv", "reason": "too old"}]
}"#;

#[test]
fn a_full_file_parses_into_checked_values() {
    let (m, w) = parse_text(GOOD).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let names: Vec<&str> = m.kernels.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["local", "bpf-next", "6.6-main"]);
    assert_eq!(
        m.kernels[0].source,
        KernelSource::Path("/base/k/bzImage".into())
    );
    assert_eq!(m.kernels[1].source, KernelSource::Built("bpf-next".into()));
    assert_eq!(m.images[0].name, "base.qcow2");
    assert_eq!(
        m.images[0].source,
        ImageSource::Path("/abs/base.qcow2".into())
    );
    assert_eq!(m.images[1].name, "kind");
    let t = &m.tests[0];
    assert_eq!(t.argv, ["sh", "-c", "uname -a"]);
    // `lvh run`'s defaults: the same vocabulary.
    assert_eq!((t.cpus, t.memory.bytes(), t.timeout), (2, 4 << 30, None));
    let t = &m.tests[1];
    assert_eq!(t.argv, ["./run", "-v"]);
    assert_eq!(t.timeout, Some(Duration::from_secs(300)));
    assert_eq!((t.cpus, t.memory.bytes()), (2, 2 << 30));
    assert_eq!(t.host_mount.as_deref(), Some(Path::new("/base/src")));
    assert_eq!(t.cwd.as_deref(), Some("sub"));
    assert_eq!(t.env["B_2"], "3");
    assert_eq!(m.tests[2].timeout, Some(Duration::from_secs(30)));
    assert_eq!(m.skip[0].kernel.as_deref(), Some("6.6-main"));
}

#[test]
fn unknown_keys_are_warnings_with_line_and_column() {
    let text = "{\n  \"kernels\": [{\"path\": \"k\", \"arch\": \"x\"}],\n  \"images\": [{\"path\": \"i\"}],\n  \"tests\": [{\"name\": \"a\", \"command\": \"true\", \"retries\": 3}],\n  \"extra\": 1\n}";
    let (_, w) = parse_text(text).unwrap();
    assert_eq!(
        w,
        [
            "t.json:2:37: unknown key \"arch\"",
            "t.json:4:57: unknown key \"retries\"",
            "t.json:5:12: unknown key \"extra\""
        ]
    );
}

#[test]
fn bad_input_names_file_line_field_and_value() {
    let wrap = |kernels: &str, images: &str, tests: &str, extra: &str| {
        format!(
            "{{\n\"kernels\": [{kernels}],\n\"images\": [{images}],\n\"tests\": [{tests}]{extra}\n}}"
        )
    };
    let k = r#"{"path": "k"}"#;
    let i = r#"{"path": "i"}"#;
    let t = r#"{"name": "a", "command": "true"}"#;
    let cases: Vec<(String, &str)> = vec![
        (
            wrap(r#"{"path": "missing/bzImage"}"#, i, t, ""),
            "t.json:2:22: kernels[0].path \"missing/bzImage\": no such kernel file /base/missing/bzImage",
        ),
        (
            wrap(k, r#"{"path": "missing.qcow2"}"#, t, ""),
            "t.json:3:21: images[0].path \"missing.qcow2\": no such image file",
        ),
        (wrap("", i, t, ""), "t.json:2:12: kernels: the matrix is empty"),
        (wrap(k, i, "", ""), "t.json:4:10: tests: the matrix is empty"),
        (
            wrap(k, i, &format!("{t}, {t}"), ""),
            "t.json:4:54: tests[1].name \"a\": duplicate name (first used at line 4)",
        ),
        (
            wrap(k, i, r#"{"name": "a", "command": "true", "timeout": "soon"}"#, ""),
            "t.json:4:55: tests[0].timeout \"soon\": not a duration",
        ),
        (
            wrap(k, i, r#"{"name": "a", "command": "true", "timeout": -3}"#, ""),
            "tests[0].timeout \"-3\": not a duration",
        ),
        (
            wrap(k, i, r#"{"name": "a", "command": []}"#, ""),
            "tests[0].command \"[]\": expected a shell command string",
        ),
        (wrap(k, i, r#"{"name": "a"}"#, ""), "test \"a\" needs a \"command\""),
        (wrap(k, i, r#"{"command": "x"}"#, ""), "a test needs a \"name\""),
        (
            wrap(k, i, r#"{"name": "a/b", "command": "x"}"#, ""),
            "tests[0].name \"a/b\": a name must be non-empty and without '/'",
        ),
        (
            wrap(k, i, r#"{"name": "a", "command": "x", "cpus": -1}"#, ""),
            "tests[0].cpus \"-1\": expected a whole number of CPUs",
        ),
        (
            wrap(k, i, r#"{"name": "a", "command": "x", "memory": "lots"}"#, ""),
            "tests[0].memory \"lots\": invalid memory size: expected a positive number",
        ),
        (
            wrap(k, i, r#"{"name": "a", "command": "x", "mem": "1G", "memory": "2G"}"#, ""),
            "t.json:4:48: tests[0].mem: tests[0].memory and tests[0].mem are the same setting: give one",
        ),
        (
            wrap(k, i, r#"{"name": "a", "command": "x", "host_mount": "missing"}"#, ""),
            "tests[0].host_mount \"missing\": /base/missing is not a directory",
        ),
        (
            wrap(k, i, r#"{"name": "a", "command": "x", "env": {"1X": "y"}}"#, ""),
            "tests[0].env.1x \"1X\": not a valid variable name",
        ),
        (
            wrap(r#"{"path": "k", "kernel": "x"}"#, i, t, ""),
            "kernels[0]: needs exactly one of path, kernel, pull",
        ),
        (
            wrap(r#"{"pull": "not a ref"}"#, i, t, ""),
            "kernels[0].pull \"not a ref\": expected an OCI reference REPO:TAG",
        ),
        (
            wrap(k, r#"{"pull": "nohost"}"#, t, ""),
            "images[0].pull \"nohost\": expected an OCI reference",
        ),
        (
            wrap(k, i, t, r#", "skip": [{"kernel": "nope"}]"#),
            "skip[0].kernel \"nope\": no kernel of that name in the matrix",
        ),
        (
            wrap(k, i, t, r#", "skip": [{"reason": "x"}]"#),
            "skip[0]: a skip needs at least one of kernel, image, test",
        ),
        (
            wrap(k, i, t, r#", "skip": {}"#),
            "skip \"{}\": expected an array",
        ),
        ("[1]".into(), "t.json:1:1: expected a JSON object"),
        ("{\n \"kernels\": [,]}".into(), "t.json:2:14: invalid JSON"),
    ];
    for (text, want) in cases {
        let e = parse_text(&text).unwrap_err();
        assert!(e.contains(want), "want {want:?}\n got {e:?}\nin {text}");
    }
}

#[test]
fn the_example_file_is_valid() {
    let text = include_str!("../../configs/lvh-tests.json");
    let (m, w) = parse(
        text,
        Path::new("configs/lvh-tests.json"),
        Path::new("."),
        &|_| true,
        &|_| true,
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(m.kernels.len() >= 2 && !m.images.is_empty() && m.tests.len() >= 3);
    assert!(!super::super::expand::expand(&m).is_empty());
}

/// Each key a test shares with `lvh run` takes the flag's spelling too.
#[test]
fn the_flags_spellings_are_aliases() {
    let one = |test: &str| -> TestSpec {
        let text = format!(
            r#"{{"kernels": [{{"path": "k"}}], "images": [{{"path": "i"}}], "tests": [{test}]}}"#
        );
        let (m, w) = parse_text(&text).unwrap();
        assert!(w.is_empty(), "{w:?}");
        m.tests[0].clone()
    };
    let t = one(r#"{"name": "a", "command": "x", "cpu": 3, "mem": "2G", "host-mount": "src"}"#);
    assert_eq!((t.cpus, t.memory.bytes()), (3, 2 << 30));
    assert_eq!(t.host_mount.as_deref(), Some(Path::new("/base/src")));
    let t = one(r#"{"name": "a", "command": "x", "timeout": "20m"}"#);
    assert_eq!(t.timeout, Some(Duration::from_secs(1200)));
}
