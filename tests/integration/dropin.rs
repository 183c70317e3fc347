//! Drop-in checks against little-vm-helper's real habits: cobra's flag
//! placement, Go's bool spellings, `--qemu-cmd-print`, `completion`, a quiet
//! death on a closed pipe, the version from git, and the shapes of
//! little-vm-helper-images' `_data` (tests/fixtures/lvh-images) with the
//! Dockerfiles' exact command forms.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{assert_code, lvh, lvh_bin, lvh_in, stderr, stdout};

/// A writable copy of tests/fixtures/lvh-images (the shape of little-vm-helper-images' `_data`).
fn data() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lvh-images");
    let d = tempfile::tempdir().unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(d.path())
        .status()
        .unwrap();
    assert!(st.success());
    d
}

/// A temp dir with an empty "kernel" and a raw "image" (nothing here boots them).
fn run_files() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bzImage"), b"kernel").unwrap();
    std::fs::write(d.path().join("root.img"), vec![0u8; 4096]).unwrap();
    d
}

#[test]
fn leaf_flags_parse_before_the_subcommand_as_cobra_accepts() {
    let d = data();
    let p = d.path();
    // kernel-images' Dockerfile: `lvh kernels --dir . fetch 2>&1 ${KERNEL_VER}`.
    let list = lvh_in(p, &["kernels", "--dir", ".", "list"]);
    assert_code(&list, 0);
    assert!(
        stdout(&list).starts_with("bpf-next      git://"),
        "{}",
        stdout(&list)
    );
    // Parsed, then refused for a reason that is not usage (exit 3, not 2).
    for (args, want) in [
        (
            &["kernels", "--dir", ".", "fetch", "rhel8"][..],
            "kernel \"rhel8\" has no url",
        ),
        (
            &[
                "kernels",
                "--dir",
                ".",
                "configure",
                "--arch",
                "amd64",
                "bpf-next",
            ][..],
            "kernel \"bpf-next\" has not been fetched",
        ),
        (
            &["kernels", "--dir", ".", "build", "--arch", "arm64", "6.12"][..],
            "kernel \"6.12\" has not been fetched",
        ),
        (
            &["k", "--dir=.", "--arch", "amd64", "build", "bpf-net"][..],
            "kernel \"bpf-net\" has not been fetched",
        ),
    ] {
        let out = lvh_in(p, args);
        assert_code(&out, 3);
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let plan = lvh_in(p, &["images", "--dir", ".", "--dry-run", "build"]);
    assert_code(&plan, 0);
    assert!(stdout(&plan).contains("kind.qcow2"), "{}", stdout(&plan));
    // The same forms with `lvh --flag` before the command group.
    let out = lvh_in(p, &["--dir", ".", "kernels", "list"]);
    assert_code(&out, 0);
    // An unknown flag before the subcommand is still a usage error naming it.
    let out = lvh_in(p, &["kernels", "--bogus", "list"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--bogus"), "{}", stderr(&out));
}

#[test]
fn url_less_kernels_load_and_unknown_keys_warn_with_file_line_and_key() {
    let d = data();
    let p = d.path();
    let out = lvh_in(p, &["kernels", "list", "--dir", ".", "-o", "wide"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("rhel8\t\tnot fetched\t-\t-\t-\t-\t-\t-"),
        "{}",
        stdout(&out)
    );
    let e = stderr(&out);
    assert!(
        e.contains("./kernels.json:20:24: unknown key \"comment\""),
        "{e}"
    );
    // Only the command that needs the url fails, and names the kernel.
    let out = lvh_in(p, &["kernels", "fetch", "--dir", ".", "rhel8"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("kernel \"rhel8\" has no url"),
        "{}",
        stderr(&out)
    );
    // --strict makes the unknown keys errors, for kernels.json and images.json.
    let out = lvh_in(p, &["kernels", "list", "--dir", ".", "--strict"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("unknown key \"comment\""),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
    let out = lvh_in(p, &["images", "build", "--dir", ".", "--dry-run"]);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("images.json:39:18: unknown key \"owner\""),
        "{}",
        stderr(&out)
    );
    let out = lvh_in(
        p,
        &["images", "build", "--dir", ".", "--dry-run", "--strict"],
    );
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("unknown key \"owner\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn qemu_cmd_print_prints_on_stdout_and_does_not_start_qemu() {
    let d = run_files();
    let base = ["run", "--kernel", "bzImage", "--image", "root.img"];
    for extra in [
        &["--qemu-cmd-print"][..],
        &["--qemu-cmd-print=1", "--verbose=true"][..],
        &["--qemu-cmd-print=True", "-v", "--daemonize=1"][..],
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let t = std::time::Instant::now();
        let out = lvh_in(d.path(), &args);
        assert_code(&out, 0);
        let s = stdout(&out);
        // An empty "kernel" would make a started QEMU fail; exit 0 at once means it never ran.
        assert!(s.starts_with("qemu-system-x86_64 "), "{extra:?}: {s}");
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(
            s.contains("-daemonize"),
            extra.contains(&"--daemonize=1"),
            "{s}"
        );
    }
    // Go's --verbose=false is no verbosity, and a bad bool is a usage error.
    let args: Vec<&str> = base
        .iter()
        .chain(&["--qemu-cmd-print", "--verbose=false"])
        .copied()
        .collect();
    assert_code(&lvh_in(d.path(), &args), 0);
    let args: Vec<&str> = base
        .iter()
        .chain(&["--qemu-cmd-print", "--verbose=maybe"])
        .copied()
        .collect();
    assert_code(&lvh_in(d.path(), &args), 2);
}

#[test]
fn every_go_bool_spelling_is_accepted() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    assert_code(&lvh_in(p, &["kernels", "init", "--dir", "."]), 0);
    for f in ["0", "f", "F", "FALSE", "false", "False"] {
        let out = lvh_in(
            p,
            &["kernels", "init", "--dir", ".", &format!("--force={f}")],
        );
        assert_code(&out, 3); // kernels.json exists and --force is false
    }
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        let out = lvh_in(
            p,
            &["kernels", "init", "--dir", ".", &format!("--force={t}")],
        );
        assert_code(&out, 0);
    }
    assert_code(&lvh_in(p, &["kernels", "init", "--dir", ".", "--force"]), 0);
    for bad in ["yes", "on", "2"] {
        let out = lvh_in(
            p,
            &["kernels", "init", "--dir", ".", &format!("--force={bad}")],
        );
        assert_code(&out, 2);
        assert!(stderr(&out).contains(bad), "{}", stderr(&out));
    }
}

#[test]
fn kernels_add_copies_no_config_groups_by_default() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    assert_code(&lvh_in(p, &["kernels", "init", "--dir", "."]), 0);
    let url = "git://git.kernel.org/pub/scm/linux/kernel/git/bpf/bpf-next.git";
    let out = lvh_in(p, &["kernels", "add", "--dir", ".", "bpf-next", url]);
    assert_code(&out, 0);
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("kernels.json")).unwrap()).unwrap();
    let k = &conf["kernels"][0];
    assert_eq!(k["name"], "bpf-next");
    assert!(k.get("opts").is_none(), "{k}");
    // the groups are in common_opts, from init
    assert!(conf["common_opts"].as_array().unwrap().len() > 20);
    // explicit groups are still copied
    let out = lvh_in(
        p,
        &[
            "kernels",
            "add",
            "--dir",
            ".",
            "x",
            url,
            "--config-groups",
            "bpf",
            "--just-print-config",
        ],
    );
    assert_code(&out, 0);
    assert!(stdout(&out).contains("CONFIG_BPF"), "{}", stdout(&out));
}

#[test]
fn completion_scripts_for_every_cobra_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef lvh"),
        ("fish", "complete -c lvh"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = lvh(&["completion", shell]);
        assert_code(&out, 0);
        let s = stdout(&out);
        assert!(s.contains(marker), "{shell}: {s}");
        assert!(s.contains("raw_configure"), "{shell}");
    }
    assert_code(&lvh(&["completion", "tcsh"]), 2);
}

/// Runs lvh with a stdout pipe whose reading end is already closed.
fn with_closed_stdout(dir: &Path, args: &[&str]) -> Output {
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    Command::new(lvh_bin())
        .args(args)
        .current_dir(dir)
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_pipe_ends_lvh_quietly_like_go() {
    let d = data();
    let r = run_files();
    let rd = r.path().to_str().unwrap();
    let kernel = format!("{rd}/bzImage");
    let image = format!("{rd}/root.img");
    let cases: Vec<Vec<&str>> = vec![
        vec!["kernels", "list", "--dir", "."],
        vec!["images", "example-config"],
        vec!["images", "build", "--dir", ".", "--dry-run"],
        vec!["version"],
        vec!["completion", "bash"],
        vec!["--help"],
        vec![
            "kernels",
            "add",
            "--dir",
            ".",
            "x",
            "git://h/x.git",
            "--just-print-config",
        ],
        vec![
            "run",
            "--kernel",
            &kernel,
            "--image",
            &image,
            "--qemu-cmd-print",
        ],
    ];
    for args in cases {
        let out = with_closed_stdout(d.path(), &args);
        // Go dies of SIGPIPE on a broken stdout; the shell shows 141.
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?}\n{}",
            out.status,
            stderr(&out)
        );
        let e = stderr(&out);
        assert!(
            !e.contains("panicked") && !e.contains("Broken pipe"),
            "{args:?}: {e}"
        );
    }
    // Through a real shell pipeline, as users write it.
    let sh = format!(
        "{} kernels list --dir . | head -1; echo \"rc=${{PIPESTATUS[0]}}\"",
        lvh_bin()
    );
    let out = Command::new("bash")
        .args(["-c", &sh])
        .current_dir(d.path())
        .env("CI", "true")
        .output()
        .unwrap();
    let s = stdout(&out);
    assert!(s.starts_with("bpf-next "), "{s}");
    assert!(s.contains("rc=0") || s.contains("rc=141"), "{s}");
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn version_prints_the_release_or_the_commit_on_one_line() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let out = lvh(&["version"]);
    assert_code(&out, 0);
    let v = stdout(&out);
    // One line, the bare version as little-vm-helper prints it: no "lvh ".
    assert_eq!(v.lines().count(), 1, "{v}");
    let v = v.trim_end().to_string();
    let release = format!("v{}", env!("CARGO_PKG_VERSION"));
    match git(&["rev-parse", "HEAD"]) {
        // A build of the release tag prints the tag; any other names the commit.
        Some(head) => {
            let tagged = git(&["tag", "--points-at", "HEAD"])
                .is_some_and(|t| t.lines().any(|t| t == release));
            let short = &head[..7];
            assert!(
                v == release && tagged || v.starts_with('v') && v.contains(&format!("-g{short}")),
                "{v:?} (HEAD {head}, release {release})"
            );
            let out = lvh(&["version", "-v"]);
            assert_code(&out, 0);
            let vv = stdout(&out);
            let lines: Vec<&str> = vv.lines().collect();
            assert_eq!(lines[0], v, "{vv}");
            assert!(
                lines[1].starts_with("commit:") && lines[1].contains(&head),
                "{vv}"
            );
            let labels: Vec<&str> = lines[1..]
                .iter()
                .map(|l| l.split(':').next().unwrap())
                .collect();
            assert_eq!(labels, ["commit", "target", "rustc", "guest inits"], "{vv}");
            assert!(vv.contains("rustc 1."), "{vv}");
        }
        None => assert_eq!(v, release),
    }
    let out = lvh(&["--version"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim_end(), format!("lvh {v}"));
}

#[test]
fn little_vm_helper_images_data_with_the_dockerfiles_command_forms() {
    let d = data();
    let p = d.path();
    // dockerfiles/kernel-images: `WORKDIR /data` then `lvh kernels --dir . <cmd> 2>&1 NAME`;
    // `list` prints what little-vm-helper prints (`%-13s %s`: name, URL).
    let out = lvh_in(p, &["kernels", "--dir", ".", "list"]);
    assert_code(&out, 0);
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "bpf-next      git://git.kernel.org/pub/scm/linux/kernel/git/bpf/bpf-next.git?depth=1",
            "bpf-net       git://git.kernel.org/pub/scm/linux/kernel/git/bpf/bpf-next.git?depth=1#net",
            "6.12          git://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git?depth=1#linux-6.12.y",
            "rhel8         ",
        ]
    );
    // lvh's extra columns (is the tree fetched, the last build's record) behind -o wide.
    let out = lvh_in(p, &["kernels", "--dir", ".", "-o", "wide", "list"]);
    assert_code(&out, 0);
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "bpf-next\tgit://git.kernel.org/pub/scm/linux/kernel/git/bpf/bpf-next.git?depth=1\tnot fetched\t-\t-\t-\t-\t-\t-",
            "bpf-net\tgit://git.kernel.org/pub/scm/linux/kernel/git/bpf/bpf-next.git?depth=1#net\tnot fetched\t-\t-\t-\t-\t-\t-",
            "6.12\tgit://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git?depth=1#linux-6.12.y\tnot fetched\t-\t-\t-\t-\t-\t-",
            "rhel8\t\tnot fetched\t-\t-\t-\t-\t-\t-",
        ]
    );
    // dockerfiles/root-images: `lvh images build --dir /data` (here without building)
    let out = lvh_in(
        p,
        &["images", "build", "--dir", p.to_str().unwrap(), "--dry-run"],
    );
    assert_code(&out, 0);
    let s = stdout(&out);
    let base = s.lines().position(|l| l.contains("base.qcow2")).expect(&s);
    let kind = s.lines().position(|l| l.contains("kind.qcow2")).expect(&s);
    assert!(base < kind, "{s}");
    assert!(s.contains("from base.qcow2"), "{s}");
    // dockerfiles/kernel-images-rhel8: `lvh kernels --dir /data raw_configure . rhel8`
    // in a tree without a Makefile: parsed, and refused naming the tree.
    let tree = tempfile::tempdir().unwrap();
    let out = lvh_in(
        tree.path(),
        &[
            "kernels",
            "--dir",
            p.to_str().unwrap(),
            "raw_configure",
            ".",
            "rhel8",
        ],
    );
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("is not a kernel tree"),
        "{}",
        stderr(&out)
    );
}
