//! `lvh kernels` against small generated git repositories: init, add, fetch
//! (branch, depth), list, update after a new commit, remove, and bad input.
//! No network: every source is a local repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{assert_code, lvh_in, stderr, stdout};
pub(crate) use crate::fake_kernel::{fake_kernel, git};

/// A repository with branch `trunk` (its HEAD, not `master`) and branch `dev`.
fn source(root: &Path) -> PathBuf {
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "-b", "trunk"]);
    commit(&src, "Makefile", "one");
    commit(&src, "a", "two");
    git(&src, &["branch", "dev"]);
    git(&src, &["checkout", "-q", "dev"]);
    commit(&src, "dev-only", "dev");
    git(&src, &["checkout", "-q", "trunk"]);
    src
}

fn commit(src: &Path, file: &str, msg: &str) -> String {
    std::fs::write(src.join(file), msg).unwrap();
    git(src, &["add", "-A"]);
    git(src, &["commit", "-q", "-m", msg]);
    git(src, &["rev-parse", "HEAD"])
}

pub(crate) fn ok(dir: &Path, args: &[&str]) -> String {
    let o = lvh_in(dir, args);
    assert_code(&o, 0);
    stdout(&o)
}

fn conf(root: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root.join("d/kernels.json")).unwrap()).unwrap()
}

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
fn init_add_fetch_update_list_remove() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let src = source(root);
    ok(root, &["kernels", "init", "--dir", "d"]);
    let c = conf(root);
    assert_eq!(c["kernels"], serde_json::json!([]));
    assert_eq!(
        c["common_opts"][0],
        serde_json::json!(["--enable", "CONFIG_LOCALVERSION_AUTO"])
    );

    // A relative path URL is stored absolute; the default branch is the remote's HEAD.
    ok(
        root,
        &[
            "kernels",
            "add",
            "k",
            "src",
            "--dir",
            "d",
            "--config-groups",
            "runner",
        ],
    );
    let url = conf(root)["kernels"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(Path::new(&url), src.canonicalize().unwrap());
    ok(root, &["kernels", "fetch", "k", "--dir", "d"]);
    let tree = root.join("d/kernels/k");
    assert_eq!(
        git(&tree, &["rev-parse", "HEAD"]),
        git(&src, &["rev-parse", "trunk"])
    );
    assert_eq!(git(&tree, &["rev-parse", "--abbrev-ref", "HEAD"]), "lvh-k");
    assert!(root.join("d/kernels/git/HEAD").is_file());

    // A new commit upstream: fetch fast-forwards the worktree.
    let new = commit(&src, "b", "three");
    let o = lvh_in(root, &["kernels", "fetch", "k", "--dir", "d"]);
    assert_code(&o, 0);
    assert!(stderr(&o).contains("updated"), "{}", stderr(&o));
    assert_eq!(git(&tree, &["rev-parse", "HEAD"]), new);
    assert_eq!(std::fs::read_to_string(tree.join("b")).unwrap(), "three");
    let o = lvh_in(root, &["kernels", "fetch", "k", "--dir", "d"]);
    assert!(stderr(&o).contains("up to date"), "{}", stderr(&o));

    // #branch and ?depth=N.
    ok(
        root,
        &[
            "kernels",
            "add",
            "kdev",
            &format!("file://{}#dev", src.display()),
            "--dir",
            "d",
            "--fetch",
        ],
    );
    assert!(root.join("d/kernels/kdev/dev-only").is_file());
    ok(
        root,
        &[
            "kernels",
            "add",
            "shallow",
            &format!("{}?depth=1#dev", src.display()),
            "--dir",
            "d",
            "--fetch",
        ],
    );
    let sh = root.join("d/kernels/shallow");
    assert_eq!(git(&sh, &["rev-list", "--count", "HEAD"]), "1");
    assert!(sh.join("dev-only").is_file());
    git(&src, &["checkout", "-q", "dev"]);
    let dev_new = commit(&src, "dev2", "dev2");
    git(&src, &["checkout", "-q", "trunk"]);
    ok(root, &["kernels", "fetch", "shallow", "--dir", "d"]);
    assert_eq!(git(&sh, &["rev-parse", "HEAD"]), dev_new);
    assert!(sh.join("dev2").is_file());

    let list = ok(root, &["kernels", "list", "--dir", "d"]);
    let names: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, vec!["k", "kdev", "shallow"]);

    // remove: the tree, branch and entry go; the shared repository stays.
    ok(root, &["kernels", "remove", "k", "--dir", "d"]);
    assert!(!tree.exists());
    let branches = git(&root.join("d/kernels/git"), &["branch", "--list"]);
    assert!(
        !branches.contains("lvh-k\n") && !branches.ends_with("lvh-k"),
        "{branches}"
    );
    assert!(branches.contains("lvh-kdev"), "{branches}");
    assert!(root.join("d/kernels/git/HEAD").is_file());
    let c = conf(root);
    assert_eq!(c["kernels"].as_array().unwrap().len(), 2);
    ok(root, &["kernels", "remove", "shallow", "--dir", "d"]);
    assert!(!sh.exists());
}

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
fn just_print_config_prints_and_saves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    source(root);
    ok(root, &["kernels", "init", "--dir", "d"]);
    let before = std::fs::read(root.join("d/kernels.json")).unwrap();
    let out = ok(
        root,
        &[
            "kernels",
            "add",
            "k",
            "src",
            "--dir",
            "d",
            "--config-groups",
            "virtio",
            "--just-print-config",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "k");
    assert_eq!(v["opts"].as_array().unwrap().len(), 9);
    assert_eq!(std::fs::read(root.join("d/kernels.json")).unwrap(), before);
}

