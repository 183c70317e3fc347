//! `lvh run` and `lvh test` speak one vocabulary: every setting a test file
//! shares with `lvh run`'s flags has the same name (each place's spelling
//! an alias in the other), the same value syntax and the same default, one
//! test per key; and the same bad value is refused by both, for the same
//! reason, before anything boots.

use std::path::Path;
use std::process::Output;

use crate::common::{assert_code, lvh_in, stderr, stdout};

/// A kernel, an image and a host directory (never booted here).
fn files() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bzImage"), b"kernel").unwrap();
    std::fs::write(d.path().join("root.img"), vec![0u8; 4096]).unwrap();
    std::fs::create_dir(d.path().join("src")).unwrap();
    d
}

fn with_tcg(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(crate::common::lvh_bin())
        .args(args)
        .current_dir(dir)
        .env("CI", "true")
        .env("LVH_ACCEL", "tcg")
        .env_remove("LVH_LOG")
        .output()
        .unwrap()
}

/// `lvh run --dry-run` with `extra` flags: the QEMU command.
fn run_dry(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        "--dry-run",
        "--kernel",
        "bzImage",
        "--image",
        "root.img",
    ];
    args.extend_from_slice(extra);
    args.extend(["--", "true"]);
    let out = with_tcg(dir, &args);
    assert_code(&out, 0);
    stdout(&out)
}

/// Writes a test file of one test with `keys` (JSON members).
fn write_test(dir: &Path, keys: &str) {
    let keys = if keys.is_empty() {
        String::new()
    } else {
        format!(", {keys}")
    };
    std::fs::write(
        dir.join("lvh-tests.json"),
        format!(
            r#"{{"kernels": [{{"name": "k", "path": "bzImage"}}], "images": [{{"name": "i", "path": "root.img"}}],
  "tests": [{{"name": "t", "command": "true"{keys}}}]}}"#
        ),
    )
    .unwrap();
}

/// `lvh test --dry-run` of one test with `keys` (JSON members): its
/// equivalent `lvh run` line.
fn test_dry(dir: &Path, keys: &str) -> String {
    write_test(dir, keys);
    let out = with_tcg(dir, &["test", "--dry-run"]);
    assert_code(&out, 0);
    let line = stdout(&out);
    assert!(line.starts_with("k/i/t: lvh run "), "{line}");
    line
}

/// The `lvh run` flags a dry-run line of `lvh test` prints, run as such.
fn replay(dir: &Path, line: &str) -> String {
    let args = line.trim().strip_prefix("k/i/t: lvh run ").unwrap();
    let (flags, _) = args.split_once(" -- ").unwrap();
    let flags: Vec<&str> = flags.split(' ').collect();
    let mut all = vec!["run", "--dry-run"];
    all.extend(flags);
    all.extend(["--", "true"]);
    let out = with_tcg(dir, &all);
    assert_code(&out, 0);
    stdout(&out)
}

/// The default of a flag as `lvh run --help` shows it.
fn help_default(flag: &str) -> Option<String> {
    let out = lvh_in(Path::new("."), &["run", "--help"]);
    let help = stdout(&out);
    let at = help.find(&format!("      {flag} "))?;
    let rest = &help[at..];
    let next = rest[1..].find("\n      -").map_or(rest.len(), |i| i + 1);
    let entry = &rest[..next];
    let d = entry.find("[default: ")?;
    Some(entry[d + 10..].split(']').next()?.to_string())
}

