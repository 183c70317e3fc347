//! OCI commands without a registry: help of the new commands, and bad input
//! rejected (exit 3) before any network access.

use crate::common::{assert_code, lvh, stderr};

#[test]
fn push_help_is_pinned() {
    for (name, args) in [
        ("help_images_push", &["images", "push", "--help"][..]),
        ("help_kernels_push", &["kernels", "push", "--help"][..]),
    ] {
        let out = lvh(args);
        assert_code(&out, 0);
        insta::assert_snapshot!(name, crate::common::stdout(&out));
    }
}

#[test]
fn bad_input_is_rejected_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["images", "pull", "quay.io/a/b:c", "--platform", "amd64"],
            "invalid platform \"amd64\"",
        ),
        (
            &["images", "pull", "base.qcow2"],
            "invalid OCI reference \"base.qcow2\"",
        ),
        (&["images", "pull", "cilium/x:y"], "not a registry host"),
        (&["kernels", "pull", "6.6"], "invalid kernel tag \"6.6\""),
        (
            &["kernels", "pull", "6.6-main", "--repo", "not a repo"],
            "invalid OCI reference",
        ),
        (
            &["kernels", "pull", "6.6-main", "-p", "linux"],
            "invalid platform",
        ),
        (
            &["kernels", "catalog", "--repo", "quay.io/x/y:tag"],
            "takes no tag",
        ),
        (
            &[
                "images",
                "push",
                "/nonexistent/base.qcow2",
                "127.0.0.1:1/x:y",
            ],
            "/nonexistent/base.qcow2",
        ),
        (
            &["kernels", "push", "/nonexistent", "127.0.0.1:1/k:6.6-main"],
            "invalid kernel tag|no boot/vmlinuz",
        ),
        (
            &["kernels", "push", "/", "127.0.0.1:1/k:latest"],
            "invalid kernel tag \"latest\"",
        ),
    ];
    for (args, want) in cases {
        let out = lvh(args);
        let err = stderr(&out);
        assert_code(&out, 3);
        let re = regex::Regex::new(want).unwrap();
        assert!(re.is_match(&err), "{args:?}: {err}");
    }
}
