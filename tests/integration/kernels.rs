//! `lvh kernels` against small generated git repositories: init, add, fetch
//! (branch, depth), list, update after a new commit, remove, and bad input.
//! No network: every source is a local repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{assert_code, lvh_in, stderr, stdout};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

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

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = lvh_in(dir, args);
    assert_code(&o, 0);
    stdout(&o)
}

fn conf(root: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root.join("d/kernels.json")).unwrap()).unwrap()
}

#[test]
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
        .map(|l| l.split('\t').next().unwrap())
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

#[test]
fn catalog_and_pull_are_left_to_the_oci_work() {
    let t = tempfile::tempdir().unwrap();
    let o = lvh_in(t.path(), &["kernels", "pull", "6.6-main"]);
    assert_code(&o, 5);
}
