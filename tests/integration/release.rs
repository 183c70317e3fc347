//! What a release is made of, checked without building it (the release files
//! themselves are checked by the system tier's `dist` tests, `make test-dist`):
//! the crate package holds everything the build reads, install.sh downloads
//! from the repository Cargo.toml names, and the changelog has the version.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The value of `key = "..."` in Cargo.toml's [package].
fn package_field(key: &str) -> String {
    let toml = read("Cargo.toml");
    let prefix = format!("{key} = \"");
    toml.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix('"'))
        .unwrap_or_else(|| panic!("Cargo.toml has no {key}"))
        .to_string()
}

#[test]
fn install_sh_downloads_from_the_repository_cargo_toml_names() {
    let repo = package_field("repository");
    assert!(
        repo.starts_with("https://github.com/") && !repo.contains("OWNER"),
        "{repo}"
    );
    let script = read("scripts/install.sh");
    assert!(
        script.contains(&format!("\nREPOSITORY=\"{repo}\"\n")),
        "scripts/install.sh's REPOSITORY is not Cargo.toml's repository {repo}"
    );
    // Every link to the project's releases names the same home.
    let releases = regex::Regex::new(r"https://github\.com/[\w.-]+/[\w.-]+/releases").unwrap();
    for file in [
        "scripts/install.sh",
        "docs/install.md",
        "CHANGELOG.md",
        ".github/workflows/release.yaml",
    ] {
        for m in releases.find_iter(&read(file)) {
            assert_eq!(m.as_str(), format!("{repo}/releases"), "in {file}");
        }
    }
}

#[test]
fn the_changelog_has_the_crate_version() {
    let version = package_field("version");
    let changelog = read("CHANGELOG.md");
    assert!(
        changelog
            .lines()
            .any(|l| l.starts_with(&format!("## [{version}] - "))),
        "CHANGELOG.md has no section for {version}"
    );
}

/// Files a source file of the crate reads at compile time (`include_str!`,
/// `include_bytes!` of a literal path), relative to the crate root.
fn compile_time_inputs() -> Vec<String> {
    let re = regex::Regex::new(r#"include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)"#).unwrap();
    let mut found = vec![];
    let mut dirs = vec![root().join("pkg"), root().join("cmd")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                for c in re.captures_iter(&std::fs::read_to_string(&p).unwrap()) {
                    let target = normalize(&p.parent().unwrap().join(&c[1]));
                    let rel = target.strip_prefix(root()).unwrap();
                    found.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    found
}

/// What the build script reads besides itself: the files it includes as
/// modules (`#[path = "..."]`) and the C sources (`"....c"`) named in it or
/// in them, relative to the crate root.
fn build_script_inputs() -> Vec<String> {
    let path_attr = regex::Regex::new(r#"#\[path = "([^"]+)"\]"#).unwrap();
    let c_source = regex::Regex::new(r#""([\w./-]+\.c)""#).unwrap();
    let mut todo = vec!["build.rs".to_string()];
    let mut found = vec![];
    while let Some(f) = todo.pop() {
        let text = read(&f);
        for c in path_attr.captures_iter(&text) {
            todo.push(c[1].to_string());
            found.push(c[1].to_string());
        }
        found.extend(c_source.captures_iter(&text).map(|c| c[1].to_string()));
    }
    assert!(
        found.iter().any(|f| f.ends_with("guest_init.c")),
        "{found:?}"
    );
    found
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn the_crate_package_holds_what_the_build_reads_and_no_test_fixtures() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cargo package --list: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let files: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect();
    let has = |f: &str| files.iter().any(|x| x == f);
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "cmd/lvh/main.rs",
        "pkg/lib.rs",
    ] {
        assert!(has(f), "{f} is not in the package");
    }
    // build.rs, the modules it includes (`#[path]`) and the C sources they compile.
    for f in build_script_inputs() {
        assert!(has(&f), "{f} (read by build.rs) is not in the package");
    }
    let inputs = compile_time_inputs();
    assert!(
        inputs.iter().any(|f| f.starts_with("configs/")),
        "{inputs:?}"
    );
    for f in &inputs {
        assert!(has(f), "{f} (read at compile time) is not in the package");
    }
    for f in &files {
        let needed = f.starts_with("tests/support/build_");
        for no in ["tests/", "target/", "dist/", ".github/", "scripts/"] {
            assert!(
                needed || !f.starts_with(no),
                "{f} should not be in the package"
            );
        }
    }
}