#[test]
fn init_refuses_to_overwrite_unless_forced_and_backs_up() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    ok(root, &["kernels", "init", "--dir", "d"]);
    let o = lvh_in(root, &["kernels", "init", "--dir", "d"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    ok(
        root,
        &[
            "kernels",
            "init",
            "--dir",
            "d",
            "--force",
            "--backup-conf",
            "--config-groups",
            "bpf",
        ],
    );
    let files: Vec<String> = std::fs::read_dir(root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files.iter().any(|f| f.starts_with("kernels.json.2")),
        "{files:?}"
    );
    assert_eq!(conf(root)["common_opts"].as_array().unwrap().len(), 15);
}

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
fn bad_input_is_refused_with_a_clear_message() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    source(root);
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "kernels",
                "init",
                "--dir",
                "d",
                "--config-groups",
                "basic,nope",
            ],
            "unknown config group \"nope\" (known: basic, bpf",
        ),
        (
            &["kernels", "add", "git", "src", "--dir", "d"],
            "\"git\" is reserved",
        ),
        (
            &["kernels", "add", "k", "nowhere", "--dir", "d"],
            "is not a git repository",
        ),
        (
            &["kernels", "add", "k", "ftp://h/x", "--dir", "d"],
            "unsupported scheme",
        ),
        (
            &["kernels", "add", "k", "src?depth=0", "--dir", "d"],
            "invalid depth",
        ),
        (
            &["kernels", "fetch", "nope", "--dir", "d"],
            "kernel \"nope\" is not in",
        ),
        (
            &["kernels", "configure", "nope", "--dir", "d"],
            "kernel \"nope\" is not in",
        ),
        (
            &["kernels", "remove", "nope", "--dir", "d"],
            "kernel \"nope\" is not in",
        ),
    ];
    ok(root, &["kernels", "init", "--dir", "d"]);
    ok(root, &["kernels", "add", "k", "src", "--dir", "d"]);
    for (args, want) in cases {
        let before = std::fs::read(root.join("d/kernels.json")).unwrap();
        let o = lvh_in(root, args);
        assert_code(&o, 3);
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
        assert_eq!(
            std::fs::read(root.join("d/kernels.json")).unwrap(),
            before,
            "{args:?}"
        );
    }
    let o = lvh_in(root, &["kernels", "add", "k", "src", "--dir", "d"]);
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("kernel \"k\" already exists"),
        "{}",
        stderr(&o)
    );
    // configure before fetch names the missing tree
    let o = lvh_in(root, &["kernels", "configure", "k", "--dir", "d"]);
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("has not been fetched"),
        "{}",
        stderr(&o)
    );

    std::fs::write(root.join("d/kernels.json"), "{\"kernels\": [").unwrap();
    let o = lvh_in(root, &["kernels", "list", "--dir", "d"]);
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("kernels.json: invalid JSON"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        root.join("d/kernels.json"),
        r#"{"kernels": [{"name": "k", "url": "/x", "opts": [["--enabel", "X"]]}]}"#,
    )
    .unwrap();
    let o = lvh_in(root, &["kernels", "list", "--dir", "d"]);
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(
        e.contains("kernels.json") && e.contains("kernel \"k\": opts[0]") && e.contains("--enabel"),
        "{e}"
    );
    let o = lvh_in(root, &["kernels", "list", "--dir", "nodir"]);
    assert_code(&o, 3);
    assert!(stderr(&o).contains("lvh kernels init"), "{}", stderr(&o));
}