#[test]
fn cpus_same_name_alias_and_default() {
    let d = files();
    assert_eq!(help_default("--cpu").as_deref(), Some("2"));
    let line = test_dry(d.path(), "");
    assert!(line.contains(" --cpu 2 "), "the default: {line}");
    assert!(run_dry(d.path(), &[]).contains(" -smp 2,"));
    for key in ["cpus", "cpu"] {
        let line = test_dry(d.path(), &format!(r#""{key}": 3"#));
        assert!(line.contains(" --cpu 3 "), "{key}: {line}");
        assert!(replay(d.path(), &line).contains(" -smp 3,"));
    }
    for flag in ["--cpu", "--cpus"] {
        assert!(
            run_dry(d.path(), &[flag, "3"]).contains(" -smp 3,"),
            "{flag}"
        );
    }
}

#[test]
fn memory_same_name_alias_and_default() {
    let d = files();
    assert_eq!(help_default("--mem").as_deref(), Some("4G"));
    let line = test_dry(d.path(), "");
    assert!(line.contains(" --mem 4G "), "the default: {line}");
    assert!(run_dry(d.path(), &[]).contains(" -m 4G "));
    for key in ["memory", "mem"] {
        let line = test_dry(d.path(), &format!(r#""{key}": "2G""#));
        assert!(line.contains(" --mem 2G "), "{key}: {line}");
        assert!(replay(d.path(), &line).contains(" -m 2G "));
    }
    for flag in ["--mem", "--memory"] {
        assert!(
            run_dry(d.path(), &[flag, "2G"]).contains(" -m 2G "),
            "{flag}"
        );
    }
}

#[test]
fn timeout_same_name_and_durations() {
    let d = files();
    assert_eq!(help_default("--timeout").as_deref(), Some("no limit"));
    assert!(!test_dry(d.path(), "").contains("--timeout"));
    for (value, secs) in [(r#""20m""#, "1200"), ("30", "30"), (r#""1h30m""#, "5400")] {
        let line = test_dry(d.path(), &format!(r#""timeout": {value}"#));
        assert!(line.contains(&format!(" --timeout {secs} ")), "{line}");
        replay(d.path(), &line);
    }
    // `lvh run --timeout 20m` as a test file says it.
    run_dry(d.path(), &["--timeout", "20m"]);
    run_dry(d.path(), &["--boot-timeout", "2m", "--ssh-timeout", "5m"]);
}

#[test]
fn host_mount_same_name_and_alias() {
    let d = files();
    assert_eq!(help_default("--host-mount"), None);
    for key in ["host_mount", "host-mount"] {
        let line = test_dry(d.path(), &format!(r#""{key}": "src""#));
        assert!(line.contains(" --host-mount "), "{key}: {line}");
        assert!(replay(d.path(), &line).contains("mount_tag=host_mount"));
    }
    assert!(run_dry(d.path(), &["--host-mount", "src"]).contains("mount_tag=host_mount"));
}

#[test]
fn cwd_same_name() {
    let d = files();
    assert_eq!(help_default("--cwd"), None);
    let line = test_dry(d.path(), r#""cwd": "/tmp""#);
    assert!(line.contains(" --cwd /tmp "), "{line}");
    replay(d.path(), &line);
}

/// The same bad value refused by `lvh run` and by `lvh test` (with
/// `--dry-run` too when `dry`): exit code 3, the same reason, nothing booted.
fn refused_alike(d: &Path, flags: &[&str], keys: &str, reason: &str, dry: bool) {
    write_test(d, keys);
    let modes: &[&[&str]] = if dry { &[&[], &["--dry-run"]] } else { &[&[]] };
    for extra in modes {
        let mut args = vec!["run", "--kernel", "bzImage", "--image", "root.img"];
        args.extend_from_slice(extra);
        args.extend_from_slice(flags);
        args.extend(["--", "true"]);
        let run = with_tcg(d, &args);
        assert_code(&run, 3);
        assert!(
            stderr(&run).contains(reason),
            "lvh run {extra:?}: {}",
            stderr(&run)
        );
        let mut args = vec!["test"];
        args.extend_from_slice(extra);
        let test = with_tcg(d, &args);
        assert_code(&test, 3);
        assert!(
            stderr(&test).contains(reason),
            "lvh test {extra:?}: {}",
            stderr(&test)
        );
        assert!(stdout(&test).is_empty(), "{}", stdout(&test));
    }
}

#[test]
fn the_same_bad_input_is_refused_alike() {
    let d = files();
    refused_alike(
        d.path(),
        &["--mem", "16M"],
        r#""memory": "16M""#,
        "invalid memory size: lvh needs at least 32M for the guest kernel to boot",
        true,
    );
    refused_alike(
        d.path(),
        &["--mem", "64T"],
        r#""mem": "64T""#,
        "invalid memory size: the host has",
        false,
    );
    refused_alike(
        d.path(),
        &["--cpu", "0"],
        r#""cpus": 0"#,
        "invalid CPU count: expected 1 or more",
        true,
    );
    // A kernel whose configuration lacks what the run needs.
    std::fs::rename(d.path().join("bzImage"), d.path().join("vmlinuz-6.12.0")).unwrap();
    std::fs::write(
        d.path().join("config-6.12.0"),
        "# CONFIG_EXT4_FS is not set\n",
    )
    .unwrap();
    let lacks = "CONFIG_EXT4_FS=y (the root filesystem (ext4); it is not set)";
    let run = with_tcg(
        d.path(),
        &[
            "run",
            "--kernel",
            "vmlinuz-6.12.0",
            "--image",
            "root.img",
            "--",
            "true",
        ],
    );
    assert_code(&run, 3);
    assert!(stderr(&run).contains(lacks), "{}", stderr(&run));
    std::fs::write(
        d.path().join("lvh-tests.json"),
        r#"{"kernels": [{"name": "k", "path": "vmlinuz-6.12.0"}], "images": [{"name": "i", "path": "root.img"}],
  "tests": [{"name": "t", "command": "true"}]}"#,
    )
    .unwrap();
    let test = with_tcg(d.path(), &["test"]);
    assert_code(&test, 3);
    assert!(stderr(&test).contains(lacks), "{}", stderr(&test));
    assert!(stderr(&test).contains("kernels[0]"), "{}", stderr(&test));
}
