//! `lvh images build|example-config` from the binary: every validation error is
//! reported with file, line and column and exit code 3, and nothing is written
//! to `D/images`; `--dry-run` prints the plan and touches nothing.

use std::path::Path;

use crate::common::{assert_code, lvh, lvh_in, stderr, stdout};

const INVALID_INPUT: i32 = 3;

fn dir_with(config: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("images.json"), config).unwrap();
    d
}

fn build(d: &Path, extra: &[&str]) -> std::process::Output {
    let dir = d.to_str().unwrap();
    let mut args = vec!["images", "build", "--dir", dir];
    args.extend_from_slice(extra);
    lvh_in(d, &args)
}

#[test]
fn example_config_is_valid_build_input() {
    let out = lvh(&["images", "example-config"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    for want in [
        "base.img",
        "k8s.qcow2",
        "passwd -d root",
        "openssh-server",
        "docker.io",
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }
    let d = dir_with(&text);
    let out = build(d.path(), &["--dry-run"]);
    assert_code(&out, 0);
    let plan = stdout(&out);
    assert!(plan.contains("1. base.img"), "{plan}");
    assert!(plan.contains("2. k8s.qcow2"), "{plan}");
    assert!(plan.contains("not built yet"), "{plan}");
    assert!(!d.path().join("images").exists(), "dry run wrote images/");
}

#[test]
fn validation_errors_name_the_place_and_write_nothing() {
    let cases: &[(&str, &str)] = &[
        ("[{\"name\": \"a\",,}]", "images.json:1:15: invalid JSON"),
        (
            "[\n  {\"name\": \"a\", \"color\": \"red\"}\n]",
            "images.json:2:26: unknown key \"color\"",
        ),
        (
            "[{\"name\": \"a\"},\n {\"name\": \"a\"}]",
            "images.json:2:11: duplicate image name \"a\"",
        ),
        (
            "[{\"name\": \"a\", \"actions\": [{\"op\": {}, \"type\": \"explode\"}]}]",
            "unknown action type \"explode\"",
        ),
        (
            "[{\"name\": \"a\", \"actions\": [{\"op\": {\"file\": \"/x\"}, \"type\": \"append-line\"}]}]",
            "append-line op is missing field \"Line\"",
        ),
        (
            "[{\"name\": \"b\", \"parent\": \"nope.img\"}]",
            "parent \"nope.img\" is not defined",
        ),
        (
            "[{\"name\": \"a\", \"parent\": \"b\"}, {\"name\": \"b\", \"parent\": \"a\"}]",
            "parent cycle: a -> b -> a",
        ),
        (
            "[{\"name\": \"a\", \"actions\": [{\"op\": {\"LocalPath\": \"missing-dir\", \"RemoteDir\": \"/\"}, \"type\": \"copy-in\"}]}]",
            "missing-dir does not exist",
        ),
        (
            "[{\"name\": \"a\", \"actions\": [{\"op\": {\"KernelInstallDir\": \"kern\"}, \"type\": \"install-kernel\"}]}]",
            "no vmlinuz-* in",
        ),
    ];
    for (config, want) in cases {
        let d = dir_with(config);
        std::fs::create_dir_all(d.path().join("kern/boot")).unwrap();
        // --strict: the unknown key is an error (without it, a warning: Go ignores it)
        let out = build(d.path(), &["--strict"]);
        assert_code(&out, INVALID_INPUT);
        let err = stderr(&out);
        assert!(
            err.contains(want),
            "config {config}\nwant {want}\ngot {err}"
        );
        assert!(
            !d.path().join("images").exists(),
            "{config}: images/ was created"
        );
    }
}

#[test]
fn missing_config_and_unknown_selection_are_invalid_input() {
    let d = tempfile::tempdir().unwrap();
    let out = build(d.path(), &[]);
    assert_code(&out, INVALID_INPUT);
    assert!(stderr(&out).contains("images.json"), "{}", stderr(&out));

    let d = dir_with("[{\"name\": \"a.img\"}]");
    let out = build(d.path(), &["-i", "zzz", "--dry-run"]);
    assert_code(&out, INVALID_INPUT);
    assert!(stderr(&out).contains("\"zzz\""), "{}", stderr(&out));
    let out = build(d.path(), &["--arch", "sparc"]);
    assert_code(&out, INVALID_INPUT);
    assert!(stderr(&out).contains("sparc"), "{}", stderr(&out));
}

#[test]
fn an_existing_image_can_be_an_undefined_parent() {
    let d = dir_with("[{\"name\": \"child.qcow2\", \"parent\": \"prebuilt.img\"}]");
    std::fs::create_dir(d.path().join("images")).unwrap();
    std::fs::write(d.path().join("images/prebuilt.img"), b"").unwrap();
    let out = build(d.path(), &["--dry-run"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("from prebuilt.img"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn dry_run_selection_builds_descendants_and_missing_ancestors() {
    let d = dir_with(
        r#"[{"name":"a.img"},{"name":"b.qcow2","parent":"a.img"},
            {"name":"c.qcow2","parent":"b.qcow2"},{"name":"z.img"}]"#,
    );
    let out = build(d.path(), &["-i", "b.qcow2", "--dry-run"]);
    assert_code(&out, 0);
    let plan = stdout(&out);
    let line = |name: &str| {
        plan.lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("{name} not in {plan}"))
            .to_string()
    };
    assert!(line("a.img").contains("build"), "{plan}");
    assert!(line("c.qcow2").contains("build"), "{plan}");
    assert!(line("z.img").contains("not selected"), "{plan}");
}

#[test]
fn a_second_build_of_the_same_dir_is_refused() {
    let d = dir_with("[{\"name\": \"a.img\", \"bootable\": false}]");
    std::fs::create_dir(d.path().join("images")).unwrap();
    let _held = lvh::fsutil::Lock::acquire(
        &d.path().join("images/.lvh-images.lock"),
        "test",
        std::time::Duration::ZERO,
    )
    .unwrap();
    let out = build(d.path(), &[]);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("in use by another lvh process"),
        "{}",
        stderr(&out)
    );
    assert!(!d.path().join("images/a.img").exists());
}

/// Images little-vm-helper built (or that were pulled) have no lvh build
/// record: they are reused as they are, and the summary says so; only
/// `--force-rebuild` would rebuild them.
#[test]
fn images_without_a_build_record_are_reused_not_rebuilt() {
    let d = dir_with(
        r#"[{"name": "base.img", "bootable": false},
            {"name": "kind.qcow2", "parent": "base.img"}]"#,
    );
    std::fs::create_dir(d.path().join("images")).unwrap();
    for n in ["base.img", "kind.qcow2"] {
        std::fs::write(
            d.path().join("images").join(n),
            b"built by little-vm-helper",
        )
        .unwrap();
    }
    let out = build(d.path(), &["--dry-run"]);
    assert_code(&out, 0);
    let plan = stdout(&out);
    assert!(plan.contains("(0 to build)"), "{plan}");
    assert!(plan.contains("reused: no build record"), "{plan}");
    let out = build(d.path(), &[]);
    assert_code(&out, 0);
    let summary = stdout(&out);
    for n in ["base.img", "kind.qcow2"] {
        let line = summary
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n} not in\n{summary}"));
        assert!(line.contains("reused: no build record"), "{line}");
        assert_eq!(
            std::fs::read(d.path().join("images").join(n)).unwrap(),
            b"built by little-vm-helper"
        );
    }
    let out = build(
        d.path(),
        &["--dry-run", "--force-rebuild", "-i", "kind.qcow2"],
    );
    assert_code(&out, 0);
    assert!(stdout(&out).contains("(1 to build)"), "{}", stdout(&out));
}

/// Inputs an action reads whole that would block or never end (a FIFO,
/// /dev/zero, a /proc file) are refused at once, before the dry run hashes
/// anything, naming the image, the action, the field and the path.
#[test]
fn inputs_that_never_end_are_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let fifo = fifo.to_str().unwrap();
    for (op, ty, field, path, what) in [
        ("File", "upload", "File", "/dev/zero", "a character device"),
        ("LocalPath", "copy-in", "LocalPath", fifo, "a FIFO"),
        ("TarFile", "tar-in", "TarFile", "/proc/kmsg", "on /proc"),
        ("File", "upload", "File", "/proc/self/status", "on /proc"),
    ] {
        let extra = if ty == "upload" {
            r#","Dest":"/x""#
        } else {
            r#","RemoteDir":"/x""#
        };
        let config = format!(
            r#"[{{"name":"a.img","actions":[{{"op":{{"{op}":"{path}"{extra}}},"type":"{ty}"}}]}}]"#
        );
        std::fs::write(d.path().join("images.json"), config).unwrap();
        let t0 = std::time::Instant::now();
        let out = build(d.path(), &["--dry-run"]);
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{path}");
        assert_code(&out, INVALID_INPUT);
        let e = stderr(&out);
        assert!(
            e.contains("images.json:1:")
                && e.contains(&format!("actions[0] ({ty})"))
                && e.contains(&format!("{field} \"{path}\""))
                && e.contains(what),
            "{path}: {e}"
        );
    }
}