fn set_opts(root: &Path, opts: serde_json::Value) {
    let mut c = conf(root);
    c["kernels"][0]["opts"] = opts;
    std::fs::write(
        root.join("d/kernels.json"),
        serde_json::to_string_pretty(&c).unwrap(),
    )
    .unwrap();
}

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
#[cfg_attr(lvh_no_make, ignore = "needs make on PATH (Debian package make)")]
fn configure_verifies_and_build_installs_and_reconfigures_on_change() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    fake_kernel(root);
    ok(
        root,
        &[
            "kernels",
            "init",
            "--dir",
            "d",
            "--config-groups",
            "namespaces",
        ],
    );
    ok(
        root,
        &[
            "kernels",
            "add",
            "f",
            "fake",
            "--dir",
            "d",
            "--config-groups",
            "virtio",
            "--base-config",
            "tinyconfig",
            "--fetch",
        ],
    );
    set_opts(
        root,
        serde_json::json!([
            ["--enable", "CONFIG_WANTED"],
            ["--enable", "CONFIG_FORCED_OFF"],
            ["--enable", "CONFIG_ABSENT"],
            ["--module", "CONFIG_MOD"]
        ]),
    );
    let tree = root.join("d/kernels/f");
    let o = lvh_in(
        root,
        &["kernels", "configure", "f", "--dir", "d", "--arch", "amd64"],
    );
    assert_code(&o, 0);
    let e = stderr(&o);
    assert!(
        e.contains("CONFIG_FORCED_OFF wanted y, Kconfig set it off"),
        "{e}"
    );
    assert!(
        e.contains("CONFIG_ABSENT wanted y, not in the final .config"),
        "{e}"
    );
    assert!(!e.contains("CONFIG_WANTED wanted"), "{e}");
    let config = std::fs::read_to_string(tree.join(".config")).unwrap();
    for want in [
        "CONFIG_BASE_tinyconfig=y",
        "CONFIG_WANTED=y",
        "CONFIG_MOD=m",
        "CONFIG_NET_NS=y",
    ] {
        assert!(config.lines().any(|l| l == want), "{want} in\n{config}");
    }
    assert_eq!(
        std::fs::read_to_string(tree.join("make-arch"))
            .unwrap()
            .trim(),
        "x86_64"
    );
    // git does not see lvh's own files
    assert_eq!(git(&tree, &["status", "--porcelain", "--", ".lvh"]), "");

    // --strict turns the override (not the absence) into an error
    let o = lvh_in(
        root,
        &[
            "kernels",
            "configure",
            "f",
            "--dir",
            "d",
            "--arch",
            "amd64",
            "--strict",
        ],
    );
    assert_code(&o, 1);
    let e = stderr(&o);
    assert!(
        e.contains("1 option(s) did not hold") && e.contains("FORCED_OFF"),
        "{e}"
    );

    // build: configures again (the strict run failed), builds, installs
    let o = lvh_in(
        root,
        &["kernels", "build", "f", "--dir", "d", "--arch", "amd64"],
    );
    assert_code(&o, 0);
    assert!(stderr(&o).contains("configuring f"), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        tree.join("arch/x86/boot/bzImage").display().to_string()
    );
    let boot = tree.join("tar-install/boot");
    for f in [
        "vmlinuz-6.12.0-fake",
        "System.map-6.12.0-fake",
        "config-6.12.0-fake",
        "vmlinux-6.12.0-fake",
    ] {
        assert!(boot.join(f).is_file(), "{f}");
    }
    assert!(tree.join("tar-install/lib/modules/6.12.0-fake").is_dir());
    assert!(tree.join(".lvh/build.log").is_file());

    // again with nothing changed: make runs, the install is kept
    let o = lvh_in(
        root,
        &["kernels", "build", "f", "--dir", "d", "--arch", "amd64"],
    );
    assert_code(&o, 0);
    assert!(stderr(&o).contains("(unchanged)"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("configuring f"), "{}", stderr(&o));

    // kernels.json changed: build re-applies the options first
    set_opts(root, serde_json::json!([["--enable", "CONFIG_OTHER"]]));
    let o = lvh_in(
        root,
        &["kernels", "build", "f", "--dir", "d", "--arch", "amd64"],
    );
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("kernels.json changed"),
        "{}",
        stderr(&o)
    );
    let config = std::fs::read_to_string(tree.join(".config")).unwrap();
    assert!(
        config.contains("CONFIG_OTHER=y") && !config.contains("CONFIG_WANTED=y"),
        "{config}"
    );

    // raw_configure applies common_opts only to a tree with a .config
    let o = lvh_in(
        root,
        &[
            "kernels",
            "raw_configure",
            tree.to_str().unwrap(),
            "--dir",
            "d",
            "--arch",
            "amd64",
        ],
    );
    assert_code(&o, 0);
    let config = std::fs::read_to_string(tree.join(".config")).unwrap();
    assert!(config.contains("CONFIG_UTS_NS=y"), "{config}");
}

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
#[cfg_attr(lvh_no_make, ignore = "needs make on PATH (Debian package make)")]
fn fragments_merge_between_groups_and_opts_per_arch_and_a_missing_one_is_named() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    fake_kernel(root);
    ok(
        root,
        &[
            "kernels",
            "init",
            "--dir",
            "d",
            "--config-groups",
            "namespaces",
        ],
    );
    ok(
        root,
        &[
            "kernels",
            "add",
            "f",
            "fake",
            "--dir",
            "d",
            "--config-groups",
            "",
            "--base-config",
            "tinyconfig",
            "--fragment",
            "sel/config",
            "--fragment",
            "sel/config.x86_64",
            "--fragment",
            "sel/config.aarch64",
            "--fetch",
        ],
    );
    assert_eq!(
        conf(root)["kernels"][0]["fragments"],
        serde_json::json!(["sel/config", "sel/config.x86_64", "sel/config.aarch64"])
    );
    let tree = root.join("d/kernels/f");
    std::fs::create_dir_all(tree.join("sel")).unwrap();
    // The fragment turns off a common_opts symbol (fragments come after the
    // groups), the x86_64 one redefines FRAG_B, the kernel's opts override FRAG_C.
    std::fs::write(
        tree.join("sel/config"),
        "# CONFIG_NET_NS is not set\nCONFIG_FRAG_A=y\n# CONFIG_FRAG_B is not set\nCONFIG_FRAG_C=y\nCONFIG_FORCED_OFF=y\n",
    )
    .unwrap();
    std::fs::write(tree.join("sel/config.x86_64"), "CONFIG_FRAG_B=m\n").unwrap();
    std::fs::write(tree.join("sel/config.aarch64"), "CONFIG_ARM_ONLY=y\n").unwrap();
    set_opts(root, serde_json::json!([["--disable", "CONFIG_FRAG_C"]]));
    let o = lvh_in(
        root,
        &["kernels", "configure", "f", "--dir", "d", "--arch", "amd64"],
    );
    assert_code(&o, 0);
    let e = stderr(&o);
    // A fragment option that did not stick is reported like an opts one.
    assert!(
        e.contains("CONFIG_FORCED_OFF wanted y, Kconfig set it off"),
        "{e}"
    );
    assert!(
        e.contains("fragment sel/config.x86_64 redefines CONFIG_FRAG_B"),
        "{e}"
    );
    let config = std::fs::read_to_string(tree.join(".config")).unwrap();
    let has = |l: &str| config.lines().any(|x| x == l);
    for want in [
        "CONFIG_FRAG_A=y",
        "CONFIG_FRAG_B=m",
        "# CONFIG_FRAG_C is not set",
        "# CONFIG_NET_NS is not set",
        "CONFIG_UTS_NS=y",
    ] {
        assert!(has(want), "{want} in\n{config}");
    }
    assert!(!config.contains("ARM_ONLY"), "{config}");

    // A changed fragment makes build configure again.
    std::fs::write(tree.join("sel/config.x86_64"), "CONFIG_FRAG_B=y\n").unwrap();
    let o = lvh_in(
        root,
        &["kernels", "build", "f", "--dir", "d", "--arch", "amd64"],
    );
    assert_code(&o, 0);
    assert!(stderr(&o).contains("configuring f"), "{}", stderr(&o));
    let config = std::fs::read_to_string(tree.join(".config")).unwrap();
    assert!(config.lines().any(|l| l == "CONFIG_FRAG_B=y"), "{config}");

    // A missing fragment names the kernel, the file and the tree.
    std::fs::remove_file(tree.join("sel/config.x86_64")).unwrap();
    let o = lvh_in(
        root,
        &["kernels", "configure", "f", "--dir", "d", "--arch", "amd64"],
    );
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(
        e.contains("kernel \"f\": fragment sel/config.x86_64: no such file")
            && e.contains(&tree.display().to_string()),
        "{e}"
    );
}

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
fn a_missing_cross_compiler_names_the_package() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    fake_kernel(root);
    ok(
        root,
        &[
            "kernels",
            "init",
            "--dir",
            "d",
            "--config-groups",
            "namespaces",
        ],
    );
    ok(
        root,
        &["kernels", "add", "f", "fake", "--dir", "d", "--fetch"],
    );
    let other = if cfg!(target_arch = "aarch64") {
        "amd64"
    } else {
        "arm64"
    };
    let o = Command::new(crate::common::lvh_bin())
        .args(["kernels", "configure", "f", "--dir", "d", "--arch", other])
        .current_dir(root)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_code(&o, 3);
    let e = stderr(&o);
    assert!(e.contains("install the Debian packages gcc-"), "{e}");
}

#[test]
#[cfg_attr(lvh_no_git, ignore = "needs git on PATH (Debian package git)")]
fn a_source_with_alternates_is_fetched_through_libgit2() {
    // Hard-linking objects is impossible when the source borrows them from
    // another repository, so this exercises the regular git2 fetch path.
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let src = source(root);
    let out = Command::new("git")
        .args(["clone", "-q", "--shared"])
        .arg(&src)
        .arg(root.join("borrowing"))
        .output()
        .unwrap();
    assert!(out.status.success());
    ok(root, &["kernels", "init", "--dir", "d"]);
    ok(
        root,
        &["kernels", "add", "b", "borrowing", "--dir", "d", "--fetch"],
    );
    let tree = root.join("d/kernels/b");
    assert_eq!(
        git(&tree, &["rev-parse", "HEAD"]),
        git(&src, &["rev-parse", "trunk"])
    );
    assert!(tree.join("a").is_file());
    let new = commit(&root.join("borrowing"), "c", "four");
    ok(root, &["kernels", "fetch", "b", "--dir", "d"]);
    assert_eq!(git(&tree, &["rev-parse", "HEAD"]), new);
}
