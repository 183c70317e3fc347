//! doc-check (`make doc-check`): README.md and docs/ against the built binary.
//! Command lines parse, named flags and `LVH_*` variables exist, every flag and
//! variable is documented, links resolve, and the examples under configs/ and
//! images/ pass their dry runs. The rules are in docs/development.md.

mod checks;
mod cli;
mod markdown;
mod sources;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use checks::{Doc, Problems};
use cli::Cmd;

use crate::common::{lvh_bin, lvh_in, stderr, stdout};

/// The most lines README.md may have: a front door, the rest in docs/.
const README_MAX_LINES: usize = 250;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page under docs/.
fn docs() -> &'static [Doc] {
    static DOCS: OnceLock<Vec<Doc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut paths = vec![PathBuf::from("README.md")];
        let mut dirs = vec![PathBuf::from("docs")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(root().join(&d)).expect("docs/").flatten() {
                let rel = d.join(e.file_name());
                if e.path().is_dir() {
                    dirs.push(rel);
                } else if rel.extension().is_some_and(|x| x == "md") {
                    paths.push(rel);
                }
            }
        }
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(root().join(p)).unwrap();
                Doc::new(&p.to_string_lossy(), &text)
            })
            .collect()
    })
}

fn cli() -> &'static Cmd {
    static CLI: OnceLock<Cmd> = OnceLock::new();
    CLI.get_or_init(|| Cmd::load(lvh_bin()))
}

#[track_caller]
fn report(what: &str, problems: Problems) {
    assert!(
        problems.is_empty(),
        "doc-check: {what}: {} problem(s):\n  {}\n(the rules: docs/development.md, \"doc-check\")",
        problems.len(),
        problems.join("\n  ")
    );
}

/// The first line of clap's or lvh's error.
fn first_error(o: &std::process::Output) -> String {
    let e = stderr(o);
    let line = e
        .lines()
        .find(|l| l.contains("error"))
        .or(e.lines().next())
        .unwrap_or("");
    format!("exit code {:?}: {}", o.status.code(), line.trim())
}

#[test]
fn markers_are_placed_before_code_blocks() {
    report("markers", checks::markers(docs()));
}

#[test]
fn command_lines_name_real_subcommands_and_flags() {
    report("command lines", checks::command_flags(docs(), cli()));
}

/// Each runnable command line, with `--help` before its `--`, exits 0: clap
/// has checked the subcommand, every flag and every typed value before it.
#[test]
fn command_lines_parse() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut problems = Problems::new();
    for d in docs() {
        for c in d.page.commands.iter().filter(|c| c.run) {
            if !seen.insert(c.args.clone()) {
                continue;
            }
            let mut argv: Vec<&str> = c.args.iter().map(String::as_str).collect();
            if c.span && cli().ends_with_bare_value_flag(&c.args) {
                argv.pop(); // `lvh run --kernel` names the flag; the static check covers it
            }
            let at = argv.iter().position(|a| *a == "--").unwrap_or(argv.len());
            argv.insert(at, "--help");
            let o = lvh_in(tmp.path(), &argv);
            if !o.status.success() {
                problems.push(format!(
                    "{}:{}: `{}` does not parse: {}",
                    d.path,
                    c.line,
                    c.text,
                    first_error(&o)
                ));
            }
        }
    }
    assert!(
        seen.len() > 20,
        "only {} command lines found in the docs",
        seen.len()
    );
    report("command lines", problems);
}

#[test]
fn flags_named_in_code_spans_exist() {
    report("flags", checks::named_flags(docs(), cli()));
}

#[test]
fn every_flag_in_help_is_documented() {
    report("flags", checks::undocumented_flags(docs(), cli()));
}

#[test]
fn every_subcommand_is_documented() {
    report("subcommands", checks::undocumented_commands(docs(), cli()));
}

#[test]
fn env_vars_are_real_and_documented() {
    let uses = sources::scan(root(), "tests/integration/docs");
    assert!(
        uses.contains_key("LVH_ACCEL"),
        "the source scan found no LVH_ACCEL: {uses:?}"
    );
    report("environment variables", checks::env_vars(docs(), &uses));
}

#[test]
fn relative_links_resolve() {
    report("links", checks::links(docs(), &|p| root().join(p).exists()));
}