/// Hashing a large input in a dry run stops within a second of SIGTERM.
#[test]
fn sigterm_stops_the_dry_runs_hashing() {
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("big");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(64 << 30).unwrap();
    let config = format!(
        r#"[{{"name":"a.img","actions":[{{"op":{{"File":"{}","Dest":"/x"}},"type":"upload"}}]}}]"#,
        big.display()
    );
    std::fs::write(d.path().join("images.json"), config).unwrap();
    let child = std::process::Command::new(crate::common::lvh_bin())
        .args(["images", "build", "--dry-run", "--dir"])
        .arg(d.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        t0.elapsed()
    );
    assert_code(&out, 130);
}

#[test]
fn hostile_names_and_sizes_are_refused_with_their_place() {
    for (config, want) in [
        (
            r#"[{"name":"a\u0000b"}]"#,
            "images.json:1:10: invalid image name \"a\\0b\"",
        ),
        (
            r#"[{"name":"a\nb"}]"#,
            "images.json:1:10: invalid image name \"a\\nb\"",
        ),
        (
            r#"[{"name":"a","image_size":"18446744073709551615"}]"#,
            "image_size \"18446744073709551615\" is 18446744073709551615 bytes, more than the 16T",
        ),
    ] {
        let d = dir_with(config);
        let out = build(d.path(), &["--dry-run"]);
        assert_code(&out, INVALID_INPUT);
        assert!(stderr(&out).contains(want), "{config}: {}", stderr(&out));
    }
}
