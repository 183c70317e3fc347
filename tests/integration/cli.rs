//! The command-line surface: every command and flag of little-vm-helper exists
//! (pinned by help snapshots), Go-style booleans parse, unknown input is a usage error.

use crate::common::{assert_code, lvh, stderr, stdout};

/// Every command whose help text is pinned.
const COMMANDS: &[&[&str]] = &[
    &[],
    &["images"],
    &["images", "build"],
    &["images", "example-config"],
    &["images", "pull"],
    &["kernels"],
    &["kernels", "init"],
    &["kernels", "list"],
    &["kernels", "add"],
    &["kernels", "remove"],
    &["kernels", "configure"],
    &["kernels", "raw_configure"],
    &["kernels", "build"],
    &["kernels", "fetch"],
    &["kernels", "catalog"],
    &["kernels", "pull"],
    &["kernels", "cache", "push"],
    &["kernels", "cache", "pull"],
    &["run"],
    &["test"],
    &["triage"],
    &["version"],
];

#[test]
fn help_texts_are_pinned() {
    for cmd in COMMANDS {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push("--help");
        let out = lvh(&args);
        assert_code(&out, 0);
        let name = if cmd.is_empty() {
            "help".to_string()
        } else {
            format!("help_{}", cmd.join("_"))
        };
        insta::assert_snapshot!(name, stdout(&out));
    }
}

#[test]
fn kernels_aliases_work() {
    for alias in ["kernel", "k"] {
        let out = lvh(&[alias, "list", "--help"]);
        assert_code(&out, 0);
        assert!(stdout(&out).contains("--dir"));
    }
}

#[test]
fn go_style_booleans_parse() {
    for flag in [
        "--dry-run",
        "--dry-run=true",
        "--dry-run=false",
        "--merge-steps=false",
    ] {
        let out = lvh(&["images", "build", "--dir", "x", flag, "--help"]);
        assert_code(&out, 0);
    }
}

#[test]
fn unknown_flags_are_usage_errors() {
    let out = lvh(&["run", "--no-such-flag"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--no-such-flag"));
}

#[test]
fn unknown_arch_is_a_usage_error_naming_the_value() {
    let out = lvh(&["kernels", "build", "x", "--dir", ".", "--arch", "sparc"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("sparc"), "{}", stderr(&out));
}