#[test]
fn every_page_is_reachable_from_the_readme() {
    report("pages", checks::orphans(docs()));
}

/// A file under `dir` named `name` that is `file`, with `file`'s siblings beside
/// it so that its relative paths still resolve.
fn as_named(file: &Path, name: &str, tmp: &Path) -> PathBuf {
    let d = tmp.join(file.file_stem().unwrap());
    std::fs::create_dir_all(&d).unwrap();
    for e in std::fs::read_dir(file.parent().unwrap()).unwrap().flatten() {
        let _ = std::os::unix::fs::symlink(e.path(), d.join(e.file_name()));
    }
    let _ = std::fs::remove_file(d.join(name));
    std::os::unix::fs::symlink(file, d.join(name)).unwrap();
    d
}

/// Every example config passes its own dry run, with `--strict`.
#[test]
fn config_examples_pass_their_dry_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("configs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    for e in std::fs::read_dir(root().join("images")).unwrap().flatten() {
        files.push(e.path().join("images.json"));
    }
    files.retain(|f| f.extension().is_some_and(|x| x == "json") && f.is_file());
    files.sort();
    let mut problems = Problems::new();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    for f in &files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let v: serde_json::Value = match serde_json::from_str(&std::fs::read_to_string(f).unwrap())
        {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{rel}: not JSON: {e}"));
                continue;
            }
        };
        let runs: Vec<Vec<String>> = if v.is_array() {
            let dir = match f.file_name().is_some_and(|n| n == "images.json") {
                true => f.parent().unwrap().to_path_buf(),
                false => as_named(f, "images.json", tmp.path()),
            };
            vec![vec![
                "images".into(),
                "build".into(),
                "--strict".into(),
                "--dry-run".into(),
                "--dir".into(),
                s(&dir),
            ]]
        } else if v.get("tests").is_some() {
            ["--list", "--dry-run"]
                .map(|mode| {
                    vec![
                        "test".into(),
                        "--strict".into(),
                        mode.into(),
                        "--file".into(),
                        rel.clone(),
                    ]
                })
                .into()
        } else if v.get("kernels").is_some() {
            let dir = as_named(f, "kernels.json", tmp.path());
            vec![vec![
                "kernels".into(),
                "list".into(),
                "--strict".into(),
                "--dir".into(),
                s(&dir),
            ]]
        } else {
            problems.push(format!(
                "{rel}: neither an images.json, a kernels.json nor an lvh-tests.json"
            ));
            continue;
        };
        for args in runs {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = lvh_in(root(), &args);
            if !o.status.success() || stdout(&o).trim().is_empty() {
                problems.push(format!(
                    "{rel}: `lvh {}` fails: {}",
                    args.join(" "),
                    first_error(&o)
                ));
            }
        }
    }
    for e in std::fs::read_dir(root().join("configs/kconfig"))
        .unwrap()
        .flatten()
    {
        let name = e.path().file_stem().unwrap().to_string_lossy().into_owned();
        let dir = s(&tmp.path().join(&name));
        let o = lvh_in(
            root(),
            &["kernels", "init", "--dir", &dir, "--config-groups", &name],
        );
        if !o.status.success() {
            problems.push(format!(
                "configs/kconfig/{name}.conf: `lvh kernels init --config-groups {name}` fails: {}",
                first_error(&o)
            ));
        }
    }
    assert!(files.len() >= 2, "no example configs found: {files:?}");
    report("examples", problems);
}

/// What CI runs (`.ci/run`) is what README.md tells users to run.
#[test]
fn ci_runs_the_readme_test_command() {
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let cmd = ci
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("set "))
        .expect(".ci/run runs nothing");
    let readme = &docs().iter().find(|d| d.path == "README.md").unwrap().page;
    let shown = readme
        .block_lines
        .iter()
        .any(|(_, l)| l.split(" #").next().unwrap_or("").trim() == cmd);
    assert!(
        shown,
        "doc-check: .ci/run runs `{cmd}`, which no code block of README.md shows"
    );
}

#[test]
fn readme_is_a_short_front_door() {
    let readme = docs().iter().find(|d| d.path == "README.md").unwrap();
    let n = readme.text.lines().count();
    assert!(
        n <= README_MAX_LINES,
        "doc-check: README.md has {n} lines, more than {README_MAX_LINES}: move details to docs/"
    );
}
